//! The `importer` binary as users run it: settings, errors, exit codes, and
//! imports against the real LocalStack and an HTTP server.

#![allow(clippy::unwrap_used)]

use std::time::Duration;
use testkit::fake_api::{self, FakeApi};
use testkit::{Ran, Running, TestAws, command};

const IMPORTER: &str = env!("CARGO_BIN_EXE_importer");

#[tokio::test]
async fn help_lists_every_setting_with_its_default() {
    let help = testkit::help_text(command(IMPORTER).arg("--help")).await;
    for env in [
        "SOURCE_URL",
        "RESOURCES",
        "RAW_BUCKET",
        "RAW_KEY_PREFIX",
        "QUEUE_URL",
        "HTTP_TIMEOUT",
        "IMPORT_EVERY",
        "PAGE_SIZE",
        "FETCH_CONCURRENCY",
        "HTTP_MAX_ATTEMPTS",
        "HTTP_RETRY_BASE",
        "HTTP_RETRY_MAX",
        "SKIP_UNCHANGED",
        "GZIP",
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
    for default in [
        "https://jsonplaceholder.typicode.com/posts",
        "[default: raw]",
        "[default: 30s]",
    ] {
        assert!(help.contains(default), "{default} missing from:\n{help}");
    }
}

#[tokio::test]
async fn a_missing_setting_is_one_line_naming_it() {
    let ran = Ran::of(
        command(IMPORTER)
            .arg("run")
            .envs([("RAW_BUCKET", "raw"), ("AWS_REGION", "us-east-1")]),
    )
    .await;
    assert_eq!(ran.code, Some(2));
    assert_eq!(
        ran.lines,
        [
            "error: missing setting QUEUE_URL: set the environment variable QUEUE_URL or pass --queue-url"
        ]
    );
}

#[tokio::test]
async fn a_malformed_setting_is_one_line_naming_it() {
    for (env, value, expected) in [
        (
            "SOURCE_URL",
            "ftp://example.com/posts",
            "invalid setting SOURCE_URL (--source-url): scheme ftp: is not http or https",
        ),
        (
            "RAW_BUCKET",
            "Not_A_Bucket",
            "invalid setting RAW_BUCKET (--raw-bucket): \"Not_A_Bucket\" is not a bucket name",
        ),
        (
            "IMPORT_EVERY",
            "soon",
            "invalid setting IMPORT_EVERY (--every)",
        ),
    ] {
        let ran = Ran::of(command(IMPORTER).arg("run").env(env, value)).await;
        assert_eq!(ran.lines.len(), 1, "{env}: {ran:?}");
        let error = ran.one_error(2);
        assert!(error.starts_with(&format!("error: {expected}")), "{error}");
    }
}

#[tokio::test]
async fn an_import_archives_one_object_and_sends_one_message() {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();

    let ran = Ran::of(
        command(IMPORTER)
            .arg("run")
            .envs(aws.env())
            .env("SOURCE_URL", api.join("posts").unwrap().as_str()),
    )
    .await;

    ran.assert_success();
    let keys = aws.keys().await;
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("raw/posts/") && keys[0].ends_with(".json"),
        "{keys:?}"
    );
    assert_eq!(aws.object_bytes(&keys[0]).await, fake_api::body(100, 0));
    assert_eq!(aws.message_count().await, 1);
    let log = ran.log();
    let archived = format!(
        "Archived 100 records ({} bytes) from {api}posts to s3://{}/{}",
        fake_api::body(100, 0).len(),
        aws.bucket,
        keys[0]
    );
    assert!(log.contains(&archived), "{log}");
    let summary = format!(
        "1 page(s) archived and announced, 100 records, {} bytes, 0 skipped as unchanged, 0 retries, 0 failed",
        fake_api::body(100, 0).len()
    );
    assert!(log.contains(&summary), "{log}");
}

