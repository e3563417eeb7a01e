//! The transformer: SQS message -> S3 object -> PostgreSQL rows.
//!
//! - [`settings`]: command line and environment.
//! - [`queue`]: the SQS queue and its dead-letter queue.
//! - [`process`]: one object: fetch, verify, parse, apply exactly once.
//! - [`acks`]: deleting finished messages, ten per call.
//! - [`protection`]: ECS task scale-in protection while messages are in hand.
//! - [`secret`]: the database password from Secrets Manager, re-read when
//!   PostgreSQL refuses it.
//! - [`Transformer::run`]: the receive loop, with bounded concurrency, a
//!   visibility heartbeat per message and graceful shutdown.
//!
//! What happens to a message:
//!
//! | outcome                                   | the message                                  |
//! |-------------------------------------------|----------------------------------------------|
//! | applied, or already applied (ledger)      | deleted after the commit, in batches of ten  |
//! | S3 test event, non-create S3 event        | deleted                                      |
//! | can never succeed (not JSON, unknown format, object missing, checksum or record count mismatch, not an array) | moved to the dead-letter queue with the reason |
//! | failed for a passing reason (database or S3 unreachable) | hidden for RETRY_DELAY, doubling per receive; the redrive policy catches what keeps failing |
//! | heartbeat lost (another worker may have it) | work on it stops                           |
//! | not finished by the shutdown deadline     | handed back (visible again at once)          |
//!
//! Nothing is deleted before its rows are committed, and applying an object
//! twice changes nothing, so any crash at any moment loses and duplicates
//! nothing.

pub mod acks;
pub mod metrics;
pub mod process;
pub mod protection;
pub mod queue;
pub mod secret;
pub mod settings;

use anyhow::{Context as _, bail};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use opentelemetry::KeyValue;
use pipeline_core::aws::{AwsClients, check_queue};
use pipeline_core::message::Incoming;
use pipeline_core::metrics::queue_name;
use pipeline_core::{health, trace_context};
use pipeline_store::ledger::Outcome as LedgerOutcome;
use pipeline_store::posts::UpsertCounts;
use pipeline_store::{DatabaseUrl, migrations};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::acks::{Ack, Acks};
use crate::metrics::Metrics;
use crate::process::{Applied, Context, ProcessError};
use crate::protection::ScaleInProtection;
use crate::queue::{LONG_POLL, MAX_RECEIVE, SqsQueue, receive_count};
use crate::settings::Config;

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Until shutdown is requested.
    Serve,
    /// Until the queue is empty, with nothing in flight anywhere.
    Drain,
}

/// In drain mode receives do not wait (short polls), so that the end of
/// the work is noticed at once; after one that found nothing, the next
/// waits for a message in hand to finish, or [`DRAIN_RECHECK`].
const DRAIN_POLL: Duration = Duration::ZERO;
const DRAIN_RECHECK: Duration = Duration::from_millis(50);

/// Once nothing is in hand, how long a pending receive is still given to
/// return what it may have taken, so that it can be handed back.
const RECEIVE_GRACE: Duration = Duration::from_secs(1);

/// Retries of a failing message are never delayed longer than this.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);

/// Totals over one run, for the final log line and for tests.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Messages deleted after their objects were applied.
    pub messages_applied: u64,
    /// Objects the ledger already had: nothing written.
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub retried: u64,
    pub handed_back: u64,
    pub abandoned: u64,
    pub ignored: u64,
    pub records: u64,
    pub rows: UpsertCounts,
    pub quarantined: u64,
}

/// Everything the loop needs, shared by every message task.
#[derive(Debug)]
pub struct Transformer {
    config: Config,
    aws: AwsClients,
    queue: SqsQueue,
    cx: Context,
    metrics: Metrics,
}

