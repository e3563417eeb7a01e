//! Deleting finished messages in batches.
//!
//! An SQS call costs about as much CPU as a receive whatever it does (on
//! LocalStack, 3 ms), so finished messages are deleted together with
//! `DeleteMessageBatch`: the receive loop flushes them before each receive,
//! and a message waits at most [`LINGER`] otherwise. Waiting is safe: its
//! rows are committed, so if this process dies before the delete, the
//! redelivery finds the ledger row and changes nothing.

use pipeline_core::batch::{Batcher, Sink};
use std::time::Duration;
use tracing::{debug, warn};

use crate::queue::SqsQueue;

/// How long a finished message waits for others before it is deleted alone.
pub const LINGER: Duration = Duration::from_millis(100);

/// A finished message to delete.
#[derive(Debug)]
pub struct Ack {
    pub message_id: String,
    pub receipt_handle: String,
}

/// The handle of the task that deletes messages: a [`Batcher`] that waits
/// [`LINGER`] for company. The task ends once this is dropped and what was
/// pending is deleted.
#[derive(Debug)]
pub struct Acks {
    batcher: Batcher<Ack>,
}

impl Acks {
    pub fn start(queue: SqsQueue) -> Self {
        let (batcher, _task) = Batcher::start(Deletes { queue }, LINGER);
        Self { batcher }
    }

    /// Queues a finished message for deletion.
    pub fn delete(&self, ack: Ack) {
        if let Err(ack) = self.batcher.push(ack) {
            // Only once the deleting task has died: the redelivery finds
            // the ledger row.
            warn!(
                "Message {}: applied, but no longer deleting messages",
                ack.message_id
            );
        }
    }

    /// Returns once every message queued so far was deleted (or failed to be).
    pub async fn flush(&self) {
        self.batcher.flush().await;
    }
}

struct Deletes {
    queue: SqsQueue,
}

impl Sink<Ack> for Deletes {
    async fn send(&mut self, batch: Vec<Ack>) {
        delete(&self.queue, batch).await;
    }
}

/// Deletes `pending` in one call.
async fn delete(queue: &SqsQueue, pending: Vec<Ack>) {
    let batch: Vec<(&str, &str)> = pending
        .iter()
        .map(|a| (a.message_id.as_str(), a.receipt_handle.as_str()))
        .collect();
    match queue.delete_batch(&batch).await {
        Ok(failed) => {
            for (id, reason) in failed {
                // Committed already: the redelivery will find the ledger row.
                warn!(messaging.message.id = %id, "Message {id}: applied, but {reason}");
            }
            debug!(messages = batch.len(), "Deleted {} message(s)", batch.len());
        }
        Err(e) => {
            let e = pipeline_core::error_chain(&e);
            for (id, _) in &batch {
                warn!(messaging.message.id = %id, "Message {id}: applied, but {e}");
            }
        }
    }
}
