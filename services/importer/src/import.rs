//! One import: the pages fetched, archived and handed to the announcer,
//! then matched with what it confirmed.

use futures::StreamExt as _;
use futures::future::Either;
use pipeline_core::batch::Batcher;
use pipeline_core::error_chain;
use pipeline_core::object::ObjectRef;
use pipeline_core::trace_context;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::{Instrument as _, info, info_span, instrument, warn};
use url::Url;

use crate::announce::{self, Announced, Announcement, Announcer};
use crate::archive::{self, Provenance};
use crate::body;
use crate::fetch::{Failure, Page, page_url};
use crate::paging::{Seen, Walker, with_param};
use crate::position::{CompleteRun, Position};
use crate::settings::Source;
use crate::{ArchivedPage, ImportError, ImportReport, Importer};
use pipeline_core::resources::Resource;
use pipeline_core::spec::Parent;
use pipeline_core::spec::request::Pagination;
use reqwest::StatusCode;
use time::OffsetDateTime;

/// How one page ended, before the announcer has answered.
pub(crate) enum PageOutcome {
    Archived(ArchivedPage, Read),
    Skipped(Read),
    Failed(String),
}

/// What a run keeps of a page's records besides the page.
#[derive(Default)]
pub(crate) struct Read {
    /// With incremental loading: the largest value of the cursor field.
    pub position: Option<Position>,
    /// For a parent: the keys its children are fetched for.
    pub keys: Vec<String>,
    /// Records on the page, archived or skipped as unchanged.
    pub records: u64,
}

/// One source's part of a run, to tell whether it completed.
struct SourceRun<'s> {
    source: &'s Source,
    started_at: OffsetDateTime,
    /// The cursor parameter's value, if one was sent.
    sent: Option<String>,
    position: Option<Position>,
    /// Pages it archived, by URL: each must be confirmed.
    archived: Vec<Url>,
    pages: u64,
    records: u64,
    failed: bool,
    /// For a parent: the keys of its records, each once, in order.
    keys: Vec<String>,
}

/// A source whose size the first page told: every page can be asked for.
struct Known {
    first: Page,
    /// The first wave's other pages.
    rest_of_wave: Vec<(Url, Result<Page, String>)>,
    pages: u32,
    /// Records per page.
    limit: u32,
}

/// Where a page-by-page walk starts: after the first page.
struct Walk {
    first_url: Url,
    /// The first page's `Link: rel="next"`.
    next: Option<Url>,
    /// Records on the first page.
    count: u64,
    /// Pages of the first wave, by URL: used if the walk reaches them.
    prefetched: HashMap<Url, Result<Page, String>>,
}

impl Importer {
    /// Fetches, archives and announces every page of every source once,
    /// one source after the other. One announcer sends the messages of
    /// them all; the report covers them all.
    #[instrument(name = "import", skip_all)]
    pub async fn import_once(&self) -> Result<ImportReport, ImportError> {
        let started = Instant::now();
        let retries = AtomicU64::new(0);
        let (ready, announcer) =
            Announcer::spawn(self.outbox.clone(), self.aws.s3.clone(), self.state.clone());
        let mut outcomes = Vec::new();
        let mut runs: Vec<SourceRun<'_>> = Vec::new();
        for source in &self.config.sources {
            let started_at = OffsetDateTime::now_utc();
            let (start, sent, position) = match self.start(source).await {
                Ok(start) => start,
                Err(e) => {
                    outcomes.push(PageOutcome::Failed(e));
                    continue;
                }
            };
            let span = info_span!(
                "import source",
                resource = source.resource.name(),
                source.url = %start.url
            );
            let resource: &'static dyn Resource = source.resource;
            let fetched = match &resource.spec().parent {
                None => {
                    self.fetch_and_archive(&start, &retries, &ready)
                        .instrument(span)
                        .await
                }
                Some(parent) => {
                    let keys = runs
                        .iter()
                        .find(|r| r.source.resource.name() == parent.resource)
                        .map(|r| r.keys.clone())
                        .unwrap_or_default();
                    self.fetch_children(&start, parent, keys, &retries, &ready)
                        .instrument(span)
                        .await
                }
            };
            let mut run = SourceRun {
                source,
                started_at,
                sent,
                position,
                archived: Vec::new(),
                pages: 0,
                records: 0,
                failed: false,
                keys: Vec::new(),
            };
            let mut seen = HashSet::new();
            for outcome in &fetched {
                let read = match outcome {
                    PageOutcome::Archived(page, read) => {
                        run.archived.push(page.url.clone());
                        read
                    }
                    PageOutcome::Skipped(read) => read,
                    PageOutcome::Failed(_) => {
                        run.failed = true;
                        continue;
                    }
                };
                run.pages += 1;
                run.records += read.records;
                run.position = Position::larger(run.position.take(), read.position.clone());
                let new = read.keys.iter().filter(|k| seen.insert(k.as_str()));
                run.keys.extend(new.cloned());
            }
            runs.push(run);
            outcomes.extend(fetched);
        }
        drop(ready);
        let announced = announcer.finish().await;
        let mut report = self.settle(outcomes, announced).await;
        self.save_complete_runs(runs, &mut report).await;
        report.retries = retries.load(Ordering::Relaxed);
        report.duration = started.elapsed();
        let sources: Vec<String> = self
            .config
            .sources
            .iter()
            .map(ToString::to_string)
            .collect();
        report.log(&sources.join(", "));
        if report.failures.is_empty() {
            Ok(report)
        } else {
            Err(ImportError {
                report: Box::new(report),
            })
        }
    }

