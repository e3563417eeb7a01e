//! Applying one object exactly once: its rows, its quarantined records and
//! its ledger row, in one transaction.

use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use pipeline_core::post::{BadRecord, Records};
use time::OffsetDateTime;

use crate::posts::{self, Lineage, UpsertCounts};
use crate::schema::{applied_objects, quarantined_records};

/// Quarantined records per INSERT: 5 parameters each, well under
/// PostgreSQL's 65,535 per statement.
const QUARANTINE_CHUNK: usize = 5_000;

/// The object being applied.
#[derive(Debug, Clone, Copy)]
pub struct Object<'a> {
    /// `s3://bucket/key`.
    pub source_object: &'a str,
    /// Of the bytes the records were parsed from.
    pub sha256: &'a str,
    /// The SQS message applying it.
    pub message_id: &'a str,
    /// The version of its rows.
    pub fetched_at: OffsetDateTime,
    /// The OpenTelemetry trace applying it, lowercase hex.
    pub trace_id: Option<&'a str>,
}

/// What applying an object did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied {
        rows: UpsertCounts,
        quarantined: u64,
    },
    /// The ledger already has these bytes: nothing was written.
    AlreadyApplied(LedgerEntry),
}

/// A row of `applied_objects`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = applied_objects)]
pub struct LedgerEntry {
    pub source_object: String,
    pub sha256: String,
    pub message_id: String,
    pub fetched_at: OffsetDateTime,
    pub records: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub superseded: i64,
    pub quarantined: i64,
    pub applied_at: OffsetDateTime,
    pub trace_id: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = applied_objects)]
struct NewLedgerEntry<'a> {
    source_object: &'a str,
    sha256: &'a str,
    message_id: &'a str,
    fetched_at: OffsetDateTime,
    records: i64,
    trace_id: Option<&'a str>,
}

#[derive(Insertable)]
#[diesel(table_name = quarantined_records)]
struct NewQuarantined<'a> {
    source_object: &'a str,
    sha256: &'a str,
    record_index: i64,
    reason: &'a str,
    raw: &'a str,
}

/// The ledger row of these bytes at this object, if they were applied.
pub async fn find(
    conn: &mut AsyncPgConnection,
    source_object: &str,
    sha256: &str,
) -> QueryResult<Option<LedgerEntry>> {
    applied_objects::table
        .find((source_object, sha256))
        .select(LedgerEntry::as_select())
        .first(conn)
        .await
        .optional()
}

/// Applies an object's records unless the ledger says its bytes were
/// applied already.
///
/// The ledger row is inserted first, in the same transaction as the rows.
/// Two workers handed the same object at once (a redelivery while the
/// first is still working) both try to insert it; the second blocks on the
/// primary key until the first commits, then finds the conflict and writes
/// nothing. If the first rolls back, the second goes ahead.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    object: Object<'_>,
    records: &Records,
) -> QueryResult<Outcome> {
    conn.transaction(async |conn| {
        let claimed = diesel::insert_into(applied_objects::table)
            .values(NewLedgerEntry {
                source_object: object.source_object,
                sha256: object.sha256,
                message_id: object.message_id,
                fetched_at: object.fetched_at,
                records: records.total() as i64,
                trace_id: object.trace_id,
            })
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if claimed == 0 {
            let entry = find(conn, object.source_object, object.sha256).await?;
            return entry
                .map(Outcome::AlreadyApplied)
                .ok_or(diesel::result::Error::NotFound);
        }

        let lineage = Lineage {
            source_object: object.source_object,
            fetched_at: object.fetched_at,
        };
        let rows = posts::upsert(conn, &records.posts, lineage).await?;

        let quarantined =
            quarantine(conn, object.source_object, object.sha256, &records.bad).await?;
        record_counts(conn, object.source_object, object.sha256, rows, quarantined).await?;
        Ok(Outcome::Applied { rows, quarantined })
    })
    .await
}

