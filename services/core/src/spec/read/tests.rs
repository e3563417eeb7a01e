use super::*;
use crate::spec::Spec;
use time::macros::{date, datetime};

fn spec(text: &str) -> ResourceSpec {
    Spec::parse("test.toml", text).unwrap().resources.remove(0)
}

/// Reads each record text; returns the columns and each record's error.
fn read(spec: &ResourceSpec, records: &[&str]) -> (Columns, Vec<Option<String>>) {
    let mut columns = Columns::new(spec);
    let errors = records
        .iter()
        .map(|text| columns.read(spec, text).err())
        .collect();
    (columns, errors)
}

#[test]
fn posts_by_the_built_in_file() {
    let spec = Spec::built_in();
    let posts = spec.resource("posts").unwrap();
    let (columns, errors) = read(
        posts,
        &[
            r#"{"userId": 1, "id": 1, "title": "sunt aut", "body": "quia\net", "extra": [1]}"#,
            r#"{"userId": 1, "id": 0, "title": "t", "body": "b"}"#,
            r#"{"userId": 1, "id": 3, "title": "t"}"#,
            r#"{"userId": "1", "id": 4, "title": "t", "body": "b"}"#,
            r#"{"userId": 2, "id": 5, "title": "è漢字", "body": ""}"#,
        ],
    );
    assert_eq!(
        errors,
        [
            None,
            Some("column `id` (/id): 0 is less than the minimum 1".into()),
            Some("column `body` (/body): missing".into()),
            Some(
                r#"column `user_id` (/userId): "1" is not a whole number that fits bigint"#.into()
            ),
            None,
        ]
    );
    assert_eq!(columns.rows(), 2);
    assert_eq!(
        columns.buffers,
        [
            Buffer::BigInt(vec![Some(1), Some(5)]),
            Buffer::BigInt(vec![Some(1), Some(2)]),
            Buffer::Text(vec![Some("sunt aut".into()), Some("è漢字".into())]),
            Buffer::Text(vec![Some("quia\net".into()), Some(String::new())]),
        ]
    );
    assert_eq!(columns.extra, None, "posts ignore other fields");
    let comments = spec.resource("comments").unwrap();
    let (_, errors) = read(
        comments,
        &[r#"{"postId": 1, "id": 2, "name": "n", "email": "not an address", "body": "b"}"#],
    );
    assert_eq!(
        errors,
        [Some(
            r#"column `email` (/email): "not an address" is not an e-mail address"#.into()
        )]
    );
}

const EVERY_TYPE: &str = r#"
    [resources.events]
    key = "id"
    extra = "keep"
    [[resources.events.columns]]
    name = "id"
    type = "uuid"
    [[resources.events.columns]]
    name = "n"
    from = "/counts/n"
    type = "integer"
    nullable = true
    [[resources.events.columns]]
    name = "ratio"
    from = "/counts/ratio"
    type = "double precision"
    nullable = true
    [[resources.events.columns]]
    name = "amount"
    type = "numeric"
    nullable = true
    [[resources.events.columns]]
    name = "ok"
    type = "boolean"
    nullable = true
    [[resources.events.columns]]
    name = "at"
    type = "timestamptz"
    epoch = "milliseconds"
    nullable = true
    [[resources.events.columns]]
    name = "day"
    type = "date"
    nullable = true
    [[resources.events.columns]]
    name = "payload"
    type = "jsonb"
    nullable = true
    [[resources.events.columns]]
    name = "big"
    type = "bigint"
    nullable = true
"#;

#[test]
fn every_type_nested_fields_nulls_and_the_fields_no_column_names() {
    let spec = spec(EVERY_TYPE);
    let (columns, errors) = read(
        &spec,
        &[
            r#"{"id": "0192d6a8-8f1e-7c4b-9a5e-3f2b1c0d9e8f", "counts": {"n": -7, "ratio": 0.5, "skip": 1},
                "amount": 12345678901234567890.123456789, "ok": true, "at": "2026-12-07T09:00:00.5+01:00",
                "day": "2026-12-07", "payload": {"a": [1, {"b": null}]}, "big": 9007199254740993,
                "other": "x", "more": {"k": 1}}"#,
            r#"{"id": "0192d6a8-8f1e-7c4b-9a5e-3f2b1c0d9e90", "counts": null, "amount": "-0.10",
                "at": 1765098000000, "payload": null}"#,
        ],
    );
    assert_eq!(errors, [None, None]);
    let id = |s: &str| Some(uuid::Uuid::parse_str(s).unwrap());
    assert_eq!(
        columns.buffers,
        [
            Buffer::Uuid(vec![
                id("0192d6a8-8f1e-7c4b-9a5e-3f2b1c0d9e8f"),
                id("0192d6a8-8f1e-7c4b-9a5e-3f2b1c0d9e90")
            ]),
            Buffer::Integer(vec![Some(-7), None]),
            Buffer::Double(vec![Some(0.5), None]),
            // Every digit, as sent.
            Buffer::Numeric(vec![
                Some("12345678901234567890.123456789".into()),
                Some("-0.10".into())
            ]),
            Buffer::Boolean(vec![Some(true), None]),
            Buffer::Timestamptz(vec![
                Some(datetime!(2026-12-07 08:00:00.5 UTC)),
                Some(datetime!(2025-12-07 09:00:00 UTC))
            ]),
            Buffer::Date(vec![Some(date!(2026 - 12 - 07)), None]),
            Buffer::Jsonb(vec![Some(r#"{"a": [1, {"b": null}]}"#.into()), None]),
            Buffer::BigInt(vec![Some(9_007_199_254_740_993), None]),
        ]
    );
    assert_eq!(
        columns.extra,
        Some(Buffer::Jsonb(vec![
            Some(r#"{"other":"x","more":{"k": 1}}"#.into()),
            None
        ])),
        "what no column names, and only that"
    );
}

#[test]
fn a_record_that_does_not_fit_names_the_column_and_pointer_and_leaves_nothing() {
    let spec = spec(EVERY_TYPE);
    let id = r#""id": "0192d6a8-8f1e-7c4b-9a5e-3f2b1c0d9e8f""#;
    let cases = [
        (
            format!("{{{id}, \"counts\": {{\"n\": 2147483648}}}}"),
            "column `n` (/counts/n): 2147483648 is not a whole number that fits integer",
        ),
        (
            format!("{{{id}, \"amount\": \"1,5\"}}"),
            r#"column `amount` (/amount): "1,5" is not a decimal number"#,
        ),
        (
            format!("{{{id}, \"at\": \"yesterday\"}}"),
            r#"column `at` (/at): "yesterday" is not an RFC 3339 time"#,
        ),
        (
            format!("{{{id}, \"day\": \"07/12/2026\"}}"),
            r#"column `day` (/day): "07/12/2026" is not a date (YYYY-MM-DD)"#,
        ),
        (
            format!("{{{id}, \"ok\": \"yes\"}}"),
            r#"column `ok` (/ok): "yes" is not true or false"#,
        ),
        (
            r#"{"id": "nope"}"#.into(),
            r#"column `id` (/id): "nope" is not a UUID"#,
        ),
        (
            r#"{"id": null}"#.into(),
            "column `id` (/id): null, but the column is required",
        ),
        (format!("{{{id}, {id}}}"), "column `id` (/id): given twice"),
        (
            format!("{{{id}, \"payload\": \"a\\u0000b\"}}"),
            "column `payload` (/payload): holds a NUL character",
        ),
        (
            "[1, 2]".into(),
            "invalid type: sequence, expected a JSON object (a record)",
        ),
        ("null".into(), "the record is null, not a JSON object"),
    ];
    let mut columns = Columns::new(&spec);
    for (text, expected) in &cases {
        let error = columns.read(&spec, text).unwrap_err();
        assert!(error.starts_with(expected), "{text}: {error}");
        assert!(!error.contains(" at line "), "{error}");
    }
    assert_eq!(columns, Columns::new(&spec), "no row, no value left behind");
}

#[test]
fn checks_of_numbers_and_text() {
    let spec = spec(
        r#"
        [resources.r]
        key = "k"
        [[resources.r.columns]]
        name = "k"
        type = "text"
        max_length = 3
        pattern = "^[a-zé]+$"
        [[resources.r.columns]]
        name = "bytes"
        type = "text"
        max_bytes = 3
        nullable = true
        [[resources.r.columns]]
        name = "level"
        type = "text"
        one_of = ["low", "high"]
        nullable = true
        [[resources.r.columns]]
        name = "site"
        type = "text"
        format = "uri"
        nullable = true
        [[resources.r.columns]]
        name = "score"
        type = "double precision"
        minimum = 0
        maximum = 1.5
        nullable = true
        [[resources.r.columns]]
        name = "big"
        type = "bigint"
        maximum = 9007199254740992
        one_of = [1, 9007199254740992]
        nullable = true
    "#,
    );
    let (columns, errors) = read(
        &spec,
        &[
            r#"{"k": "éé", "bytes": "éa", "level": "low", "site": "https://x.example/a", "score": 1.5, "big": 9007199254740992}"#,
            r#"{"k": "abcd"}"#,
            r#"{"k": "a1"}"#,
            r#"{"k": "a", "bytes": "éé"}"#,
            r#"{"k": "a", "level": "mid"}"#,
            r#"{"k": "a", "site": "/relative"}"#,
            r#"{"k": "a", "score": -0.1}"#,
            r#"{"k": "a", "score": 1.6}"#,
            r#"{"k": "a", "big": 9007199254740993}"#,
            r#"{"k": "a", "big": 2}"#,
        ],
    );
    assert_eq!(columns.rows(), 1);
    let errors: Vec<String> = errors.into_iter().flatten().collect();
    assert_eq!(
        errors,
        [
            "column `k` (/k): is 4 characters, more than the limit of 3",
            r#"column `k` (/k): "a1" does not match the pattern "^[a-zé]+$""#,
            "column `bytes` (/bytes): is 4 bytes, more than the limit of 3",
            r#"column `level` (/level): "mid" is not one of "low", "high""#,
            r#"column `site` (/site): "/relative" is not an absolute URI"#,
            "column `score` (/score): -0.1 is less than the minimum 0",
            "column `score` (/score): 1.6 is more than the maximum 1.5",
            // Whole bounds stay exact past 2^53.
            "column `big` (/big): 9007199254740993 is more than the maximum 9007199254740992",
            "column `big` (/big): 2 is not one of 1, 9007199254740992",
        ]
    );
}

#[test]
fn decimals_as_numeric_reads_them() {
    for good in ["0", "-1", "+2.5", ".5", "5.", "1e10", "1.5E-3"] {
        assert!(is_decimal(good), "{good}");
    }
    for bad in [
        "", ".", "-", "1,5", "1e", "e5", "0x10", "NaN", "1.2.3", " 1",
    ] {
        assert!(!is_decimal(bad), "{bad}");
    }
}

#[test]
fn a_decimal_loses_its_exponent_and_keeps_its_scale_as_postgresql_would() {
    for (sent, plain) in [
        ("0", "0"),
        ("-1", "-1"),
        ("+2.5", "2.5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("1.50", "1.50"),
        ("007.10", "7.10"),
        ("1e10", "10000000000"),
        ("1.5E-3", "0.0015"),
        ("-1.50e2", "-150"),
        ("5e-3", "0.005"),
        ("12.345e1", "123.45"),
        ("0.0", "0.0"),
    ] {
        assert_eq!(plain_decimal(sent).as_deref(), Some(plain), "{sent}");
    }
    for beyond in ["1e131073", "1e-16384", "1e99999999999999999999"] {
        assert_eq!(plain_decimal(beyond), None, "{beyond}");
    }
    assert!(plain_decimal("1e131071").is_some());
}

/// A nested object kept whole as jsonb, and a column of one of its fields
/// beside it: both read, each checked and named on its own.
#[test]
fn a_column_inside_a_jsonb_column_reads_its_field_too() {
    let spec = spec(
        r#"
[resources.r]
key = "id"
[[resources.r.columns]]
name = "id"
type = "bigint"
[[resources.r.columns]]
name = "customer"
type = "jsonb"
nullable = true
[[resources.r.columns]]
name = "tier"
from = "/customer/tier"
type = "text"
one_of = ["free", "pro"]
nullable = true
[[resources.r.columns]]
name = "customer_id"
from = "/customer/id"
type = "bigint"
nullable = true
"#,
    );
    let (columns, errors) = read(
        &spec,
        &[
            r#"{"id": 1, "customer": {"id": 7, "tier": "pro", "tags": ["a"]}}"#,
            r#"{"id": 2, "customer": null}"#,
            r#"{"id": 3, "customer": {"id": 8, "tier": "gold"}}"#,
            r#"{"id": 4, "customer": {"id": "8"}}"#,
        ],
    );
    assert_eq!(
        errors,
        [
            None,
            None,
            Some(r#"column `tier` (/customer/tier): "gold" is not one of "free", "pro""#.into()),
            Some(
                r#"column `customer_id` (/customer/id): "8" is not a whole number that fits bigint"#
                    .into()
            ),
        ]
    );
    assert_eq!(
        columns.buffers,
        [
            Buffer::BigInt(vec![Some(1), Some(2)]),
            Buffer::Jsonb(vec![
                Some(r#"{"id": 7, "tier": "pro", "tags": ["a"]}"#.into()),
                None
            ]),
            Buffer::Text(vec![Some("pro".into()), None]),
            Buffer::BigInt(vec![Some(7), None]),
        ]
    );
}
