//! Applying one object exactly once: its rows, its quarantined records and
//! its ledger row, in one transaction.

use pipeline_core::record::BadRecord;
pub use pipeline_core::resources::Batch;
use pipeline_core::spec::ResourceSpec;
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::QueryError;
use crate::pool::{Client, Tx};
use crate::rows::{self, Lineage, UpsertCounts};

/// Quarantined records per INSERT, bound as arrays: one statement's worth
/// however many records an object has, without one huge message.
const QUARANTINE_CHUNK: usize = 5_000;

/// The object being applied.
#[derive(Debug, Clone, Copy)]
pub struct Object<'a> {
    /// `s3://bucket/key`.
    pub source_object: &'a str,
    /// The resource its records are: its name goes in the ledger, its
    /// table, key and columns make the statements.
    pub resource: &'a ResourceSpec,
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The columns of `applied_objects` in [`LedgerEntry`]'s order.
const LEDGER_COLUMNS: &str = "source_object, sha256, message_id, fetched_at, records, inserted, \
     updated, unchanged, superseded, quarantined, applied_at, trace_id, resource";

impl LedgerEntry {
    fn from_row(row: &Row) -> Self {
        Self {
            source_object: row.get(0),
            sha256: row.get(1),
            message_id: row.get(2),
            fetched_at: row.get(3),
            records: row.get(4),
            inserted: row.get(5),
            updated: row.get(6),
            unchanged: row.get(7),
            superseded: row.get(8),
            quarantined: row.get(9),
            applied_at: row.get(10),
            trace_id: row.get(11),
            resource: row.get(12),
        }
    }
}

/// The ledger row of these bytes at this object, if they were applied.
pub async fn find(
    client: &mut Client,
    source_object: &str,
    sha256: &str,
) -> Result<Option<LedgerEntry>, QueryError> {
    let row = client
        .query_opt(&find_sql(), &[&source_object, &sha256])
        .await?;
    Ok(row.as_ref().map(LedgerEntry::from_row))
}

