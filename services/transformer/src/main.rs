use anyhow::Context as _;
use pipeline_core::aws::AwsClients;
use pipeline_core::location::{LocalDir, Location, local_dir};
use pipeline_core::settings::Common;
use pipeline_core::{exit, settings, shutdown};
use std::process::ExitCode;
use transformer::ops::{self, with_database_secret};
use transformer::settings::{Cli, Command, Config};
use transformer::{Mode, Transformer, migrate};

fn main() -> ExitCode {
    let cli: Cli = settings::parse_or_exit();
    let common = &cli.common;
    let (aws, wait) = (&common.aws, common.startup.wait);
    let format = common.log.format;
    // Every setting a command needs is checked here, before any network call.
    let database_url = || {
        let url = settings::or_exit(cli.settings.database_url());
        if cli.settings.database_secret.is_some() {
            settings::or_exit(aws.region());
        }
        url
    };
    let queue_url = || {
        let url = settings::or_exit(cli.settings.queue_url());
        settings::or_exit(aws.region());
        url
    };
    match &cli.command {
        Command::Healthcheck(check) => check.run(&common.health.path("transformer")),
        Command::Migrate => {
            let resources = common.resources.load_or_exit(aws, wait);
            let url = database_url();
            exit::run(format, "transformer", async move {
                let url = with_database_secret(url, &cli.settings, aws).await?;
                let dir = migrations_dir(cli.settings.migrations_dir.as_ref(), common).await?;
                migrate(&url, wait, dir.as_ref(), resources).await
            })
        }
        Command::Schema(args) => {
            let resources = common.resources.load_or_exit(aws, wait);
            let url = database_url();
            exit::run(format, "transformer", async move {
                let url = with_database_secret(url, &cli.settings, aws).await?;
                ops::schema(args, resources, &url, wait).await
            })
        }
        Command::Run { drain } => {
            let resources = common.resources.load_or_exit(aws, wait);
            let mut config = settings::or_exit(cli.settings.resolve(&common.startup, resources));
            config.health_file = Some(common.health.path("transformer"));
            settings::or_exit(aws.region());
            if *drain {
                config.mode = Mode::Drain;
            }
            exit::run(format, "transformer", run(&cli, config))
        }
        Command::Redrive(args) => {
            let queue_url = queue_url();
            exit::run(format, "transformer", async move {
                let clients = AwsClients::new(aws).await?;
                let stop = shutdown::on_signal().context("Failed to install signal handlers")?;
                ops::redrive(args, &cli.settings, queue_url, &clients, wait, stop).await
            })
        }
        Command::Quarantine(args) => {
            let url = database_url();
            exit::run(format, "transformer", async move {
                let url = with_database_secret(url, &cli.settings, aws).await?;
                ops::quarantine(args, &url, wait).await
            })
        }
        Command::Status(args) => {
            let (url, queue_url) = (database_url(), queue_url());
            exit::run(format, "transformer", async move {
                let url = with_database_secret(url, &cli.settings, aws).await?;
                let clients = AwsClients::new(aws).await?;
                let dir = migrations_dir(cli.settings.migrations_dir.as_ref(), common).await?;
                let dir = dir.as_ref();
                ops::status(args, &cli.settings, queue_url, &url, &clients, dir, wait).await
            })
        }
    }
}

async fn run(cli: &Cli, mut config: Config) -> anyhow::Result<()> {
    let aws = AwsClients::new(&cli.common.aws).await?;
    let dir = migrations_dir(cli.settings.migrations_dir.as_ref(), &cli.common).await?;
    config.migrations_dir = dir.map(std::sync::Arc::new);
    let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
    Transformer::new(config, aws)?.run(shutdown).await.map(drop)
}

/// `MIGRATIONS_DIR` on this machine: the directory, or a copy of the S3
/// prefix it names.
async fn migrations_dir(
    location: Option<&Location>,
    common: &Common,
) -> anyhow::Result<Option<LocalDir>> {
    let Some(location) = location else {
        return Ok(None);
    };
    let dir = local_dir(location, &common.aws, common.startup.wait)
        .await
        .with_context(|| format!("MIGRATIONS_DIR {location}"))?;
    Ok(Some(dir))
}
