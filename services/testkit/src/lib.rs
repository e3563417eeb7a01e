//! Test support: each test owns its resources on the real services.
//!
//! - [`TestDb`]: a fresh PostgreSQL database, migrated (cloned from a
//!   template migrated once per migration set), dropped when the test ends.
//! - [`TestAws`]: a fresh S3 bucket and SQS queue in LocalStack, deleted
//!   when the test ends.
//! - [`fake_api`] (re-exported): the stand-in for the external HTTP API.
//! - [`proxy::Proxy`]: a TCP proxy to cut or slow the way to a server.
//! - [`compose`]: the services of `docker-compose.yml` and their environment.
//! - [`localstack::LocalStack`]: a LocalStack of a test's own, with init hooks.
//! - [`otlp::Receiver`]: an OTLP/HTTP endpoint that keeps what it receives.
//! - [`ecs_agent::FakeAgent`]: the ECS agent's task-protection endpoint.
//! - [`server::Server`]: an axum app on 127.0.0.1, stopped when dropped.
//!
//! The services themselves are started by `scripts/test`, which passes
//! `TEST_DATABASE_URL` (a superuser URL) and `TEST_AWS_ENDPOINT_URL`. Tests
//! never share a table, a bucket or a queue, so they run in parallel.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use aws_sdk_sqs::types::QueueAttributeName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use pipeline_core::aws::AwsClients;
use pipeline_core::settings::AwsSettings;
use pipeline_store::DatabaseUrl;
use sha2::{Digest, Sha256};
use std::path::Path;
use tokio::sync::OnceCell;
use url::Url;

pub use fake_api;

pub mod compose;
pub mod ecs_agent;
pub mod localstack;
pub mod otlp;
pub mod proxy;
pub mod server;

const HOW_TO_RUN: &str =
    "the integration tests need PostgreSQL and LocalStack: run them with scripts/test";

fn env_url(name: &str) -> Url {
    let value = std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HOW_TO_RUN}"));
    Url::parse(&value).unwrap_or_else(|e| panic!("{name} is not a URL ({e})"))
}

/// A short random name, unique across tests and runs.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// Runs async clean-up from `Drop`, on a thread with its own runtime: the
/// test's runtime may be single-threaded and is blocked while we drop.
fn run_detached<F: Future<Output = ()> + Send + 'static>(
    make: impl FnOnce() -> F + Send + 'static,
) {
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("clean-up runtime")
            .block_on(make());
    });
    let _ = thread.join();
}

// ------------------------------------------------------------------ Binaries

/// A command for one of the workspace's binaries with a clean environment:
/// only `PATH` and `RUST_LOG=info`, so a developer's own `QUEUE_URL` or
/// `DATABASE_URL` never leaks into a test.
pub fn command(binary: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// What a finished command printed on stderr, a line per entry.
pub fn stderr_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The lines of a run's log that report an error.
pub fn error_lines(output: &std::process::Output) -> Vec<String> {
    stderr_lines(output)
        .into_iter()
        .filter(|l| l.contains("ERROR") || l.starts_with("error:"))
        .collect()
}

/// Waits until a running child's stderr has a line containing `needle`,
/// returning the lines read so far. Panics after `timeout`.
pub async fn wait_for_line(
    stderr: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    needle: &str,
    timeout: std::time::Duration,
) -> Vec<String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(timeout, async {
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "no line containing {needle:?} in:\n{}",
        seen.join("\n")
    );
    seen
}

/// Sends SIGTERM, as ECS does to stop a task.
pub async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the child is running");
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("run kill");
    assert!(status.success());
}

// ---------------------------------------------------------------- PostgreSQL

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: DatabaseUrl,
}

impl TestDb {
    /// A new database with every migration applied.
    pub async fn new() -> Self {
        let template = template().await;
        Self::create(&format!("TEMPLATE {template}")).await
    }

    /// A new database with no migration applied.
    pub async fn empty() -> Self {
        Self::create("TEMPLATE template0").await
    }

