//! `transformer redrive`: the dead-letter queue's messages back to the
//! queue, once their cause is fixed.
//!
//! Two ways, both at least once and neither ever losing a message:
//!
//! - **SQS's message move task** (`StartMessageMoveTask`), the default:
//!   SQS moves every message itself, and keeps going if this command is
//!   killed; run again, the command waits for the task in progress instead
//!   of starting a second one (SQS allows one per queue). It needs the
//!   dead-letter queue to be named by a queue's redrive policy.
//! - **One by one** (`--one-by-one`, implied by `--max`, and the fallback
//!   when SQS refuses a move task): receive up to ten, send them to the
//!   queue, and delete from the dead-letter queue only what was sent. A
//!   kill between the send and the delete leaves those messages on both
//!   queues: the dead-letter copy comes back after VISIBILITY_TIMEOUT and a
//!   second run sends it again, which the ledger makes cost nothing.
//!
//! A redriven message keeps its body and its attributes (content type,
//! schema version, trace context), less the three the transformer added
//! when it dead-lettered it: a redrive is a fresh start.
//!
//! AWS: <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_StartMessageMoveTask.html>
//! and <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ListMessageMoveTasks.html>.

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use clap::Args;
use pipeline_core::contract::attribute;
use pipeline_core::error_chain;
use pipeline_core::message::Incoming;
use std::io::Write;
use std::num::NonZeroUsize;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use url::Url;

use crate::queue::{MAX_RECEIVE, QueueError, SqsQueue};

/// `transformer redrive`'s own options.
#[derive(Debug, Clone, Args)]
pub struct Redrive {
    /// List each dead letter (message id, object, dead_letter_reason) without moving
    /// anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Move (or list) at most N messages; implies --one-by-one.
    #[arg(long, value_name = "N")]
    pub max: Option<NonZeroUsize>,
    /// Receive, send and delete each message here rather than start SQS's message move
    /// task (the fallback anyway where the endpoint refuses move tasks).
    #[arg(long)]
    pub one_by_one: bool,
}

/// How long a move task is waited for between looks.
const POLL: Duration = Duration::from_secs(1);

/// What a redrive did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Messages sent back to the queue (or, in a dry run, listed).
    pub moved: u64,
    /// Messages that could not be sent: they stay on the dead-letter queue.
    pub failed: u64,
}

impl Redrive {
    /// Moves (or lists) the messages of `dlq`, the dead-letter queue of
    /// `queue`, back to `queue`, writing one line per message to `out`
    /// (none when SQS's move task moves them). `visibility` is how long a message
    /// received one by one stays hidden while it is moved or listed.
    pub async fn run(
        &self,
        sqs: &aws_sdk_sqs::Client,
        queue: &Url,
        dlq: &Url,
        visibility: Duration,
        out: &mut (dyn Write + Send),
        stop: CancellationToken,
    ) -> anyhow::Result<Redriven> {
        let one_by_one = self.one_by_one || self.max.is_some() || self.dry_run;
        if !one_by_one {
            match move_task(sqs, dlq, queue, &stop).await? {
                Some(moved) => {
                    info!(
                        messages.moved = moved,
                        "Moved {moved} message(s) from {dlq} to {queue} (SQS message move task)"
                    );
                    return Ok(Redriven { moved, failed: 0 });
                }
                None => info!("Moving the messages one by one instead"),
            }
        }
        let dead_letters = SqsQueue::new(sqs.clone(), dlq.clone(), None);
        let mut mover = OneByOne {
            sqs,
            dead_letters: &dead_letters,
            queue,
            visibility,
            limit: self.max.map(NonZeroUsize::get),
            dry_run: self.dry_run,
        };
        let done = mover.run(out, &stop).await?;
        if self.dry_run {
            info!(
                messages = done.moved,
                "{} message(s) on {dlq}; dry run: nothing was moved", done.moved
            );
        } else {
            info!(
                messages.moved = done.moved,
                messages.failed = done.failed,
                "Moved {} message(s) from {dlq} to {queue}{}",
                done.moved,
                if done.failed > 0 {
                    format!("; {} could not be sent and stay there", done.failed)
                } else {
                    String::new()
                }
            );
        }
        Ok(done)
    }
}

/// The queue's ARN, which the move task API takes instead of its URL.
async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &Url) -> Result<String, QueueError> {
    let output = sqs
        .get_queue_attributes()
        .queue_url(url.as_str())
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(QueueError::call("read the ARN of", url))?;
    output
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| QueueError::Answer {
            queue: url.to_string(),
            what: "its QueueArn".into(),
        })
}

