//! Keeping the raw bytes in S3, and the record of what was last archived
//! for each page.

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use pipeline_core::aws::describe;
use pipeline_core::object::ObjectRef;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;
use uuid::Uuid;

/// Object metadata keys (sent as `x-amz-meta-<key>`).
pub mod meta {
    pub const SOURCE_URL: &str = "source-url";
    pub const FETCHED_AT: &str = "fetched-at";
    pub const RECORD_COUNT: &str = "record-count";
    /// Of the bytes the API sent, before any compression.
    pub const SHA256: &str = "sha256";
}

/// What is archived along with the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    pub source_url: &'a Url,
    pub fetched_at: OffsetDateTime,
    pub record_count: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("could not archive to {object}: {reason}")]
pub struct ArchiveError {
    pub object: ObjectRef,
    pub reason: String,
}

/// A new key for one fetch: `<prefix>/YYYY/MM/DD/<UUIDv7>.json`.
///
/// UUIDv7 starts with the time in milliseconds, so keys sort by fetch time
/// and never collide, even between overlapping runs.
pub fn object_key(prefix: &str, fetched_at: OffsetDateTime) -> String {
    let date = fetched_at.date();
    let id = Uuid::now_v7();
    format!(
        "{prefix}/{:04}/{:02}/{:02}/{id}.json",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Puts `body` at `object`, unchanged or gzip-compressed
/// (`Content-Encoding: gzip`). `sha256` is of `body` as the API sent it;
/// S3 verifies a checksum of what it stores before it stores anything.
pub async fn put(
    s3: &aws_sdk_s3::Client,
    object: &ObjectRef,
    body: Bytes,
    sha256: &str,
    provenance: Provenance<'_>,
    gzip: bool,
) -> Result<(), ArchiveError> {
    let failed = |reason: String| ArchiveError {
        object: object.clone(),
        reason,
    };
    let stored = if gzip {
        let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
        encoder
            .write_all(&body)
            .and_then(|()| encoder.finish())
            .map(Bytes::from)
            .map_err(|e| failed(format!("compressing: {e}")))?
    } else {
        body
    };
    let checksum = BASE64.encode(Sha256::digest(&stored));
    let fetched_at = provenance
        .fetched_at
        .format(&Rfc3339)
        .unwrap_or_else(|e| unreachable!("formatting a UTC time: {e}"));
    let mut request = s3
        .put_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .content_type("application/json")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(checksum)
        .metadata(meta::SOURCE_URL, provenance.source_url.as_str())
        .metadata(meta::FETCHED_AT, fetched_at)
        .metadata(meta::RECORD_COUNT, provenance.record_count.to_string())
        .metadata(meta::SHA256, sha256);
    if gzip {
        request = request.content_encoding("gzip");
    }
    request
        .body(ByteStream::from(stored))
        .send()
        .await
        .map(drop)
        .map_err(|e| failed(describe(&e)))
}

/// Removes an object that could not be announced, so that nothing stays
/// archived that the transformer was never told about.
pub async fn remove(s3: &aws_sdk_s3::Client, object: &ObjectRef) -> Result<(), String> {
    s3.delete_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map(drop)
        .map_err(|e| format!("could not remove {object}: {}", describe(&e)))
}

/// What was last archived and announced for one page URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastArchived {
    pub source_url: String,
    pub sha256: String,
    pub key: String,
}

/// The last archived sha256 of each page URL, kept in the bucket under
/// `_state/<prefix>/`: an ECS task starts with an empty disk, and every
/// overlapping run sees the same state.
#[derive(Debug, Clone)]
pub struct PageState {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl PageState {
    pub fn new(s3: aws_sdk_s3::Client, bucket: String, key_prefix: &str) -> Self {
        Self {
            s3,
            bucket,
            prefix: format!("_state/{key_prefix}"),
        }
    }

    fn key(&self, page_url: &Url) -> String {
        format!(
            "{}/{}.json",
            self.prefix,
            &sha256_hex(page_url.as_str().as_bytes())[..32]
        )
    }

    /// What was last archived for `page_url`, if anything.
    pub async fn get(&self, page_url: &Url) -> Result<Option<LastArchived>, String> {
        let key = self.key(page_url);
        let output = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchKey") => {
                return Ok(None);
            }
            Err(e) => {
                let object = ObjectRef::new(&self.bucket, &key);
                return Err(format!("cannot read {object}: {}", describe(&e)));
            }
        };
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| format!("cannot read s3://{}/{key}: {e}", self.bucket))?
            .into_bytes();
        // A state file we cannot read is as good as none: archive again.
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Records what was just archived and announced for a page.
    pub async fn put(&self, page_url: &Url, last: &LastArchived) -> Result<(), String> {
        let key = self.key(page_url);
        let body = serde_json::to_vec(last).unwrap_or_else(|e| unreachable!("plain strings: {e}"));
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(drop)
            .map_err(|e| format!("cannot write s3://{}/{key}: {}", self.bucket, describe(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn keys_are_dated_and_sort_by_time() {
        let at = datetime!(2026-11-06 08:00 UTC);
        let first = object_key("posts", at);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = object_key("posts", at);
        assert!(
            first.starts_with("posts/2026/11/06/") && first.ends_with(".json"),
            "{first}"
        );
        assert!(first < second, "{first} then {second}");
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
