//! The SQS message that tells the transformer where an object is.
//!
//! Version 1, as the importer writes it:
//!
//! ```json
//! {"version": 1, "bucket": "raw", "key": "posts/2026/11/26/0193...json",
//!  "sha256": "9f86...", "record_count": 100,
//!  "source_url": "https://jsonplaceholder.typicode.com/posts",
//!  "fetched_at": "2026-11-26T08:00:00Z"}
//! ```
//!
//! Only `bucket` and `key` are required, so an object can be fed in by hand
//! with `{"bucket": "...", "key": "..."}`. Every other field is checked when
//! present. A missing `version` means 1.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::object::ObjectRef;

/// The message schema version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// The body of a message on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMessage {
    #[serde(default = "default_version")]
    pub version: u32,
    pub bucket: String,
    pub key: String,
    /// Lowercase hex SHA-256 of the object's bytes, checked by the
    /// transformer before it parses anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// How many records the importer counted in the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// When the importer fetched the object: the version of the rows in it.
    #[serde(
        default,
        serialize_with = "time::serde::rfc3339::option::serialize",
        deserialize_with = "fetched_at_field",
        skip_serializing_if = "Option::is_none"
    )]
    pub fetched_at: Option<OffsetDateTime>,
}

/// time's own error does not say which field it was parsing.
fn fetched_at_field<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    time::serde::rfc3339::option::deserialize(d).map_err(|e| {
        serde::de::Error::custom(format_args!(
            "field `fetched_at` is not an RFC 3339 time: {e}"
        ))
    })
}

fn default_version() -> u32 {
    MESSAGE_VERSION
}

/// Why a message body cannot be used. None of these can succeed on a retry.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message body is not a known message format: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("message version {0} is not supported (this build reads version {MESSAGE_VERSION})")]
    UnsupportedVersion(u32),
    #[error("message field `{0}` is empty")]
    Empty(&'static str),
    #[error("message field `sha256` is not 64 hex digits: {0:?}")]
    BadSha256(String),
}

impl ObjectMessage {
    /// Reads and checks a message body.
    pub fn decode(body: &str) -> Result<Self, MessageError> {
        let mut message: Self = serde_json::from_str(body)?;
        if message.version != MESSAGE_VERSION {
            return Err(MessageError::UnsupportedVersion(message.version));
        }
        if message.bucket.is_empty() {
            return Err(MessageError::Empty("bucket"));
        }
        if message.key.is_empty() {
            return Err(MessageError::Empty("key"));
        }
        if let Some(sha) = &mut message.sha256 {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(MessageError::BadSha256(sha.clone()));
            }
            sha.make_ascii_lowercase();
        }
        Ok(message)
    }

    /// The body to send.
    pub fn encode(&self) -> String {
        // Serializing plain strings, integers and dates cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("encoding a message: {e}"))
    }

    pub fn object(&self) -> ObjectRef {
        ObjectRef::new(&self.bucket, &self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn round_trips() {
        let message = ObjectMessage {
            version: 1,
            bucket: "raw".into(),
            key: "posts/a.json".into(),
            sha256: Some("ab".repeat(32)),
            record_count: Some(3),
            source_url: Some("http://127.0.0.1:1/posts".into()),
            fetched_at: Some(datetime!(2026-11-26 08:00:00.123 UTC)),
        };
        let body = message.encode();
        assert!(
            body.contains(r#""fetched_at":"2026-11-26T08:00:00.123Z""#),
            "{body}"
        );
        assert_eq!(ObjectMessage::decode(&body).expect("decodes"), message);
    }

    #[test]
    fn the_minimal_message_is_bucket_and_key() {
        let message = ObjectMessage::decode(r#"{"bucket":"raw","key":"k.json"}"#).expect("minimal");
        assert_eq!(message.version, 1);
        assert_eq!(message.object().to_string(), "s3://raw/k.json");
        assert_eq!(message.sha256, None);
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        let cases = [
            ("not json", "not a known message format"),
            (r#"{"key":"k"}"#, "missing field `bucket`"),
            (
                r#"{"version":2,"bucket":"b","key":"k"}"#,
                "version 2 is not supported",
            ),
            (r#"{"bucket":"","key":"k"}"#, "`bucket` is empty"),
            (
                r#"{"bucket":"b","key":"k","sha256":"xyz"}"#,
                "not 64 hex digits",
            ),
            (
                r#"{"bucket":"b","key":"k","fetched_at":"yesterday"}"#,
                "fetched_at",
            ),
        ];
        for (body, expected) in cases {
            let err = ObjectMessage::decode(body).unwrap_err().to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn uppercase_sha256_is_normalised() {
        let body = format!(
            r#"{{"bucket":"b","key":"k","sha256":"{}"}}"#,
            "AB".repeat(32)
        );
        let message = ObjectMessage::decode(&body).expect("valid");
        assert_eq!(message.sha256.as_deref(), Some("ab".repeat(32).as_str()));
    }
}
