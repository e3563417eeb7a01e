use anyhow::Context as _;
use importer::Importer;
use importer::settings::{Cli, Command, Config};
use pipeline_core::aws::AwsClients;
use pipeline_core::{exit, settings, shutdown};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: Cli = settings::parse_or_exit();
    let common = &cli.common;
    if let Command::Healthcheck(check) = &cli.command {
        return check.run(&common.health.path("importer"));
    }
    let mut config = settings::or_exit(cli.settings.resolve(&common.startup));
    config.health_file = Some(common.health.path("importer"));
    settings::or_exit(common.aws.region());
    exit::run(common.log.format, "importer", start(cli, config))
}

async fn start(cli: Cli, config: Config) -> anyhow::Result<()> {
    let aws = AwsClients::new(&cli.common.aws).await?;
    let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
    Importer::new(config, aws)?.run(shutdown).await
}
