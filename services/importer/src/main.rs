use anyhow::Context as _;
use importer::settings::{Cli, Command};
use importer::{Importer, run};
use pipeline_core::aws::AwsClients;
use pipeline_core::{exit, settings, shutdown, telemetry};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = settings::parse_or_exit();
    telemetry::init(cli.log.format);
    exit::report(start(cli).await)
}

async fn start(cli: Cli) -> anyhow::Result<()> {
    let Command::Run { every } = cli.command;
    let config = cli.settings.resolve()?;
    let aws = AwsClients::new(&cli.aws).await?;
    let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
    let importer = Importer::new(config, aws)?;
    run(&importer, every, shutdown).await
}
