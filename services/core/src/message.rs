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
    #[error("the SNS notification from {topic} carries no message this transformer reads")]
    InSns {
        topic: String,
        #[source]
        source: Box<MessageError>,
    },
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
    /// Reads a message body: an [`ObjectMessage`], or an S3 event in any of
    /// the envelopes it reaches a queue in, so that a bucket can be wired to
    /// the queue as AWS offers it:
    ///
    /// - straight from S3 (a notification with `Records`), or through SNS
    ///   with raw message delivery: the same JSON;
    /// - through SNS without raw delivery: an SNS `Notification` whose
    ///   `Message` is that JSON, as a string;
    /// - through EventBridge (`EventBridgeConfiguration` on the bucket, a
    ///   rule targeting the queue): an event from `aws.s3` whose `detail`
    ///   names the bucket and key.
    ///
    /// Anything else is an error, and its message is dead-lettered.
    pub fn decode(body: &str) -> Result<Self, MessageError> {
        if let Ok(sns) = serde_json::from_str::<SnsNotification>(body)
            && sns.kind == "Notification"
        {
            return Self::unwrapped(&sns.message).map_err(|e| MessageError::InSns {
                topic: sns.topic_arn,
                source: Box::new(e),
            });
        }
        Self::unwrapped(body)
    }

    fn unwrapped(body: &str) -> Result<Self, MessageError> {
        if let Ok(event) = serde_json::from_str::<S3Event>(body) {
            return event.into_incoming();
        }
        if let Ok(event) = serde_json::from_str::<EventBridgeEvent>(body)
            && event.source == "aws.s3"
        {
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

/// What SNS delivers to a queue when raw message delivery is off: the
/// published message is `Message`, a string.
/// (<https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html>)
#[derive(Debug, Deserialize)]
struct SnsNotification {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "TopicArn")]
    topic_arn: String,
    #[serde(rename = "Message")]
    message: String,
}

/// An S3 event as EventBridge delivers it to a rule's target.
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html>)
#[derive(Debug, Deserialize)]
struct EventBridgeEvent {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: S3EventEntity,
}

impl EventBridgeEvent {
    fn into_incoming(self) -> Result<Incoming, MessageError> {
        if self.detail_type != "Object Created" {
            return Ok(Incoming::Ignored(self.detail_type));
        }
        let object = object_named(self.detail, ["detail.bucket.name", "detail.object.key"])?;
        Ok(Incoming::Objects(vec![object]))
    }
}

/// The object an S3 event names; `fields` name its bucket and key in
/// errors. S3 URL-encodes keys in what it sends to SQS, SNS and EventBridge
/// alike: the notification format's documentation says so, with `+` for a
/// space; LocalStack, whose S3 is checked against AWS's answers, encodes the
/// key for all three the same way (`localstack/services/s3/notifications.py`:
/// `key_name=quote(s3_object.key)`).
fn object_named(
    entity: S3EventEntity,
    [bucket_field, key_field]: [&'static str; 2],
) -> Result<ObjectMessage, MessageError> {
    let encoded = entity.object.key;
    let key = percent_encoding::percent_decode_str(&encoded.replace('+', " "))
        .decode_utf8()
        .map_err(|_| MessageError::BadKey(encoded.clone()))?
        .into_owned();
    if entity.bucket.name.is_empty() {
        return Err(MessageError::Empty(bucket_field));
    }
    if key.is_empty() {
        return Err(MessageError::Empty(key_field));
    }
    Ok(ObjectMessage {
        version: MESSAGE_VERSION,
        bucket: entity.bucket.name,
        key,
        sha256: None,
        record_count: None,
        source_url: None,
        fetched_at: None,
        resource: None,
        reapply: false,
    })
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
            objects.push(object_named(
                record.s3,
                ["Records[].s3.bucket.name", "Records[].s3.object.key"],
            )?);
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

    /// An S3 event wrapped as SNS wraps what it delivers to SQS without raw
    /// delivery (the shape of AWS's documented example).
    fn in_sns(message: &str) -> String {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:raw-objects",
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": "2026-11-26T08:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
        })
        .to_string()
    }

    fn objects(incoming: Incoming) -> Vec<String> {
        match incoming {
            Incoming::Objects(objects) => objects.iter().map(|o| o.object().to_string()).collect(),
            other => panic!("not objects: {other:?}"),
        }
    }

    #[test]
    fn s3_events_through_sns_are_read_raw_or_wrapped() {
        let event = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"raw"},"object":{"key":"posts/a+b%2Bc.json"}}}]}"#;
        // Raw delivery: the event itself.
        assert_eq!(
            objects(Incoming::decode(event).unwrap()),
            ["s3://raw/posts/a b+c.json"]
        );
        assert_eq!(
            objects(Incoming::decode(&in_sns(event)).unwrap()),
            ["s3://raw/posts/a b+c.json"]
        );
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"raw"}"#;
        assert_eq!(
            Incoming::decode(&in_sns(test)).unwrap(),
            Incoming::TestEvent
        );
        // What no envelope makes readable names the topic it came through.
        let error = Incoming::decode(&in_sns("hello")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the SNS notification from arn:aws:sns:us-east-1:123456789012:raw-objects carries no message this transformer reads"
        );
        assert!(
            std::error::Error::source(&error)
                .unwrap()
                .to_string()
                .contains("not a known message format")
        );
    }

    #[test]
    fn s3_events_through_eventbridge_name_their_object() {
        let event = |detail_type: &str, source: &str, key: &str| {
            serde_json::json!({
                "version": "0",
                "id": "17793124-05d4-b198-2fde-7ededc63b103",
                "detail-type": detail_type,
                "source": source,
                "account": "111122223333",
                "time": "2026-11-26T08:00:00Z",
                "region": "us-east-1",
                "resources": ["arn:aws:s3:::raw"],
                "detail": {
                    "version": "0",
                    "bucket": {"name": "raw"},
                    "object": {"key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184"},
                    "request-id": "N4N7GDK58NMKJ12R",
                    "requester": "123456789012",
                    "reason": "PutObject"
                }
            })
            .to_string()
        };
        assert_eq!(
            objects(
                Incoming::decode(&event(
                    "Object Created",
                    "aws.s3",
                    "posts/caf%C3%A9%20au%20lait.json"
                ))
                .unwrap()
            ),
            ["s3://raw/posts/café au lait.json"]
        );
        assert_eq!(
            Incoming::decode(&event("Object Deleted", "aws.s3", "k")).unwrap(),
            Incoming::Ignored("Object Deleted".into())
        );
        assert_eq!(
            Incoming::decode(&event("Object Created", "aws.s3", ""))
                .unwrap_err()
                .to_string(),
            "message field `detail.object.key` is empty"
        );
        // Not from S3: not an object to apply.
        assert!(Incoming::decode(&event("Object Created", "my.app", "k")).is_err());
    }
}
