//! A resource's request as its file describes it, against the fake API's
//! `/v3/tickets` and the real LocalStack: each kind of pagination, each
//! kind of auth, and what is refused.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use testkit::fake_api::{self, FakeApi, v3};
use testkit::{Ran, TestAws, command};

const IMPORTER: &str = env!("CARGO_BIN_EXE_importer");

/// The tickets of `/v3/tickets`, with the request a test gives.
fn tickets_file(dir: &tempfile::TempDir, request: &str) -> PathBuf {
    let text = format!(
        r#"
[resources.tickets]
records = "/data"
key = "ticket_id"

[[resources.tickets.columns]]
name = "ticket_id"
from = "/id"
type = "text"

[[resources.tickets.columns]]
name = "updated_at"
type = "timestamptz"

[[resources.tickets.columns]]
name = "status"
type = "text"

[resources.tickets.request]
url = "${{API}}v3/tickets"
{request}
"#
    );
    let path = dir.path().join("resources.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// What one run did.
struct Run {
    ran: Ran,
    /// Ticket ids by archived object.
    objects: BTreeMap<String, Vec<String>>,
    /// Requests the API answered or refused.
    requests: u64,
    /// Of those, refused for going over its rate limit.
    throttled: u64,
    /// OAuth2 tokens the API issued.
    tokens: u64,
    messages: u64,
    aws: TestAws,
}

impl Run {
    /// Every ticket id archived, sorted, and whether any came twice.
    fn ids(&self) -> (Vec<String>, bool) {
        let mut all: Vec<String> = self.objects.values().flatten().cloned().collect();
        let count = all.len();
        all.sort();
        all.dedup();
        let twice = all.len() != count;
        (all, twice)
    }
}

async fn run(api: FakeApi, request: &str, env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let aws = TestAws::new().await;
    let base = fake_api::spawn(api).await.unwrap();
    let ran = Ran::of(
        command(IMPORTER)
            .arg("run")
            .envs(aws.env())
            .env("RESOURCES_FILE", tickets_file(&dir, request))
            .env("API", base.as_str())
            .envs(env.iter().copied()),
    )
    .await;
    let mut objects = BTreeMap::new();
    for key in aws.keys().await {
        if !key.starts_with("raw/tickets/") {
            continue;
        }
        let body: serde_json::Value =
            serde_json::from_slice(&aws.object_bytes(&key).await).unwrap();
        let ids = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        objects.insert(key, ids);
    }
    let stats = testkit::api_stats(&base).await;
    let messages = aws.message_count().await;
    Run {
        ran,
        objects,
        requests: stats.v3_requests,
        throttled: stats.v3_throttled,
        tokens: stats.tokens_issued,
        messages,
        aws,
    }
}

fn all_tickets() -> Vec<String> {
    (1..=fake_api::tickets::TICKETS)
        .map(|n| format!("TCK-{n:05}"))
        .collect()
}

/// Each kind of pagination reads every ticket once, one object and message
/// a page, and asks no more than its kind needs to see the end.
#[tokio::test]
async fn every_kind_of_pagination_reads_each_record_once() {
    let size = "size_param = \"per_page\"\nsize = 50";
    let kinds = [
        // (pagination, objects, requests): 120 tickets in pages of 50.
        (format!("kind = \"page\"\n{size}"), 3, 4),
        (
            format!("kind = \"page\"\n{size}\ntotal = \"/meta/total\""),
            3,
            3,
        ),
        (
            format!("kind = \"page\"\n{size}\ntotal_header = \"X-Total-Count\""),
            3,
            3,
        ),
        (
            format!("kind = \"page\"\n{size}\nmore = \"/meta/has_more\""),
            3,
            3,
        ),
        ("kind = \"offset\"\nlimit = 50".to_owned(), 3, 4),
        (
            "kind = \"offset\"\nlimit = 50\ntotal = \"/meta/total\"".to_owned(),
            3,
            3,
        ),
        (
            format!("kind = \"cursor\"\nparam = \"cursor\"\nnext = \"/meta/next_cursor\"\n{size}"),
            3,
            3,
        ),
        (
            format!(
                "kind = \"cursor\"\nparam = \"cursor\"\nnext_header = \"X-Next-Cursor\"\n{size}"
            ),
            3,
            3,
        ),
        (
            "kind = \"next_url\"\nnext = \"/links/next\"".to_owned(),
            5,
            5,
        ),
        ("kind = \"link\"".to_owned(), 5, 5),
    ];
    for (pagination, objects, requests) in kinds {
        let request = format!("[resources.tickets.request.pagination]\n{pagination}");
        let run = run(FakeApi::default(), &request, &[]).await;
        run.ran.assert_success();
        let (ids, twice) = run.ids();
        assert_eq!((ids, twice), (all_tickets(), false), "{pagination}");
        assert_eq!(
            (run.objects.len(), run.messages, run.requests),
            (objects, objects as u64, requests),
            "{pagination}"
        );
    }
    // None: one request, the API's first page of 25.
    let run = run(
        FakeApi::default(),
        "[resources.tickets.request.pagination]\nkind = \"none\"",
        &[],
    )
    .await;
    run.ran.assert_success();
    assert_eq!(
        (run.ids().0.len(), run.objects.len(), run.requests),
        (25, 1, 1)
    );
}

/// A rate budget spreads a resource's requests so that a server allowing 4
/// a second never has to refuse one; without it, the same walk is refused
/// and waits out the server's `RateLimit-Reset`.
#[tokio::test]
async fn a_rate_budget_keeps_within_the_servers_limit() {
    let limited = || FakeApi {
        v3: v3::Options {
            per_second: Some(4),
            ..Default::default()
        },
        ..FakeApi::default()
    };
    let pages = "[resources.tickets.request.pagination]\nkind = \"page\"\nsize_param = \"per_page\"\nsize = 10";
    let unbudgeted = run(limited(), pages, &[]).await;
    unbudgeted.ran.assert_success();
    assert!(unbudgeted.throttled > 0, "the server's limit never bit");
    assert!(
        unbudgeted
            .ran
            .log()
            .contains("answered HTTP 429 Too Many Requests; retrying in 1.0s"),
        "{}",
        unbudgeted.ran.log()
    );

    // A little under the server's limit: it counts arrivals, which the
    // network's jitter brings closer together than they were sent.
    let budgeted = run(limited(), &format!("rate = \"3/s\"\n{pages}"), &[]).await;
    budgeted.ran.assert_success();
    assert_eq!(budgeted.ids(), (all_tickets(), false));
    assert_eq!((budgeted.throttled, budgeted.requests), (0, 13));
}

/// MAX_PAGES bounds a walk the file describes as it bounds `Link`: the
/// pages fetched stand, and the run fails naming the next.
#[tokio::test]
async fn a_walk_stops_at_max_pages_naming_the_next_one() {
    let next =
        "[resources.tickets.request.pagination]\nkind = \"next_url\"\nnext = \"/links/next\"";
    let run = run(FakeApi::default(), next, &[("MAX_PAGES", "2")]).await;
    let error = run.ran.one_error(1);
    assert!(
        error.contains(
            "tickets: stopped at MAX_PAGES=2 pages with more to fetch (next: http://127.0.0.1:"
        ) && error.contains("/v3/tickets?cursor="),
        "{error}"
    );
    assert_eq!((run.objects.len(), run.messages, run.requests), (2, 2, 2));
}

/// A server whose cursor does not advance: the pages before it are
/// archived and announced, and the run fails naming the cursor.
#[tokio::test]
async fn a_cursor_that_comes_twice_ends_the_run_with_an_error() {
    let api = FakeApi {
        v3: v3::Options {
            stuck_cursor: true,
            ..Default::default()
        },
        ..FakeApi::default()
    };
    let request = "[resources.tickets.request.pagination]\nkind = \"cursor\"\nparam = \"cursor\"\nnext = \"/meta/next_cursor\"";
    let run = run(api, request, &[]).await;
    let error = run.ran.one_error(1);
    assert!(
        error.contains(
            "tickets: the body's /meta/next_cursor named the cursor \"c5ef4\" a second time"
        ),
        "{error}"
    );
    assert_eq!((run.objects.len(), run.messages, run.requests), (2, 2, 2));
}

fn credentials() -> v3::Credentials {
    v3::Credentials {
        token: "tok-3f9a".into(),
        username: "etl".into(),
        password: "pa:ss word".into(),
        api_key: "key-77c1".into(),
        forbidden_token: Some("tok-noscope".into()),
    }
}

fn guarded() -> FakeApi {
    FakeApi {
        v3: v3::Options {
            credentials: Some(credentials()),
            ..Default::default()
        },
        ..FakeApi::default()
    }
}

const SECRETS: [&str; 3] = ["tok-3f9a", "pa:ss word", "key-77c1"];

/// Each kind of auth is let in, with its secrets from the environment; no
/// secret is in the log, an object's metadata or a message.
#[tokio::test]
async fn each_kind_of_auth_gets_in_and_no_secret_is_kept() {
    let env = [
        ("API_TOKEN", "tok-3f9a"),
        ("API_USER", "etl"),
        ("API_PASSWORD", "pa:ss word"),
        ("API_KEY", "key-77c1"),
    ];
    for auth in [
        "kind = \"bearer\"\ntoken = \"${API_TOKEN}\"",
        "kind = \"basic\"\nusername = \"${API_USER}\"\npassword = \"${API_PASSWORD}\"",
        "kind = \"api_key\"\nname = \"X-Api-Key\"\nvalue = \"${API_KEY}\"",
        "kind = \"api_key\"\nname = \"api_key\"\nvalue = \"${API_KEY}\"\nin = \"query\"",
    ] {
        let request = format!("[resources.tickets.request.auth]\n{auth}");
        let run = run(guarded(), &request, &env).await;
        run.ran.assert_success();
        assert_eq!(run.objects.len(), 5, "{auth}");
        let mut kept = run.ran.log();
        for key in run.objects.keys() {
            kept.push_str(&format!("{:?}", run.aws.head(key).await.metadata()));
        }
        for message in run.aws.peek_messages().await {
            kept.push_str(message.body().unwrap());
        }
        assert!(kept.contains("source-url"), "{kept}");
        for secret in SECRETS {
            assert!(!kept.contains(secret), "{auth}: {secret} in {kept}");
        }
    }
}

fn oauth(lifetime_secs: u64, revoke_after: Option<u32>) -> FakeApi {
    FakeApi {
        v3: v3::Options {
            oauth: Some(v3::OAuthServer {
                client_id: "etl client".into(),
                client_secret: "s3cr3t/+=".into(),
                lifetime_secs,
                revoke_after,
            }),
            ..Default::default()
        },
        ..FakeApi::default()
    }
}

const OAUTH2: &str = r#"
[resources.tickets.request.auth]
kind = "oauth2"
token_url = "${API}oauth/token"
client_id = "${CLIENT_ID}"
client_secret = "${CLIENT_SECRET}"
"#;

const CLIENT: [(&str, &str); 2] = [("CLIENT_ID", "etl client"), ("CLIENT_SECRET", "s3cr3t/+=")];

/// OAuth2 client credentials, in HTTP Basic or in the form: one token for
/// every page of the run, and neither it nor the secret kept anywhere.
#[tokio::test]
async fn an_oauth2_token_is_asked_for_once_and_shared_by_the_pages() {
    for client_auth in ["basic", "body"] {
        let request = format!("{OAUTH2}client_auth = \"{client_auth}\"");
        let run = run(oauth(3_600, None), &request, &CLIENT).await;
        run.ran.assert_success();
        assert_eq!(run.ids(), (all_tickets(), false), "{client_auth}");
        assert_eq!((run.requests, run.tokens), (5, 1), "{client_auth}");
        let mut kept = run.ran.log();
        for message in run.aws.peek_messages().await {
            kept.push_str(message.body().unwrap());
        }
        assert!(!kept.contains("s3cr3t") && !kept.contains("oat-"), "{kept}");
    }
}

/// A token refused before its time is asked for again, once, and the page
/// fetched with the new one; a token about to expire is renewed before it
/// is refused.
#[tokio::test]
async fn an_oauth2_token_is_renewed_when_refused_or_about_to_expire() {
    // Revoked after 2 uses: pages 1-2, refused, 3-4, refused, 5.
    let revoked = run(oauth(3_600, Some(2)), OAUTH2, &CLIENT).await;
    revoked.ran.assert_success();
    assert_eq!(revoked.ids(), (all_tickets(), false));
    assert_eq!((revoked.requests, revoked.tokens), (7, 3));

    // Tokens good for 2 s, renewed after 1; pages spread over 3 s by a budget.
    let request = format!(
        "rate = \"4/s\"\n[resources.tickets.request.pagination]\nkind = \"page\"\nsize_param = \"per_page\"\nsize = 10\n{OAUTH2}"
    );
    let expiring = run(oauth(2, None), &request, &CLIENT).await;
    expiring.ran.assert_success();
    assert_eq!(expiring.ids(), (all_tickets(), false));
    assert_eq!(expiring.requests, 13, "no request refused");
    assert!(expiring.tokens >= 3, "{} tokens", expiring.tokens);
}

/// A client the token endpoint refuses: one line naming the resource, the
/// endpoint and its error, and no request to the API.
#[tokio::test]
async fn a_refused_oauth2_client_fails_at_once_naming_the_token_endpoint() {
    let run = run(
        oauth(3_600, None),
        OAUTH2,
        &[CLIENT[0], ("CLIENT_SECRET", "wrong")],
    )
    .await;
    let error = run.ran.one_error(1);
    assert!(
        error.contains("tickets: GET ")
            && error.contains("v3/tickets was not sent: POST ")
            && error.ends_with(
                "oauth/token for an OAuth2 token answered HTTP 401 Unauthorized (invalid_client)"
            ),
        "{error}"
    );
    assert_eq!((run.requests, run.tokens), (0, 0));
}

/// Credentials the API refuses (401) or will not let read (403): one
/// request, not retried, and one line naming the resource and the status,
/// never the credential.
#[tokio::test]
async fn refused_credentials_fail_at_once_naming_the_resource_and_status() {
    for (auth, env, status) in [
        (
            "kind = \"bearer\"\ntoken = \"${API_TOKEN}\"",
            ("API_TOKEN", "tok-wrong"),
            "401 Unauthorized",
        ),
        (
            "kind = \"api_key\"\nname = \"api_key\"\nvalue = \"${API_KEY}\"\nin = \"query\"",
            ("API_KEY", "key-wrong"),
            "401 Unauthorized",
        ),
        // Known, but not allowed to read tickets.
        (
            "kind = \"bearer\"\ntoken = \"${API_TOKEN}\"",
            ("API_TOKEN", "tok-noscope"),
            "403 Forbidden",
        ),
    ] {
        let request = format!("[resources.tickets.request.auth]\n{auth}");
        let run = run(guarded(), &request, &[env]).await;
        let error = run.ran.one_error(1);
        assert!(
            error.contains("tickets: GET ") && error.contains(&format!("v3/tickets answered HTTP {status}: the API refused its credentials (request.auth, kind ")),
            "{error}"
        );
        assert!(!run.ran.log().contains(env.1), "{}", run.ran.log());
        assert_eq!((run.requests, run.objects.len(), run.messages), (1, 0, 0));
    }
    // No auth at all.
    let run = run(guarded(), "", &[]).await;
    assert!(
        run.ran
            .one_error(1)
            .contains("the API refused it: it has no request.auth")
    );
}

/// A variable the request needs and the environment lacks stops the
/// importer with exit 2 before any request, naming the variable.
#[tokio::test]
async fn a_variable_that_is_not_set_stops_it_before_any_request() {
    let request = "[resources.tickets.request.auth]\nkind = \"bearer\"\ntoken = \"${API_TOKEN}\"";
    let run = run(guarded(), request, &[]).await;
    let error = run.ran.one_error(2);
    assert!(
        error.ends_with("resource `tickets`: `request.auth.token` needs the environment variable API_TOKEN, which is not set"),
        "{error}"
    );
    assert_eq!(run.requests, 0);
}

/// The importer's `status` lines, and its exit code.
async fn status(aws: &TestAws, file: &std::path::Path, api: &url::Url) -> Vec<String> {
    let ran = Ran::of(
        command(IMPORTER)
            .arg("status")
            .envs(aws.env())
            .env("RESOURCES_FILE", file)
            .env("API", api.as_str())
            .env("SINCE", "2025-01-01T00:00:00Z"),
    )
    .await;
    ran.assert_success();
    ran.stdout.lines().map(str::to_owned).collect()
}

/// Incremental loading: the first run reads everything from `initial`,
/// saves the largest `updated_at`; the next asks only from there less the
/// look-back; a change at the source is found; `--full` reads all again;
/// a replay moves nothing. `status` shows each position.
#[tokio::test]
async fn an_incremental_resource_asks_only_for_what_changed_since_its_last_complete_run() {
    let dir = tempfile::tempdir().unwrap();
    let aws = TestAws::new().await;
    let base = fake_api::spawn(FakeApi::default()).await.unwrap();
    let request = r#"
[resources.tickets.request.pagination]
kind = "cursor"
param = "cursor"
next = "/meta/next_cursor"
size_param = "per_page"
size = 50

[resources.tickets.incremental]
field = "updated_at"
param = "updated_since"
initial = "${SINCE}"
lookback = "1h"
"#;
    let file = tickets_file(&dir, request);
    let import = |args: &[&str]| {
        let mut c = command(IMPORTER);
        c.arg("run")
            .args(args)
            .envs(aws.env())
            .env("RESOURCES_FILE", &file)
            .env("API", base.as_str())
            .env("SINCE", "2025-01-01T00:00:00Z");
        c
    };
    // Ticket ids archived by each run, in order of runs.
    let mut seen = 0;
    let mut archived = async |ran: Ran| {
        ran.assert_success();
        let keys: Vec<String> = aws
            .keys()
            .await
            .into_iter()
            .filter(|k| k.starts_with("raw/tickets/"))
            .collect();
        let mut ids = Vec::new();
        for key in &keys[seen..] {
            let body: serde_json::Value =
                serde_json::from_slice(&aws.object_bytes(key).await).unwrap();
            ids.extend(
                body["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["id"].as_str().unwrap().to_owned()),
            );
        }
        seen = keys.len();
        ids.sort();
        (ids, ran.log())
    };
    let last = v3::updated_at(fake_api::tickets::TICKETS, 0);
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };

    assert_eq!(
        status(&aws, &file, &base).await,
        [
            "tickets: no complete run yet; no position saved; the next run sends updated_since=2025-01-01T00:00:00Z"
        ]
    );
    let (ids, log) = archived(Ran::of(&mut import(&[])).await).await;
    assert_eq!(ids, all_tickets());
    assert!(
        log.contains("updated_since=2025-01-01T00%3A00%3A00Z"),
        "{log}"
    );
    let lines = status(&aws, &file, &base).await;
    let since = rfc(last - time::Duration::HOUR);
    assert!(
        lines[0].starts_with("tickets: last complete run ")
            && lines[0].ends_with(&format!(
                "3 page(s), 120 records; position {}; the next run sends updated_since={since}",
                rfc(last)
            )),
        "{lines:?}"
    );

    // Nothing changed: only what the look-back covers.
    let (ids, _) = archived(Ran::of(&mut import(&[])).await).await;
    assert_eq!(ids, ["TCK-00119", "TCK-00120"]);

    // Every 5th ticket changes: each is found, with the look-back's.
    reqwest::Client::new()
        .put(base.join("revision/1").unwrap())
        .send()
        .await
        .unwrap();
    let (ids, _) = archived(Ran::of(&mut import(&[])).await).await;
    let mut expected: Vec<String> = (1..=24).map(|k| format!("TCK-{:05}", k * 5)).collect();
    expected.insert(23, "TCK-00119".into());
    assert_eq!(ids, expected);
    let moved = rfc(v3::updated_at(fake_api::tickets::TICKETS, 1));
    assert!(
        status(&aws, &file, &base).await[0].contains(&format!("25 records; position {moved};"))
    );

    // --full reads every page, and keeps the position it reaches.
    let (ids, _) = archived(Ran::of(&mut import(&["--full"])).await).await;
    assert_eq!(ids, all_tickets());
    let after_full = status(&aws, &file, &base).await;
    assert!(after_full[0].contains(&format!("120 records; position {moved};")));

    // A replay reads the archive, not the API, and moves no position.
    let requests = testkit::api_stats(&base).await.v3_requests;
    Ran::of(
        command(IMPORTER)
            .arg("replay")
            .envs(aws.env())
            .env("RESOURCES_FILE", &file)
            .env("API", base.as_str())
            .env("SINCE", "2025-01-01T00:00:00Z"),
    )
    .await
    .assert_success();
    assert_eq!(testkit::api_stats(&base).await.v3_requests, requests);
    assert_eq!(status(&aws, &file, &base).await, after_full);
}

/// A run that fails part-way saves no position: the next run asks from the
/// last complete one's.
#[tokio::test]
async fn a_run_that_fails_saves_no_position() {
    let request = r#"
[resources.tickets.request.pagination]
kind = "cursor"
param = "cursor"
next = "/meta/next_cursor"

[resources.tickets.incremental]
field = "updated_at"
param = "updated_since"
"#;
    let api = FakeApi {
        v3: v3::Options {
            stuck_cursor: true,
            ..Default::default()
        },
        ..FakeApi::default()
    };
    let run = run(api, request, &[]).await;
    run.ran.one_error(1);
    assert_eq!(run.objects.len(), 2);
    let saved = run
        .aws
        .clients
        .s3
        .get_object()
        .bucket(&run.aws.bucket)
        .key("_state/raw/resources/tickets.json")
        .send()
        .await;
    let error = saved.map(drop).unwrap_err();
    assert!(
        error.as_service_error().is_some_and(|e| e.is_no_such_key()),
        "{error:?}"
    );
}

/// The importer killed (SIGKILL) at random points of incremental runs while
/// the source changes under it: after 0 to 3 pages archived, or right after
/// it saved its position. Whatever each killed run left (objects never
/// announced, messages sent, a position saved or not), the next runs
/// neither lose nor skip a change: once the transformer has applied the
/// queue, the table is exactly what the API serves.
#[tokio::test]
async fn killed_at_random_points_of_incremental_runs_the_table_ends_exact() {
    const RUNS: u64 = 12;
    let dir = tempfile::tempdir().unwrap();
    let (aws, db) = tokio::join!(TestAws::new(), testkit::TestDb::new());
    let base = fake_api::spawn(FakeApi::default()).await.unwrap();
    let request = r#"
[resources.tickets.request.pagination]
kind = "cursor"
param = "cursor"
next = "/meta/next_cursor"
size_param = "per_page"
size = 10

[resources.tickets.incremental]
field = "updated_at"
param = "updated_since"
lookback = "1h"
"#;
    let file = tickets_file(&dir, request);
    let spec = pipeline_core::spec::Spec::load(Some(&file)).unwrap();
    let tickets = spec.resource("tickets").unwrap();
    db.execute(&pipeline_store::generate::migration(tickets, None).up)
        .await;
    // SQS answers slowly: the messages of a run's last pages are still
    // being sent when its pages are all archived, so a kill lands between
    // the two often, and a position saved before they are confirmed would
    // skip them.
    let slow_sqs = testkit::proxy::Proxy::to_localstack().await;
    slow_sqs.slow_down(std::time::Duration::from_millis(150));
    let import = || {
        let mut c = command(IMPORTER);
        c.arg("run")
            .envs(aws.env())
            .env("AWS_ENDPOINT_URL_SQS", slow_sqs.url().as_str())
            .env("RESOURCES_FILE", &file)
            .env("API", base.as_str());
        c
    };
    let mut random = testkit::Lcg::from_clock();
    let seed = random.0;
    // The table as the transformer leaves it once the queue is applied,
    // and as the API serves revision `rev`.
    let applied = async || {
        let mut config =
            transformer::settings::Config::new(aws.queue_url.clone(), db.url().clone());
        config.mode = transformer::Mode::Drain;
        config.resources = spec;
        let report = transformer::Transformer::new(config, aws.clients.clone())
            .unwrap()
            .run(tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        assert_eq!((report.dead_lettered, report.quarantined), (0, 0));
        db.json("SELECT jsonb_build_object('ticket_id', ticket_id, 'status', status, 'updated', extract(epoch FROM updated_at)::bigint) AS j FROM tickets ORDER BY ticket_id")
            .await
    };
    let served = |rev: u32| -> Vec<serde_json::Value> {
        (1..=fake_api::tickets::TICKETS)
            .map(|n| {
                let record = v3::record(n, rev);
                serde_json::json!({
                    "ticket_id": record["id"],
                    "status": record["status"],
                    "updated": v3::updated_at(n, rev).unix_timestamp(),
                })
            })
            .collect()
    };
    Ran::of(&mut import()).await.assert_success();
    assert_eq!(applied().await, served(0));
    let mut killed = 0;
    for rev in 1..=RUNS as u32 {
        // Every 5th ticket changes at the source.
        reqwest::Client::new()
            .put(base.join(&format!("revision/{rev}")).unwrap())
            .send()
            .await
            .unwrap();
        let mut running = testkit::Running::spawn(&mut import());
        let target = random.below(5);
        loop {
            let log = running.log();
            let reached = match target {
                4 => log.contains("run complete, saved"),
                pages => log.matches("Archived ").count() >= pages as usize,
            };
            if reached || !running.is_running() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // An exited child not yet reaped still takes the signal.
        if running.is_running() {
            running.kill().await;
            killed += 1;
        }
        let log = running
            .finish(std::time::Duration::from_secs(30))
            .await
            .log();
        // The next run, whole: it finds what the killed one missed.
        Ran::of(&mut import()).await.assert_success();
        assert_eq!(
            applied().await,
            served(rev),
            "seed {seed}: revision {rev}, killed at {target} ({}):\n{log}",
            if target == 4 {
                "after the position was saved"
            } else {
                "pages archived"
            }
        );
    }
    assert!(killed >= RUNS / 2, "seed {seed}: only {killed} runs killed");
}

/// A credential kept in Secrets Manager (LocalStack's) is read at start and
/// let in; a secret that cannot be read, or lacks the key named, stops the
/// importer with exit 1 in one line naming it, before any request.
#[tokio::test]
async fn secrets_come_from_secrets_manager_and_an_unreadable_one_stops_it() {
    let setup = TestAws::new().await;
    let name = format!("tickets-api/{}", setup.bucket);
    pipeline_core::secrets::client(&setup.clients)
        .create_secret()
        .name(&name)
        .secret_string(r#"{"token": "tok-3f9a", "user": "etl"}"#)
        .send()
        .await
        .unwrap();
    let auth = |reference: &str| {
        format!(
            "[resources.tickets.request.auth]\nkind = \"bearer\"\ntoken = \"${{secretsmanager:{reference}}}\""
        )
    };

    let run_with = run(guarded(), &auth(&format!("{name}#token")), &[]).await;
    run_with.ran.assert_success();
    assert_eq!(run_with.ids(), (all_tickets(), false));
    assert!(!run_with.ran.log().contains("tok-3f9a"));

    let missing = format!("{name}-gone");
    let gone = run(guarded(), &auth(&missing), &[]).await;
    let error = gone.ran.one_error(1);
    assert!(
        error.starts_with(&format!(
            "error: cannot reach Secrets Manager secret {missing} via endpoint "
        )),
        "{error}"
    );
    assert_eq!(gone.requests, 0);

    let no_key = run(guarded(), &auth(&format!("{name}#password")), &[]).await;
    assert_eq!(
        no_key.ran.one_error(1),
        format!("error: the Secrets Manager secret {name}: its JSON has no string \"password\"")
    );
    assert_eq!(no_key.requests, 0);
}

/// Tickets, paged by cursor and loaded incrementally, and each ticket's
/// comments.
const WITH_COMMENTS: &str = r#"
rate = "30/s"                # under the API's 40 a second

[resources.tickets.request.pagination]
kind = "cursor"
param = "cursor"
next = "/meta/next_cursor"
size_param = "per_page"
size = 50

[resources.tickets.incremental]
field = "updated_at"
param = "updated_since"
lookback = "1h"

[resources.comments]
key = "comment_id"

[[resources.comments.columns]]
name = "comment_id"
from = "/id"
type = "text"

[[resources.comments.columns]]
name = "ticket_id"
type = "text"

[resources.comments.request]
url = "${API}v3/tickets/{ticket_id}/comments"
pagination = { kind = "none" }

[resources.comments.parent]
resource = "tickets"
key = "ticket_id"
"#;

/// A resource fetched once per key of another (`/v3/tickets/{id}/comments`
/// for each ticket of the run), within its parent's rate budget; with an
/// incremental parent, only for the parents that changed. A child listed
/// before its parent is refused at start.
#[tokio::test]
async fn a_child_resource_is_fetched_for_each_key_of_its_parent_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let comments = WITH_COMMENTS;
    let file = tickets_file(&dir, comments);
    let aws = TestAws::new().await;
    let base = fake_api::spawn(FakeApi {
        v3: v3::Options {
            per_second: Some(40),
            ..Default::default()
        },
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let import = |resources: &str| {
        let mut c = command(IMPORTER);
        c.arg("run")
            .envs(aws.env())
            .env("RESOURCES_FILE", &file)
            .env("RESOURCES", resources)
            .env("API", base.as_str());
        c
    };
    let stats = async || testkit::api_stats(&base).await;

    let refused = Ran::of(&mut import("comments,tickets")).await;
    assert_eq!(
        refused.one_error(2),
        "error: invalid setting RESOURCES (--resources): resource `comments` is fetched for each `ticket_id` of `tickets`: list `tickets` before it"
    );

    Ran::of(&mut import("tickets,comments"))
        .await
        .assert_success();
    let mut ids = Vec::new();
    let mut objects = 0;
    for key in aws.keys().await {
        if key.starts_with("raw/comments/") {
            objects += 1;
            let body: Vec<serde_json::Value> =
                serde_json::from_slice(&aws.object_bytes(&key).await).unwrap();
            ids.extend(body.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        }
    }
    ids.sort();
    let mut expected: Vec<String> = (1..=fake_api::tickets::TICKETS)
        .flat_map(|n| (1..=v3::comment_count(n)).map(move |c| format!("TCK-{n:05}-{c}")))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    // A ticket without comments answers an empty array: nothing to keep.
    assert_eq!(objects, 90);
    let after_first = stats().await;
    assert_eq!(
        (after_first.v3_comment_requests, after_first.v3_throttled),
        (120, 0),
        "one request per ticket, none over the API's limit"
    );

    // Every 5th ticket changes: only their comments are asked for again.
    reqwest::Client::new()
        .put(base.join("revision/1").unwrap())
        .send()
        .await
        .unwrap();
    Ran::of(&mut import("tickets,comments"))
        .await
        .assert_success();
    let after_second = stats().await;
    assert_eq!(
        after_second.v3_comment_requests - after_first.v3_comment_requests,
        25,
        "the 24 changed tickets and the one the look-back reads again"
    );
    assert_eq!(after_second.v3_throttled, 0);
}

/// A child that fails leaves its parent's position where it was: the next
/// run asks again for the parents whose children were not all read.
#[tokio::test]
async fn a_failed_child_keeps_its_parents_position() {
    let api = FakeApi {
        v3: v3::Options {
            failing_comments: Some(7),
            ..Default::default()
        },
        ..FakeApi::default()
    };
    let run = run(
        api,
        WITH_COMMENTS,
        &[
            ("RESOURCES", "tickets,comments"),
            ("HTTP_MAX_ATTEMPTS", "1"),
        ],
    )
    .await;
    let error = run.ran.one_error(1);
    assert!(
        error.contains("v3/tickets/TCK-00007/comments answered HTTP 500"),
        "{error}"
    );
    assert_eq!(
        run.ids(),
        (all_tickets(), false),
        "every ticket was archived"
    );
    let saved = run
        .aws
        .clients
        .s3
        .get_object()
        .bucket(&run.aws.bucket)
        .key("_state/raw/resources/tickets.json")
        .send()
        .await;
    let error = saved.map(drop).unwrap_err();
    assert!(
        error.as_service_error().is_some_and(|e| e.is_no_such_key()),
        "{error:?}"
    );
}
