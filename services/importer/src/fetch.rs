//! Fetching one page of the source, with retries, and checking it before
//! anything is written.

use backon::Retryable as _;
use pipeline_core::retry::Backoff;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LINK, RETRY_AFTER};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tracing::warn;
use url::Url;

use pipeline_core::record::RecordsError;
use pipeline_core::resources::Resource;

use crate::body::{self, Body, BodyWriter, Checked};
use crate::paging::with_param;
use crate::position::Position;
use crate::request::{Request, TokenError};

/// A Retry-After longer than this is not waited for in full.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A page that was fetched and is a JSON array.
#[derive(Debug)]
pub struct Page {
    /// Whose records it holds.
    pub resource: &'static dyn Resource,
    pub url: Url,
    /// The exact bytes the API sent: what goes to S3.
    pub body: Body,
    /// Of `body`, lowercase hex.
    pub sha256: String,
    pub fetched_at: OffsetDateTime,
    /// Elements in the array.
    pub record_count: u64,
    /// Elements that are not valid records. They are archived all the same:
    /// the transformer quarantines them, so they can be fixed and replayed.
    pub bad_records: u64,
    /// Why the first bad record is bad, e.g. ``record 3: field `id`: ...``.
    pub first_bad: Option<String>,
    /// With incremental loading: the largest value of the cursor field.
    pub position: Option<Position>,
    /// For a parent resource: the keys its children are fetched for.
    pub keys: Vec<String>,
    /// `Link: <...>; rel="next"`, resolved against the page's URL.
    pub next: Option<Url>,
    /// `X-Total-Count`: records in all pages.
    pub total: Option<u64>,
    /// The answer's headers, for pagination a resources file describes.
    pub headers: HeaderMap,
    /// Attempts it took, the successful one included.
    pub attempts: u32,
    pub duration: Duration,
}

impl Page {
    /// A page of one answer, `body` with its `sha256`, once checked: no
    /// link to a next page, no total, fetched in one attempt.
    pub fn checked(
        resource: &'static dyn Resource,
        url: Url,
        body: Body,
        sha256: String,
        fetched_at: OffsetDateTime,
        checked: Checked,
    ) -> Self {
        Self {
            resource,
            url,
            body,
            sha256,
            fetched_at,
            record_count: checked.record_count,
            bad_records: checked.bad_records,
            first_bad: checked.first_bad,
            position: checked.position,
            keys: checked.keys,
            next: None,
            total: None,
            headers: HeaderMap::new(),
            attempts: 1,
            duration: Duration::ZERO,
        }
    }
}

/// Why a page could not be fetched: the last attempt's failure, after
/// `attempts` attempts. The one line names the URL; the failure's cause
/// stays a typed source, rendered where it is logged.
#[derive(Debug)]
pub struct FetchError {
    pub url: Url,
    pub failure: Failure,
    pub attempts: u32,
}

/// What went wrong with one attempt.
#[derive(Debug)]
pub enum Failure {
    /// No answer, or the body broke off.
    Request(reqwest::Error),
    /// The body arrived but could not be kept.
    Spill(std::io::Error),
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// The body is not a JSON array.
    Invalid(RecordsError),
    /// No OAuth2 token could be had.
    Token(TokenError),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GET {} ", self.url)?;
        match &self.failure {
            Failure::Request(_) => f.write_str("failed")?,
            Failure::Spill(_) => f.write_str("cannot keep the body in a temporary file")?,
            Failure::Status { status, .. } => write!(f, "answered HTTP {status}")?,
            Failure::Invalid(_) => f.write_str("did not return a JSON array")?,
            Failure::Token(e) => write!(f, "was not sent: {e}")?,
        }
        if self.attempts > 1 {
            write!(f, " (gave up after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Request(e) => Some(e),
            Failure::Spill(e) => Some(e),
            Failure::Invalid(e) => Some(e),
            Failure::Status { .. } | Failure::Token(_) => None,
        }
    }
}

