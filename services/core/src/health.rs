//! Liveness for container health checks, without a shell or a port.
//!
//! A running service touches a file every [`PULSE`]; the `healthcheck`
//! subcommand of the same binary, run by Docker's `HEALTHCHECK` or an ECS
//! health check, passes while the file is recent. The file is written by
//! a task on the service's own runtime, so a wedged runtime stops it, and
//! only once the service's start-up checks have passed.
//!
//! | variable      | flag            | default                     |
//! |---------------|-----------------|-----------------------------|
//! | `HEALTH_FILE` | `--health-file` | `$TMPDIR/<service>.healthy` |

use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How often a running service touches its health file.
pub const PULSE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Args)]
pub struct HealthSettings {
    /// File a running service touches every 5 s; `healthcheck` reads it.
    #[arg(
        long = "health-file",
        env = "HEALTH_FILE",
        value_name = "HEALTH_FILE",
        global = true
    )]
    pub file: Option<PathBuf>,
}

impl HealthSettings {
    /// The health file: `HEALTH_FILE`, or one named after the service in
    /// the temporary directory.
    pub fn path(&self, service: &str) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("{service}.healthy")))
    }
}

/// The `healthcheck` subcommand.
#[derive(Debug, Clone, Args)]
pub struct Healthcheck {
    /// How old the health file may be.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_age: Duration,
}

impl Healthcheck {
    /// Checks the health file at `path`: exit 0 while it is fresh, else 1
    /// with the reason on one line.
    #[must_use]
    pub fn run(&self, path: &Path) -> ExitCode {
        match check(path, self.max_age) {
            Ok(_) => ExitCode::SUCCESS,
            Err(unhealthy) => {
                eprintln!("{unhealthy}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Touches `path` now and every [`PULSE`] until `stop` is cancelled, then
/// removes it: a stopping service is no longer healthy.
pub fn pulse(path: PathBuf, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            if let Err(e) = std::fs::write(&path, b"ok\n")
                && !warned
            {
                warn!("Cannot write the health file {}: {e}", path.display());
                warned = true;
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(PULSE) => {}
            }
        }
        std::fs::remove_file(&path).ok();
    })
}

/// Runs `work` with the health file at `path` (if any) touched every
/// [`PULSE`], and removed before returning, so that a stopped service is
/// unhealthy whatever ends the process right after.
pub async fn while_healthy<F: Future>(path: Option<PathBuf>, work: F) -> F::Output {
    let stop = CancellationToken::new();
    let pulse = path.map(|path| pulse(path, stop.clone()));
    let output = work.await;
    stop.cancel();
    if let Some(pulse) = pulse {
        pulse.await.ok();
    }
    output
}

/// Passes when `path` was touched within `max_age`. The error is one line
/// naming the file.
pub fn check(path: &Path, max_age: Duration) -> Result<Duration, String> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| {
            format!(
                "unhealthy: cannot read {} ({e}): the service is not running, or has not passed its start-up checks",
                path.display()
            )
        })?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or(Duration::ZERO);
    if age > max_age {
        return Err(format!(
            "unhealthy: {} was last touched {}s ago, more than {}s",
            path.display(),
            age.as_secs(),
            max_age.as_secs()
        ));
    }
    Ok(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_file_passes_and_a_missing_or_stale_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.healthy");
        let missing = check(&path, Duration::from_secs(30)).unwrap_err();
        assert!(missing.contains("svc.healthy"), "{missing}");

        std::fs::write(&path, b"ok\n").unwrap();
        assert!(check(&path, Duration::from_secs(30)).is_ok());

        let old = SystemTime::now() - Duration::from_secs(120);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let stale = check(&path, Duration::from_secs(30)).unwrap_err();
        assert!(stale.contains("last touched 120s ago"), "{stale}");
    }

    #[tokio::test]
    async fn pulse_writes_the_file_and_removes_it_when_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.healthy");
        let stop = CancellationToken::new();
        let task = pulse(path.clone(), stop.clone());
        for _ in 0..100 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(check(&path, Duration::from_secs(1)).is_ok());
        stop.cancel();
        task.await.unwrap();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn while_healthy_removes_the_file_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.healthy");
        let seen = while_healthy(Some(path.clone()), async {
            for _ in 0..100 {
                if path.exists() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        })
        .await;
        assert!(seen, "the file exists while the work runs");
        assert!(!path.exists(), "and is gone as soon as it returns");
    }
}
