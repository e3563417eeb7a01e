//! How one message ended: the one place where that is logged, counted in
//! the metrics and added to the run's totals.

use opentelemetry::KeyValue;
use pipeline_core::error_chain;
use pipeline_store::ledger::Effect;
use pipeline_store::rows::UpsertCounts;
use std::time::Duration;
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use crate::process::{Applied, ProcessError};
use crate::queue::QueueError;

/// How one message ended, with what its log line and metrics need. The
/// queue has already been told (deleted, dead-lettered, hidden, handed
/// back) when an outcome exists.
#[derive(Debug)]
pub enum Outcome {
    /// Every object it names applied, or found in the ledger; deleted.
    Applied(Vec<Applied>),
    /// Nothing to apply (an S3 test event, a non-create event): deleted.
    /// Says what it was.
    Ignored(String),
    /// Can never succeed: moved to the dead-letter queue, where it has
    /// `dead_letter_id`.
    DeadLettered {
        error: ProcessError,
        dead_letter_id: String,
    },
    /// To be tried again after `delay` (or, if it could not be hidden that
    /// long, after its visibility timeout: the `Err`).
    Retrying {
        error: ProcessError,
        /// Its receive count, this one included.
        attempts: u32,
        delay: Result<Duration, QueueError>,
        /// It can never succeed, but the dead-letter queue refused it.
        not_dead_lettered: Option<QueueError>,
    },
    /// Not finished by the shutdown deadline: made visible again (or, on
    /// `Err`, left to reappear after its visibility timeout).
    HandedBack(Result<(), QueueError>),
    /// Work on it stopped, for the reason given; it reappears after its
    /// visibility timeout and the ledger settles what was done twice.
    Abandoned(String),
}

impl Outcome {
    /// Logs the outcome of message `id`, inside its span.
    pub fn log(&self, id: &str, took: Duration) {
        match self {
            Self::Applied(applied) => {
                for one in applied {
                    log_applied(id, one, took);
                }
            }
            Self::Ignored(what) => info!("Message {id}: {what}: nothing to apply; deleted"),
            Self::DeadLettered {
                error,
                dead_letter_id,
            } => error!(
                dead_letter.message.id = %dead_letter_id,
                "Message {id}: {}; moved to the dead-letter queue",
                error_chain(error)
            ),
            Self::Retrying {
                error,
                attempts,
                delay,
                not_dead_lettered,
            } => {
                let error = error_chain(error);
                match not_dead_lettered {
                    Some(e) => error!(
                        "Message {id}: {error}; could not dead-letter it: {}",
                        error_chain(e)
                    ),
                    None => warn!("Message {id}: {error}"),
                }
                match delay {
                    Ok(delay) => info!(
                        "Message {id}: receive {attempts}; retrying in {}",
                        humantime::format_duration(*delay)
                    ),
                    Err(e) => warn!(
                        "Message {id}: {}; it reappears after its visibility timeout",
                        error_chain(e)
                    ),
                }
            }
            Self::HandedBack(Ok(())) => warn!(
                "Message {id}: not finished by the shutdown deadline: handed back to the queue"
            ),
            Self::HandedBack(Err(e)) => warn!(
                "Message {id}: not finished by the shutdown deadline and {}; it reappears after its visibility timeout",
                error_chain(e)
            ),
            Self::Abandoned(why) => error!("Message {id}: {why}"),
        }
    }

    /// Counts the outcome in the metrics.
    pub fn record(&self, m: &Metrics) {
        let outcome_is = |value: &'static str| [KeyValue::new("outcome", value)];
        let error_is = |e: &ProcessError| [KeyValue::new("error.type", e.kind())];
        match self {
            Self::Applied(applied) => {
                for one in applied {
                    match &one.effect {
                        Effect::Written { rows, quarantined } => {
                            // Written: the resource is known.
                            let resource =
                                KeyValue::new("resource", one.resource.unwrap_or_default());
                            let rows_are = |value: &'static str| {
                                [KeyValue::new("outcome", value), resource.clone()]
                            };
                            m.objects.add(1, &rows_are("applied"));
                            m.rows.add(rows.inserted, &rows_are("inserted"));
                            m.rows.add(rows.updated, &rows_are("updated"));
                            m.rows.add(rows.unchanged, &rows_are("unchanged"));
                            m.quarantined.add(*quarantined, &[resource]);
                        }
                        Effect::AlreadyApplied(_) => {
                            m.objects.add(1, &outcome_is("already_applied"));
                        }
                    }
                }
            }
            Self::DeadLettered { error, .. } => {
                m.dead_lettered.add(1, &[]);
                m.errors.add(1, &error_is(error));
            }
            Self::Retrying { error, .. } => m.errors.add(1, &error_is(error)),
            Self::Ignored(_) | Self::HandedBack(_) | Self::Abandoned(_) => {}
        }
    }
}

