//! The transformer: SQS message -> S3 object -> PostgreSQL rows.
//!
//! - [`settings`]: command line and environment.
//! - [`queue`]: the SQS queue: receive, delete, is it drained.
//! - [`process`]: one message: fetch the object, verify, parse, upsert.
//! - [`Transformer::run`]: the receive loop, with bounded concurrency and
//!   graceful shutdown.
//!
//! A message is deleted only after the transaction holding its rows has
//! committed. If anything fails before that, the message stays on the queue
//! and SQS delivers it again once its visibility timeout expires; applying an
//! object twice changes nothing ([`pipeline_store::posts::upsert`]).

pub mod process;
pub mod queue;
pub mod settings;

use anyhow::{Context as _, bail};
use aws_sdk_sqs::types::Message;
use pipeline_core::aws::{AwsClients, check_queue};
use pipeline_store::posts::UpsertCounts;
use pipeline_store::{DatabaseUrl, Pool, migrations};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::queue::{LONG_POLL, MAX_RECEIVE, SqsQueue};
use crate::settings::Config;

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Until shutdown is requested.
    Serve,
    /// Until the queue is empty, with nothing in flight anywhere.
    Drain,
}

/// In drain mode long polls are short, so that the end of the work is
/// noticed promptly; a one-off run does not care about the extra requests.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Totals over one run, for the final log line and for tests.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub messages_applied: u64,
    pub messages_failed: u64,
    pub records: u64,
    pub rows: UpsertCounts,
}

/// Everything the loop needs, shared by every message task.
pub struct Transformer {
    config: Config,
    aws: AwsClients,
    queue: SqsQueue,
    s3: aws_sdk_s3::Client,
    pool: Pool,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's connections are not `Debug`; its status says enough.
        f.debug_struct("Transformer")
            .field("config", &self.config)
            .field("queue", &self.queue)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

/// How one message ended.
enum Outcome {
    Applied(process::Applied),
    Failed,
}

impl Transformer {
    pub fn new(config: Config, aws: AwsClients) -> Self {
        let pool = pipeline_store::pool(&config.database_url, config.concurrency.get());
        let queue = SqsQueue::new(aws.sqs.clone(), config.queue_url.clone());
        let s3 = aws.s3.clone();
        Self {
            config,
            aws,
            queue,
            s3,
            pool,
        }
    }

    /// Checks, before any message is taken, that the database is reachable
    /// and fully migrated and that the queue answers.
    pub async fn check(&self) -> anyhow::Result<()> {
        let url = &self.config.database_url;
        let pending = migrations::pending(url).await?;
        if !pending.is_empty() {
            bail!(
                "database {url} has {} pending migration(s) ({}): run `transformer migrate` first",
                pending.len(),
                pending.join(", ")
            );
        }
        check_queue(&self.aws, self.queue.url())
            .await
            .map_err(anyhow::Error::msg)
    }

