//! OpenAI-compatible chat-completions client (vLLM, llama.cpp's server, Ollama, proxies): one
//! streamed `POST {base_url}/chat/completions` per call, mapping the neutral request onto the
//! chat format here and the stream's chunks back onto a provider-neutral `Response` in
//! `stream`; the HTTP exchange itself is the shared `transport`.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use crate::transport;
use crate::{Block, Delta, Model, Request, Response, Result, Role};

mod stream;
use stream::Assembler;

/// Local servers send a chunk per token once generating, so two minutes of silence means the
/// connection is dead. A CPU server prefilling a long prompt may need more: see
/// [`OpenAi::with_idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

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
        Ok(Self::with_client(transport::client()?, base_url, api_key))
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
        let mut send = self.http.post(&self.completions_url);
        if let Some(key) = &self.api_key {
            send = send.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = request_body(request);
        transport::stream(
            send,
            &body,
            self.idle_timeout,
            Assembler::default(),
            on_delta,
        )
        .await
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

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
