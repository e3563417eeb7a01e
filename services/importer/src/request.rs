//! A resource's request, filled from the environment when the importer
//! starts: the headers and credentials every request for it carries.
//!
//! Credentials never enter a page's URL. An API key that goes in the query
//! is added to each request as it is sent, so the URL that is logged, kept
//! in an object's metadata and sent in its message is the one without it;
//! header values are marked sensitive, so no `Debug` prints them.

use base64::Engine as _;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use pipeline_core::spec::request::{Auth, KeyPlace, Rate, RequestSpec, Template};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use url::Url;

/// What every request for one resource carries.
#[derive(Clone, Default)]
pub struct Request {
    headers: HeaderMap,
    /// An API key sent in the query: its parameter and value.
    query_key: Option<(String, String)>,
    /// The kind of `request.auth`, for errors.
    pub auth: Option<&'static str>,
    /// `request.rate`: shared by every request for the resource, retries
    /// included.
    budget: Option<Arc<DefaultDirectRateLimiter>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("headers", &self.headers)
            .field("query_key", &self.query_key.as_ref().map(|(name, _)| name))
            .field("auth", &self.auth)
            .field("budget", &self.budget.is_some())
            .finish()
    }
}

/// The resource's URL: `given` (by `RESOURCES`), else its file's
/// `request.url`, else `base`; with `request.query` added.
pub(crate) fn url(
    spec: &RequestSpec,
    given: Option<Url>,
    base: Url,
    env: &Env<'_>,
) -> Result<Url, String> {
    let mut url = match (given, &spec.url) {
        (Some(url), _) => url,
        (None, Some(template)) => {
            let text = env.fill(template, "url")?;
            let url = Url::parse(&text)
                .map_err(|e| format!("`request.url` {text:?} is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "`request.url` {text:?} is not an http:// or https:// URL"
                ));
            }
            url
        }
        (None, None) => base,
    };
    for (name, value) in &spec.query {
        let value = env.fill(value, &format!("query.{name}"))?;
        url.query_pairs_mut().append_pair(name, &value);
    }
    Ok(url)
}

impl Request {
    /// The headers and credentials of `spec`, filled from `env`.
    pub(crate) fn new(spec: &RequestSpec, env: &Env<'_>) -> Result<Self, String> {
        let mut request = Self {
            budget: spec
                .rate
                .map(|rate| Arc::new(RateLimiter::direct(quota(rate)))),
            ..Self::default()
        };
        for (name, value) in &spec.headers {
            let value = env.fill(value, &format!("headers.{name}"))?;
            request.insert(name, &value, false)?;
        }
        let Some(auth) = &spec.auth else {
            return Ok(request);
        };
        request.auth = Some(auth.kind());
        match auth {
            Auth::Bearer { token } => {
                let token = env.fill(token, "auth.token")?;
                request.insert(AUTHORIZATION.as_str(), &format!("Bearer {token}"), true)?;
            }
            Auth::Basic { username, password } => {
                let pair = format!(
                    "{}:{}",
                    env.fill(username, "auth.username")?,
                    env.fill(password, "auth.password")?
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                request.insert(AUTHORIZATION.as_str(), &format!("Basic {encoded}"), true)?;
            }
            Auth::ApiKey { name, value, place } => {
                let value = env.fill(value, "auth.value")?;
                match place {
                    KeyPlace::Header => request.insert(name, &value, true)?,
                    KeyPlace::Query => request.query_key = Some((name.clone(), value)),
                }
            }
        }
        Ok(request)
    }

    fn insert(&mut self, name: &str, value: &str, sensitive: bool) -> Result<(), String> {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("`request.headers`: {name:?}: {e}"))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            // The value may be a secret: name the header only.
            format!("the value of header {name} is not one HTTP can carry (a line break, or a control character?)")
        })?;
        value.set_sensitive(sensitive);
        self.headers.insert(header, value);
        Ok(())
    }

    /// Waits until the resource's rate budget allows one more request.
    pub async fn within_budget(&self) {
        if let Some(budget) = &self.budget {
            budget.until_ready().await;
        }
    }

    /// A GET of `url` with the resource's headers and credentials.
    pub fn get(&self, http: &reqwest::Client, url: &Url) -> reqwest::RequestBuilder {
        let mut url = url.clone();
        if let Some((name, value)) = &self.query_key {
            url.query_pairs_mut().append_pair(name, value);
        }
        http.get(url).headers(self.headers.clone())
    }
}

/// `rate` as governor's quota: one request every `per / requests`, without
/// bursts, so that no window of `per` (a server's sliding or fixed window)
/// sees more than `requests`.
fn quota(rate: Rate) -> Quota {
    let every = rate.per / rate.requests.get();
    Quota::with_period(every.max(std::time::Duration::from_nanos(1)))
        .unwrap_or_else(|| unreachable!("a period of at least a nanosecond"))
}

/// Where `${VAR}` is looked up: the process's environment, in a service.
pub(crate) struct Env<'a> {
    /// `resource `x`: `, for errors.
    pub place: String,
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn fill(&self, template: &Template, field: &str) -> Result<String, String> {
        template.fill(self.lookup).map_err(|var| {
            format!(
                "{}`request.{field}` needs the environment variable {var}, which is not set",
                self.place
            )
        })
    }
}
