//! A small, deterministic stand-in for JSONPlaceholder's `/posts` and
//! `/comments`.
//!
//! The same settings always serve the same bytes, so tests can compare every
//! column of every row with [`post`] and [`comment`]. Titles, names and
//! bodies mix what breaks naive pipelines: accents, CJK, right-to-left text,
//! emoji, quotes, backslashes and newlines.
//!
//! Routes:
//! - `GET /posts`: a JSON array of [`FakeApi::posts`] posts. `?rev=N`
//!   serves revision N, in which every 7th post has a changed title.
//!   `?_page=P&_limit=L` serves one page as JSONPlaceholder does, with
//!   `X-Total-Count` (unless [`Faults::hide_total`]) and a `Link` header
//!   (`rel="next"`, `rel="last"`). [`Faults`] make it fail the way real APIs
//!   do: 503s, 429s with `Retry-After`, truncated bodies, slow answers, one
//!   page that always fails.
//! - `GET /comments`: the same for [`FakeApi::comments`] comments (every
//!   7th has a changed name in a revision), with the same pages and faults.
//! - `GET /fault/not-an-array`: a JSON object instead of an array.
//! - `GET /fault/not-json`: an HTML page.
//! - `GET /fault/bad-record`: an array of five posts whose record 3 has a
//!   string `id` (`?resource=comments`: five comments).
//! - `GET /fault/status/{code}`: an empty answer with that status.
//! - `GET /fault/stall-body`: a 200 with its headers and the first byte of
//!   an array, then nothing more, ever (a source that hangs mid-body).
//! - `GET /fault/no-answer`: the request is read and never answered.
//! - `GET /stats`: [`Stats`] of the requests to `/posts` and `/comments`
//!   so far, as JSON.
//! - `PUT /revision/{n}`: from now on `/posts` and `/comments` without
//!   `?rev` serve revision `n`: the same URLs, changed content.
//! - `GET /v2/tickets`: [`tickets`], records in an envelope, keyed by a
//!   string, with times, a nullable field, a decimal and a nested object.
//! - `GET /v3/tickets`: the same tickets paged by number, offset or cursor,
//!   behind credentials, and filtered by `updated_since` ([`v3`]).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use tokio::net::TcpListener;
use url::Url;

pub mod tickets;
pub mod v3;

/// What the fake serves.
#[derive(Debug, Clone)]
pub struct FakeApi {
    /// Number of posts at `/posts`, with ids 1..=posts.
    pub posts: u32,
    /// Number of comments at `/comments`, with ids 1..=comments.
    pub comments: u32,
    /// Sentences added to every body ([`post_with`]).
    pub extra_sentences: u32,
    pub faults: Faults,
    /// How `/v3/tickets` pages and whom it serves.
    pub v3: v3::Options,
}

impl Default for FakeApi {
    fn default() -> Self {
        // JSONPlaceholder's own counts.
        Self {
            posts: 100,
            comments: 500,
            extra_sentences: 0,
            faults: Faults::default(),
            v3: v3::Options::default(),
        }
    }
}

/// How `/posts` misbehaves. Rates are fractions of requests, from 0 to 1,
/// drawn from a generator seeded by [`Faults::seed`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer 503 Service Unavailable.
    pub failure_rate: f64,
    /// Answer 429 Too Many Requests with `Retry-After: retry_after_secs`.
    pub throttle_rate: f64,
    /// Answer the first this many requests to `/posts` with that 429.
    pub throttle_first: u32,
    pub retry_after_secs: u32,
    /// Answer 200 with only the first half of the body.
    pub truncate_rate: f64,
    /// Wait this long before every answer.
    pub delay: std::time::Duration,
    /// This page (`_page`) always answers 500.
    pub fail_page: Option<u32>,
    /// Leave out `X-Total-Count`, so clients must follow `Link`.
    pub hide_total: bool,
    /// The last page's `Link: rel="next"` points back to page 1, as a
    /// server whose paging wraps around does.
    pub link_back: bool,
    pub seed: u64,
}

const TITLES: &[&str] = &[
    "sunt aut facere repellat provident occaecati",
    "Crème brûlée à la française, s'il vous plaît",
    "東京の夜景と寿司の話",
    "Emoji in titles 🚀🦀✨ still count",
    "He said \"hello\" and 'goodbye'",
    r"C:\Users\posts\ and a trailing backslash \",
    "a title\nthat spans\nthree lines",
    "Straße, Ünïcödé and Ελληνικά",
    "עברית מימין לשמאל and English",
    "한국어 텍스트와 中文混合",
];