/// Keeps an object's bad records, in chunks of [`QUARANTINE_CHUNK`].
async fn quarantine(
    conn: &mut AsyncPgConnection,
    source_object: &str,
    sha256: &str,
    bad: &[BadRecord],
) -> QueryResult<u64> {
    for chunk in bad.chunks(QUARANTINE_CHUNK) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|b| NewQuarantined {
                source_object,
                sha256,
                record_index: b.index as i64,
                reason: &b.reason,
                raw: &b.raw,
            })
            .collect();
        diesel::insert_into(quarantined_records::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    Ok(bad.len() as u64)
}

/// Fills in the counts of an object's ledger row.
async fn record_counts(
    conn: &mut AsyncPgConnection,
    source_object: &str,
    sha256: &str,
    rows: UpsertCounts,
    quarantined: u64,
) -> QueryResult<()> {
    diesel::update(applied_objects::table.find((source_object, sha256)))
        .set((
            applied_objects::inserted.eq(rows.inserted as i64),
            applied_objects::updated.eq(rows.updated as i64),
            applied_objects::unchanged.eq(rows.unchanged as i64),
            applied_objects::superseded.eq(rows.superseded as i64),
            applied_objects::quarantined.eq(quarantined as i64),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// One batch of a streamed object: its valid posts and its bad records.
pub type Batch = Records;

/// How a streamed object ended, known only once every byte was read.
#[derive(Debug, Clone)]
pub struct StreamEnd {
    /// Of the bytes read, lowercase hex.
    pub sha256: String,
    pub records: u64,
}

/// Why a streamed application stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// The stream itself failed or was refused (not JSON, checksum...).
    #[error(transparent)]
    Stream(E),
    /// Rolls the transaction back; not an error to callers.
    #[error("already applied")]
    AlreadyApplied(Box<(LedgerEntry, StreamEnd)>),
}

/// Applies an object that arrives in batches, for objects too large to
/// hold in memory: each batch of posts is upserted as it comes, in one
/// transaction with everything else. The ledger row, known only once the
/// last byte is read (its key holds the sha256), is written last: if the
/// bytes were applied meanwhile, or `finish` refuses the end (checksum or
/// record count), the whole transaction rolls back.
///
/// Bad records are kept until the end (their rows reference the ledger row).
pub async fn apply_stream<E: Send>(
    conn: &mut AsyncPgConnection,
    source_object: &str,
    message_id: &str,
    fetched_at: OffsetDateTime,
    trace_id: Option<&str>,
    batches: &mut tokio::sync::mpsc::Receiver<Batch>,
    finish: impl Future<Output = Result<StreamEnd, E>> + Send,
) -> Result<(Outcome, StreamEnd), StreamError<E>> {
    let lineage = Lineage {
        source_object,
        fetched_at,
    };
    conn.transaction(async |conn| {
        let mut rows = UpsertCounts::default();
        let mut bad = Vec::new();
        while let Some(batch) = batches.recv().await {
            rows += posts::upsert(conn, &batch.posts, lineage).await?;
            bad.extend(batch.bad);
        }
        let end = finish.await.map_err(StreamError::Stream)?;
        let claimed = diesel::insert_into(applied_objects::table)
            .values(NewLedgerEntry {
                source_object,
                sha256: &end.sha256,
                message_id,
                fetched_at,
                records: end.records as i64,
                trace_id,
            })
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if claimed == 0 {
            let entry = find(conn, source_object, &end.sha256)
                .await?
                .ok_or(diesel::result::Error::NotFound)?;
            // Undo the upserts: these bytes were applied by someone else.
            return Err(StreamError::AlreadyApplied(Box::new((entry, end))));
        }
        let quarantined = quarantine(conn, source_object, &end.sha256, &bad).await?;
        record_counts(conn, source_object, &end.sha256, rows, quarantined).await?;
        Ok((Outcome::Applied { rows, quarantined }, end))
    })
    .await
    .or_else(|e| match e {
        StreamError::AlreadyApplied(done) => {
            let (entry, end) = *done;
            Ok((Outcome::AlreadyApplied(entry), end))
        }
        other => Err(other),
    })
}