    /// Where a source's run starts: with incremental loading (and not
    /// `--full`), its URL asks for records from the saved position less the
    /// look-back, or from the file's `initial` before any run completed.
    /// Also what was sent, and the position it started from.
    async fn start(
        &self,
        source: &Source,
    ) -> Result<(Source, Option<String>, Option<Position>), String> {
        let resource: &'static dyn Resource = source.resource;
        let Some(incremental) = resource.spec().incremental.as_ref() else {
            return Ok((source.clone(), None, None));
        };
        if self.config.full {
            return Ok((source.clone(), None, None));
        }
        let saved = self
            .runs
            .get(resource.name())
            .await
            .map_err(|e| format!("{}: {}", resource.name(), error_chain(&e)))?;
        let previous = saved.as_ref().and_then(|run| run.position(incremental));
        let sent = match &previous {
            Some(position) => Some(position.sent(incremental)),
            None => source.initial.clone(),
        };
        let mut start = source.clone();
        if let Some(value) = &sent {
            start.url = with_param(&source.url, &incremental.param, value);
        }
        Ok((start, sent, previous))
    }

    /// Saves the run of each source whose every page was archived and
    /// confirmed, with its position: only then is its data safe, so that a
    /// run that failed or was killed leaves the last position as it was.
    async fn save_complete_runs(&self, runs: Vec<SourceRun<'_>>, report: &mut ImportReport) {
        let confirmed: HashSet<&Url> = report.pages.iter().map(|p| &p.url).collect();
        let incomplete: HashSet<&str> = runs
            .iter()
            .filter(|run| run.failed || !run.archived.iter().all(|url| confirmed.contains(url)))
            .map(|run| run.source.resource.name())
            .collect();
        // A parent is complete only with its children: its position decides
        // which parents' children the next run asks for, so a child that
        // failed must be asked for again.
        let waits_on_a_child = |name: &str| {
            runs.iter().any(|child| {
                let resource: &'static dyn Resource = child.source.resource;
                resource
                    .spec()
                    .parent
                    .as_ref()
                    .is_some_and(|p| p.resource == name)
                    && incomplete.contains(resource.name())
            })
        };
        let mut saves = Vec::new();
        for run in &runs {
            let name = run.source.resource.name();
            if incomplete.contains(name) || waits_on_a_child(name) {
                continue;
            }
            let complete = CompleteRun::new(
                name,
                run.started_at,
                run.pages,
                run.records,
                run.position.as_ref(),
                run.sent.clone(),
            );
            saves.push(complete);
        }
        for complete in saves {
            let name = &complete.resource;
            let position = complete.position.as_deref().unwrap_or("none");
            match self.runs.put(&complete).await {
                Ok(()) => info!(
                    resource = name,
                    position,
                    "{name}: run complete, saved to {}: position {position}",
                    self.runs.object(name)
                ),
                Err(e) => {
                    // The data is safe; the next run reads again from the old
                    // position. Still a failure: the operator should know.
                    report.failures.push(format!(
                        "{name}: every page is archived and announced, but {}",
                        error_chain(&e)
                    ));
                }
            }
        }
    }

