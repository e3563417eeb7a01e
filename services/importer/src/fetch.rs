//! Fetching the source and checking it before anything is written.

use bytes::Bytes;
use pipeline_core::post::parse_records;
use time::OffsetDateTime;
use url::Url;

/// A body that was fetched and is a JSON array.
#[derive(Debug)]
pub struct Fetched {
    /// The exact bytes the API sent: what goes to S3.
    pub body: Bytes,
    pub fetched_at: OffsetDateTime,
    /// Elements in the array.
    pub record_count: u64,
    /// Elements that are not valid posts. They are archived all the same:
    /// the transformer quarantines them, so they can be fixed and replayed.
    pub bad_records: u64,
    /// Why the first bad record is bad, e.g. ``record 3: field `id`: ...``.
    pub first_bad: Option<String>,
}

/// Why the source could not be imported. Every message names the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url} failed: {reason}")]
    Request { url: Url, reason: String },
    #[error("GET {url} answered HTTP {status}")]
    Status {
        url: Url,
        status: reqwest::StatusCode,
    },
    #[error("GET {url} did not return a JSON array of posts: {reason}")]
    Invalid { url: Url, reason: String },
}

/// GETs `url` and checks that the body is a JSON array.
pub async fn fetch(http: &reqwest::Client, url: &Url) -> Result<Fetched, FetchError> {
    let request_failed = |e: reqwest::Error| FetchError::Request {
        url: url.clone(),
        reason: pipeline_core::error_chain(&e),
    };
    let fetched_at = OffsetDateTime::now_utc();
    let response = http.get(url.clone()).send().await.map_err(request_failed)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.clone(),
            status,
        });
    }
    let body = response.bytes().await.map_err(request_failed)?;
    let records = parse_records(&body).map_err(|e| FetchError::Invalid {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    Ok(Fetched {
        body,
        fetched_at,
        record_count: records.total() as u64,
        bad_records: records.bad.len() as u64,
        first_bad: records
            .bad
            .first()
            .map(|b| format!("record {}: {}", b.index, b.reason)),
    })
}
