//! Each resource's table as the database has it, compared with what the
//! resources file says it holds: so that `transformer run` refuses to start
//! on a table that cannot take the file's rows (a column missing, of
//! another type, NOT NULL where the file allows null, no unique index on
//! the key), naming the difference, instead of dead-lettering every object
//! of that resource one by one.

use pipeline_core::spec::{ColumnType, EXTRA_COLUMN, ResourceSpec};

use crate::{Client, QueryError};

/// A column as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveColumn {
    pub name: String,
    /// As `format_type` writes it: `bigint`, `timestamp with time zone`,
    /// `character varying(20)` ...
    pub sql_type: String,
    pub not_null: bool,
    pub has_default: bool,
}

/// A table as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTable {
    pub columns: Vec<LiveColumn>,
    /// The columns of each unique index without a predicate or expression:
    /// those `INSERT ... ON CONFLICT (key)` can use.
    pub unique: Vec<Vec<String>>,
}

/// The table called `name` in the connection's search path, if any.
pub async fn live_table(conn: &mut Client, name: &str) -> Result<Option<LiveTable>, QueryError> {
    // `to_regclass` of the quoted name: the name as written, whatever it
    // holds, looked up in the search path as the writes will look it up.
    let columns: Vec<LiveColumn> = conn
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                    a.attnotnull, a.atthasdef \
             FROM pg_attribute a \
             WHERE a.attrelid = to_regclass(quote_ident($1)) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&name],
        )
        .await?
        .iter()
        .map(|row| LiveColumn {
            name: row.get(0),
            sql_type: row.get(1),
            not_null: row.get(2),
            has_default: row.get(3),
        })
        .collect();
    if columns.is_empty() {
        return Ok(None);
    }
    let unique = conn
        .query(
            "SELECT array_agg(a.attname::text ORDER BY k.n) \
             FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = to_regclass(quote_ident($1)) AND i.indisunique \
               AND i.indpred IS NULL AND i.indexprs IS NULL \
             GROUP BY i.indexrelid",
            &[&name],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(Some(LiveTable { columns, unique }))
}

impl LiveTable {
    /// Whether a unique index covers exactly the resource's key, in any
    /// order: what `ON CONFLICT (key)` needs.
    pub fn has_unique_index_on(&self, resource: &ResourceSpec) -> bool {
        let mut key: Vec<&str> = resource.key_columns().map(|c| c.name.as_str()).collect();
        key.sort_unstable();
        self.unique.iter().any(|columns| {
            let mut columns: Vec<&str> = columns.iter().map(String::as_str).collect();
            columns.sort_unstable();
            columns == key
        })
    }
}

/// The type `format_type` gives a column of `kind`.
pub fn live_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Timestamptz => "timestamp with time zone",
        other => other.sql(),
    }
}

/// What differs between `resource` and its table (`None`: no such table),
/// one phrase each, in the table's words: empty when the table can take
/// the resource's rows. Columns the file does not name are fine, unless
/// they need a value no row will give them.
pub fn differences(resource: &ResourceSpec, table: Option<&LiveTable>) -> Vec<String> {
    let Some(table) = table else {
        return vec![format!("table `{}` does not exist", resource.table)];
    };
    let mut wanted: Vec<(&str, &str, bool)> = resource
        .columns
        .iter()
        .map(|c| (c.name.as_str(), live_type(c.kind), c.nullable))
        .collect();
    // Every row's lineage and version, and what no column names.
    wanted.extend([
        ("source_object", "text", false),
        ("fetched_at", "timestamp with time zone", false),
        ("loaded_at", "timestamp with time zone", false),
    ]);
    if resource.keep_extra {
        wanted.push((EXTRA_COLUMN, "jsonb", true));
    }
    let mut found = Vec::new();
    for (name, sql_type, nullable) in &wanted {
        let Some(live) = table.columns.iter().find(|c| c.name == *name) else {
            found.push(format!("column `{name}` is missing"));
            continue;
        };
        if live.sql_type != *sql_type {
            found.push(format!(
                "column `{name}` is {}, not {sql_type}",
                live.sql_type
            ));
        }
        // A column that allows null where the file requires a value takes
        // the file's rows: it is how a new required column starts, until
        // a replay from the archive has filled it for the older rows.
        if *nullable && live.not_null {
            found.push(format!(
                "column `{name}` is NOT NULL, but the file makes it nullable"
            ));
        }
    }
    for live in &table.columns {
        let named = wanted.iter().any(|(name, ..)| *name == live.name);
        if !named && live.not_null && !live.has_default {
            found.push(format!(
                "column `{}` is NOT NULL with no default, and no field of the file fills it",
                live.name
            ));
        }
    }
    if !table.has_unique_index_on(resource) {
        let key: Vec<&str> = resource.key_columns().map(|c| c.name.as_str()).collect();
        found.push(format!(
            "no primary key or unique index on ({}), the file's key",
            key.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    found
}
