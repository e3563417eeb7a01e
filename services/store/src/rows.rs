//! Writing the valid records of an object to their resource's table, the
//! same way for every resource: the SQL is made from the table's name, key
//! and columns ([`pipeline_core::record::Rows`]).

use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::result::DatabaseErrorKind;
use diesel::result::Error::DatabaseError;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use pipeline_core::record::{Column, Rows, Table, Values};
use std::collections::HashSet;
use std::fmt::Write as _;
use time::OffsetDateTime;

/// Rows per statement. Each statement binds one array per column whatever
/// its size (Postgres allows at most 65,535 parameters per statement, so
/// one row per parameter set would cap batches at 16k rows of posts and
/// cost far more parsing).
pub const CHUNK_ROWS: usize = 5_000;

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
/// Run it inside the caller's transaction: it issues one statement per
/// [`CHUNK_ROWS`] rows.
pub async fn upsert(
    conn: &mut AsyncPgConnection,
    rows: &dyn Rows,
    lineage: Lineage<'_>,
) -> diesel::QueryResult<UpsertCounts> {
    let latest = last_occurrences(rows);
    let mut counts = UpsertCounts {
        superseded: (rows.len() - latest.len()) as u64,
        ..UpsertCounts::default()
    };
    for chunk in latest.chunks(CHUNK_ROWS) {
        counts += write_chunk(conn, rows, chunk, lineage).await?;
    }
    Ok(counts)
}

/// Rows whose key is not in the table yet are inserted with a plain
/// `INSERT`, the rest are upserted. The plain `INSERT` saves `ON CONFLICT`'s
/// speculative insertion: draining 100,000 new posts took PostgreSQL
/// 1.8-2.1 s of CPU instead of 2.1-2.4 s, and the transformer a median
/// 2.19 s instead of 2.54 s (4 runs each, alternated).
///
/// Another transaction may insert one of those keys between the look-up and
/// the insert: the insert then fails with a unique violation, its savepoint
/// is rolled back, and those rows are upserted with the rest.
async fn write_chunk(
    conn: &mut AsyncPgConnection,
    rows: &dyn Rows,
    chunk: &[usize],
    lineage: Lineage<'_>,
) -> diesel::QueryResult<UpsertCounts> {
    let table = rows.table();
    let keys: Vec<i64> = chunk.iter().map(|&i| rows.key(i)).collect();
    let present: HashSet<i64> = diesel::sql_query(format!(
        r#"SELECT "{key}" AS id FROM "{name}" WHERE "{key}" = ANY($1)"#,
        key = table.key,
        name = table.name
    ))
    .bind::<Array<BigInt>, _>(&keys)
    .load::<Id>(conn)
    .await?
    .into_iter()
    .map(|row| row.id)
    .collect();
    let (fresh, mut known): (Vec<usize>, Vec<usize>) = chunk
        .iter()
        .partition(|&&i| !present.contains(&rows.key(i)));

    let mut counts = UpsertCounts::default();
    if !fresh.is_empty() {
        let inserted = conn
            .transaction(async |conn| {
                let columns = rows.columns(&fresh);
                let sql = insert_sql(table, &columns);
                bind_chunk(&sql, rows, &fresh, &columns, lineage)
                    .execute(conn)
                    .await
            })
            .await;
        match inserted {
            Ok(inserted) => counts.inserted += inserted as u64,
            Err(DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => known.extend(fresh),
            Err(e) => return Err(e),
        }
    }
    if !known.is_empty() {
        counts += upsert_chunk(conn, rows, &known, lineage).await?;
    }
    Ok(counts)
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// `INSERT INTO t (key, columns..., source_object, fetched_at) SELECT ...
/// FROM UNNEST($1, $2, ...)`: the rows as one array per column, their
/// lineage as the last two parameters.
fn insert_sql(table: Table, columns: &[Column<'_>]) -> String {
    format!(
        r#"INSERT INTO "{name}" {target} {select}"#,
        name = table.name,
        target = target(table, columns),
        select = select(table, columns),
    )
}

/// `("key", "a", "b", source_object, fetched_at)`.
fn target(table: Table, columns: &[Column<'_>]) -> String {
    let mut target = format!(r#"("{}""#, table.key);
    for column in columns {
        let _ = write!(target, r#", "{}""#, column.name);
    }
    target.push_str(", source_object, fetched_at)");
    target
}

/// `SELECT u.*, $4, $5 FROM UNNEST($1::bigint[], ...) AS u("key", ...)`.
fn select(table: Table, columns: &[Column<'_>]) -> String {
    let mut arrays = "$1::bigint[]".to_owned();
    let mut names = format!(r#""{}""#, table.key);
    for (i, column) in columns.iter().enumerate() {
        let _ = write!(arrays, ", ${}::{}[]", i + 2, column.values.sql_type());
        let _ = write!(names, r#", "{}""#, column.name);
    }
    let lineage = columns.len() + 2;
    format!(
        "SELECT u.*, ${lineage}, ${} FROM UNNEST({arrays}) AS u({names})",
        lineage + 1
    )
}

/// `sql` with the rows at `indices` bound as one array per column (the key
/// first) and their lineage.
fn bind_chunk<'a>(
    sql: &'a str,
    rows: &dyn Rows,
    indices: &[usize],
    columns: &'a [Column<'a>],
    lineage: Lineage<'a>,
) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    let keys: Vec<i64> = indices.iter().map(|&i| rows.key(i)).collect();
    let mut query = diesel::sql_query(sql)
        .into_boxed()
        .bind::<Array<BigInt>, _>(keys);
    for column in columns {
        query = match &column.values {
            Values::BigInt(values) => query.bind::<Array<BigInt>, _>(values),
            Values::Text(values) => query.bind::<Array<Text>, _>(values),
        };
    }
    query
        .bind::<Text, _>(lineage.source_object)
        .bind::<Timestamptz, _>(lineage.fetched_at)
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
            .map(|c| format!(r#"{alias}."{}""#, c.name))
            .collect();
        format!("ROW({})", names.join(", "))
    };
    let (old, new) = (content("p"), content("EXCLUDED"));
    let mut set = String::new();
    for column in columns {
        let _ = write!(set, r#""{0}" = EXCLUDED."{0}", "#, column.name);
    }
    format!(
        r#"
WITH written AS (
    INSERT INTO "{name}" AS p {target}
    {select}
    ON CONFLICT ("{key}") DO UPDATE SET
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
        name = table.name,
        key = table.key,
        target = target(table, columns),
        select = select(table, columns),
    )
}

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = BigInt)]
    inserted: i64,
    #[diesel(sql_type = BigInt)]
    updated: i64,
}

async fn upsert_chunk(
    conn: &mut AsyncPgConnection,
    rows: &dyn Rows,
    chunk: &[usize],
    lineage: Lineage<'_>,
) -> diesel::QueryResult<UpsertCounts> {
    let columns = rows.columns(chunk);
    let sql = upsert_sql(rows.table(), &columns);
    let written: Written = bind_chunk(&sql, rows, chunk, &columns, lineage)
        .get_result(conn)
        .await?;

    let inserted = written.inserted as u64;
    let updated = written.updated as u64;
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
    fn the_statements_name_the_table_its_key_and_columns_in_binding_order() {
        let post = post(1, "t");
        let columns = Post::columns(&[&post]);
        assert_eq!(
            insert_sql(Post::TABLE, &columns),
            r#"INSERT INTO "posts" ("id", "user_id", "title", "body", source_object, fetched_at) SELECT u.*, $5, $6 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS u("id", "user_id", "title", "body")"#
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
