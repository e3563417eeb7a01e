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
