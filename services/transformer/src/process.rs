//! What happens to one object: fetch it, check it, parse it, and apply it
//! exactly once (rows, quarantined records and ledger row in one
//! transaction).

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::{ByteStream, DateTime as S3DateTime};
use aws_sdk_s3::types::ChecksumMode;
use bytes::Bytes;
use pipeline_core::aws::describe;
use pipeline_core::contract::{finish_sha256, metadata, sha256_hex};
use pipeline_core::message::ObjectMessage;
use pipeline_core::object::ObjectRef;
use pipeline_core::post::{PostsError, parse_records, scan_records};
use pipeline_core::telemetry;
use pipeline_store::ledger::{self, LedgerEntry, Outcome, StreamEnd, StreamError};
use pipeline_store::{DatabaseUrl, Pool, StoreError, checkout};
use sha2::{Digest as _, Sha256};
use std::io::Read;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What applying one object needs.
#[derive(Clone)]
pub struct Context {
    pub s3: aws_sdk_s3::Client,
    pub pool: Pool,
    pub database_url: DatabaseUrl,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("database_url", &self.database_url)
            .finish_non_exhaustive()
    }
}

/// Why an object could not be applied. Every variant names it.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("message body is in no known format: {source}")]
    UnknownFormat {
        source: pipeline_core::message::MessageError,
    },
    #[error("cannot fetch {object}: {reason}")]
    Fetch {
        object: ObjectRef,
        reason: String,
        /// The object or bucket does not exist: no retry will find it.
        missing: bool,
    },
    #[error("{object} has sha256 {actual} but the message says {expected}")]
    Checksum {
        object: ObjectRef,
        expected: String,
        actual: String,
    },
    #[error("{object} is not a JSON array of posts: {source}")]
    Parse {
        object: ObjectRef,
        source: PostsError,
    },
    #[error("{object} holds {actual} records but the message says {expected}")]
    RecordCount {
        object: ObjectRef,
        expected: u64,
        actual: u64,
    },
    #[error("cannot apply {object}: {source}")]
    Store {
        object: ObjectRef,
        source: StoreError,
    },
}

impl ProcessError {
    /// True when trying again cannot help: the object is missing, corrupt
    /// or not what it claims to be. Such a message goes to the dead-letter
    /// queue at once; any other failure is retried after a delay.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Fetch { missing, .. } => *missing,
            Self::UnknownFormat { .. }
            | Self::Checksum { .. }
            | Self::Parse { .. }
            | Self::RecordCount { .. } => true,
            Self::Store { .. } => false,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownFormat { .. } => "unknown_format",
            Self::Fetch { missing: true, .. } => "object_missing",
            Self::Fetch { .. } => "s3_unavailable",
            Self::Checksum { .. } => "checksum_mismatch",
            Self::Parse { .. } => "not_a_json_array",
            Self::RecordCount { .. } => "record_count_mismatch",
            Self::Store { .. } => "database_unavailable",
        }
    }
}

/// What applying one object did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub object: ObjectRef,
    pub sha256: String,
    /// Elements in the object's array (0 when it was not fetched again).
    pub records: u64,
    pub outcome: Outcome,
}

/// Objects up to this size are read whole into memory and parsed at once;
/// larger ones are streamed, so memory stays bounded whatever their size.
pub const IN_MEMORY_BYTES: i64 = 16 * 1024 * 1024;

/// Posts per batch when an object is streamed.
const STREAM_BATCH: usize = 5_000;