const SENTENCES: &[&str] = &[
    "quia et suscipit suscipit recusandae consequuntur expedita et cum",
    "Les données arrivent — et repartent — sans perte.",
    "データは失われず、重複もしない。",
    "Tabs\tand \"quotes\" and \\backslashes\\ survive the trip.",
    "Zero-width joiners 👩‍👩‍👧 and flags 🇫🇷🇯🇵 are several code points.",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Line one.\nLine two.\r\nLine three after CRLF.",
    "Mathematical ∑ ∫ √ ∞ and currency € £ ¥ ₹ signs.",
];

/// A post as JSONPlaceholder serves it: `{"userId": int, "id": int,
/// "title": str, "body": str}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Post {
    pub user_id: i64,
    pub id: i64,
    pub title: String,
    pub body: String,
}

/// A comment on a post as JSONPlaceholder serves it: `{"postId": int,
/// "id": int, "name": str, "email": str, "body": str}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub post_id: i64,
    pub id: i64,
    pub name: String,
    pub email: String,
    pub body: String,
}

/// Post `id` of revision `rev`: a pure function, so tests can recompute
/// exactly what the API served.
pub fn post(id: u32, rev: u32) -> Post {
    post_with(id, rev, 0)
}

/// Post `id` of revision `rev` with `extra` more sentences in its body:
/// 14 make posts of about 1.1 kB, as in the benchmark.
pub fn post_with(id: u32, rev: u32, extra: u32) -> Post {
    let i = id as usize;
    let title = headline(TITLES[i % TITLES.len()], id, rev);
    let body = sentences(i, 2 + i % 4 + extra as usize, 3);
    Post {
        user_id: i64::from((id - 1) / 10 + 1),
        id: i64::from(id),
        title,
        body,
    }
}

/// `base #id`, and what changes between revisions, for every resource: one
/// record in seven says which revision it is.
fn headline(base: &str, id: u32, rev: u32) -> String {
    if rev > 0 && id.is_multiple_of(7) {
        format!("{base} #{id} (revised {rev})")
    } else {
        format!("{base} #{id}")
    }
}

/// `count` of the sentences, one per line, from the `i`th, every `step`th.
fn sentences(i: usize, count: usize, step: usize) -> String {
    (0..count)
        .map(|s| SENTENCES[(i + s * step) % SENTENCES.len()])
        .collect::<Vec<_>>()
        .join("\n")
}

/// All posts of revision `rev`.
pub fn posts(count: u32, rev: u32) -> Vec<Post> {
    (1..=count).map(|id| post(id, rev)).collect()
}

const NAMES: &[&str] = &[
    "Eliseo",
    "Jayne_Kuhic",
    "Nikita",
    "o'brien+news",
    "Hayden.Althea",
];
const DOMAINS: &[&str] = &[
    "gardner.biz",
    "sydney.com",
    "garfield.biz",
    "alysha.tv",
    "xn--bcher-kva.example",
];

/// Comment `id` of revision `rev`, on post `(id - 1) / 5 + 1` as on
/// JSONPlaceholder: a pure function, like [`post`].
pub fn comment(id: u32, rev: u32) -> Comment {
    comment_with(id, rev, 0)
}

/// Comment `id` of revision `rev` with `extra` more sentences in its body.
pub fn comment_with(id: u32, rev: u32, extra: u32) -> Comment {
    let i = id as usize;
    let name = headline(TITLES[(i * 3) % TITLES.len()], id, rev);
    let email = format!(
        "{}{id}@{}",
        NAMES[i % NAMES.len()],
        DOMAINS[(i / NAMES.len()) % DOMAINS.len()]
    );
    let body = sentences(i, 1 + i % 3 + extra as usize, 5);
    Comment {
        post_id: i64::from((id - 1) / 5 + 1),
        id: i64::from(id),
        name,
        email,
        body,
    }
}

/// All comments of revision `rev`.
pub fn comments(count: u32, rev: u32) -> Vec<Comment> {
    (1..=count).map(|id| comment(id, rev)).collect()
}

/// A resource the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Posts,
    Comments,
}

impl Resource {
    /// Every resource the fake serves.
    pub const ALL: &[Self] = &[Self::Posts, Self::Comments];

    /// The resource called `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }

