//! `importer replay`: announce archived objects again, so that the
//! transformer applies them from the bytes the API sent, never fetching the
//! API again. This is how a lost database is rebuilt, and (with
//! `--reapply`) how rows are rewritten after a fix in the transformer.
//!
//! Objects are listed in key order under a prefix; keys start with the
//! fetch date and a UUIDv7, so that is also fetch order. Each message is
//! built from the object's own metadata (sha256, record count, fetch time,
//! source URL: what the importer's first message said), so the transformer
//! checks the bytes exactly as it did the first time. Order does not
//! matter to the result: the transformer's ledger makes an object it has
//! applied cost nothing, and an older object never overwrites a newer row.
//!
//! A replay never removes or rewrites anything in the archive.

use anyhow::Context as _;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use clap::Args;
use futures::{StreamExt as _, TryStreamExt as _};
use pipeline_core::contract::metadata;
use pipeline_core::exit::BadInput;
use pipeline_core::message::{MESSAGE_VERSION, ObjectMessage};
use pipeline_core::object::ObjectRef;
use pipeline_core::settings::parse_time;
use pipeline_core::trace_context;
use std::io::Write;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};
use url::Url;

use crate::Importer;
use crate::announce::Announcement;

/// `importer replay`'s own options.
#[derive(Debug, Clone, Args)]
pub struct Replay {
    /// Replay the objects whose keys start with PREFIX. Default: RAW_KEY_PREFIX/.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Only objects fetched at or after TIME (RFC 3339, e.g. 2026-11-30T08:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// Only objects fetched before TIME (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
    /// Start after this key: resumes a replay that stopped (it logs the last key it sent).
    #[arg(long, value_name = "KEY")]
    pub start_after: Option<String>,
    /// List the objects that would be announced (key, fetch time, records, sha256), and
    /// send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Have the transformer apply the objects again even where its ledger has them, after
    /// a fix in the transformer: their ledger rows and quarantined records are replaced.
    /// An older object still never overwrites a newer row.
    #[arg(long)]
    pub reapply: bool,
}

/// Objects whose metadata is read at once.
const HEADS_IN_FLIGHT: usize = 16;

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Objects under the prefix.
    pub listed: u64,
    /// Of those, the ones fetched in the time window.
    pub selected: u64,
    /// Announced (none in a dry run).
    pub sent: u64,
    /// Why the objects that could not be announced were not, one line each.
    pub failures: Vec<String>,
    /// The last key announced, in key order, with nothing failed before it.
    pub last_sent: Option<String>,
}

impl Replay {
    fn prefix(&self, key_prefix: &str) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| format!("{key_prefix}/"))
    }

    fn selects(&self, fetched_at: Option<OffsetDateTime>) -> bool {
        match fetched_at {
            Some(at) => {
                self.since.is_none_or(|since| at >= since)
                    && self.until.is_none_or(|until| at < until)
            }
            // Unknown: only when no window was asked for.
            None => self.since.is_none() && self.until.is_none(),
        }
    }
}