/// Applies the object a message names, unless the ledger says it was.
pub async fn apply_object(
    cx: &Context,
    message_id: &str,
    message: &ObjectMessage,
) -> Result<Applied, ProcessError> {
    let object = message.object();
    let source_object = object.to_string();
    let store_failed = |source: StoreError| ProcessError::Store {
        object: object.clone(),
        source,
    };

    // A redelivery of a message whose bytes were applied: answer from the
    // ledger without fetching anything.
    if let Some(sha256) = &message.sha256 {
        let mut conn = checkout(&cx.pool, &cx.database_url)
            .await
            .map_err(store_failed)?;
        if let Some(entry) = ledger::find(&mut conn, &source_object, sha256)
            .await
            .map_err(|e| store_failed(StoreError::Query(e)))?
        {
            return Ok(already_applied(object, entry));
        }
    }

    // With the importer's digest at hand, the body's own hash is the check,
    // end to end; without one (an S3 event), S3's checksum is.
    let opened = open(&cx.s3, &object, message.sha256.is_none()).await?;
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
    if opened.length > IN_MEMORY_BYTES {
        return apply_streamed(cx, message_id, message, object, opened, fetched_at).await;
    }

    let body = read_whole(&object, opened).await?;
    let actual = sha256_hex(&body);
    if let Some(expected) = &message.sha256
        && *expected != actual
    {
        return Err(ProcessError::Checksum {
            object,
            expected: expected.clone(),
            actual,
        });
    }
    let records = match parse_records(&body) {
        Ok(records) => records,
        Err(source) => return Err(ProcessError::Parse { object, source }),
    };
    drop(body);
    let total = records.total() as u64;
    if let Some(expected) = message.record_count
        && expected != total
    {
        return Err(ProcessError::RecordCount {
            object,
            expected,
            actual: total,
        });
    }

    let mut conn = checkout(&cx.pool, &cx.database_url)
        .await
        .map_err(store_failed)?;
    let trace_id = telemetry::current_trace_id();
    let target = ledger::Object {
        source_object: &source_object,
        sha256: &actual,
        message_id,
        fetched_at,
        trace_id: trace_id.as_deref(),
    };
    let outcome = ledger::apply(&mut conn, target, &records)
        .await
        .map_err(|e| store_failed(StoreError::Query(e)))?;
    Ok(Applied {
        object,
        sha256: actual,
        records: total,
        outcome,
    })
}

