//! Table and column names as a resources file may write them (spaces,
//! quotes, SQL in a name) reach the real PostgreSQL quoted, and every value
//! bound: the writes land in the table named, and nothing else runs.

#![allow(clippy::unwrap_used)]

use pipeline_core::record::{Column, Rows, Table};
use pipeline_store::Store;
use pipeline_store::rows::{Lineage, UpsertCounts, ident, upsert};
use testkit::TestDb;
use time::OffsetDateTime;

const TABLE: Table = Table {
    name: r#"app "events"; DROP TABLE posts; --"#,
    key: "Event ID",
};
const TEXT_COLUMN: &str = r#"ti"tle"#;

/// Rows of [`TABLE`]: a key and one text column.
#[derive(Debug)]
struct Events(Vec<(i64, String)>);

impl Rows for Events {
    fn table(&self) -> Table {
        TABLE
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn key(&self, index: usize) -> i64 {
        self.0[index].0
    }

    fn columns(&self, indices: &[usize]) -> Vec<Column<'_>> {
        let rows: Vec<&(i64, String)> = indices.iter().map(|&i| &self.0[i]).collect();
        vec![Column::text(TEXT_COLUMN, &rows, |row| row.1.as_str())]
    }
}

async fn write(store: &Store, events: &Events) -> UpsertCounts {
    let mut conn = store.connection().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let counts = upsert(
        &mut tx,
        events,
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
    let mut conn = db.connect().await;
    diesel_async::RunQueryDsl::execute(
        // Quoted by hand here, not by the code under test.
        diesel::sql_query(
            r#"CREATE TABLE "app ""events""; DROP TABLE posts; --" (
                "Event ID" bigint PRIMARY KEY, "ti""tle" text NOT NULL,
                source_object text NOT NULL, fetched_at timestamptz NOT NULL,
                loaded_at timestamptz NOT NULL DEFAULT now())"#,
        ),
        &mut conn,
    )
    .await
    .unwrap();
    let store = Store::new(db.url(), 1);
    let events = Events(vec![(1, "a".into()), (2, "it's \"b\"".into())]);

    // New keys (COPY), then the same keys again (the look-up and upsert).
    assert_eq!(write(&store, &events).await.inserted, 2);
    let again = write(&store, &Events(vec![(1, "a".into()), (2, "c".into())])).await;
    assert_eq!((again.inserted, again.updated, again.unchanged), (0, 1, 1));

    let count = |table: &str| format!("SELECT count(*) AS n FROM {}", ident(table));
    assert_eq!(db.count(&count(TABLE.name)).await, 2);
    assert_eq!(
        db.count(&format!(
            "{} WHERE {} = 'c'",
            count(TABLE.name),
            ident(TEXT_COLUMN)
        ))
        .await,
        1
    );
    // What the name holds ran as nothing but a name.
    assert_eq!(db.count("SELECT count(*) AS n FROM posts").await, 0);
}
