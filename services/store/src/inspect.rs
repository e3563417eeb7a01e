//! What the operator commands read: the ledger's recent activity and the
//! quarantined records. Read-only; nothing here is on the apply path.

use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::{Client, QueryError};

/// What was applied since some moment, from the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Activity {
    /// Ledger rows written: objects applied (or applied again).
    pub objects: i64,
    /// Elements in their arrays.
    pub records: i64,
    /// Rows inserted or updated, in every resource's table.
    pub rows_written: i64,
    /// Records quarantined.
    pub quarantined: i64,
}

/// What the ledger says was applied at or after `since`.
pub async fn activity_since(
    conn: &mut Client,
    since: OffsetDateTime,
) -> Result<Activity, QueryError> {
    // `sum` of a bigint is a numeric; the casts keep it an i64.
    let row = conn
        .query_one(
            "SELECT count(*)::int8, coalesce(sum(records), 0)::int8, \
                    coalesce(sum(inserted + updated), 0)::int8, \
                    coalesce(sum(quarantined), 0)::int8 \
             FROM applied_objects WHERE applied_at >= $1",
            &[&since],
        )
        .await?;
    Ok(Activity {
        objects: row.get(0),
        records: row.get(1),
        rows_written: row.get(2),
        quarantined: row.get(3),
    })
}

/// When the last object was applied; `None` before the first.
pub async fn last_applied(conn: &mut Client) -> Result<Option<OffsetDateTime>, QueryError> {
    let row = conn
        .query_one("SELECT max(applied_at) FROM applied_objects", &[])
        .await?;
    Ok(row.get(0))
}

/// Quarantined records in all.
pub async fn quarantined_count(conn: &mut Client) -> Result<i64, QueryError> {
    let row = conn
        .query_one("SELECT count(*) FROM quarantined_records", &[])
        .await?;
    Ok(row.get(0))
}

/// A row of `quarantined_records`, with the resource its object held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub source_object: String,
    pub sha256: String,
    pub record_index: i64,
    pub reason: String,
    /// The record's JSON text, exactly as received.
    pub raw: String,
    pub quarantined_at: OffsetDateTime,
    /// From the object's ledger row.
    pub resource: String,
}

impl Quarantined {
    fn from_row(row: &Row) -> Self {
        Self {
            source_object: row.get(0),
            sha256: row.get(1),
            record_index: row.get(2),
            reason: row.get(3),
            raw: row.get(4),
            quarantined_at: row.get(5),
            resource: row.get(6),
        }
    }
}

/// Which quarantined records to read.
#[derive(Debug, Clone, Default)]
pub struct QuarantineFilter<'a> {
    /// Of this object only (`s3://bucket/key`).
    pub object: Option<&'a str>,
    /// Of objects of this resource only.
    pub resource: Option<&'a str>,
    /// Quarantined at or after this.
    pub since: Option<OffsetDateTime>,
    /// At most this many.
    pub limit: Option<i64>,
}

/// Quarantined records, oldest first, then by object and index. One
/// statement whatever the filter: a condition left out is a null, and
/// `LIMIT NULL` is no limit.
pub async fn quarantined(
    conn: &mut Client,
    filter: &QuarantineFilter<'_>,
) -> Result<Vec<Quarantined>, QueryError> {
    // Every quarantined record has its object's ledger row (a foreign key).
    let rows = conn
        .query(
            "SELECT q.source_object, q.sha256, q.record_index, q.reason, q.raw, \
                    q.quarantined_at, a.resource \
             FROM quarantined_records q \
             JOIN applied_objects a ON a.source_object = q.source_object AND a.sha256 = q.sha256 \
             WHERE ($1::text IS NULL OR q.source_object = $1) \
               AND ($2::text IS NULL OR a.resource = $2) \
               AND ($3::timestamptz IS NULL OR q.quarantined_at >= $3) \
             ORDER BY q.quarantined_at, q.source_object, q.record_index \
             LIMIT $4",
            &[
                &filter.object,
                &filter.resource,
                &filter.since,
                &filter.limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(Quarantined::from_row).collect())
}
