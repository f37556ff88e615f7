//! The worker's side of agentd's HTTP API: the work endpoints and the session endpoints a
//! work item's secret reaches. Every call names its credential: the environment key for the
//! queue, the item's session token for everything about the item.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

/// A call that failed. `Status` is agentd's answer; `Transport` means agentd was not reached
/// (down, restarting, a reset connection) and the call may be tried again.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("agentd is unreachable: {0}")]
    Transport(String),
    #[error("agentd answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        body: Value,
    },
}

impl CallError {
    /// Whether trying again may succeed: agentd was not reached, or it answered with a 5xx
    /// or 429. Any other 4xx is an answer that retrying will not change.
    pub fn transient(&self) -> bool {
        match self {
            CallError::Transport(_) => true,
            CallError::Status { status, .. } => *status >= 500 || *status == 429,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            CallError::Transport(_) => None,
        }
    }
}

/// A claimed work item, as much of it as the worker reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Work {
    pub id: String,
    pub environment_id: String,
    #[serde(default)]
    pub secret: Option<String>,
    pub data: WorkData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkData {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Heartbeat {
    pub last_heartbeat: String,
    pub lease_extended: bool,
    pub state: String,
    pub ttl_seconds: u64,
}

/// The session token inside a work item's `secret` (URL-safe base64 JSON), if it carries one.
pub fn sessions_token(secret: Option<&str>) -> Option<String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(secret?.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v.get("sessions_token")?
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// Sent on every poll, so the queue's stats count this worker.
    worker_id: String,
}

/// No call but a poll or the event stream should take longer; a hung connection to an agentd
/// that died must not outlive the lease.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Api {
    pub fn new(base: &str, worker_id: &str) -> Result<Api, CallError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| CallError::Transport(e.to_string()))?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            worker_id: worker_id.to_owned(),
        })
    }

    fn req(&self, method: reqwest::Method, path: &str, bearer: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .header("anthropic-beta", agentd_wire::BETA)
            .header("anthropic-version", "2023-06-01")
    }

    async fn call(&self, rb: reqwest::RequestBuilder) -> Result<Value, CallError> {
        let resp = rb
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map_or_else(
                || String::from_utf8_lossy(&bytes).into_owned(),
                str::to_owned,
            );
        Err(CallError::Status {
            status,
            message,
            body,
        })
    }

    fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CallError> {
        serde_json::from_value(v).map_err(|e| CallError::Status {
            status: 200,
            message: format!("unexpected answer: {e}"),
            body: Value::Null,
        })
    }

    /// One long poll (agentd holds it up to `block_ms`) for an item of environment `env`.
    pub async fn poll(&self, env: &str, key: &str) -> Result<Option<Work>, CallError> {
        let rb = self
            .req(
                reqwest::Method::GET,
                &format!("/v1/environments/{env}/work/poll?block_ms=999"),
                key,
            )
            .header("anthropic-worker-id", &self.worker_id);
        Self::decode(self.call(rb).await?)
    }

    pub async fn ack(&self, env: &str, id: &str, key: &str) -> Result<(), CallError> {
        let path = format!("/v1/environments/{env}/work/{id}/ack");
        self.call(self.req(reqwest::Method::POST, &path, key))
            .await
            .map(drop)
    }

    pub async fn heartbeat(
        &self,
        env: &str,
        id: &str,
        token: &str,
        expected: &str,
    ) -> Result<Heartbeat, CallError> {
        let path = format!("/v1/environments/{env}/work/{id}/heartbeat");
        let rb = self
            .req(reqwest::Method::POST, &path, token)
            .query(&[("expected_last_heartbeat", expected)]);
        Self::decode(self.call(rb).await?)
    }

    /// Stop the item now: the worker is done with it, or hands it back.
    pub async fn stop(&self, env: &str, id: &str, token: &str) -> Result<(), CallError> {
        let path = format!("/v1/environments/{env}/work/{id}/stop");
        let rb = self
            .req(reqwest::Method::POST, &path, token)
            .json(&json!({"force": true}));
        self.call(rb).await.map(drop)
    }

    pub async fn session(&self, session_id: &str, token: &str) -> Result<Value, CallError> {
        let path = format!("/v1/sessions/{session_id}");
        self.call(self.req(reqwest::Method::GET, &path, token))
            .await
    }

    /// Every event of the session's log, oldest first.
    pub async fn events(&self, session_id: &str, token: &str) -> Result<Vec<Value>, CallError> {
        let mut all = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut rb = self
                .req(
                    reqwest::Method::GET,
                    &format!("/v1/sessions/{session_id}/events"),
                    token,
                )
                .query(&[("limit", "1000")]);
            if let Some(p) = &page {
                rb = rb.query(&[("page", p.as_str())]);
            }
            let v = self.call(rb).await?;
            if let Some(Value::Array(data)) = v.get("data") {
                all.extend(data.iter().cloned());
            }
            match v.get("next_page").and_then(Value::as_str) {
                Some(p) if !p.is_empty() => page = Some(p.to_owned()),
                _ => return Ok(all),
            }
        }
    }

    pub async fn send_events(
        &self,
        session_id: &str,
        token: &str,
        events: Value,
    ) -> Result<(), CallError> {
        let path = format!("/v1/sessions/{session_id}/events");
        let rb = self
            .req(reqwest::Method::POST, &path, token)
            .json(&json!({ "events": events }));
        self.call(rb).await.map(drop)
    }

    /// The session's live event stream, opened; its body is read by the caller.
    pub async fn stream(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<reqwest::Response, CallError> {
        let path = format!("/v1/sessions/{session_id}/events/stream");
        let resp = self
            .req(reqwest::Method::GET, &path, token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(CallError::Status {
                status: resp.status().as_u16(),
                message: "cannot open the event stream".into(),
                body: Value::Null,
            });
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_token_is_read_from_a_secret_with_or_without_padding() {
        let payload = r#"{"sessions_token":"tok-1"}"#;
        let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
        let padded = base64::engine::general_purpose::URL_SAFE.encode(payload);
        assert_eq!(sessions_token(Some(&unpadded)).as_deref(), Some("tok-1"));
        assert_eq!(sessions_token(Some(&padded)).as_deref(), Some("tok-1"));
        assert_eq!(sessions_token(Some("not base64 at all!")), None);
        assert_eq!(sessions_token(None), None);
    }
}
