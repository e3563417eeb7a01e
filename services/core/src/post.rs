//! The record the pipeline moves: a blog post as JSONPlaceholder serves it.
//!
//! An object is a JSON array of posts. [`parse_records`] separates what can
//! never be loaded (the object is not a JSON array at all) from what is
//! wrong with single records, so that one bad record never stops the good
//! ones: the transformer loads the valid posts and quarantines the others.

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::fmt;

/// One post, `{"userId": int, "id": int, "title": str, "body": str}`.
///
/// Unknown fields are ignored, so an API that adds a field does not stop the
/// pipeline; a missing or mistyped known field makes the record invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Post {
    pub user_id: i64,
    pub id: i64,
    pub title: String,
    pub body: String,
}

/// Longest `title` accepted, in bytes of UTF-8.
pub const MAX_TITLE_BYTES: usize = 4 * 1024;
/// Longest `body` accepted, in bytes of UTF-8.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Why a body is not a JSON array at all. The message says where in the
/// body; nothing in such a body can be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PostsError {
    #[error("the body is empty")]
    Empty,
    #[error("{0}")]
    Encoding(String),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// A record that is not a valid post, kept so it can be fixed and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Position in the array, from 0.
    pub index: usize,
    /// What is wrong, naming the field, e.g. ``field `id`: invalid type``.
    pub reason: String,
    /// The record's JSON text exactly as it appears in the object.
    pub raw: String,
}

/// The records of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// The valid posts, in array order.
    pub posts: Vec<Post>,
    /// The invalid records, in array order.
    pub bad: Vec<BadRecord>,
}

impl Records {
    /// Number of elements in the array.
    pub fn total(&self) -> usize {
        self.posts.len() + self.bad.len()
    }
}

/// Parses a body that must be a JSON array, checking each element as a post.
pub fn parse_records(body: &[u8]) -> Result<Records, PostsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PostsError::Empty);
    }
    // Fast path, one pass: the whole array as posts, each within range. Only
    // when that fails is the body read again element by element, to tell
    // the good records from the bad.
    if let Some(text) = as_utf8(body)
        && let Ok(posts) = serde_json::from_str::<Vec<Post>>(text)
        && posts.iter().all(|post| check(post).is_ok())
    {
        return Ok(Records {
            posts,
            bad: Vec::new(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let elements = ArraySeed.deserialize(&mut deserializer)?;
    deserializer.end()?;

    let mut records = Records::default();
    for (index, raw) in elements.into_iter().enumerate() {
        match parse_post(raw) {
            Ok(post) => records.posts.push(post),
            Err(reason) => records.bad.push(BadRecord {
                index,
                reason,
                raw: raw.get().to_owned(),
            }),
        }
    }
    Ok(records)
}

/// Reads a JSON array from `reader` one element at a time and hands each to
/// `on_record`, valid or not, so that memory holds one element however
/// large the array. Returns the number of elements.
///
/// `reader` is read to its end (trailing whitespace is allowed, anything
/// else is an error), so a hashing reader sees every byte.
pub fn scan_records<R: std::io::Read>(
    reader: R,
    on_record: impl FnMut(Result<Post, BadRecord>),
) -> Result<u64, PostsError> {
    let mut reader = SeenReader {
        inner: reader,
        seen: false,
    };
    let mut deserializer = serde_json::Deserializer::from_reader(&mut reader);
    let scanned = ScanSeed { on_record }
        .deserialize(&mut deserializer)
        .and_then(|count| {
            deserializer.end()?;
            Ok(count)
        });
    match scanned {
        Err(_) if !reader.seen => Err(PostsError::Empty),
        other => other.map_err(PostsError::from),
    }
}

/// Notes whether anything but whitespace went through, to tell an empty
/// body from a broken one.
struct SeenReader<R> {
    inner: R,
    seen: bool,
}

impl<R: std::io::Read> std::io::Read for SeenReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.seen {
            self.seen = buf[..n].iter().any(|b| !b.is_ascii_whitespace());
        }
        Ok(n)
    }
}

struct ScanSeed<F> {
    on_record: F,
}

impl<'de, F: FnMut(Result<Post, BadRecord>)> DeserializeSeed<'de> for ScanSeed<F> {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Result<Post, BadRecord>)> Visitor<'de> for ScanSeed<F> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of posts")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut index = 0usize;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            let record = parse_post(&raw).map_err(|reason| BadRecord {
                index,
                reason,
                raw: raw.get().to_owned(),
            });
            (self.on_record)(record);
            index += 1;
        }
        Ok(index as u64)
    }
}

