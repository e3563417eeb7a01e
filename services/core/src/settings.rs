//! Settings both services read, and how a bad one is reported.
//!
//! Every setting is an environment variable with a matching flag; both are
//! listed in `--help` with their defaults. Read here:
//!
//! | variable                | flag                      | default                         |
//! |-------------------------|---------------------------|---------------------------------|
//! | `AWS_REGION`            | `--aws-region`            | none: required                  |
//! | `AWS_ENDPOINT_URL`      | `--aws-endpoint-url`      | AWS's own endpoints             |
//! | `AWS_ENDPOINT_URL_S3`   | `--aws-endpoint-url-s3`   | `AWS_ENDPOINT_URL`              |
//! | `AWS_ENDPOINT_URL_SQS`  | `--aws-endpoint-url-sqs`  | `AWS_ENDPOINT_URL`              |
//! | `LOG_FORMAT`            | `--log-format`            | `text` (or `json`)              |
//! | `RUST_LOG`              |                           | `info`                          |
//! | `RESOURCES_FILE`        | `--resources-file`        | the built-in posts and comments |
//!
//! Credentials come from the AWS SDK's default chain (environment, profile,
//! web identity, ECS task role, instance profile) and are never flags.
//!
//! A missing or malformed setting is reported in one line that names it,
//! with exit code 2, before any network call ([`parse_or_exit`]).

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser};
use std::error::Error as _;
use std::time::Duration;
use url::Url;

use crate::aws::AwsClients;
use crate::health::HealthSettings;
use crate::location::{Location, parse_location, read_text};
use crate::spec::Spec;
use crate::startup::StartupSettings;
use crate::telemetry::LogFormat;

/// The settings every service reads besides its own: where AWS is, how to
/// log, the health file and how long to wait for dependencies at start-up.
#[derive(Debug, Clone, Args)]
// Apart from each command's own options in `--help`.
#[command(next_help_heading = "Settings")]
pub struct Common {
    #[command(flatten)]
    pub aws: AwsSettings,
    #[command(flatten)]
    pub log: LogSettings,
    #[command(flatten)]
    pub health: HealthSettings,
    #[command(flatten)]
    pub startup: StartupSettings,
    #[command(flatten)]
    pub resources: ResourcesSettings,
}

/// Which resources there are.
#[derive(Debug, Clone, Args)]
pub struct ResourcesSettings {
    /// The resources file (TOML, docs/adding-a-resource.md): per resource, where its records
    /// sit in a body, its key, its typed columns and their checks. A path, or s3://BUCKET/KEY.
    /// Unset: JSONPlaceholder's posts and comments, built in.
    #[arg(
        long = "resources-file",
        env = "RESOURCES_FILE",
        value_name = "RESOURCES_FILE",
        value_parser = parse_location,
        global = true
    )]
    pub resources_file: Option<Location>,
}

impl ResourcesSettings {
    /// The file read and checked, or the built-in one. A mistake in it is a
    /// bad setting, named down to the field (exit 2); a file in S3 that
    /// cannot be read ends the service too (exit 1), after waiting up to
    /// `wait` for an S3 that does not answer yet. Either in one line.
    pub fn load_or_exit(&self, aws: &AwsSettings, wait: Duration) -> &'static Spec {
        let invalid =
            |reason: String| SettingError::new(RESOURCES_FILE.0, RESOURCES_FILE.1, reason);
        let object = match &self.resources_file {
            None => return Spec::shared_built_in(),
            Some(Location::Path(path)) => {
                return or_exit(Spec::load(Some(path)).map_err(|e| invalid(e.to_string())));
            }
            Some(Location::S3(object)) => object,
        };
        let read = async {
            let aws = or_exit(AwsClients::new(aws).await);
            read_text(&aws, object, wait).await
        };
        // Before the service's own runtime: what it is given depends on the file.
        let text = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|runtime| runtime.block_on(read).map_err(|e| crate::error_chain(&e)))
            .unwrap_or_else(|reason| {
                eprintln!(
                    "error: {} ({}): {reason}",
                    RESOURCES_FILE.0, RESOURCES_FILE.1
                );
                std::process::exit(1)
            });
        let spec =
            or_exit(Spec::parse(&object.to_string(), &text).map_err(|e| invalid(e.to_string())));
        Box::leak(Box::new(spec))
    }
}

