//! The importer: HTTP JSON API -> S3 (raw backup) -> SQS message.
//!
//! One import ([`Importer::import_once`]) is three steps, each only after the
//! one before it succeeded, so that no message ever points at a missing or
//! unchecked object:
//!
//! 1. [`fetch`]: GET a page, retrying what may pass, and check that the body
//!    is a JSON array. If not, nothing is written for it. Elements that are
//!    not valid posts are counted and archived with the rest: the transformer
//!    quarantines them.
//! 2. [`archive`]: unless the page is unchanged since it was last archived
//!    ([`page_state`], with `SKIP_UNCHANGED`),
//!    put the raw bytes at a new time-ordered key, with provenance metadata
//!    and a SHA-256 that S3 verifies.
//! 3. [`announce`]: send one message per object, in batches; an object
//!    that cannot be announced is removed again.
//!
//! Pages: `Link: rel="next"` is followed; with a page size, pages are asked
//! for with `_page`/`_limit`, concurrently when `X-Total-Count` says how
//! many there are. A resource whose file describes its request is walked as
//! the file says ([`paging`]: page numbers, offsets, cursors, next URLs),
//! with its headers and credentials ([`request`]), within its rate budget,
//! from its saved position when incremental ([`position`]), and a child
//! resource once per key of its parent's records. Each page is its own
//! object and message.
//!
//! [`Importer::run`] imports once, or on a schedule until shutdown.
//!
//! The operator's commands reuse the same steps: [`replay`] announces
//! archived objects again from their metadata; [`load`] archives and
//! announces a local JSON array as one page.

// Public: the outbox seam (`announce`), the spill threshold and the HTTP
// client the benchmark's baseline shares (`body`, `fetch`), the part size
// the tests expect.
pub mod announce;
mod archive;
pub mod body;
pub mod fetch;
mod import;
pub mod load;
mod metrics;
mod page_state;
mod paging;
pub mod position;
pub mod replay;
mod report;
pub mod request;
pub mod settings;
mod status;

pub use archive::PART_BYTES;
pub use report::{ArchivedPage, ImportError, ImportReport};

use anyhow::Context as _;
use pipeline_core::aws::{AwsClients, check_bucket, check_queue};
use pipeline_core::health;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::announce::{Outbox, SqsOutbox};
use crate::fetch::Fetcher;
use crate::metrics::Metrics;
use crate::page_state::PageState;
use crate::position::ResourceState;
use crate::settings::Config;

/// Everything one import needs, built once per process.
#[derive(Debug, Clone)]
pub struct Importer {
    config: Config,
    fetcher: Fetcher,
    aws: AwsClients,
    state: Option<PageState>,
    /// Each resource's last complete run and position.
    runs: ResourceState,
    /// Where messages go: the queue, unless [`Importer::with_outbox`].
    outbox: Arc<dyn Outbox>,
    metrics: Metrics,
}

impl Importer {
    pub fn new(config: Config, aws: AwsClients) -> anyhow::Result<Self> {
        let http =
            fetch::http_client(config.http_timeout).context("Failed to build the HTTP client")?;
        let fetcher = Fetcher::new(http, config.retry, config.fetch_concurrency);
        let state = config
            .skip_unchanged
            .then(|| PageState::new(aws.s3.clone(), config.bucket.clone(), &config.key_prefix));
        let runs = ResourceState::new(aws.s3.clone(), config.bucket.clone(), &config.key_prefix);
        let outbox = Arc::new(SqsOutbox {
            sqs: aws.sqs.clone(),
            queue_url: config.queue_url.clone(),
        });
        Ok(Self {
            config,
            fetcher,
            aws,
            state,
            runs,
            outbox,
            metrics: Metrics::new(),
        })
    }

    /// Sends the messages through `outbox` instead of to `QUEUE_URL`: the
    /// seam a test uses to make announcing fail part-way.
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = outbox;
        self
    }

    /// Checks that the queue and the bucket answer, so a wrong `QUEUE_URL`,
    /// `RAW_BUCKET` or endpoint is reported before anything is fetched,
    /// waiting up to `STARTUP_WAIT` for SQS and S3 to answer at all.
    pub async fn check(&self) -> anyhow::Result<()> {
        let wait = self.config.startup_wait;
        check_queue(&self.aws, &self.config.queue_url, wait).await?;
        check_bucket(&self.aws, &self.config.bucket, wait).await?;
        Ok(())
    }

    /// Imports once, or every `IMPORT_EVERY` until `shutdown` is cancelled.
    ///
    /// Once: an error is returned (and the process exits non-zero). On a
    /// schedule: a failed import is logged and the next one still runs, so
    /// one bad answer from the API does not stop the importer.
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.check().await?;
        // Healthy from here: the queue answered.
        health::while_healthy(self.config.health_file.clone(), self.run_checked(shutdown)).await
    }

    async fn run_checked(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Some(every) = self.config.every else {
            self.import_once().await?;
            return Ok(());
        };
        let every_text = humantime::format_duration(every);
        info!(every = %every_text, "Importing every {every_text}");
        let mut ticks = tokio::time::interval(every);
        // A slow import delays the next one rather than causing a burst after it.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            // An import in progress is finished even if a signal arrives meanwhile.
            if let Err(e) = self.import_once().await {
                error!("{e}");
            }
        }
        info!("Stopped");
        Ok(())
    }
}
