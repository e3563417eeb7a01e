//! The SQS queue the transformer reads, its dead-letter queue, and [`Sqs`],
//! the queue as the receive loop sees it.

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use pipeline_core::contract::{attribute, string_attribute};
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

use crate::acks::Acks;
use crate::listener::Queue;

/// SQS allows at most 10 messages per receive and 20 s of long polling.
pub const MAX_RECEIVE: usize = 10;
pub const LONG_POLL: Duration = Duration::from_secs(20);

/// A dead letter's reason is cut to this: enough for any error chain, and
/// well inside SQS's 256 KiB for the message and its attributes.
const MAX_REASON_BYTES: usize = 4096;

/// SQS caps a message's visibility timeout at 12 hours.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// A queue call that failed, or an answer that could not be used. The
/// SDK's error stays the typed source: the one-line text is made where it
/// is logged, with `pipeline_core::error_chain`.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot {action} {queue}")]
    Call {
        /// What was asked: `receive from`, `delete it from` ...
        action: &'static str,
        /// The queue's URL, or its ARN where that is all there is.
        queue: String,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
    #[error("{queue} has no dead-letter queue")]
    NoDeadLetterQueue { queue: String },
    #[error("{queue} answered without {what}")]
    Answer { queue: String, what: String },
}

impl QueueError {
    /// `map_err` for a call to `queue` (a URL or an ARN).
    /// The queue's name is only rendered on failure: this sits on every
    /// receive, delete and heartbeat.
    pub fn call<'q, E: Error + Send + Sync + 'static, Q: ToString + ?Sized>(
        action: &'static str,
        queue: &'q Q,
    ) -> impl FnOnce(E) -> Self + 'q {
        move |source| Self::Call {
            action,
            queue: queue.to_string(),
            source: Box::new(source),
        }
    }

    fn answer(queue: &Url, what: impl Into<String>) -> Self {
        Self::Answer {
            queue: queue.to_string(),
            what: what.into(),
        }
    }
}