/// How one message ended.
#[derive(Debug)]
enum Outcome {
    Applied(Vec<Applied>),
    Ignored,
    /// With the failure's kind.
    DeadLettered(&'static str),
    Retrying(&'static str),
    HandedBack,
    Abandoned,
}

/// What processing a message came to, before the queue is told.
enum Handled {
    Applied(Vec<Applied>),
    /// Nothing to apply: `what` says why.
    Ignored(String),
}

/// Why processing a message failed.
struct Failure {
    reason: String,
    permanent: bool,
    /// For metrics: `error.type`.
    kind: &'static str,
}

impl From<ProcessError> for Failure {
    fn from(e: ProcessError) -> Self {
        Self {
            permanent: e.is_permanent(),
            kind: e.kind(),
            reason: e.to_string(),
        }
    }
}

impl Transformer {
    pub fn new(mut config: Config, aws: AwsClients) -> Self {
        if let Some(secret_id) = &config.database_secret {
            config.database_url = secret::with_secret(config.database_url, &aws, secret_id);
        }
        let pool = pipeline_store::pool(&config.database_url, config.concurrency.get());
        let queue = SqsQueue::new(
            aws.sqs.clone(),
            config.queue_url.clone(),
            config.dead_letter_queue_url.clone(),
        );
        let cx = Context {
            s3: aws.s3.clone(),
            pool,
            database_url: config.database_url.clone(),
        };
        Self {
            config,
            aws,
            queue,
            cx,
            metrics: Metrics::new(),
        }
    }

    /// Checks, before any message is taken, that the database is reachable
    /// and fully migrated and that the queue answers, waiting up to
    /// `STARTUP_WAIT` for each to answer at all.
    pub async fn check(&self) -> anyhow::Result<()> {
        let url = &self.config.database_url;
        let wait = self.config.startup_wait;
        url.load_password(wait).await?;
        let pending = migrations::pending(url, wait).await?;
        if !pending.is_empty() {
            bail!(
                "database {url} has {} pending migration(s) ({}): run `transformer migrate` first",
                pending.len(),
                pending.join(", ")
            );
        }
        check_queue(&self.aws, self.queue.url(), wait).await?;
        Ok(())
    }

    /// Receives and applies messages until `shutdown` is cancelled or, in
    /// [`Mode::Drain`], until the queue is drained. Then finishes the
    /// messages in hand, within the shutdown deadline, and returns.
    pub async fn run(
        mut self,
        mode: Mode,
        shutdown: CancellationToken,
    ) -> anyhow::Result<RunReport> {
        self.check().await?;
        if self.queue.dead_letter_url().is_none() {
            match self.queue.discover_dead_letter_queue().await {
                Ok(Some(_)) => {}
                Ok(None) => warn!(
                    "{} has no redrive policy and DEAD_LETTER_QUEUE_URL is not set: \
                     messages that can never succeed will stay on the queue",
                    self.queue.url()
                ),
                Err(e) => warn!("{e}"),
            }
        }
        // Healthy from here: the database and the queue answered.
        let health_file = self.config.health_file.clone();
        let protection = ScaleInProtection::start(
            self.config.ecs_agent_uri.as_ref(),
            self.config.scale_in_protection_max,
        );
        let this = Arc::new(self);
        let report =
            health::while_healthy(health_file, this.receive_loop(mode, shutdown, &protection))
                .await;
        protection.stop().await;
        report
    }

    async fn receive_loop(
        self: Arc<Self>,
        mode: Mode,
        shutdown: CancellationToken,
        protection: &ScaleInProtection,
    ) -> anyhow::Result<RunReport> {
        let started = Instant::now();
        let concurrency = self.config.concurrency.get();
        info!(
            queue.url = %self.queue.url(),
            dead_letter_queue.url = self.queue.dead_letter_url().map(|u| u.as_str()),
            concurrency,
            ?mode,
            "Receiving from {}",
            self.queue.url()
        );

        // One permit per message in hand: never receive more than can be
        // processed now, so that no message waits out its visibility timeout
        // in this process's memory.
        let permits = Arc::new(Semaphore::new(concurrency));
        // Cancelled when the shutdown deadline passes: unfinished messages
        // are then handed back to the queue.
        let hand_back = CancellationToken::new();
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let acks = Arc::new(Acks::start(self.queue.clone()));
        // Receive only once this many slots are free (or none is busy): one
        // receive per freed slot would cost as many SQS calls as messages,
        // and waiting for half of them left them idle too long (100 objects
        // with 8 slots, 4 alternated runs: a median 1.96 s instead of 2.14 s).
        let receive_batch = (concurrency / 4).clamp(1, MAX_RECEIVE);
        // At most one receive at a time. It is never dropped while pending:
        // SQS would still hand its messages out, to nobody, and they would
        // stay hidden for their whole visibility timeout.
        let mut receiving: Option<JoinHandle<Result<Vec<Message>, String>>> = None;
        let mut report = RunReport::default();
        let mut backoff = Backoff::default();
        // The last receive came back empty.
        let mut found_nothing = false;

        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // Every way through the loop passes here after the messages in
            // hand changed.
            protection.set_busy(!tasks.is_empty());
            if receiving.is_none() {
                let free = permits.available_permits();
                if free < receive_batch && !tasks.is_empty() {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        Some(done) = tasks.join_next() => tally(&mut report, done),
                    }
                    continue;
                }
                if mode == Mode::Drain && found_nothing && !tasks.is_empty() {
                    // Nothing visible: poll again when a slot frees up,
                    // not in a busy loop.
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        Some(done) = tasks.join_next() => tally(&mut report, done),
                    }
                    found_nothing = false;
                    continue;
                }
                if mode == Mode::Drain && tasks.is_empty() {
                    // Messages waiting to be deleted count as in flight.
                    acks.flush().await;
                    match self.queue.is_drained().await {
                        Ok(true) => break,
                        // Messages are hidden elsewhere (another worker, a
                        // retry delay): look again shortly.
                        Ok(false) if found_nothing => tokio::time::sleep(DRAIN_RECHECK).await,
                        Ok(false) => {}
                        Err(e) => {
                            warn!("{e}");
                            backoff.wait(&shutdown).await;
                            continue;
                        }
                    }
                }
                // Finished messages still count as in flight on SQS until
                // deleted: deleting them before each receive keeps that
                // count within the concurrency, and batches the deletes by
                // about `receive_batch`.
                acks.flush().await;
                let wait = if mode == Mode::Drain {
                    DRAIN_POLL
                } else {
                    LONG_POLL
                };
                let (queue, visibility) = (self.queue.clone(), self.config.visibility_timeout);
                receiving = Some(tokio::spawn(async move {
                    queue.receive(free.min(MAX_RECEIVE), wait, visibility).await
                }));
            }
            let Some(pending) = receiving.as_mut() else {
                continue;
            };
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                Some(done) = tasks.join_next() => {
                    tally(&mut report, done);
                    continue;
                }
                received = pending => received,
            };
            receiving = None;
            let messages = match received {
                Ok(Ok(messages)) => messages,
                Ok(Err(e)) => {
                    // SQS unreachable: not a reason to die; wait and try again.
                    warn!("{e}");
                    backoff.wait(&shutdown).await;
                    continue;
                }
                Err(e) => bail!("the receive task failed: {e}"),
            };
            backoff.reset();
            found_nothing = messages.is_empty();
            if !messages.is_empty() {
                protection.hold().await;
            }
            for message in messages {
                let permit = Arc::clone(&permits)
                    .acquire_owned()
                    .await
                    .context("the permit semaphore is never closed")?;
                let this = Arc::clone(&self);
                let hand_back = hand_back.clone();
                let acks = Arc::clone(&acks);
                tasks.spawn(async move {
                    let outcome = this.handle(message, hand_back, &acks).await;
                    drop(permit);
                    outcome
                });
            }
        }

        // Finish what is in hand; after a shutdown signal, only until the
        // deadline. A receive still pending may yet return messages: they
        // were never started, so they go straight back.
        if !tasks.is_empty() {
            info!(
                in_flight = tasks.len(),
                "Finishing {} message(s) in hand",
                tasks.len()
            );
        }
        let deadline = tokio::time::sleep(self.config.shutdown_timeout);
        tokio::pin!(deadline);
        let mut deadline_passed = !shutdown.is_cancelled();
        while !tasks.is_empty() || receiving.is_some() {
            tokio::select! {
                Some(done) = tasks.join_next() => tally(&mut report, done),
                received = async { receiving.as_mut().expect("checked").await }, if receiving.is_some() => {
                    receiving = None;
                    if let Ok(Ok(messages)) = received {
                        report.handed_back += self.hand_back_unstarted(&messages).await;
                    }
                }
                () = &mut deadline, if !deadline_passed => {
                    deadline_passed = true;
                    if !tasks.is_empty() {
                        warn!(in_flight = tasks.len(), "Shutdown deadline passed: handing {} message(s) back", tasks.len());
                    }
                    hand_back.cancel();
                }
                // With nothing in hand, a long poll that has found nothing
                // is not waited for.
                () = tokio::time::sleep(RECEIVE_GRACE), if tasks.is_empty() => break,
            }
        }
        acks.flush().await;
        info!(
            messages.applied = report.messages_applied,
            messages.duplicates = report.duplicates,
            messages.dead_lettered = report.dead_lettered,
            messages.retried = report.retried,
            messages.handed_back = report.handed_back,
            records = report.records,
            rows.inserted = report.rows.inserted,
            rows.updated = report.rows.updated,
            rows.unchanged = report.rows.unchanged,
            records.quarantined = report.quarantined,
            duration_ms = started.elapsed().as_millis() as u64,
            "Stopped after applying {} message(s) ({} already applied, {} dead-lettered, {} to retry, {} handed back)",
            report.messages_applied,
            report.duplicates,
            report.dead_lettered,
            report.retried,
            report.handed_back,
        );
        Ok(report)
    }

    /// Processes one message while keeping it hidden, then tells the queue.
    async fn handle(&self, message: Message, hand_back: CancellationToken, acks: &Acks) -> Outcome {
        let id = message.message_id.clone().unwrap_or_default();
        let queue = queue_name(self.queue.url());
        let span = info_span!(
            "process message",
            otel.kind = "consumer",
            messaging.system = "aws_sqs",
            messaging.operation.name = "process",
            messaging.destination.name = queue,
            messaging.message.id = %id,
        );
        // Continue the importer's trace: it sent its context along.
        trace_context::set_parent(&span, &trace_headers(&message));
        let started = Instant::now();
        let outcome = async {
            let Some(receipt) = message.receipt_handle.clone() else {
                error!("Message {id} has no receipt handle: skipped");
                return Outcome::Abandoned;
            };
            let started = Instant::now();
            let result = tokio::select! {
                result = self.process(&message, &id) => result,
                e = self.heartbeat(&receipt) => {
                    // Another worker may have it now: stop, and let the
                    // ledger sort out whatever both of us did.
                    error!("Message {id}: cannot keep it hidden ({e}): stopped working on it");
                    return Outcome::Abandoned;
                }
                () = hand_back.cancelled() => {
                    if let Err(e) = self.queue.set_visibility(&receipt, Duration::ZERO).await {
                        warn!("Message {id}: not finished by the shutdown deadline and {e}; it reappears after its visibility timeout");
                    } else {
                        warn!("Message {id}: not finished by the shutdown deadline: handed back to the queue");
                    }
                    return Outcome::HandedBack;
                }
            };
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match result {
                Ok(handled) => {
                    acks.delete(Ack {
                        message_id: id.clone(),
                        receipt_handle: receipt,
                    });
                    match handled {
                        Handled::Applied(applied) => {
                            for one in &applied {
                                log_applied(&id, one, elapsed_ms);
                            }
                            Outcome::Applied(applied)
                        }
                        Handled::Ignored(what) => {
                            info!("Message {id}: {what}: nothing to apply; deleted");
                            Outcome::Ignored
                        }
                    }
                }
                Err(failure) if failure.permanent => match self.queue.dead_letter(&message, &failure.reason).await {
                    Ok(dead_id) => {
                        error!(
                            dead_letter.message.id = %dead_id,
                            "Message {id}: {}; moved to the dead-letter queue",
                            failure.reason
                        );
                        Outcome::DeadLettered(failure.kind)
                    }
                    Err(e) => {
                        error!("Message {id}: {}; could not dead-letter it: {e}", failure.reason);
                        self.retry_later(&message, &receipt, &id, failure.kind).await
                    }
                },
                Err(failure) => {
                    warn!("Message {id}: {}", failure.reason);
                    self.retry_later(&message, &receipt, &id, failure.kind).await
                }
            }
        }
        .instrument(span)
        .await;
        self.record(&message, &outcome, started.elapsed());
        outcome
    }

    /// Metrics of one handled message.
    fn record(&self, message: &Message, outcome: &Outcome, took: Duration) {
        let m = &self.metrics;
        let source = pipeline_core::metrics::sqs("process", self.queue.url());
        m.consumed.add(1, &source);
        m.process_duration.record(took.as_secs_f64(), &source);
        if let Some(age) = message_age(message) {
            m.message_age.record(age.as_secs_f64(), &source);
        }
        let outcome_is = |value: &'static str| [KeyValue::new("outcome", value)];
        let error = |kind: &'static str| [KeyValue::new("error.type", kind)];
        match outcome {
            Outcome::Applied(applied) => {
                for one in applied {
                    match &one.outcome {
                        LedgerOutcome::Applied { rows, quarantined } => {
                            m.objects.add(1, &outcome_is("applied"));
                            m.rows.add(rows.inserted, &outcome_is("inserted"));
                            m.rows.add(rows.updated, &outcome_is("updated"));
                            m.rows.add(rows.unchanged, &outcome_is("unchanged"));
                            m.quarantined.add(*quarantined, &[]);
                        }
                        LedgerOutcome::AlreadyApplied(_) => {
                            m.objects.add(1, &outcome_is("already_applied"));
                        }
                    }
                }
            }
            Outcome::DeadLettered(kind) => {
                m.dead_lettered.add(1, &[]);
                m.errors.add(1, &error(kind));
            }
            Outcome::Retrying(kind) => m.errors.add(1, &error(kind)),
            Outcome::Ignored | Outcome::HandedBack | Outcome::Abandoned => {}
        }
    }

    /// Makes messages that were received but never started visible again.
    async fn hand_back_unstarted(&self, messages: &[Message]) -> u64 {
        let mut handed_back = 0;
        for message in messages {
            let id = message.message_id().unwrap_or_default();
            let Some(receipt) = message.receipt_handle() else {
                continue;
            };
            match self.queue.set_visibility(receipt, Duration::ZERO).await {
                Ok(()) => {
                    info!(messaging.message.id = %id, "Message {id}: received while stopping: handed back to the queue");
                    handed_back += 1;
                }
                Err(e) => {
                    warn!(messaging.message.id = %id, "Message {id}: received while stopping and {e}")
                }
            }
        }
        handed_back
    }

    /// Reads the message and applies every object it names.
    async fn process(&self, message: &Message, id: &str) -> Result<Handled, Failure> {
        let body = message.body.as_deref().unwrap_or_default();
        let incoming = Incoming::decode(body).map_err(|e| Failure {
            reason: format!("message body is in no known format: {e}"),
            permanent: true,
            kind: "unknown_format",
        })?;
        match incoming {
            Incoming::TestEvent => Ok(Handled::Ignored("S3 test event".into())),
            Incoming::Ignored(events) => Ok(Handled::Ignored(format!("S3 event {events}"))),
            Incoming::Objects(objects) => {
                let mut applied = Vec::with_capacity(objects.len());
                for object in &objects {
                    applied.push(process::apply_object(&self.cx, id, object).await?);
                }
                Ok(Handled::Applied(applied))
            }
        }
    }

    /// Keeps a message hidden while it is worked on: extends its visibility
    /// every third of the timeout. Returns only when that fails.
    async fn heartbeat(&self, receipt: &str) -> String {
        let timeout = self.config.visibility_timeout;
        loop {
            tokio::time::sleep(timeout / 3).await;
            if let Err(e) = self.queue.set_visibility(receipt, timeout).await {
                return e;
            }
        }
    }

    /// Hides a failed message for a delay that doubles with each receive.
    async fn retry_later(
        &self,
        message: &Message,
        receipt: &str,
        id: &str,
        kind: &'static str,
    ) -> Outcome {
        let attempts = receive_count(message);
        let delay = retry_delay(self.config.retry_delay, attempts);
        match self.queue.set_visibility(receipt, delay).await {
            Ok(()) => info!(
                "Message {id}: receive {attempts}; retrying in {}",
                humantime::format_duration(delay)
            ),
            Err(e) => warn!("Message {id}: {e}; it reappears after its visibility timeout"),
        }
        Outcome::Retrying(kind)
    }
}

