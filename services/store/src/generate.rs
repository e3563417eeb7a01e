//! The migration that makes each resource's table match the resources
//! file, written for a person to review and commit: diesel owns the
//! schema, so the pipeline never changes a table by itself. A table that
//! does not exist is created with the file's columns, its key as the
//! primary key and the lineage every resource table has; a table that
//! exists gets what it lacks, and what stands in the way of the file's
//! rows is loosened. Each statement says why, and `down.sql` undoes them.

use pipeline_core::spec::{EXTRA_COLUMN, ResourceSpec};
use std::fmt::Write as _;

use crate::rows::ident;
use crate::tables::{LiveTable, live_type};

/// A migration: `up.sql` and `down.sql`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    pub up: String,
    pub down: String,
}

impl Migration {
    pub fn is_empty(&self) -> bool {
        self.up.is_empty()
    }

    fn step(&mut self, why: &str, up: &str, down: &str) {
        let _ = writeln!(self.up, "-- {why}\n{up};\n");
        // Undone in the reverse order.
        self.down = format!("{down};\n{}", self.down);
    }
}

/// What makes `resource`'s table (`live`, as the database has it; `None`:
/// it does not exist) take the file's rows. Empty when it does.
pub fn migration(resource: &ResourceSpec, live: Option<&LiveTable>) -> Migration {
    let mut migration = Migration::default();
    let table = ident(&resource.table);
    let Some(live) = live else {
        migration.step(
            &format!(
                "Resource `{}`: one row per key, as last applied from the raw objects.",
                resource.name
            ),
            &create_table(resource),
            &format!("DROP TABLE {table}"),
        );
        return migration;
    };
    let mut wanted: Vec<(&str, &str, bool)> = resource
        .columns
        .iter()
        .map(|c| (c.name.as_str(), live_type(c.kind), c.nullable))
        .collect();
    if resource.keep_extra {
        wanted.push((EXTRA_COLUMN, "jsonb", true));
    }
    for (name, sql_type, nullable) in wanted {
        let column = ident(name);
        match live.columns.iter().find(|c| c.name == name) {
            None => migration.step(
                &if nullable {
                    format!("New in the file: `{name}`.")
                } else {
                    format!(
                        "New in the file, required there: `{name}`. Added nullable, since the rows \
                         there have no value yet: `importer replay --reapply --prefix <raw prefix>/{}` \
                         fills it from the archive; then, if you like, SET NOT NULL.",
                        resource.name
                    )
                },
                &format!("ALTER TABLE {table} ADD COLUMN {column} {sql_type}"),
                &format!("ALTER TABLE {table} DROP COLUMN {column}"),
            ),
            Some(found) => {
                if found.sql_type != sql_type {
                    migration.step(
                        &format!(
                            "`{name}` is {} in the table, {sql_type} in the file: the cast may fail \
                             on values that do not convert; review it.",
                            found.sql_type
                        ),
                        &format!(
                            "ALTER TABLE {table} ALTER COLUMN {column} TYPE {sql_type} USING {column}::{sql_type}"
                        ),
                        &format!(
                            "ALTER TABLE {table} ALTER COLUMN {column} TYPE {0} USING {column}::{0}",
                            found.sql_type
                        ),
                    );
                }
                if nullable && found.not_null {
                    migration.step(
                        &format!("`{name}` is nullable in the file."),
                        &format!("ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL"),
                        &format!("ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL"),
                    );
                }
            }
        }
    }
    let named = |live: &str| {
        resource.columns.iter().any(|c| c.name == live)
            || [EXTRA_COLUMN, "source_object", "fetched_at", "loaded_at"].contains(&live)
    };
    for found in &live.columns {
        if !named(&found.name) && found.not_null && !found.has_default {
            let column = ident(&found.name);
            migration.step(
                &format!("`{}` is not in the file: nothing will fill it.", found.name),
                &format!("ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL"),
                &format!("ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL"),
            );
        }
    }
    if !live.has_unique_index_on(resource) {
        let index = ident(&format!("{}_key", resource.table));
        let columns: Vec<String> = resource.key_columns().map(|c| ident(&c.name)).collect();
        migration.step(
            "The file's key: rows are upserted on it.",
            &format!(
                "CREATE UNIQUE INDEX {index} ON {table} ({})",
                columns.join(", ")
            ),
            &format!("DROP INDEX {index}"),
        );
    }
    migration
}

/// `CREATE TABLE` of a resource: its columns in the file's order, then
/// `_extra` if it keeps other fields, then the lineage.
fn create_table(resource: &ResourceSpec) -> String {
    let mut sql = format!("CREATE TABLE {} (\n", ident(&resource.table));
    for column in &resource.columns {
        let _ = writeln!(
            sql,
            "    {} {}{},",
            ident(&column.name),
            column.kind.sql(),
            if column.nullable { "" } else { " NOT NULL" }
        );
    }
    if resource.keep_extra {
        let _ = writeln!(
            sql,
            "    {} jsonb, -- the fields no column names",
            ident(EXTRA_COLUMN)
        );
    }
    sql.push_str(
        "    -- Lineage: the raw object (s3://bucket/key) this version of the row came\n    \
         -- from, when the importer fetched it (the row's version), and when it was written.\n    \
         source_object text NOT NULL,\n    \
         fetched_at timestamptz NOT NULL,\n    \
         loaded_at timestamptz NOT NULL DEFAULT now(),\n",
    );
    let key: Vec<String> = resource.key_columns().map(|c| ident(&c.name)).collect();
    let _ = write!(sql, "    PRIMARY KEY ({})\n)", key.join(", "));
    sql
}

#[cfg(test)]
mod tests;