#[tokio::test]
async fn every_resource_listed_is_imported_under_its_own_prefix_and_named_in_its_message() {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();

    let ran = Ran::of(
        command(IMPORTER)
            .arg("run")
            .envs(aws.env())
            .env("SOURCE_URL", api.join("posts").unwrap().as_str())
            .env("RESOURCES", "posts,comments")
            .env("PAGE_SIZE", "200"),
    )
    .await;

    ran.assert_success();
    let keys = aws.keys().await;
    let under = |prefix: &str| keys.iter().filter(|k| k.starts_with(prefix)).count();
    // 100 posts in one page, 500 comments in three.
    assert_eq!(
        (under("raw/posts/"), under("raw/comments/")),
        (1, 3),
        "{keys:?}"
    );
    let mut resources: Vec<(String, String)> = aws
        .take_bodies()
        .await
        .iter()
        .map(|body| {
            let message: serde_json::Value = serde_json::from_str(body).unwrap();
            let key = message["key"].as_str().unwrap().to_owned();
            let resource = message["resource"].as_str().unwrap().to_owned();
            (resource, key)
        })
        .collect();
    resources.sort();
    assert_eq!(resources.len(), 4);
    for (resource, key) in &resources {
        assert!(
            key.starts_with(&format!("raw/{resource}/")),
            "{resources:?}"
        );
        let head = aws.head(key).await;
        assert_eq!(head.metadata().unwrap()["resource"], *resource);
    }
    assert!(
        ran.log()
            .contains("4 page(s) archived and announced, 600 records"),
        "{}",
        ran.log()
    );
}

/// On ECS the resources file sits in the stack's bucket: the importer reads
/// it from there, or stops in one line naming the object it cannot read.
#[tokio::test]
async fn a_resources_file_in_s3_is_read_from_there() {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    let guide =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/tickets.toml");
    aws.put("config/resources/1.toml", std::fs::read(guide).unwrap())
        .await;
    let import = |file: &str| {
        let mut command = command(IMPORTER);
        command
            .arg("run")
            .envs(aws.env())
            .env("RESOURCES_FILE", format!("s3://{}/{file}", aws.bucket))
            .env(
                "RESOURCES",
                format!("tickets={}", api.join("v2/tickets").unwrap()),
            );
        command
    };

    Ran::of(&mut import("config/resources/1.toml"))
        .await
        .assert_success();
    let pages = aws.keys().await;
    let pages: Vec<_> = pages
        .iter()
        .filter(|k| k.starts_with("raw/tickets/"))
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");

    let ran = Ran::of(&mut import("config/resources/2.toml")).await;
    assert!(
        ran.one_error(1).starts_with(&format!(
            "error: RESOURCES_FILE (--resources-file): cannot reach S3 object s3://{}/config/resources/2.toml via endpoint "
        , aws.bucket)),
        "{}",
        ran.log()
    );
    assert!(
        ran.log().ends_with("HTTP 404: no such object"),
        "{}",
        ran.log()
    );
}

/// A mistake in the resources file stops every command with exit 2, in one
/// line naming the file, the resource and the field, before any request:
/// the queue and the bucket here are nowhere.
#[tokio::test]
async fn a_resources_file_with_a_mistake_stops_it_at_once_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (file, line) in testkit::resources_files::write_mistakes(dir.path()) {
        for subcommand in ["run", "replay"] {
            let ran = Ran::of(
                command(IMPORTER)
                    .arg(subcommand)
                    .envs([
                        ("RAW_BUCKET", "raw"),
                        ("QUEUE_URL", "http://127.0.0.1:9/000000000000/q"),
                        ("AWS_REGION", "us-east-1"),
                        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
                        ("STARTUP_WAIT", "0s"),
                    ])
                    .env("RESOURCES_FILE", &file),
            )
            .await;
            assert_eq!(
                (ran.code, ran.lines.clone()),
                (Some(2), vec![line.clone()]),
                "{subcommand}"
            );
        }
    }
}

