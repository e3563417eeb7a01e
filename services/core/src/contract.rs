//! What the importer writes and the transformer (and any operator tool)
//! reads besides the message body: the S3 object metadata, the SQS message
//! attributes, and the digest form. The body is [`crate::message`].

use aws_sdk_sqs::types::MessageAttributeValue;
use sha2::{Digest as _, Sha256};

/// S3 object metadata keys, sent as `x-amz-meta-<key>`: an archived object
/// says where it came from without its message.
pub mod metadata {
    /// The URL the bytes were fetched from.
    pub const SOURCE_URL: &str = "source-url";
    /// RFC 3339 time of the fetch: the version of the rows in the object.
    pub const FETCHED_AT: &str = "fetched-at";
    /// Records the importer counted.
    pub const RECORD_COUNT: &str = "record-count";
    /// The resource the records are, as the message names it.
    pub const RESOURCE: &str = "resource";
    /// [`super::sha256_hex`] of the bytes the API sent, before any
    /// compression.
    pub const SHA256: &str = "sha256";
}

/// SQS message attribute names: consumers route, filter and explain
/// messages without parsing their bodies.
pub mod attribute {
    /// `application/json`.
    pub const CONTENT_TYPE: &str = "content_type";
    /// [`crate::message::MESSAGE_VERSION`] of the body.
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// On a dead letter: why the transformer gave up on it.
    pub const DEAD_LETTER_REASON: &str = "dead_letter_reason";
    /// On a dead letter: the message's id on the queue it came from.
    pub const SOURCE_MESSAGE_ID: &str = "source_message_id";
    /// On a dead letter: the queue it came from.
    pub const SOURCE_QUEUE_URL: &str = "source_queue_url";
}

/// A `String` message attribute.
pub fn string_attribute(value: impl Into<String>) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap_or_else(|e| unreachable!("data type and value are set: {e}"))
}

/// The digest form of the contract: lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_digest(Sha256::digest(bytes))
}

/// The same form, of bytes fed to a hasher as they streamed past.
pub fn finish_sha256(hasher: Sha256) -> String {
    hex_digest(hasher.finalize())
}

fn hex_digest(digest: impl AsRef<[u8]>) -> String {
    hex::encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_lowercase_hex_whether_whole_or_streamed() {
        let whole = sha256_hex(b"abc");
        assert_eq!(
            whole,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut hasher = Sha256::new();
        hasher.update(b"a");
        hasher.update(b"bc");
        assert_eq!(finish_sha256(hasher), whole);
    }
}