impl Importer {
    /// Announces the archived objects `replay` selects, in key order, in
    /// batches of ten, writing one line per object to `out`; stops after
    /// the batch in hand on `stop`.
    ///
    /// Checks the queue and the bucket first, as [`Importer::run`] does. A
    /// prefix with no objects at all, or `--since` not before `--until`, is
    /// a [`BadInput`], reported before anything is sent.
    #[instrument(name = "replay", skip_all, fields(s3.bucket = %self.config.bucket))]
    pub async fn replay(
        &self,
        replay: &Replay,
        out: &mut (dyn Write + Send),
        stop: CancellationToken,
    ) -> anyhow::Result<ReplayReport> {
        if let (Some(since), Some(until)) = (replay.since, replay.until)
            && since >= until
        {
            return Err(BadInput("--since must be before --until".into()).into());
        }
        self.check().await?;
        let bucket = &self.config.bucket;
        let prefix = replay.prefix(&self.config.key_prefix);
        let where_ = format!("s3://{bucket}/{prefix}");
        // Trace context for the messages: the transformer continues this
        // replay's trace, as it does an import's.
        let trace = trace_context::current();
        let mut report = ReplayReport::default();
        let mut batch: Vec<Announcement> = Vec::new();
        let mut token = None;
        'listing: loop {
            let page = self
                .aws
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(&prefix)
                .set_start_after(replay.start_after.clone())
                .set_continuation_token(token.take())
                .send()
                .await
                .with_context(|| format!("cannot list {where_}"))?;
            let keys: Vec<String> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter(|k| !k.ends_with('/'))
                .map(str::to_owned)
                .collect();
            if report.listed == 0 && keys.is_empty() && page.next_continuation_token().is_none() {
                if replay.start_after.is_none() {
                    return Err(BadInput(format!("no objects under {where_}")).into());
                }
                break;
            }
            report.listed += keys.len() as u64;
            let messages: Vec<ObjectMessage> = futures::stream::iter(keys)
                .map(|key| self.head(ObjectRef::new(bucket, key), replay.reapply))
                .buffered(HEADS_IN_FLIGHT)
                .try_collect()
                .await?;
            for message in messages
                .into_iter()
                .filter(|m| replay.selects(m.fetched_at))
            {
                report.selected += 1;
                if replay.dry_run {
                    writeln!(out, "{}", describe(&message))?;
                    continue;
                }
                batch.push(Announcement {
                    page_url: object_url(&message),
                    message,
                    trace: trace.clone(),
                });
                if batch.len() == pipeline_core::batch::MAX_BATCH {
                    let full = std::mem::take(&mut batch);
                    self.send_replayed(&full, &mut report, out).await?;
                    if stop.is_cancelled() {
                        warn!(
                            "Stopped; resume with --start-after {}",
                            report.last_sent.as_deref().unwrap_or("(nothing sent)")
                        );
                        break 'listing;
                    }
                }
            }
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        if !batch.is_empty() {
            self.send_replayed(&batch, &mut report, out).await?;
        }
        let verb = if replay.dry_run {
            "would announce"
        } else {
            "announced"
        };
        let count = if replay.dry_run {
            report.selected
        } else {
            report.sent
        };
        info!(
            objects.listed = report.listed,
            objects.selected = report.selected,
            messages.sent = report.sent,
            failed = report.failures.len(),
            reapply = replay.reapply,
            "Replay of {where_}: {} object(s) listed, {} in the time window, {verb} {count}{}",
            report.listed,
            report.selected,
            if report.failures.is_empty() {
                String::new()
            } else {
                format!(", {} failed", report.failures.len())
            }
        );
        match report.failures.first() {
            None => Ok(report),
            Some(first) => anyhow::bail!(
                "{} of {} object(s) could not be announced (run the replay again: objects applied cost nothing); the first: {first}",
                report.failures.len(),
                report.selected
            ),
        }
    }

    /// The object's message, from its metadata.
    async fn head(&self, object: ObjectRef, reapply: bool) -> anyhow::Result<ObjectMessage> {
        let head = self
            .aws
            .s3
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .with_context(|| format!("cannot read the metadata of {object}"))?;
        Ok(message_for(&object, &head, reapply))
    }

    /// Sends one batch and tallies it; writes one line per object sent.
    async fn send_replayed(
        &self,
        batch: &[Announcement],
        report: &mut ReplayReport,
        out: &mut (dyn Write + Send),
    ) -> std::io::Result<()> {
        let results = self.outbox.send(batch).await;
        for (item, result) in batch.iter().zip(results) {
            let object = item.message.object();
            match result {
                Ok(id) => {
                    writeln!(out, "sent {object} -> {id}")?;
                    report.sent += 1;
                    // Resuming after it must not skip an object that failed.
                    if report.failures.is_empty() {
                        report.last_sent = Some(item.message.key.clone());
                    }
                }
                Err(reason) => {
                    let line = format!(
                        "could not announce {object} on {}: {reason}",
                        self.outbox.queue_url()
                    );
                    warn!("{line}");
                    report.failures.push(line);
                }
            }
        }
        Ok(())
    }
}

