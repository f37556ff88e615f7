//! `agentd-bench selfhosted`: a self-hosted session (an `agentd worker` on loopback runs its
//! tools) side by side with a cloud session (agentd's own sandbox runs them), through a real
//! `agentd serve` and its HTTP API, as a client sees them on the event stream: time to the
//! first model output after `user.message`, and each tool call's round trip from its
//! `agent.tool_use` to its result. The first call of a session is shown apart: it is where
//! the sandbox is made (and, self-hosted, where the work item is queued and claimed).
//!
//! The model is a zero-latency fake on loopback that calls `bash` (`true`) `--calls` times
//! per session and then ends its turn, so the figures are agentd's and the hands' own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use agentd_testkit::{FakeAnthropic, FakeReply};

use crate::core::{ms, pct};
use crate::process::Client;

const KEY: &str = "sk-bench-selfhosted";

#[derive(clap::Args)]
pub struct Args {
    /// Sessions timed per kind (after 3 warm-up sessions each).
    #[arg(long, default_value_t = 30)]
    sessions: usize,
    /// Tool calls per session.
    #[arg(long, default_value_t = 5)]
    calls: usize,
    /// The agentd binary; by default the one beside this bench.
    #[arg(long)]
    agentd: Option<PathBuf>,
}

/// A child process killed when dropped.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Where a sandbox's user (`nobody`, under root) may pass through: a temp dir opened 0711.
fn reachable_tempdir() -> anyhow::Result<tempfile::TempDir> {
    let d = tempfile::tempdir()?;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o711))?;
    Ok(d)
}

async fn serve(exe: &Path, data: &Path, upstream: &str) -> anyhow::Result<(Child, String)> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("AGENTD_API_KEY", KEY)
        .env("AGENTD_ANTHROPIC_BASE_URL", upstream)
        .env("AGENTD_ANTHROPIC_API_KEY", "sk-ant-bench")
        .env("AGENTD_RATE_LIMIT", "0")
        .env("AGENTD_LOG", "warn");
    let (child, url) = crate::process::serve(cmd).await?;
    Ok((Child(child), url))
}

#[derive(Clone)]
struct Api {
    client: Client,
    base: String,
}

impl Api {
    fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.req(m, format!("{}{path}", self.base))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.client.post(format!("{}{path}", self.base), body).await
    }

    async fn id(&self, path: &str, body: Value) -> anyhow::Result<String> {
        Ok(self.post(path, body).await?["id"]
            .as_str()
            .context("an id")?
            .to_owned())
    }
}

/// What one session showed on its stream.
struct Sample {
    ttft: Duration,
    /// Round trips of its tool calls, in order.
    calls: Vec<Duration>,
}

/// Run one turn of a new session on environment `env` and time it from the stream.
async fn session(api: &Api, agent: &str, env: &str, calls: usize) -> anyhow::Result<Sample> {
    let sid = api
        .id(
            "/v1/sessions",
            json!({"agent": agent, "environment_id": env}),
        )
        .await?;
    let mut stream = api
        .req(
            reqwest::Method::GET,
            &format!("/v1/sessions/{sid}/events/stream"),
        )
        .send()
        .await?;
    anyhow::ensure!(stream.status().is_success(), "stream: {}", stream.status());
    let t0 = Instant::now();
    api.post(
        &format!("/v1/sessions/{sid}/events"),
        json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]}),
    )
    .await?;
    let mut buf = String::new();
    let mut ttft = None;
    let mut open: Vec<(String, Instant)> = Vec::new();
    let mut rts = Vec::new();
    let deadline = t0 + Duration::from_secs(120);
    loop {
        let chunk = tokio::time::timeout_at(deadline.into(), stream.chunk())
            .await
            .context("the session did not finish within 120 s")??
            .context("the stream ended before the turn did")?;
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let Ok(e) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            let kind = e["type"].as_str().unwrap_or_default();
            if kind.starts_with("agent.") && ttft.is_none() {
                ttft = Some(now - t0);
            }
            match kind {
                "agent.tool_use" => open.push((e["id"].as_str().unwrap_or("").to_owned(), now)),
                "agent.tool_result" | "user.tool_result" => {
                    let id = e["tool_use_id"].as_str().unwrap_or("");
                    if let Some(i) = open.iter().position(|(u, _)| u == id) {
                        rts.push(now - open.remove(i).1);
                    }
                    if e["is_error"].as_bool() == Some(true) {
                        bail!("a tool call failed: {e}");
                    }
                }
                "session.status_idle" if e["stop_reason"]["type"] == "end_turn" => {
                    anyhow::ensure!(
                        rts.len() == calls,
                        "{} calls answered of {calls}",
                        rts.len()
                    );
                    return Ok(Sample {
                        ttft: ttft.unwrap_or_default(),
                        calls: rts,
                    });
                }
                _ => {}
            }
        }
    }
}

