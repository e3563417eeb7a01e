//! `importer load FILE|-`: a local JSON array, archived and announced
//! exactly as a fetched page is (same checks, metadata and message), for
//! backfills, records fixed after quarantine, and tests. Its source URL is
//! the file's `file://` URL.

use clap::Args;
use pipeline_core::exit::BadInput;
use pipeline_core::message::DEFAULT_RESOURCE;
use std::path::PathBuf;
use std::time::Instant;
use time::OffsetDateTime;
use tokio::io::AsyncReadExt as _;
use url::Url;

use crate::announce::Announcer;
use crate::body::{self, BodyWriter};
use crate::fetch::Page;
use crate::settings::parse_time;
use crate::{ImportError, ImportReport, Importer};

/// `importer load`'s own options.
#[derive(Debug, Clone, Args)]
pub struct Load {
    /// The JSON array to load: a file, or - for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// The version of its records (RFC 3339): a row already newer is kept. Default: now.
    /// To feed back records fixed after quarantine without overwriting newer rows, give
    /// the time of the object they came from.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub fetched_at: Option<OffsetDateTime>,
    /// The resource its records are (one of RESOURCES_FILE).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_RESOURCE)]
    pub resource: String,
}

impl Load {
    /// `file:///abs/path`, or `file:///dev/stdin` for `-`.
    fn source_url(&self) -> Result<Url, BadInput> {
        let path = if self.is_stdin() {
            PathBuf::from("/dev/stdin")
        } else {
            std::path::absolute(&self.file)
                .map_err(|e| BadInput(format!("{}: {e}", self.file.display())))?
        };
        Url::from_file_path(&path)
            .map_err(|()| BadInput(format!("{} has no file URL", path.display())))
    }

    fn is_stdin(&self) -> bool {
        self.file.as_os_str() == "-"
    }

    /// The bytes, spilled to a temporary file when large, with their SHA-256.
    async fn read(&self, name: &str) -> Result<(body::Body, String), BadInput> {
        let unreadable = |e: std::io::Error| BadInput(format!("cannot read {name}: {e}"));
        let mut input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if self.is_stdin() {
            Box::new(tokio::io::stdin())
        } else {
            Box::new(
                tokio::fs::File::open(&self.file)
                    .await
                    .map_err(unreadable)?,
            )
        };
        let mut writer = BodyWriter::default();
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = input.read(&mut chunk).await.map_err(unreadable)?;
            if n == 0 {
                break;
            }
            writer.write(&chunk[..n]).map_err(unreadable)?;
        }
        writer.finish().map_err(unreadable)
    }
}

impl Importer {
    /// Archives and announces the JSON array `load` names, as one page.
    ///
    /// Input that cannot be loaded (unreadable, not a JSON array, no
    /// records) is a [`BadInput`], found before anything is written; then
    /// the queue and the bucket are checked, as [`Importer::run`] does.
    pub async fn load(&self, load: &Load) -> anyhow::Result<ImportReport> {
        let started = Instant::now();
        let url = load.source_url()?;
        let name = if load.is_stdin() {
            "stdin".to_owned()
        } else {
            load.file.display().to_string()
        };
        let resource = self.config.resource(&load.resource).map_err(BadInput)?;
        let fetched_at = load.fetched_at.unwrap_or_else(OffsetDateTime::now_utc);
        let (body, sha256) = load.read(&name).await?;
        let checked = body::check(&body, resource, None).await.map_err(|e| {
            BadInput(format!(
                "{name} is not a JSON array of {}: {e}",
                resource.name()
            ))
        })?;
        if checked.record_count == 0 {
            return Err(BadInput(format!("{name} holds an empty array: nothing to load")).into());
        }
        self.check().await?;
        let page = Page {
            // Reading and checking, as a fetched page's is its fetch.
            duration: started.elapsed(),
            ..Page::checked(resource, url, body, sha256, fetched_at, checked)
        };
        // What an operator loads is loaded, even if it was loaded before:
        // no skipping as unchanged.
        let (ready, announcer) = Announcer::spawn(self.outbox.clone(), self.aws.s3.clone(), None);
        let outcome = self.archive_page(page, &ready, false).await;
        drop(ready);
        let announced = announcer.finish().await;
        let mut report = self.settle(vec![outcome], announced).await;
        report.duration = started.elapsed();
        report.log(&format!("{} from {}", resource.name(), load.source_url()?));
        if report.failures.is_empty() {
            Ok(report)
        } else {
            Err(ImportError {
                report: Box::new(report),
            }
            .into())
        }
    }
}
