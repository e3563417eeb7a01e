//! Waiting at start-up for what a service depends on.
//!
//! A dependency that answers later than the service starts is normal: in
//! `docker compose up` PostgreSQL and LocalStack come up beside the
//! services, and on ECS a task may start while the database reboots or the
//! task's network is still being attached. So a service's first call to
//! PostgreSQL, SQS or S3 is retried with growing pauses, for at most
//! `STARTUP_WAIT`, with one log line per retry naming what it waits for.
//!
//! Only "not there yet" is waited for: a refused or reset connection, a
//! timeout, a name that does not resolve yet, a server still starting, a
//! 5xx. A definitive answer (a wrong password, no such queue, access
//! denied, a certificate that does not verify) fails at once: no amount of
//! waiting changes it.
//!
//! | variable       | flag             | default |
//! |----------------|------------------|---------|
//! | `STARTUP_WAIT` | `--startup-wait` | `60s`   |

use backon::Retryable as _;
use clap::Args;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

use crate::retry::Backoff;

/// Pauses between tries: from 250 ms, doubling up to 5 s, drawn at random
/// below that so that services started together do not knock together.
const PAUSES: Backoff = Backoff {
    first: Duration::from_millis(250),
    max: Duration::from_secs(5),
    attempts: None,
    full_jitter: true,
};

// The default, 60s, is long enough for PostgreSQL's first initialisation
// of a new volume and a LocalStack start on a laptop.
#[derive(Debug, Clone, Args)]
pub struct StartupSettings {
    /// How long the first connection to PostgreSQL, SQS or S3 is retried while the
    /// dependency is not there yet (refused, timed out, starting up), e.g. 60s; 0s tries once.
    #[arg(long = "startup-wait", env = "STARTUP_WAIT", value_name = "STARTUP_WAIT",
          default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub wait: Duration,
}

/// What one try came to.
#[derive(Debug)]
pub enum Attempt<E> {
    /// The dependency is not there yet: another try may succeed.
    NotReady(E),
    /// A definitive answer: no other try will change it.
    Failed(E),
}

/// Why waiting ended without success.
#[derive(Debug, thiserror::Error)]
pub enum WaitError<E: std::error::Error + 'static> {
    /// A try got an answer that waiting does not change.
    #[error(transparent)]
    Failed(E),
    /// Still not there when the time was up. `last` is in the message, not
    /// a source: a chain printed in full would repeat it.
    #[error("{last} (still not there after waiting {}, STARTUP_WAIT)", humantime::format_duration(*.waited))]
    GaveUp { last: E, waited: Duration },
}

impl<E: std::error::Error + 'static> WaitError<E> {
    /// The error of the last try.
    pub fn into_last(self) -> E {
        match self {
            Self::Failed(e) | Self::GaveUp { last: e, .. } => e,
        }
    }
}

/// Tries `attempt` until it succeeds, fails for good, or `budget` is spent.
/// Pauses grow from 250 ms to 5 s, with jitter, and never run past the
/// budget; each retry logs one warning naming `what` it waits for.
pub async fn wait_for<T, E, F, Fut>(
    what: impl fmt::Display,
    budget: Duration,
    attempt: F,
) -> Result<T, WaitError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt<E>>>,
{
    let deadline = Instant::now() + budget;
    let result = attempt
        .retry(PAUSES.builder())
        .sleep(tokio::time::sleep)
        .when(|e| matches!(e, Attempt::NotReady(_)))
        // Never sleep past the deadline; none left, no more tries.
        .adjust(|_, pause| {
            let left = deadline.saturating_duration_since(Instant::now());
            pause
                .filter(|_| !left.is_zero())
                .map(|p| PAUSES.jittered(p).min(left))
        })
        .notify(|e, pause| {
            if let Attempt::NotReady(e) = e {
                let left = deadline.saturating_duration_since(Instant::now());
                warn!(
                    waiting.for = %what,
                    "Waiting for {what}: {}; next try in {}, giving up in {}s",
                    crate::error_chain(e),
                    humantime::format_duration(round_ms(pause)),
                    left.as_secs()
                );
            }
        })
        .await;
    result.map_err(|e| match e {
        Attempt::Failed(e) => WaitError::Failed(e),
        // The budget, not the time elapsed: the last try may run past it
        // by its own timeout, and the line should name the setting.
        Attempt::NotReady(last) => WaitError::GaveUp {
            last,
            waited: budget,
        },
    })
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Refused(&'static str);

    #[tokio::test(start_paused = true)]
    async fn waits_while_not_ready_then_succeeds() {
        let tries = AtomicU32::new(0);
        let started = Instant::now();
        let value = wait_for("the test server", Duration::from_secs(60), || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0..3 => Err(Attempt::NotReady(Refused("connection refused"))),
                _ => Ok(42),
            }
        })
        .await
        .unwrap();
        assert_eq!((value, tries.load(Ordering::SeqCst)), (42, 4));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_definitive_answer_is_not_waited_for() {
        let tries = AtomicU32::new(0);
        let result: Result<(), _> =
            wait_for("the test server", Duration::from_secs(60), || async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(Attempt::Failed(Refused("password authentication failed")))
            })
            .await;
        assert!(matches!(result, Err(WaitError::Failed(_))));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_the_budget_is_spent_and_says_so() {
        let started = Instant::now();
        let result: Result<(), _> =
            wait_for("the test server", Duration::from_secs(20), || async {
                Err(Attempt::NotReady(Refused("connection refused")))
            })
            .await;
        let waited = started.elapsed();
        assert!(
            (Duration::from_secs(20)..Duration::from_secs(21)).contains(&waited),
            "{waited:?}"
        );
        assert_eq!(
            result.unwrap_err().to_string(),
            "connection refused (still not there after waiting 20s, STARTUP_WAIT)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_budget_tries_once() {
        let tries = AtomicU32::new(0);
        let result: Result<(), _> = wait_for("the test server", Duration::ZERO, || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(Attempt::NotReady(Refused("connection refused")))
        })
        .await;
        assert!(matches!(result, Err(WaitError::GaveUp { .. })));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }
}
