//! The importer's command line and environment.
//!
//! | variable          | flag               | default                                       |
//! |-------------------|--------------------|-----------------------------------------------|
//! | `SOURCE_URL`      | `--source-url`     | `https://jsonplaceholder.typicode.com/posts`  |
//! | `RESOURCES`       | `--resources`      | unset: the file's one resource, or `posts`, from `SOURCE_URL` |
//! | `RAW_BUCKET`      | `--raw-bucket`     | none: required                                |
//! | `RAW_KEY_PREFIX`  | `--raw-key-prefix` | `raw`                                         |
//! | `QUEUE_URL`       | `--queue-url`      | none: required                                |
//! | `HTTP_TIMEOUT`    | `--http-timeout`   | `30s`                                         |
//! | `IMPORT_EVERY`    | `--every`          | unset: import once and exit                   |
//! | `PAGE_SIZE`       | `--page-size`      | unset: one request, then `Link: rel="next"`   |
//! | `FETCH_CONCURRENCY` | `--fetch-concurrency` | `4`                                      |
//! | `MAX_PAGES`       | `--max-pages`      | `10000`                                       |
//! | `HTTP_MAX_ATTEMPTS` | `--http-max-attempts` | `5`                                      |
//! | `HTTP_RETRY_BASE` | `--http-retry-base` | `500ms`                                      |
//! | `HTTP_RETRY_MAX`  | `--http-retry-max` | `30s`                                         |
//! | `SKIP_UNCHANGED`  | `--skip-unchanged` | `true`                                        |
//! | `GZIP`            | `--gzip`           | `false`                                       |
//! | `HEALTH_FILE`     | `--health-file`    | `$TMPDIR/importer.healthy`                    |
//! | `STARTUP_WAIT`    | `--startup-wait`   | `60s`                                         |
//!
//! plus the AWS and logging settings of [`pipeline_core::settings`].

use clap::{Args, Parser, Subcommand};
use pipeline_core::health::Healthcheck;
use pipeline_core::message::DEFAULT_RESOURCE;
use pipeline_core::resources::Resource;
use pipeline_core::retry::Backoff;
pub use pipeline_core::settings::parse_time;
use pipeline_core::settings::{
    Common, SettingError, defaults, parse_bucket_name, parse_http_url, parse_queue_url, required,
};
use pipeline_core::spec::Spec;
use pipeline_core::startup::StartupSettings;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

use crate::load::Load;
use crate::paging::with_param;
use crate::replay::Replay;
use crate::request::{self, Env, Request};
use pipeline_core::secrets::Secrets;
use pipeline_core::spec::Parent;
use pipeline_core::spec::request::{Pagination, Ref};
use std::sync::Arc;

pub const DEFAULT_SOURCE_URL: &str = "https://jsonplaceholder.typicode.com/posts";

/// Fetches JSON records (by default posts) from an HTTP API, archives the raw bytes in S3 and
/// announces each archived object on an SQS queue.
#[derive(Debug, Parser)]
#[command(name = "importer", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import once and exit, or with --every, import repeatedly until SIGTERM/SIGINT.
    Run(Run),
    /// Each resource's last complete run, and with incremental loading its saved position
    /// and what the next run sends. Reads the bucket only.
    Status,
    /// Announce archived objects again from their own metadata, never fetching the API:
    /// rebuilds the database (--reapply: rewrites rows after a fix in the transformer).
    Replay(Replay),
    /// Archive and announce a local JSON array (FILE, or - for stdin) as a fetched page.
    Load(Load),
    /// Exit 0 if a `run` in this container is alive (its health file is fresh), else 1.
    /// For Docker HEALTHCHECK and ECS health checks: the image has no shell.
    Healthcheck(Healthcheck),
}

/// `importer run`'s own options.
#[derive(Debug, Clone, Default, Args)]
pub struct Run {
    /// Read every page, whatever the saved positions of incremental resources; the run
    /// still saves the position it reaches.
    #[arg(long)]
    pub full: bool,
}

