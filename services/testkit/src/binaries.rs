//! Running the workspace's binaries and reading what they print: to the
//! end ([`Ran`]), or in the background while the test acts ([`Running`]).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A command for one of the workspace's binaries with a clean environment:
/// only `PATH` and `RUST_LOG=info`, so a developer's own `QUEUE_URL` or
/// `DATABASE_URL` never leaks into a test.
pub fn command(binary: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// What `command` (a `--help`) prints, with single spaces: help is wrapped
/// to the terminal's width.
pub async fn help_text(command: &mut tokio::process::Command) -> String {
    let output = command.output().await.expect("the binary starts");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A finished run: its exit code, every line it wrote on stderr (its log),
/// and what it wrote on stdout (a command's output).
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub lines: Vec<String>,
    pub stdout: String,
}

impl Ran {
    /// Runs `command` to the end.
    pub async fn of(command: &mut tokio::process::Command) -> Self {
        command.output().await.expect("the binary starts").into()
    }

    /// The whole log, for searching and for failure messages.
    pub fn log(&self) -> String {
        self.lines.join("\n")
    }

    /// The lines that report an error.
    pub fn errors(&self) -> Vec<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.contains("ERROR") || l.starts_with("error:"))
            .collect()
    }

    /// Asserts exit code 0.
    pub fn assert_success(&self) {
        assert_eq!(self.code, Some(0), "{}", self.log());
    }

    /// Asserts exit `code` and exactly one error line, and returns it.
    pub fn one_error(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{}", self.log());
        let errors = self.errors();
        assert_eq!(errors.len(), 1, "one error line, in:\n{}", self.log());
        errors[0]
    }
}

impl From<std::process::Output> for Ran {
    fn from(output: std::process::Output) -> Self {
        Self {
            code: output.status.code(),
            lines: String::from_utf8_lossy(&output.stderr)
                .lines()
                .map(str::to_owned)
                .collect(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        }
    }
}

/// Lines of one of a child's streams, read as they come by a task of its
/// own, so that a chatty child never blocks on a full pipe while the test
/// waits for something else.
#[derive(Debug)]
struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    /// Bumped at each line read; closed when the stream ends.
    read: watch::Receiver<usize>,
    reader: JoinHandle<()>,
    /// Lines before this were searched by an earlier wait.
    searched: usize,
}

impl Lines {
    fn read(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Self {
        let mut stream = BufReader::new(stream).lines();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (bump, read) = watch::channel(0);
        let collect = Arc::clone(&lines);
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = stream.next_line().await {
                let mut lines = collect.lock().unwrap();
                lines.push(line);
                bump.send_replace(lines.len());
            }
        });
        Self {
            lines,
            read,
            reader,
            searched: 0,
        }
    }

    /// The first line after those found by earlier waits that contains
    /// `needle`, once it is read; `None` if the stream ends first.
    async fn wait_for(&mut self, needle: &str) -> Option<String> {
        loop {
            self.read.borrow_and_update();
            {
                let lines = self.lines.lock().unwrap();
                let hit = lines[self.searched..]
                    .iter()
                    .position(|l| l.contains(needle));
                if let Some(at) = hit {
                    self.searched += at + 1;
                    return Some(lines[self.searched - 1].clone());
                }
                self.searched = lines.len();
            }
            if self.read.changed().await.is_err() {
                return None;
            }
        }
    }

    fn joined(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Every line, once the stream has ended.
    async fn all(self) -> Vec<String> {
        self.reader.await.expect("the stream's reader");
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

/// A binary running in the background, its stderr (its log) and stdout (a
/// command's output) read as they come.
#[derive(Debug)]
pub struct Running {
    child: Child,
    stderr: Lines,
    stdout: Lines,
}

impl Running {
    pub fn spawn(command: &mut tokio::process::Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = Lines::read(child.stderr.take().expect("piped"));
        let stdout = Lines::read(child.stdout.take().expect("piped"));
        Self {
            child,
            stderr,
            stdout,
        }
    }

    /// Waits until a line of its log after those found by earlier waits
    /// contains `needle`, and returns it. Panics after `timeout`, or if
    /// stderr ends first.
    pub async fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        match tokio::time::timeout(timeout, self.stderr.wait_for(needle)).await {
            Ok(Some(line)) => line,
            _ => panic!("no line containing {needle:?} in:\n{}", self.log()),
        }
    }

    /// As [`Running::wait_for_line`], in what it prints on stdout.
    pub async fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> String {
        match tokio::time::timeout(timeout, self.stdout.wait_for(needle)).await {
            Ok(Some(line)) => line,
            _ => panic!(
                "no output line containing {needle:?} in:\n{}\nlog:\n{}",
                self.stdout.joined(),
                self.log()
            ),
        }
    }

    /// Every line of its log read so far.
    pub fn log(&self) -> String {
        self.stderr.joined()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("the child's status").is_none()
    }

    /// Sends SIGTERM, as ECS does to stop a task.
    pub async fn sigterm(&self) {
        signal(&self.child, "TERM").await;
    }

    /// Sends SIGKILL: the process ends at once, wherever it was.
    pub async fn kill(&self) {
        signal(&self.child, "KILL").await;
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub async fn sigint(&self) {
        signal(&self.child, "INT").await;
    }

    /// Waits up to `timeout` for it to exit, and reads the rest of what it
    /// wrote.
    pub async fn finish(mut self, timeout: Duration) -> Ran {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {timeout:?}:\n{}", self.log()))
            .expect("wait for the child");
        let stdout = self.stdout.all().await;
        Ran {
            code: status.code(),
            lines: self.stderr.all().await,
            stdout: stdout.iter().map(|l| format!("{l}\n")).collect(),
        }
    }
}

/// Sends SIGTERM, as ECS does to stop a task.
pub async fn sigterm(child: &Child) {
    signal(child, "TERM").await;
}

async fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("the child is running");
    let status = tokio::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .await
        .expect("run kill");
    assert!(status.success());
}
