//! Serving one session's tool calls, as the SDK's session tool runner does: read the log, run
//! each open built-in call in the session's sandbox, answer it with `user.tool_result`, and
//! wait for the log to move (its event stream says when). A call gated on the user
//! (`evaluated_permission: ask`) runs once allowed, never when denied. The session is served
//! until it terminates, the lease ends, the worker shuts down, or it stays idle `max_idle`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use agentd_brain::Sandboxes;
use agentd_egress::Policy;
use agentd_hands::Output;
use agentd_hands::tools::SANDBOX_TOOLS;

use crate::api::{Api, CallError};
use crate::lease::Lease;

pub struct Served<'a> {
    pub api: &'a Api,
    pub token: &'a str,
    pub session_id: &'a str,
    pub lease: &'a Lease,
    pub sandboxes: &'a Sandboxes,
    pub policy: &'a Policy,
    pub max_idle: Duration,
    /// Once cancelled, no new call starts; the one running finishes and is answered.
    pub shutdown: &'a CancellationToken,
}

/// A call the worker may run now.
struct Call {
    id: String,
    name: String,
    input: Value,
    thread: Option<String>,
}

/// What the log says, as far as the worker cares.
struct Reading {
    open: Vec<Call>,
    terminated: bool,
    /// The session rests and waits for nobody's tool: its turn is over.
    resting: bool,
}

fn read_log(events: &[Value], answered: &HashSet<String>) -> Reading {
    let str_of = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut closed: HashSet<String> = HashSet::new();
    let mut verdicts: std::collections::HashMap<String, bool> = Default::default();
    let mut terminated = false;
    for e in events {
        match e.get("type").and_then(Value::as_str) {
            Some("user.tool_result" | "agent.tool_result") => {
                closed.extend(str_of(e, "tool_use_id"));
            }
            Some("user.tool_confirmation") => {
                if let Some(id) = str_of(e, "tool_use_id") {
                    verdicts.insert(id, str_of(e, "result").as_deref() == Some("allow"));
                }
            }
            Some("session.status_terminated" | "session.deleted") => terminated = true,
            _ => {}
        }
    }
    let open = events
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("agent.tool_use"))
        .filter_map(|e| {
            let id = str_of(e, "id")?;
            let name = str_of(e, "name")?;
            if !SANDBOX_TOOLS.contains(&name.as_str())
                || closed.contains(&id)
                || answered.contains(&id)
            {
                return None;
            }
            let allowed = match str_of(e, "evaluated_permission").as_deref() {
                Some("ask") => verdicts.get(&id) == Some(&true),
                Some("deny") => false,
                _ => true,
            };
            allowed.then(|| Call {
                id,
                name,
                input: e.get("input").cloned().unwrap_or(Value::Null),
                thread: str_of(e, "session_thread_id"),
            })
        })
        .collect();
    let resting = events.last().is_some_and(|e| {
        e.get("type").and_then(Value::as_str) == Some("session.status_idle")
            && e.pointer("/stop_reason/type").and_then(Value::as_str) != Some("requires_action")
    });
    Reading {
        open,
        terminated,
        resting,
    }
}

fn result_event(call: &Call, out: Output) -> Value {
    let text = if out.text.is_empty() {
        "(no output)".to_owned()
    } else {
        out.text
    };
    let mut content = vec![json!({"type": "text", "text": text})];
    if let Some(img) = out.image {
        content.push(json!({"type": "image", "source": {
            "type": "base64", "media_type": img.media_type, "data": img.data}}));
    }
    let mut e = json!({
        "type": "user.tool_result",
        "tool_use_id": call.id,
        "is_error": out.is_error,
        "content": content,
    });
    if let Some(t) = &call.thread {
        e["session_thread_id"] = json!(t);
    }
    e
}

/// Backoff for calls retried while agentd is away: 0.25 s doubling to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(5))
}

