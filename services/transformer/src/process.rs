//! What happens to one object: fetch it, check it, parse it, and apply it
//! exactly once (rows, quarantined records and ledger row in one
//! transaction).

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::DateTime as S3DateTime;
use bytes::Bytes;
use pipeline_core::aws::describe;
use pipeline_core::message::ObjectMessage;
use pipeline_core::object::ObjectRef;
use pipeline_core::post::{PostsError, parse_records};
use pipeline_store::ledger::{self, LedgerEntry, Outcome};
use pipeline_store::{DatabaseUrl, Pool, StoreError, checkout};
use sha2::{Digest, Sha256};
use std::io::Read as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Object metadata key the importer writes the fetch time under.
const FETCHED_AT_METADATA: &str = "fetched-at";

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
            Self::Checksum { .. } | Self::Parse { .. } | Self::RecordCount { .. } => true,
            Self::Store { .. } => false,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
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

    let fetched = fetch(&cx.s3, &object).await?;
    let actual = hex::encode(Sha256::digest(&fetched.body));
    if let Some(expected) = &message.sha256
        && *expected != actual
    {
        return Err(ProcessError::Checksum {
            object,
            expected: expected.clone(),
            actual,
        });
    }
    let records = match parse_records(&fetched.body) {
        Ok(records) => records,
        Err(source) => return Err(ProcessError::Parse { object, source }),
    };
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

    // The version of these rows: when the importer fetched them. A message
    // written by hand may not say; the object's metadata or, failing that,
    // its upload time stands in.
    let fetched_at = message
        .fetched_at
        .or(fetched.fetched_at)
        .or_else(|| {
            let modified = fetched.last_modified?;
            OffsetDateTime::from_unix_timestamp_nanos(modified.as_nanos()).ok()
        })
        .unwrap_or_else(OffsetDateTime::now_utc);

    let mut conn = checkout(&cx.pool, &cx.database_url)
        .await
        .map_err(store_failed)?;
    let target = ledger::Object {
        source_object: &source_object,
        sha256: &actual,
        message_id,
        fetched_at,
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

fn already_applied(object: ObjectRef, entry: LedgerEntry) -> Applied {
    Applied {
        object,
        sha256: entry.sha256.clone(),
        records: 0,
        outcome: Outcome::AlreadyApplied(entry),
    }
}

/// The object a message names, its bytes and when it was fetched.
struct Fetched {
    body: Bytes,
    fetched_at: Option<OffsetDateTime>,
    last_modified: Option<S3DateTime>,
}

async fn fetch(s3: &aws_sdk_s3::Client, object: &ObjectRef) -> Result<Fetched, ProcessError> {
    let output = s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
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
    let fetched_at = output
        .metadata()
        .and_then(|m| m.get(FETCHED_AT_METADATA))
        .and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok());
    let last_modified = output.last_modified;
    let gzip = output
        .content_encoding()
        .is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
    let mut body = output
        .body
        .collect()
        .await
        .map_err(|e| ProcessError::Fetch {
            object: object.clone(),
            reason: format!("reading the body: {}", describe(&e)),
            missing: false,
        })?
        .into_bytes();
    if gzip {
        // The importer's GZIP setting: the sha256 and the records are those
        // of the bytes the API sent.
        let mut raw = Vec::with_capacity(body.len() * 4);
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut raw)
            .map_err(|e| ProcessError::Parse {
                object: object.clone(),
                source: PostsError::Encoding(format!("Content-Encoding is gzip but {e}")),
            })?;
        body = Bytes::from(raw);
    }
    Ok(Fetched {
        body,
        fetched_at,
        last_modified,
    })
}
