//! The transformer's command line and environment.
//!
//! | variable                  | flag                        | default        |
//! |---------------------------|-----------------------------|----------------|
//! | `QUEUE_URL`               | `--queue-url`               | none: required but for `migrate` and `quarantine` |
//! | `DATABASE_URL`            | `--database-url`            | none: required |
//! | `DATABASE_PASSWORD`       | `--database-password`       | the URL's      |
//! | `DATABASE_SECRET`         | `--database-secret`         | none: the password above |
//! | `TRANSFORMER_CONCURRENCY` | `--transformer-concurrency` | `4`            |
//! | `MIGRATIONS_DIR`          | `--migrations-dir`          | none: the built-in migrations only |
//! | `DEAD_LETTER_QUEUE_URL`   | `--dead-letter-queue-url`   | the queue's redrive policy target |
//! | `VISIBILITY_TIMEOUT`      | `--visibility-timeout`      | `60s`          |
//! | `RETRY_DELAY`             | `--retry-delay`             | `10s`          |
//! | `SHUTDOWN_TIMEOUT`        | `--shutdown-timeout`        | `20s`          |
//! | `HEALTH_FILE`             | `--health-file`             | `$TMPDIR/transformer.healthy` |
//! | `ECS_AGENT_URI`           | `--ecs-agent-uri`           | set by ECS; unset: no scale-in protection |
//! | `SCALE_IN_PROTECTION_MAX` | `--scale-in-protection-max` | `15m`          |
//! | `STARTUP_WAIT`            | `--startup-wait`            | `60s`          |
//!
//! plus the AWS and logging settings of [`pipeline_core::settings`].

use clap::{Args, Parser, Subcommand};
use pipeline_core::health::Healthcheck;
use pipeline_core::location::{LocalDir, Location, parse_location};
use pipeline_core::settings::{Common, SettingError, defaults, parse_queue_url, required};
use pipeline_core::spec::Spec;
use pipeline_core::startup::StartupSettings;
use pipeline_store::DatabaseUrl;

use crate::Mode;
use crate::ops::quarantine::Quarantine;
use crate::ops::redrive::Redrive;
use crate::ops::status::Status;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Reads object messages from SQS, fetches each object from S3 and upserts
/// its posts into PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "transformer", version)]
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
    /// Apply the pending database migrations, the built-in ones then MIGRATIONS_DIR's, and exit.
    Migrate,
    /// Print the migration that makes each resource's table match RESOURCES_FILE, from what
    /// the database holds now; --write puts it in a directory (up.sql, down.sql) for review.
    Schema(Schema),
    /// Process messages until SIGTERM/SIGINT (refuses to start while migrations are pending).
    Run {
        /// Exit 0 once the queue has no visible, delayed or in-flight messages.
        #[arg(long)]
        drain: bool,
    },
    /// Move the dead-letter queue's messages back to the queue (SQS's message move task,
    /// or one by one); --dry-run lists them.
    Redrive(Redrive),
    /// List the quarantined records, or --export them as a JSON array to fix and feed back
    /// with `importer load`.
    Quarantine(Quarantine),
    /// One screen: the queues, what was applied in the last hour and day, the quarantine,
    /// pending migrations; --json for scripts, --check for a probe (exit 1 when a person
    /// is needed).
    Status(Status),
    /// Exit 0 if a `run` in this container is alive (its health file is fresh), else 1.
    /// For Docker HEALTHCHECK and ECS health checks: the image has no shell.
    Healthcheck(Healthcheck),
}

/// `transformer schema`'s own options.
#[derive(Debug, Clone, Args)]
pub struct Schema {
    /// Write the migration to DIR/<UTC time>_<NAME>/ (MIGRATIONS_DIR's layout) instead of
    /// printing it.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
    /// The migration's name.
    #[arg(long, value_name = "NAME", default_value = "resources")]
    pub name: String,
}

