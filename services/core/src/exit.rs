//! How a service ends.

use std::process::ExitCode;

/// Input an operator gave that a command cannot use, found only once it
/// looked (a prefix with no objects under it, a file that is not a JSON
/// array, a queue without a dead-letter queue): reported like a bad
/// setting, in one line with exit code 2, before anything was sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Exit code of a command that asked something of the operator's input it
/// does not have: the code of a bad setting (and of clap's usage errors).
pub const BAD_INPUT: u8 = 2;

/// Turns the outcome of a command into the process exit code. An error is
/// logged once, here, as one line with its whole cause chain
/// (`could not ...: because ...: because ...`). [`BadInput`] is printed
/// as a bad setting is, `error: ...` on stderr, and exits 2.
pub fn report(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<BadInput>() {
            Some(bad) => {
                eprintln!("error: {bad}");
                ExitCode::from(BAD_INPUT)
            }
            None => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        },
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
