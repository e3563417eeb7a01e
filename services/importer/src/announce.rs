//! Telling the transformer that objects are ready, in batches of up to 10.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::future::BoxFuture;
use pipeline_core::batch::{Batcher, Sink};
use pipeline_core::contract::{attribute, string_attribute};
use pipeline_core::error_chain;
use pipeline_core::message::{MESSAGE_VERSION, ObjectMessage};
use pipeline_core::object::ObjectRef;
use pipeline_core::retry::Backoff;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;
use url::Url;

use crate::archive::{self, Provenance};
use crate::page_state::{LastArchived, PageState};

/// How a batch SQS did not take whole is sent again: four tries in all,
/// pauses from 200 ms.
const RESEND: Backoff = Backoff {
    first: Duration::from_millis(200),
    max: Duration::from_secs(2),
    attempts: NonZeroU32::new(4),
    full_jitter: true,
};

/// One archived page waiting to be announced.
#[derive(Debug)]
pub struct Announcement {
    pub page_url: Url,
    pub message: ObjectMessage,
    /// W3C trace context of the archiving span, sent as message attributes.
    pub trace: HashMap<String, String>,
}

/// What the announcer did with one page.
#[derive(Debug)]
pub struct Confirmation {
    pub page_url: Url,
    /// The message id, or why the page could not be announced (its object
    /// was then removed, or the text says why it could not be).
    pub outcome: Result<String, String>,
}

/// Where the announcer sends messages: the SQS queue ([`SqsOutbox`]) in
/// the service. The seam lets a test make the announcer fail mid-import.
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Sends one batch of at most [`pipeline_core::batch::MAX_BATCH`] and says, for each entry in
    /// order, its message id or why it was not sent.
    fn send<'a>(&'a self, batch: &'a [Announcement]) -> BoxFuture<'a, Vec<Result<String, String>>>;

    /// The queue, for error text.
    fn queue_url(&self) -> &Url;
}

/// The announcing task of one import. Each page's fate is reported as soon
/// as it is known, so that if the task dies (a panic, a cancelled runtime)
/// the pages it had already announced are not mistaken for lost ones.
#[derive(Debug)]
pub struct Announcer {
    task: JoinHandle<()>,
    confirmations: mpsc::UnboundedReceiver<Confirmation>,
}

/// What the announcer confirmed, once it has stopped.
#[derive(Debug, Default)]
pub struct Announced {
    /// Page URL -> message id, for every page announced.
    pub message_ids: HashMap<Url, String>,
    /// Pages that could not be announced: their objects were removed.
    pub failed: Vec<(Url, String)>,
    /// Why the announcer stopped before it had answered for every page:
    /// any page it did not confirm must be treated as not announced.
    pub died: Option<String>,
}

impl Announcer {
    /// Starts announcing what is pushed to the returned batcher, until it
    /// is dropped. Whatever is ready goes in one batch, so a burst of pages
    /// costs few requests and a single page is not held back waiting for
    /// company.
    pub fn spawn(
        outbox: Arc<dyn Outbox>,
        s3: aws_sdk_s3::Client,
        state: Option<PageState>,
    ) -> (Batcher<Announcement>, Self) {
        let (confirm, confirmations) = mpsc::unbounded_channel();
        let sink = Announce {
            outbox,
            s3,
            state,
            confirm,
        };
        let (ready, task) = Batcher::start(sink, Duration::ZERO);
        (
            ready,
            Self {
                task,
                confirmations,
            },
        )
    }

    /// Waits for the task to end and collects what it confirmed.
    pub async fn finish(mut self) -> Announced {
        let died = self.task.await.err().map(|e| {
            if e.is_panic() {
                "the announcer panicked".to_owned()
            } else {
                "the announcer was cancelled".to_owned()
            }
        });
        let mut announced = Announced {
            died,
            ..Announced::default()
        };
        while let Ok(confirmation) = self.confirmations.try_recv() {
            match confirmation.outcome {
                Ok(id) => {
                    announced.message_ids.insert(confirmation.page_url, id);
                }
                Err(reason) => announced.failed.push((confirmation.page_url, reason)),
            }
        }
        announced
    }
}

/// Removes an object whose message was never sent, so that nothing stays
/// archived that the transformer was never told about. Returns `reason`
/// with what became of the object.
pub async fn withdraw(s3: &aws_sdk_s3::Client, object: &ObjectRef, mut reason: String) -> String {
    match archive::remove(s3, object).await {
        Ok(()) => reason.push_str("; the object was removed"),
        Err(e) => reason.push_str(&format!("; and {}", error_chain(&e))),
    }
    reason
}