/// What to import and where to put it.
// `<prefix>` in the help text is meant literally.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Clone, Args)]
// Apart from each command's own options in `--help`.
#[command(next_help_heading = "Settings")]
pub struct Settings {
    /// URL of the JSON array of posts to import; with RESOURCES, where the URLs of the
    /// resources named without one are found.
    #[arg(long, env = "SOURCE_URL", value_name = "SOURCE_URL", default_value = DEFAULT_SOURCE_URL,
          value_parser = parse_http_url, global = true)]
    pub source_url: Url,

    /// Resources to import, in order, each run: NAME=URL, or NAME alone for SOURCE_URL with
    /// its last path segment replaced by NAME. An unknown NAME is refused, naming those known.
    #[arg(long, env = "RESOURCES", value_name = "RESOURCES", value_delimiter = ',',
          value_parser = parse_resource_entry, global = true)]
    pub resources: Vec<ResourceEntry>,

    /// S3 bucket that keeps the raw bytes of every fetch.
    #[arg(long, env = "RAW_BUCKET", value_name = "RAW_BUCKET", value_parser = parse_bucket_name,
          global = true)]
    pub raw_bucket: Option<String>,

    /// Prefix of the S3 keys: objects go to <prefix>/<resource>/YYYY/MM/DD/<time-ordered id>.json.
    #[arg(long, env = "RAW_KEY_PREFIX", value_name = "RAW_KEY_PREFIX", default_value = "raw",
          value_parser = parse_key_prefix, global = true)]
    pub raw_key_prefix: String,

    /// URL of the SQS queue that announces each archived object.
    #[arg(long, env = "QUEUE_URL", value_name = "QUEUE_URL", value_parser = parse_queue_url,
          global = true)]
    pub queue_url: Option<Url>,

    /// Import every IMPORT_EVERY (e.g. 30s, 5m, 1h) until SIGTERM/SIGINT instead of once.
    #[arg(long = "every", env = "IMPORT_EVERY", value_name = "IMPORT_EVERY",
          value_parser = parse_interval, global = true)]
    pub every: Option<Duration>,

    /// Time limit for one HTTP request to the source, body included.
    #[arg(long, env = "HTTP_TIMEOUT", value_name = "HTTP_TIMEOUT", default_value = "30s",
          value_parser = parse_interval, global = true)]
    pub http_timeout: Duration,

    /// Ask for pages of PAGE_SIZE records (JSONPlaceholder-style `_page` and `_limit`).
    /// Each page becomes its own object and message. With `X-Total-Count` in the first
    /// answer, the other pages are fetched concurrently; otherwise in order.
    #[arg(long, env = "PAGE_SIZE", value_name = "PAGE_SIZE", global = true)]
    pub page_size: Option<NonZeroU32>,

    /// Pages fetched and archived at once when the total is known.
    #[arg(
        long,
        env = "FETCH_CONCURRENCY",
        value_name = "FETCH_CONCURRENCY",
        default_value = "4",
        global = true
    )]
    pub fetch_concurrency: NonZeroUsize,

    /// Pages fetched per resource in one run, at most: a server that never stops paging
    /// cannot keep a run going for ever. A run that reaches it archives and announces those
    /// pages, then fails naming the next one.
    #[arg(
        long,
        env = "MAX_PAGES",
        value_name = "MAX_PAGES",
        default_value = "10000",
        global = true
    )]
    pub max_pages: NonZeroU32,

    /// Attempts per page, the first included. Timeouts, connection errors, 429, 5xx and
    /// bodies that are not a JSON array are retried; other 4xx fail at once.
    #[arg(
        long,
        env = "HTTP_MAX_ATTEMPTS",
        value_name = "HTTP_MAX_ATTEMPTS",
        default_value = "5",
        global = true
    )]
    pub http_max_attempts: NonZeroU32,

    /// First retry delay; it doubles with each attempt, with full jitter.
    /// A Retry-After header takes precedence.
    #[arg(long, env = "HTTP_RETRY_BASE", value_name = "HTTP_RETRY_BASE", default_value = "500ms",
          value_parser = parse_interval, global = true)]
    pub http_retry_base: Duration,

    /// Longest retry delay.
    #[arg(long, env = "HTTP_RETRY_MAX", value_name = "HTTP_RETRY_MAX", default_value = "30s",
          value_parser = parse_interval, global = true)]
    pub http_retry_max: Duration,

    /// Skip a page whose sha256 equals the last one archived for the same page URL
    /// (state kept in the bucket under _state/).
    #[arg(long, env = "SKIP_UNCHANGED", value_name = "SKIP_UNCHANGED", default_value = "true",
          action = clap::ArgAction::Set, global = true)]
    pub skip_unchanged: bool,

    /// Store objects gzip-compressed (Content-Encoding: gzip); the transformer reads both.
    #[arg(long, env = "GZIP", value_name = "GZIP", default_value = "false",
          action = clap::ArgAction::Set, global = true)]
    pub gzip: bool,
}