    /// As the pipeline names it, and the path it is served at.
    pub fn name(self) -> &'static str {
        match self {
            Self::Posts => "posts",
            Self::Comments => "comments",
        }
    }

    /// Record `id` of revision `rev`, as JSON.
    pub fn record(self, id: u32, rev: u32) -> serde_json::Value {
        self.record_with(id, rev, 0)
    }

    /// Records `1..=count` of revision `rev`, as JSON.
    pub fn records(self, count: u32, rev: u32) -> Vec<serde_json::Value> {
        (1..=count).map(|id| self.record(id, rev)).collect()
    }

    /// The exact bytes `/{name}?rev={rev}` serves with `count` records.
    pub fn body(self, count: u32, rev: u32) -> Vec<u8> {
        body_chunks(self, 1, count, rev, 0).flatten().collect()
    }

    /// A text field its records have: posts' `title`, comments' `name`.
    pub fn text_field(self) -> &'static str {
        match self {
            Self::Posts => "title",
            Self::Comments => "name",
        }
    }

    /// How many [`FakeApi::default`] serves: 100 posts, 500 comments.
    pub fn default_count(self) -> u32 {
        self.count(&FakeApi::default())
    }

    /// How many the fake serves.
    pub fn count(self, api: &FakeApi) -> u32 {
        match self {
            Self::Posts => api.posts,
            Self::Comments => api.comments,
        }
    }

    fn record_with(self, id: u32, rev: u32, extra: u32) -> serde_json::Value {
        let value = match self {
            Self::Posts => serde_json::to_value(post_with(id, rev, extra)),
            Self::Comments => serde_json::to_value(comment_with(id, rev, extra)),
        };
        value.unwrap_or_else(|e| unreachable!("records serialize: {e}"))
    }

    fn write(self, out: &mut Vec<u8>, id: u32, rev: u32, extra: u32) {
        let written = match self {
            Self::Posts => serde_json::to_writer(out, &post_with(id, rev, extra)),
            Self::Comments => serde_json::to_writer(out, &comment_with(id, rev, extra)),
        };
        written.unwrap_or_else(|e| unreachable!("records serialize: {e}"));
    }
}

/// The exact bytes `/posts?rev={rev}` serves.
pub fn body(count: u32, rev: u32) -> Vec<u8> {
    body_chunks(Resource::Posts, 1, count, rev, 0)
        .flatten()
        .collect()
}

/// Records `first..=last` as a JSON array, in chunks of 1,000 records: a
/// body of any size is generated as it is sent, never held whole.
fn body_chunks(
    resource: Resource,
    first: u32,
    last: u32,
    rev: u32,
    extra: u32,
) -> impl Iterator<Item = Vec<u8>> {
    const CHUNK: u32 = 1_000;
    let starts = (first..=last).step_by(CHUNK as usize);
    std::iter::once(b"[".to_vec())
        .chain(starts.map(move |start| {
            let end = start.saturating_add(CHUNK - 1).min(last);
            let mut chunk = Vec::with_capacity(CHUNK as usize * 400);
            for id in start..=end {
                if id != first {
                    chunk.push(b',');
                }
                resource.write(&mut chunk, id, rev, extra);
            }
            chunk
        }))
        .chain(std::iter::once(b"]".to_vec()))
}

#[derive(Debug, Deserialize)]
struct PostsQuery {
    /// Without it: the revision `PUT /revision/{n}` set (0 at first).
    rev: Option<u32>,
    #[serde(rename = "_page")]
    page: Option<u32>,
    #[serde(rename = "_limit")]
    limit: Option<u32>,
}

/// The served configuration and a request counter for the fault generator.
#[derive(Debug)]
struct Served {
    api: FakeApi,
    rng: std::sync::Mutex<fastrand::Rng>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
    /// What `/posts`, `/comments` and `/v2/tickets` serve without `?rev`.
    revision: AtomicU32,
    /// Requests to `/v3/tickets`, answered or refused.
    v3_requests: AtomicU64,
    /// Of those, refused for [`v3::Options::per_second`].
    v3_throttled: AtomicU64,
    v3_window: v3::Window,
    tokens: v3::Tokens,
    /// Requests to `/v3/tickets/{id}/comments` let through.
    v3_comment_requests: AtomicU64,
}

/// What `GET /stats` reports, so that a test can check how a client
/// treated the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The most requests to `/posts` and `/comments` that were being
    /// answered at once.
    pub most_in_flight: u64,
    /// Requests to `/v3/tickets`, answered or refused.
    pub v3_requests: u64,
    /// Of those, answered 429 for going over the rate limit.
    pub v3_throttled: u64,
    /// OAuth2 tokens issued by `POST /oauth/token`.
    pub tokens_issued: u64,
    /// Requests to `/v3/tickets/{id}/comments` let through.
    pub v3_comment_requests: u64,
}

