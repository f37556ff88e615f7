//! The streaming half of the Anthropic client: assembling decoded stream events into a
//! `Response`. Pure and synchronous, so it is tested event by event without a server.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::sse::Frame;
use crate::transport::Assemble;
use crate::{Block, Delta, Error, Response, Result, StopReason, Usage};

/// More content blocks than any real reply has; an index beyond it is a broken upstream.
const MAX_BLOCKS: usize = 4096;

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// An `error` event inside a 200 stream carries only the error type, so map it to the status
/// the same failure would have had before the stream started.
fn stream_error(e: ApiError) -> Error {
    let message = e.message;
    let rejected = |status| Error::Rejected {
        status,
        message: message.clone(),
    };
    match e.kind.as_str() {
        "overloaded_error" => Error::Overloaded {
            message,
            retry_after: None,
        },
        "rate_limit_error" => Error::RateLimited {
            message,
            retry_after: None,
        },
        "api_error" => Error::Server {
            status: 500,
            message,
        },
        "timeout_error" => Error::Server {
            status: 504,
            message,
        },
        "invalid_request_error" => rejected(400),
        "authentication_error" => rejected(401),
        "billing_error" => rejected(402),
        "permission_error" => rejected(403),
        "not_found_error" => rejected(404),
        "request_too_large" => rejected(413),
        other => Error::Protocol(format!("upstream stream error {other}: {message}")),
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: WireUsage,
    },
    MessageStop,
    Ping,
    Error {
        error: ApiError,
    },
    /// New event types are allowed by the API's versioning policy and must be ignored.
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Stream usage figures are cumulative, so a present field replaces the old value.
    fn apply(&self, usage: &mut Usage) {
        let set = |dst: &mut u64, src: Option<u64>| *dst = src.unwrap_or(*dst);
        set(&mut usage.input_tokens, self.input_tokens);
        set(&mut usage.output_tokens, self.output_tokens);
        set(
            &mut usage.cache_creation_input_tokens,
            self.cache_creation_input_tokens,
        );
        set(
            &mut usage.cache_read_input_tokens,
            self.cache_read_input_tokens,
        );
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

enum Partial {
    Done(Block),
    ToolUse {
        id: String,
        name: String,
        input: Value,
        json: String,
    },
    /// A block type agentd cannot represent (e.g. a server tool result); dropped with a warning.
    Skipped,
}

impl Partial {
    fn finish(self) -> Result<Option<Block>> {
        Ok(match self {
            Partial::Done(b) => Some(b),
            Partial::Skipped => None,
            Partial::ToolUse {
                id,
                name,
                input,
                json,
            } => {
                let input = if json.trim().is_empty() {
                    if input.is_object() { input } else { json!({}) }
                } else {
                    serde_json::from_str(&json).map_err(|e| {
                        Error::Protocol(format!("tool_use {name} input is not JSON: {e}"))
                    })?
                };
                Some(Block::ToolUse { id, name, input })
            }
        })
    }
}

#[derive(Default)]
pub(super) struct Assembler {
    blocks: Vec<Option<Partial>>,
    usage: Usage,
    stop_reason: Option<String>,
}

impl Assembler {
    fn handle_all(
        &mut self,
        events: &mut Vec<Frame>,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Option<Response>> {
        for frame in events.drain(..) {
            // Anthropic sends no `error:` field; its errors are `error` events.
            let Frame::Event { event, data } = frame else {
                continue;
            };
            let parsed: StreamEvent = serde_json::from_str(&data)
                .map_err(|e| Error::Protocol(format!("bad `{event}` event data: {e}")))?;
            if let Some(done) = self.handle(parsed, on_delta)? {
                return Ok(Some(done));
            }
        }
        Ok(None)
    }

    fn block(&mut self, index: usize) -> Result<&mut Partial> {
        self.blocks
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or_else(|| Error::Protocol(format!("delta for unknown content block {index}")))
    }

    fn handle(
        &mut self,
        ev: StreamEvent,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Option<Response>> {
        match ev {
            StreamEvent::MessageStart { message } => message.usage.apply(&mut self.usage),
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => self.start_block(index, content_block, on_delta)?,
            StreamEvent::ContentBlockDelta { index, delta } => {
                self.extend_block(index, delta, on_delta)?;
            }
            StreamEvent::ContentBlockStop { index } => self.stop_block(index)?,
            StreamEvent::MessageDelta { delta, usage } => {
                usage.apply(&mut self.usage);
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
            }
            StreamEvent::MessageStop => return self.finish().map(Some),
            StreamEvent::Ping | StreamEvent::Unknown => {}
            StreamEvent::Error { error } => return Err(stream_error(error)),
        }
        Ok(None)
    }

    fn start_block(
        &mut self,
        index: usize,
        content_block: StartBlock,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<()> {
        if index >= MAX_BLOCKS {
            return Err(Error::Protocol(format!(
                "content block index {index} is absurd"
            )));
        }
        if self.blocks.len() <= index {
            self.blocks.resize_with(index + 1, || None);
        }
        let delta_index = index as u32;
        let partial = match content_block {
            StartBlock::Text { text } => {
                on_delta(Delta::TextStart { index: delta_index });
                if !text.is_empty() {
                    on_delta(Delta::Text {
                        index: delta_index,
                        text: text.clone(),
                    });
                }
                Partial::Done(Block::Text { text })
            }
            StartBlock::Thinking {
                thinking,
                signature,
            } => {
                on_delta(Delta::ThinkingStart { index: delta_index });
                Partial::Done(Block::Thinking {
                    thinking,
                    signature,
                })
            }
            StartBlock::RedactedThinking { data } => {
                on_delta(Delta::ThinkingStart { index: delta_index });
                Partial::Done(Block::RedactedThinking { data })
            }
            StartBlock::ToolUse { id, name, input } => Partial::ToolUse {
                id,
                name,
                input,
                json: String::new(),
            },
            StartBlock::Other => {
                tracing::warn!(index, "skipping an unsupported content block type");
                Partial::Skipped
            }
        };
        self.blocks[index] = Some(partial);
        Ok(())
    }

    fn extend_block(
        &mut self,
        index: usize,
        delta: BlockDelta,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<()> {
        match (self.block(index)?, delta) {
            (Partial::Skipped, _) | (_, BlockDelta::Other) => {}
            (Partial::Done(Block::Text { text }), BlockDelta::TextDelta { text: t }) => {
                text.push_str(&t);
                on_delta(Delta::Text {
                    index: index as u32,
                    text: t,
                });
            }
            (
                Partial::Done(Block::Thinking { thinking, .. }),
                BlockDelta::ThinkingDelta { thinking: t },
            ) => {
                thinking.push_str(&t);
            }
            (
                Partial::Done(Block::Thinking { signature, .. }),
                BlockDelta::SignatureDelta { signature: s },
            ) => {
                signature.push_str(&s);
            }
            (Partial::ToolUse { json, .. }, BlockDelta::InputJsonDelta { partial_json }) => {
                json.push_str(&partial_json);
            }
            _ => {
                return Err(Error::Protocol(format!(
                    "a delta does not match the type of content block {index}"
                )));
            }
        }
        Ok(())
    }

    /// A finished tool call's input is parsed here rather than at `message_stop`, so a
    /// malformed one fails the stream where it happened.
    fn stop_block(&mut self, index: usize) -> Result<()> {
        let partial = self
            .blocks
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| Error::Protocol(format!("stop for unknown content block {index}")))?;
        self.blocks[index] = Some(match partial.finish()? {
            Some(b) => Partial::Done(b),
            None => Partial::Skipped,
        });
        Ok(())
    }

    fn finish(&mut self) -> Result<Response> {
        let mut content = Vec::new();
        for partial in std::mem::take(&mut self.blocks).into_iter().flatten() {
            content.extend(partial.finish()?);
        }
        let has_tool_use = content.iter().any(|b| matches!(b, Block::ToolUse { .. }));
        let stop_reason = match self.stop_reason.as_deref() {
            Some("end_turn") => StopReason::EndTurn,
            Some("tool_use") => StopReason::ToolUse,
            Some("max_tokens" | "model_context_window_exceeded") => StopReason::MaxTokens,
            Some("stop_sequence") => StopReason::StopSequence,
            Some("refusal") => StopReason::Refusal,
            Some("pause_turn") => StopReason::PauseTurn,
            other => {
                tracing::warn!(stop_reason = ?other, "unknown stop_reason; inferring one");
                if has_tool_use {
                    StopReason::ToolUse
                } else {
                    StopReason::EndTurn
                }
            }
        };
        Ok(Response {
            content,
            stop_reason,
            usage: self.usage,
        })
    }
}

impl Assemble for Assembler {
    fn frames(
        &mut self,
        frames: &mut Vec<Frame>,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Option<Response>> {
        self.handle_all(frames, on_delta)
    }

    /// Only `message_stop` completes a message; without it the reply may be cut anywhere.
    fn end(self) -> Result<Response> {
        Err(Error::Protocol(
            "the stream ended before message_stop".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(events: &[Value]) -> (Result<Option<Response>>, Vec<Delta>) {
        let mut acc = Assembler::default();
        let mut deltas = Vec::new();
        let mut sse: Vec<Frame> = events
            .iter()
            .map(|e| Frame::Event {
                event: String::new(),
                data: e.to_string(),
            })
            .collect();
        let r = acc.handle_all(&mut sse, &mut |d| deltas.push(d));
        (r, deltas)
    }

    #[test]
    fn unknown_things_are_tolerated() {
        let (r, deltas) = assemble(&[
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 5}}}),
            json!({"type": "some_future_event", "x": 1}),
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "redacted_thinking", "data": "opaque"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "server_tool_use", "id": "s", "name": "web_search"}}),
            json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2,
                "content_block": {"type": "text", "text": "hi"}}),
            json!({"type": "content_block_delta", "index": 2,
                "delta": {"type": "citations_delta", "citation": {}}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "brand_new_reason"},
                "usage": {"output_tokens": 9, "input_tokens": 6}}),
            json!({"type": "message_stop"}),
        ]);
        let r = r.unwrap().unwrap();
        assert_eq!(
            r.content,
            vec![
                Block::RedactedThinking {
                    data: "opaque".into()
                },
                Block::Text { text: "hi".into() },
            ]
        );
        assert_eq!(r.stop_reason, StopReason::EndTurn);
        assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (6, 9));
        assert_eq!(
            deltas,
            vec![
                Delta::ThinkingStart { index: 0 },
                Delta::TextStart { index: 2 },
                Delta::Text {
                    index: 2,
                    text: "hi".into()
                },
            ]
        );
    }

    #[test]
    fn malformed_streams_are_protocol_errors() {
        let start = json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}});
        let bad_json = json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}});
        let stop = json!({"type": "content_block_stop", "index": 0});
        let text_into_tool = json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "x"}});
        let unknown_index = json!({"type": "content_block_delta", "index": 7,
            "delta": {"type": "text_delta", "text": "x"}});
        for events in [
            vec![start.clone(), bad_json, stop],
            vec![start, text_into_tool],
            vec![unknown_index],
            vec![json!({"no": "type"})],
        ] {
            let (r, _) = assemble(&events);
            assert!(matches!(r, Err(Error::Protocol(_))), "{events:?}: {r:?}");
        }
    }
}
