//! The streaming half of the OpenAI-compatible client: assembling decoded
//! `chat.completion.chunk`s into a provider-neutral `Response`. Pure and synchronous, so it is
//! tested chunk by chunk without a server. Servers differ in small ways (vLLM, llama.cpp, Ollama,
//! proxies), so every field is optional and `null` counts as absent.

use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::sse::Frame;
use crate::transport::Assemble;
use crate::{Block, Delta, Error, Response, Result, StopReason, Usage};

/// More parallel tool calls than any real reply makes; beyond it the stream is garbage.
const MAX_TOOL_CALLS: usize = 1024;
/// How much of an unparseable error payload is quoted back.
const MAX_QUOTED: usize = 500;

/// `null` and absent both mean "the default", which serde's `default` alone does not cover.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Chunk {
    #[serde(deserialize_with = "nullable")]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
    /// vLLM and some proxies report a failure after the headers as a chunk carrying `error`.
    error: Option<Value>,
    /// Older vLLM sent the error object itself, marked `"object": "error"`.
    object: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Choice {
    index: Option<u32>,
    delta: Option<ChoiceDelta>,
    finish_reason: Option<String>,
}

/// `reasoning_content` / `reasoning` (vLLM, llama.cpp, Ollama) are deliberately not read:
/// without a signature they cannot be returned as a `Thinking` block, and a thinking preview
/// would announce an event the final response never carries.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ChoiceDelta {
    content: Option<String>,
    #[serde(deserialize_with = "nullable")]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ToolCallDelta {
    index: Option<u32>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FunctionDelta {
    name: Option<String>,
    /// A string fragment everywhere but a few servers that send the whole object at once.
    arguments: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

struct PartialCall {
    /// The `index` the server gave this call; `None` when it sends none.
    key: Option<u32>,
    id: String,
    name: String,
    arguments: String,
}

#[derive(Default)]
pub(super) struct Assembler {
    text: String,
    /// Whether `TextStart` went out; held back until the text holds more than whitespace.
    text_started: bool,
    calls: Vec<PartialCall>,
    finish_reason: Option<String>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    done: bool,
}

impl Assembler {
    /// Handles the frames decoded so far; true once `[DONE]` arrived.
    fn handle_all(
        &mut self,
        frames: &mut Vec<Frame>,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<bool> {
        for frame in frames.drain(..) {
            match frame {
                Frame::ErrorField(data) => return Err(stream_error(&data)),
                Frame::Event { data, .. } if data.trim() == "[DONE]" => {
                    self.done = true;
                    return Ok(true);
                }
                Frame::Event { data, .. } => self.handle(&data, on_delta)?,
            }
        }
        Ok(false)
    }

    fn handle(&mut self, data: &str, on_delta: &mut (dyn FnMut(Delta) + Send)) -> Result<()> {
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| Error::Protocol(format!("bad chat.completion.chunk: {e}")))?;
        if chunk.error.as_ref().is_some_and(|e| !e.is_null())
            || chunk.object.as_deref() == Some("error")
        {
            return Err(stream_error(data));
        }
        if let Some(u) = chunk.usage {
            // Usage figures are totals, so a present field replaces the old value.
            self.prompt_tokens = u.prompt_tokens.or(self.prompt_tokens);
            self.completion_tokens = u.completion_tokens.or(self.completion_tokens);
            let cached = u.prompt_tokens_details.and_then(|d| d.cached_tokens);
            self.cached_tokens = cached.or(self.cached_tokens);
        }
        // agentd never asks for `n > 1`; other choices would be someone else's reply.
        for choice in chunk
            .choices
            .into_iter()
            .filter(|c| c.index.unwrap_or(0) == 0)
        {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    self.text(text, on_delta);
                }
                for fragment in delta.tool_calls {
                    self.tool_fragment(fragment)?;
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        Ok(())
    }

    fn text(&mut self, text: String, on_delta: &mut (dyn FnMut(Delta) + Send)) {
        self.text.push_str(&text);
        if self.text_started {
            on_delta(Delta::Text { index: 0, text });
        } else if !self.text.trim().is_empty() {
            // Text is block 0 of the response whatever order the stream used, and a
            // whitespace-only text (common before tool calls) is dropped, so the preview
            // starts only once the block is sure to exist.
            self.text_started = true;
            on_delta(Delta::TextStart { index: 0 });
            on_delta(Delta::Text {
                index: 0,
                text: self.text.clone(),
            });
        }
    }

    fn tool_fragment(&mut self, f: ToolCallDelta) -> Result<()> {
        let id = f.id.filter(|i| !i.is_empty());
        let pos = match f.index {
            Some(i) => self.calls.iter().position(|c| c.key == Some(i)),
            // Without an index, a new id starts a new call and anything else continues the
            // last one.
            None => match (&id, self.calls.last()) {
                (Some(id), Some(last)) if !last.id.is_empty() && last.id != *id => None,
                (_, Some(_)) => Some(self.calls.len() - 1),
                (_, None) => None,
            },
        };
        let pos = match pos {
            Some(p) => p,
            None => {
                if self.calls.len() >= MAX_TOOL_CALLS {
                    return Err(Error::Protocol(format!(
                        "more than {MAX_TOOL_CALLS} tool calls in one reply"
                    )));
                }
                self.calls.push(PartialCall {
                    key: f.index,
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[pos];
        if let Some(id) = id
            && call.id.is_empty()
        {
            call.id = id;
        }
        let Some(function) = f.function else {
            return Ok(());
        };
        // The name arrives whole in the first fragment; some servers repeat it later.
        if let Some(name) = function.name.filter(|n| !n.is_empty())
            && call.name.is_empty()
        {
            call.name = name;
        }
        match function.arguments {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => call.arguments.push_str(&s),
            Some(other) => call.arguments.push_str(&other.to_string()),
        }
        Ok(())
    }

    /// The response, if the stream said it was complete (a `finish_reason` or `[DONE]`).
    fn finish(self) -> Result<Response> {
        if self.finish_reason.is_none() && !self.done {
            return Err(Error::Protocol(
                "the stream ended before a finish_reason or [DONE]".into(),
            ));
        }
        let mut content = Vec::new();
        if !self.text.trim().is_empty() {
            content.push(Block::Text { text: self.text });
        }
        let has_tool_calls = !self.calls.is_empty();
        for (n, call) in self.calls.into_iter().enumerate() {
            let id = if call.id.is_empty() {
                // A few servers omit ids; the tool result must still name its call.
                format!("call_{n}_{:016x}", rand::random::<u64>())
            } else {
                call.id
            };
            content.push(Block::ToolUse {
                id,
                input: parse_arguments(&call.arguments),
                name: call.name,
            });
        }
        let stop_reason = match self.finish_reason.as_deref() {
            // Ollama and some vLLM tool parsers say `stop` even when the reply calls tools.
            Some("stop") if has_tool_calls => StopReason::ToolUse,
            Some("stop") => StopReason::EndTurn,
            Some("tool_calls" | "function_call") => StopReason::ToolUse,
            Some("length") => StopReason::MaxTokens,
            Some("content_filter") => StopReason::Refusal,
            other => {
                if other.is_some() {
                    tracing::warn!(finish_reason = ?other, "unknown finish_reason; inferring one");
                }
                if has_tool_calls {
                    StopReason::ToolUse
                } else {
                    StopReason::EndTurn
                }
            }
        };
        // OpenAI counts cached tokens inside `prompt_tokens`; agentd's usage follows the
        // Anthropic convention where the input fields are disjoint and add up to the prompt.
        let cached = self.cached_tokens.unwrap_or(0);
        let usage = Usage {
            input_tokens: self.prompt_tokens.unwrap_or(0).saturating_sub(cached),
            output_tokens: self.completion_tokens.unwrap_or(0),
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: cached,
        };
        Ok(Response {
            content,
            stop_reason,
            usage,
        })
    }
}

impl Assemble for Assembler {
    fn frames(
        &mut self,
        frames: &mut Vec<Frame>,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Option<Response>> {
        if self.handle_all(frames, on_delta)? {
            std::mem::take(self).finish().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Servers that send no `[DONE]` still end with a `finish_reason`, which is enough.
    fn end(self) -> Result<Response> {
        self.finish()
    }
}

/// Tool input must be a JSON object. Anything else is kept verbatim under `_raw_arguments`
/// so the model sees its own mistake in the tool's error instead of the turn failing.
fn parse_arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => v,
        // Some servers encode the arguments twice.
        Ok(Value::String(inner)) => match serde_json::from_str::<Value>(&inner) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({"_raw_arguments": raw}),
        },
        _ => json!({"_raw_arguments": raw}),
    }
}

/// An error reported inside a 200 stream, mapped to what the same failure would have been as
/// an HTTP status. Accepts `{"error": {..}}`, `{"error": "text"}` and a bare error object.
fn stream_error(data: &str) -> Error {
    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let inner = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
    let message = inner
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| v.get("error").and_then(Value::as_str))
        .map_or_else(|| data.chars().take(MAX_QUOTED).collect(), str::to_owned);
    let code = inner.get("code").and_then(|c| {
        c.as_u64()
            .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
    });
    match code {
        Some(429) => Error::RateLimited {
            message,
            retry_after: None,
        },
        Some(503 | 529) => Error::Overloaded {
            message,
            retry_after: None,
        },
        Some(status @ 400..=499) => Error::Rejected {
            status: status as u16,
            message,
        },
        // Unknown or absent codes are treated as a server fault, which is worth a retry.
        Some(status @ 500..=599) => Error::Server {
            status: status as u16,
            message,
        },
        _ => Error::Server {
            status: 500,
            message,
        },
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
