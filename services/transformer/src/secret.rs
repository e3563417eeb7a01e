//! The database password from AWS Secrets Manager (`DATABASE_SECRET`).
//!
//! RDS keeps the master password of a database created with
//! `ManageMasterUserPassword` in a secret of its own and rotates it every
//! 7 days. ECS injects a secret into a container's environment only when
//! the task starts, so a long-running transformer would keep the old
//! password: its open connections stay logged in, but after a rotation the
//! first reconnect (a database restart, a failover, a pool that replaces a
//! broken connection) is refused, and every message would then fail,
//! retry and end in the dead-letter queue while the task looks healthy.
//!
//! So the transformer reads the secret itself: once at start, and again
//! whenever PostgreSQL refuses the password ([`pipeline_store`] does that
//! on a refused connection, at most every 5 s). Restarting the task on a
//! refused password would also pick up the new one, but it would hand back
//! every message in hand and leave the service short of a task for a
//! minute per rotation; a read costs one `GetSecretValue`.

use aws_sdk_secretsmanager::Client;
use pipeline_core::aws::{AwsClients, may_pass};
use pipeline_core::error_chain;
use pipeline_store::{DatabaseUrl, PasswordError, PasswordSource};
use std::pin::Pin;
use std::sync::Arc;

/// A password kept in a Secrets Manager secret: either the password alone
/// or JSON with a `password` key, as RDS writes its managed secrets
/// (`{"username": "...", "password": "..."}`).
#[derive(Debug)]
pub struct SecretPassword {
    client: Client,
    secret_id: String,
}

impl SecretPassword {
    /// The secret `secret_id` (a name or an ARN), read with the region,
    /// credentials and endpoint of `aws`.
    pub fn new(aws: &AwsClients, secret_id: &str) -> Self {
        Self {
            client: pipeline_core::secrets::client(aws),
            secret_id: secret_id.to_owned(),
        }
    }
}

impl PasswordSource for SecretPassword {
    fn name(&self) -> String {
        format!("Secrets Manager secret {}", self.secret_id)
    }

    fn read(&self) -> Pin<Box<dyn Future<Output = Result<String, PasswordError>> + Send + '_>> {
        Box::pin(async move {
            let failed = |reason: String, may_pass: bool| PasswordError {
                from: self.name(),
                reason,
                may_pass,
            };
            let secret = self
                .client
                .get_secret_value()
                .secret_id(&self.secret_id)
                .send()
                .await
                .map_err(|e| failed(error_chain(&e), may_pass(&e)))?;
            let text = secret
                .secret_string()
                .ok_or_else(|| failed("it holds binary data, not text".into(), false))?;
            password_in(text).map_err(|reason| failed(reason, false))
        })
    }
}

/// `url` with its password read from the secret `secret_id` from now on.
pub fn with_secret(url: DatabaseUrl, aws: &AwsClients, secret_id: &str) -> DatabaseUrl {
    url.with_password_source(Arc::new(SecretPassword::new(aws, secret_id)))
}

/// The password in a secret's text. Error messages never quote the text.
fn password_in(text: &str) -> Result<String, String> {
    if !text.trim_start().starts_with('{') {
        return Ok(text.to_owned());
    }
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "it holds JSON that does not parse".to_owned())?;
    json.get("password")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "its JSON has no string \"password\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_text_or_its_password_key() {
        assert_eq!(password_in("s3cret").unwrap(), "s3cret");
        assert_eq!(
            password_in(r#"{"username": "pipeline", "password": "s3cret"}"#).unwrap(),
            "s3cret"
        );
        let missing = password_in(r#"{"username": "pipeline", "pass": "s3cret"}"#).unwrap_err();
        assert_eq!(missing, "its JSON has no string \"password\"");
        assert!(
            !password_in(r#"{"password": s3cret"#)
                .unwrap_err()
                .contains("s3cret")
        );
    }
}
