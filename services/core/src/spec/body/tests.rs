use super::*;
use crate::spec::Spec;
use crate::spec::read::Buffer;

fn spec(at: &str) -> ResourceSpec {
    Spec::parse(
        "test.toml",
        &format!(
            "[resources.r]\nkey = \"id\"\n{at}\n[[resources.r.columns]]\nname = \"id\"\ntype = \"text\"\n"
        ),
    )
    .unwrap()
    .resources
    .remove(0)
}

fn ids(records: &SpecRecords) -> Vec<String> {
    match &records.columns.buffers[0] {
        Buffer::Text(ids) => ids.iter().map(|id| id.clone().unwrap()).collect(),
        other => panic!("{other:?}"),
    }
}

/// Every way a body can hold records, read whole and streamed in batches
/// of two: the same records, the same bad ones with their raw text.
#[test]
fn records_in_an_array_an_envelope_or_json_lines() {
    let cases = [
        ("", r#"[{"id": "a"}, {"id": 1}, {"id": "c"}]"#),
        (
            r#"records = "/result/items""#,
            r#"{"next": "x", "result": {"count": 3, "items": [{"id": "a"}, {"id": 1}, {"id": "c"}]}, "after": [1]}"#,
        ),
        (
            "format = \"jsonl\"",
            "{\"id\": \"a\"}\r\n{\"id\": 1}\n\n{\"id\": \"c\"}\n",
        ),
    ];
    for (at, body) in cases {
        let spec = spec(at);
        let whole = read_body(&spec, body.as_bytes()).unwrap();
        assert_eq!(ids(&whole), ["a", "c"], "{at}");
        assert_eq!(whole.bad.len(), 1, "{at}");
        assert_eq!(
            (whole.bad[0].index, whole.bad[0].raw.as_str()),
            (1, r#"{"id": 1}"#),
            "{at}"
        );
        assert_eq!(whole.bad[0].reason, "column `id` (/id): 1 is not a string");

        let mut batches = Vec::new();
        let count = scan_body(&spec, body.as_bytes(), 2, &mut |b| batches.push(b)).unwrap();
        assert_eq!(count, 3, "{at}");
        assert_eq!(
            batches.iter().map(SpecRecords::total).collect::<Vec<_>>(),
            [2, 1],
            "{at}"
        );
        assert_eq!(
            batches.iter().flat_map(ids).collect::<Vec<_>>(),
            ["a", "c"],
            "{at}"
        );
        assert_eq!(batches[0].bad, whole.bad, "{at}");
    }
}

#[test]
fn a_body_that_holds_no_records_where_the_spec_says_is_an_error_for_the_whole_body() {
    let cases = [
        ("", "   ", "the body is empty"),
        (
            "",
            r#"{"id": "a"}"#,
            "invalid type: map, expected a JSON array of records",
        ),
        ("", "[{\"id\": \"a\"}", "EOF while parsing a list"),
        (
            r#"records = "/data""#,
            r#"{"error": "rate limited"}"#,
            "the body has nothing at /data",
        ),
        (
            r#"records = "/data""#,
            r#"{"data": null}"#,
            "invalid type: null, expected a JSON array of records at /data",
        ),
        (
            r#"records = "/data/items""#,
            r#"{"data": [1]}"#,
            "invalid type: sequence, expected a JSON object holding the records at /data/items",
        ),
        ("format = \"jsonl\"", "\n\n", "the body is empty"),
    ];
    for (at, body, expected) in cases {
        let spec = spec(at);
        let whole = read_body(&spec, body.as_bytes()).unwrap_err().to_string();
        assert!(whole.starts_with(expected), "{at} {body}: {whole}");
        let streamed = scan_body(&spec, body.as_bytes(), 10, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(streamed.starts_with(expected), "{at} {body}: {streamed}");
    }
}

#[test]
fn a_broken_line_of_json_lines_is_a_bad_record_and_the_others_load() {
    let spec = spec("format = \"jsonl\"");
    let records = read_body(&spec, b"{\"id\": \"a\"}\n{\"id\": \n{\"id\": \"c\"}\n").unwrap();
    assert_eq!(ids(&records), ["a", "c"]);
    assert_eq!(records.bad[0].index, 1);
    assert!(
        records.bad[0].reason.starts_with("EOF while parsing"),
        "{:?}",
        records.bad
    );
}

#[test]
fn a_value_is_found_at_its_pointer_and_nowhere_else() {
    let body = br#"{"data": [{"id": 1}], "meta": {"next_cursor": "c9", "total": 120, "done": null},
                   "links": [{"href": "/a"}, {"href": "/b"}], "a~b": {"c/d": true}}"#;
    let at = |p: &str| value_at(&body[..], p).unwrap();
    assert_eq!(at("/meta/next_cursor"), Some(serde_json::json!("c9")));
    assert_eq!(at("/meta/total"), Some(serde_json::json!(120)));
    assert_eq!(at("/meta/done"), Some(serde_json::Value::Null));
    assert_eq!(at("/links/1/href"), Some(serde_json::json!("/b")));
    assert_eq!(at("/a~0b/c~1d"), Some(serde_json::json!(true)));
    assert_eq!(at("/meta/missing"), None);
    assert_eq!(at("/links/7/href"), None);
    assert_eq!(at("/meta/total/deeper"), None);
    assert!(value_at(&b"{\"meta\": "[..], "/meta").is_err());
}
