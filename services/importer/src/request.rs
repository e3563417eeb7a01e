//! A resource's request, filled from the environment when the importer
//! starts: the headers and credentials every request for it carries.
//!
//! Credentials never enter a page's URL. An API key that goes in the query
//! is added to each request as it is sent, so the URL that is logged, kept
//! in an object's metadata and sent in its message is the one without it;
//! header values are marked sensitive, so no `Debug` prints them.
//!
//! An OAuth2 client's token is asked for once and shared by every request
//! for the resource until shortly before it expires; a 401 to it has it
//! asked for again, once per request.

use base64::Engine as _;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use pipeline_core::spec::request::{Auth, ClientAuth, KeyPlace, Rate, Ref, RequestSpec, Template};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// An OAuth2 client's token, shared the same way.
    oauth2: Option<Arc<OAuth2>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("headers", &self.headers)
            .field("query_key", &self.query_key.as_ref().map(|(name, _)| name))
            .field("auth", &self.auth)
            .field("budget", &self.budget.is_some())
            .field(
                "oauth2",
                &self.oauth2.as_ref().map(|o| o.token_url.as_str()),
            )
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
            Auth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                client_auth,
            } => {
                let text = env.fill(token_url, "auth.token_url")?;
                let token_url = Url::parse(&text)
                    .map_err(|e| format!("`request.auth.token_url` {text:?} is not a URL: {e}"))?;
                request.oauth2 = Some(Arc::new(OAuth2 {
                    token_url,
                    client_id: env.fill(client_id, "auth.client_id")?,
                    client_secret: env.fill(client_secret, "auth.client_secret")?,
                    scope: scope.clone(),
                    client_auth: *client_auth,
                    token: tokio::sync::Mutex::new(None),
                }));
            }
        }
        Ok(request)
    }

    /// The `Authorization` value of an OAuth2 client, asked for if none is
    /// good; `None` for other kinds of auth.
    pub async fn token(&self, http: &reqwest::Client) -> Result<Option<HeaderValue>, TokenError> {
        match &self.oauth2 {
            Some(oauth2) => oauth2.authorization(http).await.map(Some),
            None => Ok(None),
        }
    }

    /// The API answered 401 to `used`: it is no good, whatever its expiry
    /// said. The next [`Request::token`] asks for a new one.
    pub async fn refused(&self, used: &HeaderValue) {
        if let Some(oauth2) = &self.oauth2 {
            let mut token = oauth2.token.lock().await;
            if token.as_ref().is_some_and(|t| t.authorization == *used) {
                *token = None;
            }
        }
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

    /// The same, spending `parent`'s rate budget unless it has its own.
    pub fn sharing_budget_of(&self, parent: &Self) -> Self {
        Self {
            budget: self.budget.clone().or_else(|| parent.budget.clone()),
            ..self.clone()
        }
    }

    /// Waits until the resource's rate budget allows one more request.
    pub async fn within_budget(&self) {
        if let Some(budget) = &self.budget {
            budget.until_ready().await;
        }
    }

    /// A GET of `url` with the resource's headers and credentials, and
    /// `token` ([`Request::token`]) if it has one.
    pub fn get(
        &self,
        http: &reqwest::Client,
        url: &Url,
        token: Option<HeaderValue>,
    ) -> reqwest::RequestBuilder {
        let mut url = url.clone();
        if let Some((name, value)) = &self.query_key {
            url.query_pairs_mut().append_pair(name, value);
        }
        let request = http.get(url).headers(self.headers.clone());
        match token {
            Some(token) => request.header(AUTHORIZATION, token),
            None => request,
        }
    }
}

/// An OAuth2 client (client credentials grant).
pub(crate) struct OAuth2 {
    token_url: Url,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
    client_auth: ClientAuth,
    /// One at a time: pages fetched at once wait for the same token.
    token: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    /// `Bearer ...`, marked sensitive.
    authorization: HeaderValue,
    /// When to ask for another: before it expires.
    renew_at: Option<Instant>,
}

