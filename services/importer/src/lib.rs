//! The importer: HTTP JSON API -> S3 (raw backup) -> SQS message.
//!
//! One import ([`Importer::import_once`]) is three steps, each only after the
//! one before it succeeded, so that no message ever points at a missing or
//! unchecked object:
//!
//! 1. [`fetch`]: GET a page, retrying what may pass, and check that the body
//!    is a JSON array. If not, nothing is written for it. Elements that are
//!    not valid posts are counted and archived with the rest: the transformer
//!    quarantines them.
//! 2. [`archive`]: unless the page is unchanged since it was last archived,
//!    put the raw bytes at a new time-ordered key, with provenance metadata
//!    and a SHA-256 that S3 verifies.
//! 3. [`announce`]: send one message per object, in batches; an object
//!    that cannot be announced is removed again.
//!
//! Pages: `Link: rel="next"` is followed; with a page size, pages are asked
//! for with `_page`/`_limit`, concurrently when `X-Total-Count` says how
//! many there are. Each page is its own object and message.
//!
//! [`run`] repeats imports on a schedule until shutdown.

pub mod announce;
pub mod archive;
pub mod body;
pub mod fetch;
pub mod metrics;
pub mod settings;

use anyhow::Context as _;
use futures::StreamExt as _;
use futures::future::Either;
use pipeline_core::aws::{AwsClients, check_bucket, check_queue};
use pipeline_core::object::ObjectRef;
use pipeline_core::{health, trace_context};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, instrument, warn};
use url::Url;

use crate::announce::{Announced, Announcement, Announcer, Outbox, SqsOutbox};
use crate::archive::{PageState, Provenance};
use crate::fetch::{Fetcher, Page, page_url};
use crate::metrics::Metrics;
use crate::settings::Config;

/// A page archived and announced.
#[derive(Debug, Clone)]
pub struct ArchivedPage {
    pub url: Url,
    pub object: ObjectRef,
    pub message_id: String,
    pub record_count: u64,
    pub bytes: usize,
    pub sha256: String,
}

/// What one import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Archived and announced, in no particular order.
    pub pages: Vec<ArchivedPage>,
    /// Pages whose bytes were those last archived for their URL.
    pub skipped: u64,
    /// Requests that were tried again.
    pub retries: u64,
    /// One line per page that failed, naming it.
    pub failures: Vec<String>,
    pub duration: Duration,
}

impl ImportReport {
    pub fn records(&self) -> u64 {
        self.pages.iter().map(|p| p.record_count).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.pages.iter().map(|p| p.bytes as u64).sum()
    }
}

/// An import in which at least one page failed. Every page not listed in
/// `report.failures` was archived and announced, or skipped.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe_failures(&self.report))]
pub struct ImportError {
    pub report: Box<ImportReport>,
}

fn describe_failures(report: &ImportReport) -> String {
    let failed = report.failures.len();
    let first = report.failures.first().map_or("", String::as_str);
    if failed == 1 && report.pages.is_empty() && report.skipped == 0 {
        first.to_owned()
    } else {
        let attempted = failed + report.pages.len() + report.skipped as usize;
        format!("{failed} of {attempted} pages failed; the first: {first}")
    }
}

/// How one page ended, before the announcer has answered.
enum PageOutcome {
    Archived(ArchivedPage),
    Skipped,
    Failed(String),
}

/// Everything one import needs, built once per process.
#[derive(Debug, Clone)]
pub struct Importer {
    config: Config,
    fetcher: Fetcher,
    aws: AwsClients,
    state: Option<PageState>,
    /// Where messages go: the queue, unless [`Importer::with_outbox`].
    outbox: Arc<dyn Outbox>,
    metrics: Metrics,
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
    pub fn new(config: Config, aws: AwsClients) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .user_agent(concat!("api-pipeline-importer/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("Failed to build the HTTP client")?;
        let fetcher = Fetcher::new(http, config.retry, config.fetch_concurrency);
        let state = config
            .skip_unchanged
            .then(|| PageState::new(aws.s3.clone(), config.bucket.clone(), &config.key_prefix));
        let outbox = Arc::new(SqsOutbox {
            sqs: aws.sqs.clone(),
            queue_url: config.queue_url.clone(),
        });
        Ok(Self {
            config,
            fetcher,
            aws,
            state,
            outbox,
            metrics: Metrics::new(),
        })
    }

    /// Sends the messages through `outbox` instead of to `QUEUE_URL`: the
    /// seam a test uses to make announcing fail part-way.
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = outbox;
        self
    }

    /// Checks that the queue and the bucket answer, so a wrong `QUEUE_URL`,
    /// `RAW_BUCKET` or endpoint is reported before anything is fetched,
    /// waiting up to `STARTUP_WAIT` for SQS and S3 to answer at all.
    pub async fn check(&self) -> anyhow::Result<()> {
        let wait = self.config.startup_wait;
        check_queue(&self.aws, &self.config.queue_url, wait).await?;
        check_bucket(&self.aws, &self.config.bucket, wait).await?;
        Ok(())
    }

