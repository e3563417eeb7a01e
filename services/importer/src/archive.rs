//! Keeping the raw bytes in S3.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use pipeline_core::aws::describe;
use pipeline_core::object::ObjectRef;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;
use uuid::Uuid;

/// Object metadata keys (sent as `x-amz-meta-<key>`).
pub mod meta {
    pub const SOURCE_URL: &str = "source-url";
    pub const FETCHED_AT: &str = "fetched-at";
    pub const RECORD_COUNT: &str = "record-count";
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

/// Puts `body` unchanged at `object`. S3 verifies the SHA-256 we computed
/// before it stores anything, so the stored bytes are the bytes we checked.
pub async fn put(
    s3: &aws_sdk_s3::Client,
    object: &ObjectRef,
    body: Bytes,
    sha256: &str,
    provenance: Provenance<'_>,
) -> Result<(), ArchiveError> {
    let checksum = hex::decode(sha256)
        .map(|raw| BASE64.encode(raw))
        .map_err(|e| ArchiveError {
            object: object.clone(),
            reason: format!("bad sha256 {sha256}: {e}"),
        })?;
    let fetched_at = provenance
        .fetched_at
        .format(&Rfc3339)
        .unwrap_or_else(|e| unreachable!("formatting a UTC time: {e}"));
    s3.put_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .content_type("application/json")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(checksum)
        .metadata(meta::SOURCE_URL, provenance.source_url.as_str())
        .metadata(meta::FETCHED_AT, fetched_at)
        .metadata(meta::RECORD_COUNT, provenance.record_count.to_string())
        .metadata(meta::SHA256, sha256)
        .body(ByteStream::from(body))
        .send()
        .await
        .map(drop)
        .map_err(|e| ArchiveError {
            object: object.clone(),
            reason: describe(&e),
        })
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
