//! How the importer asks an API for a resource's records: its
//! `[resources.NAME.request]` table (URL, query, headers, auth, pagination)
//! and its `[resources.NAME.incremental]` table.
//!
//! Only the importer sends requests, but both services read the whole file,
//! so a mistake here stops either of them at start, in one line. Text that
//! may hold `${VAR}` ([`Template`]) is kept as written: the importer fills it
//! from its environment when it starts ([`Template::fill`]), so that a secret
//! is never part of the file and the transformer needs none of them.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

use super::{ColumnSpec, ColumnType, Epoch, Mistake, pointer};

/// A resource's request, as its file says.
#[derive(Debug, Clone, Default)]
pub struct RequestSpec {
    /// `None`: from `RESOURCES` or `SOURCE_URL`, as without a file.
    pub url: Option<Template>,
    /// Added to the URL's query.
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub auth: Option<Auth>,
    /// `None`: the importer's own settings (`Link: rel="next"`, and with
    /// `PAGE_SIZE`, `_page`/`_limit`).
    pub pagination: Option<Pagination>,
    /// At most this many requests in any window of its period.
    pub rate: Option<Rate>,
}

/// A rate budget: `requests` per `per`, spread evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub requests: std::num::NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// `10/s`, `600/min`, `5000/h`.
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("{text:?} is not a rate: write requests per period, e.g. 10/s, 600/min, 5000/h")
        };
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let requests = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3_600),
            _ => return Err(bad()),
        };
        Ok(Self { requests, per })
    }
}

/// How the importer proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer TOKEN`.
    Bearer { token: Template },
    /// `Authorization: Basic base64(USERNAME:PASSWORD)`.
    Basic {
        username: Template,
        password: Template,
    },
    /// A key in a header (`X-Api-Key: KEY`) or in the query (`?api_key=KEY`).
    /// In the query, it is added to each request as it is sent and never
    /// kept in the page's URL: not in logs, metadata or messages.
    ApiKey {
        name: String,
        value: Template,
        place: KeyPlace,
    },
    /// OAuth 2.0 client credentials (RFC 6749, section 4.4): a token asked
    /// for at `token_url`, kept until shortly before it expires, and asked
    /// for again once when the API answers 401.
    OAuth2 {
        token_url: Template,
        client_id: Template,
        client_secret: Template,
        scope: Option<String>,
        client_auth: ClientAuth,
    },
}

/// How an OAuth2 client proves who it is to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`, RFC 6749 section 2.3.1).
    Basic,
    /// In the form body (`client_secret_post`).
    Body,
}

impl Auth {
    /// As the file writes its kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bearer { .. } => "bearer",
            Self::Basic { .. } => "basic",
            Self::ApiKey { .. } => "api_key",
            Self::OAuth2 { .. } => "oauth2",
        }
    }
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPlace {
    Header,
    Query,
}

/// How the pages of a resource follow one another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagination {
    /// One request: the answer holds every record.
    None,
    /// `Link: <URL>; rel="next"` (RFC 8288), as GitHub and JSONPlaceholder
    /// send.
    Link,
    /// Numbered pages: `?page=1`, `?page=2`, ... until an empty page, the
    /// total, or `more` says there are no more.
    Page {
        param: String,
        /// The page size's parameter and value, when the API takes one.
        size: Option<(String, u32)>,
        first: u32,
        ends: Ends,
    },
    /// `?offset=0&limit=100`, `?offset=100&limit=100`, ... with the same ends
    /// as numbered pages.
    Offset {
        param: String,
        limit_param: String,
        limit: u32,
        ends: Ends,
    },
    /// Each answer names the next cursor, sent back as `param`; no cursor
    /// (absent, null or empty) is the last page.
    Cursor {
        param: String,
        next: ValueAt,
        size: Option<(String, u32)>,
    },
    /// Each answer holds the next page's URL; none is the last page.
    NextUrl { next: ValueAt },
}

impl Pagination {
    /// As the file writes its kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Link => "link",
            Self::Page { .. } => "page",
            Self::Offset { .. } => "offset",
            Self::Cursor { .. } => "cursor",
            Self::NextUrl { .. } => "next_url",
        }
    }
}