/// Why no OAuth2 token could be had, without the client's secret.
#[derive(Debug)]
pub struct TokenError {
    pub message: String,
    /// A network failure, a 429 or a 5xx may pass.
    pub may_pass: bool,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl OAuth2 {
    async fn authorization(&self, http: &reqwest::Client) -> Result<HeaderValue, TokenError> {
        let mut token = self.token.lock().await;
        if let Some(good) = token
            .as_ref()
            .filter(|t| t.renew_at.is_none_or(|at| Instant::now() < at))
        {
            return Ok(good.authorization.clone());
        }
        let fresh = self.ask(http).await?;
        let authorization = fresh.authorization.clone();
        *token = Some(fresh);
        Ok(authorization)
    }

    /// POSTs the client credentials grant (RFC 6749, section 4.4.2).
    async fn ask(&self, http: &reqwest::Client) -> Result<Token, TokenError> {
        let url = &self.token_url;
        let failed = |message: String, may_pass: bool| TokenError {
            message: format!("POST {url} for an OAuth2 token {message}"),
            may_pass,
        };
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        let mut request = http.post(url.clone());
        match self.client_auth {
            ClientAuth::Basic => {
                // RFC 6749 section 2.3.1: each form-encoded, then Basic.
                let encode = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let pair = format!(
                    "{}:{}",
                    encode(&self.client_id),
                    encode(&self.client_secret)
                );
                let mut value = HeaderValue::from_str(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
                .map_err(|_| {
                    failed(
                        "cannot be asked: the client id or secret is not one HTTP can carry".into(),
                        false,
                    )
                })?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            ClientAuth::Body => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", &self.client_secret);
            }
        }
        let asked_at = Instant::now();
        let response = request
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form.finish())
            .send()
            .await
            .map_err(|e| {
                failed(
                    format!("failed: {}", pipeline_core::error_chain(&e.without_url())),
                    true,
                )
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            failed(
                format!("failed: {}", pipeline_core::error_chain(&e.without_url())),
                true,
            )
        })?;
        #[derive(serde::Deserialize)]
        struct Answer {
            access_token: Option<String>,
            expires_in: Option<u64>,
            /// RFC 6749 section 5.2: `invalid_client`, ...
            error: Option<String>,
        }
        let answer: Option<Answer> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            let error = answer
                .and_then(|a| a.error)
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            let may_pass =
                status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            return Err(failed(format!("answered HTTP {status}{error}"), may_pass));
        }
        let Some(Answer {
            access_token: Some(access_token),
            expires_in,
            ..
        }) = answer
        else {
            return Err(failed("answered no access_token".into(), false));
        };
        let mut authorization = HeaderValue::from_str(&format!("Bearer {access_token}"))
            .map_err(|_| failed("answered a token HTTP cannot carry".into(), false))?;
        authorization.set_sensitive(true);
        // Renewed a minute before it expires, or halfway for a short one,
        // so that no request is sent with a token about to lapse.
        let renew_at = expires_in.map(|secs| {
            let lifetime = Duration::from_secs(secs);
            asked_at + lifetime - (lifetime / 2).min(Duration::from_secs(60))
        });
        Ok(Token {
            authorization,
            renew_at,
        })
    }
}

/// `rate` as governor's quota: one request every `per / requests`, without
/// bursts, so that no window of `per` (a server's sliding or fixed window)
/// sees more than `requests`.
fn quota(rate: Rate) -> Quota {
    let every = rate.per / rate.requests.get();
    Quota::with_period(every.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| unreachable!("a period of at least a nanosecond"))
}

/// Where `${...}` is looked up: the process's environment, and the
/// secrets read at start.
pub(crate) struct Env<'a> {
    /// `resource `x`: `, for errors.
    pub place: String,
    pub lookup: &'a dyn Fn(&Ref<'_>) -> Option<String>,
}

impl Env<'_> {
    fn fill(&self, template: &Template, field: &str) -> Result<String, String> {
        self.fill_field(template, &format!("request.{field}"))
    }

    /// `template`, the value of the file's `field`.
    pub(crate) fn fill_field(&self, template: &Template, field: &str) -> Result<String, String> {
        template
            .fill(self.lookup)
            .map_err(|r| format!("{}`{field}` needs {r}, which is not set", self.place))
    }
}