    /// A child source fetched once per key of its parent's records, for
    /// FETCH_CONCURRENCY keys at once: each key's pages as a source of
    /// their own.
    async fn fetch_children(
        &self,
        child: &Source,
        parent: &Parent,
        keys: Vec<String>,
        retries: &AtomicU64,
        ready: &Batcher<Announcement>,
    ) -> Vec<PageOutcome> {
        info!(
            resource = child.resource.name(),
            keys = keys.len(),
            "Fetching {} for {} keys of {}",
            child.resource.name(),
            keys.len(),
            parent.resource
        );
        futures::stream::iter(keys)
            .map(|key| async move {
                let one = Source {
                    url: child.for_key(parent, &key),
                    ..child.clone()
                };
                self.fetch_and_archive(&one, retries, ready).await
            })
            .buffer_unordered(self.config.fetch_concurrency.get())
            .flat_map(futures::stream::iter)
            .collect()
            .await
    }

    /// Every page of the source, fetched and archived, each handed to the
    /// announcer as it is archived.
    async fn fetch_and_archive(
        &self,
        source: &Source,
        retries: &AtomicU64,
        ready: &Batcher<Announcement>,
    ) -> Vec<PageOutcome> {
        if let Some(pagination) = source.pagination() {
            return self.walk(source, pagination, retries, ready).await;
        }
        let page_size = self.config.page_size.map(|n| n.get());
        let mut wave = self.first_wave(source, retries).await;
        let rest_of_wave = wave.split_off(1);
        let Some((first_url, first)) = wave.pop() else {
            return Vec::new();
        };
        let first = match first {
            Err(e) => return vec![PageOutcome::Failed(e)],
            Ok(first) => first,
        };
        if let (Some(limit), Some(total)) = (page_size, first.total) {
            // The number of pages is known: fetch the rest at once.
            let pages = total.div_ceil(u64::from(limit)).min(u64::from(u32::MAX)) as u32;
            let max = self.config.max_pages.get();
            let known = Known {
                first,
                rest_of_wave,
                pages: pages.min(max),
                limit,
            };
            let mut outcomes = self.archive_known(source, known, retries, ready).await;
            if pages > max {
                let next = page_url(&source.url, max + 1, limit);
                outcomes.push(too_many_pages(source, max, &next));
            }
            return outcomes;
        }
        let walk = Walk {
            first_url,
            next: first.next.clone(),
            count: first.record_count,
            prefetched: rest_of_wave.into_iter().collect(),
        };
        let mut outcomes = vec![self.archive(first, ready).await];
        self.follow(source, walk, retries, ready, &mut outcomes)
            .await;
        outcomes
    }

    /// With page numbers, the first wave asks for FETCH_CONCURRENCY pages at
    /// once instead of waiting a round trip for page 1 to tell how many
    /// there are. Pages past the end come back empty and are dropped.
    async fn first_wave(
        &self,
        source: &Source,
        retries: &AtomicU64,
    ) -> Vec<(Url, Result<Page, String>)> {
        let urls: Vec<Url> = match self.config.page_size {
            Some(limit) => (1..=self.width_in_pages().min(self.config.max_pages.get()))
                .map(|n| page_url(&source.url, n, limit.get()))
                .collect(),
            None => vec![source.url.clone()],
        };
        futures::future::join_all(urls.into_iter().map(|url| async {
            let fetched = self.fetch(source, &url, retries).await;
            (url, fetched)
        }))
        .await
    }

    /// FETCH_CONCURRENCY, as a count of pages.
    fn width_in_pages(&self) -> u32 {
        self.config.fetch_concurrency.get().min(u32::MAX as usize) as u32
    }

