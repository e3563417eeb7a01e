//! A LocalStack of a test's own, with init hooks, as the compose file runs
//! it: for tests of what LocalStack does when it starts (run the hooks in
//! `ready.d`, report their state), which the shared test LocalStack, up
//! long before any test, cannot show.
//!
//! It runs in host mode from the same virtualenv and launcher as the
//! shared one (`scripts/lib/services.sh`), on a free port of 127.0.0.1,
//! with its file system root in a temporary folder. In host mode LocalStack
//! looks for init hooks under `$FILESYSTEM_ROOT/etc/localstack/init`
//! (`localstack.config.Directories.for_host`); in its image, under
//! `/etc/localstack/init`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use url::Url;

/// A LocalStack process, killed when dropped.
#[derive(Debug)]
pub struct LocalStack {
    endpoint: Url,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl LocalStack {
    /// Starts LocalStack (S3 and SQS) with `hooks` in its `ready.d` and
    /// `env` in its environment, which the hooks inherit. Returns once its
    /// gateway answers; the hooks may still be running.
    pub async fn start_with_ready_hooks(hooks: &[PathBuf], env: &[(String, String)]) -> Self {
        let bin = PathBuf::from(std::env::var("TEST_AWS_CLI_DIR").unwrap_or_else(|_| {
            panic!("TEST_AWS_CLI_DIR is not set: run the tests with scripts/test")
        }));
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path().join("fs");
        let ready = root.join("etc/localstack/init/ready.d");
        std::fs::create_dir_all(&ready).expect("create ready.d");
        std::fs::create_dir_all(dir.path().join("s3")).expect("create the S3 folder");
        for hook in hooks {
            let name = hook.file_name().expect("a hook file");
            std::fs::copy(hook, ready.join(name)).expect("copy the hook");
        }
        let port = crate::proxy::closed_port();
        let endpoint = Url::parse(&format!("http://127.0.0.1:{port}")).expect("a URL");
        let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .expect("a PATH");
        let launcher = crate::compose::workspace().join("localstack/host/launch.py");
        let log = std::fs::File::create(dir.path().join("localstack.log")).expect("a log file");
        let child = tokio::process::Command::new(bin.join("python"))
            .arg(launcher)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir.path())
            .envs([
                ("SERVICES", "s3,sqs"),
                ("DISABLE_EVENTS", "1"),
                ("SKIP_SSL_CERT_DOWNLOAD", "1"),
                ("DNS_ADDRESS", "0"),
                ("OVERRIDE_IN_DOCKER", "0"),
                ("SQS_ENDPOINT_STRATEGY", "off"),
                ("LOCALSTACK_BIND_HOST", "127.0.0.1"),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ])
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("LOCALSTACK_HOST", format!("127.0.0.1:{port}"))
            .env("FILESYSTEM_ROOT", &root)
            .env("LOCALSTACK_S3_DIR", dir.path().join("s3"))
            // Where the hooks find it: inside the image, awslocal knows.
            .env("AWS_ENDPOINT_URL", endpoint.as_str())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start LocalStack");
        let this = Self {
            endpoint,
            _child: child,
            _dir: dir,
        };
        this.wait_until_it_answers(dir_log(&this)).await;
        this
    }

    /// What LocalStack and its hooks wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(dir_log(self)).unwrap_or_default()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// `GET /_localstack/init/ready`: whether the ready stage ran, and the
    /// state of each of its scripts.
    pub async fn init_ready(&self) -> serde_json::Value {
        let url = self.endpoint.join("_localstack/init/ready").expect("a URL");
        let body = reqwest::get(url.clone())
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .text()
            .await
            .expect("a body");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
    }

    /// Waits until the ready stage has run all its hooks, whatever their
    /// outcome; returns what LocalStack reports.
    pub async fn wait_for_ready_stage(&self) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let stage = self.init_ready().await;
            if stage["completed"] == true {
                return stage;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the ready stage never completed: {stage}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_until_it_answers(&self, log: PathBuf) {
        let health = self.endpoint.join("_localstack/health").expect("a URL");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(response) = reqwest::get(health.clone()).await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "LocalStack did not start; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn dir_log(localstack: &LocalStack) -> PathBuf {
    Path::new(localstack._dir.path()).join("localstack.log")
}