impl FetchError {
    fn new(url: &Url) -> impl Fn(Failure) -> Self + '_ {
        |failure| Self {
            url: url.clone(),
            failure,
            attempts: 1,
        }
    }

    /// Timeouts, connection errors, 429, 5xx and broken bodies may pass;
    /// other answers, and a request that could not even be built, will not
    /// change.
    fn is_retryable(&self) -> bool {
        match &self.failure {
            Failure::Request(e) => !e.is_builder(),
            Failure::Spill(_) | Failure::Invalid(_) => true,
            Failure::Token(e) => e.may_pass,
            Failure::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match &self.failure {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The importer's HTTP client: one request, body included, may take up to
/// `timeout` (`HTTP_TIMEOUT`). The benchmark's download baseline uses the
/// same.
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("api-pipeline-importer/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Fetches pages, retrying what may pass.
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    retry: Backoff,
    /// One per request in flight to the API. A permit is held while a
    /// body arrives and given back before the body is checked, so that
    /// the next request does not wait on the CPU.
    in_flight: Arc<Semaphore>,
}

impl Fetcher {
    /// At most `concurrency` requests at a time, however many pages are
    /// being fetched.
    pub fn new(http: reqwest::Client, retry: Backoff, concurrency: NonZeroUsize) -> Self {
        Self {
            http,
            retry,
            in_flight: Arc::new(Semaphore::new(concurrency.get())),
        }
    }

    /// GETs `url` until it answers a JSON array, a non-retryable error, or
    /// the attempts run out. Waits grow exponentially with full jitter
    /// (a random delay up to the exponential one), or follow `Retry-After`.
    pub async fn fetch(
        &self,
        url: &Url,
        resource: &'static dyn Resource,
        request: &Request,
        keys: Option<usize>,
    ) -> Result<Page, FetchError> {
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt(url, resource, request, keys).await
        })
        .retry(self.retry.builder())
        .when(FetchError::is_retryable)
        .adjust(|e, delay| {
            let delay = delay?;
            Some(match e.retry_after() {
                Some(after) => after.min(MAX_RETRY_AFTER),
                None => self.retry.jittered(delay),
            })
        })
        .notify(|e, delay| {
            let e = pipeline_core::error_chain(e);
            warn!(source.url = %url, "{e}; retrying in {delay:.1?}");
        })
        .await;
        let attempts = attempts.load(Ordering::Relaxed);
        match result {
            Ok(mut page) => {
                page.attempts = attempts;
                page.duration = started.elapsed();
                Ok(page)
            }
            Err(e) => Err(FetchError { attempts, ..e }),
        }
    }

    async fn attempt(
        &self,
        url: &Url,
        resource: &'static dyn Resource,
        request: &Request,
        keys: Option<usize>,
    ) -> Result<Page, FetchError> {
        let failed = FetchError::new(url);
        // reqwest's error names the URL it sent, which may hold an API key;
        // the error names the page's URL instead.
        let request_failed = |e: reqwest::Error| failed(Failure::Request(e.without_url()));
        // The budget first: a request waiting on it holds no slot.
        request.within_budget().await;
        let permit = self
            .in_flight
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"));
        let fetched_at = OffsetDateTime::now_utc();
        let no_token = |e| failed(Failure::Token(e));
        let token = request.token(&self.http).await.map_err(no_token)?;
        let mut response = request
            .get(&self.http, url, token.clone())
            .send()
            .await
            .map_err(request_failed)?;
        // A token refused before its time (revoked, rotated): once more
        // with a new one.
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some(used) = token
        {
            request.refused(&used).await;
            let token = request.token(&self.http).await.map_err(no_token)?;
            response = request
                .get(&self.http, url, token)
                .send()
                .await
                .map_err(request_failed)?;
        }
        let status = response.status();
        if !status.is_success() {
            return Err(failed(Failure::Status {
                status,
                retry_after: retry_after(status, response.headers(), SystemTime::now()),
            }));
        }
        let next = next_link(response.headers(), url);
        let total = response
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok()?.trim().parse().ok());
        let headers = response.headers().clone();
        // Streamed: hashed on the way in, spilled to a file when large.
        let mut response = response;
        let mut writer = BodyWriter::default();
        let spill_failed = |e| failed(Failure::Spill(e));
        while let Some(chunk) = response.chunk().await.map_err(request_failed)? {
            writer.write(&chunk).map_err(spill_failed)?;
        }
        let (body, sha256) = writer.finish().map_err(spill_failed)?;
        drop(permit);
        let checked = body::check(&body, resource, keys)
            .await
            .map_err(|e| failed(Failure::Invalid(e)))?;
        Ok(Page {
            next,
            total,
            headers,
            ..Page::checked(resource, url.clone(), body, sha256, fetched_at, checked)
        })
    }
}

/// How long the server asked to be left alone, from now: `Retry-After`
/// (seconds, or an HTTP date: RFC 9110, section 10.2.3), else on a 429 or
/// 503 the reset of its rate limit, `RateLimit-Reset` then
/// `X-RateLimit-Reset`. Those carry seconds to wait (the IETF draft's
/// `RateLimit` fields) or a Unix time (GitHub's and others'
/// `X-RateLimit-Reset`); a number past a billion can only be the latter.
/// Other statuses ignore the reset: GitHub sends it with every answer, and a
/// 500 must not wait for the hour's quota to come back.
fn retry_after(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    if let Some(value) = header(RETRY_AFTER.as_str()) {
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(at) = httpdate::parse_http_date(value) {
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let reset = ["ratelimit-reset", "x-ratelimit-reset"]
        .into_iter()
        .find_map(|name| header(name)?.parse::<u64>().ok())?;
    const UNIX_TIME_FROM: u64 = 1_000_000_000;
    Some(if reset >= UNIX_TIME_FROM {
        (UNIX_EPOCH + Duration::from_secs(reset))
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    } else {
        Duration::from_secs(reset)
    })
}

/// The `rel="next"` target of a `Link` header (RFC 8288), resolved against
/// the URL of the page it came with.
pub fn next_link(headers: &HeaderMap, base: &Url) -> Option<Url> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let is_next = params.split(';').any(|param| {
                let Some((name, value)) = param.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            });
            if is_next {
                base.join(target).ok()
            } else {
                None
            }
        })
}