    /// Fetches the pages not in the first wave and archives them all.
    ///
    /// Two stages joined by a channel FETCH_CONCURRENCY wide: a page being
    /// archived does not hold up the fetching of the next. (Chained
    /// directly, the archive stage would stop polling, and so stall, the
    /// fetches in flight whenever it is full.) The fetch stage is twice as
    /// wide as the requests the fetcher lets through, so that the pages
    /// being checked do not leave a request slot idle.
    async fn archive_known(
        &self,
        source: &Source,
        known: Known,
        retries: &AtomicU64,
        ready: &Batcher<Announcement>,
    ) -> Vec<PageOutcome> {
        let width = self.config.fetch_concurrency.get();
        let fetched = std::iter::once(Ok(known.first)).chain(
            known
                .rest_of_wave
                .into_iter()
                .take(known.pages.saturating_sub(1) as usize)
                .map(|(_, fetched)| fetched),
        );
        let to_fetch = (self.width_in_pages() + 1..=known.pages).map(|n| {
            let url = page_url(&source.url, n, known.limit);
            async move { self.fetch(source, &url, retries).await }
        });
        let (fetched_tx, fetched_rx) = futures::channel::mpsc::channel(width);
        let fetching = futures::stream::iter(fetched)
            .map(|f| Either::Left(futures::future::ready(f)))
            .chain(futures::stream::iter(to_fetch).map(Either::Right))
            .buffer_unordered(2 * width)
            .map(Ok)
            .forward(fetched_tx);
        let archiving = fetched_rx
            .map(|fetched| async {
                match fetched {
                    Ok(page) => self.archive(page, ready).await,
                    Err(e) => PageOutcome::Failed(e),
                }
            })
            .buffer_unordered(width)
            .collect::<Vec<PageOutcome>>();
        // The receiver lives until every page is archived, so forwarding
        // cannot fail.
        let (_, outcomes) = tokio::join!(fetching, archiving);
        outcomes
    }

    /// Matches each page with what the announcer confirmed. A page archived
    /// but never confirmed (the announcer died first) is as unannounced as
    /// one SQS refused: its object is removed and the page fails.
    pub(crate) async fn settle(
        &self,
        outcomes: Vec<PageOutcome>,
        announced: Announced,
    ) -> ImportReport {
        let Announced {
            mut message_ids,
            failed,
            died,
        } = announced;
        let mut report = ImportReport::default();
        let mut unconfirmed = Vec::new();
        for outcome in outcomes {
            match outcome {
                PageOutcome::Archived(mut page, _) => match message_ids.remove(&page.url) {
                    Some(id) => {
                        page.message_id = id;
                        report.pages.push(page);
                    }
                    // Already in the announcer's failures, withdrawn.
                    None if failed.iter().any(|(url, _)| *url == page.url) => {}
                    None => unconfirmed.push(page.object),
                },
                PageOutcome::Skipped(_) => report.skipped += 1,
                PageOutcome::Failed(reason) => report.failures.push(reason),
            }
        }
        let died = died.as_deref().unwrap_or("the announcer stopped");
        let withdrawn = futures::stream::iter(unconfirmed)
            .map(|object| {
                let reason = format!(
                    "archived {object} but {died} before announcing it on {}",
                    self.config.queue_url
                );
                async move { announce::withdraw(&self.aws.s3, &object, reason).await }
            })
            .buffer_unordered(self.config.fetch_concurrency.get())
            .collect::<Vec<String>>()
            .await;
        let not_announced = failed
            .into_iter()
            .map(|(_, reason)| reason)
            .chain(withdrawn);
        for reason in not_announced {
            self.metrics.error("announce");
            report.failures.push(reason);
        }
        self.metrics.messages_sent.add(
            report.pages.len() as u64,
            &pipeline_core::metrics::sqs("send", &self.config.queue_url),
        );
        report
    }

    /// Follows `Link: rel="next"`, or with a page size and no link, asks for
    /// the next page while pages come back full. In order: each page says
    /// where the next one is.
    async fn follow(
        &self,
        source: &Source,
        walk: Walk,
        retries: &AtomicU64,
        ready: &Batcher<Announcement>,
        outcomes: &mut Vec<PageOutcome>,
    ) {
        let Walk {
            first_url,
            mut next,
            mut count,
            mut prefetched,
        } = walk;
        let page_size = self.config.page_size.map(|n| n.get());
        let mut visited = HashSet::from([first_url]);
        let mut number = 1;
        loop {
            number += 1;
            let url = match (next.take(), page_size) {
                (Some(url), _) => url,
                (None, Some(limit)) if count == u64::from(limit) => {
                    page_url(&source.url, number, limit)
                }
                _ => return,
            };
            let how = "its server's `Link: rel=\"next\"`";
            if let Some(stop) = self.stop_before(source, number, &url, &mut visited, how) {
                outcomes.push(stop);
                return;
            }
            let fetched = match prefetched.remove(&url) {
                Some(fetched) => fetched,
                None => self.fetch(source, &url, retries).await,
            };
            match fetched {
                Err(e) => {
                    // Without this page there is no link to the next one.
                    outcomes.push(PageOutcome::Failed(e));
                    return;
                }
                Ok(page) if page.record_count == 0 => return,
                Ok(page) => {
                    next = page.next.clone();
                    count = page.record_count;
                    outcomes.push(self.archive(page, ready).await);
                }
            }
        }
    }

