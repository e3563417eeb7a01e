//! The transformer: SQS message -> S3 object -> PostgreSQL rows.
//!
//! - [`settings`]: command line and environment.
//! - [`queue`]: the SQS queue and its dead-letter queue.
//! - [`listener`]: the receive loop, with bounded concurrency and graceful
//!   shutdown.
//! - [`handler`]: one message: processed while a heartbeat keeps it hidden,
//!   then deleted, dead-lettered or hidden for a retry.
//! - [`outcome`]: how a message ended, logged, counted and tallied in one
//!   place.
//! - [`process`]: one object: fetch, verify, parse, apply exactly once.
//! - [`acks`]: deleting finished messages, ten per call.
//! - [`protection`]: ECS task scale-in protection while messages are in hand.
//! - [`secret`]: the database password from Secrets Manager, re-read when
//!   PostgreSQL refuses it.
//! - [`Transformer::run`]: checks what it depends on, then runs the loop.
//! - [`ops`]: the operator's commands: `redrive`, `quarantine`, `status`.
//!
//! What happens to a message:
//!
//! | outcome                                   | the message                                  |
//! |-------------------------------------------|----------------------------------------------|
//! | applied, or already applied (ledger)      | deleted after the commit, in batches of ten  |
//! | S3 test event, non-create S3 event        | deleted                                      |
//! | can never succeed (not JSON, unknown format or resource, object missing, checksum or record count mismatch, not an array) | moved to the dead-letter queue with the reason |
//! | failed for a passing reason (database or S3 unreachable) | hidden for RETRY_DELAY, doubling per receive; the redrive policy catches what keeps failing |
//! | heartbeat lost (another worker may have it) | work on it stops                           |
//! | not finished by the shutdown deadline     | handed back (visible again at once)          |
//!
//! Nothing is deleted before its rows are committed, and applying an object
//! twice changes nothing, so any crash at any moment loses and duplicates
//! nothing.

mod acks;
mod handler;
mod listener;
mod metrics;
mod outcome;
mod queue;
// Public for the binary (settings, secret, the operator's commands) and
// for the tests that drive one object through `process` or time the
// scale-in protection.
pub mod ops;
pub mod process;
pub mod protection;
pub mod secret;
pub mod settings;

use anyhow::bail;
use pipeline_core::aws::{AwsClients, check_queue};
use pipeline_core::health;
use pipeline_core::location::LocalDir;
use pipeline_core::spec::Spec;
use pipeline_store::{DatabaseUrl, Store, connect_waiting, migrations, tables};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::acks::Acks;
use crate::handler::MessageHandler;
use crate::listener::{Limits, Listener};
use crate::metrics::Metrics;
pub use crate::outcome::RunReport;
use crate::process::Context;
use crate::protection::ScaleInProtection;
use crate::queue::{Sqs, SqsQueue};
use crate::settings::Config;

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Until shutdown is requested.
    Serve,
    /// Until the queue is empty, with nothing in flight anywhere.
    Drain,
}

/// Everything a run needs, built once per process.
#[derive(Debug)]
pub struct Transformer {
    config: Config,
    aws: AwsClients,
    queue: SqsQueue,
    cx: Context,
}

impl Transformer {
    pub fn new(mut config: Config, aws: AwsClients) -> anyhow::Result<Self> {
        if let Some(secret_id) = &config.database_secret {
            config.database_url = secret::with_secret(config.database_url, &aws, secret_id);
        }
        let queue = SqsQueue::new(
            aws.sqs.clone(),
            config.queue_url.clone(),
            config.dead_letter_queue_url.clone(),
        );
        let cx = Context {
            s3: aws.s3.clone(),
            store: Store::new(&config.database_url, config.concurrency.get()),
            resources: config.resources,
        };
        Ok(Self {
            config,
            aws,
            queue,
            cx,
        })
    }

    /// Checks, before any message is taken, that the database is reachable
    /// and fully migrated, that each resource's table can take its rows, and
    /// that the queue answers, waiting up to `STARTUP_WAIT` for each to
    /// answer at all.
    pub async fn check(&self) -> anyhow::Result<()> {
        let url = &self.config.database_url;
        let wait = self.config.startup_wait;
        url.load_password(wait).await?;
        let pending = migrations::pending(url, wait, self.config.migrations_dir.as_deref()).await?;
        if !pending.is_empty() {
            bail!(
                "database {url} has {} pending migration(s) ({}): run `transformer migrate` first",
                pending.len(),
                pending.join(", ")
            );
        }
        check_tables(url, self.config.resources, wait).await?;
        check_queue(&self.aws, self.queue.url(), wait).await?;
        Ok(())
    }

