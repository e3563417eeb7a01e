//! Writing the valid records of an object to their resource's table, the
//! same way for every resource: the SQL is made from the table's name, key
//! and columns ([`pipeline_core::record::Rows`]).

use bytes::{BufMut as _, Bytes, BytesMut};
use futures::SinkExt as _;
use pipeline_core::record::{Column, Rows, Table, Values};
use std::collections::HashSet;
use std::fmt::Write as _;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Error, Statement, Transaction};

use crate::pool::Tx;

/// Rows per look-up, `COPY` and upsert. The look-up and the upsert bind one
/// array per column whatever its size (Postgres allows at most 65,535
/// parameters per statement, so one row per parameter set would cap
/// batches at 16k rows of posts and cost far more parsing).
pub const CHUNK_ROWS: usize = 5_000;

/// The binary `COPY` header: its signature, no flags, no extension.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Binary `COPY` data goes to the connection in pieces of about this size.
/// tokio-postgres's `BinaryCopyInWriter` sends every 4 KiB: each piece is a
/// message to the connection's task, and about every other one a write to
/// the socket, 270 and 140 of them for an object of 1.1 MB.
const COPY_PIECE: usize = 64 * 1024;

/// Why rows could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Query(#[from] Error),
    /// A value that PostgreSQL's binary format cannot carry.
    #[error("column `{column}`: {source}")]
    Encode {
        column: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where a set of rows came from.
#[derive(Debug, Clone, Copy)]
pub struct Lineage<'a> {
    /// `s3://bucket/key` of the raw object.
    pub source_object: &'a str,
    /// When the importer fetched it: the version of every row in it.
    pub fetched_at: OffsetDateTime,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    pub inserted: u64,
    pub updated: u64,
    /// Rows whose content was left as it was: the same content (the row's
    /// lineage then moves to a newer object), or already newer in the table.
    pub unchanged: u64,
    /// Earlier occurrences of a key that occurs again later in the input.
    pub superseded: u64,
}

impl std::ops::AddAssign for UpsertCounts {
    fn add_assign(&mut self, other: Self) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.superseded += other.superseded;
    }
}

/// Inserts new rows and updates changed ones.
///
/// Each row ends as the newest object that holds its key says, whatever
/// order objects are applied in: applying an object twice, or an older
/// object after a newer one, changes nothing. A newer object with the same
/// content moves only the row's lineage (`source_object`, `fetched_at`)
/// forward, keeping its `loaded_at`, and counts as unchanged: otherwise an
/// object older than it but newer than the row's first version, arriving
/// late (a retried message, a partial replay), would overwrite what the
/// newest fetch confirmed. When a key occurs more than once in `rows`, the
/// last occurrence wins (Postgres refuses to update one row twice in one
/// statement).
///
/// Run it inside the caller's transaction: it issues a few statements per
/// [`CHUNK_ROWS`] rows.
pub async fn upsert(
    tx: &mut Tx<'_>,
    rows: &dyn Rows,
    lineage: Lineage<'_>,
) -> Result<UpsertCounts, WriteError> {
    let latest = last_occurrences(rows);
    let mut counts = UpsertCounts {
        superseded: (rows.len() - latest.len()) as u64,
        ..UpsertCounts::default()
    };
    for chunk in latest.chunks(CHUNK_ROWS) {
        counts += write_chunk(tx, rows, chunk, lineage).await?;
    }
    Ok(counts)
}

