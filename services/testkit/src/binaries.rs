//! Running the workspace's binaries and reading what they print.

/// A command for one of the workspace's binaries with a clean environment:
/// only `PATH` and `RUST_LOG=info`, so a developer's own `QUEUE_URL` or
/// `DATABASE_URL` never leaks into a test.
pub fn command(binary: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// What a finished command printed on stderr, a line per entry.
pub fn stderr_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The lines of a run's log that report an error.
pub fn error_lines(output: &std::process::Output) -> Vec<String> {
    stderr_lines(output)
        .into_iter()
        .filter(|l| l.contains("ERROR") || l.starts_with("error:"))
        .collect()
}

/// Waits until a running child's stderr has a line containing `needle`,
/// returning the lines read so far. Panics after `timeout`.
pub async fn wait_for_line(
    stderr: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    needle: &str,
    timeout: std::time::Duration,
) -> Vec<String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(timeout, async {
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "no line containing {needle:?} in:\n{}",
        seen.join("\n")
    );
    seen
}

/// Sends SIGTERM, as ECS does to stop a task.
pub async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the child is running");
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("run kill");
    assert!(status.success());
}