/// Besides an empty page, what says that numbered pages have ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ends {
    /// Records in all pages.
    pub total: Option<ValueAt>,
    /// A body value that is `false` or `null` on the last page (`has_more`).
    pub more: Option<String>,
}

/// Where in an answer a value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueAt {
    /// A JSON pointer into the body.
    Body(String),
    /// A header, by name.
    Header(String),
}

impl std::fmt::Display for ValueAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Body(pointer) => write!(f, "the body's {pointer}"),
            Self::Header(name) => write!(f, "the header {name}"),
        }
    }
}

/// Loading only what changed since the last complete run: the records'
/// cursor field, and the query parameter that asks for records from it on.
#[derive(Debug, Clone, PartialEq)]
pub struct Incremental {
    /// The column whose largest value is the position: an index into the
    /// resource's columns.
    pub column: usize,
    pub param: String,
    /// Sent on the first run, before any position is saved.
    pub initial: Option<Template>,
    /// Subtracted from the saved position when it is sent, so that records
    /// written late at the source, with a time before the position, are
    /// read again.
    pub lookback: Duration,
    /// How the value is written in the query.
    pub form: CursorForm,
}

/// How a cursor value is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorForm {
    /// A whole number.
    Whole,
    /// RFC 3339 text, in UTC.
    Rfc3339,
    /// A time as epoch seconds or milliseconds, as its column reads it.
    Epoch(Epoch),
    /// A date, `YYYY-MM-DD`.
    Date,
    /// Text, compared as text.
    Text,
}

/// Text in which `${NAME}` is the environment variable `NAME`, and
/// `${secretsmanager:ID}` the AWS Secrets Manager secret `ID` (a name or an
/// ARN; `ID#KEY`: the key `KEY` of a secret that holds JSON), filled when
/// the importer starts. `$${` is a literal `${`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

/// What a `${...}` in a [`Template`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ref<'t> {
    Env(&'t str),
    Secret { id: &'t str, key: Option<&'t str> },
}

impl std::fmt::Display for Ref<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(name) => write!(f, "the environment variable {name}"),
            Self::Secret { id, key: None } => write!(f, "the Secrets Manager secret {id}"),
            Self::Secret { id, key: Some(key) } => {
                write!(f, "the key {key} of the Secrets Manager secret {id}")
            }
        }
    }
}

/// The prefix of a secret in a template.
const SECRET: &str = "secretsmanager:";

impl Template {
    fn parse(text: String) -> Result<Self, String> {
        let template = Self(text);
        template.pieces()?;
        Ok(template)
    }

    /// As written in the file.
    pub fn as_written(&self) -> &str {
        &self.0
    }

    /// What its `${...}` name, in order.
    pub fn refs(&self) -> Vec<Ref<'_>> {
        self.checked_pieces()
            .into_iter()
            .filter_map(|piece| match piece {
                Piece::Ref(r) => Some(r),
                Piece::Text(_) => None,
            })
            .collect()
    }

    /// The text with each `${...}` replaced by its value from `lookup`, or
    /// the first that `lookup` has no value for.
    pub fn fill<'t>(
        &'t self,
        lookup: impl Fn(&Ref<'_>) -> Option<String>,
    ) -> Result<String, Ref<'t>> {
        let mut out = String::with_capacity(self.0.len());
        for piece in self.checked_pieces() {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Ref(r) => out.push_str(&lookup(&r).ok_or(r)?),
            }
        }
        Ok(out)
    }

    fn checked_pieces(&self) -> Vec<Piece<'_>> {
        self.pieces()
            .unwrap_or_else(|e| unreachable!("checked when read: {e}"))
    }

    fn pieces(&self) -> Result<Vec<Piece<'_>>, String> {
        let mut pieces = Vec::new();
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find('$') {
            let after = &rest[at + 1..];
            if let Some(literal) = after.strip_prefix("${") {
                pieces.push(Piece::Text(&rest[..at + 1]));
                rest = literal;
                pieces.push(Piece::Text("{"));
                continue;
            }
            let Some(inner) = after.strip_prefix('{') else {
                pieces.push(Piece::Text(&rest[..at + 1]));
                rest = after;
                continue;
            };
            let Some(end) = inner.find('}') else {
                return Err(format!("{:?} opens `${{` without closing it", self.0));
            };
            let name = &inner[..end];
            let reference = match name.strip_prefix(SECRET) {
                Some(secret) => {
                    let (id, key) = match secret.rsplit_once('#') {
                        Some((id, key)) => (id, Some(key)),
                        None => (secret, None),
                    };
                    if id.is_empty() || key.is_some_and(str::is_empty) {
                        return Err(format!(
                            "{:?}: `${{{name}}}` names no secret: write ${{{SECRET}NAME_OR_ARN}} or ${{{SECRET}NAME_OR_ARN#KEY}}",
                            self.0
                        ));
                    }
                    Ref::Secret { id, key }
                }
                None => {
                    let valid = !name.is_empty()
                        && !name.starts_with(|c: char| c.is_ascii_digit())
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        return Err(format!(
                            "{:?}: `${{{name}}}` is not a variable name (letters, digits and _) or ${{{SECRET}ID}}",
                            self.0
                        ));
                    }
                    Ref::Env(name)
                }
            };
            pieces.push(Piece::Text(&rest[..at]));
            pieces.push(Piece::Ref(reference));
            rest = &inner[end + 1..];
        }
        pieces.push(Piece::Text(rest));
        Ok(pieces)
    }
}