/// Runs SQS's message move task from `dlq` to `queue` to its end (or the
/// one already running, if a redrive was interrupted), and returns how many
/// messages it moved. `None`: SQS refused to start one (the endpoint has no
/// move tasks, or `dlq` is no queue's redrive target): move them one by one.
async fn move_task(
    sqs: &aws_sdk_sqs::Client,
    dlq: &Url,
    queue: &Url,
    stop: &CancellationToken,
) -> anyhow::Result<Option<u64>> {
    let source = queue_arn(sqs, dlq).await?;
    let latest = |sqs: aws_sdk_sqs::Client, source: String| async move {
        sqs.list_message_move_tasks()
            .source_arn(source)
            .max_results(1)
            .send()
            .await
            .map(|out| out.results.unwrap_or_default().into_iter().next())
    };
    let before = match latest(sqs.clone(), source.clone()).await {
        Ok(task) => task,
        Err(e) => {
            warn!("{dlq} cannot list message move tasks ({})", error_chain(&e));
            return Ok(None);
        }
    };
    let running = before
        .as_ref()
        .is_some_and(|t| t.status.as_deref() == Some("RUNNING"));
    let started_after = before.as_ref().map(|t| t.started_timestamp);
    if running {
        info!("A message move task from {dlq} is already running: waiting for it");
    } else {
        let destination = queue_arn(sqs, queue).await?;
        if let Err(e) = sqs
            .start_message_move_task()
            .source_arn(&source)
            .destination_arn(&destination)
            .send()
            .await
        {
            warn!(
                "SQS would not start a message move task from {dlq}: {}",
                error_chain(&e)
            );
            return Ok(None);
        }
        info!("Started an SQS message move task from {dlq} to {queue}");
    }
    let mut moved = 0;
    loop {
        let task = latest(sqs.clone(), source.clone())
            .await
            .map_err(QueueError::call("list the message move tasks of", dlq))?;
        // Ours is the newest task, once SQS lists it.
        let ours = task
            .filter(|t| running || started_after.is_none_or(|before| t.started_timestamp > before));
        if let Some(task) = ours {
            moved = task.approximate_number_of_messages_moved.max(0) as u64;
            match task.status.as_deref() {
                Some("COMPLETED") => return Ok(Some(moved)),
                Some("RUNNING") | Some("CANCELLING") | None => {}
                Some(other) => anyhow::bail!(
                    "the message move task from {dlq} ended {other} after moving {moved} message(s): {}",
                    task.failure_reason.as_deref().unwrap_or("no reason given")
                ),
            }
        }
        tokio::select! {
            () = stop.cancelled() => {
                info!(
                    messages.moved = moved,
                    "Stopped waiting after {moved} message(s) moved; the move task goes on in SQS \
                     (`transformer redrive` again waits for it)"
                );
                return Ok(Some(moved));
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Receive, send, then delete: never a delete before its send succeeded.
struct OneByOne<'a> {
    sqs: &'a aws_sdk_sqs::Client,
    dead_letters: &'a SqsQueue,
    queue: &'a Url,
    visibility: Duration,
    limit: Option<usize>,
    dry_run: bool,
}

impl OneByOne<'_> {
    async fn run(
        &mut self,
        out: &mut (dyn Write + Send),
        stop: &CancellationToken,
    ) -> anyhow::Result<Redriven> {
        let mut done = Redriven::default();
        // Listed in a dry run: handed back at the end, so nothing is moved
        // and nothing stays hidden.
        let mut listed: Vec<String> = Vec::new();
        let outcome = async {
            loop {
                let seen = (done.moved + done.failed) as usize;
                let want = self
                    .limit
                    .map_or(MAX_RECEIVE, |l| l.saturating_sub(seen).min(MAX_RECEIVE));
                if want == 0 || stop.is_cancelled() {
                    return Ok(());
                }
                // A short long poll: SQS samples a subset of its servers
                // when not waiting, and could answer empty too early.
                let messages = self
                    .dead_letters
                    .receive(want, Duration::from_secs(1), self.visibility)
                    .await?;
                if messages.is_empty() {
                    return Ok(());
                }
                if self.dry_run {
                    for message in &messages {
                        writeln!(out, "{}", describe(message))?;
                    }
                    done.moved += messages.len() as u64;
                    listed.extend(messages.into_iter().filter_map(|m| m.receipt_handle));
                    continue;
                }
                let moved = self.send_and_delete(&messages, out).await?;
                done.moved += moved;
                done.failed += messages.len() as u64 - moved;
            }
        }
        .await;
        if !listed.is_empty() {
            self.hand_back(&listed).await;
        }
        outcome.map(|()| done)
    }

    /// Sends a batch to the queue, deletes from the dead-letter queue what
    /// was sent, and returns how many were.
    async fn send_and_delete(
        &self,
        messages: &[Message],
        out: &mut (dyn Write + Send),
    ) -> anyhow::Result<u64> {
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| resend_entry(i, m))
            .collect();
        let sent = self
            .sqs
            .send_message_batch()
            .queue_url(self.queue.as_str())
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(QueueError::call("send to", self.queue))?;
        for failed in &sent.failed {
            let id = failed
                .id
                .parse::<usize>()
                .ok()
                .and_then(|i| messages.get(i))
                .and_then(|m| m.message_id.as_deref())
                .unwrap_or("?");
            warn!(
                "{} refused dead letter {id}: {}: {}; it stays on {}",
                self.queue,
                failed.code,
                failed.message.as_deref().unwrap_or_default(),
                self.dead_letters.url()
            );
        }
        let mut to_delete = Vec::new();
        for ok in &sent.successful {
            let Some(message) = ok.id.parse::<usize>().ok().and_then(|i| messages.get(i)) else {
                continue;
            };
            writeln!(out, "moved {} -> {}", describe(message), ok.message_id)?;
            if let (Some(id), Some(receipt)) = (&message.message_id, &message.receipt_handle) {
                to_delete.push((id.as_str(), receipt.as_str()));
            }
        }
        info!(
            "Sent {} dead letter(s) to {}; deleting them from {}",
            to_delete.len(),
            self.queue,
            self.dead_letters.url()
        );
        // Sent but not deleted: it comes back on the dead-letter queue and
        // a second run sends it again; the ledger absorbs the copy.
        for (id, why) in self.dead_letters.delete_batch(&to_delete).await? {
            warn!("Sent dead letter {id} to {} but {why}", self.queue);
        }
        Ok(sent.successful.len() as u64)
    }

    /// Makes the messages a dry run listed visible again at once.
    async fn hand_back(&self, receipts: &[String]) {
        for chunk in receipts.chunks(MAX_RECEIVE) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .unwrap_or_else(|e| unreachable!("id and receipt handle are set: {e}"))
                })
                .collect();
            if let Err(e) = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(self.dead_letters.url().as_str())
                .set_entries(Some(entries))
                .send()
                .await
            {
                warn!(
                    "Listed dead letters stay hidden until their visibility timeout ends: {}",
                    error_chain(&e)
                );
            }
        }
    }
}