#[derive(Debug, Clone, Args)]
// Apart from each command's own options in `--help`.
#[command(next_help_heading = "Settings")]
pub struct Settings {
    /// URL of the SQS queue to read object messages from.
    #[arg(long, env = "QUEUE_URL", value_name = "QUEUE_URL", value_parser = parse_queue_url,
          global = true)]
    pub queue_url: Option<Url>,

    /// PostgreSQL connection URL, postgres://user:password@host:port/dbname; TLS by
    /// ?sslmode=disable|prefer|require|verify-ca|verify-full (default prefer) and
    /// &sslrootcert=<CA bundle, PEM>.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<DatabaseUrl>,

    /// Password of DATABASE_URL's user, when a secret store injects it apart from the
    /// URL (on ECS, from the RDS-managed secret). Replaces the URL's password.
    #[arg(
        long,
        env = "DATABASE_PASSWORD",
        value_name = "DATABASE_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub database_password: Option<String>,

    /// AWS Secrets Manager secret (name or ARN) with the password of DATABASE_URL's user:
    /// JSON with a "password" key, as RDS keeps its managed secret, or the password alone.
    /// Read at start and again whenever PostgreSQL refuses the password (RDS rotates it
    /// every 7 days). Instead of DATABASE_PASSWORD.
    #[arg(
        long,
        env = "DATABASE_SECRET",
        value_name = "DATABASE_SECRET",
        conflicts_with = "database_password",
        global = true
    )]
    pub database_secret: Option<String>,

    /// Objects written to the database at once: the size of the connection pool. Twice as
    /// many messages are in hand, so that the next objects are fetched and parsed while
    /// these are written.
    #[arg(
        long,
        env = "TRANSFORMER_CONCURRENCY",
        value_name = "TRANSFORMER_CONCURRENCY",
        default_value = "4",
        global = true
    )]
    pub transformer_concurrency: NonZeroUsize,

    /// Migrations of your own resources' tables (a directory per migration, with up.sql and
    /// down.sql, as `schema --write` makes them), a path or s3://BUCKET/PREFIX/: `migrate`
    /// applies them after the built-in ones, and `run` refuses to start while one is pending.
    #[arg(
        long,
        env = "MIGRATIONS_DIR",
        value_name = "MIGRATIONS_DIR",
        value_parser = parse_location,
        global = true
    )]
    pub migrations_dir: Option<Location>,

    /// Queue for messages that can never succeed (not JSON, object missing, checksum
    /// mismatch...). Default: the dead-letter queue of QUEUE_URL's redrive policy.
    #[arg(long, env = "DEAD_LETTER_QUEUE_URL", value_name = "DEAD_LETTER_QUEUE_URL",
          value_parser = parse_queue_url, global = true)]
    pub dead_letter_queue_url: Option<Url>,

    /// How long a received message stays hidden from other workers. While a message is
    /// being processed it is extended every third of this (a heartbeat). 1s to 12h.
    #[arg(long, env = "VISIBILITY_TIMEOUT", value_name = "VISIBILITY_TIMEOUT", default_value = "60s",
          value_parser = parse_visibility, global = true)]
    pub visibility_timeout: Duration,

    /// Delay before a message that failed for a passing reason (database or S3 unreachable)
    /// is tried again; it doubles with each receive, up to 15 minutes.
    #[arg(long, env = "RETRY_DELAY", value_name = "RETRY_DELAY", default_value = "10s",
          value_parser = parse_visibility, global = true)]
    pub retry_delay: Duration,

    /// On SIGTERM, how long to finish the messages in hand before handing the rest back
    /// to the queue. Keep it under the ECS task's stopTimeout (30s by default).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", value_name = "SHUTDOWN_TIMEOUT", default_value = "20s",
          value_parser = humantime::parse_duration, global = true)]
    pub shutdown_timeout: Duration,

    /// The ECS agent's endpoint, which ECS sets in every container: while messages are in
    /// hand, the task protects itself from scale-in through it. Unset outside ECS: no
    /// protection.
    #[arg(
        long,
        env = "ECS_AGENT_URI",
        value_name = "ECS_AGENT_URI",
        global = true
    )]
    pub ecs_agent_uri: Option<Url>,

    /// Longest time a busy transformer keeps its ECS task protected from scale-in in one
    /// stretch. Protection also holds deployments back; past this, it is lifted until the
    /// task has been idle once, so a deployment under a steady backlog waits at most this long.
    #[arg(long, env = "SCALE_IN_PROTECTION_MAX", value_name = "SCALE_IN_PROTECTION_MAX",
          default_value = "15m", value_parser = humantime::parse_duration, global = true)]
    pub scale_in_protection_max: Duration,
}

