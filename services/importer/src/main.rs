use anyhow::Context as _;
use importer::settings::{Cli, Command};
use importer::{Importer, run};
use pipeline_core::aws::AwsClients;
use pipeline_core::{exit, settings, shutdown, telemetry};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = settings::parse_or_exit();
    let Command::Run = cli.command;
    let config = settings::or_exit(cli.settings.resolve());
    settings::or_exit(cli.aws.region());
    telemetry::init(cli.log.format);
    exit::report(start(cli, config).await)
}

async fn start(cli: Cli, config: importer::settings::Config) -> anyhow::Result<()> {
    let aws = AwsClients::new(&cli.aws).await?;
    let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
    let every = config.every;
    let importer = Importer::new(config, aws)?;
    run(&importer, every, shutdown).await
}
