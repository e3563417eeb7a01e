//! `docs/adding-a-resource.md`, step by step, against the fake API's
//! `/v2/tickets` (records in an envelope, a string key, times, a nullable
//! field, a decimal, a nested object): a resource added by writing a file,
//! with no Rust, on the real PostgreSQL and LocalStack. Then a column added
//! the same way and filled for every row from the archive, with the API
//! gone.

#![allow(clippy::unwrap_used)]

use importer::replay::Replay;
use pipeline_core::spec::Spec;
use serde_json::json;
use std::path::{Path, PathBuf};
use testkit::fake_api::{self, FakeApi, tickets};
use testkit::{Ran, TestAws, TestDb};
use tokio_util::sync::CancellationToken;

mod support;
use support::transformer;

/// The guide's file, used as the guide shows it.
fn guide_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/tickets.toml")
}

/// Step 2: `transformer schema --write`, which prints the directory it
/// wrote; that migration, as the guide says to read it before committing.
async fn write_migration(
    aws: &TestAws,
    db: &TestDb,
    file: &Path,
    dir: &Path,
    name: &str,
) -> String {
    let wrote = Ran::of(
        transformer(aws, db)
            .args(["schema", "--write"])
            .arg(dir)
            .args(["--name", name])
            .env("RESOURCES_FILE", file),
    )
    .await;
    wrote.assert_success();
    let written = PathBuf::from(wrote.stdout.trim());
    assert!(written.starts_with(dir), "{}", wrote.stdout);
    std::fs::read_to_string(written.join("up.sql")).unwrap()
}

/// Step 3: `transformer migrate` with the directory.
async fn migrate(aws: &TestAws, db: &TestDb, dir: &Path) {
    Ran::of(
        transformer(aws, db)
            .arg("migrate")
            .env("MIGRATIONS_DIR", dir),
    )
    .await
    .assert_success();
}

/// Step 5: `transformer run --drain` with the file and the directory.
async fn drain(aws: &TestAws, db: &TestDb, file: &Path, dir: &Path) -> Ran {
    let ran = Ran::of(
        transformer(aws, db)
            .args(["run", "--drain"])
            .env("RESOURCES_FILE", file)
            .env("MIGRATIONS_DIR", dir),
    )
    .await;
    ran.assert_success();
    ran
}

/// Step 4: the importer, with `RESOURCES_FILE` and
/// `RESOURCES=tickets=<url>`, as `importer run` reads them.
fn importer(aws: &TestAws, file: &Path, url: url::Url) -> importer::Importer {
    let mut config =
        importer::settings::Config::new(url, aws.bucket.clone(), aws.queue_url.clone());
    config.resources = Spec::load(Some(file)).unwrap();
    let config = config.for_resource("tickets");
    importer::Importer::new(config, aws.clients.clone()).unwrap()
}

/// The guide shows the file the test uses, as it is.
#[test]
fn the_guide_shows_the_file_it_describes() {
    let file = std::fs::read_to_string(guide_file()).unwrap();
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/adding-a-resource.md"),
    )
    .unwrap();
    let entry = &file[file.find("[resources.tickets]").unwrap()..];
    assert!(
        guide.contains(&format!("```toml\n{entry}```")),
        "docs/adding-a-resource.md shows another file than docs/examples/tickets.toml"
    );
}

