use super::*;

fn error(text: &str) -> String {
    Spec::parse("resources.toml", text).unwrap_err().to_string()
}

/// A file with one resource `r` whose columns are `columns`, and `extra`
/// lines in its table.
fn one(extra: &str, columns: &str) -> String {
    format!(
        "[resources.r]\nkey = \"id\"\n{extra}\n[[resources.r.columns]]\nname = \"id\"\ntype = \"bigint\"\n{columns}"
    )
}

#[test]
fn the_built_in_file_holds_posts_and_comments_as_their_tables_have_them() {
    let spec = Spec::built_in();
    assert_eq!(spec.names(), "comments, posts");
    let posts = spec.resource("posts").unwrap();
    assert_eq!(posts.table, "posts");
    assert_eq!(
        posts.records,
        RecordsAt::Json {
            pointer: String::new()
        }
    );
    assert!(!posts.keep_extra);
    let columns: Vec<(&str, &str, &str, bool)> = posts
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.from.as_str(), c.kind.sql(), c.nullable))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "/id", "bigint", false),
            ("user_id", "/userId", "bigint", false),
            ("title", "/title", "text", false),
            ("body", "/body", "text", false),
        ]
    );
    assert_eq!(
        posts
            .key_columns()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["id"]
    );
    let comments = spec.resource("comments").unwrap();
    let email = comments.columns.iter().find(|c| c.name == "email").unwrap();
    assert!(matches!(email.checks[..], [Check::Format(Format::Email)]));
    // The limits posts and comments have always been held to.
    let limit = |resource: &ResourceSpec, column: &str| {
        let column = resource.columns.iter().find(|c| c.name == column).unwrap();
        match column.checks[..] {
            [Check::MaxBytes(n)] => n,
            _ => panic!("{column:?}"),
        }
    };
    assert_eq!(limit(posts, "title"), 4 * 1024);
    assert_eq!(limit(posts, "body"), 256 * 1024);
    assert_eq!(limit(comments, "name"), 4 * 1024);
    assert_eq!(limit(comments, "body"), 64 * 1024);
}

#[test]
fn an_envelope_a_composite_key_and_every_type() {
    let text = r#"
        [resources.events]
        table = "app events"
        records = "/result/items"
        key = ["tenant", "id"]
        extra = "keep"

        [[resources.events.columns]]
        name = "tenant"
        type = "text"
        one_of = ["a", "b"]

        [[resources.events.columns]]
        name = "id"
        type = "uuid"

        [[resources.events.columns]]
        name = "at"
        from = "/meta/created~1at"
        type = "timestamptz"

        [[resources.events.columns]]
        name = "amount"
        type = "numeric"
        minimum = 0
        maximum = 1e9
        nullable = true

        [[resources.events.columns]]
        name = "payload"
        type = "jsonb"
        nullable = true
    "#;
    let spec = Spec::parse("events.toml", text).unwrap();
    let events = &spec.resources[0];
    assert_eq!(events.table, "app events");
    assert_eq!(
        events.records,
        RecordsAt::Json {
            pointer: "/result/items".into()
        }
    );
    assert!(events.keep_extra);
    assert_eq!(
        events
            .key_columns()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["tenant", "id"]
    );
    assert_eq!(events.columns[2].from, "/meta/created~1at");
    assert!(events.columns[3].nullable);
    assert!(matches!(
        events.columns[3].checks[..],
        [
            Check::Minimum(Bound::Whole(0)),
            Check::Maximum(Bound::Fraction(_))
        ]
    ));
    let lines = Spec::parse("f", "[resources.l]\nformat = \"jsonl\"\nkey = \"k\"\n[[resources.l.columns]]\nname = \"k\"\ntype = \"text\"").unwrap();
    assert_eq!(lines.resources[0].records, RecordsAt::JsonLines);
    for kind in ColumnType::ALL {
        let text = one(
            "",
            &format!(
                "[[resources.r.columns]]\nname = \"c\"\ntype = \"{}\"",
                kind.sql()
            ),
        );
        assert_eq!(
            Spec::parse("f", &text).unwrap().resources[0].columns[1].kind,
            kind
        );
    }
}

