//! The built-in resources, read through [`Resource`]: JSONPlaceholder's
//! posts and comments held to the rules they always had, now written as
//! checks in `spec/builtin.toml`.

use super::*;
use crate::spec::Spec;
use crate::spec::read::Buffer;

fn built_in(name: &str) -> ResourceSpec {
    Spec::built_in()
        .resource(name)
        .unwrap_or_else(|| panic!("{name} is built in"))
        .clone()
}

fn reasons(records: &Batch) -> Vec<(usize, &str)> {
    records
        .bad
        .iter()
        .map(|b| (b.index, b.reason.as_str()))
        .collect()
}

fn ids(records: &Batch) -> Vec<i64> {
    match &records.columns.buffers[0] {
        Buffer::BigInt(ids) => ids.iter().map(|id| id.unwrap_or(-1)).collect(),
        other => panic!("the key is bigint: {other:?}"),
    }
}

#[test]
fn posts_load_with_unknown_fields_ignored_and_each_bad_one_is_named_by_column() {
    let posts = built_in("posts");
    let big = "x".repeat(4097);
    let body = format!(
        r#"[{{"userId":1,"id":1,"title":"a","body":"b","extra":true}},
            {{"userId":1,"id":"2","title":"a","body":"b"}},
            {{"userId":1,"id":3,"body":"b"}},
            7,
            {{"userId":1,"id":0,"title":"a","body":"b"}},
            {{"userId":1,"id":99999999999999999999,"title":"a","body":"b"}},
            {{"userId":-3,"id":6,"title":"a","body":"b"}},
            {{"userId":1,"id":7,"title":"a\u0000b","body":"b"}},
            {{"userId":1,"id":8,"title":"{big}","body":"b"}},
            {{"userId":1,"id":9,"title":"a","body":"b"}}]"#
    );
    let records = posts.parse(body.as_bytes()).expect("an array");
    assert_eq!(records.total(), 10);
    assert_eq!(ids(&records), [1, 9]);
    assert_eq!(
        reasons(&records),
        [
            (
                1,
                r#"column `id` (/id): "2" is not a whole number that fits bigint"#
            ),
            (2, "column `title` (/title): missing"),
            (
                3,
                "invalid type: integer `7`, expected a JSON object (a record)"
            ),
            (4, "column `id` (/id): 0 is less than the minimum 1"),
            // serde_json reads a number beyond 64 bits as a float.
            (
                5,
                "column `id` (/id): 1e+20 is not a whole number that fits bigint"
            ),
            (
                6,
                "column `user_id` (/userId): -3 is less than the minimum 1"
            ),
            (
                7,
                "column `title` (/title): holds a NUL character, which PostgreSQL text cannot store"
            ),
            (
                8,
                "column `title` (/title): is 4097 bytes, more than the limit of 4096"
            ),
        ]
    );
    assert_eq!(
        records.bad[0].raw,
        r#"{"userId":1,"id":"2","title":"a","body":"b"}"#
    );
}

#[test]
fn a_comment_whose_email_is_not_an_address_is_a_bad_record() {
    let comments = built_in("comments");
    let body = r#"[{"postId":1,"id":1,"name":"n","email":"Eliseo@gardner.biz","body":"b"},
                   {"postId":1,"id":2,"name":"n","email":"not an address","body":"b"},
                   {"postId":1,"id":3,"name":"n","email":"a@","body":"b"},
                   {"postId":0,"id":4,"name":"n","email":"a@b.c","body":"b"},
                   {"postId":1,"id":5,"name":"n","body":"b"}]"#;
    let records = comments.parse(body.as_bytes()).expect("an array");
    assert_eq!(ids(&records), [1]);
    assert_eq!(
        reasons(&records),
        [
            (
                1,
                r#"column `email` (/email): "not an address" is not an e-mail address"#
            ),
            (
                2,
                r#"column `email` (/email): "a@" is not an e-mail address"#
            ),
            (
                3,
                "column `post_id` (/postId): 0 is less than the minimum 1"
            ),
            (4, "column `email` (/email): missing"),
        ]
    );
}

#[test]
fn scanning_hands_over_batches_of_the_size_asked_and_sees_what_parsing_sees() {
    let posts = built_in("posts");
    let post = r#"{"userId":1,"id":1,"title":"t","body":"b"}"#;
    let body = format!("[{post},{post},7,{post},{post}]  \n");
    let mut sizes = Vec::new();
    let mut scanned = Vec::new();
    let count = posts
        .scan(&mut body.as_bytes(), 2, &mut |batch| {
            sizes.push((batch.columns.rows(), batch.bad.len()));
            scanned.push(batch);
        })
        .expect("an array");
    assert_eq!(count, 5);
    assert_eq!(sizes, [(2, 0), (1, 1), (1, 0)]);
    let parsed = posts.parse(body.as_bytes()).expect("an array");
    assert_eq!(scanned[1].bad, parsed.bad);
}

#[test]
fn bytes_that_are_not_utf8_are_found_and_placed() {
    let posts = built_in("posts");
    let good = r#"{"userId":1,"id":1,"title":"café","body":"b"}"#;
    let mut body = format!("[{good},\n").into_bytes();
    body.extend_from_slice(b"{\"userId\":1,\"id\":2,\"title\":\"caf\xe9\",\"body\":\"b\"}]");
    let err = posts.parse(&body).expect_err("not UTF-8").to_string();
    assert!(err.contains("line 2"), "{err}");
}
