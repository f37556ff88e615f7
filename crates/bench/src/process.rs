//! A real `agentd serve` for the benches that drive it over HTTP: starting it, and a client
//! of its API.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Spawn `cmd` (an `agentd serve --listen 127.0.0.1:0 …`) with its stderr piped, and wait for
/// the address it listens on; its log is drained from then on so it never blocks on a full
/// pipe. The child is killed when dropped.
pub async fn serve(
    mut cmd: tokio::process::Command,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let exe = cmd.as_std().get_program().to_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "start {} (build it: cargo build --release -p agentd)",
                exe.to_string_lossy()
            )
        })?;
    let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.split("agentd: listening on ").nth(1) {
                return Ok(rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned());
            }
        }
        bail!("agentd exited before listening")
    })
    .await
    .context("agentd did not listen within 60 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

/// A client of a served agentd's API, authenticated with the bench's key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    key: &'static str,
}

impl Client {
    pub fn new(key: &'static str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .build()
                .expect("an HTTP client"),
            key,
        }
    }

    /// A request to `url` with the headers the API wants.
    pub fn req(&self, m: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        self.http
            .request(m, url)
            .header("x-api-key", self.key)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "managed-agents-2026-04-01")
    }

    /// POST `body` to `url`; its JSON answer, or an error naming the status.
    pub async fn post(&self, url: String, body: Value) -> anyhow::Result<Value> {
        let r = self
            .req(reqwest::Method::POST, url.clone())
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "POST {url}: {status} {v}");
        Ok(v)
    }
}