    async fn create(options: &str) -> Self {
        let name = unique_name("test").replace('-', "_");
        let mut admin = admin().await;
        diesel::sql_query(format!("CREATE DATABASE {name} {options}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let url = db_url(&name)
            .as_str()
            .parse()
            .expect("a valid database URL");
        Self { name, url }
    }

    /// The URL of this database, as `DATABASE_URL` would give it.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The URL of this database through another port of 127.0.0.1 (a
    /// [`proxy::Proxy`]'s, or one where nothing listens), password included.
    pub fn url_through(&self, port: u16) -> String {
        let mut url = Url::parse(self.url.expose()).expect("a valid database URL");
        url.set_host(Some("127.0.0.1")).expect("a host");
        url.set_port(Some(port)).expect("a port");
        url.to_string()
    }

    /// The number a query counts, as `SELECT count(*) AS n ...`.
    pub async fn count(&self, query: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.connect().await;
        diesel::sql_query(query)
            .get_result::<Count>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .n
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(self.url.expose())
            .await
            .expect("connecting to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_detached(move || async move {
            let mut admin = admin().await;
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        });
    }
}

fn db_url(name: &str) -> Url {
    let mut url = env_url("TEST_DATABASE_URL");
    url.set_path(&format!("/{name}"));
    url
}

async fn admin() -> AsyncPgConnection {
    let url = env_url("TEST_DATABASE_URL");
    AsyncPgConnection::establish(url.as_str())
        .await
        .unwrap_or_else(|e| panic!("connecting to TEST_DATABASE_URL: {e}"))
}

/// The name of a database with every migration applied, created once per
/// set of migrations. An advisory lock keeps concurrent test processes from
/// creating it twice; nobody stays connected to it, so it can be cloned.
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("pipeline_template_{}", &migrations_hash()[..16]);
            let mut admin = admin().await;
            diesel::sql_query("SELECT pg_advisory_lock(7324)")
                .execute(&mut admin)
                .await
                .expect("lock");
            let exists: i64 = {
                use diesel::sql_types::{BigInt, Text};
                #[derive(diesel::QueryableByName)]
                struct Count {
                    #[diesel(sql_type = BigInt)]
                    n: i64,
                }
                diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
                    .bind::<Text, _>(&name)
                    .get_result::<Count>(&mut admin)
                    .await
                    .expect("query pg_database")
                    .n
            };
            if exists == 0 {
                let building = format!("{name}_building");
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {building}"))
                    .execute(&mut admin)
                    .await
                    .expect("drop a half-built template");
                diesel::sql_query(format!("CREATE DATABASE {building}"))
                    .execute(&mut admin)
                    .await
                    .expect("create the template");
                let url: DatabaseUrl = db_url(&building).as_str().parse().expect("valid URL");
                pipeline_store::migrations::run_pending(&url, std::time::Duration::ZERO)
                    .await
                    .expect("migrate the template");
                // Renamed only once complete, so a crash never leaves a half-migrated template.
                diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("rename the template");
            }
            diesel::sql_query("SELECT pg_advisory_unlock(7324)")
                .execute(&mut admin)
                .await
                .expect("unlock");
            name
        })
        .await
}

fn migrations_hash() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(
            file.strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update(std::fs::read(&file).unwrap());
    }
    hex::encode(hasher.finalize())
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

// ------------------------------------------------------------------- S3 + SQS

/// A bucket and a queue of its own for one test, in LocalStack.
#[derive(Debug)]
pub struct TestAws {
    pub clients: AwsClients,
    pub bucket: String,
    pub queue_url: Url,
    /// The queue's dead-letter queue (redrive after [`Self::MAX_RECEIVE_COUNT`] receives).
    pub dead_letter_url: Url,
}

impl TestAws {
    /// A new bucket and a new queue with a 30 s visibility timeout.
    pub async fn new() -> Self {
        Self::with_visibility_timeout(30).await
    }