#[test]
fn each_mistake_is_one_line_naming_the_file_the_resource_and_the_field() {
    let cases = [
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\ntype = \"txt\""),
            "resources.toml: resource `r`: column `c`: unknown type `txt`: one of bigint, integer, double precision, numeric, boolean, text, timestamptz, date, uuid, jsonb",
        ),
        (
            "[resources.r]\nkey = \"nope\"\n[[resources.r.columns]]\nname = \"id\"\ntype = \"bigint\"".into(),
            "resources.toml: resource `r`: `key`: `nope` is not among its columns (id)",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\nfrom = \"c\"\ntype = \"text\""),
            "resources.toml: resource `r`: column `c`: `from` \"c\" is not a JSON pointer: it starts with `/` (or is empty)",
        ),
        (
            one("records = \"/a~2\"", ""),
            "resources.toml: resource `r`: `records` \"/a~2\" is not a JSON pointer: `~` is written `~0` and `/` in a name `~1`",
        ),
        (
            format!("{}\n[resources.s]\ntable = \"r\"\nkey = \"id\"\n[[resources.s.columns]]\nname = \"id\"\ntype = \"bigint\"", one("", "")),
            "resources.toml: resource `s`: table `r` is resource `r`'s too: each resource needs a table of its own",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\ntype = \"text\"\nminimum = 1"),
            "resources.toml: resource `r`: column `c`: `minimum` is for number columns, not text",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\ntype = \"bigint\"\nmax_length = 3"),
            "resources.toml: resource `r`: column `c`: `max_length` is for text columns, not bigint",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\ntype = \"integer\"\nminimum = 0.5"),
            "resources.toml: resource `r`: column `c`: `minimum` of a integer column is a whole number",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\ntype = \"bigint\"\none_of = [\"a\"]"),
            "resources.toml: resource `r`: column `c`: `one_of` of a bigint column lists whole numbers only",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\ntype = \"text\"\nformat = \"phone\""),
            "resources.toml: resource `r`: column `c`: `format` is `phone`: it is `email` or `uri`",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\ntype = \"text\"\npattern = \"(\""),
            "resources.toml: resource `r`: column `c`: `pattern` \"(\" is not a regular expression: error: unclosed group",
        ),
        (
            "[resources.r]\nkey = \"id\"\n[[resources.r.columns]]\nname = \"id\"\ntype = \"double precision\"".into(),
            "resources.toml: resource `r`: `key`: `id` is double precision; a key column is bigint, text or uuid",
        ),
        (
            "[resources.r]\nkey = \"id\"\n[[resources.r.columns]]\nname = \"id\"\ntype = \"text\"\nnullable = true".into(),
            "resources.toml: resource `r`: `key`: `id` is nullable; a key column is required",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"fetched_at\"\ntype = \"text\""),
            "resources.toml: resource `r`: column `fetched_at`: the name is one the pipeline keeps for itself (source_object, fetched_at, loaded_at, _extra)",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"id\"\ntype = \"text\""),
            "resources.toml: resource `r`: column `id` is named twice",
        ),
        (
            one("table = \"applied_objects\"", ""),
            "resources.toml: resource `r`: `table`: `applied_objects` is the pipeline's own",
        ),
        (
            one(&format!("table = \"{}\"", "t".repeat(64)), ""),
            &format!("resources.toml: resource `r`: `table` `{}` is 64 bytes: PostgreSQL keeps 63", "t".repeat(64)),
        ),
        (
            one("format = \"csv\"", ""),
            "resources.toml: resource `r`: `format` is `csv`: it is `json` or `jsonl`",
        ),
        (
            one("extra = \"drop\"", ""),
            "resources.toml: resource `r`: `extra` is `drop`: it is `keep` or `ignore`",
        ),
        ("".into(), "resources.toml: no resources: add a [resources.NAME] table"),
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\ntype = \"text\"\nepoch = \"seconds\""),
            "resources.toml: resource `r`: column `c`: `epoch` is for timestamptz columns, not text",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\ntype = \"timestamptz\"\nepoch = \"days\""),
            "resources.toml: resource `r`: column `c`: `epoch` is `days`: it is `seconds` or `milliseconds`",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"c\"\nfrom = \"\"\ntype = \"jsonb\""),
            "resources.toml: resource `r`: column `c`: `from` is empty: a column takes one field of the record",
        ),
        (
            one("", "[[resources.r.columns]]\nname = \"meta\"\ntype = \"text\"\n[[resources.r.columns]]\nname = \"at\"\nfrom = \"/meta/at\"\ntype = \"text\""),
            "resources.toml: resource `r`: column `at` reads /meta/at, inside column `meta`'s /meta, which is text: only a jsonb column holds fields of its own",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(&text), expected, "{text}");
    }
}