#[tokio::test]
async fn an_unknown_resource_is_one_line_naming_it_and_those_known() {
    let ran = Ran::of(
        command(IMPORTER)
            .arg("run")
            .envs([("RAW_BUCKET", "raw"), ("AWS_REGION", "us-east-1")])
            .env("RESOURCES", "posts,users"),
    )
    .await;
    assert_eq!(ran.code, Some(2));
    assert_eq!(ran.lines.len(), 1, "{:?}", ran.lines);
    assert!(
        ran.lines[0].contains(
            "unknown resource `users` (known: comments, posts, from the built-in resources file)"
        ),
        "{:?}",
        ran.lines
    );
}

#[tokio::test]
async fn an_answer_that_is_not_a_json_array_archives_and_sends_nothing() {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();

    for (path, reason) in [
        (
            "fault/not-an-array",
            "did not return a JSON array (gave up after 3 attempts): invalid type: map, expected a JSON array of records at line 1 column 0",
        ),
        (
            "fault/not-json",
            "did not return a JSON array (gave up after 3 attempts): expected value at line 1 column 1",
        ),
        (
            "fault/status/503",
            "answered HTTP 503 Service Unavailable (gave up after 3 attempts)",
        ),
        // Not worth retrying: fails at the first answer.
        ("fault/status/404", "answered HTTP 404 Not Found"),
    ] {
        let url = api.join(path).unwrap();
        let ran = Ran::of(
            command(IMPORTER)
                .arg("run")
                .envs(aws.env())
                .envs([("HTTP_MAX_ATTEMPTS", "3"), ("HTTP_RETRY_BASE", "10ms")])
                .env("SOURCE_URL", url.as_str()),
        )
        .await;

        let error = ran.one_error(1);
        assert!(
            error.contains(&format!("GET {url} {reason}")),
            "{path}: {error}"
        );
    }
    assert!(aws.keys().await.is_empty(), "nothing archived");
    assert_eq!(aws.message_count().await, 0, "nothing announced");
}

/// `HTTP_TIMEOUT` bounds a whole request, the body included: a source that
/// sends its headers and then stalls, or never answers, fails the run in
/// one line instead of hanging it (and `--every` with it).
#[tokio::test]
async fn http_timeout_bounds_a_request_that_stalls_in_its_body_or_never_answers() {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    for path in ["fault/stall-body", "fault/no-answer"] {
        let url = api.join(path).unwrap();
        let mut importer = command(IMPORTER);
        importer
            .arg("run")
            .envs(aws.env())
            .envs([("HTTP_MAX_ATTEMPTS", "2"), ("HTTP_RETRY_BASE", "10ms")])
            .env("HTTP_TIMEOUT", "1s")
            .env("SOURCE_URL", url.as_str());
        let run = Ran::of(&mut importer);
        // Not a measure of speed: a guard, so that a hang fails the test
        // instead of the whole suite. Two attempts of 1 s take a few.
        let ran = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .unwrap_or_else(|_| panic!("{path}: HTTP_TIMEOUT=1s did not end a stalled request"));
        let error = ran.one_error(1);
        assert!(
            error.contains(&format!("GET {url}")) && error.contains("gave up after 2 attempts"),
            "{path}: {error}"
        );
    }
    assert!(aws.keys().await.is_empty(), "nothing archived");
}

#[tokio::test]
async fn invalid_records_are_archived_with_a_warning_for_the_transformer_to_quarantine() {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    let url = api.join("fault/bad-record").unwrap();

    let ran = Ran::of(
        command(IMPORTER)
            .arg("run")
            .envs(aws.env())
            .env("SOURCE_URL", url.as_str()),
    )
    .await;

    ran.assert_success();
    let log = ran.log();
    assert!(
        log.contains(&format!("1 of 5 records from {url} are not valid posts (record 3: column `id` (/id): \"four\" is not a whole number that fits bigint)")),
        "{log}"
    );
    assert_eq!(aws.keys().await.len(), 1);
    assert_eq!(aws.message_count().await, 1);
}

