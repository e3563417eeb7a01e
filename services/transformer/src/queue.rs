//! The SQS queue the transformer reads.

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use pipeline_core::aws::describe;
use std::time::Duration;
use url::Url;

/// SQS allows at most 10 messages per receive and 20 s of long polling.
pub const MAX_RECEIVE: usize = 10;
pub const LONG_POLL: Duration = Duration::from_secs(20);

/// One queue: receive, delete, and tell whether it is empty.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: Url,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: Url) -> Self {
        Self { client, url }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Long-polls for up to `max` messages (at most [`MAX_RECEIVE`]).
    pub async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, String> {
        let output = self
            .client
            .receive_message()
            .queue_url(self.url.as_str())
            .max_number_of_messages(max.clamp(1, MAX_RECEIVE) as i32)
            .wait_time_seconds(wait.as_secs().min(LONG_POLL.as_secs()) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| format!("cannot receive from {}: {}", self.url, describe(&e)))?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Deletes a message: call only once its effect is committed.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), String> {
        self.client
            .delete_message()
            .queue_url(self.url.as_str())
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(drop)
            .map_err(|e| format!("cannot delete from {}: {}", self.url, describe(&e)))
    }

    /// True when the queue holds no visible, delayed or in-flight message.
    pub async fn is_drained(&self) -> Result<bool, String> {
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
            .map_err(|e| {
                format!(
                    "cannot read the attributes of {}: {}",
                    self.url,
                    describe(&e)
                )
            })?;
        let attributes = output.attributes.unwrap_or_default();
        let mut total = 0u64;
        for name in [
            ApproximateNumberOfMessages,
            ApproximateNumberOfMessagesNotVisible,
            ApproximateNumberOfMessagesDelayed,
        ] {
            let count = attributes.get(&name).and_then(|v| v.parse::<u64>().ok());
            total += count.ok_or_else(|| format!("{} did not report {name}", self.url))?;
        }
        Ok(total == 0)
    }
}