    /// Walks the pages of a source whose file says how they follow one
    /// another, in order: each page says where the next one is.
    async fn walk(
        &self,
        source: &Source,
        pagination: &'static Pagination,
        retries: &AtomicU64,
        ready: &Batcher<Announcement>,
    ) -> Vec<PageOutcome> {
        let name = source.resource.name();
        let how = format!("its {} pagination", pagination.kind());
        let mut walker = Walker::new(pagination, &source.url);
        let mut url = walker.first();
        let mut visited = HashSet::new();
        let mut outcomes = Vec::new();
        for number in 1.. {
            if let Some(stop) = self.stop_before(source, number, &url, &mut visited, &how) {
                outcomes.push(stop);
                break;
            }
            let page = match self.fetch(source, &url, retries).await {
                Ok(page) => page,
                Err(e) => {
                    outcomes.push(PageOutcome::Failed(e));
                    break;
                }
            };
            let next = match body::values_at(&page.body, walker.pointers()).await {
                Ok(values) => walker.next(&Seen {
                    url: &url,
                    records: page.record_count,
                    headers: &page.headers,
                    values: &values,
                }),
                Err(e) => Err(format!("{url}: {e}")),
            };
            // An empty page holds nothing to keep: it only ends the walk.
            if page.record_count > 0 {
                outcomes.push(self.archive(page, ready).await);
            }
            match next {
                Ok(Some(next)) => url = next,
                Ok(None) => break,
                Err(e) => {
                    outcomes.push(PageOutcome::Failed(format!("{name}: {e}")));
                    break;
                }
            }
        }
        outcomes
    }

    #[instrument(name = "fetch page", skip_all, fields(url.full = %url))]
    async fn fetch(&self, source: &Source, url: &Url, retries: &AtomicU64) -> Result<Page, String> {
        let result = self
            .fetcher
            .fetch(url, source.resource, &source.request, source.keys)
            .await;
        let attempts = match &result {
            Ok(page) => page.attempts,
            Err(e) => e.attempts,
        };
        let retried = u64::from(attempts.saturating_sub(1));
        retries.fetch_add(retried, Ordering::Relaxed);
        self.metrics.fetch_retries.add(retried, &[]);
        match &result {
            Ok(page) => self.metrics.records_fetched.add(page.record_count, &[]),
            Err(_) => self.metrics.error("fetch"),
        }
        result.map_err(|e| match &e.failure {
            Failure::Status { status, .. }
                if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN =>
            {
                // Not retried: the same credentials get the same answer.
                let credentials = match source.request.auth {
                    Some(kind) => format!("its credentials (request.auth, kind {kind})"),
                    None => "it: it has no request.auth".to_owned(),
                };
                format!(
                    "{}: {}: the API refused {credentials}",
                    source.resource.name(),
                    error_chain(&e)
                )
            }
            Failure::Token(_) => format!("{}: {}", source.resource.name(), error_chain(&e)),
            _ => error_chain(&e),
        })
    }

    /// Whether the page's bytes are those last archived for its URL (with
    /// SKIP_UNCHANGED). When that cannot be told, the page is archived.
    async fn is_unchanged(&self, page: &Page) -> bool {
        let Some(state) = &self.state else {
            return false;
        };
        match state.get(&page.url).await {
            Ok(Some(last)) if last.sha256 == page.sha256 => {
                info!(
                    source.url = %page.url,
                    "Page {} is unchanged since s3://{}/{}: skipped",
                    page.url,
                    self.config.bucket,
                    last.key
                );
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!("{}; archiving {} anyway", error_chain(&e), page.url);
                false
            }
        }
    }