/// Rows whose key is not in the table yet go in with binary `COPY`, the
/// rest are upserted. `COPY` is what PostgreSQL ingests fastest; it costs
/// the conflict handling that the look-up makes unnecessary for new keys.
///
/// When the last chunk of this table written on this connection held only
/// new keys, the whole chunk is first tried as one `COPY`, without the
/// look-up: a bulk load then never looks a key up. If a key is present
/// after all, the `COPY` fails on it, its savepoint is rolled back, and
/// the chunk takes the look-up; from then on this connection looks first,
/// until a look-up finds no key present again. A re-import of rows already
/// there thus costs one failed `COPY` per connection, not one per chunk.
///
/// Another transaction may insert one of the keys between the look-up and
/// the `COPY`: that `COPY` fails too, and those rows are upserted with the
/// rest.
async fn write_chunk(
    tx: &mut Tx<'_>,
    rows: &dyn Rows,
    chunk: &[usize],
    lineage: Lineage<'_>,
) -> Result<UpsertCounts, WriteError> {
    let table = rows.table();
    if tx.keys_met.expects_new(table)
        && let Some(inserted) = copy_new(tx, rows, chunk, lineage).await?
    {
        return Ok(UpsertCounts {
            inserted,
            ..UpsertCounts::default()
        });
    }
    let keys: Vec<i64> = chunk.iter().map(|&i| rows.key(i)).collect();
    let present: HashSet<i64> = tx
        .query(
            &format!(
                "SELECT {key} FROM {name} WHERE {key} = ANY($1)",
                key = ident(table.key),
                name = ident(table.name)
            ),
            &[&keys],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    tx.keys_met.remember(table, !present.is_empty());
    let (fresh, mut known): (Vec<usize>, Vec<usize>) = chunk
        .iter()
        .partition(|&&i| !present.contains(&rows.key(i)));

    let mut counts = UpsertCounts::default();
    if !fresh.is_empty() {
        match copy_new(tx, rows, &fresh, lineage).await? {
            Some(inserted) => counts.inserted += inserted,
            None => known.extend(fresh),
        }
    }
    if !known.is_empty() {
        counts += upsert_chunk(tx, rows, &known, lineage).await?;
    }
    Ok(counts)
}

/// Inserts the rows at `indices` with one binary `COPY` in a savepoint, and
/// returns how many; `None`, with the savepoint rolled back, if one of
/// their keys is in the table already.
async fn copy_new(
    tx: &mut Tx<'_>,
    rows: &dyn Rows,
    indices: &[usize],
    lineage: Lineage<'_>,
) -> Result<Option<u64>, WriteError> {
    let columns = rows.columns(indices);
    let copy = tx
        .statements
        .prepared(&tx.inner, &copy_sql(rows.table(), &columns))
        .await?;
    let savepoint = tx.inner.savepoint("fresh").await?;
    match copy_in(&savepoint, &copy, rows, indices, &columns, lineage).await {
        Ok(inserted) => {
            savepoint.commit().await?;
            Ok(Some(inserted))
        }
        Err(WriteError::Query(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            savepoint.rollback().await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Per connection, the tables whose last look-up found keys already
/// present: their next chunk is looked up first too. For every other
/// table, a chunk is first tried as all new (see [`write_chunk`]).
#[derive(Debug, Default)]
pub(crate) struct KeysMet(HashSet<&'static str>);

impl KeysMet {
    fn expects_new(&self, table: Table) -> bool {
        !self.0.contains(table.name)
    }

    fn remember(&mut self, table: Table, met_present: bool) {
        if met_present {
            self.0.insert(table.name);
        } else {
            self.0.remove(table.name);
        }
    }
}

/// Writes the rows at `indices`, with their lineage, in one binary `COPY`
/// (`copy`, prepared from [`copy_sql`] for these `columns`).
async fn copy_in(
    tx: &Transaction<'_>,
    copy: &Statement,
    rows: &dyn Rows,
    indices: &[usize],
    columns: &[Column<'_>],
    lineage: Lineage<'_>,
) -> Result<u64, WriteError> {
    let key = rows.table().key;
    // The key, the columns and the two lineage fields.
    let fields = i16::try_from(columns.len() + 3)
        .unwrap_or_else(|e| unreachable!("a PostgreSQL table has at most 1,600 columns: {e}"));
    // The lineage ends every row the same way: encoded once.
    let mut lineage_fields = BytesMut::new();
    put_field(
        &mut lineage_fields,
        &lineage.source_object,
        &Type::TEXT,
        "source_object",
    )?;
    put_field(
        &mut lineage_fields,
        &lineage.fetched_at,
        &Type::TIMESTAMPTZ,
        "fetched_at",
    )?;

    let sink = tx.copy_in::<_, Bytes>(copy).await?;
    let mut sink = std::pin::pin!(sink);
    let mut buf = BytesMut::with_capacity(2 * COPY_PIECE);
    buf.put_slice(COPY_HEADER);
    for (j, &i) in indices.iter().enumerate() {
        buf.put_i16(fields);
        put_field(&mut buf, &rows.key(i), &Type::INT8, key)?;
        for column in columns {
            match &column.values {
                Values::BigInt(values) => {
                    put_field(&mut buf, &values[j], &Type::INT8, column.name)?
                }
                Values::Text(values) => put_field(&mut buf, &values[j], &Type::TEXT, column.name)?,
            }
        }
        buf.put_slice(&lineage_fields);
        if buf.len() >= COPY_PIECE {
            sink.send(buf.split().freeze()).await?;
        }
    }
    // Returning early drops the sink unfinished, which aborts the COPY.
    buf.put_i16(-1);
    sink.send(buf.freeze()).await?;
    Ok(sink.as_mut().finish().await?)
}

/// Appends one field of a binary `COPY` row: its length, then its value.
fn put_field(
    buf: &mut BytesMut,
    value: &(dyn ToSql + Sync),
    ty: &Type,
    column: &str,
) -> Result<(), WriteError> {
    let encode = |source| WriteError::Encode {
        column: column.to_owned(),
        source,
    };
    let at = buf.len();
    buf.put_i32(0);
    let len = match value.to_sql_checked(ty, buf).map_err(encode)? {
        IsNull::Yes => -1,
        IsNull::No => i32::try_from(buf.len() - at - 4).map_err(|e| encode(e.into()))?,
    };
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// `COPY "t" ("key", "a", "b", source_object, fetched_at) FROM STDIN
/// (FORMAT binary)`.
fn copy_sql(table: Table, columns: &[Column<'_>]) -> String {
    format!(
        "COPY {name} {target} FROM STDIN (FORMAT binary)",
        name = ident(table.name),
        target = target(table, columns),
    )
}

/// `("key", "a", "b", source_object, fetched_at)`.
fn target(table: Table, columns: &[Column<'_>]) -> String {
    let mut target = format!("({}", ident(table.key));
    for column in columns {
        let _ = write!(target, ", {}", ident(column.name));
    }
    target.push_str(", source_object, fetched_at)");
    target
}

/// `SELECT u.*, $4, $5 FROM UNNEST($1::bigint[], ...) AS u("key", ...)`.
fn select(table: Table, columns: &[Column<'_>]) -> String {
    let mut arrays = "$1::bigint[]".to_owned();
    let mut names = ident(table.key);
    for (i, column) in columns.iter().enumerate() {
        let _ = write!(arrays, ", ${}::{}[]", i + 2, column.values.sql_type());
        let _ = write!(names, ", {}", ident(column.name));
    }
    let lineage = columns.len() + 2;
    format!(
        "SELECT u.*, ${lineage}, ${} FROM UNNEST({arrays}) AS u({names})",
        lineage + 1
    )
}

/// `name` as a quoted SQL identifier, whatever it holds: names come from
/// the resources file, and a `"` in one must not end it.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The indices of the rows whose key does not occur again later, in input
/// order.
fn last_occurrences(rows: &dyn Rows) -> Vec<usize> {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut latest: Vec<usize> = (0..rows.len())
        .rev()
        .filter(|&i| seen.insert(rows.key(i)))
        .collect();
    latest.reverse();
    latest
}

/// The upsert: an insert that, on a key already present, updates the row
/// when this object is newer, or as new and different.
fn upsert_sql(table: Table, columns: &[Column<'_>]) -> String {
    let content = |alias: &str| {
        let names: Vec<String> = columns
            .iter()
            .map(|c| format!("{alias}.{}", ident(c.name)))
            .collect();
        format!("ROW({})", names.join(", "))
    };
    let (old, new) = (content("p"), content("EXCLUDED"));
    let mut set = String::new();
    for column in columns {
        let _ = write!(set, "{0} = EXCLUDED.{0}, ", ident(column.name));
    }
    format!(
        r#"
WITH written AS (
    INSERT INTO {name} AS p {target}
    {select}
    ON CONFLICT ({key}) DO UPDATE SET
        {set}source_object = EXCLUDED.source_object,
        fetched_at = EXCLUDED.fetched_at,
        loaded_at = CASE WHEN {old} IS DISTINCT FROM {new} THEN now() ELSE p.loaded_at END
    WHERE p.fetched_at < EXCLUDED.fetched_at
       OR (p.fetched_at = EXCLUDED.fetched_at AND {old} IS DISTINCT FROM {new})
    -- xmax is 0 for a freshly inserted row version, non-zero for an update;
    -- loaded_at is now() only where the content changed (one object per
    -- transaction: a row last written by another object has that
    -- transaction's start time, which differs unless both began in the
    -- same microsecond; then a lineage-only move counts as updated, the
    -- rows themselves are right either way).
    RETURNING (xmax = 0) AS inserted, (loaded_at = now()) AS changed
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted AND changed) AS updated
FROM written"#,
        name = ident(table.name),
        key = ident(table.key),
        target = target(table, columns),
        select = select(table, columns),
    )
}

/// Upserts the rows at `chunk` in one statement, and counts what it did.
async fn upsert_chunk(
    tx: &mut Tx<'_>,
    rows: &dyn Rows,
    chunk: &[usize],
    lineage: Lineage<'_>,
) -> Result<UpsertCounts, WriteError> {
    let columns = rows.columns(chunk);
    let keys: Vec<i64> = chunk.iter().map(|&i| rows.key(i)).collect();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&keys];
    for column in &columns {
        params.push(match &column.values {
            Values::BigInt(values) => values,
            Values::Text(values) => values,
        });
    }
    params.push(&lineage.source_object);
    params.push(&lineage.fetched_at);
    let written = tx
        .query_one(&upsert_sql(rows.table(), &columns), &params)
        .await?;

    let inserted = written.get::<_, i64>("inserted") as u64;
    let updated = written.get::<_, i64>("updated") as u64;
    Ok(UpsertCounts {
        inserted,
        updated,
        unchanged: chunk.len() as u64 - inserted - updated,
        superseded: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::record::Record as _;
    use pipeline_core::resources::Post;

    fn post(id: i64, title: &str) -> Post {
        Post {
            user_id: 1,
            id,
            title: title.into(),
            body: String::new(),
        }
    }

    #[test]
    fn the_last_occurrence_of_a_key_wins() {
        let posts = vec![
            post(1, "a"),
            post(2, "b"),
            post(1, "c"),
            post(3, "d"),
            post(2, "e"),
        ];
        let titles: Vec<_> = last_occurrences(&posts)
            .iter()
            .map(|&i| posts[i].title.as_str())
            .collect();
        assert_eq!(titles, ["c", "d", "e"]);
    }

    #[test]
    fn identifiers_are_quoted_whatever_they_hold() {
        assert_eq!(ident("posts"), r#""posts""#);
        assert_eq!(ident("app events"), r#""app events""#);
        assert_eq!(
            ident(r#"a"; DROP TABLE posts; --"#),
            r#""a""; DROP TABLE posts; --""#
        );
        let weird = Table {
            name: r#"we"ird"#,
            key: r#"i"d"#,
        };
        assert_eq!(
            copy_sql(weird, &[]),
            r#"COPY "we""ird" ("i""d", source_object, fetched_at) FROM STDIN (FORMAT binary)"#
        );
        assert!(
            upsert_sql(weird, &[]).contains(r#"INSERT INTO "we""ird" AS p ("i""d", source_object"#)
        );
    }

    #[test]
    fn the_statements_name_the_table_its_key_and_columns_in_binding_order() {
        let post = post(1, "t");
        let columns = Post::columns(&[&post]);
        assert_eq!(
            copy_sql(Post::TABLE, &columns),
            r#"COPY "posts" ("id", "user_id", "title", "body", source_object, fetched_at) FROM STDIN (FORMAT binary)"#
        );
        let upsert = upsert_sql(Post::TABLE, &columns);
        assert!(
            upsert.contains(r#"ON CONFLICT ("id") DO UPDATE SET
        "user_id" = EXCLUDED."user_id", "title" = EXCLUDED."title", "body" = EXCLUDED."body", source_object"#),
            "{upsert}"
        );
        assert!(
            upsert.contains(
                r#"ROW(p."user_id", p."title", p."body") IS DISTINCT FROM ROW(EXCLUDED."user_id", "#
            ),
            "{upsert}"
        );
    }
}
