//! What happens to one object: fetch it, check it, parse it, and apply it
//! exactly once (rows, quarantined records and ledger row in one
//! transaction).

use aws_sdk_s3::primitives::{ByteStream, ByteStreamError, DateTime as S3DateTime};
use aws_sdk_s3::types::ChecksumMode;
use bytes::Bytes;
use pipeline_core::contract::{metadata, sha256_hex};
use pipeline_core::message::{DEFAULT_RESOURCE, ObjectMessage};
use pipeline_core::object::ObjectRef;
use pipeline_core::record::RecordsError;
use pipeline_core::resources::Resource;
use pipeline_core::spec::Spec;
use pipeline_core::telemetry;
use pipeline_store::ledger::{self, ApplyError, Batch, Effect, StreamEnd};
use pipeline_store::{Store, StoreError};
use std::io::Read;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

mod error;
mod stream;

pub use error::{ProcessError, S3ReadError};

use stream::parse_stream;

/// What applying one object needs.
#[derive(Debug, Clone)]
pub struct Context {
    pub s3: aws_sdk_s3::Client,
    pub store: Store,
    /// The resources there are (`RESOURCES_FILE`).
    pub resources: &'static Spec,
}

/// What applying one object did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub object: ObjectRef,
    /// The resource of its records; `None` when the ledger answered for an
    /// object whose message did not say.
    pub resource: Option<&'static str>,
    pub sha256: String,
    /// Elements in the object's array (0 when it was not fetched again).
    pub records: u64,
    pub effect: Effect,
}

/// Objects up to this size are read whole into memory and parsed at once;
/// larger ones are streamed, so memory stays bounded whatever their size.
/// A whole object is held about four times over at its peak (the bytes,
/// the parsed records, the bound arrays, the statement on the wire), and
/// `TRANSFORMER_CONCURRENCY` of them at once: 2 MiB keeps four of them
/// near 40 MiB, while pages of 1,000 posts (1.1 MB) are still read whole.
pub const IN_MEMORY_BYTES: i64 = 2 * 1024 * 1024;

/// Applies the object a message names, unless the ledger says it was.
pub async fn apply_object(
    cx: &Context,
    message_id: &str,
    message: &ObjectMessage,
) -> Result<Applied, ProcessError> {
    let object = message.object();
    let named = match &message.resource {
        Some(name) => Some(resource_named(cx.resources, &object, name)?),
        None => None,
    };
    // A redelivery of a message whose bytes were applied: answer from the
    // ledger without fetching anything (unless told to apply them again).
    if let Some(sha256) = message.sha256.as_ref().filter(|_| !message.reapply) {
        let found = async {
            let mut conn = cx.store.connection().await?;
            Ok(ledger::find(&mut conn, &object.to_string(), sha256).await?)
        };
        if let Some(entry) = found
            .await
            .map_err(|source| store_failed(&object, source))?
        {
            return Ok(Applied {
                object,
                resource: named.map(|r| r.name()),
                sha256: entry.sha256.clone(),
                records: 0,
                effect: Effect::AlreadyApplied(entry),
            });
        }
    }

    // With the importer's digest at hand, the body's own hash is the check,
    // end to end; without one (an S3 event), S3's checksum is.
    let opened = open(&cx.s3, &object, message.sha256.is_none()).await?;
    // A message that names no resource (written by hand, an S3 event, an
    // importer from before resources): the object's metadata says, and
    // failing that (an object from before resources too), posts.
    let resource = match named {
        Some(resource) => resource,
        None => resource_named(
            cx.resources,
            &object,
            opened.resource.as_deref().unwrap_or(DEFAULT_RESOURCE),
        )?,
    };
    // The version of these rows: when the importer fetched them. A message
    // written by hand may not say; the object's metadata or, failing that,
    // its upload time stands in.
    let fetched_at = message
        .fetched_at
        .or(opened.fetched_at)
        .or_else(|| {
            let modified = opened.last_modified?;
            OffsetDateTime::from_unix_timestamp_nanos(modified.as_nanos()).ok()
        })
        .unwrap_or_else(OffsetDateTime::now_utc);
    let write = Write {
        cx,
        resource,
        message_id,
        message,
        object,
        fetched_at,
    };
    write.run(opened).await
}