/// One entry of `RESOURCES`: a resource's name, and its URL if given.
#[derive(Debug, Clone)]
pub struct ResourceEntry {
    pub name: String,
    pub url: Option<Url>,
}

/// What to fetch, and which resource's records it holds.
#[derive(Debug, Clone)]
pub struct Source {
    pub resource: &'static dyn Resource,
    /// Its first page, without credentials.
    pub url: Url,
    /// Headers and credentials of every request.
    pub request: Arc<Request>,
    /// With incremental loading, the cursor value sent before any run
    /// completed (`incremental.initial`), filled from the environment.
    pub initial: Option<String>,
    /// For a parent of a later source: the column whose values that child
    /// is fetched for.
    pub keys: Option<usize>,
}

impl Source {
    /// `resource` from `url` if given (`RESOURCES=NAME=URL`), else from its
    /// file's `request.url`, else from `base`, with its request filled from
    /// the environment.
    fn new(
        resource: &'static dyn Resource,
        url: Option<Url>,
        base: Url,
        secrets: &Secrets,
    ) -> Result<Self, String> {
        let env = Env {
            place: format!("resource `{}`: ", resource.name()),
            lookup: &|r| match r {
                Ref::Env(name) => std::env::var(name).ok(),
                Ref::Secret { .. } => secrets.get(r),
            },
        };
        let spec = &resource.spec().request;
        let initial = resource
            .spec()
            .incremental
            .as_ref()
            .and_then(|i| i.initial.as_ref())
            .map(|t| env.fill_field(t, "incremental.initial"))
            .transpose()?;
        Ok(Self {
            resource,
            url: request::url(spec, url, base, &env)?,
            request: Arc::new(Request::new(spec, &env)?),
            initial,
            keys: None,
        })
    }

    /// A child's URL for one key of its parent: in the path in place of
    /// `{KEY}`, or as its `param`.
    pub fn for_key(&self, parent: &Parent, key: &str) -> Url {
        match &parent.param {
            Some(param) => with_param(&self.url, param, key),
            None => {
                // `{id}` in a path is kept percent-encoded by the URL parser.
                let placeholder = format!("%7B{}%7D", parent.key);
                let encoded = percent_encoding::utf8_percent_encode(key, PATH_SEGMENT).to_string();
                Url::parse(&self.url.as_str().replacen(&placeholder, &encoded, 1))
                    .unwrap_or_else(|e| unreachable!("a valid URL with a segment encoded: {e}"))
            }
        }
    }

    /// How its pages follow one another, if its file says.
    pub fn pagination(&self) -> Option<&'static Pagination> {
        let resource: &'static dyn Resource = self.resource;
        resource.spec().request.pagination.as_ref()
    }
}

impl Source {
    /// Where its objects go: `<prefix>/<resource>`.
    pub fn key_prefix(&self, prefix: &str) -> String {
        format!("{prefix}/{}", self.resource.name())
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} from {}", self.resource.name(), self.url)
    }
}

/// The settings `importer run` needs, all present and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// In the order they are imported.
    pub sources: Vec<Source>,
    /// Every resource there is (`RESOURCES_FILE`).
    pub resources: &'static Spec,
    pub bucket: String,
    pub key_prefix: String,
    pub queue_url: Url,
    pub http_timeout: Duration,
    pub every: Option<Duration>,
    pub page_size: Option<NonZeroU32>,
    pub fetch_concurrency: NonZeroUsize,
    /// Pages per resource per run, at most.
    pub max_pages: NonZeroU32,
    /// How a failed request to the API is tried again.
    pub retry: Backoff,
    pub skip_unchanged: bool,
    pub gzip: bool,
    /// `run --full`: every page, whatever the saved positions.
    pub full: bool,
    /// Touched while running, for `healthcheck`; `None` writes nothing.
    pub health_file: Option<PathBuf>,
    /// How long to wait at start for SQS and S3 to answer.
    pub startup_wait: Duration,
}