/// Counts a request to `/posts` as in flight until it is dropped.
struct InFlight<'a>(&'a Served);

impl<'a> InFlight<'a> {
    fn start(served: &'a Served) -> Self {
        let now = served.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        served.most_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(served)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The routes, for serving with any listener.
pub fn router(api: FakeApi) -> Router {
    Router::new()
        .route("/{resource}", get(list))
        .route("/fault/not-an-array", get(not_an_array))
        .route("/fault/not-json", get(not_json))
        .route("/fault/bad-record", get(bad_record))
        .route("/fault/status/{code}", get(status))
        .route("/fault/stall-body", get(stall_body))
        .route("/fault/no-answer", get(no_answer))
        .route("/stats", get(stats))
        .route("/revision/{rev}", put(set_revision))
        .route("/v2/tickets", get(tickets::tickets))
        .route("/v3/tickets", get(v3::tickets))
        .route("/v3/tickets/{id}/comments", get(v3::comments))
        .route("/oauth/token", axum::routing::post(v3::token))
        .with_state(Arc::new(Served {
            rng: std::sync::Mutex::new(fastrand::Rng::with_seed(api.faults.seed)),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            most_in_flight: AtomicU64::new(0),
            revision: AtomicU32::new(0),
            v3_requests: AtomicU64::new(0),
            v3_throttled: AtomicU64::new(0),
            v3_window: v3::Window::default(),
            tokens: v3::Tokens::default(),
            v3_comment_requests: AtomicU64::new(0),
            api,
        }))
}

/// Serves on an ephemeral port of 127.0.0.1 in the background, for tests.
/// Returns the base URL, e.g. `http://127.0.0.1:41234/`.
pub async fn spawn(api: FakeApi) -> std::io::Result<Url> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router(api)).await });
    Ok(base_url(addr))
}

pub fn base_url(addr: SocketAddr) -> Url {
    Url::parse(&format!("http://{addr}/"))
        .unwrap_or_else(|e| unreachable!("a socket address is a host: {e}"))
}

fn json(body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| unreachable!("posts serialize: {e}"))
}

