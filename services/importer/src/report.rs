//! What one import did, page by page.

use pipeline_core::object::ObjectRef;
use std::time::Duration;
use tracing::info;
use url::Url;

/// A page archived and announced.
#[derive(Debug, Clone)]
pub struct ArchivedPage {
    pub url: Url,
    pub object: ObjectRef,
    pub message_id: String,
    pub record_count: u64,
    pub bytes: usize,
    pub sha256: String,
}

/// What one import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Archived and announced, in no particular order.
    pub pages: Vec<ArchivedPage>,
    /// Pages whose bytes were those last archived for their URL.
    pub skipped: u64,
    /// Requests that were tried again.
    pub retries: u64,
    /// One line per page that failed, naming it.
    pub failures: Vec<String>,
    pub duration: Duration,
}

impl ImportReport {
    /// The import's summary line.
    pub(crate) fn log(&self, source: &str) {
        info!(
            pages = self.pages.len(),
            records = self.records(),
            bytes = self.bytes(),
            skipped = self.skipped,
            retries = self.retries,
            failed = self.failures.len(),
            duration_ms = self.duration.as_millis() as u64,
            "Import of {source}: {} page(s) archived and announced, {} records, {} bytes, {} skipped as unchanged, {} retries, {} failed, in {:.1?}",
            self.pages.len(),
            self.records(),
            self.bytes(),
            self.skipped,
            self.retries,
            self.failures.len(),
            self.duration,
        );
    }

    pub fn records(&self) -> u64 {
        self.pages.iter().map(|p| p.record_count).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.pages.iter().map(|p| p.bytes as u64).sum()
    }
}

/// An import in which at least one page failed. Every page not listed in
/// `report.failures` was archived and announced, or skipped.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe_failures(&self.report))]
pub struct ImportError {
    pub report: Box<ImportReport>,
}

fn describe_failures(report: &ImportReport) -> String {
    let failed = report.failures.len();
    let first = report.failures.first().map_or("", String::as_str);
    if failed == 1 && report.pages.is_empty() && report.skipped == 0 {
        first.to_owned()
    } else {
        let attempted = failed + report.pages.len() + report.skipped as usize;
        format!("{failed} of {attempted} pages failed; the first: {first}")
    }
}