    pub async fn with_visibility_timeout(seconds: u32) -> Self {
        Self::with_queue(seconds, Self::MAX_RECEIVE_COUNT).await
    }

    /// A new bucket and queue whose redrive policy moves a message to the
    /// dead-letter queue after `max_receive_count` receives.
    pub async fn with_queue(visibility_timeout: u32, max_receive_count: u32) -> Self {
        let seconds = visibility_timeout;
        let clients = AwsClients::new(&Self::settings())
            .await
            .expect("AWS settings");
        let bucket = unique_name("test");
        clients
            .s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        let create_queue = |name: String, attributes: Vec<(QueueAttributeName, String)>| {
            let mut request = clients.sqs.create_queue().queue_name(name);
            for (key, value) in attributes {
                request = request.attributes(key, value);
            }
            async move {
                let created = request.send().await.expect("create queue");
                Url::parse(created.queue_url().expect("a queue URL")).expect("a valid queue URL")
            }
        };
        let dead_letter_url = create_queue(unique_name("test-dlq"), vec![]).await;
        let dead_letter_arn = clients
            .sqs
            .get_queue_attributes()
            .queue_url(dead_letter_url.as_str())
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("a queue ARN");
        let redrive = format!(
            r#"{{"deadLetterTargetArn":"{dead_letter_arn}","maxReceiveCount":"{max_receive_count}"}}"#
        );
        let queue_url = create_queue(
            unique_name("test"),
            vec![
                (QueueAttributeName::VisibilityTimeout, seconds.to_string()),
                (QueueAttributeName::RedrivePolicy, redrive),
            ],
        )
        .await;
        Self {
            clients,
            bucket,
            queue_url,
            dead_letter_url,
        }
    }

    /// The redrive policy's maxReceiveCount of test queues by default.
    pub const MAX_RECEIVE_COUNT: u32 = 5;

    /// Reads up to 10 messages of the dead-letter queue, leaving them there.
    pub async fn dead_letters(&self) -> Vec<aws_sdk_sqs::types::Message> {
        self.peek(&self.dead_letter_url).await
    }

