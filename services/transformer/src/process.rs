//! What happens to one message: fetch the object it names, check it, parse
//! it, and upsert its posts in one transaction.

use aws_sdk_s3::primitives::DateTime as S3DateTime;
use bytes::Bytes;
use diesel_async::AsyncConnection as _;
use pipeline_core::aws::describe;
use pipeline_core::message::{MessageError, ObjectMessage};
use pipeline_core::object::ObjectRef;
use pipeline_core::post::{PostsError, parse_posts};
use pipeline_store::posts::{self, Lineage, UpsertCounts};
use pipeline_store::{DatabaseUrl, Pool, StoreError, checkout};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Object metadata key the importer writes the fetch time under.
const FETCHED_AT_METADATA: &str = "fetched-at";

/// Why a message could not be applied. Every variant names the object.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("cannot fetch {object}: {reason}")]
    Fetch { object: ObjectRef, reason: String },
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

/// What applying one object did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub object: ObjectRef,
    pub records: u64,
    pub counts: UpsertCounts,
}

/// The object a message names, its bytes and when it was fetched.
struct Fetched {
    body: Bytes,
    fetched_at: Option<OffsetDateTime>,
    last_modified: Option<S3DateTime>,
}

/// Applies the object a message body names.
pub async fn apply(
    s3: &aws_sdk_s3::Client,
    pool: &Pool,
    database_url: &DatabaseUrl,
    body: &str,
) -> Result<Applied, ProcessError> {
    let message = ObjectMessage::decode(body)?;
    let object = message.object();
    let fetched = fetch(s3, &object).await?;

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
    let posts = match parse_posts(&fetched.body) {
        Ok(posts) => posts,
        Err(source) => return Err(ProcessError::Parse { object, source }),
    };
    let records = posts.len() as u64;
    if let Some(expected) = message.record_count
        && expected != records
    {
        return Err(ProcessError::RecordCount {
            object,
            expected,
            actual: records,
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
    let source_object = object.to_string();
    let lineage = Lineage {
        source_object: &source_object,
        fetched_at,
    };

    let store_failed = |source: StoreError| ProcessError::Store {
        object: object.clone(),
        source,
    };
    let mut conn = checkout(pool, database_url).await.map_err(store_failed)?;
    let counts = conn
        .transaction(async |conn| posts::upsert(conn, &posts, lineage).await)
        .await
        .map_err(|e| store_failed(StoreError::Query(e)))?;

    Ok(Applied {
        object,
        records,
        counts,
    })
}

async fn fetch(s3: &aws_sdk_s3::Client, object: &ObjectRef) -> Result<Fetched, ProcessError> {
    let failed = |reason: String| ProcessError::Fetch {
        object: object.clone(),
        reason,
    };
    let output = s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|e| failed(describe(&e)))?;
    let fetched_at = output
        .metadata()
        .and_then(|m| m.get(FETCHED_AT_METADATA))
        .and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok());
    let last_modified = output.last_modified;
    let body = output
        .body
        .collect()
        .await
        .map_err(|e| failed(format!("reading the body: {}", describe(&e))))?
        .into_bytes();
    Ok(Fetched {
        body,
        fetched_at,
        last_modified,
    })
}
