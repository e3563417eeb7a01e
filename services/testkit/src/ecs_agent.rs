//! A stand-in for the ECS container agent's task-protection endpoint, on
//! 127.0.0.1: it answers `PUT /api/{task}/task-protection/v1/state` as
//! the agent does and records every call, so that tests can see when a
//! transformer protected its task from scale-in.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use url::Url;

use crate::server::Server;

const TASK_ARN: &str = "arn:aws:ecs:us-east-1:000000000000:task/pipeline/0123456789abcdef";

/// One `PUT` as the agent received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub at: SystemTime,
    pub protection_enabled: bool,
    pub expires_in_minutes: Option<u64>,
    /// Answered with an error instead of a protection.
    pub refused: bool,
}

#[derive(Debug, Default)]
struct Agent {
    calls: Mutex<Vec<Call>>,
    refuse: AtomicBool,
}

/// The fake agent; stops when dropped.
#[derive(Debug)]
pub struct FakeAgent {
    uri: Url,
    agent: Arc<Agent>,
    _server: Server,
}

impl FakeAgent {
    pub async fn start() -> Self {
        let agent = Arc::new(Agent::default());
        let app = Router::new()
            .route("/api/{task}/task-protection/v1/state", put(set_state))
            .with_state(Arc::clone(&agent));
        let server = Server::start(app).await;
        // What ECS sets in ECS_AGENT_URI: the agent's address and a task id.
        let uri = Url::parse(&format!(
            "http://{}/api/0123456789abcdef-1234",
            server.address()
        ))
        .unwrap();
        Self {
            uri,
            agent,
            _server: server,
        }
    }

    /// The value for `ECS_AGENT_URI`.
    pub fn uri(&self) -> &Url {
        &self.uri
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.agent.calls.lock().unwrap().clone()
    }

    /// Whether the task is protected now, as the last accepted call left it.
    pub fn protected(&self) -> bool {
        self.calls()
            .iter()
            .rev()
            .find(|call| !call.refused)
            .is_some_and(|call| call.protection_enabled)
    }

    /// From now on, answer as an agent whose task role may not call
    /// `ecs:UpdateTaskProtection` does.
    pub fn refuse(&self) {
        self.agent.refuse.store(true, Ordering::SeqCst);
    }
}

async fn set_state(State(agent): State<Arc<Agent>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let Some(enabled) = request
        .get("ProtectionEnabled")
        .and_then(serde_json::Value::as_bool)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "ProtectionEnabled is required",
        );
    };
    let expires = request
        .get("ExpiresInMinutes")
        .and_then(serde_json::Value::as_u64);
    let refused = agent.refuse.load(Ordering::SeqCst);
    agent.calls.lock().unwrap().push(Call {
        at: SystemTime::now(),
        protection_enabled: enabled,
        expires_in_minutes: expires,
        refused,
    });
    if refused {
        return error(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "User is not authorized to perform: ecs:UpdateTaskProtection",
        );
    }
    let expiration = enabled.then(|| {
        let minutes = expires.unwrap_or(120);
        time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes as i64)
    });
    let body = serde_json::json!({
        "protection": {
            "ExpirationDate": expiration.map(|t| t.format(&time::format_description::well_known::Rfc3339).unwrap()),
            "ProtectionEnabled": enabled,
            "TaskArn": TASK_ARN,
        }
    });
    (StatusCode::OK, body.to_string()).into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "error": { "Arn": TASK_ARN, "Code": code, "Message": message }
    });
    (status, body.to_string()).into_response()
}
