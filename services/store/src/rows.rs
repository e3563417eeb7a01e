//! Writing the valid records of an object to their resource's table, the
//! same way for every resource: the SQL is made from the resource's entry
//! in the resources file (its table, key and typed columns), with every
//! identifier quoted ([`ident`]) and every value bound, never spliced in.

use bytes::{BufMut as _, Bytes, BytesMut};
use futures::SinkExt as _;
use pipeline_core::spec::read::{Buffer, Columns};
use pipeline_core::spec::{EXTRA_COLUMN, ResourceSpec};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Error, Row, Statement, Transaction};
use uuid::Uuid;

use crate::QueryError;
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
    resource: &ResourceSpec,
    rows: &Columns,
    lineage: Lineage<'_>,
) -> Result<UpsertCounts, QueryError> {
    let table = Table::of(resource, rows);
    let latest = last_occurrences(&table);
    let mut counts = UpsertCounts {
        superseded: (rows.rows() - latest.len()) as u64,
        ..UpsertCounts::default()
    };
    for chunk in latest.chunks(CHUNK_ROWS) {
        counts += write_chunk(tx, &table, chunk, lineage).await?;
    }
    Ok(counts)
}

/// Rows of one resource, as the statements see them: the table, its
/// columns in the file's order (then `_extra` when the file keeps it), and
/// which of them are the key.
struct Table<'a> {
    name: &'a str,
    columns: Vec<(&'a str, &'a Buffer)>,
    /// Indexes into `columns`.
    key: &'a [usize],
    len: usize,
}

impl<'a> Table<'a> {
    fn of(resource: &'a ResourceSpec, rows: &'a Columns) -> Self {
        let mut columns: Vec<(&str, &Buffer)> = resource
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .zip(&rows.buffers)
            .collect();
        if let Some(extra) = &rows.extra {
            columns.push((EXTRA_COLUMN, extra));
        }
        Self {
            name: &resource.table,
            columns,
            key: &resource.key,
            len: rows.rows(),
        }
    }

    /// The key of row `index`.
    fn key(&self, index: usize) -> Key<'a> {
        self.key
            .iter()
            .map(|&c| KeyPart::at(self.columns[c].1, index))
            .collect()
    }

    fn key_names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.key.iter().map(|&c| self.columns[c].0)
    }

    /// The columns that are not the key: what an update changes.
    fn content(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.key.contains(i))
            .map(|(_, (name, _))| *name)
    }
}

/// A row's key: one part per key column.
type Key<'a> = Vec<KeyPart<'a>>;

/// A key column's value: a key is `bigint`, `text` or `uuid`, never null.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyPart<'a> {
    Int(i64),
    Text(Cow<'a, str>),
    Uuid(Uuid),
}

impl<'a> KeyPart<'a> {
    fn at(buffer: &'a Buffer, index: usize) -> Self {
        match buffer {
            Buffer::BigInt(v) => Self::Int(v[index].unwrap_or_default()),
            Buffer::Text(v) => Self::Text(Cow::Borrowed(v[index].as_deref().unwrap_or_default())),
            Buffer::Uuid(v) => Self::Uuid(v[index].unwrap_or_default()),
            other => unreachable!("the resources file makes a key bigint, text or uuid: {other:?}"),
        }
    }

    /// Column `i` of a row the look-up returned, of the type of `like`.
    fn from_row(row: &Row, i: usize, like: &Buffer) -> Result<Self, Error> {
        Ok(match like {
            Buffer::BigInt(_) => Self::Int(row.try_get(i)?),
            Buffer::Uuid(_) => Self::Uuid(row.try_get(i)?),
            _ => Self::Text(Cow::Owned(row.try_get(i)?)),
        })
    }
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
    table: &Table<'_>,
    chunk: &[usize],
    lineage: Lineage<'_>,
) -> Result<UpsertCounts, QueryError> {
    if tx.keys_met.expects_new(table.name)
        && let Some(inserted) = copy_new(tx, table, chunk, lineage).await?
    {
        return Ok(UpsertCounts {
            inserted,
            ..UpsertCounts::default()
        });
    }
    let present = present_keys(tx, table, chunk).await?;
    tx.keys_met.remember(table.name, !present.is_empty());
    let (fresh, mut known): (Vec<usize>, Vec<usize>) = chunk
        .iter()
        .partition(|&&i| !present.contains(&table.key(i)));

    let mut counts = UpsertCounts::default();
    if !fresh.is_empty() {
        match copy_new(tx, table, &fresh, lineage).await? {
            Some(inserted) => counts.inserted += inserted,
            None => known.extend(fresh),
        }
    }
    if !known.is_empty() {
        counts += upsert_chunk(tx, table, &known, lineage).await?;
    }
    Ok(counts)
}