#[test]
fn what_toml_refuses_is_one_line_with_its_line_number() {
    let misspelt = one(
        "",
        "[[resources.r.columns]]\nname = \"c\"\ntype = \"text\"\nnulable = true",
    );
    let refused = error(&misspelt);
    assert!(
        refused.starts_with("resources.toml: line 10: unknown field `nulable`"),
        "{refused}"
    );
    assert!(!refused.contains('\n'), "{refused}");
    let broken = error("[resources.r\nkey = 1");
    assert!(broken.starts_with("resources.toml: line 1: "), "{broken}");
    assert!(!broken.contains('\n'), "{broken}");
}

#[test]
fn a_file_that_cannot_be_read_is_named() {
    let error = Spec::read(Path::new("/nonexistent/resources.toml")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/resources.toml: cannot read it: "),
        "{error}"
    );
}

/// `docs/resources.schema.json`, for editors, accepts every file the parser
/// accepts and refuses the mistakes a schema can see (not those that need
/// the whole file: a key not among the columns, a table named twice).
#[test]
fn the_schema_for_editors_agrees_with_the_parser() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../../docs/resources.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let as_json = |text: &str| -> serde_json::Value { toml::from_str(text).unwrap() };
    let column = |lines: &str| {
        one(
            "",
            &format!("[[resources.r.columns]]\nname = \"c\"\n{lines}"),
        )
    };
    let mut good = vec![
        BUILT_IN.to_owned(),
        one(
            "table = \"app events\"\nrecords = \"/result/items\"\nextra = \"keep\"",
            "",
        ),
        one("format = \"jsonl\"", ""),
        column("type = \"integer\"\nminimum = 0\nmaximum = 10\none_of = [1, 2]"),
        column("type = \"numeric\"\nminimum = 0.5\nnullable = true"),
        column(
            "type = \"text\"\nmax_length = 3\npattern = \"^a\"\nformat = \"uri\"\none_of = [\"a\"]",
        ),
        column("type = \"text\"\nfrom = \"/a~1b/c~0d\""),
        column("type = \"timestamptz\"\nepoch = \"milliseconds\""),
    ];
    good.extend(ColumnType::ALL.map(|t| column(&format!("type = \"{}\"", t.sql()))));
    let request = |table: &str| one("", &format!("[resources.r.request]\n{table}"));
    good.extend([
        request("url = \"https://api.example/v1/${PATH}?a=b\"\nquery = { state = \"open\", since = \"${SINCE}\" }\nheaders = { Accept = \"application/json\" }"),
        request("auth = { kind = \"bearer\", token = \"${TOKEN}\" }\npagination = { kind = \"cursor\", param = \"after\", next = \"/meta/next\", size_param = \"limit\", size = 100 }"),
        request("auth = { kind = \"basic\", username = \"u\", password = \"$${not a var}\" }\npagination = { kind = \"page\", size_param = \"per_page\", size = 50, total_header = \"X-Total-Count\", first = 0 }"),
        request("auth = { kind = \"api_key\", name = \"api_key\", value = \"${KEY}\", in = \"query\" }\npagination = { kind = \"offset\", limit = 20, total = \"/total\", more = \"/has_more\" }"),
        request("pagination = { kind = \"next_url\", next_header = \"X-Next\" }"),
        request("pagination = { kind = \"none\" }"),
        one(
            "[resources.r.incremental]\nfield = \"at\"\nparam = \"since\"\ninitial = \"${START}\"\nlookback = \"10m\"",
            "[[resources.r.columns]]\nname = \"at\"\ntype = \"timestamptz\"",
        ),
    ]);
    for text in &good {
        Spec::parse("f", text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&as_json(text))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{text}\n{errors:?}");
    }
    let bad = [
        column("type = \"txt\""),
        column("type = \"text\"\nnulable = true"),
        column("type = \"text\"\nfrom = \"c\""),
        one("records = \"/a~2\"", ""),
        column("type = \"text\"\nminimum = 1"),
        column("type = \"bigint\"\nmax_length = 3"),
        column("type = \"integer\"\nminimum = 0.5"),
        column("type = \"bigint\"\none_of = [\"a\"]"),
        column("type = \"date\"\none_of = [\"2026-01-01\"]"),
        column("type = \"text\"\nformat = \"phone\""),
        one(
            "",
            "[[resources.r.columns]]\nname = \"fetched_at\"\ntype = \"text\"",
        ),
        one("table = \"applied_objects\"", ""),
        one(&format!("table = \"{}\"", "t".repeat(64)), ""),
        one("format = \"csv\"", ""),
        one("format = \"jsonl\"\nrecords = \"/data\"", ""),
        one("extra = \"drop\"", ""),
        column("type = \"text\"\nepoch = \"seconds\""),
        column("type = \"timestamptz\"\nepoch = \"days\""),
        column("type = \"jsonb\"\nfrom = \"\""),
        String::new(),
        request("auth = { kind = \"oauth1\" }"),
        request("auth = { kind = \"bearer\" }"),
        request("auth = { kind = \"bearer\", token = \"${1X}\" }"),
        request("auth = { kind = \"api_key\", name = \"k\", value = \"v\", in = \"body\" }"),
        request("pagination = { kind = \"pages\" }"),
        request("pagination = { kind = \"cursor\", next = \"/n\" }"),
        request("pagination = { kind = \"cursor\", param = \"c\" }"),
        request("pagination = { kind = \"offset\" }"),
        request("pagination = { kind = \"page\", size = 10 }"),
        request("pagination = { kind = \"page\", total = \"/t\", total_header = \"X-T\" }"),
        request("pagination = { kind = \"link\", size = 10 }"),
        request("pagination = { kind = \"next_url\", next = \"next\" }"),
        request("headers = { Authorization = \"Bearer x\" }"),
        request("urls = \"https://x\""),
        one("[resources.r.incremental]\nfield = \"id\"", ""),
    ];
    for text in &bad {
        assert!(Spec::parse("f", text).is_err(), "the parser took {text}");
        assert!(
            !validator.is_valid(&as_json(text)),
            "the schema took {text}"
        );
    }
}

