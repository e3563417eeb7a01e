//! One test's pipeline, in the spirit of zero2prod's `spawn_app`: its own
//! database, bucket, queue and fake API, and the importer and transformer
//! as the binaries build them, in process.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use importer::settings::Config as ImporterConfig;
use importer::{ArchivedPage, ImportError, ImportReport, Importer};
use pipeline_core::aws::AwsClients;
use pipeline_store::ledger::LedgerEntry;
use pipeline_store::schema::posts;
use std::time::Duration;
use testkit::fake_api::{self, FakeApi, Resource};
use testkit::{Row, TestAws, TestDb};
use tokio_util::sync::CancellationToken;
use transformer::settings::Config as TransformerConfig;
use transformer::{Mode, RunReport, Transformer};
use url::Url;

/// A database, a bucket and queue, and a fake API, all the test's own.
#[derive(Debug)]
pub struct Pipeline {
    pub db: TestDb,
    pub aws: TestAws,
    /// The fake API's base URL.
    pub api: Url,
}

impl Pipeline {
    /// With the fake API's default 100 posts.
    pub async fn new() -> Self {
        Self::with_api(FakeApi::default()).await
    }

    pub async fn with_api(api: FakeApi) -> Self {
        let (db, aws) = tokio::join!(TestDb::new(), TestAws::new());
        let api = fake_api::spawn(api).await.expect("the fake API listens");
        Self { db, aws, api }
    }

    /// The importer's defaults, fetching `path` of the fake API as the
    /// resource its first segment names (`posts?rev=1`: posts), or as
    /// posts when it names none (`fault/bad-record`).
    pub fn importer_config(&self, path: &str) -> ImporterConfig {
        let config = ImporterConfig::new(
            self.api.join(path).expect("a path"),
            self.aws.bucket.clone(),
            self.aws.queue_url.clone(),
        );
        let first = path.split(['/', '?']).next().unwrap_or_default();
        if config.resources.resource(first).is_some() {
            config.for_resource(first)
        } else {
            config
        }
    }

    /// Imports `path` once with the importer's defaults.
    pub async fn import(&self, path: &str) -> ImportReport {
        import(&self.aws, self.importer_config(path))
            .await
            .expect("the import")
    }

    /// Imports `path`, which is one page, once.
    pub async fn import_page(&self, path: &str) -> ArchivedPage {
        let mut report = self.import(path).await;
        assert_eq!(report.pages.len(), 1, "one page: {report:?}");
        report.pages.remove(0)
    }

    /// The transformer's settings in tests: its defaults, with retries
    /// after a second rather than ten.
    pub fn transformer_config(&self) -> TransformerConfig {
        let mut config = TransformerConfig::new(self.aws.queue_url.clone(), self.db.url().clone());
        config.retry_delay = Duration::from_secs(1);
        config
    }

    /// `transformer run --drain`.
    pub async fn drain(&self) -> RunReport {
        self.drain_with(self.transformer_config()).await
    }

    /// `transformer run --drain` with these settings.
    pub async fn drain_with(&self, config: TransformerConfig) -> RunReport {
        self.run(
            config,
            self.aws.clients.clone(),
            Mode::Drain,
            CancellationToken::new(),
        )
        .await
    }

    /// `transformer run`, with these settings and clients, until `stop` or
    /// (in drain mode) the queue is empty.
    pub async fn run(
        &self,
        mut config: TransformerConfig,
        aws: AwsClients,
        mode: Mode,
        stop: CancellationToken,
    ) -> RunReport {
        config.mode = mode;
        Transformer::new(config, aws)
            .expect("a transformer")
            .run(stop)
            .await
            .expect("the run")
    }

    /// Every row of `resource`'s table, by key.
    pub async fn rows(&self, resource: Resource) -> Vec<Row> {
        self.db.rows(resource.name()).await
    }

    /// Rows in `table`.
    pub async fn count(&self, table: &str) -> i64 {
        self.db
            .count(&format!("SELECT count(*) AS n FROM {table}"))
            .await
    }

    /// The ledger, oldest first.
    pub async fn ledger(&self) -> Vec<LedgerEntry> {
        let mut conn = pipeline_store::connect(self.db.url())
            .await
            .expect("a connection");
        pipeline_store::ledger::entries(&mut conn)
            .await
            .expect("the ledger")
    }

    /// (id, title) of every post, by id.
    pub async fn titles(&self) -> Vec<(i64, String)> {
        let mut conn = self.db.connect().await;
        posts::table
            .select((posts::id, posts::title))
            .order(posts::id)
            .load(&mut conn)
            .await
            .expect("the posts")
    }

    /// Waits until at least one object is applied, so that a fault lands
    /// once a run is past its start-up checks and at work; returns how
    /// many objects were applied by then.
    pub async fn first_applied(&self) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let applied = self.ledger().await.len();
            if applied > 0 {
                return applied;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing was applied"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `posts` has `n` rows, or panics after `timeout`.
    pub async fn wait_for_rows(&self, n: i64, timeout: Duration) {
        self.wait_for(Resource::Posts, n, timeout).await;
    }

    /// Waits until `resource`'s table has `n` rows, or panics after `timeout`.
    pub async fn wait_for(&self, resource: Resource, n: i64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let table = resource.name();
        while self.count(table).await != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{table} never reached {n} rows"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Imports once with `config` into `aws`'s bucket and queue.
pub async fn import(aws: &TestAws, config: ImporterConfig) -> Result<ImportReport, ImportError> {
    Importer::new(config, aws.clients.clone())
        .expect("an importer")
        .import_once()
        .await
}

/// `transformer run --drain` over `aws`'s queue into `db`, with the
/// transformer's defaults.
pub async fn drain(aws: &TestAws, db: &TestDb) -> RunReport {
    let mut config = TransformerConfig::new(aws.queue_url.clone(), db.url().clone());
    config.mode = Mode::Drain;
    Transformer::new(config, aws.clients.clone())
        .expect("a transformer")
        .run(CancellationToken::new())
        .await
        .expect("the run")
}
