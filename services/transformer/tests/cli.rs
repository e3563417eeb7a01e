//! The `transformer` binary as users run it: settings, errors, migrations,
//! draining, and shutdown, against the real PostgreSQL and LocalStack.

#![allow(clippy::unwrap_used)]

use std::time::Duration;
use testkit::fake_api::{self, FakeApi};
use testkit::{Ran, Running, TestAws, TestDb, command};

mod support;
use support::import;

const TRANSFORMER: &str = env!("CARGO_BIN_EXE_transformer");

#[tokio::test]
async fn help_lists_every_setting_and_hides_the_database_url() {
    let help = testkit::help_text(
        command(TRANSFORMER)
            .arg("--help")
            .env("DATABASE_URL", "postgres://pipeline:hunter2@db/pipeline"),
    )
    .await;
    for env in [
        "QUEUE_URL",
        "DATABASE_URL",
        "TRANSFORMER_CONCURRENCY",
        "DEAD_LETTER_QUEUE_URL",
        "VISIBILITY_TIMEOUT",
        "RETRY_DELAY",
        "SHUTDOWN_TIMEOUT",
        "ECS_AGENT_URI",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SQS",
        "LOG_FORMAT",
    ] {
        assert!(
            help.contains(&format!("[env: {env}")),
            "{env} missing from:\n{help}"
        );
    }
    assert!(help.contains("[default: 4]"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
}

#[tokio::test]
async fn a_missing_queue_url_is_one_line_but_migrate_does_not_need_it() {
    let ran = Ran::of(command(TRANSFORMER).arg("run").envs([
        ("DATABASE_URL", "postgres://u:p@127.0.0.1:9/db"),
        ("AWS_REGION", "us-east-1"),
    ]))
    .await;
    assert_eq!(ran.code, Some(2));
    assert_eq!(
        ran.lines,
        [
            "error: missing setting QUEUE_URL: set the environment variable QUEUE_URL or pass --queue-url"
        ]
    );

    let db = TestDb::empty().await;
    Ran::of(
        command(TRANSFORMER)
            .arg("migrate")
            .env("DATABASE_URL", db.url().expose()),
    )
    .await
    .assert_success();
}

/// A mistake in the resources file stops `run` with exit 2, in one line
/// naming the file, the resource and the field, before any network call:
/// the database and the queue here are nowhere, which it would report
/// (exit 1) had it tried them.
#[tokio::test]
async fn a_resources_file_with_a_mistake_stops_run_at_once_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (file, line) in testkit::resources_files::write_mistakes(dir.path()) {
        let ran = Ran::of(
            command(TRANSFORMER)
                .arg("run")
                .envs([
                    ("DATABASE_URL", "postgres://u:p@127.0.0.1:9/db"),
                    ("QUEUE_URL", "http://127.0.0.1:9/000000000000/q"),
                    ("AWS_REGION", "us-east-1"),
                    ("STARTUP_WAIT", "0s"),
                ])
                .env("RESOURCES_FILE", &file),
        )
        .await;
        assert_eq!((ran.code, ran.lines.clone()), (Some(2), vec![line]));
    }
}

#[tokio::test]
async fn a_malformed_database_url_is_one_line_without_the_password() {
    let ran = Ran::of(command(TRANSFORMER).arg("migrate").env(
        "DATABASE_URL",
        "postgres://pipeline:hunter2@db:notaport/pipeline",
    ))
    .await;
    assert_eq!(ran.lines.len(), 1, "{ran:?}");
    let error = ran.one_error(2);
    assert!(
        error.starts_with("error: invalid setting DATABASE_URL (--database-url): "),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
}

#[tokio::test]
async fn an_unreachable_database_is_one_line_naming_it_without_the_password() {
    let aws = TestAws::new().await;
    let ran = Ran::of(
        command(TRANSFORMER)
            .args(["run", "--drain"])
            .envs(aws.env())
            .env(
                "DATABASE_URL",
                "postgres://pipeline:hunter2@127.0.0.1:9/pipeline",
            )
            // Tried once: waiting for a database that starts later is
            // tests/startup.rs's.
            .env("STARTUP_WAIT", "0s"),
    )
    .await;

    let error = ran.one_error(1);
    assert!(
        error.contains("cannot connect to PostgreSQL at 127.0.0.1:9/pipeline as pipeline"),
        "{error}"
    );
    assert!(!ran.log().contains("hunter2"));
}

#[tokio::test]
async fn a_wrong_password_is_one_line_without_the_password() {
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    let mut url = url::Url::parse(db.url().expose()).unwrap();
    url.set_password(Some("not-the-password")).unwrap();

    let ran = Ran::of(
        command(TRANSFORMER)
            .args(["run", "--drain"])
            .envs(aws.env())
            .env("DATABASE_URL", url.as_str()),
    )
    .await;

    let error = ran.one_error(1);
    assert!(
        error.contains("cannot connect to PostgreSQL at 127.0.0.1:"),
        "{error}"
    );
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(!ran.log().contains("not-the-password"));
}

/// `transformer run --drain` on this queue and database.
fn drain(aws: &TestAws, db: &TestDb) -> tokio::process::Command {
    let mut run = command(TRANSFORMER);
    run.args(["run", "--drain"])
        .envs(aws.env())
        .env("DATABASE_URL", db.url().expose());
    run
}

#[tokio::test]
async fn run_refuses_to_start_while_migrations_are_pending() {
    let aws = TestAws::new().await;
    let db = TestDb::empty().await;
    let run = || drain(&aws, &db);

    let refused = Ran::of(&mut run()).await;
    let error = refused.one_error(1);
    assert!(error.contains("pending migration(s)"), "{error}");
    assert!(error.contains("run `transformer migrate` first"), "{error}");

    let migrate = Ran::of(
        command(TRANSFORMER)
            .arg("migrate")
            .env("DATABASE_URL", db.url().expose()),
    )
    .await;
    migrate.assert_success();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().join("up.sql").exists())
        .count();
    let logged = migrate.log();
    assert!(
        logged.contains(&format!("Applied {migrations} migration(s)")),
        "{logged}"
    );

    Ran::of(&mut run()).await.assert_success();
}

/// A table changed by hand so that it cannot take its resource's rows
/// stops `run` at start, in one line naming the table, the difference and
/// the fix, before any message is taken: otherwise every object of that
/// resource would be dead-lettered, one by one. Put back, it runs.
#[tokio::test]
async fn run_refuses_a_table_that_cannot_take_its_resources_rows() {
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    aws.send(&aws.minimal_message("raw/posts/one.json")).await;
    let run = || drain(&aws, &db);
    let mut conn = db.connect().await;
    let cases = [
        (
            "ALTER TABLE posts ALTER COLUMN title TYPE varchar(20)",
            "column `title` is character varying(20), not text",
            "ALTER TABLE posts ALTER COLUMN title TYPE text",
        ),
        (
            "ALTER TABLE comments ALTER COLUMN email TYPE varchar(200)",
            "column `email` is character varying(200), not text",
            "ALTER TABLE comments ALTER COLUMN email TYPE text",
        ),
        (
            "ALTER TABLE posts DROP COLUMN body",
            "column `body` is missing",
            "ALTER TABLE posts ADD COLUMN body text NOT NULL",
        ),
        (
            "ALTER TABLE posts DROP CONSTRAINT posts_pkey",
            "no primary key or unique index on (`id`), the file's key",
            "ALTER TABLE posts ADD PRIMARY KEY (id)",
        ),
        (
            "ALTER TABLE comments ADD COLUMN rating integer NOT NULL",
            "column `rating` is NOT NULL with no default, and no field of the file fills it",
            "ALTER TABLE comments DROP COLUMN rating",
        ),
    ];
    for (break_it, difference, mend) in cases {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(break_it), &mut conn)
            .await
            .unwrap();
        let refused = Ran::of(&mut run()).await;
        let error = refused.one_error(1);
        let table = if break_it.contains("comments") {
            "comments"
        } else {
            "posts"
        };
        assert!(
            error.contains(&format!(
                "table `{table}` cannot take the rows of resource `{table}` (the built-in resources file): {difference}."
            )),
            "{break_it}: {error}"
        );
        assert!(
            error.contains("`transformer schema --write DIR` writes the migration that makes it match; apply it with `transformer migrate`"),
            "{error}"
        );
        assert_eq!(
            aws.visible_and_in_flight().await,
            (1, 0),
            "no message taken"
        );
        diesel_async::RunQueryDsl::execute(diesel::sql_query(mend), &mut conn)
            .await
            .unwrap();
    }
    // Mended: it starts (and dead-letters the missing object, as always).
    Ran::of(&mut run()).await.assert_success();
}

