//! What the operator commands read: the ledger's recent activity and the
//! quarantined records. Read-only; nothing here is on the apply path.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;

use crate::schema::{applied_objects, quarantined_records};

/// What was applied since some moment, from the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName, serde::Serialize)]
pub struct Activity {
    /// Ledger rows written: objects applied (or applied again).
    #[diesel(sql_type = BigInt)]
    pub objects: i64,
    /// Elements in their arrays.
    #[diesel(sql_type = BigInt)]
    pub records: i64,
    /// Rows inserted or updated, in every resource's table.
    #[diesel(sql_type = BigInt)]
    pub rows_written: i64,
    /// Records quarantined.
    #[diesel(sql_type = BigInt)]
    pub quarantined: i64,
}

/// What the ledger says was applied at or after `since`.
pub async fn activity_since(
    conn: &mut AsyncPgConnection,
    since: OffsetDateTime,
) -> QueryResult<Activity> {
    // diesel's `sum` of a BIGINT is a NUMERIC; the casts keep it an i64.
    diesel::sql_query(
        "SELECT count(*)::int8 AS objects, \
                coalesce(sum(records), 0)::int8 AS records, \
                coalesce(sum(inserted + updated), 0)::int8 AS rows_written, \
                coalesce(sum(quarantined), 0)::int8 AS quarantined \
         FROM applied_objects WHERE applied_at >= $1",
    )
    .bind::<Timestamptz, _>(since)
    .get_result(conn)
    .await
}

/// When the last object was applied; `None` before the first.
pub async fn last_applied(conn: &mut AsyncPgConnection) -> QueryResult<Option<OffsetDateTime>> {
    applied_objects::table
        .select(diesel::dsl::max(applied_objects::applied_at))
        .first::<Option<OffsetDateTime>>(conn)
        .await
}

/// Quarantined records in all.
pub async fn quarantined_count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    quarantined_records::table.count().get_result(conn).await
}

/// A row of `quarantined_records`, with the resource its object held.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
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

/// Quarantined records, oldest first, then by object and index.
pub async fn quarantined(
    conn: &mut AsyncPgConnection,
    filter: &QuarantineFilter<'_>,
) -> QueryResult<Vec<Quarantined>> {
    use applied_objects::dsl as a;
    use quarantined_records::dsl as q;
    // Every quarantined record has its object's ledger row (a foreign key).
    let ledger_row = a::source_object
        .eq(q::source_object)
        .and(a::sha256.eq(q::sha256));
    let mut query = q::quarantined_records
        .inner_join(a::applied_objects.on(ledger_row))
        .select((
            q::source_object,
            q::sha256,
            q::record_index,
            q::reason,
            q::raw,
            q::quarantined_at,
            a::resource,
        ))
        .order((q::quarantined_at, q::source_object, q::record_index))
        .into_boxed();
    if let Some(object) = filter.object {
        query = query.filter(q::source_object.eq(object.to_owned()));
    }
    if let Some(since) = filter.since {
        query = query.filter(q::quarantined_at.ge(since));
    }
    if let Some(resource) = filter.resource {
        query = query.filter(a::resource.eq(resource.to_owned()));
    }
    if let Some(limit) = filter.limit {
        query = query.limit(limit);
    }
    query.load(conn).await
}