/// The variable and flag of the resources file.
const RESOURCES_FILE: (&str, &str) = ("RESOURCES_FILE", "--resources-file");

/// Where the AWS services are. The SDK would read the same variables by
/// itself; declaring them here puts them in `--help` and gives them flags.
#[derive(Debug, Clone, Args)]
pub struct AwsSettings {
    /// AWS region of the bucket and the queue.
    #[arg(
        long = "aws-region",
        env = "AWS_REGION",
        value_name = "AWS_REGION",
        global = true
    )]
    pub region: Option<String>,

    /// Endpoint for all AWS services, e.g. http://127.0.0.1:4566 for LocalStack.
    /// With any custom S3 endpoint, S3 is addressed path-style.
    #[arg(long = "aws-endpoint-url", env = "AWS_ENDPOINT_URL", value_name = "AWS_ENDPOINT_URL",
          value_parser = parse_http_url, global = true)]
    pub endpoint_url: Option<Url>,

    /// Endpoint for S3 only; overrides AWS_ENDPOINT_URL.
    #[arg(long = "aws-endpoint-url-s3", env = "AWS_ENDPOINT_URL_S3", value_name = "AWS_ENDPOINT_URL_S3",
          value_parser = parse_http_url, global = true)]
    pub endpoint_url_s3: Option<Url>,

    /// Endpoint for SQS only; overrides AWS_ENDPOINT_URL.
    #[arg(long = "aws-endpoint-url-sqs", env = "AWS_ENDPOINT_URL_SQS", value_name = "AWS_ENDPOINT_URL_SQS",
          value_parser = parse_http_url, global = true)]
    pub endpoint_url_sqs: Option<Url>,
}

impl AwsSettings {
    pub fn region(&self) -> Result<&str, SettingError> {
        required(self.region.as_deref(), "AWS_REGION", "--aws-region")
    }

    pub fn s3_endpoint(&self) -> Option<&Url> {
        self.endpoint_url_s3.as_ref().or(self.endpoint_url.as_ref())
    }

    pub fn sqs_endpoint(&self) -> Option<&Url> {
        self.endpoint_url_sqs
            .as_ref()
            .or(self.endpoint_url.as_ref())
    }
}

/// How the service logs.
#[derive(Debug, Clone, Args)]
pub struct LogSettings {
    /// Log line format: `text` for people, `json` for CloudWatch and other collectors.
    /// RUST_LOG filters what is logged (default `info`).
    #[arg(
        long = "log-format",
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub format: LogFormat,
}

/// A setting that is missing or unusable. Displayed as one line naming it.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("missing setting {env}: set the environment variable {env} or pass {flag}")]
    Missing {
        env: &'static str,
        flag: &'static str,
    },
    #[error("invalid setting {env} ({flag}): {reason}")]
    Invalid {
        env: &'static str,
        flag: &'static str,
        reason: String,
    },
}

impl SettingError {
    /// A setting whose value cannot be used, for a reason clap cannot see
    /// in it alone.
    pub fn new(env: &'static str, flag: &'static str, reason: String) -> Self {
        Self::Invalid { env, flag, reason }
    }
}

/// Returns the value of a setting that the chosen command needs.
///
/// Settings are optional in the parser so that `--help` can list them all at
/// the top level and each command asks only for what it uses.
/// A group of settings as clap builds it when nothing is set: the one place
/// defaults are written is the `#[arg]` attributes. Reads no environment
/// variable, so a test's configuration does not depend on the shell it runs
/// in.
pub fn defaults<T: Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None));
    command
        .try_get_matches_from(["defaults"])
        .and_then(|matches| T::from_arg_matches(&matches))
        .unwrap_or_else(|e| panic!("a setting has no default and is not optional: {e}"))
}

pub fn required<T>(
    value: Option<T>,
    env: &'static str,
    flag: &'static str,
) -> Result<T, SettingError> {
    value.ok_or(SettingError::Missing { env, flag })
}

/// An `http://` or `https://` URL.
pub fn parse_http_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("the URL has no host".into()),
        other => Err(format!("scheme {other}: is not http or https")),
    }
}

/// An RFC 3339 time, such as `2026-11-30T08:00:00Z`, for options that
/// select by time.
pub fn parse_time(value: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{e} (expected RFC 3339, e.g. 2026-11-30T08:00:00Z)"))
}

