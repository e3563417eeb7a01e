use super::*;
use pipeline_core::resources::Resource as _;
use pipeline_core::spec::Spec;

fn parsed(spec: &str, body: &str) -> (ResourceSpec, Columns) {
    let spec = Spec::parse("test.toml", spec).unwrap().resources.remove(0);
    let records = spec.parse(body.as_bytes()).unwrap();
    assert!(records.bad.is_empty(), "{:?}", records.bad);
    (spec, records.columns)
}

fn posts(body: &str) -> (ResourceSpec, Columns) {
    let spec = Spec::built_in().resource("posts").unwrap().clone();
    let records = spec.parse(body.as_bytes()).unwrap();
    (spec, records.columns)
}

const WEIRD: &str = r#"
    [resources.weird]
    table = 'we"ird'
    key = ['i"d', "at"]

    [[resources.weird.columns]]
    name = 'i"d'
    from = "/id"
    type = "text"

    [[resources.weird.columns]]
    name = "at"
    type = "uuid"
"#;

#[test]
fn the_last_occurrence_of_a_key_wins() {
    let post =
        |id: i64, title: &str| format!(r#"{{"userId":1,"id":{id},"title":"{title}","body":""}}"#);
    let body = format!(
        "[{}, {}, {}, {}, {}]",
        post(1, "a"),
        post(2, "b"),
        post(1, "c"),
        post(3, "d"),
        post(2, "e")
    );
    let (spec, rows) = posts(&body);
    assert_eq!(last_occurrences(&Table::of(&spec, &rows)), [2, 3, 4]);
}

#[test]
fn a_composite_key_is_the_same_only_when_every_part_is() {
    let a = "0192d6a8-8f1e-7c4b-9a5e-3f2b1c0d9e8f";
    let b = "0192d6a8-8f1e-7c4b-9a5e-3f2b1c0d9e90";
    let body = format!(
        r#"[{{"id":"x","at":"{a}"}}, {{"id":"x","at":"{b}"}}, {{"id":"y","at":"{a}"}}, {{"id":"x","at":"{a}"}}]"#
    );
    let (spec, rows) = parsed(WEIRD, &body);
    assert_eq!(last_occurrences(&Table::of(&spec, &rows)), [1, 2, 3]);
}

#[test]
fn identifiers_are_quoted_whatever_they_hold() {
    assert_eq!(ident("posts"), r#""posts""#);
    assert_eq!(ident("app events"), r#""app events""#);
    assert_eq!(
        ident(r#"a"; DROP TABLE posts; --"#),
        r#""a""; DROP TABLE posts; --""#
    );
    let (spec, rows) = parsed(WEIRD, "[]");
    let weird = Table::of(&spec, &rows);
    assert_eq!(
        copy_sql(&weird),
        r#"COPY "we""ird" ("i""d", "at", source_object, fetched_at) FROM STDIN (FORMAT binary)"#
    );
    let upsert = upsert_sql(&weird);
    assert!(
        upsert.contains(r#"INSERT INTO "we""ird" AS p ("i""d", "at", source_object"#),
        "{upsert}"
    );
    assert!(upsert.contains(r#"ON CONFLICT ("i""d", "at")"#), "{upsert}");
    // All key: nothing else to differ in.
    assert!(upsert.contains("CASE WHEN false THEN"), "{upsert}");
    assert_eq!(
        lookup_sql(&weird),
        r#"SELECT "i""d", "at" FROM "we""ird" WHERE ("i""d", "at") IN (SELECT * FROM UNNEST($1::text[], $2::uuid[]))"#
    );
}

#[test]
fn the_statements_name_the_table_its_key_and_columns_in_binding_order() {
    let (spec, rows) = posts("[]");
    let posts = Table::of(&spec, &rows);
    assert_eq!(
        copy_sql(&posts),
        r#"COPY "posts" ("id", "user_id", "title", "body", source_object, fetched_at) FROM STDIN (FORMAT binary)"#
    );
    assert_eq!(
        lookup_sql(&posts),
        r#"SELECT "id" FROM "posts" WHERE "id" = ANY($1)"#
    );
    let upsert = upsert_sql(&posts);
    assert!(
        upsert.contains(
            r#"ON CONFLICT ("id") DO UPDATE SET
        "user_id" = EXCLUDED."user_id", "title" = EXCLUDED."title", "body" = EXCLUDED."body", source_object"#
        ),
        "{upsert}"
    );
    assert!(
        upsert.contains(
            r#"ROW(p."user_id", p."title", p."body") IS DISTINCT FROM ROW(EXCLUDED."user_id", "#
        ),
        "{upsert}"
    );
    assert!(
        upsert.contains(
            r#"SELECT u.*, $5, $6 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS u("id", "user_id", "title", "body")"#
        ),
        "{upsert}"
    );
}

/// `numeric`'s binary format, as PostgreSQL's `numeric_send` writes these
/// values (`SELECT numeric_send('…'::numeric)`): ndigits, weight, sign,
/// dscale, then base-10,000 digits.
#[test]
fn decimals_are_encoded_as_numeric_send_writes_them() {
    let encode = |text: &str| {
        let mut out = BytesMut::new();
        Numeric(text).to_sql(&Type::NUMERIC, &mut out).unwrap();
        out.chunks(2)
            .map(|pair| i16::from_be_bytes([pair[0], pair[1]]))
            .collect::<Vec<_>>()
    };
    let negative = 0x4000u16 as i16;
    assert_eq!(encode("0"), [0, 0, 0, 0]);
    assert_eq!(encode("0.00"), [0, 0, 0, 2]);
    assert_eq!(encode("-0.0"), [0, 0, 0, 1]);
    assert_eq!(encode("1"), [1, 0, 0, 0, 1]);
    assert_eq!(encode("10000"), [1, 1, 0, 0, 1]);
    assert_eq!(encode("12345.678"), [3, 1, 0, 3, 1, 2345, 6780]);
    assert_eq!(encode("-0.0015"), [1, -1, negative, 4, 15]);
    assert_eq!(encode("0.00001"), [1, -2, 0, 5, 1000]);
    assert_eq!(
        encode("12345678901234567890.123456789"),
        [8, 4, 0, 9, 1234, 5678, 9012, 3456, 7890, 1234, 5678, 9000]
    );
    let mut out = BytesMut::new();
    assert!(Numeric("1e5").to_sql(&Type::NUMERIC, &mut out).is_err());
}
