use super::*;
use crate::tables::{LiveColumn, differences};
use pipeline_core::spec::Spec;

const TICKETS: &str = r#"
    [resources.tickets]
    table = "support tickets"
    records = "/data"
    key = "ticket_id"
    extra = "keep"

    [[resources.tickets.columns]]
    name = "ticket_id"
    from = "/id"
    type = "text"

    [[resources.tickets.columns]]
    name = "opened_at"
    type = "timestamptz"

    [[resources.tickets.columns]]
    name = "closed_at"
    type = "timestamptz"
    nullable = true

    [[resources.tickets.columns]]
    name = "customer"
    type = "jsonb"
"#;

fn tickets() -> ResourceSpec {
    Spec::parse("tickets.toml", TICKETS)
        .unwrap()
        .resources
        .remove(0)
}

fn column(name: &str, sql_type: &str, not_null: bool) -> LiveColumn {
    LiveColumn {
        name: name.into(),
        sql_type: sql_type.into(),
        not_null,
        has_default: name == "loaded_at",
    }
}

#[test]
fn a_missing_table_is_created_with_its_key_lineage_and_extra() {
    let migration = migration(&tickets(), None);
    assert_eq!(
        migration.up,
        r#"-- Resource `tickets`: one row per key, as last applied from the raw objects.
CREATE TABLE "support tickets" (
    "ticket_id" text NOT NULL,
    "opened_at" timestamptz NOT NULL,
    "closed_at" timestamptz,
    "customer" jsonb NOT NULL,
    "_extra" jsonb, -- the fields no column names
    -- Lineage: the raw object (s3://bucket/key) this version of the row came
    -- from, when the importer fetched it (the row's version), and when it was written.
    source_object text NOT NULL,
    fetched_at timestamptz NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("ticket_id")
);

"#
    );
    assert_eq!(migration.down, "DROP TABLE \"support tickets\";\n");
}

#[test]
fn an_existing_table_gets_what_it_lacks_and_loses_what_stands_in_the_way() {
    let tickets = tickets();
    let live = LiveTable {
        columns: vec![
            column("ticket_id", "character varying(20)", true),
            column("opened_at", "timestamp with time zone", true),
            column("closed_at", "timestamp with time zone", true),
            column("legacy", "integer", true),
            column("source_object", "text", true),
            column("fetched_at", "timestamp with time zone", true),
            column("loaded_at", "timestamp with time zone", true),
        ],
        unique: vec![],
    };
    assert_eq!(differences(&tickets, Some(&live)).len(), 6);
    let migration = migration(&tickets, Some(&live));
    let statements: Vec<&str> = migration
        .up
        .lines()
        .filter(|l| !l.starts_with("--") && !l.is_empty())
        .collect();
    assert_eq!(
        statements,
        [
            r#"ALTER TABLE "support tickets" ALTER COLUMN "ticket_id" TYPE text USING "ticket_id"::text;"#,
            r#"ALTER TABLE "support tickets" ALTER COLUMN "closed_at" DROP NOT NULL;"#,
            r#"ALTER TABLE "support tickets" ADD COLUMN "customer" jsonb;"#,
            r#"ALTER TABLE "support tickets" ADD COLUMN "_extra" jsonb;"#,
            r#"ALTER TABLE "support tickets" ALTER COLUMN "legacy" DROP NOT NULL;"#,
            r#"CREATE UNIQUE INDEX "support tickets_key" ON "support tickets" ("ticket_id");"#,
        ]
    );
    assert!(
        migration
            .up
            .contains("importer replay --reapply --prefix <raw prefix>/tickets"),
        "{}",
        migration.up
    );
    assert_eq!(
        migration.down.lines().collect::<Vec<_>>(),
        [
            r#"DROP INDEX "support tickets_key";"#,
            r#"ALTER TABLE "support tickets" ALTER COLUMN "legacy" SET NOT NULL;"#,
            r#"ALTER TABLE "support tickets" DROP COLUMN "_extra";"#,
            r#"ALTER TABLE "support tickets" DROP COLUMN "customer";"#,
            r#"ALTER TABLE "support tickets" ALTER COLUMN "closed_at" SET NOT NULL;"#,
            r#"ALTER TABLE "support tickets" ALTER COLUMN "ticket_id" TYPE character varying(20) USING "ticket_id"::character varying(20);"#,
        ]
    );
}

#[test]
fn a_table_that_matches_needs_nothing() {
    let tickets = tickets();
    let live = LiveTable {
        columns: vec![
            column("ticket_id", "text", true),
            column("opened_at", "timestamp with time zone", true),
            column("closed_at", "timestamp with time zone", false),
            // Allows null where the file requires a value: fine.
            column("customer", "jsonb", false),
            column("_extra", "jsonb", false),
            column("source_object", "text", true),
            column("fetched_at", "timestamp with time zone", true),
            column("loaded_at", "timestamp with time zone", true),
        ],
        unique: vec![vec!["ticket_id".into()]],
    };
    assert_eq!(differences(&tickets, Some(&live)), Vec::<String>::new());
    assert!(migration(&tickets, Some(&live)).is_empty());
}
