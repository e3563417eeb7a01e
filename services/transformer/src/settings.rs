//! The transformer's command line and environment.
//!
//! | variable                  | flag                        | default        |
//! |---------------------------|-----------------------------|----------------|
//! | `QUEUE_URL`               | `--queue-url`               | none: required for `run` |
//! | `DATABASE_URL`            | `--database-url`            | none: required |
//! | `TRANSFORMER_CONCURRENCY` | `--transformer-concurrency` | `4`            |
//!
//! plus the AWS and logging settings of [`pipeline_core::settings`].

use clap::{Args, Parser, Subcommand};
use pipeline_core::settings::{AwsSettings, LogSettings, SettingError, parse_queue_url, required};
use pipeline_store::DatabaseUrl;
use std::num::NonZeroUsize;
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
    pub aws: AwsSettings,
    #[command(flatten)]
    pub log: LogSettings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the pending database migrations and exit.
    Migrate,
    /// Process messages until SIGTERM/SIGINT (refuses to start while migrations are pending).
    Run {
        /// Exit 0 once the queue has no visible, delayed or in-flight messages.
        #[arg(long)]
        drain: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// URL of the SQS queue to read object messages from.
    #[arg(long, env = "QUEUE_URL", value_name = "QUEUE_URL", value_parser = parse_queue_url,
          global = true)]
    pub queue_url: Option<Url>,

    /// PostgreSQL connection URL, postgres://user:password@host:port/dbname.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<DatabaseUrl>,

    /// Messages processed at once; also the size of the connection pool.
    #[arg(
        long,
        env = "TRANSFORMER_CONCURRENCY",
        value_name = "TRANSFORMER_CONCURRENCY",
        default_value = "4",
        global = true
    )]
    pub transformer_concurrency: NonZeroUsize,
}

/// The settings `transformer run` needs, all present and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub queue_url: Url,
    pub database_url: DatabaseUrl,
    pub concurrency: NonZeroUsize,
}

impl Settings {
    pub fn database_url(&self) -> Result<DatabaseUrl, SettingError> {
        required(self.database_url.clone(), "DATABASE_URL", "--database-url")
    }

    pub fn resolve(&self) -> Result<Config, SettingError> {
        Ok(Config {
            queue_url: required(self.queue_url.clone(), "QUEUE_URL", "--queue-url")?,
            database_url: self.database_url()?,
            concurrency: self.transformer_concurrency,
        })
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
}