/// One element as a post, or why it is not one.
fn parse_post(raw: &RawValue) -> Result<Post, String> {
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let post: Post = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde_json appends "at line 1 column N" of the record: noise here.
        let message = strip_position(&inner);
        if path == "." {
            message.to_owned()
        } else {
            format!("field `{path}`: {message}")
        }
    })?;
    check(&post)?;
    Ok(post)
}

/// What serde cannot check: ranges, and what PostgreSQL `text` cannot hold.
fn check(post: &Post) -> Result<(), String> {
    check_fields(&PostShape {
        user_id: post.user_id,
        id: post.id,
        title: TextShape::of(&post.title),
        body: TextShape::of(&post.body),
    })
}

fn check_fields(post: &PostShape) -> Result<(), String> {
    for (field, value) in [("id", post.id), ("userId", post.user_id)] {
        if value < 1 {
            return Err(format!(
                "field `{field}`: {value} is out of range (1 to {})",
                i64::MAX
            ));
        }
    }
    for (field, value, limit) in [
        ("title", &post.title, MAX_TITLE_BYTES),
        ("body", &post.body, MAX_BODY_BYTES),
    ] {
        if value.nul {
            return Err(format!(
                "field `{field}` contains a NUL character, which PostgreSQL text cannot store"
            ));
        }
        if value.len > limit {
            return Err(format!(
                "field `{field}` is {} bytes, more than the limit of {limit}",
                value.len
            ));
        }
    }
    Ok(())
}

/// Counts the elements of `body` if it is a JSON array of valid posts, and
/// keeps none of them: all that the importer needs to know before it
/// archives a page. It reads text fields without copying them: 10.4 M
/// instructions for a page of 1,000 posts of 1.1 kB, where
/// [`parse_records`] takes 11.5 M (callgrind). `None` when anything is
/// wrong; [`parse_records`] then tells what.
pub fn count_if_all_valid(body: &[u8]) -> Option<u64> {
    let mut deserializer = serde_json::Deserializer::from_str(as_utf8(body)?);
    let count = CountSeed.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(count)
}

/// `body` as text, if it is UTF-8, validated in one SIMD pass. Parsing
/// that text skips serde_json's check of each string, which on non-ASCII
/// text was a third of the work: a page of 1,000 posts takes 11.5 M
/// instructions to parse instead of 17.4 M, and 10.4 M to count instead of
/// 16.3 M (callgrind). `None` says nothing about where: the slow paths,
/// which read bytes, tell.
fn as_utf8(body: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(body).ok()
}

/// What [`check_fields`] looks at in a post.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostShape {
    user_id: i64,
    id: i64,
    title: TextShape,
    body: TextShape,
}

/// What [`check_fields`] looks at in a text field, read from the JSON text
/// in place (serde_json unescapes into a scratch buffer it reuses).
struct TextShape {
    len: usize,
    nul: bool,
}

impl TextShape {
    fn of(text: &str) -> Self {
        Self {
            len: text.len(),
            nul: text.contains('\0'),
        }
    }
}