async fn measure(api: &Api, agent: &str, env: &str, a: &Args) -> anyhow::Result<Vec<Sample>> {
    for _ in 0..3 {
        session(api, agent, env, a.calls).await?;
    }
    let mut out = Vec::with_capacity(a.sessions);
    for _ in 0..a.sessions {
        out.push(session(api, agent, env, a.calls).await?);
    }
    Ok(out)
}

fn row(label: &str, samples: &[Sample]) {
    let sorted = |mut v: Vec<Duration>| {
        v.sort();
        v
    };
    let ttft = sorted(samples.iter().map(|s| s.ttft).collect());
    let first = sorted(
        samples
            .iter()
            .filter_map(|s| s.calls.first().copied())
            .collect(),
    );
    let later = sorted(
        samples
            .iter()
            .flat_map(|s| s.calls.iter().skip(1).copied())
            .collect(),
    );
    println!("  {label}");
    for (what, v) in [
        ("TTFT", &ttft),
        ("first tool call", &first),
        ("later tool calls", &later),
    ] {
        println!(
            "    {what:<18} p50 {:>11}  p95 {:>11}  (n={})",
            ms(pct(v, 0.5)),
            ms(pct(v, 0.95)),
            v.len()
        );
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let exe = match &a.agentd {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("agentd"),
    };
    let calls = a.calls;
    let fake = FakeAnthropic::start_fn(move |body| {
        let results = body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["content"].as_array())
            .flatten()
            .filter(|b| b["type"] == "tool_result")
            .count();
        if results < calls {
            FakeReply::tool_use("bash", json!({"command": "true"}))
        } else {
            FakeReply::text("done")
        }
    })
    .await;
    let data = reachable_tempdir()?;
    let (_server, url) = serve(&exe, data.path(), &fake.base_url()).await?;
    let api = Api {
        client: Client::new(KEY),
        base: url.clone(),
    };
    let tools = json!([{"type": "agent_toolset_20260401",
        "default_config": {"enabled": true, "permission_policy": {"type": "always_allow"}}}]);
    let agent = api
        .id(
            "/v1/agents",
            json!({"name": "bench", "model": "claude-bench", "tools": tools}),
        )
        .await?;
    let cloud = api
        .id(
            "/v1/environments",
            json!({"name": "cloud", "config": {"type": "cloud", "networking": {"type": "limited"}}}),
        )
        .await?;
    let hosted = api
        .id(
            "/v1/environments",
            json!({"name": "mine", "config": {"type": "self_hosted"}}),
        )
        .await?;
    let out = tokio::process::Command::new(&exe)
        .args(["environments", "keys", "create", &hosted, "--data-dir"])
        .arg(data.path())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "cannot make an environment key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout)?
        .lines()
        .last()
        .context("no key printed")?
        .to_owned();
    let hands = reachable_tempdir()?;
    let _worker = Child(
        tokio::process::Command::new(&exe)
            .args([
                "worker",
                "--url",
                &url,
                "--environment",
                &hosted,
                "--key",
                &key,
            ])
            .arg("--workdir")
            .arg(hands.path().join("w"))
            // A resting session keeps its slot until --max-idle-secs; enough slots that no
            // new session waits for one.
            .args(["--max-idle-secs", "1", "--max-sessions", "64"])
            .env("AGENTD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?,
    );

    let cloud_samples = measure(&api, &agent, &cloud, &a).await?;
    let hosted_samples = measure(&api, &agent, &hosted, &a).await?;
    println!(
        "self-hosted vs cloud hands ({} sessions each, {} bash calls per session; zero-latency upstream; one agentd serve on SQLite):",
        a.sessions, a.calls
    );
    row("cloud (agentd's own bubblewrap sandbox)", &cloud_samples);
    row(
        "self-hosted (agentd worker on loopback, same sandbox)",
        &hosted_samples,
    );
    Ok(())
}