/// The keys of the rows at `chunk` that the table holds already.
async fn present_keys<'a>(
    tx: &mut Tx<'_>,
    table: &Table<'a>,
    chunk: &[usize],
) -> Result<HashSet<Key<'a>>, QueryError> {
    let keys: Vec<Bound<'_>> = table
        .key
        .iter()
        .map(|&c| gather(table.columns[c].1, chunk))
        .collect();
    let params: Vec<&(dyn ToSql + Sync)> = keys.iter().map(|k| &**k as _).collect();
    let found = tx.query(&lookup_sql(table), &params).await?;
    found
        .iter()
        .map(|row| {
            table
                .key
                .iter()
                .enumerate()
                .map(|(i, &c)| KeyPart::from_row(row, i, table.columns[c].1))
                .collect::<Result<Key<'a>, Error>>()
        })
        .collect::<Result<_, Error>>()
        .map_err(QueryError::Postgres)
}

/// The look-up of the keys of a chunk: by `= ANY` for one key column (an
/// index scan per key), by the rows of the key arrays for several.
fn lookup_sql(table: &Table<'_>) -> String {
    let names: Vec<String> = table.key_names().map(ident).collect();
    let name = ident(table.name);
    if let [key] = &names[..] {
        return format!("SELECT {key} FROM {name} WHERE {key} = ANY($1)");
    }
    let arrays: Vec<String> = table
        .key
        .iter()
        .enumerate()
        .map(|(i, &c)| format!("${}::{}[]", i + 1, sql_type(table.columns[c].1)))
        .collect();
    format!(
        "SELECT {names} FROM {name} WHERE ({names}) IN (SELECT * FROM UNNEST({arrays}))",
        names = names.join(", "),
        arrays = arrays.join(", "),
    )
}

