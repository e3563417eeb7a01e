//! Fetching the source and checking it before anything is written.

use bytes::Bytes;
use pipeline_core::post::parse_posts;
use time::OffsetDateTime;
use url::Url;

/// A body that was fetched and is a JSON array of posts.
#[derive(Debug)]
pub struct Fetched {
    /// The exact bytes the API sent: what goes to S3.
    pub body: Bytes,
    pub fetched_at: OffsetDateTime,
    pub record_count: u64,
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

/// GETs `url` and checks that the body is a JSON array of posts.
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
    let posts = parse_posts(&body).map_err(|e| FetchError::Invalid {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    Ok(Fetched {
        body,
        fetched_at,
        record_count: posts.len() as u64,
    })
}
