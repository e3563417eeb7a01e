use anyhow::Context as _;
use pipeline_core::aws::AwsClients;
use pipeline_core::{exit, health, settings, shutdown, telemetry};
use std::process::ExitCode;
use transformer::settings::{Cli, Command, Config};
use transformer::{Mode, Transformer, migrate};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = settings::parse_or_exit();
    match cli.command {
        Command::Migrate => {
            let url = settings::or_exit(cli.settings.database_url());
            telemetry::init(cli.log.format);
            exit::report(migrate(&url).await)
        }
        Command::Healthcheck { max_age } => {
            match health::check(&cli.health.path("transformer"), max_age) {
                Ok(_) => ExitCode::SUCCESS,
                Err(unhealthy) => {
                    eprintln!("{unhealthy}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { drain } => {
            let mut config = settings::or_exit(cli.settings.resolve());
            config.health_file = Some(cli.health.path("transformer"));
            settings::or_exit(cli.aws.region());
            telemetry::init(cli.log.format);
            let mode = if drain { Mode::Drain } else { Mode::Serve };
            exit::report(run(&cli, config, mode).await)
        }
    }
}

async fn run(cli: &Cli, config: Config, mode: Mode) -> anyhow::Result<()> {
    let aws = AwsClients::new(&cli.aws).await?;
    let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
    Transformer::new(config, aws)
        .run(mode, shutdown)
        .await
        .map(drop)
}
