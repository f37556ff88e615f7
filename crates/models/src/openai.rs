//! OpenAI-compatible chat-completions client (vLLM, llama.cpp's server, Ollama, proxies): one
//! streamed `POST {base_url}/chat/completions` per call, mapping the neutral request onto the
//! chat format and the SSE chunks back onto a provider-neutral `Response`.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde_json::{Value, json};
use tokio::time::timeout;

use crate::http::{stalled, transport};
use crate::{Block, Delta, Error, Model, Request, Response, Result, Role};

mod stream;
use crate::sse::Decoder;
use stream::Assembler;

/// Local servers send a chunk per token once generating, so two minutes of silence means the
/// connection is dead. A CPU server prefilling a long prompt may need more: see
/// [`OpenAi::with_idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for the end of the body after `[DONE]`; reading it to the end lets the
/// connection go back to the pool.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Characters of an error body quoted in the error message.
const MAX_QUOTED: usize = 500;

pub struct OpenAi {
    http: reqwest::Client,
    completions_url: String,
    api_key: Option<String>,
    idle_timeout: Duration,
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("completions_url", &self.completions_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl OpenAi {
    /// A client with its own connection pool; see [`OpenAi::with_client`] to share one.
    /// `base_url` includes the API prefix, e.g. `http://127.0.0.1:8000/v1`.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<OpenAi> {
        Ok(Self::with_client(crate::http::client()?, base_url, api_key))
    }

    /// An empty or blank key counts as none, so no `Authorization` header is sent.
    pub fn with_client(http: reqwest::Client, base_url: &str, api_key: Option<String>) -> OpenAi {
        OpenAi {
            http,
            completions_url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// The longest silence tolerated while waiting for headers or the next chunk.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> OpenAi {
        self.idle_timeout = idle_timeout;
        self
    }
}

#[async_trait]
impl Model for OpenAi {
    async fn complete(
        &self,
        request: &Request,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Response> {
        let idle = self.idle_timeout;
        let mut send = self
            .http
            .post(&self.completions_url)
            .header(ACCEPT, "text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(request_body(request).to_string());
        if let Some(key) = &self.api_key {
            send = send.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let mut resp = match timeout(idle, send.send()).await {
            Err(_) => return Err(stalled(idle, "response headers")),
            Ok(Err(e)) => return Err(transport(&e)),
            Ok(Ok(r)) => r,
        };
        if !resp.status().is_success() {
            return Err(http_error(resp, idle).await);
        }
        let mut decoder = Decoder::default();
        let mut acc = Assembler::default();
        let mut frames = Vec::new();
        let mut started = false;
        loop {
            let chunk = match timeout(idle, resp.chunk()).await {
                Err(_) => return Err(stalled(idle, "the next stream chunk")),
                Ok(Err(e)) => return Err(transport(&e)),
                Ok(Ok(None)) => {
                    decoder.finish(&mut frames)?;
                    acc.handle_all(&mut frames, on_delta)?;
                    return acc.finish();
                }
                Ok(Ok(Some(c))) => c,
            };
            if !started && !chunk.is_empty() {
                started = true;
                on_delta(Delta::Started);
            }
            decoder.feed(&chunk, &mut frames)?;
            if acc.handle_all(&mut frames, on_delta)? {
                // Reading to the end returns the connection to the pool, but the answer is
                // complete now; the caller must not wait on the server's last bytes.
                tokio::spawn(async move {
                    let _ = timeout(DRAIN_TIMEOUT, async {
                        while let Ok(Some(_)) = resp.chunk().await {}
                    })
                    .await;
                });
                return acc.finish();
            }
        }
    }
}

/// The chat-completions body. Only `max_tokens` is sent (not `max_completion_tokens`): it is
/// the one every compatible server understands.
fn request_body(req: &Request) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in &req.messages {
        match m.role {
            Role::User => user_messages(&m.content, &mut messages),
            Role::Assistant => messages.push(assistant_message(&m.content)),
        }
    }
    let mut body = json!({
        "model": req.model,
        "messages": messages,
        "max_tokens": req.max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut function = json!({"name": t.name, "parameters": t.input_schema});
                if !t.description.is_empty() {
                    function["description"] = json!(t.description);
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        body["tools"] = Value::Array(tools);
    }
    body
}

/// One user turn becomes its tool results as `tool` messages, in order, and then one `user`
/// message with the rest: chat templates require each `tool` message to follow the assistant
/// message that made the call.
fn user_messages(content: &[Block], out: &mut Vec<Value>) {
    let before = out.len();
    let mut parts = Vec::new();
    for block in content {
        match block {
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let mut texts = Vec::new();
                for b in content {
                    match b {
                        // `tool` messages take text only, so images ride in the user message
                        // that follows, labelled with the call they came from.
                        Block::Image { source } => {
                            parts.push(text_part(format!(
                                "Image returned by tool call {tool_use_id}:"
                            )));
                            parts.push(image_part(source));
                        }
                        other => texts.extend(block_text(other)),
                    }
                }
                let mut text = texts.join("\n");
                if *is_error {
                    // The chat format has no error flag; the model must still know it failed.
                    text.insert_str(0, "Error: ");
                }
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": text}));
            }
            Block::Image { source } => parts.push(image_part(source)),
            other => parts.extend(block_text(other).map(text_part)),
        }
    }
    if !parts.is_empty() || out.len() == before {
        // An empty turn still becomes a message, so user and assistant keep alternating.
        out.push(json!({"role": "user", "content": user_content(parts)}));
    }
}

/// A plain string when there is only text, which every server accepts; a parts array only
/// when an image needs it.
fn user_content(parts: Vec<Value>) -> Value {
    if parts.iter().all(|p| p["type"] == "text") {
        let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        json!(texts.join("\n\n"))
    } else {
        Value::Array(parts)
    }
}

fn text_part(text: String) -> Value {
    json!({"type": "text", "text": text})
}

/// Anthropic image sources as `image_url` parts: base64 as a data URL, URLs as they are.
fn image_part(source: &Value) -> Value {
    let url = match source["type"].as_str() {
        Some("base64") => source["data"].as_str().map(|data| {
            let media = source["media_type"].as_str().unwrap_or("image/png");
            format!("data:{media};base64,{data}")
        }),
        Some("url") => source["url"].as_str().map(str::to_owned),
        _ => None,
    };
    match url {
        Some(url) => json!({"type": "image_url", "image_url": {"url": url}}),
        None => text_part("[image omitted: unsupported image source]".into()),
    }
}

/// The text a block contributes to a user or tool message. Thinking and tool use never occur
/// there, so they contribute nothing.
fn block_text(block: &Block) -> Option<String> {
    match block {
        Block::Text { text } => Some(text.clone()),
        Block::Image { .. } => Some("[image omitted]".into()),
        Block::Document {
            source,
            title,
            context,
        } => Some(document_text(source, title.as_deref(), context.as_deref())),
        Block::ToolResult { content, .. } => Some(
            content
                .iter()
                .filter_map(block_text)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Block::Thinking { .. } | Block::RedactedThinking { .. } | Block::ToolUse { .. } => None,
    }
}

/// Documents as text: plain-text and block sources inline, anything else (PDF, URL) as a
/// note, since chat-completions servers have no document input.
fn document_text(source: &Value, title: Option<&str>, context: Option<&str>) -> String {
    let body = match source["type"].as_str() {
        Some("text") => source["data"].as_str().unwrap_or_default().to_owned(),
        Some("content") => match source["content"].as_array() {
            Some(blocks) => blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            None => source["content"].as_str().unwrap_or_default().to_owned(),
        },
        Some("url") => format!(
            "[document at {} not included]",
            source["url"].as_str().unwrap_or("an unknown URL")
        ),
        _ => format!(
            "[{} document omitted: not supported by this provider]",
            source["media_type"].as_str().unwrap_or("binary")
        ),
    };
    let mut text = String::new();
    for (label, value) in [("Document", title), ("Context", context)] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            text.push_str(&format!("{label}: {v}\n"));
        }
    }
    text.push_str(&body);
    text
}

/// Text as `content`, tool use as `tool_calls`; thinking is dropped because these servers
/// cannot take it back.
fn assistant_message(content: &[Block]) -> Value {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for block in content {
        match block {
            Block::Text { text } => texts.push(text.as_str()),
            Block::ToolUse { id, name, input } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            _ => {}
        }
    }
    // An empty string rather than `null` when only tools were called: strict parsers (Go,
    // older llama.cpp) reject a null content, and every server accepts an empty one.
    let mut msg = json!({"role": "assistant", "content": texts.join("\n\n")});
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    msg
}

/// `Retry-After` as delay-seconds or as an HTTP date (a date in the past means now).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The message of an error body in the shapes compatible servers use: OpenAI and vLLM
/// `{"error":{"message"}}`, Ollama `{"error":"..."}`, FastAPI `{"detail":...}`, or a bare
/// `{"message"}`; otherwise the body itself, shortened.
fn error_message(body: &[u8], status: reqwest::StatusCode) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let found = [
        &v["error"]["message"],
        &v["error"],
        &v["detail"],
        &v["message"],
    ]
    .into_iter()
    .find_map(|m| match m {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Array(_) => Some(m.to_string()),
        _ => None,
    });
    let text = match found {
        Some(m) => m,
        None => String::from_utf8_lossy(body).trim().to_owned(),
    };
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no error body")
            .to_owned();
    }
    text.chars().take(MAX_QUOTED).collect()
}

async fn http_error(mut resp: reqwest::Response, idle: Duration) -> Error {
    let status = resp.status();
    let retry_after = retry_after(resp.headers());
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match timeout(idle, resp.chunk()).await {
            Ok(Ok(Some(c))) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    let message = error_message(&body, status);
    let code = status.as_u16();
    match code {
        429 => Error::RateLimited {
            message,
            retry_after,
        },
        503 | 529 => Error::Overloaded {
            message,
            retry_after,
        },
        500..=599 => Error::Server {
            status: code,
            message,
        },
        400..=499 => Error::Rejected {
            status: code,
            message,
        },
        _ => Error::Protocol(format!("unexpected HTTP {code}: {message}")),
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
