//! Applying one object exactly once: its rows, its quarantined records and
//! its ledger row, in one transaction.

use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use pipeline_core::record::BadRecord;
pub use pipeline_core::record::Batch;
use time::OffsetDateTime;

use crate::rows::{self, Lineage, UpsertCounts};
use crate::schema::{applied_objects, quarantined_records};

/// Quarantined records per INSERT: 5 parameters each, well under
/// PostgreSQL's 65,535 per statement.
const QUARANTINE_CHUNK: usize = 5_000;

/// The object being applied.
#[derive(Debug, Clone, Copy)]
pub struct Object<'a> {
    /// `s3://bucket/key`.
    pub source_object: &'a str,
    /// The resource its records are.
    pub resource: &'a str,
    /// Of the bytes the records are parsed from, when it is known before
    /// they are read (the message carries it, or they were read whole).
    pub sha256: Option<&'a str>,
    /// The SQS message applying it.
    pub message_id: &'a str,
    /// The version of its rows.
    pub fetched_at: OffsetDateTime,
    /// The OpenTelemetry trace applying it, lowercase hex.
    pub trace_id: Option<&'a str>,
    /// Apply it even if the ledger has its bytes: the old ledger row and
    /// its quarantined records are replaced in the same transaction.
    pub reapply: bool,
}

/// What applying an object did to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Its rows were upserted (and its bad records quarantined).
    Written {
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
    pub resource: String,
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
    resource: &'a str,
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
    end: &StreamEnd,
    rows: UpsertCounts,
    quarantined: u64,
) -> QueryResult<()> {
    diesel::update(applied_objects::table.find((source_object, &end.sha256)))
        .set((
            applied_objects::records.eq(end.records as i64),
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

/// How an object's bytes ended, known once every byte was read.
#[derive(Debug, Clone)]
pub struct StreamEnd {
    /// Of the bytes read, lowercase hex.
    pub sha256: String,
    pub records: u64,
}

/// Why an object was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError<E> {
    /// The database failed or refused a statement.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// Reading or checking the bytes failed (`finish` said so).
    #[error(transparent)]
    Input(E),
}

/// Why the transaction rolls back. `AlreadyApplied` is no error to the
/// caller: it undoes the rows written before the ledger said so.
enum Rollback<E> {
    Failed(ApplyError<E>),
    AlreadyApplied(LedgerEntry),
}

impl<E> From<diesel::result::Error> for Rollback<E> {
    fn from(e: diesel::result::Error) -> Self {
        Self::Failed(ApplyError::Query(e))
    }
}

/// Applies an object exactly once: its rows as they arrive in batches
/// (an object read whole is one batch), its bad records and its ledger
/// row, in one transaction, unless the ledger says its bytes were applied
/// already. `finish` says how the bytes ended once the last batch is in;
/// refusing them (a checksum or count that does not match) rolls
/// everything back.
///
/// The ledger row's key holds the bytes' sha256. When that is known before
/// they are read, the row is claimed first: two workers handed the same
/// object at once (a redelivery while the first still works) both insert
/// it; the second blocks on the primary key until the first commits, then
/// finds the conflict and writes nothing, and if the first rolls back, the
/// second goes ahead. When it is known only at the end (an object streamed
/// without a digest), the row is claimed last, and a conflict rolls back
/// the rows written meanwhile.
///
/// Bad records are kept until the end (their rows reference the ledger row).
///
/// With [`Object::reapply`], bytes the ledger has are applied again and
/// their ledger row and quarantined records replaced; rows still only move
/// forward by `fetched_at`.
pub async fn apply<E: Send>(
    conn: &mut AsyncPgConnection,
    object: Object<'_>,
    batches: &mut tokio::sync::mpsc::Receiver<Batch>,
    finish: impl Future<Output = Result<StreamEnd, E>> + Send,
) -> Result<(Effect, StreamEnd), ApplyError<E>> {
    let lineage = Lineage {
        source_object: object.source_object,
        fetched_at: object.fetched_at,
    };
    let applied = conn
        .transaction(async |conn| {
            if let Some(sha256) = object.sha256 {
                claim(conn, object, sha256, 0).await?;
            }
            let mut counts = UpsertCounts::default();
            let mut bad = Vec::new();
            while let Some(batch) = batches.recv().await {
                counts += rows::upsert(conn, &*batch.rows, lineage).await?;
                bad.extend(batch.bad);
            }
            let end = finish
                .await
                .map_err(|e| Rollback::Failed(ApplyError::Input(e)))?;
            if object.sha256.is_none() {
                claim(conn, object, &end.sha256, end.records).await?;
            }
            let quarantined = quarantine(conn, object.source_object, &end.sha256, &bad).await?;
            record_counts(conn, object.source_object, &end, counts, quarantined).await?;
            Ok::<_, Rollback<E>>((
                Effect::Written {
                    rows: counts,
                    quarantined,
                },
                end,
            ))
        })
        .await;
    match applied {
        Ok(applied) => Ok(applied),
        Err(Rollback::Failed(e)) => Err(e),
        Err(Rollback::AlreadyApplied(entry)) => {
            let end = StreamEnd {
                sha256: entry.sha256.clone(),
                records: entry.records as u64,
            };
            Ok((Effect::AlreadyApplied(entry), end))
        }
    }
}

/// Inserts the object's ledger row; if these bytes have one already, rolls
/// back with it. To reapply, the old row (and with it, by the foreign key's
/// cascade, its quarantined records) is deleted first: a second worker
/// reapplying the same object at once waits on that row, finds it gone and
/// the new one in its place, and rolls back as already applied.
async fn claim<E>(
    conn: &mut AsyncPgConnection,
    object: Object<'_>,
    sha256: &str,
    records: u64,
) -> Result<(), Rollback<E>> {
    if object.reapply {
        diesel::delete(applied_objects::table.find((object.source_object, sha256)))
            .execute(conn)
            .await?;
    }
    let claimed = diesel::insert_into(applied_objects::table)
        .values(NewLedgerEntry {
            source_object: object.source_object,
            sha256,
            message_id: object.message_id,
            fetched_at: object.fetched_at,
            records: records as i64,
            trace_id: object.trace_id,
            resource: object.resource,
        })
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if claimed == 1 {
        return Ok(());
    }
    // The row that conflicted; gone again only if its transaction rolled
    // back in between, which a retry of this one settles.
    let entry = find(conn, object.source_object, sha256)
        .await?
        .ok_or(diesel::result::Error::NotFound)?;
    Err(Rollback::AlreadyApplied(entry))
}