impl Config {
    /// Defaults for everything but where from and where to, as the command
    /// line has them.
    pub fn new(source_url: Url, bucket: String, queue_url: Url) -> Self {
        let settings = Settings {
            source_url,
            raw_bucket: Some(bucket),
            queue_url: Some(queue_url),
            ..defaults()
        };
        settings
            .resolve(&defaults(), Spec::shared_built_in(), &Secrets::default())
            .unwrap_or_else(|e| unreachable!("the bucket and the queue are given: {e}"))
    }
}

impl Config {
    /// The same, fetching `resource` (one of [`Config::resources`]) from
    /// the one source's URL.
    pub fn for_resource(mut self, resource: &str) -> Self {
        let url = self.sources[0].url.clone();
        let resource = self
            .resources
            .resource(resource)
            .unwrap_or_else(|| panic!("unknown resource `{resource}`"));
        self.sources = vec![
            Source::new(resource, Some(url.clone()), url, &Secrets::default())
                .unwrap_or_else(|e| panic!("{e}")),
        ];
        self
    }

    /// The resource called `name`, or why there is none.
    pub fn resource(&self, name: &str) -> Result<&'static dyn Resource, String> {
        let resources: &'static Spec = self.resources;
        resources
            .resource(name)
            .map(|r| r as &'static dyn Resource)
            .ok_or_else(|| unknown(name, resources))
    }
}

impl Settings {
    /// The settings checked, with `resources` and the `secrets` it names.
    pub fn resolve(
        &self,
        startup: &StartupSettings,
        resources: &'static Spec,
        secrets: &Secrets,
    ) -> Result<Config, SettingError> {
        Ok(Config {
            sources: self.sources(resources, secrets)?,
            resources,
            bucket: required(self.raw_bucket.clone(), "RAW_BUCKET", "--raw-bucket")?,
            key_prefix: self.raw_key_prefix.clone(),
            queue_url: required(self.queue_url.clone(), "QUEUE_URL", "--queue-url")?,
            http_timeout: self.http_timeout,
            every: self.every,
            page_size: self.page_size,
            fetch_concurrency: self.fetch_concurrency,
            max_pages: self.max_pages,
            retry: Backoff {
                first: self.http_retry_base,
                max: self.http_retry_max,
                attempts: Some(self.http_max_attempts),
                full_jitter: true,
            },
            skip_unchanged: self.skip_unchanged,
            gzip: self.gzip,
            full: false,
            health_file: None,
            startup_wait: startup.wait,
        })
    }
}

impl Settings {
    /// `RESOURCES` with their URLs, each a resource of `resources`. Unset,
    /// the file's one resource, or posts if it has several, from
    /// `SOURCE_URL`.
    fn sources(
        &self,
        resources: &'static Spec,
        secrets: &Secrets,
    ) -> Result<Vec<Source>, SettingError> {
        let invalid = |reason| SettingError::new("RESOURCES", "--resources", reason);
        if self.resources.is_empty() {
            let only = match &resources.resources[..] {
                [only] => Some(only),
                _ => resources.resource(DEFAULT_RESOURCE),
            };
            let Some(resource) = only else {
                return Err(invalid(format!(
                    "unset, but {} has several resources ({}): name those to import",
                    resources.source,
                    resources.names()
                )));
            };
            let source = Source::new(resource, None, self.source_url.clone(), secrets)
                .map_err(in_file(resources))?;
            return Ok(vec![source]);
        }
        let mut sources: Vec<Source> = Vec::with_capacity(self.resources.len());
        for entry in &self.resources {
            let name = entry.name.as_str();
            let resource = resources
                .resource(name)
                .ok_or_else(|| invalid(unknown(name, resources)))?;
            if sources.iter().any(|s| s.resource.name() == name) {
                return Err(SettingError::new(
                    "RESOURCES",
                    "--resources",
                    format!("`{name}` is listed twice"),
                ));
            }
            let beside = self.source_url.join(name).map_err(|e| {
                SettingError::new("RESOURCES", "--resources", format!("`{name}`: {e}"))
            })?;
            sources.push(
                Source::new(resource, entry.url.clone(), beside, secrets)
                    .map_err(in_file(resources))?,
            );
        }
        link_children(&mut sources).map_err(invalid)?;
        Ok(sources)
    }
}

