//! The model's messages as the fold builds them: roles alternate, every tool use gets its
//! result before the conversation goes on, and messages from other threads wait for a gap.

use agentd_models::{Block, Message, Role};
use agentd_session::Private;
use agentd_wire::ContentBlock;

#[derive(Default)]
pub(super) struct Builder {
    pub(super) messages: Vec<Message>,
    /// The log position of the event each message starts with.
    pub(super) starts: Vec<u64>,
    /// The position of the event being folded.
    pub(super) at: u64,
    /// Tool uses the model made that have no result yet, in call order.
    pub(super) open_tools: Vec<String>,
    /// Messages from other threads that arrived while a request or tool calls were open; they
    /// join the conversation once those close, never between a call and its result.
    pub(super) held: Vec<Block>,
}

impl Builder {
    /// Append blocks, merging with the previous message of the same role: the Messages API
    /// wants roles to alternate.
    pub(super) fn push(&mut self, role: Role, blocks: Vec<Block>) {
        if blocks.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some(m) if m.role == role => m.content.extend(blocks),
            _ => {
                self.messages.push(Message {
                    role,
                    content: blocks,
                });
                self.starts.push(self.at);
            }
        }
    }

    /// A thinking block, kept with its signature in the event's private data.
    pub(super) fn thinking(&mut self, private: Option<&Private>) {
        match private {
            Some(Private::Thinking {
                thinking,
                signature,
            }) => self.push(
                Role::Assistant,
                vec![Block::Thinking {
                    thinking: thinking.clone(),
                    signature: signature.clone(),
                }],
            ),
            Some(Private::RedactedThinking { data }) => self.push(
                Role::Assistant,
                vec![Block::RedactedThinking { data: data.clone() }],
            ),
            Some(
                Private::Compaction { .. }
                | Private::Thread { .. }
                | Private::Rubric { .. }
                | Private::Cost { .. },
            )
            | None => {}
        }
    }

    /// Replace everything before position `upto` with a summary of it.
    pub(super) fn compact(&mut self, summary: &str, upto: u64) {
        let keep = self
            .starts
            .iter()
            .position(|s| *s >= upto)
            .unwrap_or(self.messages.len());
        let messages = self.messages.split_off(keep);
        let starts = self.starts.split_off(keep);
        self.messages.clear();
        self.starts.clear();
        self.push(
            Role::User,
            vec![Block::Text {
                text: format!(
                    "A summary of the conversation so far (older turns were compacted):\n{summary}"
                ),
            }],
        );
        for (m, s) in messages.into_iter().zip(starts) {
            self.at = s;
            self.push(m.role, m.content);
        }
    }

    /// The model called a tool: its call joins the conversation and waits for a result.
    pub(super) fn open_tool(
        &mut self,
        id: &str,
        name: &str,
        input: &serde_json::Map<String, serde_json::Value>,
    ) {
        self.push(
            Role::Assistant,
            vec![Block::ToolUse {
                id: id.to_owned(),
                name: name.to_owned(),
                input: serde_json::Value::Object(input.clone()),
            }],
        );
        self.open_tools.push(id.to_owned());
    }

    /// A result for call `id`. True when it was the last open call, which lets the held
    /// messages in (unless a request is still open) and the conversation go on.
    pub(super) fn answer(
        &mut self,
        id: &str,
        content: &[ContentBlock],
        is_error: bool,
        span_open: bool,
    ) -> bool {
        if !self.close_tool(id, content, is_error) || !self.open_tools.is_empty() {
            return false;
        }
        if !span_open {
            self.flush_held();
        }
        true
    }

    pub(super) fn flush_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.push(Role::User, held);
    }

    pub(super) fn close_tool(
        &mut self,
        id: &str,
        content: &[ContentBlock],
        is_error: bool,
    ) -> bool {
        let Some(pos) = self.open_tools.iter().position(|t| t == id) else {
            return false;
        };
        self.open_tools.remove(pos);
        self.push(
            Role::User,
            vec![Block::ToolResult {
                tool_use_id: id.to_owned(),
                content: content.iter().map(to_block).collect(),
                is_error,
            }],
        );
        true
    }

    /// Every tool use needs a result before the conversation goes on; one that never got
    /// one is answered with an error saying why.
    pub(super) fn close_open_tools(&mut self, why: &str) {
        for id in std::mem::take(&mut self.open_tools) {
            self.push(
                Role::User,
                vec![Block::ToolResult {
                    tool_use_id: id,
                    content: vec![Block::Text { text: why.into() }],
                    is_error: true,
                }],
            );
        }
    }
}

pub(super) fn to_block(c: &ContentBlock) -> Block {
    match c {
        ContentBlock::Text { text } => Block::Text { text: text.clone() },
        ContentBlock::Image { source } => Block::Image {
            source: source.clone(),
        },
        ContentBlock::Document {
            source,
            title,
            context,
        } => Block::Document {
            source: source.clone(),
            title: title.clone(),
            context: context.clone(),
        },
        ContentBlock::SearchResult { title, content, .. } => Block::Text {
            text: format!(
                "{title}\n{}",
                content
                    .iter()
                    .filter_map(|c| c.get("text").and_then(|t| t.as_str()))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        },
        ContentBlock::Redacted {} => Block::Text {
            text: "[redacted]".into(),
        },
    }
}