/// An SQS queue URL such as `https://sqs.eu-west-1.amazonaws.com/123456789012/posts`.
pub fn parse_queue_url(value: &str) -> Result<Url, String> {
    let url = parse_http_url(value)?;
    if url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .is_none_or(str::is_empty)
    {
        return Err("a queue URL ends with the queue's name".into());
    }
    Ok(url)
}

/// An S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens.
pub fn parse_bucket_name(value: &str) -> Result<String, String> {
    let valid_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let valid_ends = value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=63).contains(&value.len()) && valid_chars && valid_ends {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a bucket name (3-63 lowercase letters, digits, dots and hyphens)"
        ))
    }
}

/// Parses the command line and environment, or exits with one line.
///
/// clap's own messages span several lines, and for a bad value they repeat
/// the value, which for `DATABASE_URL` would print a password. This prints
/// `error: ` and one line that names the setting by its variable and flag.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(parsed) => parsed,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("error: {}", one_line(&e));
                std::process::exit(2);
            }
        },
    }
}

/// Returns the value, or reports the setting at fault in one line and exits
/// with code 2, as [`parse_or_exit`] does for what clap itself rejects.
pub fn or_exit<T>(resolved: Result<T, SettingError>) -> T {
    resolved.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    })
}

/// Renders a clap error as one line, without the offending value.
pub fn one_line(e: &clap::Error) -> String {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(describe_arg(s)),
        Some(ContextValue::Strings(v)) => Some(
            v.iter()
                .map(|s| describe_arg(s))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    };
    match (e.kind(), arg) {
        (ErrorKind::MissingRequiredArgument, Some(arg)) => format!("missing setting {arg}"),
        (ErrorKind::ValueValidation | ErrorKind::InvalidValue, Some(arg)) => match e.source() {
            Some(reason) => format!("invalid setting {arg}: {reason}"),
            None => format!("invalid setting {arg}"),
        },
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_owned()
        }
    }
}

/// `--queue-url <QUEUE_URL>` becomes `QUEUE_URL (--queue-url)`: the
/// variable first, because that is what a task definition or compose file sets.
fn describe_arg(arg: &str) -> String {
    match arg.split_once(" <") {
        Some((flag, value)) => format!("{} ({flag})", value.trim_end_matches('>')),
        None => arg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_only() {
        assert!(parse_http_url("http://127.0.0.1:4566").is_ok());
        assert!(parse_http_url("ftp://x").unwrap_err().contains("not http"));
        assert!(
            parse_http_url("nonsense")
                .unwrap_err()
                .contains("not a URL")
        );
    }

    #[test]
    fn queue_urls_name_a_queue() {
        assert!(parse_queue_url("http://127.0.0.1:4566/000000000000/posts").is_ok());
        assert!(parse_queue_url("http://127.0.0.1:4566/").is_err());
    }

    #[test]
    fn bucket_names() {
        assert!(parse_bucket_name("raw-posts.v1").is_ok());
        for bad in ["ab", "Raw", "-raw", "raw_posts", "raw-"] {
            assert!(parse_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_settings_name_variable_and_flag() {
        let missing: Result<&str, _> = required(None, "QUEUE_URL", "--queue-url");
        assert_eq!(
            missing.unwrap_err().to_string(),
            "missing setting QUEUE_URL: set the environment variable QUEUE_URL or pass --queue-url"
        );
    }

    #[derive(Debug, Parser)]
    struct Demo {
        #[arg(long, env = "DEMO_SECRET_URL", value_name = "DEMO_SECRET_URL", value_parser = parse_http_url)]
        secret_url: Url,
    }

    #[test]
    fn clap_errors_become_one_line_without_the_value() {
        let e = Demo::try_parse_from(["demo", "--secret-url", "ftp://user:hunter2@x"]).unwrap_err();
        let line = one_line(&e);
        assert_eq!(
            line,
            "invalid setting DEMO_SECRET_URL (--secret-url): scheme ftp: is not http or https"
        );
        assert!(!line.contains("hunter2"));

        let e = Demo::try_parse_from(["demo"]).unwrap_err();
        assert_eq!(
            one_line(&e),
            "missing setting DEMO_SECRET_URL (--secret-url)"
        );
    }
}
