use anyhow::Context as _;
use importer::Importer;
use importer::settings::{Cli, Command, Config};
use pipeline_core::aws::AwsClients;
use pipeline_core::{exit, health, settings, shutdown};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: Cli = settings::parse_or_exit();
    if let Command::Healthcheck { max_age } = cli.command {
        return match health::check(&cli.health.path("importer"), max_age) {
            Ok(_) => ExitCode::SUCCESS,
            Err(unhealthy) => {
                eprintln!("{unhealthy}");
                ExitCode::FAILURE
            }
        };
    }
    let mut config = settings::or_exit(cli.settings.resolve());
    config.health_file = Some(cli.health.path("importer"));
    config.startup_wait = cli.startup.wait;
    settings::or_exit(cli.aws.region());
    exit::run(cli.log.format, "importer", start(cli, config))
}

async fn start(cli: Cli, config: Config) -> anyhow::Result<()> {
    let aws = AwsClients::new(&cli.aws).await?;
    let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
    Importer::new(config, aws)?.run(shutdown).await
}