    /// Receives and applies messages until `shutdown` is cancelled or, in
    /// [`Mode::Drain`], until the queue is drained. Then finishes the
    /// messages in hand and returns.
    pub async fn run(
        self: Arc<Self>,
        mode: Mode,
        shutdown: CancellationToken,
    ) -> anyhow::Result<RunReport> {
        self.check().await?;
        let started = Instant::now();
        let concurrency = self.config.concurrency.get();
        info!(queue.url = %self.queue.url(), concurrency, ?mode, "Receiving from {}", self.queue.url());

        // One permit per message in hand: never receive more than can be
        // processed now, so that no message waits out its visibility timeout
        // in this process's memory.
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut report = RunReport::default();
        let mut backoff = Backoff::default();

        loop {
            while let Some(done) = tasks.try_join_next() {
                tally(&mut report, done);
            }
            if shutdown.is_cancelled() {
                break;
            }
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    Some(done) = tasks.join_next() => tally(&mut report, done),
                }
                continue;
            }
            if mode == Mode::Drain && tasks.is_empty() {
                match self.queue.is_drained().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        warn!("{e}");
                        backoff.wait(&shutdown).await;
                        continue;
                    }
                }
            }

            let wait = if mode == Mode::Drain {
                DRAIN_POLL
            } else {
                LONG_POLL
            };
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                received = self.queue.receive(free.min(MAX_RECEIVE), wait) => received,
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(e) => {
                    // SQS unreachable: not a reason to die; wait and try again.
                    warn!("{e}");
                    backoff.wait(&shutdown).await;
                    continue;
                }
            };
            backoff.reset();
            for message in messages {
                let permit = Arc::clone(&permits)
                    .acquire_owned()
                    .await
                    .context("the permit semaphore is never closed")?;
                let this = Arc::clone(&self);
                tasks.spawn(async move {
                    let outcome = this.handle(message).await;
                    drop(permit);
                    outcome
                });
            }
        }

        // Finish what is in hand, whatever stopped the loop.
        if !tasks.is_empty() {
            info!(
                in_flight = tasks.len(),
                "Finishing {} message(s) in hand",
                tasks.len()
            );
        }
        while let Some(done) = tasks.join_next().await {
            tally(&mut report, done);
        }
        info!(
            messages.applied = report.messages_applied,
            messages.failed = report.messages_failed,
            records = report.records,
            rows.inserted = report.rows.inserted,
            rows.updated = report.rows.updated,
            rows.unchanged = report.rows.unchanged,
            duration_ms = started.elapsed().as_millis() as u64,
            "Stopped after applying {} message(s) ({} failed)",
            report.messages_applied,
            report.messages_failed,
        );
        Ok(report)
    }

    /// Applies one message and deletes it once its rows are committed.
    async fn handle(&self, message: Message) -> Outcome {
        let id = message.message_id.clone().unwrap_or_default();
        let span = info_span!("message", messaging.message.id = %id);
        async {
            let started = Instant::now();
            let body = message.body.as_deref().unwrap_or_default();
            let applied =
                match process::apply(&self.s3, &self.pool, &self.config.database_url, body).await {
                    Ok(applied) => applied,
                    Err(e) => {
                        // Left on the queue: SQS redelivers it after its
                        // visibility timeout, and the queue's redrive policy
                        // moves it to the dead-letter queue if it keeps failing.
                        error!("Message {id}: {e}");
                        return Outcome::Failed;
                    }
                };
            if let Some(receipt) = message.receipt_handle.as_deref()
                && let Err(e) = self.queue.delete(receipt).await
            {
                // Committed already: the redelivery will be a no-op.
                warn!("Applied {} but message {id}: {e}", applied.object);
            }
            info!(
                s3.bucket = %applied.object.bucket,
                s3.key = %applied.object.key,
                records = applied.records,
                rows.inserted = applied.counts.inserted,
                rows.updated = applied.counts.updated,
                rows.unchanged = applied.counts.unchanged,
                duration_ms = started.elapsed().as_millis() as u64,
                "Applied {} ({} records: {} inserted, {} updated, {} unchanged)",
                applied.object,
                applied.records,
                applied.counts.inserted,
                applied.counts.updated,
                applied.counts.unchanged,
            );
            Outcome::Applied(applied)
        }
        .instrument(span)
        .await
    }
}

/// Applies the pending migrations of the database at `url`.
pub async fn migrate(url: &DatabaseUrl) -> anyhow::Result<()> {
    let applied = migrations::run_pending(url).await?;
    if applied.is_empty() {
        info!("Database {url} is up to date");
    } else {
        info!(
            "Applied {} migration(s) to {url}: {}",
            applied.len(),
            applied.join(", ")
        );
    }
    Ok(())
}

fn tally(report: &mut RunReport, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Applied(applied)) => {
            report.messages_applied += 1;
            report.records += applied.records;
            report.rows += applied.counts;
        }
        Ok(Outcome::Failed) => report.messages_failed += 1,
        Err(e) => {
            // A panic in one message task must not take the others down.
            error!("A message task failed: {e}");
            report.messages_failed += 1;
        }
    }
}

/// Growing pauses while SQS cannot be reached: 1 s, 2 s, 4 s ... 30 s.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    async fn wait(&mut self, shutdown: &CancellationToken) {
        let delay = Duration::from_secs(1 << self.failures.min(5)).min(Duration::from_secs(30));
        self.failures += 1;
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}
