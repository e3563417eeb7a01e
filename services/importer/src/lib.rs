//! The importer: HTTP JSON API -> S3 (raw backup) -> SQS message.
//!
//! One import ([`Importer::import_once`]) is three steps, each only after the
//! one before it succeeded, so that no message ever points at a missing or
//! unchecked object:
//!
//! 1. [`fetch`]: GET the source and check that the body is a JSON array.
//!    If not, nothing is written. Elements that are not valid posts are
//!    counted and archived with the rest: the transformer quarantines them.
//! 2. [`archive`]: put the raw bytes, unchanged, at a new time-ordered key,
//!    with provenance metadata and a SHA-256 that S3 verifies.
//! 3. [`announce`]: send one message saying where the object is.
//!
//! [`run`] repeats imports on a schedule until shutdown.

pub mod announce;
pub mod archive;
pub mod fetch;
pub mod settings;

use anyhow::Context as _;
use pipeline_core::aws::{AwsClients, check_queue};
use pipeline_core::message::{MESSAGE_VERSION, ObjectMessage};
use pipeline_core::object::ObjectRef;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, instrument, warn};

use crate::archive::Provenance;
use crate::settings::Config;

/// What one import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub object: ObjectRef,
    pub message_id: String,
    pub record_count: u64,
    pub bytes: usize,
    pub sha256: String,
}

/// Why an import failed. Each names the URL, object or queue at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    #[error(transparent)]
    Announce(#[from] announce::AnnounceError),
}

/// Everything one import needs, built once per process.
#[derive(Debug, Clone)]
pub struct Importer {
    config: Config,
    http: reqwest::Client,
    aws: AwsClients,
}

impl Importer {
    pub fn new(config: Config, aws: AwsClients) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .user_agent(concat!("api-pipeline-importer/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("Failed to build the HTTP client")?;
        Ok(Self { config, http, aws })
    }

    /// Checks that the queue answers, so a wrong `QUEUE_URL` or endpoint is
    /// reported before anything is fetched or archived.
    pub async fn check(&self) -> anyhow::Result<()> {
        check_queue(&self.aws, &self.config.queue_url)
            .await
            .map_err(anyhow::Error::msg)
    }

    /// Fetches, archives and announces the source once.
    #[instrument(skip_all, fields(source.url = %self.config.source_url))]
    pub async fn import_once(&self) -> Result<ImportReport, ImportError> {
        let started = Instant::now();
        let config = &self.config;
        let fetched = fetch::fetch(&self.http, &config.source_url).await?;
        if let Some(first_bad) = &fetched.first_bad {
            warn!(
                records.bad = fetched.bad_records,
                "{} of {} records from {} are not valid posts ({first_bad}); archived anyway: the transformer quarantines them",
                fetched.bad_records,
                fetched.record_count,
                config.source_url,
            );
        }

        let sha256 = archive::sha256_hex(&fetched.body);
        let object = ObjectRef::new(
            &config.bucket,
            archive::object_key(&config.key_prefix, fetched.fetched_at),
        );
        let bytes = fetched.body.len();
        let provenance = Provenance {
            source_url: &config.source_url,
            fetched_at: fetched.fetched_at,
            record_count: fetched.record_count,
        };
        archive::put(&self.aws.s3, &object, fetched.body, &sha256, provenance).await?;

        let message = ObjectMessage {
            version: MESSAGE_VERSION,
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            sha256: Some(sha256.clone()),
            record_count: Some(fetched.record_count),
            source_url: Some(config.source_url.to_string()),
            fetched_at: Some(fetched.fetched_at),
        };
        let message_id = announce::send(&self.aws.sqs, &config.queue_url, &message).await?;

        info!(
            s3.bucket = %object.bucket,
            s3.key = %object.key,
            messaging.message.id = %message_id,
            records = fetched.record_count,
            bytes,
            duration_ms = started.elapsed().as_millis() as u64,
            "Imported {} records from {} to {object}",
            fetched.record_count,
            config.source_url,
        );
        Ok(ImportReport {
            object,
            message_id,
            record_count: fetched.record_count,
            bytes,
            sha256,
        })
    }
}

/// Imports once, or every `every` until `shutdown` is cancelled.
///
/// Once: an error is returned (and the process exits non-zero). On a
/// schedule: a failed import is logged and the next one still runs, so one
/// bad answer from the API does not stop the importer.
pub async fn run(
    importer: &Importer,
    every: Option<Duration>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    importer.check().await?;
    let Some(every) = every else {
        importer.import_once().await?;
        return Ok(());
    };

    info!(every = %humantime::format_duration(every), "Importing every {}", humantime::format_duration(every));
    let mut ticks = tokio::time::interval(every);
    // A slow import delays the next one rather than causing a burst after it.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // An import in progress is finished even if a signal arrives meanwhile.
        if let Err(e) = importer.import_once().await {
            error!("{e}");
        }
    }
    info!("Stopped");
    Ok(())
}