/// One queue: receive, delete, hide, dead-letter, and tell whether it is empty.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: Url,
    /// Where messages that can never succeed go; `None` leaves them to the
    /// redrive policy, if any.
    dead_letter_url: Option<Url>,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: Url, dead_letter_url: Option<Url>) -> Self {
        Self {
            client,
            url,
            dead_letter_url,
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn dead_letter_url(&self) -> Option<&Url> {
        self.dead_letter_url.as_ref()
    }

    /// Finds the dead-letter queue of this queue's redrive policy.
    pub async fn discover_dead_letter_queue(&mut self) -> Result<Option<Url>, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(self.url.as_str())
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(QueueError::call("read the redrive policy of", &self.url))?;
        let Some(policy) = output
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy))
        else {
            return Ok(None);
        };
        let arn = serde_json::from_str::<serde_json::Value>(&policy)
            .ok()
            .and_then(|p| p.get("deadLetterTargetArn")?.as_str().map(str::to_owned))
            .ok_or_else(|| {
                QueueError::answer(
                    &self.url,
                    format!("a deadLetterTargetArn in its redrive policy: {policy}"),
                )
            })?;
        // arn:aws:sqs:<region>:<account>:<name>
        let parts: Vec<&str> = arn.split(':').collect();
        let (Some(account), Some(name)) = (parts.get(4), parts.get(5)) else {
            return Err(QueueError::answer(
                &self.url,
                format!("an SQS queue ARN as its dead-letter target: {arn}"),
            ));
        };
        let found = self
            .client
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(QueueError::call("find the dead-letter queue", &arn))?;
        let url = found
            .queue_url
            .and_then(|u| Url::parse(&u).ok())
            .ok_or_else(|| QueueError::answer(&self.url, format!("a URL for {arn}")))?;
        self.dead_letter_url = Some(url.clone());
        Ok(Some(url))
    }

    /// Long-polls for up to `max` messages (at most [`MAX_RECEIVE`]), each
    /// hidden from other receivers for `visibility`.
    pub async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(self.url.as_str())
            .max_number_of_messages(max.clamp(1, MAX_RECEIVE) as i32)
            .wait_time_seconds(wait.as_secs().min(LONG_POLL.as_secs()) as i32)
            .visibility_timeout(visibility.min(MAX_VISIBILITY).as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(QueueError::call("receive from", &self.url))?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Deletes a message: call only once its effect is committed.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(self.url.as_str())
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(drop)
            .map_err(QueueError::call("delete it from", &self.url))
    }

    /// Deletes up to [`MAX_RECEIVE`] messages, given as (message id, receipt
    /// handle), in one call. Returns the ones SQS did not delete, with why.
    pub async fn delete_batch(
        &self,
        messages: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, QueueError> {
        // Entry ids only need to be unique within the call; the message id
        // could repeat (a redelivery while the first copy is pending).
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*receipt)
                    .build()
                    .unwrap_or_else(|e| unreachable!("id and receipt handle are set: {e}"))
            })
            .collect();
        let output = self
            .client
            .delete_message_batch()
            .queue_url(self.url.as_str())
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(QueueError::call("delete it from", &self.url))?;
        Ok(output
            .failed
            .iter()
            .map(|f| {
                let id =
                    f.id.parse::<usize>()
                        .ok()
                        .and_then(|i| messages.get(i))
                        .map_or(f.id.as_str(), |(id, _)| id);
                let why = f.message.as_deref().unwrap_or(f.code.as_str());
                (
                    id.to_owned(),
                    format!("{} refused to delete it: {why}", self.url),
                )
            })
            .collect())
    }

    /// Hides a message for `timeout` from now: extends the time to work on
    /// it (heartbeat), delays its retry, or with zero hands it back at once.
    pub async fn set_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(self.url.as_str())
            .receipt_handle(receipt_handle)
            .visibility_timeout(timeout.min(MAX_VISIBILITY).as_secs() as i32)
            .send()
            .await
            .map(drop)
            .map_err(QueueError::call("change its visibility on", &self.url))
    }

    /// Moves a message that can never succeed to the dead-letter queue, with
    /// the reason as a message attribute, then deletes it here. Returns the
    /// message's id on the dead-letter queue.
    pub async fn dead_letter(&self, message: &Message, reason: &str) -> Result<String, QueueError> {
        let Some(dlq) = &self.dead_letter_url else {
            return Err(QueueError::NoDeadLetterQueue {
                queue: self.url.to_string(),
            });
        };
        // SQS refuses an empty body; keep the original attributes, which
        // carry the content type and the schema version.
        let body = message
            .body
            .as_deref()
            .filter(|b| !b.is_empty())
            .unwrap_or("(empty body)");
        let mut send = self
            .client
            .send_message()
            .queue_url(dlq.as_str())
            .message_body(body)
            .set_message_attributes(message.message_attributes.clone())
            .message_attributes(
                attribute::DEAD_LETTER_REASON,
                string_attribute(truncate(reason, MAX_REASON_BYTES)),
            )
            .message_attributes(
                attribute::SOURCE_QUEUE_URL,
                string_attribute(self.url.as_str()),
            );
        if let Some(id) = &message.message_id {
            send = send.message_attributes(attribute::SOURCE_MESSAGE_ID, string_attribute(id));
        }
        let sent = send
            .send()
            .await
            .map_err(QueueError::call("send it to the dead-letter queue", dlq))?;
        if let Some(receipt) = &message.receipt_handle {
            self.delete(receipt).await?;
        }
        Ok(sent.message_id.unwrap_or_default())
    }

    /// True when the queue holds no visible, delayed or in-flight message.
    pub async fn is_drained(&self) -> Result<bool, QueueError> {
        Ok(self.depth().await?.total() == 0)
    }

    /// How many messages the queue holds, as SQS counts them.
    pub async fn depth(&self) -> Result<Depth, QueueError> {
        use QueueAttributeName::{
            ApproximateNumberOfMessages, ApproximateNumberOfMessagesDelayed,
            ApproximateNumberOfMessagesNotVisible,
        };
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(self.url.as_str())
            .attribute_names(ApproximateNumberOfMessages)
            .attribute_names(ApproximateNumberOfMessagesNotVisible)
            .attribute_names(ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(QueueError::call("read the attributes of", &self.url))?;
        let attributes = output.attributes.unwrap_or_default();
        let count = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| QueueError::answer(&self.url, name.as_str()))
        };
        Ok(Depth {
            visible: count(ApproximateNumberOfMessages)?,
            in_flight: count(ApproximateNumberOfMessagesNotVisible)?,
            delayed: count(ApproximateNumberOfMessagesDelayed)?,
        })
    }

    /// The SQS client, for calls this type does not wrap.
    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }
}

/// Messages on a queue, by state (SQS's approximate counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub visible: u64,
    /// Received and not yet deleted or handed back.
    pub in_flight: u64,
    pub delayed: u64,
}

impl Depth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// The transformer's SQS queue, with the deletes its handler left pending.
#[derive(Debug)]
pub struct Sqs {
    pub queue: SqsQueue,
    pub acks: Arc<Acks>,
    pub visibility_timeout: Duration,
}

impl Queue for Sqs {
    async fn receive(
        self: Arc<Self>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        self.queue.receive(max, wait, self.visibility_timeout).await
    }

    async fn is_drained(&self) -> Result<bool, QueueError> {
        self.queue.is_drained().await
    }

    async fn hand_back(&self, receipt: &str) -> Result<(), QueueError> {
        self.queue.set_visibility(receipt, Duration::ZERO).await
    }

    async fn flush(&self) {
        self.acks.flush().await;
    }
}

/// How many times SQS has handed this message out, this time included.
pub fn receive_count(message: &Message) -> u32 {
    message
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
