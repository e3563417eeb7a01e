//! The SQS message that tells the transformer where an object is.
//!
//! Version 1, as the importer writes it:
//!
//! ```json
//! {"version": 1, "bucket": "raw", "key": "raw/posts/2026/11/26/0193...json",
//!  "sha256": "9f86...", "record_count": 100,
//!  "source_url": "https://jsonplaceholder.typicode.com/posts",
//!  "fetched_at": "2026-11-26T08:00:00Z"}
//! ```
//!
//! `"resource": "posts"` says what the object holds; for a message without
//! it, the object's `resource` metadata says, and an object without that
//! holds posts ([`DEFAULT_RESOURCE`]), as everything archived before
//! resources does. `"reapply": true` is added by
//! `importer replay --reapply`.
//!
//! Only `bucket` and `key` are required, so an object can be fed in by hand
//! with `{"bucket": "...", "key": "..."}`. Every other field is checked when
//! present. A missing `version` means 1.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::object::ObjectRef;

/// The message schema version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// The resource of a message that names none: every message and archived
/// object written before messages named their resource holds posts.
pub const DEFAULT_RESOURCE: &str = "posts";

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
    /// Which resource the object holds; `None`: the object's metadata says,
    /// or else [`DEFAULT_RESOURCE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Apply the object even if the ledger has its bytes (`importer replay
    /// --reapply`, after a fix in the transformer): its ledger row and
    /// quarantined records are replaced with its rows, in one transaction.
    /// Rows still only move forward by `fetched_at`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reapply: bool,
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
    #[error("S3 event key {0:?} is not URL-encoded UTF-8")]
    BadKey(String),
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
        if message.resource.as_deref() == Some("") {
            return Err(MessageError::Empty("resource"));
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

    /// The resource the message says the object holds, or
    /// [`DEFAULT_RESOURCE`] (the transformer asks the object first).
    pub fn resource(&self) -> &str {
        self.resource.as_deref().unwrap_or(DEFAULT_RESOURCE)
    }
}

/// What a message on the queue can say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Apply these objects: one from an [`ObjectMessage`], one or more from
    /// an S3 event notification.
    Objects(Vec<ObjectMessage>),
    /// S3's `s3:TestEvent`, sent once when a notification is configured.
    TestEvent,
    /// An S3 event notification about something other than a new object.
    Ignored(String),
}

impl Incoming {
    /// Reads a message body: an [`ObjectMessage`], or the JSON S3 sends to
    /// SQS itself, so that a bucket can be wired straight to the queue.
    pub fn decode(body: &str) -> Result<Self, MessageError> {
        if let Ok(event) = serde_json::from_str::<S3Event>(body) {
            return event.into_incoming();
        }
        if let Ok(test) = serde_json::from_str::<S3TestEvent>(body)
            && test.event == "s3:TestEvent"
        {
            return Ok(Self::TestEvent);
        }
        ObjectMessage::decode(body).map(|message| Self::Objects(vec![message]))
    }
}

/// `{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ...}, "object": {"key": ...}}}]}`
#[derive(Debug, Deserialize)]
struct S3Event {
    #[serde(rename = "Records")]
    records: Vec<S3EventRecord>,
}

#[derive(Debug, Deserialize)]
struct S3EventRecord {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: S3EventEntity,
}

#[derive(Debug, Deserialize)]
struct S3EventEntity {
    bucket: S3EventBucket,
    object: S3EventObject,
}

#[derive(Debug, Deserialize)]
struct S3EventBucket {
    name: String,
}

#[derive(Debug, Deserialize)]
struct S3EventObject {
    key: String,
}

#[derive(Debug, Deserialize)]
struct S3TestEvent {
    #[serde(rename = "Event")]
    event: String,
}

impl S3Event {
    fn into_incoming(self) -> Result<Incoming, MessageError> {
        let mut objects = Vec::new();
        let mut ignored = Vec::new();
        for record in self.records {
            if !record.event_name.starts_with("ObjectCreated:") {
                ignored.push(record.event_name);
                continue;
            }
            // S3 URL-encodes keys in notifications, with `+` for a space.
            let key = percent_encoding::percent_decode_str(&record.s3.object.key.replace('+', " "))
                .decode_utf8()
                .map_err(|_| MessageError::BadKey(record.s3.object.key.clone()))?
                .into_owned();
            if record.s3.bucket.name.is_empty() {
                return Err(MessageError::Empty("Records[].s3.bucket.name"));
            }
            if key.is_empty() {
                return Err(MessageError::Empty("Records[].s3.object.key"));
            }
            objects.push(ObjectMessage {
                version: MESSAGE_VERSION,
                bucket: record.s3.bucket.name,
                key,
                sha256: None,
                record_count: None,
                source_url: None,
                fetched_at: None,
                resource: None,
                reapply: false,
            });
        }
        if objects.is_empty() {
            Ok(Incoming::Ignored(ignored.join(", ")))
        } else {
            Ok(Incoming::Objects(objects))
        }
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
            resource: Some("posts".into()),
            reapply: false,
        };
        let body = message.encode();
        assert!(
            body.contains(r#""fetched_at":"2026-11-26T08:00:00.123Z""#),
            "{body}"
        );
        // Written only when set, so older transformers read it unchanged.
        assert!(!body.contains("reapply"), "{body}");
        assert_eq!(ObjectMessage::decode(&body).expect("decodes"), message);
        let again = ObjectMessage {
            reapply: true,
            ..message
        };
        assert_eq!(
            ObjectMessage::decode(&again.encode()).expect("decodes"),
            again
        );
    }

    #[test]
    fn the_minimal_message_is_bucket_and_key() {
        let message = ObjectMessage::decode(r#"{"bucket":"raw","key":"k.json"}"#).expect("minimal");
        assert_eq!(message.version, 1);
        assert_eq!(message.object().to_string(), "s3://raw/k.json");
        assert_eq!(message.sha256, None);
        // Written before messages named their resource: posts.
        assert_eq!(message.resource(), DEFAULT_RESOURCE);
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
                r#"{"bucket":"b","key":"k","resource":""}"#,
                "`resource` is empty",
            ),
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
    fn s3_event_notifications_name_objects_with_decoded_keys() {
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"raw","arn":"arn:aws:s3:::raw"},"object":{"key":"posts/caf%C3%A9+au+lait.json","size":9}}}]}"#;
        let Incoming::Objects(objects) = Incoming::decode(body).expect("an S3 event") else {
            panic!("not objects")
        };
        assert_eq!(objects.len(), 1);
        assert_eq!(
            objects[0].object().to_string(),
            "s3://raw/posts/café au lait.json"
        );
        assert_eq!(objects[0].sha256, None);
    }

    #[test]
    fn s3_test_events_and_other_events_are_recognised() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-26T08:00:00.000Z","Bucket":"raw"}"#;
        assert_eq!(
            Incoming::decode(test).expect("test event"),
            Incoming::TestEvent
        );
        let removed = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"raw"},"object":{"key":"k"}}}]}"#;
        assert_eq!(
            Incoming::decode(removed).expect("an S3 event"),
            Incoming::Ignored("ObjectRemoved:Delete".into())
        );
    }

    #[test]
    fn object_messages_decode_as_incoming_too() {
        let incoming = Incoming::decode(r#"{"bucket":"raw","key":"k.json"}"#).expect("minimal");
        assert!(matches!(incoming, Incoming::Objects(ref o) if o.len() == 1));
        assert!(Incoming::decode(r#"{"Records": "nope"}"#).is_err());
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