/// The delay before the next try of a message received `attempts` times:
/// `base`, doubling with each receive, at most [`MAX_RETRY_DELAY`].
fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let doublings = attempts.clamp(1, 16) - 1;
    (base * 2u32.pow(doublings)).min(MAX_RETRY_DELAY)
}

fn log_applied(id: &str, applied: &Applied, elapsed_ms: u64) {
    let object = &applied.object;
    match &applied.outcome {
        LedgerOutcome::Applied { rows, quarantined } => info!(
            s3.bucket = %object.bucket,
            s3.key = %object.key,
            records = applied.records,
            rows.inserted = rows.inserted,
            rows.updated = rows.updated,
            rows.unchanged = rows.unchanged,
            records.quarantined = quarantined,
            duration_ms = elapsed_ms,
            "Message {id}: applied {object} ({} records: {} inserted, {} updated, {} unchanged, {} quarantined)",
            applied.records,
            rows.inserted,
            rows.updated,
            rows.unchanged,
            quarantined,
        ),
        LedgerOutcome::AlreadyApplied(entry) => info!(
            s3.bucket = %object.bucket,
            s3.key = %object.key,
            "Message {id}: {object} (sha256 {}) was already applied by message {} at {}: nothing to do",
            entry.sha256,
            entry.message_id,
            entry.applied_at,
        ),
    }
}

