use anyhow::Context as _;
use pipeline_core::aws::AwsClients;
use pipeline_core::{exit, settings, shutdown, telemetry};
use std::process::ExitCode;
use std::sync::Arc;
use transformer::settings::{Cli, Command};
use transformer::{Mode, Transformer, migrate};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = settings::parse_or_exit();
    telemetry::init(cli.log.format);
    exit::report(start(cli).await)
}

async fn start(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => migrate(&cli.settings.database_url()?).await,
        Command::Run { drain } => {
            let config = cli.settings.resolve()?;
            let aws = AwsClients::new(&cli.aws).await?;
            let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
            let mode = if drain { Mode::Drain } else { Mode::Serve };
            Arc::new(Transformer::new(config, aws))
                .run(mode, shutdown)
                .await
                .map(drop)
        }
    }
}