impl<'de> Deserialize<'de> for TextShape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = TextShape;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<TextShape, E> {
                Ok(TextShape::of(text))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

struct CountSeed;

impl<'de> DeserializeSeed<'de> for CountSeed {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CountSeed {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of valid posts")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut count = 0;
        while let Some(post) = seq.next_element::<PostShape>()? {
            check_fields(&post).map_err(serde::de::Error::custom)?;
            count += 1;
        }
        Ok(count)
    }
}

fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

/// The top-level array, element by element, each kept as raw JSON text.
struct ArraySeed;

impl<'de> DeserializeSeed<'de> for ArraySeed {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of posts")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(element) = seq.next_element()? {
            elements.push(element);
        }
        Ok(elements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(body: &str) -> Vec<(usize, String)> {
        let records = parse_records(body.as_bytes()).expect("an array");
        records
            .bad
            .into_iter()
            .map(|b| (b.index, b.reason))
            .collect()
    }

    #[test]
    fn parses_posts_and_ignores_unknown_fields() {
        let body = br#"[{"userId":1,"id":2,"title":"t","body":"b","extra":true}]"#;
        let records = parse_records(body).expect("valid body");
        assert_eq!(
            records.posts,
            vec![Post {
                user_id: 1,
                id: 2,
                title: "t".into(),
                body: "b".into()
            }]
        );
        assert!(records.bad.is_empty());
    }

    #[test]
    fn what_is_not_an_array_is_an_error_for_the_whole_body() {
        let err = |body: &str| parse_records(body.as_bytes()).expect_err(body).to_string();
        assert!(err(r#"{"id":1}"#).contains("expected a JSON array of posts"));
        assert_eq!(err(" \n"), "the body is empty");
        assert!(err("<html>").contains("expected value"));
        assert!(err(r#"[{"userId":1,"id":1,"title":"a","body":"b"}"#).contains("EOF"));
        assert!(err("[] []").contains("trailing characters"));
    }

    #[test]
    fn bad_records_are_named_by_index_and_field_and_kept_raw() {
        let body = r#"[{"userId":1,"id":1,"title":"a","body":"b"},
                       {"userId":1,"id":"2","title":"a","body":"b"},
                       {"userId":1,"id":3,"body":"b"},
                       7,
                       {"userId":1,"id":5,"title":"a","body":"b"}]"#;
        let records = parse_records(body.as_bytes()).expect("an array");
        assert_eq!(records.total(), 5);
        assert_eq!(
            records.posts.iter().map(|p| p.id).collect::<Vec<_>>(),
            [1, 5]
        );
        assert_eq!(
            reasons(body),
            [
                (
                    1,
                    r#"field `id`: invalid type: string "2", expected i64"#.to_owned()
                ),
                (2, "missing field `title`".to_owned()),
                (
                    3,
                    "invalid type: integer `7`, expected struct Post".to_owned()
                ),
            ]
        );
        assert_eq!(
            records.bad[0].raw,
            r#"{"userId":1,"id":"2","title":"a","body":"b"}"#
        );
    }

    #[test]
    fn out_of_range_ids_nul_and_oversized_fields_are_bad_records() {
        let big = "x".repeat(MAX_TITLE_BYTES + 1);
        let body = format!(
            r#"[{{"userId":1,"id":0,"title":"a","body":"b"}},
                {{"userId":1,"id":99999999999999999999,"title":"a","body":"b"}},
                {{"userId":-3,"id":3,"title":"a","body":"b"}},
                {{"userId":1,"id":4,"title":"a\u0000b","body":"b"}},
                {{"userId":1,"id":5,"title":"{big}","body":"b"}}]"#
        );
        let reasons = reasons(&body);
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(
            reasons[0].1.starts_with("field `id`: 0 is out of range"),
            "{reasons:?}"
        );
        assert!(reasons[1].1.starts_with("field `id`:"), "{reasons:?}");
        assert!(
            reasons[2]
                .1
                .starts_with("field `userId`: -3 is out of range"),
            "{reasons:?}"
        );
        assert!(
            reasons[3].1.contains("`title` contains a NUL"),
            "{reasons:?}"
        );
        assert!(
            reasons[4].1.contains("`title` is 4097 bytes"),
            "{reasons:?}"
        );
    }

    #[test]
    fn scanning_a_reader_sees_what_parsing_a_slice_sees() {
        let body = format!(
            "[{}, 7, {}]  \n",
            r#"{"userId":1,"id":1,"title":"a","body":"b"}"#,
            r#"{"userId":1,"id":"x","title":"a","body":"b"}"#
        );
        let parsed = parse_records(body.as_bytes()).expect("an array");
        let mut scanned = Records::default();
        let count = scan_records(body.as_bytes(), |record| match record {
            Ok(post) => scanned.posts.push(post),
            Err(bad) => scanned.bad.push(bad),
        })
        .expect("an array");
        assert_eq!(count, 3);
        assert_eq!(scanned, parsed);

        let err = |body: &str| {
            scan_records(body.as_bytes(), drop)
                .expect_err(body)
                .to_string()
        };
        assert_eq!(err("  \n"), "the body is empty");
        assert!(err(r#"{"a": 1}"#).contains("expected a JSON array of posts"));
        assert!(err("[1, 2").contains("EOF"));
        assert!(err("[] x").contains("trailing characters"));
    }

    #[test]
    fn counting_valid_posts_agrees_with_parsing() {
        let good = r#"{"userId":1,"id":1,"title":"caf\u00e9 \"x\"","body":"a\nb","extra":[1]}"#;
        let all_good = format!(" [{good}, {good}]\n");
        assert_eq!(count_if_all_valid(all_good.as_bytes()), Some(2));
        assert_eq!(count_if_all_valid(b"[]"), Some(0));

        let big = "x".repeat(MAX_BODY_BYTES + 1);
        for bad in [
            r#"{"userId":1,"id":"2","title":"a","body":"b"}"#,
            r#"{"userId":1,"id":3,"body":"b"}"#,
            r#"{"userId":1,"id":0,"title":"a","body":"b"}"#,
            r#"{"userId":-3,"id":3,"title":"a","body":"b"}"#,
            r#"{"userId":1,"id":4,"title":"a\u0000b","body":"b"}"#,
            &format!(r#"{{"userId":1,"id":5,"title":"a","body":"{big}"}}"#),
            r#"{"userId":1,"id":6,"title":7,"body":"b"}"#,
            "7",
        ] {
            let body = format!("[{good}, {bad}]");
            assert_eq!(count_if_all_valid(body.as_bytes()), None, "{bad}");
            assert_eq!(
                parse_records(body.as_bytes()).expect("an array").bad.len(),
                1
            );
        }
        for not_an_array in ["", " ", r#"{"id":1}"#, "[", "[] []", "<html>"] {
            assert_eq!(
                count_if_all_valid(not_an_array.as_bytes()),
                None,
                "{not_an_array}"
            );
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_found_and_placed() {
        let good = r#"{"userId":1,"id":1,"title":"café","body":"b"}"#;
        let mut body = format!("[{good},\n").into_bytes();
        body.extend_from_slice(b"{\"userId\":1,\"id\":2,\"title\":\"caf\xe9\",\"body\":\"b\"}]");
        assert_eq!(count_if_all_valid(&body), None);
        let err = parse_records(&body).expect_err("not UTF-8").to_string();
        assert!(err.contains("line 2"), "{err}");
        let valid = format!("[{good},{good}]");
        assert_eq!(count_if_all_valid(valid.as_bytes()), Some(2));
        assert_eq!(
            parse_records(valid.as_bytes()).expect("valid").posts.len(),
            2
        );
    }

    #[test]
    fn an_empty_array_is_valid() {
        assert_eq!(parse_records(b" [ ] ").expect("empty array").total(), 0);
    }
}
