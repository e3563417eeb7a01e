//! Table and column names as a resources file may write them (spaces,
//! quotes, SQL in a name) reach the real PostgreSQL quoted, and every value
//! bound: the writes land in the table named, and nothing else runs.

#![allow(clippy::unwrap_used)]

use pipeline_core::resources::Resource as _;
use pipeline_core::spec::{ResourceSpec, Spec};
use pipeline_store::Store;
use pipeline_store::rows::{Lineage, UpsertCounts, ident, upsert};
use testkit::TestDb;
use time::OffsetDateTime;

const FILE: &str = r#"
    [resources.events]
    table = 'app "events"; DROP TABLE posts; --'
    key = "Event ID"

    [[resources.events.columns]]
    name = "Event ID"
    from = "/id"
    type = "bigint"

    [[resources.events.columns]]
    name = 'ti"tle'
    from = "/title"
    type = "text"
"#;

async fn write(store: &Store, events: &ResourceSpec, body: &str) -> UpsertCounts {
    let records = events.parse(body.as_bytes()).unwrap();
    assert!(records.bad.is_empty(), "{:?}", records.bad);
    let mut conn = store.connection().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let counts = upsert(
        &mut tx,
        events,
        &records.columns,
        Lineage {
            source_object: "s3://raw/events.json",
            fetched_at: OffsetDateTime::now_utc(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    counts
}

#[tokio::test]
async fn names_with_spaces_quotes_and_sql_in_them_are_written_as_names() {
    let db = TestDb::new().await;
    let spec = Spec::parse("events.toml", FILE).unwrap();
    let events = spec.resource("events").unwrap();
    db.execute(
        // Quoted by hand here, not by the code under test.
        r#"CREATE TABLE "app ""events""; DROP TABLE posts; --" (
            "Event ID" bigint PRIMARY KEY, "ti""tle" text NOT NULL,
            source_object text NOT NULL, fetched_at timestamptz NOT NULL,
            loaded_at timestamptz NOT NULL DEFAULT now())"#,
    )
    .await;
    let store = Store::new(db.url(), 1);

    // New keys (COPY), then the same keys again (the look-up and upsert).
    let first = r#"[{"id": 1, "title": "a"}, {"id": 2, "title": "it's \"b\"'); --"}]"#;
    assert_eq!(write(&store, events, first).await.inserted, 2);
    let again = r#"[{"id": 1, "title": "a"}, {"id": 2, "title": "c"}]"#;
    let again = write(&store, events, again).await;
    assert_eq!((again.inserted, again.updated, again.unchanged), (0, 1, 1));

    let count = format!("SELECT count(*) AS n FROM {}", ident(&events.table));
    assert_eq!(db.count(&count).await, 2);
    assert_eq!(
        db.count(&format!("{count} WHERE {} = 'c'", ident(r#"ti"tle"#)))
            .await,
        1
    );
    // What the name holds ran as nothing but a name.
    assert_eq!(db.count("SELECT count(*) AS n FROM posts").await, 0);
}