    /// Receives and applies messages until `shutdown` is cancelled or, in
    /// [`Mode::Drain`], until the queue is drained. Then finishes the
    /// messages in hand, within the shutdown deadline, and returns.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<RunReport> {
        let mode = self.config.mode;
        self.check().await?;
        self.find_dead_letter_queue().await;
        let config = &self.config;
        info!(
            queue.url = %self.queue.url(),
            dead_letter_queue.url = self.queue.dead_letter_url().map(|u| u.as_str()),
            concurrency = config.concurrency.get(),
            messages_in_hand = config.messages_in_hand(),
            ?mode,
            "Receiving from {}",
            self.queue.url()
        );
        // Healthy from here: the database and the queue answered.
        let protection = ScaleInProtection::start(
            config.ecs_agent_uri.as_ref(),
            config.scale_in_protection_max,
        );
        let acks = Arc::new(Acks::start(self.queue.clone()));
        let handler = MessageHandler {
            queue: self.queue.clone(),
            cx: self.cx.clone(),
            acks: Arc::clone(&acks),
            metrics: Metrics::new(),
            visibility_timeout: config.visibility_timeout,
            retry_delay: config.retry_delay,
        };
        let sqs = Sqs {
            queue: self.queue.clone(),
            acks,
            visibility_timeout: config.visibility_timeout,
        };
        let limits = Limits {
            mode,
            in_hand: config.messages_in_hand(),
            shutdown_timeout: config.shutdown_timeout,
        };
        let listener = Listener::new(
            Arc::new(sqs),
            Arc::new(handler),
            limits,
            &protection,
            shutdown,
        );
        let report = health::while_healthy(config.health_file.clone(), listener.run()).await;
        protection.stop().await;
        report
    }

    /// Without `DEAD_LETTER_QUEUE_URL`, the queue's redrive policy names it.
    async fn find_dead_letter_queue(&mut self) {
        if self.queue.dead_letter_url().is_some() {
            return;
        }
        match self.queue.discover_dead_letter_queue().await {
            Ok(Some(_)) => {}
            Ok(None) => warn!(
                "{} has no redrive policy and DEAD_LETTER_QUEUE_URL is not set: \
                 messages that can never succeed will stay on the queue",
                self.queue.url()
            ),
            Err(e) => warn!("{}", pipeline_core::error_chain(&e)),
        }
    }
}

/// Applies the pending migrations of the database at `url`, the built-in
/// ones then those of `dir`, waiting up to `wait` for it to answer, and
/// reading its password from its source first, if it has one. Then checks
/// that every table can take its resource's rows: a deployment whose
/// migrations do not match its resources file stops here, before any
/// transformer runs it.
pub async fn migrate(
    url: &DatabaseUrl,
    wait: Duration,
    dir: Option<&LocalDir>,
    resources: &Spec,
) -> anyhow::Result<()> {
    url.load_password(wait).await?;
    let applied = migrations::run_pending(url, wait, dir).await?;
    if applied.is_empty() {
        info!("Database {url} is up to date");
    } else {
        info!(
            "Applied {} migration(s) to {url}: {}",
            applied.len(),
            applied.join(", ")
        );
    }
    check_tables(url, resources, wait).await
}

/// Refuses, in one line, a table that cannot take its resource's rows:
/// otherwise each of that resource's objects would be dead-lettered, one by
/// one, for the same reason.
async fn check_tables(url: &DatabaseUrl, resources: &Spec, wait: Duration) -> anyhow::Result<()> {
    let mut conn = connect_waiting(url, wait).await?;
    for spec in &resources.resources {
        let live = tables::live_table(&mut conn, &spec.table).await?;
        let differences = tables::differences(spec, live.as_ref());
        if !differences.is_empty() {
            bail!(
                "database {url}: table `{}` cannot take the rows of resource `{}` ({}): {}. `transformer schema --write DIR` writes the migration that makes it match; apply it with `transformer migrate` (MIGRATIONS_DIR=DIR)",
                spec.table,
                spec.name,
                resources.source,
                differences.join("; ")
            );
        }
    }
    Ok(())
}