#[tokio::test]
async fn a_resource_added_as_the_guide_says_loads_typed_rows_and_a_new_column_is_backfilled() {
    let (aws, db) = (TestAws::new().await, TestDb::new().await);
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    let migrations = tempfile::tempdir().unwrap();
    let file = guide_file();

    // 1-2. The file, then the migration it needs: the table, created.
    let up = write_migration(&aws, &db, &file, migrations.path(), "add_tickets").await;
    assert!(up.contains(r#"CREATE TABLE "tickets""#), "{up}");
    assert!(up.contains(r#"PRIMARY KEY ("ticket_id")"#), "{up}");
    // 3. Applied.
    migrate(&aws, &db, migrations.path()).await;

    // 4. Imported: three pages, each followed by its `Link` header.
    let report = importer(&aws, &file, api.join("v2/tickets").unwrap())
        .import_once()
        .await
        .unwrap();
    assert_eq!(report.pages.len(), 3);
    let records: u64 = report.pages.iter().map(|p| p.record_count).sum();
    assert_eq!(records, u64::from(tickets::TICKETS));

    // 5. Applied: every ticket but the one whose priority is 9, which is
    // quarantined naming the column and the JSON pointer at fault.
    drain(&aws, &db, &file, migrations.path()).await;
    assert_eq!(
        db.count("SELECT count(*) AS n FROM tickets").await,
        i64::from(tickets::TICKETS) - 1
    );
    let quarantined = db
        .json("SELECT json_build_object('reason', reason) AS j FROM quarantined_records")
        .await;
    assert_eq!(
        quarantined,
        [json!({"reason": "column `priority` (/priority): 9 is more than the maximum 4"})]
    );
    // Typed: the times are timestamptz, the amount numeric, the customer
    // jsonb, a closed ticket's closed_at set and a pending one's null, and
    // the field no column names kept in _extra.
    let typed = db
        .json(
            "SELECT json_build_object(
                'ticket_id', ticket_id, 'status', status, 'priority', priority,
                'opened_at', opened_at, 'closed_at', closed_at, 'amount', amount,
                'customer', customer, 'extra', _extra,
                'types', json_build_array(pg_typeof(opened_at), pg_typeof(amount),
                                          pg_typeof(customer), pg_typeof(priority))) AS j
             FROM tickets WHERE ticket_id IN ('TCK-00002', 'TCK-00004') ORDER BY ticket_id",
        )
        .await;
    assert_eq!(
        typed,
        [
            json!({"ticket_id": "TCK-00002", "status": "closed", "priority": 3,
                   "opened_at": "2025-12-01T10:00:00+00:00",
                   "closed_at": "2025-12-01T12:00:00+00:00", "amount": 6.02,
                   "customer": {"id": 3, "tier": "enterprise", "tags": ["vip", "emea"]},
                   "extra": {"channel": "email"},
                   "types": ["timestamp with time zone", "numeric", "jsonb", "integer"]}),
            json!({"ticket_id": "TCK-00004", "status": "pending", "priority": 1,
                   "opened_at": "2025-12-01T12:00:00+00:00", "closed_at": null,
                   "amount": 12.04,
                   "customer": {"id": 5, "tier": "pro", "tags": ["vip", "emea"]},
                   "extra": {"channel": "email"},
                   "types": ["timestamp with time zone", "numeric", "jsonb", "integer"]}),
        ]
    );

    // A new column: `channel`, in a copy of the file. Its migration adds
    // it; the archive fills it for every row, with the API gone.
    drop(api);
    let text = std::fs::read_to_string(&file).unwrap();
    let with_channel = migrations.path().join("tickets.toml");
    std::fs::write(
        &with_channel,
        format!("{text}\n[[resources.tickets.columns]]\nname = \"channel\"\ntype = \"text\"\n"),
    )
    .unwrap();
    let up = write_migration(
        &aws,
        &db,
        &with_channel,
        migrations.path(),
        "tickets_channel",
    )
    .await;
    assert!(
        up.contains(r#"ALTER TABLE "tickets" ADD COLUMN "channel" text;"#),
        "{up}"
    );
    migrate(&aws, &db, migrations.path()).await;
    let replay = Replay {
        prefix: Some("raw/tickets".into()),
        since: None,
        until: None,
        start_after: None,
        dry_run: false,
        reapply: true,
    };
    let replayed = importer(&aws, &with_channel, "http://127.0.0.1:9/".parse().unwrap())
        .replay(&replay, &mut std::io::sink(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(replayed.sent, 3);
    drain(&aws, &db, &with_channel, migrations.path()).await;
    assert_eq!(
        db.count("SELECT count(*) AS n FROM tickets WHERE channel IS NULL")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM tickets WHERE channel = 'email'")
            .await,
        60
    );
    // Still quarantined once, not twice.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM quarantined_records")
            .await,
        1
    );
}

/// Puts every file under `dir` in the test's bucket under `prefix`, at its
/// path below `dir`, as `ecs/deploy.sh --migrations` does.
async fn upload_dir(aws: &TestAws, dir: &Path, prefix: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_str().unwrap();
            Box::pin(upload_dir(aws, &path, &format!("{prefix}{name}/"))).await;
        } else {
            let name = path.file_name().unwrap().to_str().unwrap();
            aws.put(&format!("{prefix}{name}"), std::fs::read(&path).unwrap())
                .await;
        }
    }
}

/// On ECS the file and the migrations sit in the stack's bucket: every
/// command reads them from there, and one that cannot says so in a line
/// naming the object.
#[tokio::test]
async fn a_resources_file_and_migrations_in_s3_are_read_from_there() {
    let (aws, db) = (TestAws::new().await, TestDb::new().await);
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    let file = format!("s3://{}/config/resources/1.toml", aws.bucket);
    let dir = format!("s3://{}/config/migrations/1/", aws.bucket);
    aws.put(
        "config/resources/1.toml",
        std::fs::read(guide_file()).unwrap(),
    )
    .await;
    let s3 = |command: &mut tokio::process::Command| {
        command
            .env("RESOURCES_FILE", &file)
            .env("MIGRATIONS_DIR", &dir);
    };

    // A migrations prefix with nothing under it is refused, not taken for
    // one with nothing to apply; so are tables that do not match the file.
    let mut migrate = transformer(&aws, &db);
    migrate.arg("migrate");
    s3(&mut migrate);
    let refused = Ran::of(&mut migrate).await;
    assert!(
        refused
            .one_error(1)
            .contains(&format!("MIGRATIONS_DIR {dir} holds no migration")),
        "{}",
        refused.log()
    );
    let refused = Ran::of(
        transformer(&aws, &db)
            .arg("migrate")
            .env("RESOURCES_FILE", &file),
    )
    .await;
    assert!(
        refused
            .one_error(1)
            .contains("table `tickets` cannot take the rows of resource `tickets` (s3://"),
        "{}",
        refused.log()
    );

    // The migration written from the file in S3, put beside it, applied.
    let local = tempfile::tempdir().unwrap();
    let mut schema = transformer(&aws, &db);
    schema.args(["schema", "--write"]).arg(local.path());
    s3(&mut schema);
    Ran::of(&mut schema).await.assert_success();
    upload_dir(&aws, local.path(), "config/migrations/1/").await;
    let mut migrate = transformer(&aws, &db);
    migrate.arg("migrate");
    s3(&mut migrate);
    Ran::of(&mut migrate).await.assert_success();

    // Imported, then applied by a transformer that reads both from S3.
    importer(&aws, &guide_file(), api.join("v2/tickets").unwrap())
        .import_once()
        .await
        .unwrap();
    let mut run = transformer(&aws, &db);
    run.args(["run", "--drain"]);
    s3(&mut run);
    Ran::of(&mut run).await.assert_success();
    assert_eq!(
        db.count("SELECT count(*) AS n FROM tickets").await,
        i64::from(tickets::TICKETS) - 1
    );

    // An object that is not there ends the command (exit 1); one with a
    // mistake is a bad setting (exit 2). Each in one line naming it.
    let missing = format!("s3://{}/config/resources/2.toml", aws.bucket);
    let mut run = transformer(&aws, &db);
    run.args(["run", "--drain"]).env("RESOURCES_FILE", &missing);
    let ran = Ran::of(&mut run).await;
    assert_eq!(
        ran.one_error(1),
        format!(
            "error: RESOURCES_FILE (--resources-file): cannot reach S3 object {missing} via endpoint {}: HTTP 404: no such object",
            TestAws::endpoint().as_str().trim_end_matches('/')
        )
    );
    let (mistake, ending) = testkit::resources_files::MISTAKES[1];
    aws.put("config/resources/2.toml", mistake).await;
    let ran = Ran::of(&mut run).await;
    assert_eq!(
        ran.one_error(2),
        format!("error: invalid setting RESOURCES_FILE (--resources-file): {missing}: {ending}")
    );
}
