//! The agent's task-protection endpoint, behind a narrow trait so that the
//! protection's timing is tested with paused time.

use std::future::Future;
use url::Url;

use super::{CALL_TIMEOUT, EXPIRY};

/// Where protection is asked for.
pub(super) trait Endpoint: Send + Sync + 'static {
    /// For log lines.
    fn url(&self) -> &Url;

    /// One call; the error names the endpoint and says what the agent said.
    fn put(&self, protected: bool) -> impl Future<Output = Result<(), String>> + Send;
}

/// `PUT $ECS_AGENT_URI/task-protection/v1/state`.
pub(super) struct HttpEndpoint {
    http: reqwest::Client,
    url: Url,
}

impl HttpEndpoint {
    pub(super) fn new(agent_uri: &Url) -> Self {
        let url = Url::parse(&format!(
            "{}/task-protection/v1/state",
            agent_uri.as_str().trim_end_matches('/')
        ))
        .unwrap_or_else(|e| unreachable!("a URL with a path added is a URL: {e}"));
        Self {
            http: reqwest::Client::new(),
            url,
        }
    }
}

impl Endpoint for HttpEndpoint {
    fn url(&self) -> &Url {
        &self.url
    }

    async fn put(&self, protected: bool) -> Result<(), String> {
        let body = if protected {
            serde_json::json!({
                "ProtectionEnabled": true,
                "ExpiresInMinutes": EXPIRY.as_secs() / 60,
            })
        } else {
            serde_json::json!({ "ProtectionEnabled": false })
        };
        let failed = |reason: String| {
            format!(
                "cannot turn scale-in protection {} with PUT {}: {reason}",
                if protected { "on" } else { "off" },
                self.url
            )
        };
        let response = self
            .http
            .put(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(pipeline_core::error_chain(&e)))?;
        let status = response.status();
        let answer = response
            .bytes()
            .await
            .map_err(|e| failed(pipeline_core::error_chain(&e)))?;
        answer_to_result(status, &answer).map_err(failed)
    }
}

/// What the agent's answer means: `{"protection": {...}}` on success,
/// `{"failure": {"Reason", "Detail"}}` or `{"error": {"Code", "Message"}}`
/// otherwise.
fn answer_to_result(status: reqwest::StatusCode, answer: &[u8]) -> Result<(), String> {
    let json: serde_json::Value = serde_json::from_slice(answer).unwrap_or_default();
    let text = |object: &serde_json::Value, keys: &[&str]| {
        keys.iter()
            .filter_map(|k| object.get(k).and_then(serde_json::Value::as_str))
            .collect::<Vec<_>>()
            .join(": ")
    };
    if let Some(failure) = json.get("failure") {
        return Err(format!(
            "the agent answered failure {}",
            text(failure, &["Reason", "Detail"])
        ));
    }
    if let Some(error) = json.get("error") {
        return Err(format!(
            "the agent answered HTTP {status}, {}",
            text(error, &["Code", "Message"])
        ));
    }
    if !status.is_success() {
        let answer = String::from_utf8_lossy(answer);
        return Err(format!(
            "the agent answered HTTP {status}: {}",
            answer.trim()
        ));
    }
    if json.get("protection").is_none() {
        return Err("the agent's answer has no `protection`".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn the_agents_answers_become_one_line_each() {
        let ok = br#"{"protection":{"ExpirationDate":"2026-11-26T15:00:00Z","ProtectionEnabled":true,"TaskArn":"arn:aws:ecs:eu-west-1:1:task/c/1"}}"#;
        assert_eq!(answer_to_result(StatusCode::OK, ok), Ok(()));

        let failure = br#"{"failure":{"Arn":"arn:aws:ecs:eu-west-1:1:task/c/1","Reason":"TASK_NOT_VALID","Detail":null}}"#;
        assert_eq!(
            answer_to_result(StatusCode::OK, failure),
            Err("the agent answered failure TASK_NOT_VALID".to_owned())
        );

        let denied = br#"{"error":{"Arn":"arn","Code":"AccessDeniedException","Message":"not authorized to perform: ecs:UpdateTaskProtection"}}"#;
        assert_eq!(
            answer_to_result(StatusCode::BAD_REQUEST, denied),
            Err("the agent answered HTTP 400 Bad Request, AccessDeniedException: not authorized to perform: ecs:UpdateTaskProtection".to_owned())
        );

        assert_eq!(
            answer_to_result(StatusCode::BAD_GATEWAY, b"upstream down\n"),
            Err("the agent answered HTTP 502 Bad Gateway: upstream down".to_owned())
        );
        assert!(answer_to_result(StatusCode::OK, b"{}").is_err());
    }
}