async fn set_revision(State(served): State<Arc<Served>>, Path(rev): Path<u32>) -> StatusCode {
    served.revision.store(rev, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

async fn list(
    Path(name): Path<String>,
    State(served): State<Arc<Served>>,
    Query(q): Query<PostsQuery>,
    uri: axum::http::Uri,
) -> Response {
    let Some(resource) = Resource::named(&name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let _in_flight = InFlight::start(&served);
    let (api, faults) = (&served.api, &served.api.faults);
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if q.page.is_some() && q.page == faults.fail_page {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let request = served.requests.fetch_add(1, Ordering::SeqCst);
    let draw = served.rng.lock().map(|mut r| r.f64()).unwrap_or(1.0);
    if request < u64::from(faults.throttle_first) {
        let retry_after = faults.retry_after_secs.to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
        )
            .into_response();
    }
    if draw < faults.failure_rate {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if draw < faults.failure_rate + faults.throttle_rate {
        let retry_after = faults.retry_after_secs.to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
        )
            .into_response();
    }
    let truncate = draw < faults.failure_rate + faults.throttle_rate + faults.truncate_rate;
    let rev = q
        .rev
        .unwrap_or_else(|| served.revision.load(Ordering::SeqCst));

    let Some(limit) = q.limit.filter(|l| *l > 0) else {
        // The whole array, generated as it is sent; a truncated answer
        // stops halfway, without its closing bracket.
        let (extra, count) = (api.extra_sentences, resource.count(api));
        let last = if truncate { count / 2 } else { count };
        let chunks = body_chunks(resource, 1, last, rev, extra)
            .filter(move |c| !(truncate && c.as_slice() == b"]"))
            .map(|c| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(c)));
        return (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            axum::body::Body::from_stream(futures::stream::iter(chunks)),
        )
            .into_response();
    };
    let page = q.page.unwrap_or(1).max(1);
    let first = (page - 1).saturating_mul(limit) + 1;
    let count = resource.count(api);
    let last = page.saturating_mul(limit).min(count);
    let records: Vec<serde_json::Value> = (first..=last)
        .map(|id| resource.record_with(id, rev, api.extra_sentences))
        .collect();
    let pages = count.div_ceil(limit);
    let link = |n: u32| {
        // The revision asked for, if any: a page's URL stays the same
        // across revisions set with `PUT /revision/{n}`.
        let rev = q.rev.map(|r| format!("&rev={r}")).unwrap_or_default();
        let query = format!("_page={n}&_limit={limit}{rev}");
        format!("<{}?{query}>", uri.path())
    };
    let mut links = vec![format!("{}; rel=\"last\"", link(pages.max(1)))];
    if page < pages {
        links.insert(0, format!("{}; rel=\"next\"", link(page + 1)));
    } else if faults.link_back {
        links.insert(0, format!("{}; rel=\"next\"", link(1)));
    }
    let mut response = json(cut(to_json(&records), truncate));
    let headers = response.headers_mut();
    headers.insert(
        header::LINK,
        links
            .join(", ")
            .parse()
            .unwrap_or_else(|_| unreachable!("ASCII")),
    );
    if !faults.hide_total {
        headers.insert("x-total-count", count.into());
    }
    response
}

/// The first half of `body` when `truncate`: a body cut off mid-transfer.
fn cut(mut body: Vec<u8>, truncate: bool) -> Vec<u8> {
    if truncate {
        body.truncate(body.len() / 2);
    }
    body
}

async fn stats(State(served): State<Arc<Served>>) -> Response {
    json(to_json(&Stats {
        most_in_flight: served.most_in_flight.load(Ordering::SeqCst),
        v3_requests: served.v3_requests.load(Ordering::SeqCst),
        v3_throttled: served.v3_throttled.load(Ordering::SeqCst),
        tokens_issued: served.tokens.issued(),
        v3_comment_requests: served.v3_comment_requests.load(Ordering::SeqCst),
    }))
}

async fn not_an_array() -> Response {
    json(br#"{"message": "this is an object, not an array"}"#.to_vec())
}

async fn not_json() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html")],
        "<html><body>Service moved</body></html>",
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct BadRecordQuery {
    resource: Option<String>,
}

async fn bad_record(Query(q): Query<BadRecordQuery>) -> Response {
    let resource = q
        .resource
        .as_deref()
        .and_then(Resource::named)
        .unwrap_or(Resource::Posts);
    let mut records = resource.records(5, 0);
    records[3]["id"] = serde_json::Value::from("four");
    json(to_json(&records))
}

async fn status(Path(code): Path<u16>) -> Response {
    StatusCode::from_u16(code)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

async fn stall_body() -> Response {
    let first = futures::stream::once(async {
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(b"["))
    });
    let body = first.chain(futures::stream::pending());
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

async fn no_answer() -> Response {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_are_deterministic_and_varied() {
        assert_eq!(posts(100, 0), posts(100, 0));
        let all = posts(100, 0);
        let text: String = all
            .iter()
            .map(|p| format!("{}{}", p.title, p.body))
            .collect();
        for needle in ["é", "東", "🦀", "\"", "\\", "\n", "\t"] {
            assert!(text.contains(needle), "missing {needle:?}");
        }
        assert_eq!(all[0].user_id, 1);
        assert_eq!(all[99].user_id, 10);
    }

    #[test]
    fn a_revision_changes_every_seventh_title() {
        let (old, new) = (posts(100, 0), posts(100, 1));
        let changed: Vec<i64> = old
            .iter()
            .zip(&new)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.id)
            .collect();
        assert_eq!(changed, (1..=14).map(|k| k * 7).collect::<Vec<_>>());
    }

    #[test]
    fn comments_are_valid_varied_and_five_to_a_post() {
        use pipeline_core::resources::Resource as _;
        let all = comments(500, 0);
        let body = serde_json::to_vec(&all).unwrap();
        let spec = pipeline_core::spec::Spec::built_in();
        let parsed = spec.resource("comments").unwrap().parse(&body).unwrap();
        assert!(parsed.bad.is_empty(), "{:?}", parsed.bad.first());
        assert_eq!(parsed.columns.rows(), all.len());
        assert_eq!(serde_json::from_slice::<Vec<Comment>>(&body).unwrap(), all);
        let text: String = all
            .iter()
            .map(|c| format!("{}{}", c.name, c.body))
            .collect();
        for needle in ["é", "東", "🦀", "\"", "\\", "\n"] {
            assert!(text.contains(needle), "missing {needle:?}");
        }
        assert_eq!((all[0].post_id, all[4].post_id, all[5].post_id), (1, 1, 2));
        assert_eq!(all[499].post_id, 100);
        let changed = all
            .iter()
            .zip(comments(500, 1))
            .filter(|(a, b)| *a != b)
            .count();
        assert_eq!(changed, 500 / 7);
    }
}
