//! How a service ends.

use std::process::ExitCode;

/// Turns the outcome of a command into the process exit code. An error is
/// logged once, here, as one line with its whole cause chain
/// (`could not ...: because ...: because ...`).
pub fn report(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a service's work to its end: sets up telemetry first (before the
/// async runtime: the OTLP exporter's HTTP client is a blocking one), runs
/// `work` on a multi-threaded runtime, reports its outcome, then flushes
/// telemetry once the runtime has stopped.
pub fn run(
    format: crate::telemetry::LogFormat,
    service: &'static str,
    work: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let telemetry = crate::telemetry::init(format, service);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"));
    let code = report(runtime.and_then(|rt| rt.block_on(work)));
    telemetry.shutdown();
    code
}