impl Served<'_> {
    pub async fn run(&self) -> Result<(), CallError> {
        let session = self
            .retry(|| self.api.session(self.session_id, self.token))
            .await?;
        if session.get("status").and_then(Value::as_str) == Some("terminated") {
            return Ok(());
        }
        let moved = Arc::new(Notify::new());
        let watch = CancellationToken::new();
        let _stop_watch = watch.clone().drop_guard();
        tokio::spawn(watch_stream(
            self.api.clone(),
            self.token.to_owned(),
            self.session_id.to_owned(),
            moved.clone(),
            watch,
        ));
        let mut answered: HashSet<String> = HashSet::new();
        let mut rest_since: Option<Instant> = None;
        loop {
            if self.lease.is_ended() {
                return Ok(());
            }
            let events = self
                .retry(|| self.api.events(self.session_id, self.token))
                .await?;
            let reading = read_log(&events, &answered);
            if reading.terminated {
                return Ok(());
            }
            for call in &reading.open {
                if self.lease.is_ended() || self.shutdown.is_cancelled() {
                    return Ok(());
                }
                let Some(out) = self.execute(call).await else {
                    return Ok(()); // the lease went while the tool ran
                };
                self.answer(call, out).await?;
                answered.insert(call.id.clone());
            }
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            if !reading.open.is_empty() {
                rest_since = None;
                continue; // answers move the log; read it again before resting
            }
            let left = if reading.resting {
                let since = *rest_since.get_or_insert_with(Instant::now);
                match self.max_idle.checked_sub(since.elapsed()) {
                    Some(l) if !l.is_zero() => l,
                    _ => return Ok(()),
                }
            } else {
                rest_since = None;
                Duration::from_secs(2)
            };
            // The stream says when the log moves; the timeout covers a stream that is down.
            tokio::select! {
                () = moved.notified() => {}
                () = tokio::time::sleep(left.min(Duration::from_secs(2))) => {}
                () = self.lease.ended() => return Ok(()),
                () = self.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Run `call` in the session's sandbox; `None` if the lease ended first (the sandbox is
    /// then stopped, which stops the command).
    async fn execute(&self, call: &Call) -> Option<Output> {
        let log = call.thread.as_deref().unwrap_or(self.session_id);
        let sb = match self
            .sandboxes
            // A worker's sessions mount no file resources (they stay on agentd's side).
            .get(
                log,
                self.session_id,
                self.policy.clone(),
                agentd_brain::sandboxes::Provision::default(),
            )
            .await
        {
            Ok(sb) => sb,
            Err(e) => {
                return Some(Output::error(format!(
                    "Could not start a sandbox for this tool: {e}"
                )));
            }
        };
        tracing::info!(session = self.session_id, tool = %call.name, call = %call.id, "running a tool call");
        let out = tokio::select! {
            o = sb.execute(&call.name, &call.input) => Some(o),
            () = self.lease.ended() => None,
        };
        self.sandboxes.done(log);
        if out.is_none() || !sb.alive() {
            self.sandboxes.release(log).await;
        }
        out
    }

    /// Post the call's result, again while agentd is away and the lease holds. A 409 is the
    /// answer that someone answered it already, or that this worker no longer holds the item.
    async fn answer(&self, call: &Call, out: Output) -> Result<(), CallError> {
        let events = json!([result_event(call, out)]);
        let mut attempt = 0;
        loop {
            match self
                .api
                .send_events(self.session_id, self.token, events.clone())
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.status() == Some(409) => {
                    tracing::warn!(call = %call.id, error = %e, "result refused");
                    return Ok(());
                }
                Err(e) if e.transient() && !self.lease.is_ended() => {
                    attempt += 1;
                    tracing::warn!(call = %call.id, error = %e, "cannot post a result yet; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(backoff(attempt)) => {}
                        () = self.lease.ended() => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `f` until it succeeds, fails for good, or the lease ends.
    async fn retry<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Err(e) if e.transient() && !self.lease.is_ended() => {
                    attempt += 1;
                    tokio::select! {
                        () = tokio::time::sleep(backoff(attempt)) => {}
                        () = self.lease.ended() => {}
                    }
                }
                r => return r,
            }
        }
    }
}

/// Wake `moved` whenever the session's event stream delivers something; reconnect with
/// backoff until `stop`.
async fn watch_stream(
    api: Api,
    token: String,
    session_id: String,
    moved: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut attempt = 0;
    while !stop.is_cancelled() {
        let run = async {
            let resp = api.stream(&session_id, &token).await?;
            attempt = 0;
            // Anything may have happened while the stream was down.
            moved.notify_one();
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                if chunk.is_err() {
                    break;
                }
                moved.notify_one();
            }
            Ok::<(), CallError>(())
        };
        tokio::select! {
            _ = run => {}
            () = stop.cancelled() => return,
        }
        attempt += 1;
        tokio::select! {
            () = tokio::time::sleep(backoff(attempt)) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn use_(id: &str, name: &str) -> Value {
        json!({"type": "agent.tool_use", "id": id, "name": name, "input": {}})
    }

    #[test]
    fn open_calls_are_the_unanswered_sandbox_calls_the_user_did_not_hold_back() {
        let events = vec![
            use_("a", "bash"),
            json!({"type": "user.tool_result", "tool_use_id": "a"}),
            use_("b", "read"),
            use_("c", "web_fetch"),
            json!({"type": "agent.tool_use", "id": "d", "name": "bash", "input": {}, "evaluated_permission": "ask"}),
            json!({"type": "agent.tool_use", "id": "e", "name": "bash", "input": {}, "evaluated_permission": "ask"}),
            json!({"type": "user.tool_confirmation", "tool_use_id": "e", "result": "allow"}),
            use_("f", "write"),
        ];
        let answered: HashSet<String> = ["f".to_owned()].into();
        let r = read_log(&events, &answered);
        let ids: Vec<&str> = r.open.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["b", "e"]);
        assert!(!r.terminated && !r.resting);
    }

    #[test]
    fn an_idle_that_waits_on_a_tool_is_not_rest() {
        let idle =
            |reason: &str| json!({"type": "session.status_idle", "stop_reason": {"type": reason}});
        assert!(!read_log(&[idle("requires_action")], &HashSet::new()).resting);
        assert!(read_log(&[idle("end_turn")], &HashSet::new()).resting);
        let ended = read_log(
            &[json!({"type": "session.status_terminated"})],
            &HashSet::new(),
        );
        assert!(ended.terminated);
    }
}