#[tokio::test]
async fn drain_applies_what_the_importer_sent_then_exits_0() {
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    let api = fake_api::spawn(FakeApi {
        posts: 250,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    for rev in 0..3 {
        import(&aws, api.join(&format!("posts?rev={rev}")).unwrap(), None).await;
    }

    let ran = Ran::of(
        command(TRANSFORMER)
            .args(["run", "--drain"])
            .envs(aws.env())
            .env("DATABASE_URL", db.url().expose())
            .env("TRANSFORMER_CONCURRENCY", "2"),
    )
    .await;

    ran.assert_success();
    assert_eq!(aws.message_count().await, 0);
    let log = ran.log();
    assert!(
        log.contains("Stopped after applying 3 message(s) (0 object(s) already applied, 0 dead-lettered, 0 to retry, 0 handed back)"),
        "{log}"
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM posts").await, 250);
}

#[tokio::test]
async fn an_agent_refusing_scale_in_protection_is_one_warning_and_the_work_goes_on() {
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    let agent = testkit::ecs_agent::FakeAgent::start().await;
    agent.refuse();
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    import(&aws, api.join("posts").unwrap(), None).await;
    // The 30 kB object arrives in chunks of 8 kB, one every 3 s: busy for
    // about 12 s, long enough for the refused call to be tried twice more.
    let proxy = testkit::proxy::Proxy::to_localstack().await;
    proxy.slow_down(Duration::from_secs(3));

    let ran = Ran::of(
        command(TRANSFORMER)
            .args(["run", "--drain"])
            .envs(aws.env())
            .env("AWS_ENDPOINT_URL_S3", proxy.url().as_str())
            .env("DATABASE_URL", db.url().expose())
            .env("ECS_AGENT_URI", agent.uri().as_str()),
    )
    .await;

    ran.assert_success();
    assert_eq!(aws.message_count().await, 0, "the message was applied");
    let calls = agent.calls();
    assert!(
        calls.len() >= 3 && calls.iter().all(|c| c.refused),
        "refused, and tried again at least twice: {calls:?}"
    );
    let warnings: Vec<&String> = ran
        .lines
        .iter()
        .filter(|line| line.contains("scale-in protection"))
        .filter(|line| line.contains("WARN"))
        .collect();
    let expected = format!(
        "cannot turn scale-in protection on with PUT {}/task-protection/v1/state: \
         the agent answered HTTP 400 Bad Request, AccessDeniedException: \
         User is not authorized to perform: ecs:UpdateTaskProtection; trying again every 5s",
        agent.uri()
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&expected), "{warnings:?}");
}

#[tokio::test]
async fn sigterm_or_sigint_stops_it_with_exit_0() {
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    for signal in ["TERM", "INT"] {
        let mut transformer = Running::spawn(
            command(TRANSFORMER)
                .arg("run")
                .envs(aws.env())
                .env("DATABASE_URL", db.url().expose()),
        );
        transformer
            .wait_for_line("Receiving from", Duration::from_secs(30))
            .await;

        match signal {
            "TERM" => transformer.sigterm().await,
            _ => transformer.sigint().await,
        }

        let ran = transformer.finish(Duration::from_secs(30)).await;
        ran.assert_success();
        assert!(
            ran.log().contains("Stopped after applying 0 message(s)"),
            "SIG{signal}: {ran:?}"
        );
    }
}

#[test]
fn the_compose_file_gives_the_transformer_and_migrate_every_setting_they_need() {
    let services = testkit::compose::services();
    for service in ["transformer", "migrate"] {
        let (code, stderr) =
            testkit::compose::run_with_compose_env(TRANSFORMER, &services[service]);
        // Past the settings (exit 2 with "missing setting" otherwise), as
        // far as the database, which is not there.
        assert_eq!(code, 1, "{service}: {stderr}");
        assert!(
            stderr.contains("cannot connect to PostgreSQL"),
            "{service}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_failed_message_is_hidden_for_retry_delay_then_tried_again() {
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    import(&aws, api.join("posts").unwrap(), None).await;

    // S3 refuses every connection: the fetch fails for a passing reason,
    // each time.
    let mut transformer = Running::spawn(
        command(TRANSFORMER)
            .arg("run")
            .envs(aws.env())
            .env(
                "AWS_ENDPOINT_URL_S3",
                format!("http://127.0.0.1:{}", testkit::proxy::closed_port()),
            )
            .env("DATABASE_URL", db.url().expose())
            .env("RETRY_DELAY", "4s"),
    );
    transformer
        .wait_for_line("receive 1; retrying in 4s", Duration::from_secs(30))
        .await;
    let hidden_at = std::time::Instant::now();
    // Hidden for the retry delay, then received again: not at once, and
    // not after the visibility timeout (60 s).
    transformer
        .wait_for_line("receive 2; retrying in 8s", Duration::from_secs(30))
        .await;
    let hidden_for = hidden_at.elapsed();
    assert!(
        hidden_for >= Duration::from_millis(3500),
        "tried again after {hidden_for:?}"
    );
    transformer.sigterm().await;
    transformer
        .finish(Duration::from_secs(30))
        .await
        .assert_success();
}

#[tokio::test]
async fn database_password_replaces_the_urls_and_is_never_logged() {
    let db = TestDb::empty().await;
    let mut url = url::Url::parse(db.url().expose()).unwrap();
    let password = url.password().unwrap().to_owned();
    url.set_password(Some("not-the-password")).unwrap();
    let migrate = |password: &str| {
        let mut migrate = command(TRANSFORMER);
        migrate
            .arg("migrate")
            .env("DATABASE_URL", url.as_str())
            .env("DATABASE_PASSWORD", password);
        migrate
    };

    let refused = Ran::of(&mut migrate("still-not-it")).await;
    let error = refused.one_error(1);
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(!refused.log().contains("still-not-it"), "{refused:?}");

    let ran = Ran::of(&mut migrate(&password)).await;
    ran.assert_success();
    assert!(!ran.log().contains(&password), "{ran:?}");
}