    /// Archives a page (unless it is unchanged) and queues its message.
    async fn archive(&self, page: Page, ready: &Batcher<Announcement>) -> PageOutcome {
        self.archive_page(page, ready, true).await
    }

    /// Archives a page and queues its message; with `skip_unchanged`,
    /// not if its bytes are those last archived for its URL.
    #[instrument(name = "archive page", skip_all, fields(url.full = %page.url, otel.kind = "producer"))]
    pub(crate) async fn archive_page(
        &self,
        page: Page,
        ready: &Batcher<Announcement>,
        skip_unchanged: bool,
    ) -> PageOutcome {
        let config = &self.config;
        let sha256 = page.sha256.clone();
        if let Some(first_bad) = &page.first_bad {
            warn!(
                records.bad = page.bad_records,
                "{} of {} records from {} are not valid {} ({first_bad}); archived anyway: the transformer quarantines them",
                page.bad_records,
                page.record_count,
                page.url,
                page.resource.name(),
            );
        }
        if skip_unchanged && self.is_unchanged(&page).await {
            return PageOutcome::Skipped(Read {
                position: page.position,
                keys: page.keys,
                records: page.record_count,
            });
        }

        let prefix = format!("{}/{}", config.key_prefix, page.resource.name());
        let object = ObjectRef::new(
            &config.bucket,
            archive::object_key(&prefix, page.fetched_at),
        );
        let bytes = page.body.len() as usize;
        let read = Read {
            position: page.position.clone(),
            keys: page.keys.clone(),
            records: page.record_count,
        };
        // The transformer continues this span's trace.
        let trace = trace_context::current();
        let provenance = Provenance {
            source_url: &page.url,
            fetched_at: page.fetched_at,
            record_count: page.record_count,
            resource: page.resource.name(),
            trace: &trace,
        };
        let put = archive::put(
            &self.aws.s3,
            &object,
            &page.body,
            &sha256,
            provenance,
            config.gzip,
        );
        if let Err(e) = put.await {
            self.metrics.error("archive");
            return PageOutcome::Failed(error_chain(&e));
        }
        self.metrics.objects_archived.add(1, &[]);
        self.metrics.records_archived.add(page.record_count, &[]);
        info!(
            source.url = %page.url,
            s3.bucket = %object.bucket,
            s3.key = %object.key,
            records = page.record_count,
            bytes,
            attempts = page.attempts,
            duration_ms = page.duration.as_millis() as u64,
            "Archived {} records ({bytes} bytes) from {} to {object} in {:.1?}",
            page.record_count,
            page.url,
            page.duration,
        );
        let message = announce::message_for(&object, &sha256, provenance);
        let announcement = Announcement {
            page_url: page.url.clone(),
            message,
            trace,
        };
        // If the announcer is gone, the page is settled as unconfirmed.
        let _ = ready.push(announcement);
        PageOutcome::Archived(
            ArchivedPage {
                url: page.url,
                object,
                message_id: String::new(),
                record_count: page.record_count,
                bytes,
                sha256,
            },
            read,
        )
    }
}

impl Importer {
    /// Why page `number` of a walk, at `url`, is not to be fetched, if it
    /// is not: past `MAX_PAGES`, or fetched already this run, which would
    /// go round for ever (`how` the walk found it). The pages so far stand.
    fn stop_before(
        &self,
        source: &Source,
        number: u32,
        url: &Url,
        visited: &mut HashSet<Url>,
        how: &str,
    ) -> Option<PageOutcome> {
        let max = self.config.max_pages.get();
        if number > max {
            return Some(too_many_pages(source, max, url));
        }
        if visited.insert(url.clone()) {
            return None;
        }
        Some(PageOutcome::Failed(format!(
            "page {number} of {} would be {url}, fetched already this run: {how} goes round in a loop, so the walk stopped there",
            source.resource.name()
        )))
    }
}

/// Why a run stopped at `MAX_PAGES` (`max`) with `next` still to fetch.
fn too_many_pages(source: &Source, max: u32, next: &Url) -> PageOutcome {
    PageOutcome::Failed(format!(
        "{}: stopped at MAX_PAGES={max} pages with more to fetch (next: {next}): raise MAX_PAGES if the source really holds that many",
        source.resource.name()
    ))
}
