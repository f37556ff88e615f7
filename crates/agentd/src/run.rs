//! `agentd run AGENT "prompt"`: one turn of a new session, printed as it happens.
//!
//! Progress (status, tool calls, streamed text) goes to stderr; the agent's final message goes
//! to stdout, so `agentd run a "..." > answer.txt` keeps just the answer.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::Remote;
use crate::client::Client;

#[derive(clap::Args)]
pub struct Args {
    /// Agent name or id.
    agent: String,
    /// What to ask.
    prompt: String,
    /// Environment name or id (default: an environment named "default", made if missing).
    #[arg(long)]
    env: Option<String>,
    /// Print each event as one JSON line on stdout instead.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Exit code when the agent waits for custom tool results this CLI cannot give.
const REQUIRES_ACTION: u8 = 3;

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.remote)?;
    let agent_id = find(&c, "/v1/agents", "agent_", &a.agent)
        .await?
        .with_context(|| {
            format!(
                "no agent named {:?}; create it with `agentd apply -f agent.yaml`",
                a.agent
            )
        })?;
    let env_id = environment(&c, a.env.as_deref()).await?;
    let session: Value = c
        .post(
            "/v1/sessions",
            &json!({"agent": agent_id, "environment_id": env_id}),
        )
        .await?;
    let sid = session["id"].as_str().unwrap_or_default().to_owned();
    // Subscribe before sending the message, so no event of the turn is missed.
    let mut events = c.stream(&sid, !a.json).await?;
    c.post::<Value>(
        &format!("/v1/sessions/{sid}/events"),
        &json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": a.prompt}]}]}),
    )
    .await?;
    if !a.json {
        eprintln!("session {sid}");
    }

    let mut last_message = String::new();
    let mut streaming: Option<String> = None;
    let mut err = std::io::stderr();
    while let Some(ev) = events.recv().await {
        let ev = ev?;
        if a.json {
            println!("{ev}");
        }
        let kind = ev["type"].as_str().unwrap_or_default();
        match kind {
            "event_start" if !a.json => {
                streaming = ev["event"]["id"].as_str().map(str::to_owned);
                let _ = write!(err, "agent: ");
            }
            "agent.message" => {
                last_message = text_of(&ev["content"]);
                if a.json {
                } else if streaming.as_deref() == ev["id"].as_str() {
                    let _ = writeln!(err);
                } else {
                    let _ = writeln!(err, "agent: {last_message}");
                }
                streaming = None;
            }
            "session.error" => {
                let e = &ev["error"];
                eprintln!(
                    "error: {}: {} ({})",
                    e["type"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or(""),
                    e["retry_status"]["type"].as_str().unwrap_or("?")
                );
            }
            "session.status_idle" => {
                let reason = ev["stop_reason"]["type"].as_str().unwrap_or("?");
                if !a.json {
                    eprintln!("[idle: {reason}]");
                    if !last_message.is_empty() {
                        println!("{last_message}");
                    }
                }
                return Ok(exit_code(reason, &sid));
            }
            "session.status_terminated" => {
                eprintln!("[terminated]");
                return Ok(ExitCode::FAILURE);
            }
            _ if !a.json => show_progress(kind, &ev, &mut err),
            _ => {}
        }
    }
    bail!("the event stream ended before the session went idle")
}

/// The id of the environment named `name`; without a name, the one called "default", made
/// on first use so a first `agentd run` needs no setup.
async fn environment(c: &Client, name: Option<&str>) -> anyhow::Result<String> {
    let env_name = name.unwrap_or("default");
    Ok(match find(c, "/v1/environments", "env_", env_name).await? {
        Some(id) => id,
        None if name.is_none() => {
            let e: Value = c
                .post(
                    "/v1/environments",
                    &json!({"name": "default", "config": {"type": "cloud"}}),
                )
                .await?;
            e["id"].as_str().unwrap_or_default().to_owned()
        }
        None => bail!("no environment named {env_name:?}"),
    })
}

/// How the session coming to rest for `reason` ends the command.
fn exit_code(reason: &str, sid: &str) -> ExitCode {
    match reason {
        "end_turn" => ExitCode::SUCCESS,
        "requires_action" => {
            eprintln!(
                "the agent waits for custom tool results; answer them with the API (session {sid})"
            );
            ExitCode::from(REQUIRES_ACTION)
        }
        _ => ExitCode::FAILURE,
    }
}

/// Prints an event that only shows progress (not `--json`); the agent's messages and the
/// session's ending are the caller's, since they decide what reaches stdout and the exit code.
fn show_progress(kind: &str, ev: &Value, err: &mut std::io::Stderr) {
    match kind {
        "event_delta" => {
            let _ = write!(
                err,
                "{}",
                ev["delta"]["content"]["text"].as_str().unwrap_or_default()
            );
            let _ = err.flush();
        }
        "agent.thinking" => eprintln!("(thinking)"),
        "agent.custom_tool_use" => {
            eprintln!(
                "tool call: {}({})",
                ev["name"].as_str().unwrap_or("?"),
                ev["input"]
            );
        }
        "agent.tool_use" | "agent.mcp_tool_use" => {
            let server = ev["mcp_server_name"]
                .as_str()
                .map(|s| format!("{s}/"))
                .unwrap_or_default();
            eprintln!(
                "tool: {server}{}({}){}",
                ev["name"].as_str().unwrap_or("?"),
                ev["input"],
                if ev["evaluated_permission"] == "ask" {
                    " [needs confirmation]"
                } else {
                    ""
                }
            );
        }
        "agent.tool_result" | "agent.mcp_tool_result" => {
            let text = text_of(&ev["content"]);
            let shown: String = text.chars().take(400).collect();
            let more = if shown.len() < text.len() {
                " [...]"
            } else {
                ""
            };
            let tag = if ev["is_error"] == true {
                "tool error"
            } else {
                "tool result"
            };
            eprintln!("{tag}: {}{more}", shown.trim_end());
        }
        "session.status_running" => eprintln!("[running]"),
        "session.thread_created" => eprintln!(
            "[thread {} started: {}]",
            ev["session_thread_id"].as_str().unwrap_or("?"),
            ev["agent_name"].as_str().unwrap_or("?")
        ),
        "agent.thread_message_received" => {
            let text = text_of(&ev["content"]);
            let shown: String = text.chars().take(400).collect();
            eprintln!(
                "reply from {}: {}",
                ev["from_agent_name"].as_str().unwrap_or("?"),
                shown.trim_end()
            );
        }
        "session.thread_status_idle" => eprintln!(
            "[thread {} idle: {}]",
            ev["agent_name"].as_str().unwrap_or("?"),
            ev["stop_reason"]["type"].as_str().unwrap_or("?")
        ),
        _ => {}
    }
}

fn text_of(content: &Value) -> String {
    content
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}

/// The id of the resource named or identified by `key` in the list at `path`.
pub async fn find(
    c: &Client,
    path: &str,
    prefix: &str,
    key: &str,
) -> anyhow::Result<Option<String>> {
    if key.starts_with(prefix) {
        return Ok(Some(key.to_owned()));
    }
    Ok(c.list_all(path)
        .await?
        .into_iter()
        .find(|v| v["name"].as_str() == Some(key))
        .and_then(|v| v["id"].as_str().map(str::to_owned)))
}