/// The URL of page `page` of `source` with `limit` records per page, as
/// JSONPlaceholder-style APIs take it (`_page`, `_limit`; other query
/// parameters are kept).
pub fn page_url(source: &Url, page: u32, limit: u32) -> Url {
    let page = with_param(source, "_page", &page.to_string());
    with_param(&page, "_limit", &limit.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn links(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(LINK, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn finds_the_next_link_among_others() {
        let base = Url::parse("https://api.example/posts?_page=1&_limit=10").unwrap();
        let header = r#"<https://api.example/posts?_page=1&_limit=10>; rel="first", </posts?_page=2&_limit=10>; rel="next", <https://api.example/posts?_page=10&_limit=10>; rel="last""#;
        assert_eq!(
            next_link(&links(header), &base).unwrap().as_str(),
            "https://api.example/posts?_page=2&_limit=10"
        );
        assert_eq!(next_link(&links(r#"<x>; rel="last""#), &base), None);
        assert_eq!(
            next_link(&links("<https://b.example/2>; rel=\"prev next\""), &base)
                .unwrap()
                .as_str(),
            "https://b.example/2"
        );
        assert_eq!(next_link(&HeaderMap::new(), &base), None);
    }

    #[test]
    fn page_urls_keep_other_parameters() {
        let source = Url::parse("https://api.example/posts?rev=2&_page=9").unwrap();
        assert_eq!(
            page_url(&source, 3, 100).as_str(),
            "https://api.example/posts?rev=2&_page=3&_limit=100"
        );
    }

    #[test]
    fn what_is_retried() {
        let url = Url::parse("http://x/").unwrap();
        let failed = FetchError::new(&url);
        let status = |code: u16| {
            failed(Failure::Status {
                status: StatusCode::from_u16(code).unwrap(),
                retry_after: None,
            })
        };
        assert!(status(429).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(!status(401).is_retryable());
        assert!(failed(Failure::Invalid(RecordsError::Empty)).is_retryable());
        // A request that cannot be built fails the same way every time.
        let unbuildable = reqwest::Client::new()
            .get("http://[::1")
            .build()
            .unwrap_err();
        assert!(unbuildable.is_builder());
        assert!(!failed(Failure::Request(unbuildable)).is_retryable());
    }

    /// What a 429 or 503 asks for, in each form servers use, at a fixed now.
    #[test]
    fn how_long_a_server_asks_to_wait() {
        // Mon, 07 Dec 2026 15:00:00 GMT.
        let now = UNIX_EPOCH + Duration::from_secs(1_796_655_600);
        let asked = |status: StatusCode, headers: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.insert(
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            retry_after(status, &map, now)
        };
        let (busy, throttled, failed) = (
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
        );
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(asked(busy, &[("retry-after", "120")]), secs(120));
        // An HTTP date in each form RFC 9110 has recipients accept.
        for date in [
            "Mon, 07 Dec 2026 15:00:30 GMT",
            "Monday, 07-Dec-26 15:00:30 GMT",
            "Mon Dec  7 15:00:30 2026",
        ] {
            assert_eq!(asked(busy, &[("retry-after", date)]), secs(30), "{date}");
        }
        assert_eq!(
            asked(busy, &[("retry-after", "Mon, 07 Dec 2026 14:00:00 GMT")]),
            secs(0),
            "a date gone by: at once"
        );
        // The reset of a rate limit: seconds to wait, or a Unix time.
        assert_eq!(asked(throttled, &[("ratelimit-reset", "42")]), secs(42));
        assert_eq!(
            asked(throttled, &[("x-ratelimit-reset", "1796655660")]),
            secs(60)
        );
        assert_eq!(
            asked(
                throttled,
                &[("retry-after", "5"), ("x-ratelimit-reset", "1796655660")]
            ),
            secs(5),
            "Retry-After first"
        );
        assert_eq!(
            asked(failed, &[("x-ratelimit-reset", "1796655660")]),
            None,
            "a 500 does not wait for the quota"
        );
        assert_eq!(asked(busy, &[("retry-after", "soon")]), None);
    }
}
