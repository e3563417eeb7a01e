use anyhow::Context as _;
use pipeline_core::aws::AwsClients;
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
            let url = database_url();
            exit::run(format, "transformer", async move {
                let url = with_database_secret(url, &cli.settings, aws).await?;
                migrate(&url, wait, cli.settings.migrations_dir.as_deref()).await
            })
        }
        Command::Schema(args) => {
            let resources = settings::or_exit(common.resources.load());
            let url = database_url();
            exit::run(format, "transformer", async move {
                let url = with_database_secret(url, &cli.settings, aws).await?;
                ops::schema(args, resources, &url, wait).await
            })
        }
        Command::Run { drain } => {
            let resources = settings::or_exit(common.resources.load());
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
                ops::status(args, &cli.settings, queue_url, &url, &clients, wait).await
            })
        }
    }
}

async fn run(cli: &Cli, config: Config) -> anyhow::Result<()> {
    let aws = AwsClients::new(&cli.common.aws).await?;
    let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
    Transformer::new(config, aws)?.run(shutdown).await.map(drop)
}