    /// Fetches, archives and announces every page of the source once.
    #[instrument(name = "import", skip_all, fields(source.url = %self.config.source_url))]
    pub async fn import_once(&self) -> Result<ImportReport, ImportError> {
        let started = Instant::now();
        let config = &self.config;
        let retries = AtomicU64::new(0);
        let (ready, announcer) =
            Announcer::spawn(self.outbox.clone(), self.aws.s3.clone(), self.state.clone());

        let mut outcomes = Vec::new();
        let page_size = config.page_size.map(|n| n.get());
        let width = config.fetch_concurrency.get();
        // With page numbers, the first wave asks for FETCH_CONCURRENCY pages
        // at once instead of waiting a round trip for page 1 to tell how
        // many there are. Pages past the end come back empty and are
        // dropped.
        let first_wave: Vec<Url> = match page_size {
            Some(limit) => (1..=width.min(u32::MAX as usize) as u32)
                .map(|n| page_url(&config.source_url, n, limit))
                .collect(),
            None => vec![config.source_url.clone()],
        };
        let mut wave: Vec<(Url, Result<Page, String>)> =
            futures::future::join_all(first_wave.into_iter().map(|url| async {
                let fetched = self.fetch(&url, &retries).await;
                (url, fetched)
            }))
            .await;
        let rest_of_wave = wave.split_off(1);
        let (first_url, first) = wave.pop().expect("the first wave has the first page");
        match first {
            Err(e) => outcomes.push(PageOutcome::Failed(e)),
            Ok(first) => {
                let (next, total, count) = (first.next.clone(), first.total, first.record_count);
                if let (Some(limit), Some(total)) = (page_size, total) {
                    // The number of pages is known: fetch the rest at once.
                    let pages = total.div_ceil(u64::from(limit)).min(u64::from(u32::MAX)) as u32;
                    let fetched = std::iter::once(Ok(first)).chain(
                        rest_of_wave
                            .into_iter()
                            .take(pages.saturating_sub(1) as usize)
                            .map(|(_, fetched)| fetched),
                    );
                    let retries = &retries;
                    let to_fetch = (width.min(u32::MAX as usize) as u32 + 1..=pages).map(|n| {
                        let url = page_url(&config.source_url, n, limit);
                        async move { self.fetch(&url, retries).await }
                    });
                    // Two stages joined by a channel FETCH_CONCURRENCY wide:
                    // a page being archived does not hold up the fetching of
                    // the next. (Chained directly, the archive stage would
                    // stop polling, and so stall, the fetches in flight
                    // whenever it is full.) The fetch stage is twice as wide
                    // as the requests the fetcher lets through, so that the
                    // pages being checked do not leave a request slot idle.
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
                                Ok(page) => self.archive(page, &ready).await,
                                Err(e) => PageOutcome::Failed(e),
                            }
                        })
                        .buffer_unordered(width)
                        .collect::<Vec<PageOutcome>>();
                    // The receiver lives until every page is archived, so
                    // forwarding cannot fail.
                    let (_, rest) = tokio::join!(fetching, archiving);
                    outcomes.extend(rest);
                } else {
                    outcomes.push(self.archive(first, &ready).await);
                    let prefetched = rest_of_wave.into_iter().collect();
                    let walk = Walk {
                        first_url,
                        next,
                        count,
                        prefetched,
                    };
                    self.follow(walk, &retries, &ready, &mut outcomes).await;
                }
            }
        }
        drop(ready);
        let announced = announcer.finish().await;
        let mut report = self.settle(outcomes, announced).await;
        report.retries = retries.load(Ordering::Relaxed);
        report.duration = started.elapsed();

        info!(
            pages = report.pages.len(),
            records = report.records(),
            bytes = report.bytes(),
            skipped = report.skipped,
            retries = report.retries,
            failed = report.failures.len(),
            duration_ms = report.duration.as_millis() as u64,
            "Import of {}: {} page(s) archived and announced, {} records, {} bytes, {} skipped as unchanged, {} retries, {} failed, in {:.1?}",
            config.source_url,
            report.pages.len(),
            report.records(),
            report.bytes(),
            report.skipped,
            report.retries,
            report.failures.len(),
            report.duration,
        );
        if report.failures.is_empty() {
            Ok(report)
        } else {
            Err(ImportError {
                report: Box::new(report),
            })
        }
    }

    /// Matches each page with what the announcer confirmed. A page archived
    /// but never confirmed (the announcer died first) is as unannounced as
    /// one SQS refused: its object is removed and the page fails.
    async fn settle(&self, outcomes: Vec<PageOutcome>, announced: Announced) -> ImportReport {
        let Announced {
            mut message_ids,
            failed,
            died,
        } = announced;
        let mut report = ImportReport::default();
        let mut unconfirmed = Vec::new();
        for outcome in outcomes {
            match outcome {
                PageOutcome::Archived(mut page) => match message_ids.remove(&page.url) {
                    Some(id) => {
                        page.message_id = id;
                        report.pages.push(page);
                    }
                    // Already in the announcer's failures, withdrawn.
                    None if failed.iter().any(|(url, _)| *url == page.url) => {}
                    None => unconfirmed.push(page.object),
                },
                PageOutcome::Skipped => report.skipped += 1,
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
        walk: Walk,
        retries: &AtomicU64,
        ready: &mpsc::Sender<Announcement>,
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
                    page_url(&self.config.source_url, number, limit)
                }
                _ => return,
            };
            // A link back to a page already seen would loop forever.
            if !visited.insert(url.clone()) {
                return;
            }
            let fetched = match prefetched.remove(&url) {
                Some(fetched) => fetched,
                None => self.fetch(&url, retries).await,
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

    #[instrument(name = "fetch page", skip_all, fields(url.full = %url))]
    async fn fetch(&self, url: &Url, retries: &AtomicU64) -> Result<Page, String> {
        let result = self.fetcher.fetch(url).await;
        let attempts = match &result {
            Ok(page) => page.attempts,
            Err(fetch::FetchError::GaveUp { attempts, .. }) => *attempts,
            Err(_) => 1,
        };
        let retried = u64::from(attempts.saturating_sub(1));
        retries.fetch_add(retried, Ordering::Relaxed);
        self.metrics.fetch_retries.add(retried, &[]);
        match &result {
            Ok(page) => self.metrics.records_fetched.add(page.record_count, &[]),
            Err(_) => self.metrics.error("fetch"),
        }
        result.map_err(|e| e.to_string())
    }

    /// Archives a page (unless it is unchanged) and queues its message.
    #[instrument(name = "archive page", skip_all, fields(url.full = %page.url, otel.kind = "producer"))]
    async fn archive(&self, page: Page, ready: &mpsc::Sender<Announcement>) -> PageOutcome {
        let config = &self.config;
        let sha256 = page.sha256.clone();
        if let Some(first_bad) = &page.first_bad {
            warn!(
                records.bad = page.bad_records,
                "{} of {} records from {} are not valid posts ({first_bad}); archived anyway: the transformer quarantines them",
                page.bad_records,
                page.record_count,
                page.url,
            );
        }
        if let Some(state) = &self.state {
            match state.get(&page.url).await {
                Ok(Some(last)) if last.sha256 == sha256 => {
                    info!(
                        source.url = %page.url,
                        "Page {} is unchanged since s3://{}/{}: skipped",
                        page.url,
                        config.bucket,
                        last.key
                    );
                    return PageOutcome::Skipped;
                }
                Ok(_) => {}
                Err(e) => warn!("{e}; archiving {} anyway", page.url),
            }
        }

        let object = ObjectRef::new(
            &config.bucket,
            archive::object_key(&config.key_prefix, page.fetched_at),
        );
        let bytes = page.body.len() as usize;
        // The transformer continues this span's trace.
        let trace = trace_context::current();
        let provenance = Provenance {
            source_url: &page.url,
            fetched_at: page.fetched_at,
            record_count: page.record_count,
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
            return PageOutcome::Failed(e.to_string());
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
        let message = announce::message_for(
            &object,
            &sha256,
            page.record_count,
            &page.url,
            page.fetched_at,
        );
        let announcement = Announcement {
            page_url: page.url.clone(),
            message,
            trace,
        };
        // If the announcer is gone, the page is settled as unconfirmed.
        let _ = ready.send(announcement).await;
        PageOutcome::Archived(ArchivedPage {
            url: page.url,
            object,
            message_id: String::new(),
            record_count: page.record_count,
            bytes,
            sha256,
        })
    }
}

/// Imports once, or every `every` until `shutdown` is cancelled.
///
/// Once: an error is returned (and the process exits non-zero). On a
/// schedule: a failed import is logged and the next one still runs, so one
/// bad answer from the API does not stop the importer.
pub async fn run(
    importer: &Importer,
    every: Option<Duration>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    importer.check().await?;
    // Healthy from here: the queue answered.
    health::while_healthy(
        importer.config.health_file.clone(),
        run_checked(importer, every, shutdown),
    )
    .await
}

async fn run_checked(
    importer: &Importer,
    every: Option<Duration>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(every) = every else {
        importer.import_once().await?;
        return Ok(());
    };

    info!(every = %humantime::format_duration(every), "Importing every {}", humantime::format_duration(every));
    let mut ticks = tokio::time::interval(every);
    // A slow import delays the next one rather than causing a burst after it.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // An import in progress is finished even if a signal arrives meanwhile.
        if let Err(e) = importer.import_once().await {
            error!("{e}");
        }
    }
    info!("Stopped");
    Ok(())
}
