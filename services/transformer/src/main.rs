use anyhow::Context as _;
use pipeline_core::aws::AwsClients;
use pipeline_core::{exit, settings, shutdown};
use std::process::ExitCode;
use transformer::secret::with_secret;
use transformer::settings::{Cli, Command, Config};
use transformer::{Mode, Transformer, migrate};

fn main() -> ExitCode {
    let cli: Cli = settings::parse_or_exit();
    let common = &cli.common;
    match &cli.command {
        Command::Healthcheck(check) => check.run(&common.health.path("transformer")),
        Command::Migrate => {
            let url = settings::or_exit(cli.settings.database_url());
            if cli.settings.database_secret.is_some() {
                settings::or_exit(common.aws.region());
            }
            exit::run(common.log.format, "transformer", async move {
                let url = match &cli.settings.database_secret {
                    Some(secret_id) => {
                        with_secret(url, &AwsClients::new(&common.aws).await?, secret_id)
                    }
                    None => url,
                };
                migrate(&url, common.startup.wait).await
            })
        }
        Command::Run { drain } => {
            let mut config = settings::or_exit(cli.settings.resolve(&common.startup));
            config.health_file = Some(common.health.path("transformer"));
            settings::or_exit(common.aws.region());
            if *drain {
                config.mode = Mode::Drain;
            }
            exit::run(common.log.format, "transformer", run(&cli, config))
        }
    }
}

async fn run(cli: &Cli, config: Config) -> anyhow::Result<()> {
    let aws = AwsClients::new(&cli.common.aws).await?;
    let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
    Transformer::new(config, aws)?.run(shutdown).await.map(drop)
}