/// Inserts the rows at `indices` with one binary `COPY` in a savepoint, and
/// returns how many; `None`, with the savepoint rolled back, if one of
/// their keys is in the table already.
async fn copy_new(
    tx: &mut Tx<'_>,
    table: &Table<'_>,
    indices: &[usize],
    lineage: Lineage<'_>,
) -> Result<Option<u64>, QueryError> {
    let copy = tx.statements.prepared(&tx.inner, &copy_sql(table)).await?;
    let savepoint = tx.inner.savepoint("fresh").await?;
    match copy_in(&savepoint, &copy, table, indices, lineage).await {
        Ok(inserted) => {
            savepoint.commit().await?;
            Ok(Some(inserted))
        }
        Err(QueryError::Postgres(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
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
pub(crate) struct KeysMet(HashSet<String>);

impl KeysMet {
    fn expects_new(&self, table: &str) -> bool {
        !self.0.contains(table)
    }

    fn remember(&mut self, table: &str, met_present: bool) {
        if met_present {
            self.0.insert(table.to_owned());
        } else {
            self.0.remove(table);
        }
    }
}

/// Writes the rows at `indices`, with their lineage, in one binary `COPY`
/// (`copy`, prepared from [`copy_sql`]).
async fn copy_in(
    tx: &Transaction<'_>,
    copy: &Statement,
    table: &Table<'_>,
    indices: &[usize],
    lineage: Lineage<'_>,
) -> Result<u64, QueryError> {
    // The columns and the two lineage fields.
    let fields = i16::try_from(table.columns.len() + 2)
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
    for &i in indices {
        buf.put_i16(fields);
        for &(name, values) in &table.columns {
            put_value(&mut buf, values, i, name)?;
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

/// Appends row `i`'s value of a column to a binary `COPY` row.
fn put_value(buf: &mut BytesMut, values: &Buffer, i: usize, name: &str) -> Result<(), QueryError> {
    match values {
        Buffer::BigInt(v) => put_field(buf, &v[i], &Type::INT8, name),
        Buffer::Integer(v) => put_field(buf, &v[i], &Type::INT4, name),
        Buffer::Double(v) => put_field(buf, &v[i], &Type::FLOAT8, name),
        Buffer::Numeric(v) => put_field(buf, &v[i].as_deref().map(Numeric), &Type::NUMERIC, name),
        Buffer::Boolean(v) => put_field(buf, &v[i], &Type::BOOL, name),
        Buffer::Text(v) => put_field(buf, &v[i], &Type::TEXT, name),
        Buffer::Timestamptz(v) => put_field(buf, &v[i], &Type::TIMESTAMPTZ, name),
        Buffer::Date(v) => put_field(buf, &v[i], &Type::DATE, name),
        Buffer::Uuid(v) => put_field(buf, &v[i], &Type::UUID, name),
        Buffer::Jsonb(v) => put_field(buf, &v[i].as_deref().map(Jsonb), &Type::JSONB, name),
    }
}

/// Appends one field of a binary `COPY` row: its length, then its value.
fn put_field(
    buf: &mut BytesMut,
    value: &(dyn ToSql + Sync),
    ty: &Type,
    column: &str,
) -> Result<(), QueryError> {
    let encode = |source| QueryError::Encode {
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

/// A column's values at some rows, bound as one array parameter.
type Bound<'a> = Box<dyn ToSql + Send + Sync + 'a>;

/// The values of `values` at rows `at`, as an array of its type.
fn gather<'a>(values: &'a Buffer, at: &[usize]) -> Bound<'a> {
    fn pick<T: Clone>(v: &[Option<T>], at: &[usize]) -> Vec<Option<T>> {
        at.iter().map(|&i| v[i].clone()).collect()
    }
    fn text<'a, W>(
        v: &'a [Option<String>],
        at: &[usize],
        wrap: fn(&'a str) -> W,
    ) -> Vec<Option<W>> {
        at.iter().map(|&i| v[i].as_deref().map(wrap)).collect()
    }
    match values {
        Buffer::BigInt(v) => Box::new(pick(v, at)),
        Buffer::Integer(v) => Box::new(pick(v, at)),
        Buffer::Double(v) => Box::new(pick(v, at)),
        Buffer::Numeric(v) => Box::new(text(v, at, Numeric)),
        Buffer::Boolean(v) => Box::new(pick(v, at)),
        Buffer::Text(v) => Box::new(text(v, at, |t| t)),
        Buffer::Timestamptz(v) => Box::new(pick(v, at)),
        Buffer::Date(v) => Box::new(pick(v, at)),
        Buffer::Uuid(v) => Box::new(pick(v, at)),
        Buffer::Jsonb(v) => Box::new(text(v, at, Jsonb)),
    }
}

/// The PostgreSQL type of a column's values.
fn sql_type(values: &Buffer) -> &'static str {
    match values {
        Buffer::BigInt(_) => "bigint",
        Buffer::Integer(_) => "integer",
        Buffer::Double(_) => "double precision",
        Buffer::Numeric(_) => "numeric",
        Buffer::Boolean(_) => "boolean",
        Buffer::Text(_) => "text",
        Buffer::Timestamptz(_) => "timestamptz",
        Buffer::Date(_) => "date",
        Buffer::Uuid(_) => "uuid",
        Buffer::Jsonb(_) => "jsonb",
    }
}

/// JSON text, bound as `jsonb` (or `json`) without being parsed again.
#[derive(Debug, Clone, Copy)]
struct Jsonb<'a>(&'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // jsonb's binary format: a version byte, 1, then the text.
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

/// A decimal in plain notation (`-12.50`, as the reader leaves it), bound
/// as `numeric` with every digit and its scale.
#[derive(Debug, Clone, Copy)]
struct Numeric<'a>(&'a str);

impl ToSql for Numeric<'_> {
    /// `numeric`'s binary format (PostgreSQL's `numeric_send`): the number
    /// of base-10,000 digits, the weight of the first (in powers of
    /// 10,000), the sign, the scale (decimal digits after the point), then
    /// the digits, with no leading or trailing zero digit.
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let (negative, digits) = match self.0.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, self.0),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let whole = whole.trim_start_matches('0');
        if !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(format!("{:?} is not a plain decimal", self.0).into());
        }
        // Whole part padded on the left, fraction on the right, to groups
        // of four digits that the point falls between.
        let pad = (4 - whole.len() % 4) % 4;
        let mut groups: Vec<i16> = Vec::with_capacity((whole.len() + fraction.len()) / 4 + 2);
        let mut group = 0i16;
        let mut filled = pad;
        let decimal = whole
            .bytes()
            .chain(fraction.bytes())
            .chain(std::iter::repeat_n(b'0', (4 - fraction.len() % 4) % 4));
        for b in decimal {
            group = group * 10 + i16::from(b - b'0');
            filled += 1;
            if filled == 4 {
                groups.push(group);
                group = 0;
                filled = 0;
            }
        }
        let mut weight = i16::try_from((pad + whole.len()) / 4).map_err(|_| "too many digits")? - 1;
        let leading = groups.iter().take_while(|&&g| g == 0).count();
        groups.drain(..leading);
        weight -= i16::try_from(leading).map_err(|_| "too many digits")?;
        while groups.last() == Some(&0) {
            groups.pop();
        }
        let zero = groups.is_empty();
        out.put_i16(i16::try_from(groups.len()).map_err(|_| "too many digits")?);
        out.put_i16(if zero { 0 } else { weight });
        out.put_u16(if negative && !zero { 0x4000 } else { 0 });
        out.put_u16(u16::try_from(fraction.len()).map_err(|_| "too many digits")?);
        for g in groups {
            out.put_i16(g);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

/// `COPY "t" ("a", "b", source_object, fetched_at) FROM STDIN (FORMAT
/// binary)`.
fn copy_sql(table: &Table<'_>) -> String {
    format!(
        "COPY {name} {target} FROM STDIN (FORMAT binary)",
        name = ident(table.name),
        target = target(table),
    )
}

/// `("a", "b", source_object, fetched_at)`.
fn target(table: &Table<'_>) -> String {
    let mut target = "(".to_owned();
    for &(name, _) in &table.columns {
        let _ = write!(target, "{}, ", ident(name));
    }
    target.push_str("source_object, fetched_at)");
    target
}

/// `SELECT u.*, $3, $4 FROM UNNEST($1::bigint[], $2::text[]) AS u("a", "b")`.
fn select(table: &Table<'_>) -> String {
    let mut arrays = Vec::with_capacity(table.columns.len());
    let mut names = Vec::with_capacity(table.columns.len());
    for (i, &(name, values)) in table.columns.iter().enumerate() {
        arrays.push(format!("${}::{}[]", i + 1, sql_type(values)));
        names.push(ident(name));
    }
    let lineage = table.columns.len() + 1;
    format!(
        "SELECT u.*, ${lineage}, ${} FROM UNNEST({}) AS u({})",
        lineage + 1,
        arrays.join(", "),
        names.join(", ")
    )
}

/// `name` as a quoted SQL identifier, whatever it holds: names come from
/// the resources file, and a `"` in one must not end it.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The indices of the rows whose key does not occur again later, in input
/// order.
fn last_occurrences(table: &Table<'_>) -> Vec<usize> {
    let mut seen = HashSet::with_capacity(table.len);
    let mut latest: Vec<usize> = (0..table.len)
        .rev()
        .filter(|&i| seen.insert(table.key(i)))
        .collect();
    latest.reverse();
    latest
}

/// The upsert: an insert that, on a key already present, updates the row
/// when this object is newer, or as new and different.
fn upsert_sql(table: &Table<'_>) -> String {
    let content: Vec<&str> = table.content().collect();
    // A table that is all key has no content to differ in.
    let differs = if content.is_empty() {
        "false".to_owned()
    } else {
        let row = |alias: &str| {
            let names: Vec<String> = content
                .iter()
                .map(|c| format!("{alias}.{}", ident(c)))
                .collect();
            format!("ROW({})", names.join(", "))
        };
        format!("{} IS DISTINCT FROM {}", row("p"), row("EXCLUDED"))
    };
    let mut set = String::new();
    for column in &content {
        let _ = write!(set, "{0} = EXCLUDED.{0}, ", ident(column));
    }
    let key: Vec<String> = table.key_names().map(ident).collect();
    format!(
        r#"
WITH written AS (
    INSERT INTO {name} AS p {target}
    {select}
    ON CONFLICT ({key}) DO UPDATE SET
        {set}source_object = EXCLUDED.source_object,
        fetched_at = EXCLUDED.fetched_at,
        loaded_at = CASE WHEN {differs} THEN now() ELSE p.loaded_at END
    WHERE p.fetched_at < EXCLUDED.fetched_at
       OR (p.fetched_at = EXCLUDED.fetched_at AND {differs})
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
        key = key.join(", "),
        target = target(table),
        select = select(table),
    )
}

/// Upserts the rows at `chunk` in one statement, and counts what it did.
async fn upsert_chunk(
    tx: &mut Tx<'_>,
    table: &Table<'_>,
    chunk: &[usize],
    lineage: Lineage<'_>,
) -> Result<UpsertCounts, QueryError> {
    let arrays: Vec<Bound<'_>> = table
        .columns
        .iter()
        .map(|&(_, values)| gather(values, chunk))
        .collect();
    let mut params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| &**a as _).collect();
    params.push(&lineage.source_object);
    params.push(&lineage.fetched_at);
    let written = tx.query_one(&upsert_sql(table), &params).await?;

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
mod tests;
