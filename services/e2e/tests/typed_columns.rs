//! Every column type of the resources file, a composite key and the fields
//! no column names (`_extra`), written by the store to the real PostgreSQL
//! both ways it writes (binary `COPY` for new keys, the upsert for keys
//! present) and read back as PostgreSQL renders them.

#![allow(clippy::unwrap_used)]

use pipeline_core::resources::Resource as _;
use pipeline_core::spec::{ResourceSpec, Spec};
use pipeline_store::Store;
use pipeline_store::rows::{Lineage, UpsertCounts, upsert};
use serde_json::json;
use testkit::TestDb;
use time::OffsetDateTime;

const FILE: &str = r#"
    [resources.readings]
    records = "/data"
    key = ["tenant", "id"]
    extra = "keep"

    [[resources.readings.columns]]
    name = "tenant"
    type = "text"

    [[resources.readings.columns]]
    name = "id"
    type = "uuid"

    [[resources.readings.columns]]
    name = "count"
    type = "integer"
    nullable = true

    [[resources.readings.columns]]
    name = "score"
    type = "double precision"

    [[resources.readings.columns]]
    name = "amount"
    type = "numeric"

    [[resources.readings.columns]]
    name = "active"
    type = "boolean"

    [[resources.readings.columns]]
    name = "created_at"
    from = "/createdAt"
    type = "timestamptz"

    [[resources.readings.columns]]
    name = "seen_at"
    from = "/seen/at"
    type = "timestamptz"
    epoch = "milliseconds"
    nullable = true

    [[resources.readings.columns]]
    name = "day"
    type = "date"

    [[resources.readings.columns]]
    name = "meta"
    type = "jsonb"
    nullable = true

    [[resources.readings.columns]]
    name = "total"
    type = "bigint"
"#;

const TABLE: &str = r#"CREATE TABLE readings (
    tenant text NOT NULL, id uuid NOT NULL, count integer, score double precision NOT NULL,
    amount numeric NOT NULL, active boolean NOT NULL, created_at timestamptz NOT NULL,
    seen_at timestamptz, day date NOT NULL, meta jsonb, total bigint NOT NULL, _extra jsonb,
    source_object text NOT NULL, fetched_at timestamptz NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id))"#;

const A: &str = "0192d6a8-8f1e-7c4b-9a5e-3f2b1c0d9e8f";
const B: &str = "0192d6a8-8f1e-7c4b-9a5e-3f2b1c0d9e90";

async fn write(store: &Store, readings: &ResourceSpec, body: &serde_json::Value) -> UpsertCounts {
    let records = readings.parse(body.to_string().as_bytes()).unwrap();
    assert!(records.bad.is_empty(), "{:?}", records.bad);
    let mut conn = store.connection().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let counts = upsert(
        &mut tx,
        readings,
        &records.columns,
        Lineage {
            source_object: "s3://raw/readings.json",
            fetched_at: OffsetDateTime::now_utc(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    counts
}

/// The table's content columns, as PostgreSQL renders each type in JSON.
async fn content(db: &TestDb) -> Vec<serde_json::Value> {
    db.json(
        "SELECT to_jsonb(r) - 'source_object' - 'fetched_at' - 'loaded_at' AS j
         FROM readings r ORDER BY tenant, id",
    )
    .await
}

#[tokio::test]
async fn every_type_a_composite_key_and_extra_fields_are_written_and_updated_exactly() {
    let db = TestDb::new().await;
    db.execute(TABLE).await;
    let spec = Spec::parse("readings.toml", FILE).unwrap();
    let readings = spec.resource("readings").unwrap();
    let store = Store::new(db.url(), 1);

    let first = json!({"data": [
        {"tenant": "acme", "id": A, "count": 7, "score": 0.25,
         "amount": "12345678901234567890.123456789", "active": true,
         "createdAt": "2026-12-07T08:00:00.5+01:00", "seen": {"at": 1_765_094_400_000_i64},
         "day": "2026-12-07", "meta": {"tags": ["a", "é"], "depth": {"n": null}},
         "total": 9_007_199_254_740_993_i64, "region": "eu", "v": 2},
        {"tenant": "acme", "id": B, "count": null, "score": -1.5e300, "amount": -1.50e2,
         "active": false, "createdAt": "2025-01-01T00:00:00Z", "seen": {},
         "day": "2025-01-01", "total": -1},
        // The same id under another tenant is another row.
        {"tenant": "globex", "id": A, "score": 0, "amount": 0.001, "active": true,
         "createdAt": "2026-12-07T00:00:00Z", "day": "2026-12-07", "meta": [1, "two"],
         "total": 0}
    ], "next": null});
    assert_eq!(write(&store, readings, &first).await.inserted, 3);
    assert_eq!(
        content(&db).await,
        [
            json!({"tenant": "acme", "id": A, "count": 7, "score": 0.25,
                   "amount": 12345678901234567890.123456789_f64, "active": true,
                   "created_at": "2026-12-07T07:00:00.5+00:00",
                   "seen_at": "2025-12-07T08:00:00+00:00", "day": "2026-12-07",
                   "meta": {"tags": ["a", "é"], "depth": {"n": null}},
                   "total": 9_007_199_254_740_993_i64,
                   "_extra": {"region": "eu", "v": 2}}),
            json!({"tenant": "acme", "id": B, "count": null, "score": -1.5e300,
                   // json! wrote -1.50e2 as -150.0: its scale is kept.
                   "amount": -150.0, "active": false,
                   "created_at": "2025-01-01T00:00:00+00:00", "seen_at": null,
                   "day": "2025-01-01", "meta": null, "total": -1, "_extra": null}),
            json!({"tenant": "globex", "id": A, "count": null, "score": 0,
                   "amount": 0.001, "active": true,
                   "created_at": "2026-12-07T00:00:00+00:00", "seen_at": null,
                   "day": "2026-12-07", "meta": [1, "two"], "total": 0, "_extra": null}),
        ]
    );
    // Every digit of the numeric, which JSON's float above cannot show.
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM readings
             WHERE amount = 12345678901234567890.123456789 AND tenant = 'acme'"
        )
        .await,
        1
    );

    // The same keys again, through the look-up and the upsert: one row
    // changed (a value set to null, an extra field gone), one the same,
    // one new.
    let second = json!({"data": [
        {"tenant": "acme", "id": A, "count": null, "score": 0.25,
         "amount": "12345678901234567890.123456789", "active": true,
         "createdAt": "2026-12-07T08:00:00.5+01:00", "seen": {"at": 1_765_094_400_000_i64},
         "day": "2026-12-07", "meta": {"tags": ["a", "é"], "depth": {"n": null}},
         "total": 9_007_199_254_740_993_i64},
        {"tenant": "acme", "id": B, "count": null, "score": -1.5e300, "amount": -1.50e2,
         "active": false, "createdAt": "2025-01-01T00:00:00Z", "seen": {},
         "day": "2025-01-01", "total": -1},
        {"tenant": "initech", "id": B, "score": 1, "amount": 1, "active": true,
         "createdAt": "2026-12-07T00:00:00Z", "day": "2026-12-07", "total": 1}
    ]});
    let again = write(&store, readings, &second).await;
    assert_eq!((again.inserted, again.updated, again.unchanged), (1, 1, 1));
    let rows = content(&db).await;
    assert_eq!(rows.len(), 4);
    assert_eq!(
        (&rows[0]["count"], &rows[0]["_extra"]),
        (&json!(null), &json!(null))
    );
    assert_eq!(rows[3]["tenant"], "initech");
}