/// The settings `transformer run` needs, all present and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Until shutdown, or (`--drain`) until the queue is empty.
    pub mode: Mode,
    pub queue_url: Url,
    pub database_url: DatabaseUrl,
    /// Secrets Manager secret with the database password; `None`: the URL's.
    pub database_secret: Option<String>,
    /// Objects written at once; see [`Config::messages_in_hand`].
    pub concurrency: NonZeroUsize,
    pub dead_letter_queue_url: Option<Url>,
    pub visibility_timeout: Duration,
    pub retry_delay: Duration,
    pub shutdown_timeout: Duration,
    /// Touched while running, for `healthcheck`; `None` writes nothing.
    pub health_file: Option<PathBuf>,
    /// For scale-in protection; `None` outside ECS.
    pub ecs_agent_uri: Option<Url>,
    /// The longest busy stretch that is protected from scale-in.
    pub scale_in_protection_max: Duration,
    /// How long to wait at start for PostgreSQL and SQS to answer.
    pub startup_wait: Duration,
    /// The resources there are, each with its table (`RESOURCES_FILE`).
    pub resources: &'static Spec,
    /// Migrations of the user's own (`MIGRATIONS_DIR`), on this machine:
    /// a copy of them when the setting names S3, kept while this is.
    pub migrations_dir: Option<std::sync::Arc<LocalDir>>,
}

impl Config {
    /// Messages in hand at once: for each object being written, one more
    /// being fetched and parsed. Waiting on S3, SQS or the parser would
    /// leave its connection, and the database, idle; the one ahead waits
    /// for a connection instead, with its records parsed.
    pub fn messages_in_hand(&self) -> usize {
        self.concurrency.get().saturating_mul(2)
    }

    /// The defaults of everything but the queue and the database, as the
    /// command line has them.
    pub fn new(queue_url: Url, database_url: DatabaseUrl) -> Self {
        let settings = Settings {
            queue_url: Some(queue_url),
            database_url: Some(database_url),
            ..defaults()
        };
        settings
            .resolve(&defaults(), Spec::shared_built_in())
            .unwrap_or_else(|e| unreachable!("the queue and the database are given: {e}"))
    }
}

impl Settings {
    pub fn database_url(&self) -> Result<DatabaseUrl, SettingError> {
        let url = required(self.database_url.clone(), "DATABASE_URL", "--database-url")?;
        Ok(match &self.database_password {
            Some(password) => url.with_password(password),
            None => url,
        })
    }

    pub fn queue_url(&self) -> Result<Url, SettingError> {
        required(self.queue_url.clone(), "QUEUE_URL", "--queue-url")
    }

    pub fn resolve(
        &self,
        startup: &StartupSettings,
        resources: &'static Spec,
    ) -> Result<Config, SettingError> {
        Ok(Config {
            mode: Mode::Serve,
            queue_url: self.queue_url()?,
            database_url: self.database_url()?,
            database_secret: self.database_secret.clone(),
            concurrency: self.transformer_concurrency,
            dead_letter_queue_url: self.dead_letter_queue_url.clone(),
            visibility_timeout: self.visibility_timeout,
            retry_delay: self.retry_delay,
            shutdown_timeout: self.shutdown_timeout,
            health_file: None,
            ecs_agent_uri: self.ecs_agent_uri.clone(),
            scale_in_protection_max: self.scale_in_protection_max,
            startup_wait: startup.wait,
            resources,
            migrations_dir: None,
        })
    }
}

/// An SQS visibility timeout: whole seconds from 1 s to 12 h.
fn parse_visibility(value: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(value).map_err(|e| format!("{e} (expected e.g. 30s, 5m)"))?;
    if duration.subsec_nanos() != 0 || !(1..=43_200).contains(&duration.as_secs()) {
        return Err("must be whole seconds from 1s to 12h".into());
    }
    Ok(duration)
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
    fn visibility_timeouts_are_whole_seconds_up_to_12h() {
        assert_eq!(parse_visibility("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_visibility("500ms").is_err());
        assert!(parse_visibility("13h").is_err());
    }
}