/// An announcement's page URL, which only names it in what the announcer
/// reports: here, the object's. (`s3://bucket/key` always parses: a bucket
/// name is a valid host, and the key is percent-encoded as needed.)
fn object_url(message: &ObjectMessage) -> Url {
    Url::parse(&message.object().to_string())
        .unwrap_or_else(|e| unreachable!("{} is a URL: {e}", message.object()))
}

/// The message the importer sent for `object`, from what it stored with
/// it. An object put there by other means (no metadata) gets the minimal
/// message, dated by its upload, as the transformer would date it.
fn message_for(object: &ObjectRef, head: &HeadObjectOutput, reapply: bool) -> ObjectMessage {
    let meta = |name: &str| head.metadata().and_then(|m| m.get(name));
    let fetched_at = meta(metadata::FETCHED_AT)
        .and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok())
        .or_else(|| {
            let modified = head.last_modified()?;
            OffsetDateTime::from_unix_timestamp_nanos(modified.as_nanos()).ok()
        });
    ObjectMessage {
        version: MESSAGE_VERSION,
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        sha256: meta(metadata::SHA256).cloned(),
        record_count: meta(metadata::RECORD_COUNT).and_then(|v| v.parse().ok()),
        source_url: meta(metadata::SOURCE_URL).cloned(),
        fetched_at,
        resource: meta(metadata::RESOURCE).cloned(),
        reapply,
    }
}

/// `s3://bucket/key  <fetched at>  <n> records  <sha256>`.
fn describe(message: &ObjectMessage) -> String {
    let unknown = || "?".to_owned();
    format!(
        "{}  {}  {} records  {}",
        message.object(),
        message
            .fetched_at
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(unknown),
        message.record_count.map_or_else(unknown, |n| n.to_string()),
        message.sha256.clone().unwrap_or_else(unknown)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn replay(since: Option<OffsetDateTime>, until: Option<OffsetDateTime>) -> Replay {
        Replay {
            prefix: None,
            since,
            until,
            start_after: None,
            dry_run: false,
            reapply: false,
        }
    }

    #[test]
    fn the_window_includes_since_and_excludes_until() {
        let (a, b) = (
            datetime!(2026-11-30 08:00 UTC),
            datetime!(2026-11-30 09:00 UTC),
        );
        let window = replay(Some(a), Some(b));
        assert!(window.selects(Some(a)));
        assert!(!window.selects(Some(b)));
        assert!(!window.selects(None));
        assert!(replay(None, None).selects(None));
        assert_eq!(replay(None, None).prefix("posts"), "posts/");
    }

    #[test]
    fn the_message_comes_from_the_object_metadata() {
        let head = HeadObjectOutput::builder()
            .metadata(metadata::SHA256, "ab".repeat(32))
            .metadata(metadata::RECORD_COUNT, "25")
            .metadata(metadata::FETCHED_AT, "2026-11-30T08:00:00.5Z")
            .metadata(metadata::SOURCE_URL, "https://api/posts?_page=2")
            .metadata(metadata::RESOURCE, "posts")
            .build();
        let object = ObjectRef::new("raw", "posts/2026/11/30/x.json");
        let message = message_for(&object, &head, true);
        assert_eq!(message.sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(message.record_count, Some(25));
        assert_eq!(
            message.fetched_at,
            Some(datetime!(2026-11-30 08:00:00.5 UTC))
        );
        assert_eq!(
            message.source_url.as_deref(),
            Some("https://api/posts?_page=2")
        );
        assert!(message.reapply);
        assert_eq!(message.resource.as_deref(), Some("posts"));
        assert_eq!(
            describe(&message),
            format!(
                "s3://raw/posts/2026/11/30/x.json  2026-11-30T08:00:00.5Z  25 records  {}",
                "ab".repeat(32)
            )
        );
        // Put there by hand: the minimal message.
        let bare = message_for(&object, &HeadObjectOutput::builder().build(), false);
        assert_eq!(bare.resource(), "posts");
        assert_eq!((bare.sha256, bare.fetched_at), (None, None));
    }
}