/// `importer run` against a fake API of 100 posts with `faults`, and
/// `settings`; what it did, where, and the API's URL.
async fn run_paging(
    faults: testkit::fake_api::Faults,
    settings: &[(&str, &str)],
) -> (Ran, TestAws, url::Url) {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi {
        posts: 100,
        faults,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let ran = Ran::of(
        command(IMPORTER)
            .arg("run")
            .envs(aws.env())
            .envs(settings.iter().copied())
            .env("SOURCE_URL", api.join("posts").unwrap().as_str()),
    )
    .await;
    (ran, aws, api)
}

/// MAX_PAGES bounds a run, whether the pages are counted from the total or
/// followed one by one: those fetched are archived and announced, and the
/// run fails naming the next page.
#[tokio::test]
async fn a_run_stops_at_max_pages_naming_the_next_one() {
    for hide_total in [false, true] {
        let faults = testkit::fake_api::Faults {
            hide_total,
            ..Default::default()
        };
        let (ran, aws, api) = run_paging(faults, &[("PAGE_SIZE", "10"), ("MAX_PAGES", "3")]).await;

        let error = ran.one_error(1);
        let stopped = format!(
            "posts: stopped at MAX_PAGES=3 pages with more to fetch (next: {api}posts?_page=4&_limit=10)"
        );
        assert!(error.contains(&stopped), "hide_total {hide_total}: {error}");
        let log = ran.log();
        assert!(
            log.contains("3 page(s) archived and announced, 30 records"),
            "{log}"
        );
        assert_eq!(aws.message_count().await, 3);
    }
}

/// A server whose last page links back to its first: the pages before
/// the loop are archived and announced, and the run fails naming the URL,
/// instead of fetching them round and round.
#[tokio::test]
async fn links_that_go_round_in_a_loop_stop_the_run_with_an_error() {
    let faults = testkit::fake_api::Faults {
        hide_total: true,
        link_back: true,
        ..Default::default()
    };
    let (ran, aws, api) = run_paging(faults, &[("PAGE_SIZE", "25")]).await;

    let error = ran.one_error(1);
    let looped = format!(
        "page 5 of posts would be {api}posts?_page=1&_limit=25, fetched already this run: its server's `Link: rel=\"next\"` goes round in a loop"
    );
    assert!(error.contains(&looped), "{error}");
    let log = ran.log();
    assert!(
        log.contains("4 page(s) archived and announced, 100 records"),
        "{log}"
    );
    assert_eq!(aws.message_count().await, 4);
}

#[tokio::test]
async fn a_page_that_keeps_failing_exits_1_naming_it_and_logs_every_page() {
    let aws = TestAws::new().await;
    let faults = testkit::fake_api::Faults {
        fail_page: Some(2),
        ..Default::default()
    };
    let api = fake_api::spawn(FakeApi {
        posts: 100,
        faults,
        ..FakeApi::default()
    })
    .await
    .unwrap();

    let ran = Ran::of(
        command(IMPORTER)
            .arg("run")
            .envs(aws.env())
            .envs([
                ("PAGE_SIZE", "40"),
                ("HTTP_MAX_ATTEMPTS", "2"),
                ("HTTP_RETRY_BASE", "10ms"),
            ])
            .env("SOURCE_URL", api.join("posts").unwrap().as_str()),
    )
    .await;

    let error = ran.one_error(1);
    let failed_page = format!(
        "GET {}posts?_page=2&_limit=40 answered HTTP 500 Internal Server Error (gave up after 2 attempts)",
        api
    );
    assert!(
        error.contains(&format!("1 of 3 pages failed; the first: {failed_page}")),
        "{error}"
    );
    let log = ran.log();
    assert_eq!(
        log.matches("Archived 40 records").count() + log.matches("Archived 20 records").count(),
        2,
        "{log}"
    );
    assert!(
        log.contains("2 page(s) archived and announced, 60 records"),
        "{log}"
    );
    assert!(log.contains("1 retries, 1 failed"), "{log}");
    assert_eq!(aws.keys().await.len(), 2);
    assert_eq!(
        aws.message_count().await,
        2,
        "no orphan: one message per archived page"
    );
}

#[tokio::test]
async fn an_unreachable_queue_is_reported_before_anything_is_fetched() {
    let aws = TestAws::new().await;
    let ran = Ran::of(
        command(IMPORTER)
            .arg("run")
            .envs(aws.env())
            // Port 9 (discard) has no listener here: connection refused.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("SOURCE_URL", "http://127.0.0.1:9/posts")
            .env("STARTUP_WAIT", "5s"),
    )
    .await;

    let error = ran.one_error(1);
    assert!(
        error.contains(&format!("cannot reach SQS queue {}", aws.queue_url)),
        "{error}"
    );
    assert!(error.contains("onnection refused"), "{error}");
    assert!(
        error.ends_with("(still not there after waiting 5s, STARTUP_WAIT)"),
        "{error}"
    );
    let waited = ran
        .lines
        .iter()
        .filter(|l| l.contains(&format!("Waiting for SQS queue {}", aws.queue_url)))
        .count();
    assert!(waited >= 1, "a line per retry");
}

#[tokio::test]
async fn it_waits_for_sqs_and_s3_that_answer_later_then_imports() {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    let port = testkit::proxy::closed_port();
    let mut importer = Running::spawn(
        command(IMPORTER)
            .arg("run")
            .envs(aws.env())
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env("SOURCE_URL", api.join("posts").unwrap().as_str())
            .env("STARTUP_WAIT", "60s"),
    );
    importer
        .wait_for_line(
            &format!("Waiting for SQS queue {}", aws.queue_url),
            Duration::from_secs(20),
        )
        .await;

    // LocalStack "starts": the importer goes on, checks the bucket, imports.
    let _localstack =
        testkit::proxy::Proxy::start_on(port, testkit::proxy::localstack_addr()).await;
    importer
        .finish(Duration::from_secs(60))
        .await
        .assert_success();
    assert_eq!(aws.keys().await.len(), 1);
    assert_eq!(aws.message_count().await, 1);
}

#[tokio::test]
async fn a_missing_bucket_is_one_line_at_once() {
    let aws = TestAws::new().await;
    let ran = Ran::of(
        command(IMPORTER)
            .arg("run")
            .envs(aws.env())
            .env("RAW_BUCKET", "no-such-bucket-here")
            .env("SOURCE_URL", "http://127.0.0.1:9/posts")
            .env("STARTUP_WAIT", "60s"),
    )
    .await;

    let error = ran.one_error(1);
    assert!(
        error.contains("cannot reach S3 bucket no-such-bucket-here via endpoint http://"),
        "{error}"
    );
    assert!(
        error.ends_with("HTTP 404: the bucket does not exist"),
        "{error}"
    );
}

#[tokio::test]
async fn on_a_schedule_it_imports_repeatedly_and_exits_0_on_sigterm() {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    let mut importer = Running::spawn(
        command(IMPORTER)
            .args(["run", "--every", "200ms"])
            .envs(aws.env())
            .env("SKIP_UNCHANGED", "false")
            .env("SOURCE_URL", api.join("posts").unwrap().as_str()),
    );

    for _ in 0..2 {
        importer
            .wait_for_line("Archived 100 records", Duration::from_secs(30))
            .await;
    }
    importer.sigterm().await;
    importer
        .finish(Duration::from_secs(30))
        .await
        .assert_success();

    let keys = aws.keys().await;
    assert!(keys.len() >= 2, "{keys:?}");
    assert_eq!(
        aws.message_count().await,
        keys.len() as u64,
        "one message per object"
    );
}

#[test]
fn the_compose_file_gives_the_importer_every_setting_it_needs() {
    let services = testkit::compose::services();
    let (code, stderr) = testkit::compose::run_with_compose_env(IMPORTER, &services["importer"]);
    // Past the settings (exit 2 with "missing setting" otherwise), as far
    // as the queue, which is not there.
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach SQS queue"), "{stderr}");
}

#[tokio::test]
async fn healthcheck_passes_while_a_run_is_alive_and_fails_after() {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let health_file = dir.path().join("importer.healthy");
    let healthcheck = || {
        std::process::Command::new(IMPORTER)
            .arg("healthcheck")
            .env_clear()
            .env("HEALTH_FILE", &health_file)
            .output()
            .unwrap()
    };
    let before = healthcheck();
    assert_eq!(before.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&before.stderr).contains("importer.healthy"));

    let mut importer = Running::spawn(
        command(IMPORTER)
            .args(["run", "--every", "1h"])
            .envs(aws.env())
            .env("SOURCE_URL", api.join("posts").unwrap().as_str())
            .env("HEALTH_FILE", &health_file),
    );
    importer
        .wait_for_line("Importing every", Duration::from_secs(30))
        .await;
    assert!(healthcheck().status.success(), "healthy while running");

    importer.sigterm().await;
    importer
        .finish(Duration::from_secs(30))
        .await
        .assert_success();
    assert_eq!(
        healthcheck().status.code(),
        Some(1),
        "unhealthy once stopped"
    );
}