/// What a key may not hold as it is put into a URL's path: all but the
/// unreserved characters of RFC 3986.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Sets up each child source to be fetched for the keys of its parent's
/// records: the parent must come first in `RESOURCES`, and a child with no
/// rate budget of its own shares its parent's (the same API).
fn link_children(sources: &mut [Source]) -> Result<(), String> {
    for i in 0..sources.len() {
        let resource: &'static dyn Resource = sources[i].resource;
        let Some(parent) = &resource.spec().parent else {
            continue;
        };
        let name = resource.name();
        let Some(p) = sources[..i]
            .iter()
            .position(|s| s.resource.name() == parent.resource)
        else {
            return Err(format!(
                "resource `{name}` is fetched for each `{}` of `{}`: list `{}` before it",
                parent.key, parent.resource, parent.resource
            ));
        };
        let of: &'static dyn Resource = sources[p].resource;
        let column = of
            .spec()
            .columns
            .iter()
            .position(|c| c.name == parent.key)
            .unwrap_or_else(|| unreachable!("checked when the file was read"));
        let placeholder = format!("%7B{}%7D", parent.key);
        if parent.param.is_none() && !sources[i].url.as_str().contains(&placeholder) {
            return Err(format!(
                "resource `{name}`: its URL {} has no {{{}}} for the key of `{}`",
                sources[i].url, parent.key, parent.resource
            ));
        }
        sources[p].keys = Some(column);
        let shared = sources[i].request.sharing_budget_of(&sources[p].request);
        sources[i].request = Arc::new(shared);
    }
    Ok(())
}

/// A resource's request that cannot be filled in, as a mistake of the
/// resources file: the importer stops with exit code 2, naming it.
fn in_file(resources: &Spec) -> impl Fn(String) -> SettingError + '_ {
    |reason| {
        SettingError::new(
            "RESOURCES_FILE",
            "--resources-file",
            format!("{}: {reason}", resources.source),
        )
    }
}

/// `NAME` or `NAME=URL`; NAME is looked up once the resources file is read.
fn parse_resource_entry(value: &str) -> Result<ResourceEntry, String> {
    let (name, url) = match value.split_once('=') {
        Some((name, url)) => (name.trim(), Some(parse_http_url(url.trim())?)),
        None => (value.trim(), None),
    };
    Ok(ResourceEntry {
        name: name.to_owned(),
        url,
    })
}

/// Why `name` is not a resource, naming those there are.
fn unknown(name: &str, resources: &Spec) -> String {
    format!(
        "unknown resource `{name}` (known: {}, from {})",
        resources.names(),
        resources.source
    )
}

/// A positive duration such as `30s` or `5m`.
fn parse_interval(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (expected e.g. 30s, 5m, 1h)")),
    }
}

/// A key prefix without leading or trailing slashes.
fn parse_key_prefix(value: &str) -> Result<String, String> {
    let prefix = value.trim_matches('/');
    if prefix.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(prefix.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn intervals_are_positive() {
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("soon").is_err());
    }

    fn sources(args: &[&str]) -> Result<Vec<String>, String> {
        let cli = Cli::try_parse_from([&["importer"], args, &["run"]].concat())
            .map_err(|e| e.to_string())?;
        let sources = cli
            .settings
            .sources(Spec::shared_built_in(), &Secrets::default())
            .map_err(|e| e.to_string())?;
        Ok(sources.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn resources_default_to_posts_from_the_source_url_and_resolve_beside_it() {
        let url = "--source-url=http://api.test/v1/articles";
        assert_eq!(
            sources(&[url]).unwrap(),
            ["posts from http://api.test/v1/articles"]
        );
        assert_eq!(
            sources(&[url, "--resources=posts"]).unwrap(),
            ["posts from http://api.test/v1/posts"]
        );
        assert_eq!(
            sources(&["--resources", "posts=http://other.test/p?x=1"]).unwrap(),
            ["posts from http://other.test/p?x=1"]
        );
        let unknown = sources(&["--resources=posts,users"]).unwrap_err();
        let known =
            "unknown resource `users` (known: comments, posts, from the built-in resources file)";
        assert!(unknown.contains(known), "{unknown}");
        let twice = sources(&["--resources=posts,posts"]).unwrap_err();
        assert!(twice.contains("`posts` is listed twice"), "{twice}");
    }

    #[test]
    fn key_prefixes_lose_their_slashes() {
        assert_eq!(parse_key_prefix("/raw/posts/"), Ok("raw/posts".into()));
        assert!(parse_key_prefix("//").is_err());
    }
}