/// Sends a batch of announcements and reports each page's fate.
///
/// A page that cannot be announced has its object removed: no message ever
/// points at a missing object. Once a page is announced, its sha256 is
/// recorded in `state` (when given), so that an unchanged page is skipped
/// next time.
struct Announce {
    outbox: Arc<dyn Outbox>,
    s3: aws_sdk_s3::Client,
    state: Option<PageState>,
    confirm: mpsc::UnboundedSender<Confirmation>,
}

impl Sink<Announcement> for Announce {
    async fn send(&mut self, batch: Vec<Announcement>) {
        let results = self.outbox.send(&batch).await;
        for (item, result) in batch.into_iter().zip(results) {
            let outcome = match result {
                Ok(message_id) => {
                    if let Some(state) = &self.state {
                        remember(state, &item).await;
                    }
                    Ok(message_id)
                }
                Err(reason) => {
                    let object = item.message.object();
                    let reason = format!(
                        "archived {object} but could not announce it on {}: {reason}",
                        self.outbox.queue_url()
                    );
                    Err(withdraw(&self.s3, &object, reason).await)
                }
            };
            // The importer holds the receiver until this task has ended.
            let _ = self.confirm.send(Confirmation {
                page_url: item.page_url,
                outcome,
            });
        }
    }
}

async fn remember(state: &PageState, item: &Announcement) {
    let last = LastArchived {
        source_url: item.page_url.to_string(),
        sha256: item.message.sha256.clone().unwrap_or_default(),
        key: item.message.key.clone(),
    };
    if let Err(e) = state.put(&item.page_url, &last).await {
        // Only costs a needless archive of this page next time.
        warn!("{}", error_chain(&e));
    }
}

/// The queue the importer announces on.
#[derive(Debug, Clone)]
pub struct SqsOutbox {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: Url,
}

impl Outbox for SqsOutbox {
    fn send<'a>(&'a self, batch: &'a [Announcement]) -> BoxFuture<'a, Vec<Result<String, String>>> {
        Box::pin(send_batch(&self.sqs, &self.queue_url, batch))
    }

    fn queue_url(&self) -> &Url {
        &self.queue_url
    }
}

/// Sends one batch, retrying the entries SQS refused and the whole batch
/// when SQS cannot be reached. Returns each entry's message id or why it
/// was not sent, in order.
async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &Url,
    batch: &[Announcement],
) -> Vec<Result<String, String>> {
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut sent = Vec::with_capacity(batch.len());
    let mut last_error: HashMap<usize, String> = HashMap::new();
    let mut pauses = RESEND.pauses();
    loop {
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
                let reason = error_chain(&e);
                for &index in &pending {
                    last_error.insert(index, reason.clone());
                }
            }
        }
        match pauses.next() {
            Some(pause) if !pending.is_empty() => tokio::time::sleep(pause).await,
            _ => break,
        }
    }
    let mut sent: HashMap<usize, String> = sent.into_iter().collect();
    (0..batch.len())
        .map(|i| {
            sent.remove(&i)
                .ok_or_else(|| last_error.remove(&i).unwrap_or_else(|| "not sent".into()))
        })
        .collect()
}

fn entry(index: usize, announcement: &Announcement) -> SendMessageBatchRequestEntry {
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(announcement.message.encode())
        .message_attributes(
            attribute::CONTENT_TYPE,
            string_attribute("application/json"),
        )
        .message_attributes(
            attribute::SCHEMA_VERSION,
            string_attribute(MESSAGE_VERSION.to_string()),
        );
    for (name, value) in &announcement.trace {
        entry = entry.message_attributes(name, string_attribute(value));
    }
    entry
        .build()
        .unwrap_or_else(|e| unreachable!("id and body are set: {e}"))
}

/// The message for an object archived with `provenance`: what its
/// metadata says, so that a replay can build the same message from it.
pub fn message_for(object: &ObjectRef, sha256: &str, provenance: Provenance<'_>) -> ObjectMessage {
    ObjectMessage {
        version: MESSAGE_VERSION,
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        sha256: Some(sha256.to_owned()),
        record_count: Some(provenance.record_count),
        source_url: Some(provenance.source_url.to_string()),
        fetched_at: Some(provenance.fetched_at),
        resource: Some(provenance.resource.to_owned()),
        reapply: false,
    }
}