#[tokio::test]
async fn on_a_schedule_a_failed_import_is_logged_and_the_next_one_runs() {
    let aws = TestAws::new().await;
    // The first request is refused, and with one attempt the first import
    // fails; the next one is answered.
    let faults = testkit::fake_api::Faults {
        throttle_first: 1,
        ..Default::default()
    };
    let api = fake_api::spawn(FakeApi {
        faults,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let mut importer = Running::spawn(
        command(IMPORTER)
            .args(["run", "--every", "200ms"])
            .envs(aws.env())
            .env("HTTP_MAX_ATTEMPTS", "1")
            .env("SOURCE_URL", api.join("posts").unwrap().as_str()),
    );

    let failed = importer
        .wait_for_line("answered HTTP 429", Duration::from_secs(30))
        .await;
    assert!(failed.contains("ERROR"), "{failed}");
    importer
        .wait_for_line("Archived 100 records", Duration::from_secs(30))
        .await;
    assert!(importer.is_running());
    importer.sigterm().await;
    importer
        .finish(Duration::from_secs(30))
        .await
        .assert_success();
    assert_eq!(aws.keys().await.len(), 1);
    assert_eq!(aws.message_count().await, 1);
}

#[tokio::test]
async fn sigterm_during_an_import_lets_it_finish() {
    let aws = TestAws::new().await;
    // Every answer takes 2 s: the signal lands while the page is fetched.
    let faults = testkit::fake_api::Faults {
        delay: Duration::from_secs(2),
        ..Default::default()
    };
    let api = fake_api::spawn(FakeApi {
        faults,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let mut importer = Running::spawn(
        command(IMPORTER)
            .args(["run", "--every", "1h"])
            .envs(aws.env())
            .env("SOURCE_URL", api.join("posts").unwrap().as_str()),
    );
    importer
        .wait_for_line("Importing every", Duration::from_secs(30))
        .await;
    assert!(aws.keys().await.is_empty(), "the fetch is still going on");

    importer.sigterm().await;

    let ran = importer.finish(Duration::from_secs(30)).await;
    ran.assert_success();
    assert!(ran.log().contains("Archived 100 records"), "{ran:?}");
    assert_eq!(aws.keys().await.len(), 1);
    assert_eq!(aws.message_count().await, 1, "archived and announced");
}
