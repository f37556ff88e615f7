//! A small client of agentd's own API for the CLI commands, and an SSE reader.

use anyhow::{Context, bail};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Remote;

pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    pub fn new(r: &Remote) -> anyhow::Result<Client> {
        let key = r.api_key.clone().filter(|k| !k.is_empty()).context(
            "no API key: set AGENTD_API_KEY or pass --api-key (`agentd serve` prints where it saved the first key)",
        )?;
        Ok(Client {
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .build()?,
            base: r.url.trim_end_matches('/').to_owned(),
            key,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .header("anthropic-beta", agentd_wire::BETA)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.req(reqwest::Method::GET, path)).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.send(self.req(reqwest::Method::POST, path).json(body))
            .await
    }

    async fn send<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = rb.send().await.with_context(|| {
            format!(
                "cannot reach agentd at {} (is `agentd serve` running?)",
                self.base
            )
        })?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<agentd_wire::ErrorBody>(&body)
                .map(|e| e.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            bail!("HTTP {}: {msg}", status.as_u16());
        }
        serde_json::from_slice(&body).context("agentd sent a response this CLI cannot read")
    }

    /// Every item of a paginated list.
    pub async fn list_all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &page {
                Some(p) => format!("{path}{sep}limit=100&page={p}"),
                None => format!("{path}{sep}limit=100"),
            };
            let v: agentd_wire::Page<Value> = self.get(&url).await?;
            out.extend(v.data);
            match v.next_page {
                Some(p) => page = Some(p),
                None => return Ok(out),
            }
        }
    }

    /// Open a session's event stream; events arrive on the returned channel.
    pub async fn stream(
        &self,
        session_id: &str,
        deltas: bool,
    ) -> anyhow::Result<tokio::sync::mpsc::Receiver<anyhow::Result<Value>>> {
        let mut path = format!("/v1/sessions/{session_id}/events/stream");
        if deltas {
            path.push_str("?event_deltas[]=agent.message");
        }
        let resp = self
            .req(reqwest::Method::GET, &path)
            .send()
            .await
            .context("cannot open the event stream")?;
        if !resp.status().is_success() {
            bail!("HTTP {} opening the event stream", resp.status().as_u16());
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf: Vec<u8> = Vec::new();
            let mut data = String::new();
            while let Some(chunk) = body.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(anyhow::anyhow!("stream broke: {e}"))).await;
                        return;
                    }
                };
                buf.extend_from_slice(&chunk);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&line);
                    let line = line.trim_end_matches(['\r', '\n']);
                    if line.is_empty() {
                        if !data.is_empty() {
                            let v = serde_json::from_str(&data).map_err(anyhow::Error::from);
                            data.clear();
                            if tx.send(v).await.is_err() {
                                return;
                            }
                        }
                    } else if let Some(d) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
            }
        });
        Ok(rx)
    }
}