/// Every ledger row, oldest first.
pub async fn entries(client: &mut Client) -> Result<Vec<LedgerEntry>, QueryError> {
    let rows = client
        .query(
            &format!("SELECT {LEDGER_COLUMNS} FROM applied_objects ORDER BY applied_at"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(LedgerEntry::from_row).collect())
}

fn find_sql() -> String {
    format!("SELECT {LEDGER_COLUMNS} FROM applied_objects WHERE source_object = $1 AND sha256 = $2")
}

/// Keeps an object's bad records, in chunks of [`QUARANTINE_CHUNK`].
async fn quarantine(
    tx: &mut Tx<'_>,
    source_object: &str,
    sha256: &str,
    bad: &[BadRecord],
) -> Result<u64, tokio_postgres::Error> {
    for chunk in bad.chunks(QUARANTINE_CHUNK) {
        let indices: Vec<i64> = chunk.iter().map(|b| b.index as i64).collect();
        let reasons: Vec<&str> = chunk.iter().map(|b| b.reason.as_str()).collect();
        let raws: Vec<&str> = chunk.iter().map(|b| b.raw.as_str()).collect();
        tx.execute(
            "INSERT INTO quarantined_records (source_object, sha256, record_index, reason, raw) \
             SELECT $1, $2, u.* FROM UNNEST($3::bigint[], $4::text[], $5::text[]) AS u",
            &[&source_object, &sha256, &indices, &reasons, &raws],
        )
        .await?;
    }
    Ok(bad.len() as u64)
}

/// Fills in the counts of an object's ledger row.
async fn record_counts(
    tx: &mut Tx<'_>,
    source_object: &str,
    end: &StreamEnd,
    rows: UpsertCounts,
    quarantined: u64,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "UPDATE applied_objects SET records = $3, inserted = $4, updated = $5, unchanged = $6, \
         superseded = $7, quarantined = $8 WHERE source_object = $1 AND sha256 = $2",
        &[
            &source_object,
            &end.sha256,
            &(end.records as i64),
            &(rows.inserted as i64),
            &(rows.updated as i64),
            &(rows.unchanged as i64),
            &(rows.superseded as i64),
            &(quarantined as i64),
        ],
    )
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
    Query(#[from] QueryError),
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

impl<E> From<QueryError> for Rollback<E> {
    fn from(e: QueryError) -> Self {
        Self::Failed(ApplyError::Query(e))
    }
}

impl<E> From<tokio_postgres::Error> for Rollback<E> {
    fn from(e: tokio_postgres::Error) -> Self {
        QueryError::from(e).into()
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
    client: &mut Client,
    object: Object<'_>,
    batches: &mut tokio::sync::mpsc::Receiver<Batch>,
    finish: impl Future<Output = Result<StreamEnd, E>> + Send,
) -> Result<(Effect, StreamEnd), ApplyError<E>> {
    let mut tx = client.begin().await?;
    let applied = write(&mut tx, object, batches, finish).await;
    match applied {
        Ok(applied) => {
            tx.commit().await?;
            Ok(applied)
        }
        Err(Rollback::Failed(e)) => {
            // What failed is the error to report; a rollback that fails
            // too (the connection is gone) changes nothing for the caller.
            let _ = tx.rollback().await;
            Err(e)
        }
        Err(Rollback::AlreadyApplied(entry)) => {
            tx.rollback().await?;
            let end = StreamEnd {
                sha256: entry.sha256.clone(),
                records: entry.records as u64,
            };
            Ok((Effect::AlreadyApplied(entry), end))
        }
    }
}

/// The body of [`apply`]'s transaction.
async fn write<E: Send>(
    tx: &mut Tx<'_>,
    object: Object<'_>,
    batches: &mut tokio::sync::mpsc::Receiver<Batch>,
    finish: impl Future<Output = Result<StreamEnd, E>> + Send,
) -> Result<(Effect, StreamEnd), Rollback<E>> {
    let lineage = Lineage {
        source_object: object.source_object,
        fetched_at: object.fetched_at,
    };
    if let Some(sha256) = object.sha256 {
        claim(tx, object, sha256, 0).await?;
    }
    let mut counts = UpsertCounts::default();
    let mut bad = Vec::new();
    while let Some(batch) = batches.recv().await {
        counts += rows::upsert(tx, object.resource, &batch.columns, lineage).await?;
        bad.extend(batch.bad);
    }
    let end = finish
        .await
        .map_err(|e| Rollback::Failed(ApplyError::Input(e)))?;
    if object.sha256.is_none() {
        claim(tx, object, &end.sha256, end.records).await?;
    }
    let quarantined = quarantine(tx, object.source_object, &end.sha256, &bad).await?;
    record_counts(tx, object.source_object, &end, counts, quarantined).await?;
    Ok((
        Effect::Written {
            rows: counts,
            quarantined,
        },
        end,
    ))
}

/// Inserts the object's ledger row; if these bytes have one already, rolls
/// back with it. To reapply, the old row (and with it, by the foreign key's
/// cascade, its quarantined records) is deleted first: a second worker
/// reapplying the same object at once waits on that row, finds it gone and
/// the new one in its place, and rolls back as already applied.
async fn claim<E>(
    tx: &mut Tx<'_>,
    object: Object<'_>,
    sha256: &str,
    records: u64,
) -> Result<(), Rollback<E>> {
    if object.reapply {
        tx.execute(
            "DELETE FROM applied_objects WHERE source_object = $1 AND sha256 = $2",
            &[&object.source_object, &sha256],
        )
        .await?;
    }
    let claimed = tx
        .execute(
            "INSERT INTO applied_objects \
             (source_object, sha256, message_id, fetched_at, records, trace_id, resource) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &object.source_object,
                &sha256,
                &object.message_id,
                &object.fetched_at,
                &(records as i64),
                &object.trace_id,
                &object.resource.name,
            ],
        )
        .await?;
    if claimed == 1 {
        return Ok(());
    }
    // The row that conflicted; gone again only if its transaction rolled
    // back in between: a serialization failure, which a retry settles.
    let entry = tx
        .query_one(&find_sql(), &[&object.source_object, &sha256])
        .await?;
    Err(Rollback::AlreadyApplied(LedgerEntry::from_row(&entry)))
}