enum Piece<'t> {
    Text(&'t str),
    Ref(Ref<'t>),
}

impl RequestSpec {
    /// Every template of the request.
    pub fn templates(&self) -> Vec<&Template> {
        let mut all: Vec<&Template> = self.url.iter().collect();
        all.extend(self.query.iter().map(|(_, t)| t));
        all.extend(self.headers.iter().map(|(_, t)| t));
        match &self.auth {
            Some(Auth::Bearer { token }) => all.push(token),
            Some(Auth::Basic { username, password }) => all.extend([username, password]),
            Some(Auth::ApiKey { value, .. }) => all.push(value),
            Some(Auth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                ..
            }) => all.extend([token_url, client_id, client_secret]),
            None => {}
        }
        all
    }
}

// What the file says, before it is checked.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequest {
    url: Option<String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    auth: Option<RawAuth>,
    pagination: Option<RawPagination>,
    rate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    kind: String,
    token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    name: Option<String>,
    value: Option<String>,
    #[serde(rename = "in")]
    place: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    client_auth: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPagination {
    kind: String,
    param: Option<String>,
    size_param: Option<String>,
    size: Option<u32>,
    first: Option<u32>,
    limit_param: Option<String>,
    limit: Option<u32>,
    total: Option<String>,
    total_header: Option<String>,
    more: Option<String>,
    next: Option<String>,
    next_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncremental {
    field: String,
    param: String,
    initial: Option<String>,
    lookback: Option<String>,
}

/// Headers the importer sets itself, or that only auth may set.
const OWN_HEADERS: [&str; 2] = ["authorization", "host"];

impl RawRequest {
    pub(super) fn check(self) -> Result<RequestSpec, Mistake> {
        fn at(place: &str) -> impl Fn(String) -> Mistake + '_ {
            move |m| (format!("`request.{place}`: "), m)
        }
        let url = self
            .url
            .map(|u| {
                let template = Template::parse(u).map_err(at("url"))?;
                // Checked as a URL once filled; here, what can be told without the environment.
                let written = template.as_written();
                if !(written.starts_with("http://")
                    || written.starts_with("https://")
                    || written.starts_with("${"))
                {
                    return Err(at("url")(format!(
                        "{written:?} is not an http:// or https:// URL"
                    )));
                }
                Ok(template)
            })
            .transpose()?;
        let query = self
            .query
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    Template::parse(v).map_err(at(&format!("query.{k}")))?,
                ))
            })
            .collect::<Result<_, Mistake>>()?;
        let mut headers = Vec::new();
        for (name, value) in self.headers {
            let place = format!("headers.{name}");
            if reqwest_header_name(&name).is_err() {
                return Err(at(&place)("is not a header name".into()));
            }
            if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(at(&place)(
                    "is set by the importer: credentials go in `request.auth`".into(),
                ));
            }
            headers.push((name, Template::parse(value).map_err(at(&place))?));
        }
        Ok(RequestSpec {
            url,
            query,
            headers,
            auth: self.auth.map(RawAuth::check).transpose()?,
            pagination: self.pagination.map(RawPagination::check).transpose()?,
            rate: self
                .rate
                .as_deref()
                .map(Rate::parse)
                .transpose()
                .map_err(at("rate"))?,
        })
    }
}

