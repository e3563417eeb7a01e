//! One message, from receipt to its [`Outcome`]: process it while a
//! heartbeat keeps it hidden, then tell the queue (delete, dead-letter,
//! hide for a retry, or hand back at the shutdown deadline).

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use pipeline_core::message::Incoming;
use pipeline_core::metrics::queue_name;
use pipeline_core::retry::Backoff;
use pipeline_core::trace_context;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info_span};

use crate::acks::{Ack, Acks};
use crate::listener::Handler;
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::process::{self, Context, ProcessError};
use crate::queue::{QueueError, SqsQueue, receive_count};

/// Retries of a failing message are never delayed longer than this.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);

/// Handles the messages of the transformer's queue.
#[derive(Debug)]
pub struct MessageHandler {
    pub queue: SqsQueue,
    pub cx: Context,
    pub acks: Arc<Acks>,
    pub metrics: Metrics,
    /// How long a message stays hidden; the heartbeat renews it every third.
    pub visibility_timeout: Duration,
    /// The first delay before a failed message is tried again.
    pub retry_delay: Duration,
}

/// What a message came to when it was read and applied.
enum Processed {
    Applied(Vec<process::Applied>),
    /// Nothing to apply: says what it was.
    Ignored(String),
}

impl Handler for MessageHandler {
    async fn handle(&self, message: Message, hand_back: CancellationToken) -> Outcome {
        let id = message.message_id.clone().unwrap_or_default();
        let span = info_span!(
            "process message",
            otel.kind = "consumer",
            messaging.system = "aws_sqs",
            messaging.operation.name = "process",
            messaging.destination.name = queue_name(self.queue.url()),
            messaging.message.id = %id,
        );
        // Continue the importer's trace: it sent its context along.
        trace_context::set_parent(&span, &trace_headers(&message));
        async {
            let started = Instant::now();
            let outcome = self.work_on(&message, &id, hand_back).await;
            let took = started.elapsed();
            outcome.log(&id, took);
            outcome.record(&self.metrics);
            let source = pipeline_core::metrics::sqs("process", self.queue.url());
            self.metrics.consumed.add(1, &source);
            self.metrics
                .process_duration
                .record(took.as_secs_f64(), &source);
            if let Some(age) = message_age(&message) {
                self.metrics.message_age.record(age.as_secs_f64(), &source);
            }
            outcome
        }
        .instrument(span)
        .await
    }
}

impl MessageHandler {
    /// Processes the message while keeping it hidden, then tells the queue.
    async fn work_on(&self, message: &Message, id: &str, hand_back: CancellationToken) -> Outcome {
        let Some(receipt) = message.receipt_handle.clone() else {
            return Outcome::Abandoned("it has no receipt handle: skipped".into());
        };
        let result = tokio::select! {
            result = self.process(message, id) => result,
            e = self.heartbeat(&receipt) => {
                // Another worker may have it now: stop, and let the ledger
                // sort out whatever both of us did.
                return Outcome::Abandoned(format!(
                    "cannot keep it hidden ({}): stopped working on it",
                    pipeline_core::error_chain(&e)
                ));
            }
            () = hand_back.cancelled() => {
                return Outcome::HandedBack(
                    self.queue.set_visibility(&receipt, Duration::ZERO).await,
                );
            }
        };
        match result {
            Ok(processed) => {
                self.acks.delete(Ack {
                    message_id: id.to_owned(),
                    receipt_handle: receipt,
                });
                match processed {
                    Processed::Applied(applied) => Outcome::Applied(applied),
                    Processed::Ignored(what) => Outcome::Ignored(what),
                }
            }
            Err(error) if error.is_permanent() => {
                let reason = pipeline_core::error_chain(&error);
                match self.queue.dead_letter(message, &reason).await {
                    Ok(dead_letter_id) => Outcome::DeadLettered {
                        error,
                        dead_letter_id,
                    },
                    Err(e) => self.retry_later(message, &receipt, error, Some(e)).await,
                }
            }
            Err(error) => self.retry_later(message, &receipt, error, None).await,
        }
    }

