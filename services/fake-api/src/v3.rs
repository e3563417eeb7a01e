//! `GET /v3/tickets`: the tickets of [`crate::tickets`], served the ways
//! real APIs page, authenticate and filter, so that the importer's tests
//! can cover each kind a resources file names:
//!
//! - pages by number (`?page=2&per_page=25`), by offset
//!   (`?offset=50&limit=25`) or by cursor (`?cursor=...`); an empty page
//!   past the end;
//! - every answer says what comes next in each way APIs say it:
//!   `{"data": [...], "meta": {"total", "next_cursor", "has_more"},
//!   "links": {"next": URL}}`, and the headers `X-Total-Count`,
//!   `X-Next-Cursor` and `Link: rel="next"`;
//! - `?updated_since=TIME` (RFC 3339) serves only tickets updated at or
//!   after it, in order of `updated_at`: a moved ticket's `updated_at`
//!   is 30 days later in each revision, so incremental loads have something
//!   to find;
//! - with [`Options::credentials`], a 401 without one of them:
//!   `Authorization: Bearer`, `Authorization: Basic`, `X-Api-Key`, or
//!   `?api_key=`; with [`Options::oauth`], a 401 without a live token from
//!   `POST /oauth/token`;
//! - with [`Options::per_second`], a 429 past that many requests a second;
//! - `GET /v3/tickets/{id}/comments`: each ticket's 0 to 3 comments, behind
//!   the same credentials and limit, for resources fetched per key of
//!   another.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Served;
use crate::tickets::{TICKETS, ticket};

/// Records per page when the request names no size.
pub const DEFAULT_PAGE_SIZE: u32 = 25;
/// The most records a page holds, whatever is asked.
pub const MAX_PAGE_SIZE: u32 = 100;

/// How `/v3/tickets` behaves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Without these, anyone is served.
    pub credentials: Option<Credentials>,
    /// Every page names the same next cursor, as a broken server does.
    pub stuck_cursor: bool,
    /// At most this many requests in any second; more are answered 429
    /// with `RateLimit-Reset: 1`.
    pub per_second: Option<u32>,
    /// An OAuth2 server at `POST /oauth/token` whose tokens are let in.
    pub oauth: Option<OAuthServer>,
    /// The comments of this ticket always answer 500.
    pub failing_comments: Option<u32>,
}

/// What `POST /oauth/token` takes and gives (client credentials grant).
#[derive(Debug, Clone)]
pub struct OAuthServer {
    pub client_id: String,
    pub client_secret: String,
    /// Its tokens' `expires_in`.
    pub lifetime_secs: u64,
    /// A token is refused after this many uses, as if revoked early.
    pub revoke_after: Option<u32>,
}

/// The tokens issued: when each expires and how often it was used.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    issued: AtomicU64,
    live: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>,
}