/// Applies the pending migrations of the database at `url`, waiting up to
/// `wait` for it to answer, and reading its password from its source
/// first, if it has one.
pub async fn migrate(url: &DatabaseUrl, wait: Duration) -> anyhow::Result<()> {
    url.load_password(wait).await?;
    let applied = migrations::run_pending(url, wait).await?;
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
            for one in applied {
                report.records += one.records;
                match one.outcome {
                    LedgerOutcome::Applied { rows, quarantined } => {
                        report.rows += rows;
                        report.quarantined += quarantined;
                    }
                    LedgerOutcome::AlreadyApplied(_) => report.duplicates += 1,
                }
            }
        }
        Ok(Outcome::Ignored) => report.ignored += 1,
        Ok(Outcome::DeadLettered(_)) => report.dead_lettered += 1,
        Ok(Outcome::Retrying(_)) => report.retried += 1,
        Ok(Outcome::HandedBack) => report.handed_back += 1,
        Ok(Outcome::Abandoned) => report.abandoned += 1,
        Err(e) => {
            // A panic in one message task must not take the others down; the
            // message reappears after its visibility timeout.
            error!("A message task failed: {e}");
            report.abandoned += 1;
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

/// The W3C trace context the sender put in the message's attributes.
fn trace_headers(message: &Message) -> HashMap<String, String> {
    let attributes = message.message_attributes();
    trace_context::FIELDS
        .iter()
        .filter_map(|name| {
            let value = attributes?.get(*name)?.string_value()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect()
}

/// How long ago SQS received the message (its `SentTimestamp`).
fn message_age(message: &Message) -> Option<Duration> {
    let sent_ms: u64 = message
        .attributes()?
        .get(&MessageSystemAttributeName::SentTimestamp)?
        .parse()
        .ok()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(Duration::from_millis(now_ms.saturating_sub(sent_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_per_receive_up_to_15_minutes() {
        let base = Duration::from_secs(10);
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(base, n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 900, 900]);
        assert_eq!(retry_delay(base, 0), base);
        assert_eq!(retry_delay(base, u32::MAX), MAX_RETRY_DELAY);
    }
}