/// `<message id>  <object>  <dead_letter_reason>`, one line.
fn describe(message: &Message) -> String {
    let id = message.message_id.as_deref().unwrap_or("?");
    let object = match message.body.as_deref().map(Incoming::decode) {
        Some(Ok(Incoming::Objects(objects))) => objects
            .iter()
            .map(|o| o.object().to_string())
            .collect::<Vec<_>>()
            .join(","),
        Some(Ok(_)) => "(S3 event without an object)".to_owned(),
        Some(Err(_)) | None => "(not an object message)".to_owned(),
    };
    let reason = message
        .message_attributes
        .as_ref()
        .and_then(|a| a.get(attribute::DEAD_LETTER_REASON))
        .and_then(|v| v.string_value())
        .unwrap_or("(no dead_letter_reason: moved by the redrive policy)");
    // One line, whatever the reason holds.
    let reason = reason.replace(['\n', '\r'], " ");
    format!("{id}  {object}  {reason}")
}

/// The attributes the transformer adds when it dead-letters a message.
const DEAD_LETTER_ATTRIBUTES: [&str; 3] = [
    attribute::DEAD_LETTER_REASON,
    attribute::SOURCE_MESSAGE_ID,
    attribute::SOURCE_QUEUE_URL,
];

/// The message as it was sent to the queue the first time.
fn resend_entry(index: usize, message: &Message) -> SendMessageBatchRequestEntry {
    let attributes = message.message_attributes.clone().map(|mut a| {
        a.retain(|name, _| !DEAD_LETTER_ATTRIBUTES.contains(&name.as_str()));
        a
    });
    SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(message.body.as_deref().unwrap_or_default())
        .set_message_attributes(attributes.filter(|a| !a.is_empty()))
        .build()
        .unwrap_or_else(|e| unreachable!("id and body are set: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::contract::string_attribute;

    fn dead_letter() -> Message {
        Message::builder()
            .message_id("m-1")
            .body(r#"{"bucket":"raw","key":"posts/a.json"}"#)
            .message_attributes(
                attribute::CONTENT_TYPE,
                string_attribute("application/json"),
            )
            .message_attributes(
                attribute::DEAD_LETTER_REASON,
                string_attribute("s3://raw/posts/a.json does not exist\nat all"),
            )
            .message_attributes(attribute::SOURCE_MESSAGE_ID, string_attribute("m-0"))
            .build()
    }

    #[test]
    fn a_dead_letter_is_described_on_one_line() {
        assert_eq!(
            describe(&dead_letter()),
            "m-1  s3://raw/posts/a.json  s3://raw/posts/a.json does not exist at all"
        );
    }

    #[test]
    fn a_redriven_message_loses_only_the_dead_letter_attributes() {
        let entry = resend_entry(3, &dead_letter());
        assert_eq!(entry.id, "3");
        assert_eq!(
            entry.message_body,
            r#"{"bucket":"raw","key":"posts/a.json"}"#
        );
        let names: Vec<&String> = entry.message_attributes.as_ref().unwrap().keys().collect();
        assert_eq!(names, [attribute::CONTENT_TYPE]);
    }
}
