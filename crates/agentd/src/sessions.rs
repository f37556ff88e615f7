//! `agentd sessions ls | show | events`.

use std::process::ExitCode;

use serde_json::Value;

use crate::Remote;
use crate::client::Client;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List sessions, newest first.
    Ls {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one session as JSON.
    Show {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print a session's events in order.
    Events {
        id: String,
        /// One JSON object per line instead of a readable summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

pub async fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Ls { limit, remote } => {
            let client = Client::new(&remote)?;
            let page: agentd_wire::Page<Value> = client
                .get(&format!("/v1/sessions?limit={}", limit.clamp(1, 100)))
                .await?;
            println!("{:<32} {:<12} {:<24} TITLE", "ID", "STATUS", "CREATED");
            for s in page.data {
                println!(
                    "{:<32} {:<12} {:<24} {}",
                    s["id"].as_str().unwrap_or(""),
                    s["status"].as_str().unwrap_or(""),
                    s["created_at"]
                        .as_str()
                        .unwrap_or("")
                        .get(..19)
                        .unwrap_or(""),
                    s["title"].as_str().unwrap_or("")
                );
            }
        }
        Command::Show { id, remote } => {
            let s: Value = Client::new(&remote)?
                .get(&format!("/v1/sessions/{id}"))
                .await?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        Command::Events { id, json, remote } => {
            let client = Client::new(&remote)?;
            for e in client
                .list_all(&format!("/v1/sessions/{id}/events?order=asc"))
                .await?
            {
                if json {
                    println!("{e}");
                } else {
                    println!("{}", summary(&e));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One readable line per event.
pub fn summary(e: &Value) -> String {
    let kind = e["type"].as_str().unwrap_or("?");
    let at = e["processed_at"]
        .as_str()
        .unwrap_or("")
        .get(11..23)
        .unwrap_or("");
    let detail = match kind {
        "user.message" | "agent.message" => e["content"]
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default(),
        "agent.custom_tool_use" | "agent.tool_use" => {
            format!("{}({})", e["name"].as_str().unwrap_or("?"), e["input"])
        }
        "agent.mcp_tool_use" => format!(
            "{}/{}({})",
            e["mcp_server_name"].as_str().unwrap_or("?"),
            e["name"].as_str().unwrap_or("?"),
            e["input"]
        ),
        "agent.tool_result" | "agent.mcp_tool_result" => {
            let t = e["content"][0]["text"].as_str().unwrap_or("");
            let first = t.lines().next().unwrap_or("");
            format!(
                "{}{first}",
                if e["is_error"] == true { "error: " } else { "" }
            )
        }
        "user.custom_tool_result" => {
            format!("for {}", e["custom_tool_use_id"].as_str().unwrap_or("?"))
        }
        "session.status_idle" => e["stop_reason"]["type"].as_str().unwrap_or("").to_owned(),
        "session.error" => format!(
            "{}: {}",
            e["error"]["type"].as_str().unwrap_or(""),
            e["error"]["message"].as_str().unwrap_or("")
        ),
        "span.model_request_end" => format!(
            "in={} out={}",
            e["model_usage"]["input_tokens"], e["model_usage"]["output_tokens"]
        ),
        _ => String::new(),
    };
    format!("{at} {kind:<26} {detail}")
}