/// The resource called `name`, or the error that dead-letters the message.
fn resource_named(
    resources: &'static Spec,
    object: &ObjectRef,
    name: &str,
) -> Result<&'static dyn Resource, ProcessError> {
    match resources.resource(name) {
        Some(resource) => Ok(resource),
        None => Err(ProcessError::UnknownResource {
            object: object.clone(),
            resource: name.to_owned(),
            source_name: resources.source.clone(),
            known: resources.names(),
        }),
    }
}

fn store_failed(object: &ObjectRef, source: StoreError) -> ProcessError {
    ProcessError::Store {
        object: object.clone(),
        source,
    }
}

/// The checks of the message's promises about the bytes, in the order a
/// reader would make them: the digest, then (once parsed) the count.
fn check_digest(
    message: &ObjectMessage,
    object: &ObjectRef,
    actual: &str,
) -> Result<(), ProcessError> {
    match &message.sha256 {
        Some(expected) if expected != actual => Err(ProcessError::Checksum {
            object: object.clone(),
            expected: expected.clone(),
            actual: actual.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn check_count(
    message: &ObjectMessage,
    object: &ObjectRef,
    actual: u64,
) -> Result<(), ProcessError> {
    match message.record_count {
        Some(expected) if expected != actual => Err(ProcessError::RecordCount {
            object: object.clone(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

/// One object being written, whole or streamed: both end in [`Write::apply`].
struct Write<'a> {
    cx: &'a Context,
    resource: &'static dyn Resource,
    message_id: &'a str,
    message: &'a ObjectMessage,
    object: ObjectRef,
    fetched_at: OffsetDateTime,
}

impl Write<'_> {
    /// Reads the object whole or streams it, by its size.
    async fn run(self, opened: Opened) -> Result<Applied, ProcessError> {
        if opened.length > IN_MEMORY_BYTES {
            self.streamed(opened).await
        } else {
            self.whole(opened).await
        }
    }

    /// A small object: read, checked and parsed whole, then applied as one
    /// batch.
    async fn whole(self, opened: Opened) -> Result<Applied, ProcessError> {
        let body = read_whole(&self.object, self.resource, opened).await?;
        let sha256 = sha256_hex(&body);
        check_digest(self.message, &self.object, &sha256)?;
        // Parsed on a blocking thread, as a streamed object is: a few
        // milliseconds of CPU stay off the runtime (and its heartbeats), and
        // a parser that panics on these bytes dead-letters the message as
        // `crashed` instead of taking its task down, which would only bring
        // the message back to panic again.
        let resource = self.resource;
        let records = tokio::task::spawn_blocking(move || resource.parse(&body))
            .await
            .map_err(|source| ProcessError::Crashed {
                object: self.object.clone(),
                source,
            })?
            .map_err(|source| ProcessError::Parse {
                object: self.object.clone(),
                resource: resource.name().to_owned(),
                source,
            })?;
        let total = records.total() as u64;
        check_count(self.message, &self.object, total)?;
        let (batches, mut batch) = mpsc::channel(1);
        // The channel is empty and has room for one.
        let _ = batches.try_send(records);
        drop(batches);
        let end = StreamEnd {
            sha256: sha256.clone(),
            records: total,
        };
        self.apply(Some(&sha256), &mut batch, async { Ok(end) })
            .await
    }

    /// Streams a large object: S3 body -> (gunzip) -> sha256 -> JSON array,
    /// element by element, on a blocking thread -> batches of rows upserted
    /// as they come, in one transaction. The checksum and record count are
    /// checked once the last byte is read; a mismatch rolls everything back.
    async fn streamed(self, opened: Opened) -> Result<Applied, ProcessError> {
        let (chunks_tx, chunks_rx) = mpsc::channel::<Bytes>(4);
        // One batch waits while one is written: with the one being parsed,
        // three in memory.
        let (batches_tx, mut batches_rx) = mpsc::channel::<Batch>(1);

        // S3 -> channel: reading the body is async.
        let mut body = opened.body;
        let reader = tokio::spawn(async move {
            while let Some(chunk) = body.next().await {
                if chunks_tx.send(chunk?).await.is_err() {
                    break;
                }
            }
            Ok::<(), ByteStreamError>(())
        });
        let resource = self.resource;
        let parser = tokio::task::spawn_blocking(move || {
            parse_stream(resource, chunks_rx, opened.gzip, batches_tx)
        });

        let object = &self.object;
        let crashed = |source| ProcessError::Crashed {
            object: object.clone(),
            source,
        };
        let finish = async {
            // A failed read shows as a parse error at the cut: report the read.
            let read = reader.await.map_err(crashed)?;
            let parsed = parser.await.map_err(crashed)?;
            read.map_err(|source| ProcessError::Fetch {
                object: object.clone(),
                source: S3ReadError::Read(source),
            })?;
            let end = parsed.map_err(|source| ProcessError::Parse {
                object: object.clone(),
                resource: resource.name().to_owned(),
                source,
            })?;
            check_digest(self.message, object, &end.sha256)?;
            check_count(self.message, object, end.records)?;
            Ok(end)
        };
        self.apply(self.message.sha256.as_deref(), &mut batches_rx, finish)
            .await
    }

    /// Applies the batches in one transaction with the ledger row; `sha256`
    /// is the digest the bytes must have, when known before they are read.
    async fn apply(
        &self,
        sha256: Option<&str>,
        batches: &mut mpsc::Receiver<Batch>,
        finish: impl Future<Output = Result<StreamEnd, ProcessError>> + Send,
    ) -> Result<Applied, ProcessError> {
        let source_object = self.object.to_string();
        let mut conn = self
            .cx
            .store
            .connection()
            .await
            .map_err(|source| store_failed(&self.object, source))?;
        let trace_id = telemetry::current_trace_id();
        let target = ledger::Object {
            source_object: &source_object,
            resource: self.resource.spec(),
            sha256,
            message_id: self.message_id,
            fetched_at: self.fetched_at,
            trace_id: trace_id.as_deref(),
            reapply: self.message.reapply,
        };
        match ledger::apply(&mut conn, target, batches, finish).await {
            Ok((effect, end)) => Ok(Applied {
                object: self.object.clone(),
                resource: Some(self.resource.name()),
                sha256: end.sha256,
                records: end.records,
                effect,
            }),
            Err(ApplyError::Input(e)) => Err(e),
            Err(ApplyError::Query(e)) => Err(store_failed(&self.object, StoreError::Query(e))),
        }
    }
}

/// An object being read: its body and what its headers say.
struct Opened {
    body: ByteStream,
    length: i64,
    gzip: bool,
    fetched_at: Option<OffsetDateTime>,
    /// What the importer wrote in its `resource` metadata.
    resource: Option<String>,
    last_modified: Option<S3DateTime>,
}

/// Opens `object`; with `verify`, the SDK checks the body against the
/// checksum S3 stored with it.
async fn open(
    s3: &aws_sdk_s3::Client,
    object: &ObjectRef,
    verify: bool,
) -> Result<Opened, ProcessError> {
    let output = s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_checksum_mode(verify.then_some(ChecksumMode::Enabled))
        .send()
        .await
        .map_err(|e| ProcessError::Fetch {
            object: object.clone(),
            source: S3ReadError::Get(Box::new(e)),
        })?;
    Ok(Opened {
        length: output.content_length.unwrap_or(0),
        gzip: output
            .content_encoding()
            .is_some_and(|e| e.eq_ignore_ascii_case("gzip")),
        fetched_at: output
            .metadata()
            .and_then(|m| m.get(metadata::FETCHED_AT))
            .and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok()),
        resource: output
            .metadata()
            .and_then(|m| m.get(metadata::RESOURCE))
            .cloned(),
        last_modified: output.last_modified,
        body: output.body,
    })
}

/// The whole (small) object, gunzipped if it was stored compressed: the
/// sha256 and the records are those of the bytes the API sent.
async fn read_whole(
    object: &ObjectRef,
    resource: &dyn Resource,
    opened: Opened,
) -> Result<Bytes, ProcessError> {
    let body = opened
        .body
        .collect()
        .await
        .map_err(|e| ProcessError::Fetch {
            object: object.clone(),
            source: S3ReadError::Read(e),
        })?
        .into_bytes();
    if !opened.gzip {
        return Ok(body);
    }
    let mut raw = Vec::with_capacity(body.len() * 4);
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut raw)
        .map_err(|e| ProcessError::Parse {
            object: object.clone(),
            resource: resource.name().to_owned(),
            source: RecordsError::Encoding(format!("Content-Encoding is gzip but {e}")),
        })?;
    Ok(Bytes::from(raw))
}

#[cfg(test)]
mod tests;
