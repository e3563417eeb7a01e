//! Telling the transformer that objects are ready, in batches of up to 10.

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use pipeline_core::aws::describe;
use pipeline_core::message::{MESSAGE_VERSION, ObjectMessage};
use pipeline_core::object::ObjectRef;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::warn;
use url::Url;

use crate::archive::{self, LastArchived, PageState};

/// SQS takes at most 10 messages per batch.
const MAX_BATCH: usize = 10;
/// Attempts for each message, the first included.
const ATTEMPTS: u32 = 4;

/// One archived page waiting to be announced.
#[derive(Debug)]
pub struct Announcement {
    pub page_url: Url,
    pub message: ObjectMessage,
    /// W3C trace context of the archiving span, sent as message attributes.
    pub trace: HashMap<String, String>,
}

/// What the announcer did.
#[derive(Debug, Default)]
pub struct Announced {
    /// Page URL -> message id, for every page announced.
    pub message_ids: HashMap<Url, String>,
    /// Pages that could not be announced: their objects were removed.
    pub failed: Vec<(Url, String)>,
}

/// Sends the messages of archived pages as they arrive: whatever is ready
/// goes in one batch, so a burst of pages costs few requests and a single
/// page is not held back waiting for company.
///
/// A page that cannot be announced after [`ATTEMPTS`] has its object
/// removed: no object stays archived that the transformer was never told
/// about, and no message ever points at a missing object. Once a page is
/// announced, its sha256 is recorded in `state` (when given), so that an
/// unchanged page is skipped next time.
pub async fn announcer(
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    queue_url: Url,
    state: Option<PageState>,
    mut ready: mpsc::Receiver<Announcement>,
) -> Announced {
    let mut announced = Announced::default();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while ready.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (sent, failed) = send_batch(&sqs, &queue_url, &batch).await;
        for (index, message_id) in sent {
            let item = &batch[index];
            if let Some(state) = &state {
                let last = LastArchived {
                    source_url: item.page_url.to_string(),
                    sha256: item.message.sha256.clone().unwrap_or_default(),
                    key: item.message.key.clone(),
                };
                if let Err(e) = state.put(&item.page_url, &last).await {
                    // Only costs a needless archive of this page next time.
                    warn!("{e}");
                }
            }
            announced
                .message_ids
                .insert(item.page_url.clone(), message_id);
        }
        for (index, reason) in failed {
            let item = &batch[index];
            let object = item.message.object();
            let mut reason =
                format!("archived {object} but could not announce it on {queue_url}: {reason}");
            match archive::remove(&s3, &object).await {
                Ok(()) => reason.push_str("; the object was removed"),
                Err(e) => reason.push_str(&format!("; and {e}")),
            }
            announced.failed.push((item.page_url.clone(), reason));
        }
        batch.clear();
    }
    announced
}

/// Sends one batch, retrying the entries SQS refused and the whole batch
/// when SQS cannot be reached. Returns (index, message id) of the sent
/// entries and (index, reason) of the others.
async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &Url,
    batch: &[Announcement],
) -> (Vec<(usize, String)>, Vec<(usize, String)>) {
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut sent = Vec::with_capacity(batch.len());
    let mut last_error: HashMap<usize, String> = HashMap::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 2))).await;
        }
        let entries: Vec<SendMessageBatchRequestEntry> =
            pending.iter().map(|&i| entry(i, &batch[i])).collect();
        match sqs
            .send_message_batch()
            .queue_url(queue_url.as_str())
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => {
                for ok in output.successful {
                    if let Ok(index) = ok.id.parse::<usize>() {
                        sent.push((index, ok.message_id));
                    }
                }
                pending.clear();
                for failed in output.failed {
                    let Ok(index) = failed.id.parse::<usize>() else {
                        continue;
                    };
                    let reason = format!("{}: {}", failed.code, failed.message.unwrap_or_default());
                    // The sender's fault (too big, bad attribute) will not pass.
                    if !failed.sender_fault {
                        pending.push(index);
                    }
                    last_error.insert(index, reason);
                }
            }
            Err(e) => {
                let reason = describe(&e);
                for &index in &pending {
                    last_error.insert(index, reason.clone());
                }
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    let sent_indexes: Vec<usize> = sent.iter().map(|(i, _)| *i).collect();
    let failed = (0..batch.len())
        .filter(|i| !sent_indexes.contains(i))
        .map(|i| {
            (
                i,
                last_error.remove(&i).unwrap_or_else(|| "not sent".into()),
            )
        })
        .collect();
    (sent, failed)
}

fn entry(index: usize, announcement: &Announcement) -> SendMessageBatchRequestEntry {
    let attribute = |value: String| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .unwrap_or_else(|e| unreachable!("data type and value are set: {e}"))
    };
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(announcement.message.encode())
        // Lets consumers route or filter without parsing the body.
        .message_attributes("content_type", attribute("application/json".into()))
        .message_attributes("schema_version", attribute(MESSAGE_VERSION.to_string()));
    for (name, value) in &announcement.trace {
        entry = entry.message_attributes(name, attribute(value.clone()));
    }
    entry
        .build()
        .unwrap_or_else(|e| unreachable!("id and body are set: {e}"))
}

/// The message for an object archived from `page`.
pub fn message_for(
    object: &ObjectRef,
    sha256: &str,
    record_count: u64,
    page_url: &Url,
    fetched_at: time::OffsetDateTime,
) -> ObjectMessage {
    ObjectMessage {
        version: MESSAGE_VERSION,
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        sha256: Some(sha256.to_owned()),
        record_count: Some(record_count),
        source_url: Some(page_url.to_string()),
        fetched_at: Some(fetched_at),
    }
}
