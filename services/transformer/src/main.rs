use anyhow::Context as _;
use pipeline_core::aws::AwsClients;
use pipeline_core::{exit, health, settings, shutdown};
use std::process::ExitCode;
use transformer::secret::with_secret;
use transformer::settings::{Cli, Command, Config};
use transformer::{Mode, Transformer, migrate};

fn main() -> ExitCode {
    let cli: Cli = settings::parse_or_exit();
    match cli.command {
        Command::Healthcheck { max_age } => {
            match health::check(&cli.health.path("transformer"), max_age) {
                Ok(_) => ExitCode::SUCCESS,
                Err(unhealthy) => {
                    eprintln!("{unhealthy}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate => {
            let url = settings::or_exit(cli.settings.database_url());
            if cli.settings.database_secret.is_some() {
                settings::or_exit(cli.aws.region());
            }
            exit::run(cli.log.format, "transformer", async move {
                let url = match &cli.settings.database_secret {
                    Some(secret_id) => {
                        with_secret(url, &AwsClients::new(&cli.aws).await?, secret_id)
                    }
                    None => url,
                };
                migrate(&url, cli.startup.wait).await
            })
        }
        Command::Run { drain } => {
            let mut config = settings::or_exit(cli.settings.resolve());
            config.health_file = Some(cli.health.path("transformer"));
            config.startup_wait = cli.startup.wait;
            settings::or_exit(cli.aws.region());
            if drain {
                config.mode = Mode::Drain;
            }
            exit::run(cli.log.format, "transformer", run(&cli, config))
        }
    }
}

async fn run(cli: &Cli, config: Config) -> anyhow::Result<()> {
    let aws = AwsClients::new(&cli.aws).await?;
    let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
    Transformer::new(config, aws)?.run(shutdown).await.map(drop)
}
