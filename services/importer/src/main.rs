use anyhow::Context as _;
use importer::Importer;
use importer::settings::{Cli, Command, Config};
use pipeline_core::aws::AwsClients;
use pipeline_core::secrets::Secrets;
use pipeline_core::settings::AwsSettings;
use pipeline_core::{exit, settings, shutdown};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: Cli = settings::parse_or_exit();
    let common = &cli.common;
    if let Command::Healthcheck(check) = &cli.command {
        return check.run(&common.health.path("importer"));
    }
    // Every setting is checked here, before any network call.
    let resources = common
        .resources
        .load_or_exit(&common.aws, common.startup.wait);
    let secrets = Secrets::read_or_exit(resources, &common.aws, common.startup.wait);
    let mut config = settings::or_exit(cli.settings.resolve(&common.startup, resources, &secrets));
    settings::or_exit(common.aws.region());
    let (format, aws) = (common.log.format, &common.aws);
    match &cli.command {
        Command::Replay(replay) => exit::run(format, "importer", async move {
            let (importer, stop) = start(aws, config).await?;
            importer
                .replay(replay, &mut std::io::stdout(), stop)
                .await
                .map(drop)
        }),
        Command::Load(load) => exit::run(format, "importer", async move {
            let (importer, _) = start(aws, config).await?;
            importer.load(load).await.map(drop)
        }),
        Command::Status => exit::run(format, "importer", async move {
            let (importer, _) = start(aws, config).await?;
            importer.status(&mut std::io::stdout()).await
        }),
        Command::Run(run) => {
            config.full = run.full;
            config.health_file = Some(common.health.path("importer"));
            exit::run(format, "importer", async move {
                let (importer, stop) = start(aws, config).await?;
                importer.run(stop).await
            })
        }
        Command::Healthcheck(_) => unreachable!("answered above"),
    }
}

/// The importer, and the token SIGTERM/SIGINT cancel.
async fn start(
    aws: &AwsSettings,
    config: Config,
) -> anyhow::Result<(Importer, tokio_util::sync::CancellationToken)> {
    let aws = AwsClients::new(aws).await?;
    let shutdown = shutdown::on_signal().context("Failed to install signal handlers")?;
    Ok((Importer::new(config, aws)?, shutdown))
}