/// Totals over one run, for the final log line and for tests.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Messages deleted after their objects were applied.
    pub messages_applied: u64,
    /// Objects the ledger already had: nothing written. (Objects, not
    /// messages: a message of S3 events may name several.)
    pub duplicate_objects: u64,
    pub dead_lettered: u64,
    pub retried: u64,
    pub handed_back: u64,
    pub abandoned: u64,
    pub ignored: u64,
    pub records: u64,
    pub rows: UpsertCounts,
    pub quarantined: u64,
    /// Receives and drain checks that failed: the queue could not be reached.
    pub queue_failures: u64,
}

impl RunReport {
    /// Adds the outcome of one message task; a task that panicked counts as
    /// abandoned.
    pub fn add(&mut self, done: Result<Outcome, tokio::task::JoinError>) {
        match done {
            Ok(Outcome::Applied(applied)) => {
                self.messages_applied += 1;
                for one in applied {
                    self.records += one.records;
                    match one.effect {
                        Effect::Written { rows, quarantined } => {
                            self.rows += rows;
                            self.quarantined += quarantined;
                        }
                        Effect::AlreadyApplied(_) => self.duplicate_objects += 1,
                    }
                }
            }
            Ok(Outcome::Ignored(_)) => self.ignored += 1,
            Ok(Outcome::DeadLettered { .. }) => self.dead_lettered += 1,
            Ok(Outcome::Retrying { .. }) => self.retried += 1,
            Ok(Outcome::HandedBack(_)) => self.handed_back += 1,
            Ok(Outcome::Abandoned(_)) => self.abandoned += 1,
            Err(e) => {
                // A panic in one message task must not take the others down;
                // the message reappears after its visibility timeout.
                error!("A message task failed: {e}");
                self.abandoned += 1;
            }
        }
    }

    /// The run's last log line.
    pub fn log(&self, took: Duration) {
        info!(
            messages.applied = self.messages_applied,
            objects.duplicates = self.duplicate_objects,
            messages.dead_lettered = self.dead_lettered,
            messages.retried = self.retried,
            messages.handed_back = self.handed_back,
            messages.abandoned = self.abandoned,
            queue.failures = self.queue_failures,
            records = self.records,
            rows.inserted = self.rows.inserted,
            rows.updated = self.rows.updated,
            rows.unchanged = self.rows.unchanged,
            records.quarantined = self.quarantined,
            duration_ms = took.as_millis() as u64,
            "Stopped after applying {} message(s) ({} object(s) already applied, {} dead-lettered, {} to retry, {} handed back)",
            self.messages_applied,
            self.duplicate_objects,
            self.dead_lettered,
            self.retried,
            self.handed_back,
        );
    }
}

fn log_applied(id: &str, applied: &Applied, took: Duration) {
    let object = &applied.object;
    match &applied.effect {
        Effect::Written { rows, quarantined } => info!(
            s3.bucket = %object.bucket,
            s3.key = %object.key,
            resource = applied.resource.unwrap_or_default(),
            records = applied.records,
            rows.inserted = rows.inserted,
            rows.updated = rows.updated,
            rows.unchanged = rows.unchanged,
            records.quarantined = quarantined,
            duration_ms = took.as_millis() as u64,
            "Message {id}: applied {object} ({} records of {}: {} inserted, {} updated, {} unchanged, {} quarantined)",
            applied.records,
            applied.resource.unwrap_or_default(),
            rows.inserted,
            rows.updated,
            rows.unchanged,
            quarantined,
        ),
        Effect::AlreadyApplied(entry) => info!(
            s3.bucket = %object.bucket,
            s3.key = %object.key,
            "Message {id}: {object} (sha256 {}) was already applied by message {} at {}: nothing to do",
            entry.sha256,
            entry.message_id,
            entry.applied_at,
        ),
    }
}
