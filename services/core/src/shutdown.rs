//! SIGTERM and SIGINT as a [`CancellationToken`].
//!
//! ECS stops a task with SIGTERM and, after `stopTimeout`, SIGKILL; a
//! terminal sends SIGINT. Both mean: stop taking new work, finish what is in
//! hand, exit 0.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled on the first SIGTERM or SIGINT.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "Received {name}: finishing the work in hand, then exiting"
        );
        cancel.cancel();
    });
    Ok(token)
}