/// Streams a large object: S3 body -> (gunzip) -> sha256 -> JSON array,
/// element by element, on a blocking thread -> batches of posts upserted
/// as they come, in one transaction. The checksum and record count are
/// checked once the last byte is read; a mismatch rolls everything back.
async fn apply_streamed(
    cx: &Context,
    message_id: &str,
    message: &ObjectMessage,
    object: ObjectRef,
    opened: Opened,
    fetched_at: OffsetDateTime,
) -> Result<Applied, ProcessError> {
    let source_object = object.to_string();
    let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (batches_tx, mut batches_rx) = tokio::sync::mpsc::channel::<ledger::Batch>(2);

    // S3 -> channel: reading the body is async.
    let mut body = opened.body;
    let read_object = object.clone();
    let reader = tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ProcessError::Fetch {
                object: read_object.clone(),
                reason: format!("reading the body: {}", describe(&e)),
                missing: false,
            })?;
            if chunks_tx.send(chunk).await.is_err() {
                break;
            }
        }
        Ok::<(), ProcessError>(())
    });

    // Channel -> parser: serde_json reads a blocking `Read`.
    let gzip = opened.gzip;
    let parse_object = object.clone();
    let parser = tokio::task::spawn_blocking(move || {
        let input = ChannelReader::new(chunks_rx);
        let abandoned = input.abandoned();
        let input: Box<dyn Read> = if gzip {
            Box::new(flate2::read::GzDecoder::new(input))
        } else {
            Box::new(input)
        };
        let mut hashing = HashingReader::new(input);
        let mut batch = ledger::Batch::default();
        let scanned = scan_records(&mut hashing, |record| {
            match record {
                Ok(post) => batch.posts.push(post),
                Err(bad) => batch.bad.push(bad),
            }
            if batch.posts.len() >= STREAM_BATCH
                && batches_tx
                    .blocking_send(std::mem::take(&mut batch))
                    .is_err()
            {
                // The transaction gave up (database error, lost heartbeat):
                // make the next read fail, which ends the parse.
                abandoned.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let _ = batches_tx.blocking_send(batch);
        drop(batches_tx);
        match scanned {
            Ok(records) => Ok(StreamEnd {
                sha256: hashing.finish(),
                records,
            }),
            Err(source) => Err(ProcessError::Parse {
                object: parse_object,
                source,
            }),
        }
    });

    let checks = |end: StreamEnd| -> Result<StreamEnd, ProcessError> {
        if let Some(expected) = &message.sha256
            && *expected != end.sha256
        {
            return Err(ProcessError::Checksum {
                object: object.clone(),
                expected: expected.clone(),
                actual: end.sha256,
            });
        }
        if let Some(expected) = message.record_count
            && expected != end.records
        {
            return Err(ProcessError::RecordCount {
                object: object.clone(),
                expected,
                actual: end.records,
            });
        }
        Ok(end)
    };
    let finish = async {
        // A failed read shows as a parse error at the cut: report the read.
        let read = reader.await.map_err(|e| ProcessError::Fetch {
            object: object.clone(),
            reason: e.to_string(),
            missing: false,
        })?;
        let parsed = parser.await.map_err(|e| ProcessError::Fetch {
            object: object.clone(),
            reason: e.to_string(),
            missing: false,
        })?;
        read?;
        checks(parsed?)
    };

    let store_failed = |source: StoreError| ProcessError::Store {
        object: object.clone(),
        source,
    };
    let mut conn = checkout(&cx.pool, &cx.database_url)
        .await
        .map_err(store_failed)?;
    let trace_id = telemetry::current_trace_id();
    let applied = ledger::apply_stream(
        &mut conn,
        &source_object,
        message_id,
        fetched_at,
        trace_id.as_deref(),
        &mut batches_rx,
        finish,
    )
    .await;
    match applied {
        Ok((outcome, end)) => Ok(Applied {
            object,
            sha256: end.sha256,
            records: end.records,
            outcome,
        }),
        Err(StreamError::Stream(e)) => Err(e),
        Err(StreamError::Query(e)) => Err(store_failed(StoreError::Query(e))),
        Err(StreamError::AlreadyApplied(_)) => unreachable!("apply_stream answers it"),
    }
}

fn already_applied(object: ObjectRef, entry: LedgerEntry) -> Applied {
    Applied {
        object,
        sha256: entry.sha256.clone(),
        records: 0,
        outcome: Outcome::AlreadyApplied(entry),
    }
}

/// An object being read: its body and what its headers say.
struct Opened {
    body: ByteStream,
    length: i64,
    gzip: bool,
    fetched_at: Option<OffsetDateTime>,
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
        .map_err(|e| {
            let code = e.as_service_error().and_then(|s| s.code());
            ProcessError::Fetch {
                object: object.clone(),
                reason: describe(&e),
                missing: matches!(code, Some("NoSuchKey" | "NoSuchBucket")),
            }
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
        last_modified: output.last_modified,
        body: output.body,
    })
}

/// The whole (small) object, gunzipped if it was stored compressed: the
/// sha256 and the records are those of the bytes the API sent.
async fn read_whole(object: &ObjectRef, opened: Opened) -> Result<Bytes, ProcessError> {
    let body = opened
        .body
        .collect()
        .await
        .map_err(|e| ProcessError::Fetch {
            object: object.clone(),
            reason: format!("reading the body: {}", describe(&e)),
            missing: false,
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
            source: PostsError::Encoding(format!("Content-Encoding is gzip but {e}")),
        })?;
    Ok(Bytes::from(raw))
}

/// A blocking `Read` over chunks sent from async code.
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
    abandoned: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ChannelReader {
    fn new(chunks: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
            abandoned: Default::default(),
        }
    }

    /// Set it to make the next read fail.
    fn abandoned(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        std::sync::Arc::clone(&self.abandoned)
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.abandoned.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("abandoned"));
        }
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Hashes what goes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> String {
        finish_sha256(self.hasher)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