    /// Reads the message and applies every object it names.
    async fn process(&self, message: &Message, id: &str) -> Result<Processed, ProcessError> {
        let body = message.body.as_deref().unwrap_or_default();
        match Incoming::decode(body).map_err(|source| ProcessError::UnknownFormat { source })? {
            Incoming::TestEvent => Ok(Processed::Ignored("S3 test event".into())),
            Incoming::Ignored(events) => Ok(Processed::Ignored(format!("S3 event {events}"))),
            Incoming::Objects(objects) => {
                let mut applied = Vec::with_capacity(objects.len());
                for object in &objects {
                    applied.push(process::apply_object(&self.cx, id, object).await?);
                }
                Ok(Processed::Applied(applied))
            }
        }
    }

    /// Keeps a message hidden while it is worked on: extends its visibility
    /// every third of the timeout. Returns only when that fails.
    async fn heartbeat(&self, receipt: &str) -> QueueError {
        let timeout = self.visibility_timeout;
        keep_hidden(timeout, || self.queue.set_visibility(receipt, timeout)).await
    }

    /// Hides a failed message for a delay that doubles with each receive.
    async fn retry_later(
        &self,
        message: &Message,
        receipt: &str,
        error: ProcessError,
        not_dead_lettered: Option<QueueError>,
    ) -> Outcome {
        let attempts = receive_count(message);
        let delay = retry_delay(self.retry_delay, attempts);
        let hidden = self.queue.set_visibility(receipt, delay).await;
        Outcome::Retrying {
            error,
            attempts,
            delay: hidden.map(|()| delay),
            not_dead_lettered,
        }
    }
}

/// Extends a message's visibility by `timeout` every third of `timeout`
/// until `extend` fails, and returns why. Every third, not just before it
/// runs out: an extension that comes late (a slow call, a busy runtime)
/// still lands before SQS would give the message to another worker.
async fn keep_hidden<F, Fut>(timeout: Duration, mut extend: F) -> QueueError
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), QueueError>>,
{
    loop {
        tokio::time::sleep(timeout / 3).await;
        if let Err(e) = extend().await {
            return e;
        }
    }
}

/// The delay before the next try of a message received `attempts` times:
/// `base`, doubling with each receive, at most [`MAX_RETRY_DELAY`].
fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let policy = Backoff {
        first: base,
        max: MAX_RETRY_DELAY,
        attempts: None,
        full_jitter: false,
    };
    policy.pause_before(attempts.saturating_add(1))
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

    /// The cadence itself, in paused time: each extension comes a third of
    /// the timeout after the one before (the receipt, for the first), so
    /// two can be late or fail and the message is still hidden.
    #[tokio::test(start_paused = true)]
    async fn the_heartbeat_extends_every_third_of_the_visibility_timeout() {
        let timeout = Duration::from_secs(60);
        let received = tokio::time::Instant::now();
        let mut extended = Vec::new();
        let error = keep_hidden(timeout, || {
            extended.push(received.elapsed());
            let failed = extended.len() == 6;
            async move {
                if failed {
                    Err(QueueError::NoDeadLetterQueue {
                        queue: "stand-in for a failed call".into(),
                    })
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(
            matches!(error, QueueError::NoDeadLetterQueue { .. }),
            "{error}"
        );
        assert_eq!(extended.len(), 6, "it stops at the first failure");
        let mut hidden_until = timeout;
        for (n, at) in extended.iter().enumerate() {
            assert!(
                *at <= hidden_until - timeout * 2 / 3,
                "extension {n} at {at:?}: the message was hidden until {hidden_until:?} only"
            );
            hidden_until = *at + timeout;
        }
    }

    #[test]
    fn retry_delays_double_per_receive_up_to_15_minutes() {
        let base = Duration::from_secs(10);
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(base, n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 900, 900]);
        assert_eq!(retry_delay(base, 0), base);
        assert_eq!(retry_delay(base, u32::MAX), MAX_RETRY_DELAY);
    }
}
