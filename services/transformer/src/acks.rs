//! Deleting finished messages in batches.
//!
//! An SQS call costs about as much CPU as a receive whatever it does (on
//! LocalStack, 3 ms), so finished messages are deleted together with
//! `DeleteMessageBatch`: the receive loop flushes them before each receive,
//! and a message waits at most [`LINGER`] otherwise. Waiting is safe: its
//! rows are committed, so if this process dies before the delete, the
//! redelivery finds the ledger row and changes nothing.

use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::queue::{MAX_RECEIVE, SqsQueue};

/// How long a finished message waits for others before it is deleted alone.
pub const LINGER: Duration = Duration::from_millis(100);

/// A finished message to delete.
#[derive(Debug)]
pub struct Ack {
    pub message_id: String,
    pub receipt_handle: String,
}

enum Command {
    Delete(Ack),
    /// Delete everything pending now, then answer.
    Flush(oneshot::Sender<()>),
}

/// The handle of the task that deletes messages; the task ends once this
/// is dropped and what was pending is deleted.
#[derive(Debug)]
pub struct Acks {
    commands: mpsc::UnboundedSender<Command>,
}

impl Acks {
    pub fn start(queue: SqsQueue) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(queue, receiver));
        Self { commands }
    }

    /// Queues a finished message for deletion.
    pub fn delete(&self, ack: Ack) {
        if let Err(mpsc::error::SendError(Command::Delete(ack))) =
            self.commands.send(Command::Delete(ack))
        {
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
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).is_ok() {
            finished.await.ok();
        }
    }
}

async fn run(queue: SqsQueue, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut pending: Vec<Ack> = Vec::with_capacity(MAX_RECEIVE);
    // When the oldest pending message has waited long enough.
    let mut due: Option<Instant> = None;
    loop {
        let command = tokio::select! {
            command = commands.recv() => command,
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                delete(&queue, &mut pending).await;
                due = None;
                continue;
            }
        };
        match command {
            Some(Command::Delete(ack)) => {
                pending.push(ack);
                due.get_or_insert_with(|| Instant::now() + LINGER);
                if pending.len() == MAX_RECEIVE {
                    delete(&queue, &mut pending).await;
                    due = None;
                }
            }
            Some(Command::Flush(done)) => {
                delete(&queue, &mut pending).await;
                due = None;
                done.send(()).ok();
            }
            None => {
                delete(&queue, &mut pending).await;
                return;
            }
        }
    }
}

/// Deletes `pending` in one call and empties it.
async fn delete(queue: &SqsQueue, pending: &mut Vec<Ack>) {
    if pending.is_empty() {
        return;
    }
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
            for (id, _) in &batch {
                warn!(messaging.message.id = %id, "Message {id}: applied, but {e}");
            }
        }
    }
    pending.clear();
}