/// A header name as HTTP allows one (RFC 9110 `token`).
fn reqwest_header_name(name: &str) -> Result<(), ()> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !name.is_empty() && name.chars().all(tchar) {
        Ok(())
    } else {
        Err(())
    }
}

/// Checks that the fields given are those `kind` takes, naming the first
/// that is not.
fn only(place: &str, kind: &str, given: &[(&str, bool)], takes: &[&str]) -> Result<(), Mistake> {
    match given
        .iter()
        .find(|(name, set)| *set && !takes.contains(name))
    {
        Some((name, _)) => Err((
            format!("`{place}`: "),
            format!(
                "`{name}` is not for kind `{kind}`{}",
                if takes.is_empty() {
                    ", which takes nothing more".to_owned()
                } else {
                    format!(", which takes {}", takes.join(", "))
                }
            ),
        )),
        None => Ok(()),
    }
}

impl RawAuth {
    fn check(self) -> Result<Auth, Mistake> {
        let here = |m: String| ("`request.auth`: ".to_owned(), m);
        let need = |field: Option<String>, name: &str| {
            let text = field.ok_or_else(|| here(format!("kind `{}` needs `{name}`", self.kind)))?;
            Template::parse(text).map_err(|m| here(format!("`{name}` {m}")))
        };
        let given = [
            ("token", self.token.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("name", self.name.is_some()),
            ("value", self.value.is_some()),
            ("in", self.place.is_some()),
            ("token_url", self.token_url.is_some()),
            ("client_id", self.client_id.is_some()),
            ("client_secret", self.client_secret.is_some()),
            ("scope", self.scope.is_some()),
            ("client_auth", self.client_auth.is_some()),
        ];
        let takes: &[&str] = match self.kind.as_str() {
            "bearer" => &["token"],
            "basic" => &["username", "password"],
            "api_key" => &["name", "value", "in"],
            "oauth2" => &[
                "token_url",
                "client_id",
                "client_secret",
                "scope",
                "client_auth",
            ],
            other => {
                return Err(here(format!(
                    "unknown kind `{other}`: one of bearer, basic, api_key, oauth2"
                )));
            }
        };
        only("request.auth", &self.kind, &given, takes)?;
        Ok(match self.kind.as_str() {
            "bearer" => Auth::Bearer {
                token: need(self.token.clone(), "token")?,
            },
            "basic" => Auth::Basic {
                username: need(self.username.clone(), "username")?,
                password: need(self.password.clone(), "password")?,
            },
            "oauth2" => Auth::OAuth2 {
                token_url: need(self.token_url.clone(), "token_url")?,
                client_id: need(self.client_id.clone(), "client_id")?,
                client_secret: need(self.client_secret.clone(), "client_secret")?,
                scope: self.scope.clone(),
                client_auth: match self.client_auth.as_deref() {
                    None | Some("basic") => ClientAuth::Basic,
                    Some("body") => ClientAuth::Body,
                    Some(other) => {
                        return Err(here(format!(
                            "`client_auth` is `{other}`: it is `basic` or `body`"
                        )));
                    }
                },
            },
            _ => {
                let place = match self.place.as_deref() {
                    None | Some("header") => KeyPlace::Header,
                    Some("query") => KeyPlace::Query,
                    Some(other) => {
                        return Err(here(format!(
                            "`in` is `{other}`: it is `header` or `query`"
                        )));
                    }
                };
                let name = self
                    .name
                    .clone()
                    .ok_or_else(|| here("kind `api_key` needs `name`".into()))?;
                if place == KeyPlace::Header && reqwest_header_name(&name).is_err() {
                    return Err(here(format!("`name` {name:?} is not a header name")));
                }
                Auth::ApiKey {
                    name,
                    value: need(self.value.clone(), "value")?,
                    place,
                }
            }
        })
    }
}

impl RawPagination {
    fn check(self) -> Result<Pagination, Mistake> {
        const PLACE: &str = "request.pagination";
        let here = |m: String| (format!("`{PLACE}`: "), m);
        let given = [
            ("param", self.param.is_some()),
            ("size_param", self.size_param.is_some()),
            ("size", self.size.is_some()),
            ("first", self.first.is_some()),
            ("limit_param", self.limit_param.is_some()),
            ("limit", self.limit.is_some()),
            ("total", self.total.is_some()),
            ("total_header", self.total_header.is_some()),
            ("more", self.more.is_some()),
            ("next", self.next.is_some()),
            ("next_header", self.next_header.is_some()),
        ];
        let ends = ["total", "total_header", "more"];
        let takes: Vec<&str> = match self.kind.as_str() {
            "none" | "link" => vec![],
            "page" => [&["param", "size_param", "size", "first"][..], &ends].concat(),
            "offset" => [&["param", "limit_param", "limit"][..], &ends].concat(),
            "cursor" => vec!["param", "next", "next_header", "size_param", "size"],
            "next_url" => vec!["next", "next_header"],
            other => {
                return Err(here(format!(
                    "unknown kind `{other}`: one of none, link, page, offset, cursor, next_url"
                )));
            }
        };
        only(PLACE, &self.kind, &given, &takes)?;
        let body_pointer = |p: Option<String>, name: &str| {
            p.map(|p| {
                pointer(&p).map_err(|m| here(format!("`{name}` {m}")))?;
                Ok::<_, Mistake>(p)
            })
            .transpose()
        };
        let value_at = |body: Option<String>, header: Option<String>, name: &str| match (
            body_pointer(body, name)?,
            header,
        ) {
            (Some(_), Some(_)) => Err(here(format!(
                "`{name}` and `{name}_header` both say where it is: give one"
            ))),
            (Some(p), None) => Ok(Some(ValueAt::Body(p))),
            (None, Some(h)) => {
                reqwest_header_name(&h)
                    .map_err(|()| here(format!("`{name}_header` {h:?} is not a header name")))?;
                Ok(Some(ValueAt::Header(h)))
            }
            (None, None) => Ok(None),
        };
        let size = match (self.size_param, self.size) {
            (Some(p), Some(n)) if n > 0 => Some((p, n)),
            (None, None) => None,
            (Some(_), Some(_)) => return Err(here("`size` is 0".into())),
            _ => {
                return Err(here(
                    "`size_param` and `size` go together: the parameter and its value".into(),
                ));
            }
        };
        let ends = || -> Result<Ends, Mistake> {
            Ok(Ends {
                total: value_at(self.total.clone(), self.total_header.clone(), "total")?,
                more: body_pointer(self.more.clone(), "more")?,
            })
        };
        Ok(match self.kind.as_str() {
            "none" => Pagination::None,
            "link" => Pagination::Link,
            "page" => Pagination::Page {
                param: self.param.clone().unwrap_or_else(|| "page".into()),
                size,
                first: self.first.unwrap_or(1),
                ends: ends()?,
            },
            "offset" => Pagination::Offset {
                param: self.param.clone().unwrap_or_else(|| "offset".into()),
                limit_param: self.limit_param.clone().unwrap_or_else(|| "limit".into()),
                limit: match self.limit {
                    Some(n) if n > 0 => n,
                    _ => return Err(here("kind `offset` needs `limit`, more than 0: the records per page".into())),
                },
                ends: ends()?,
            },
            "cursor" => Pagination::Cursor {
                param: self
                    .param
                    .clone()
                    .ok_or_else(|| here("kind `cursor` needs `param`: the parameter the cursor is sent as".into()))?,
                next: value_at(self.next.clone(), self.next_header.clone(), "next")?
                    .ok_or_else(|| here("kind `cursor` needs `next` (a pointer into the body) or `next_header`: where each answer names the next cursor".into()))?,
                size,
            },
            _ => Pagination::NextUrl {
                next: value_at(self.next.clone(), self.next_header.clone(), "next")?
                    .ok_or_else(|| here("kind `next_url` needs `next` (a pointer into the body) or `next_header`: where each answer holds the next page's URL".into()))?,
            },
        })
    }
}

impl RawIncremental {
    pub(super) fn check(self, columns: &[ColumnSpec]) -> Result<Incremental, Mistake> {
        let here = |m: String| ("`incremental`: ".to_owned(), m);
        let Some(column) = columns.iter().position(|c| c.name == self.field) else {
            return Err(here(format!(
                "`field` `{}` is not among its columns ({}): the position is the largest value of a column",
                self.field,
                columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let spec = &columns[column];
        let form = match spec.kind {
            ColumnType::BigInt | ColumnType::Integer => CursorForm::Whole,
            ColumnType::Timestamptz => spec.epoch.map_or(CursorForm::Rfc3339, CursorForm::Epoch),
            ColumnType::Date => CursorForm::Date,
            ColumnType::Text => CursorForm::Text,
            other => {
                return Err(here(format!(
                    "`field` `{}` is {other}: a cursor is a timestamptz, date, bigint, integer or text column",
                    self.field
                )));
            }
        };
        if self.param.is_empty() {
            return Err(here("`param` is empty".into()));
        }
        let lookback = match self.lookback {
            None => Duration::ZERO,
            Some(text) => {
                if !matches!(
                    form,
                    CursorForm::Rfc3339 | CursorForm::Epoch(_) | CursorForm::Date
                ) {
                    return Err(here(format!(
                        "`lookback` is for time columns; `{}` is {}",
                        self.field, spec.kind
                    )));
                }
                humantime::parse_duration(&text)
                    .map_err(|e| here(format!("`lookback` {text:?}: {e} (e.g. 10m, 2h)")))?
            }
        };
        Ok(Incremental {
            column,
            param: self.param,
            initial: self
                .initial
                .map(Template::parse)
                .transpose()
                .map_err(|m| here(format!("`initial` {m}")))?,
            lookback,
            form,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_variables_and_secrets() {
        let t = Template::parse(
            "Bearer ${TOKEN}-${ID_2}.${secretsmanager:arn:aws:secretsmanager:eu-west-1:1:secret:api-Ab#token} costs $5 and $${literal}".into(),
        )
        .unwrap();
        let secret = Ref::Secret {
            id: "arn:aws:secretsmanager:eu-west-1:1:secret:api-Ab",
            key: Some("token"),
        };
        assert_eq!(t.refs(), [Ref::Env("TOKEN"), Ref::Env("ID_2"), secret]);
        let filled = t
            .fill(|r| match r {
                Ref::Env(name) => Some(name.to_lowercase()),
                Ref::Secret { key, .. } => key.map(str::to_uppercase),
            })
            .unwrap();
        assert_eq!(filled, "Bearer token-id_2.TOKEN costs $5 and ${literal}");
        assert_eq!(
            t.fill(|r| (*r == Ref::Env("TOKEN")).then(String::new)),
            Err(Ref::Env("ID_2"))
        );
        assert_eq!(
            Template::parse("${secretsmanager:db}".into())
                .unwrap()
                .refs(),
            [Ref::Secret {
                id: "db",
                key: None
            }]
        );
        assert!(Template::parse("${secretsmanager:}".into()).is_err());
        assert!(Template::parse("${secretsmanager:db#}".into()).is_err());
        assert!(Template::parse("${OPEN".into()).is_err());
        assert!(Template::parse("${1X}".into()).is_err());
        assert!(Template::parse("${a-b}".into()).is_err());
    }

    #[test]
    fn rates_are_requests_per_period() {
        let rate = |text: &str| Rate::parse(text).map(|r| (r.requests.get(), r.per.as_secs()));
        assert_eq!(rate("10/s"), Ok((10, 1)));
        assert_eq!(rate("600 / min"), Ok((600, 60)));
        assert_eq!(rate("5000/hour"), Ok((5000, 3600)));
        for bad in ["0/s", "10", "10/day", "x/s"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
    }
}