    /// Takes every visible message off the queue and returns their bodies,
    /// as if they had been lost: for holding a message back.
    pub async fn take_bodies(&self) -> Vec<String> {
        let mut bodies = Vec::new();
        loop {
            let received = self
                .clients
                .sqs
                .receive_message()
                .queue_url(self.queue_url.as_str())
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return bodies;
            }
            for message in messages {
                self.clients
                    .sqs
                    .delete_message()
                    .queue_url(self.queue_url.as_str())
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
                bodies.push(message.body.unwrap_or_default());
            }
        }
    }

    /// Settings pointing at the test LocalStack, as the services read them.
    pub fn settings() -> AwsSettings {
        AwsSettings {
            region: Some(Self::REGION.into()),
            endpoint_url: Some(Self::endpoint()),
            endpoint_url_s3: None,
            endpoint_url_sqs: None,
        }
    }

    pub const REGION: &str = "us-east-1";

    pub fn endpoint() -> Url {
        env_url("TEST_AWS_ENDPOINT_URL")
    }

    /// The environment a service process needs to reach this bucket and queue.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_REGION", Self::REGION.into()),
            ("AWS_ENDPOINT_URL", Self::endpoint().to_string()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("RAW_BUCKET", self.bucket.clone()),
            ("QUEUE_URL", self.queue_url.to_string()),
        ]
    }

    /// Every key in the bucket, in order, but the importer's `_state/`.
    pub async fn keys(&self) -> Vec<String> {
        let listed = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("list objects");
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .filter(|key| !key.starts_with("_state/"))
            .collect()
    }

    /// Reads the visible messages and leaves them on the queue.
    pub async fn peek_messages(&self) -> Vec<aws_sdk_sqs::types::Message> {
        self.peek(&self.queue_url).await
    }

    /// Up to 10 visible messages of `queue`, each received with a visibility
    /// timeout of 0, so it is visible again at once.
    async fn peek(&self, queue: &Url) -> Vec<aws_sdk_sqs::types::Message> {
        let received = self
            .clients
            .sqs
            .receive_message()
            .queue_url(queue.as_str())
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .visibility_timeout(0)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        received.messages.unwrap_or_default()
    }

    /// How many messages the queue holds: visible, in flight and delayed.
    pub async fn message_count(&self) -> u64 {
        use QueueAttributeName::{
            ApproximateNumberOfMessages, ApproximateNumberOfMessagesDelayed,
            ApproximateNumberOfMessagesNotVisible,
        };
        let output = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(self.queue_url.as_str())
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let attributes = output.attributes.unwrap_or_default();
        [
            ApproximateNumberOfMessages,
            ApproximateNumberOfMessagesNotVisible,
            ApproximateNumberOfMessagesDelayed,
        ]
        .iter()
        .map(|name| {
            attributes
                .get(name)
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a count")
        })
        .sum()
    }

    /// Puts an object by hand.
    pub async fn put(&self, key: &str, body: impl Into<Vec<u8>>) {
        self.clients
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into().into())
            .send()
            .await
            .expect("put object");
    }

    /// Visible and in-flight messages on the queue.
    pub async fn visible_and_in_flight(&self) -> (u64, u64) {
        let output = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(self.queue_url.as_str())
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let attributes = output.attributes.unwrap_or_default();
        let count = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a count")
        };
        (
            count(QueueAttributeName::ApproximateNumberOfMessages),
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Clients whose S3 requests go through `proxy` and whose SQS requests
    /// go straight to LocalStack.
    pub async fn clients_with_s3_through(proxy: &proxy::Proxy) -> AwsClients {
        let settings = AwsSettings {
            endpoint_url_s3: Some(proxy.url()),
            ..Self::settings()
        };
        AwsClients::new(&settings).await.expect("AWS settings")
    }

    /// Clients whose S3 and SQS requests both go through `proxy`.
    pub async fn clients_through(proxy: &proxy::Proxy) -> AwsClients {
        let settings = AwsSettings {
            endpoint_url: Some(proxy.url()),
            ..Self::settings()
        };
        AwsClients::new(&settings).await.expect("AWS settings")
    }

    /// The object's metadata, content type and encoding, as S3 reports them.
    pub async fn head(&self, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.clients
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("head object")
    }

    /// The bytes of an object.
    pub async fn object_bytes(&self, key: &str) -> Vec<u8> {
        let object = self
            .clients
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("get object");
        object
            .body
            .collect()
            .await
            .expect("read object")
            .into_bytes()
            .to_vec()
    }

    /// Sends a raw message body, as a person feeding an object by hand would.
    pub async fn send(&self, body: &str) -> String {
        let sent = self
            .clients
            .sqs
            .send_message()
            .queue_url(self.queue_url.as_str())
            .message_body(body)
            .send()
            .await
            .expect("send message");
        sent.message_id.unwrap_or_default()
    }
}

impl Drop for TestAws {
    fn drop(&mut self) {
        let (bucket, queue_url) = (self.bucket.clone(), self.queue_url.clone());
        let dead_letter_url = self.dead_letter_url.clone();
        run_detached(move || async move {
            // Fresh clients: the test's own are bound to its runtime.
            let Ok(clients) = AwsClients::new(&TestAws::settings()).await else {
                return;
            };
            for url in [queue_url, dead_letter_url] {
                let _ = clients
                    .sqs
                    .delete_queue()
                    .queue_url(url.as_str())
                    .send()
                    .await;
            }
            if let Ok(listed) = clients.s3.list_objects_v2().bucket(&bucket).send().await {
                for object in listed.contents() {
                    if let Some(key) = object.key() {
                        let _ = clients
                            .s3
                            .delete_object()
                            .bucket(&bucket)
                            .key(key)
                            .send()
                            .await;
                    }
                }
            }
            let _ = clients.s3.delete_bucket().bucket(&bucket).send().await;
        });
    }
}