/// A request or incremental table with a mistake: one line naming the
/// resource, the table and the field.
#[test]
fn mistakes_in_a_request_name_the_field() {
    for (table, expected) in [
        (
            "[resources.r.request.auth]\nkind = \"bearer\"\ntoken = \"t\"\nusername = \"u\"",
            "resource `r`: `request.auth`: `username` is not for kind `bearer`, which takes token",
        ),
        (
            "[resources.r.request.pagination]\nkind = \"offset\"\nlimit = 0",
            "resource `r`: `request.pagination`: kind `offset` needs `limit`, more than 0: the records per page",
        ),
        (
            "[resources.r.request.pagination]\nkind = \"page\"\nsize_param = \"n\"",
            "resource `r`: `request.pagination`: `size_param` and `size` go together: the parameter and its value",
        ),
        (
            "[resources.r.request.pagination]\nkind = \"link\"\nnext = \"/n\"",
            "resource `r`: `request.pagination`: `next` is not for kind `link`, which takes nothing more",
        ),
        (
            "[resources.r.request]\nurl = \"ftp://x\"",
            "resource `r`: `request.url`: \"ftp://x\" is not an http:// or https:// URL",
        ),
        (
            "[resources.r.request.headers]\nHost = \"x\"",
            "resource `r`: `request.headers.Host`: is set by the importer: credentials go in `request.auth`",
        ),
        (
            "[resources.r.incremental]\nfield = \"id\"\nparam = \"since\"\nlookback = \"1h\"",
            "resource `r`: `incremental`: `lookback` is for time columns; `id` is bigint",
        ),
        (
            "[resources.r.incremental]\nfield = \"body\"\nparam = \"since\"",
            "resource `r`: `incremental`: `field` `body` is jsonb: a cursor is a timestamptz, date, bigint, integer or text column",
        ),
    ] {
        let text = one(
            table,
            "[[resources.r.columns]]\nname = \"body\"\ntype = \"jsonb\"",
        );
        let error = Spec::parse("f", &text).unwrap_err().to_string();
        assert_eq!(error, format!("f: {expected}"), "{table}");
    }
}
