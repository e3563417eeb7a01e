//! `posts`: a blog post as JSONPlaceholder serves it.

use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

use crate::record::{Column, Record, Table, count_valid, rules};

/// One post, `{"userId": int, "id": int, "title": str, "body": str}`.
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

impl Record for Post {
    const RESOURCE: &'static str = "posts";
    const TABLE: Table = Table {
        name: "posts",
        key: "id",
    };

    fn key(&self) -> i64 {
        self.id
    }

    /// The rules are [`PostView::check`]'s, written once for both.
    fn check(&self) -> Result<(), String> {
        PostView {
            user_id: self.user_id,
            id: self.id,
            title: TextView::of(&self.title),
            body: TextView::of(&self.body),
        }
        .check()
    }

    fn columns<'a>(rows: &[&'a Self]) -> Vec<Column<'a>> {
        vec![
            Column::big_int("user_id", rows, |p| p.user_id),
            Column::text("title", rows, |p| &p.title),
            Column::text("body", rows, |p| &p.body),
        ]
    }

    /// Reads text fields without copying them: 10.4 M instructions for a
    /// page of 1,000 posts of 1.1 kB, where parsing takes 11.5 M
    /// (callgrind), and no allocation on the importer's blocking threads
    /// (reading whole posts there, its peak RSS in `scripts/bench` was a
    /// MiB higher).
    fn count_if_all_valid(body: &[u8]) -> Option<u64> {
        count_valid::<PostView>(body, PostView::check)
    }
}

/// What [`Post::check`] looks at in a post: read in place from the JSON
/// text by the importer, or taken from a parsed [`Post`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostView {
    user_id: i64,
    id: i64,
    title: TextView,
    body: TextView,
}

impl PostView {
    /// The rules of a post.
    fn check(&self) -> Result<(), String> {
        rules::positive("id", self.id)?;
        rules::positive("userId", self.user_id)?;
        rules::text_measured("title", self.title.len, self.title.nul, MAX_TITLE_BYTES)?;
        rules::text_measured("body", self.body.len, self.body.nul, MAX_BODY_BYTES)
    }
}

/// A text field's length and whether it holds a NUL, read from the JSON
/// text in place (serde_json unescapes into a scratch buffer it reuses).
struct TextView {
    len: usize,
    nul: bool,
}

impl TextView {
    fn of(text: &str) -> Self {
        Self {
            len: text.len(),
            nul: text.contains('\0'),
        }
    }
}

impl<'de> Deserialize<'de> for TextView {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = TextView;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<TextView, E> {
                Ok(TextView::of(text))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Records, parse_records, scan_records};

    fn reasons(body: &str) -> Vec<(usize, String)> {
        let records = parse_records::<Post>(body.as_bytes()).expect("an array");
        records
            .bad
            .into_iter()
            .map(|b| (b.index, b.reason))
            .collect()
    }

    #[test]
    fn parses_posts_and_ignores_unknown_fields() {
        let body = br#"[{"userId":1,"id":2,"title":"t","body":"b","extra":true}]"#;
        let records = parse_records::<Post>(body).expect("valid body");
        assert_eq!(
            records.rows,
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
        let err = |body: &str| {
            parse_records::<Post>(body.as_bytes())
                .expect_err(body)
                .to_string()
        };
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
        let records = parse_records::<Post>(body.as_bytes()).expect("an array");
        assert_eq!(records.total(), 5);
        assert_eq!(
            records.rows.iter().map(|p| p.id).collect::<Vec<_>>(),
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
        let parsed = parse_records::<Post>(body.as_bytes()).expect("an array");
        let mut scanned = Records::<Post>::default();
        let count = scan_records::<Post, _>(body.as_bytes(), |record| match record {
            Ok(post) => scanned.rows.push(post),
            Err(bad) => scanned.bad.push(bad),
        })
        .expect("an array");
        assert_eq!(count, 3);
        assert_eq!(scanned, parsed);

        let err = |body: &str| {
            scan_records::<Post, _>(body.as_bytes(), drop)
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
        assert_eq!(Post::count_if_all_valid(all_good.as_bytes()), Some(2));
        assert_eq!(Post::count_if_all_valid(b"[]"), Some(0));

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
            assert_eq!(Post::count_if_all_valid(body.as_bytes()), None, "{bad}");
            assert_eq!(
                parse_records::<Post>(body.as_bytes())
                    .expect("an array")
                    .bad
                    .len(),
                1
            );
        }
        for not_an_array in ["", " ", r#"{"id":1}"#, "[", "[] []", "<html>"] {
            assert_eq!(
                Post::count_if_all_valid(not_an_array.as_bytes()),
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
        assert_eq!(Post::count_if_all_valid(&body), None);
        let err = parse_records::<Post>(&body)
            .expect_err("not UTF-8")
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let valid = format!("[{good},{good}]");
        assert_eq!(Post::count_if_all_valid(valid.as_bytes()), Some(2));
        assert_eq!(
            parse_records::<Post>(valid.as_bytes())
                .expect("valid")
                .rows
                .len(),
            2
        );
    }

    #[test]
    fn an_empty_array_is_valid() {
        assert_eq!(
            parse_records::<Post>(b" [ ] ")
                .expect("empty array")
                .total(),
            0
        );
    }
}