impl Tokens {
    /// How many were issued.
    pub(crate) fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }

    fn issue(&self, lifetime: std::time::Duration) -> String {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("oat-{n}-{:x}", fastrand::u64(..));
        if let Ok(mut live) = self.live.lock() {
            live.insert(token.clone(), (std::time::Instant::now() + lifetime, 0));
        }
        token
    }

    /// Whether `token` is live, counting the use.
    fn admit(&self, token: &str, revoke_after: Option<u32>) -> bool {
        let Ok(mut live) = self.live.lock() else {
            return false;
        };
        match live.get_mut(token) {
            Some((expires, uses))
                if std::time::Instant::now() < *expires
                    && revoke_after.is_none_or(|max| *uses < max) =>
            {
                *uses += 1;
                true
            }
            _ => false,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth/token`: RFC 6749 section 4.4, the client's credentials in
/// HTTP Basic (each form-encoded) or in the form.
pub(crate) async fn token(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<TokenForm>,
) -> Response {
    let Some(server) = &served.api.v3.oauth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let refused = |status: StatusCode, error: &str| {
        (status, format!(r#"{{"error":"{error}"}}"#)).into_response()
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return refused(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let from_basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok()?.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|pair| {
            let pair = String::from_utf8(pair).ok()?;
            let (id, secret) = pair.split_once(':')?;
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    let given = from_basic.or(form.client_id.zip(form.client_secret));
    if given != Some((server.client_id.clone(), server.client_secret.clone())) {
        return refused(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let token = served
        .tokens
        .issue(std::time::Duration::from_secs(server.lifetime_secs));
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"access_token": token, "token_type": "Bearer", "expires_in": server.lifetime_secs})
            .to_string(),
    )
        .into_response()
}

/// What the server takes as proof, any one of them.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub token: String,
    pub username: String,
    pub password: String,
    pub api_key: String,
    /// A bearer token that is known but may not read tickets: a 403.
    pub forbidden_token: Option<String>,
}

/// When ticket `n` of revision `rev` was last updated: when it was opened,
/// and 30 days later per revision for every 5th ticket, the ones that move:
/// after every ticket that did not.
pub fn updated_at(n: u32, rev: u32) -> OffsetDateTime {
    let opened = 1_764_576_000 + i64::from(n) * 3_600;
    let moved = if n.is_multiple_of(5) {
        i64::from(rev)
    } else {
        0
    };
    OffsetDateTime::from_unix_timestamp(opened + moved * 30 * 86_400)
        .unwrap_or_else(|_| unreachable!("a time in range"))
}

/// Ticket `n` of revision `rev` as `/v3/tickets` serves it: with its
/// `updated_at`.
pub fn record(n: u32, rev: u32) -> Value {
    let mut record = ticket(n, rev);
    record["updated_at"] = Value::from(
        updated_at(n, rev)
            .format(&Rfc3339)
            .unwrap_or_else(|_| unreachable!("a time in range")),
    );
    record
}

/// The ticket numbers served for `since`, in order of `updated_at`, then id.
pub fn ordered(rev: u32, since: Option<OffsetDateTime>) -> Vec<u32> {
    let mut numbers: Vec<u32> = (1..=TICKETS)
        .filter(|&n| since.is_none_or(|since| updated_at(n, rev) >= since))
        .collect();
    numbers.sort_by_key(|&n| (updated_at(n, rev), n));
    numbers
}

#[derive(Debug, Deserialize)]
pub(crate) struct V3Query {
    page: Option<u32>,
    per_page: Option<u32>,
    offset: Option<u32>,
    limit: Option<u32>,
    cursor: Option<String>,
    updated_since: Option<String>,
    rev: Option<u32>,
    api_key: Option<String>,
}

pub(crate) async fn tickets(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    Query(q): Query<V3Query>,
) -> Response {
    if let Some(refused) = guard(&served, &headers, q.api_key.as_deref()) {
        return refused;
    }
    let options = &served.api.v3;
    let since = match q
        .updated_since
        .as_deref()
        .map(|s| OffsetDateTime::parse(s, &Rfc3339))
    {
        None => None,
        Some(Ok(since)) => Some(since),
        Some(Err(e)) => {
            return (StatusCode::BAD_REQUEST, format!("updated_since: {e}")).into_response();
        }
    };
    let rev = q
        .rev
        .unwrap_or_else(|| served.revision.load(Ordering::SeqCst));
    let size = q
        .per_page
        .or(q.limit)
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE);
    let start = match (&q.cursor, q.offset, q.page) {
        (Some(cursor), _, _) => match decode_cursor(cursor) {
            Some(start) => start,
            None => return (StatusCode::BAD_REQUEST, "cursor: unknown").into_response(),
        },
        (None, Some(offset), _) => offset,
        (None, None, page) => (page.unwrap_or(1).max(1) - 1).saturating_mul(size),
    };
    let numbers = ordered(rev, since);
    let total = numbers.len() as u32;
    let end = start.saturating_add(size).min(total);
    let data: Vec<Value> = numbers
        .get(start as usize..end as usize)
        .unwrap_or_default()
        .iter()
        .map(|&n| record(n, rev))
        .collect();
    let has_more = end < total;
    let next_cursor = if options.stuck_cursor {
        Some(encode_cursor(size))
    } else {
        has_more.then(|| encode_cursor(end))
    };
    let next_url = next_cursor.as_ref().map(|cursor| {
        let mut query = format!("cursor={cursor}&per_page={size}");
        for (name, value) in [
            ("updated_since", &q.updated_since),
            ("rev", &q.rev.map(|r| r.to_string())),
        ] {
            if let Some(value) = value {
                query.push_str(&format!("&{name}={}", encode(value)));
            }
        }
        format!("/v3/tickets?{query}")
    });
    let body = json!({
        "data": data,
        "meta": {"total": total, "next_cursor": next_cursor, "has_more": has_more},
        "links": {"next": next_url},
    });
    let mut response = (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    let out = response.headers_mut();
    out.insert("x-total-count", total.into());
    if let (Some(cursor), Some(url)) = (next_cursor, next_url) {
        let ascii = |s: String| s.parse().unwrap_or_else(|_| unreachable!("ASCII"));
        out.insert("x-next-cursor", ascii(cursor));
        out.insert(header::LINK, ascii(format!("<{url}>; rel=\"next\"")));
    }
    response
}

/// The times of the requests of the last second: a sliding window.
#[derive(Debug, Default)]
pub(crate) struct Window(std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>);

impl Window {
    /// Whether one more request fits in the last second's `limit`.
    fn admit(&self, limit: u32) -> bool {
        let now = std::time::Instant::now();
        let Ok(mut times) = self.0.lock() else {
            return false;
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= std::time::Duration::from_secs(1))
        {
            times.pop_front();
        }
        if times.len() >= limit as usize {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// The rate limit and the credentials every `/v3` route checks, in that
/// order: what the answer is when the request is turned away.
fn guard(served: &Served, headers: &HeaderMap, api_key: Option<&str>) -> Option<Response> {
    served.v3_requests.fetch_add(1, Ordering::SeqCst);
    let options = &served.api.v3;
    if let Some(limit) = options.per_second
        && !served.v3_window.admit(limit)
    {
        served.v3_throttled.fetch_add(1, Ordering::SeqCst);
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("ratelimit-reset", "1")],
                r#"{"error":"rate limit"}"#,
            )
                .into_response(),
        );
    }
    let guarded = options.credentials.is_some() || options.oauth.is_some();
    let with_credentials = options
        .credentials
        .as_ref()
        .is_some_and(|c| c.admit(headers, api_key));
    let with_token = options.oauth.as_ref().is_some_and(|server| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()?.strip_prefix("Bearer "))
            .is_some_and(|token| served.tokens.admit(token, server.revoke_after))
    });
    let forbidden = options.credentials.as_ref().is_some_and(|c| {
        c.forbidden_token.as_ref().is_some_and(|token| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                == Some(format!("Bearer {token}").as_str())
        })
    });
    if forbidden {
        return Some((StatusCode::FORBIDDEN, r#"{"error":"insufficient_scope"}"#).into_response());
    }
    (guarded && !with_credentials && !with_token).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            r#"{"error":"unauthorized"}"#,
        )
            .into_response()
    })
}

/// How many comments ticket `n` has: 0 to 3.
pub fn comment_count(n: u32) -> u32 {
    n % 4
}

/// Comment `c` (from 1) of ticket `n`.
pub fn comment(n: u32, c: u32) -> Value {
    json!({
        "id": format!("TCK-{n:05}-{c}"),
        "ticket_id": format!("TCK-{n:05}"),
        "body": format!("Comment {c} on ticket {n}: « toner » — 東京"),
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct CommentsQuery {
    api_key: Option<String>,
}

/// `GET /v3/tickets/{id}/comments`: a ticket's comments, a JSON array; a
/// 404 for a ticket there is not.
pub(crate) async fn comments(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<CommentsQuery>,
) -> Response {
    if let Some(refused) = guard(&served, &headers, q.api_key.as_deref()) {
        return refused;
    }
    served.v3_comment_requests.fetch_add(1, Ordering::SeqCst);
    let n = id
        .strip_prefix("TCK-")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=TICKETS).contains(n));
    let Some(n) = n else {
        return (StatusCode::NOT_FOUND, r#"{"error":"no such ticket"}"#).into_response();
    };
    if served.api.v3.failing_comments == Some(n) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let comments: Vec<Value> = (1..=comment_count(n)).map(|c| comment(n, c)).collect();
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        Value::from(comments).to_string(),
    )
        .into_response()
}

impl Credentials {
    fn admit(&self, headers: &HeaderMap, api_key: Option<&str>) -> bool {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password));
        match header(header::AUTHORIZATION.as_str()) {
            Some(auth) if auth == format!("Bearer {}", self.token) => return true,
            Some(auth) if auth == format!("Basic {basic}") => return true,
            _ => {}
        }
        header("x-api-key") == Some(&self.api_key) || api_key == Some(&self.api_key)
    }
}

/// An opaque cursor for the position `at`.
fn encode_cursor(at: u32) -> String {
    format!("c{:x}", at ^ 0x5eed)
}

fn decode_cursor(cursor: &str) -> Option<u32> {
    u32::from_str_radix(cursor.strip_prefix('c')?, 16)
        .ok()
        .map(|n| n ^ 0x5eed)
}

/// For a query string: what RFC 3339 times carry that a query cannot.
fn encode(value: &str) -> String {
    value.replace('+', "%2B").replace(':', "%3A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_go_and_come_back() {
        for at in [0, 25, 119, 4096] {
            assert_eq!(decode_cursor(&encode_cursor(at)), Some(at));
        }
        assert_eq!(decode_cursor("x"), None);
    }

    #[test]
    fn a_revision_moves_every_fifth_ticket_to_the_end() {
        assert_eq!(ordered(0, None), (1..=TICKETS).collect::<Vec<_>>());
        let since = updated_at(TICKETS, 0);
        let moved: Vec<u32> = ordered(1, Some(since));
        assert_eq!(moved, (1..=TICKETS / 5).map(|k| k * 5).collect::<Vec<_>>());
    }
}
