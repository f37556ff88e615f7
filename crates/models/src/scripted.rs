//! The scripted model: deterministic replies read from a YAML script, for tests and offline
//! demos. Turn `i` of the script answers the call made when the conversation holds `i`
//! assistant messages, so a script replays the same way however often a session retries.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Block, Delta, Error, Message, Model, Purpose, Request, Response, Result, Role, StopReason,
    Usage,
};

pub struct Scripted {
    name: String,
    kind: Kind,
    /// Failed attempts so far per turn, so `error.times` counts across calls and sessions.
    failures: Mutex<HashMap<usize, u32>>,
}

enum Kind {
    Echo,
    Script(Script),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    #[serde(default)]
    turns: Vec<Turn>,
    /// Verdicts for outcome grading requests: `grades[i]` answers evaluation iteration i (the
    /// last one repeats).
    #[serde(default)]
    grades: Vec<Grade>,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    chunk_chars: usize,
    #[serde(default)]
    chunk_delay_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Turn {
    thinking: Option<String>,
    text: Option<String>,
    /// Answer "echo: <the latest user-side text>", as `scripted/echo` does.
    #[serde(default)]
    echo: bool,
    tool_use: Option<ToolUseSpec>,
    content: Option<Vec<ContentSpec>>,
    error: Option<ErrorSpec>,
    delay_ms: Option<u64>,
    stop_reason: Option<StopReason>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Grade {
    result: String,
    #[serde(default)]
    explanation: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolUseSpec {
    name: String,
    #[serde(default = "empty_object")]
    input: Value,
}

/// One block of an explicit `content` list; exactly one field is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentSpec {
    text: Option<String>,
    thinking: Option<String>,
    tool_use: Option<ToolUseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorSpec {
    status: u16,
    #[serde(default = "default_error_message")]
    message: String,
    /// Fail this many attempts, then answer; absent means fail every time.
    times: Option<u32>,
    retry_after_ms: Option<u64>,
}

fn empty_object() -> Value {
    json!({})
}

fn default_error_message() -> String {
    "scripted error".into()
}

impl Turn {
    fn has_reply(&self) -> bool {
        self.thinking.is_some()
            || self.text.is_some()
            || self.echo
            || self.tool_use.is_some()
            || self.content.is_some()
    }

    fn validate(&self) -> Result<(), String> {
        if self.echo && (self.content.is_some() || self.text.is_some()) {
            return Err("`echo` cannot be combined with `content` or `text`".into());
        }
        if self.content.is_some()
            && (self.thinking.is_some() || self.text.is_some() || self.tool_use.is_some())
        {
            return Err(
                "`content` cannot be combined with `text`, `thinking` or `tool_use`".into(),
            );
        }
        for (k, item) in self.content.iter().flatten().enumerate() {
            let set = [
                item.text.is_some(),
                item.thinking.is_some(),
                item.tool_use.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                return Err(format!(
                    "content[{k}] must hold exactly one of `text`, `thinking`, `tool_use`"
                ));
            }
        }
        if let Some(e) = &self.error
            && !(e.status == 0 || (400..=599).contains(&e.status))
        {
            return Err(format!(
                "error.status {} is not 0 (connection failure) or 400-599",
                e.status
            ));
        }
        if !self.has_reply() && self.error.is_none() {
            return Err("a turn needs `text`, `thinking`, `tool_use`, `content` or `error`".into());
        }
        Ok(())
    }

    fn blocks(&self, turn: usize, messages: &[Message]) -> Vec<Block> {
        let mut tools = 0;
        let mut tool = |spec: &ToolUseSpec| {
            let id = format!("toolu_scripted_{turn}_{tools}");
            tools += 1;
            Block::ToolUse {
                id,
                name: spec.name.clone(),
                input: spec.input.clone(),
            }
        };
        let thinking = |t: &String| Block::Thinking {
            thinking: t.clone(),
            signature: "scripted".into(),
        };
        let text = |t: &String| Block::Text { text: t.clone() };
        match &self.content {
            Some(items) => items
                .iter()
                .filter_map(|c| {
                    (c.text.as_ref().map(text))
                        .or_else(|| c.thinking.as_ref().map(thinking))
                        .or_else(|| c.tool_use.as_ref().map(&mut tool))
                })
                .collect(),
            None => {
                let mut blocks: Vec<Block> = self.thinking.iter().map(thinking).collect();
                blocks.extend(self.text.iter().map(text));
                if self.echo {
                    blocks.push(Block::Text {
                        text: echo_text(messages),
                    });
                }
                blocks.extend(self.tool_use.iter().map(tool));
                blocks
            }
        }
    }
}

impl ErrorSpec {
    fn to_error(&self) -> Error {
        let message = self.message.clone();
        let retry_after = self.retry_after_ms.map(Duration::from_millis);
        match self.status {
            0 => Error::Transport(message),
            429 => Error::RateLimited {
                message,
                retry_after,
            },
            529 => Error::Overloaded {
                message,
                retry_after,
            },
            status @ 500..=599 => Error::Server { status, message },
            status => Error::Rejected { status, message },
        }
    }
}

impl Scripted {
    /// Replies `echo: <text of the last user message>`; needs no script file.
    pub fn echo() -> Scripted {
        Scripted {
            name: "echo".into(),
            kind: Kind::Echo,
            failures: Mutex::default(),
        }
    }

    pub fn from_file(path: &Path) -> Result<Scripted, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_yaml(&path.display().to_string(), &text)
    }

    /// `name` only labels error messages (normally the file path).
    pub fn from_yaml(name: &str, text: &str) -> Result<Scripted, String> {
        let script: Script =
            yaml_serde::from_str(text).map_err(|e| crate::yaml::error(name, &e))?;
        for (i, turn) in script.turns.iter().enumerate() {
            turn.validate()
                .map_err(|e| format!("{name}: turns[{i}]: {e}"))?;
        }
        Ok(Scripted {
            name: name.to_owned(),
            kind: Kind::Script(script),
            failures: Mutex::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts this attempt and returns how many attempts at `turn` failed before it.
    fn attempt(&self, turn: usize) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(turn).or_default();
        *n += 1;
        *n - 1
    }
}

fn echo_text(messages: &[Message]) -> String {
    let Some(last) = messages.iter().rev().find(|m| m.role == Role::User) else {
        return "echo: ".into();
    };
    let texts: Vec<&str> = last
        .content
        .iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let only_results = texts.is_empty()
        && last
            .content
            .iter()
            .any(|b| matches!(b, Block::ToolResult { .. }));
    if only_results {
        "echo: tool result received".into()
    } else {
        format!("echo: {}", texts.concat())
    }
}

/// Characters a block contributes to the token estimate.
fn block_chars(block: &Block) -> usize {
    match block {
        Block::Text { text } => text.chars().count(),
        Block::Thinking { thinking, .. } => thinking.chars().count(),
        Block::ToolUse { name, input, .. } => name.len() + input.to_string().len(),
        Block::ToolResult { content, .. } => content.iter().map(block_chars).sum(),
        Block::Image { .. } | Block::Document { .. } | Block::RedactedThinking { .. } => 0,
    }
}

/// A deterministic stand-in for a tokenizer: about four characters per token.
fn estimate_tokens(chars: usize) -> u64 {
    chars as u64 / 4 + 1
}

fn request_chars(request: &Request) -> usize {
    let system = request.system.as_deref().map_or(0, |s| s.chars().count());
    system
        + request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .map(block_chars)
            .sum::<usize>()
}

async fn pause(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// What a call answers with, before it is streamed.
struct Reply {
    content: Vec<Block>,
    stop_override: Option<StopReason>,
    chunk_chars: usize,
    chunk_delay_ms: u64,
}

impl Scripted {
    /// The verdict for a grading request: the script's `grades`, or "satisfied" when it has
    /// none, so outcome sessions still finish against any script.
    fn grade(&self, iteration: u32) -> Response {
        let i = iteration as usize;
        let grade = match &self.kind {
            Kind::Script(s) => s.grades.get(i).or(s.grades.last()).cloned(),
            Kind::Echo => None,
        }
        .unwrap_or(Grade {
            result: "satisfied".into(),
            explanation: "the script gives no grades".into(),
        });
        let text = serde_json::to_string(&grade).unwrap_or_default();
        let usage = Usage {
            input_tokens: 1,
            output_tokens: text.len() as u64 / 4 + 1,
            ..Usage::default()
        };
        Response {
            content: vec![Block::Text { text }],
            stop_reason: StopReason::EndTurn,
            usage,
        }
    }

    /// The turn for this call, after its delay; a scripted error fails the call here.
    async fn reply(&self, request: &Request) -> Result<Reply> {
        // A compaction is answered like a turn: scripts have no summaries of their own.
        let turn_index = request
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .count();
        let script = match &self.kind {
            Kind::Echo => {
                return Ok(Reply {
                    content: vec![Block::Text {
                        text: echo_text(&request.messages),
                    }],
                    stop_override: None,
                    chunk_chars: 0,
                    chunk_delay_ms: 0,
                });
            }
            Kind::Script(script) => script,
        };
        let (content, stop_override) = match script.turns.get(turn_index) {
            None => {
                pause(script.delay_ms).await;
                let text = format!("[scripted model: the script has no turn {turn_index}]");
                (vec![Block::Text { text }], None)
            }
            Some(turn) => {
                pause(turn.delay_ms.unwrap_or(script.delay_ms)).await;
                if let Some(err) = &turn.error {
                    let failed = self.attempt(turn_index);
                    if !turn.has_reply() || err.times.is_none_or(|t| failed < t) {
                        return Err(err.to_error());
                    }
                }
                (turn.blocks(turn_index, &request.messages), turn.stop_reason)
            }
        };
        Ok(Reply {
            content,
            stop_override,
            chunk_chars: script.chunk_chars,
            chunk_delay_ms: script.chunk_delay_ms,
        })
    }
}

/// Reports `content` as deltas, text in `chunk_chars` pieces (0: whole) `chunk_delay_ms`
/// apart, so scripts can exercise streaming clients.
async fn stream(
    content: &[Block],
    chunk_chars: usize,
    chunk_delay_ms: u64,
    on_delta: &mut (dyn FnMut(Delta) + Send),
) {
    on_delta(Delta::Started);
    for (i, block) in content.iter().enumerate() {
        let index = i as u32;
        match block {
            Block::Text { text } => {
                on_delta(Delta::TextStart { index });
                let chars: Vec<char> = text.chars().collect();
                let size = if chunk_chars == 0 {
                    chars.len().max(1)
                } else {
                    chunk_chars
                };
                for (k, piece) in chars.chunks(size).enumerate() {
                    if k > 0 {
                        pause(chunk_delay_ms).await;
                    }
                    on_delta(Delta::Text {
                        index,
                        text: piece.iter().collect(),
                    });
                }
            }
            Block::Thinking { .. } | Block::RedactedThinking { .. } => {
                on_delta(Delta::ThinkingStart { index });
            }
            _ => {}
        }
    }
}

#[async_trait]
impl Model for Scripted {
    async fn complete(
        &self,
        request: &Request,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Response> {
        if let Purpose::Grading { iteration } = request.purpose {
            on_delta(Delta::Started);
            return Ok(self.grade(iteration));
        }
        // A script has no judgement of a call's risk: the call is put to the user.
        if request.purpose == Purpose::PermissionCheck {
            return Ok(Response {
                content: vec![Block::Text { text: "ASK".into() }],
                stop_reason: StopReason::EndTurn,
                usage: Usage::default(),
            });
        }
        let Reply {
            content,
            stop_override,
            chunk_chars,
            chunk_delay_ms,
        } = self.reply(request).await?;
        stream(&content, chunk_chars, chunk_delay_ms, on_delta).await;

        let has_tool_use = content.iter().any(|b| matches!(b, Block::ToolUse { .. }));
        let stop_reason = stop_override.unwrap_or(if has_tool_use {
            StopReason::ToolUse
        } else {
            StopReason::EndTurn
        });
        let usage = Usage {
            input_tokens: estimate_tokens(request_chars(request)),
            output_tokens: estimate_tokens(content.iter().map(block_chars).sum()),
            ..Usage::default()
        };
        Ok(Response {
            content,
            stop_reason,
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(assistant_turns: usize, last_user: Vec<Block>) -> Request {
        let mut messages = Vec::new();
        for i in 0..assistant_turns {
            messages.push(Message {
                role: Role::User,
                content: vec![Block::Text {
                    text: format!("u{i}"),
                }],
            });
            messages.push(Message {
                role: Role::Assistant,
                content: vec![Block::Text {
                    text: format!("a{i}"),
                }],
            });
        }
        messages.push(Message {
            role: Role::User,
            content: last_user,
        });
        Request {
            model: "x".into(),
            system: None,
            messages,
            tools: vec![],
            max_tokens: 100,
            purpose: Purpose::Turn,
        }
    }

    fn text(t: &str) -> Vec<Block> {
        vec![Block::Text { text: t.into() }]
    }

    async fn call(m: &Scripted, r: &Request) -> (Result<Response>, Vec<Delta>) {
        let mut deltas = Vec::new();
        let out = m.complete(r, &mut |d| deltas.push(d)).await;
        (out, deltas)
    }

    const SCRIPT: &str = r#"
turns:
  - text: "Hello!"
  - tool_use: {name: get_weather, input: {city: Paris}}
  - thinking: "Let me think"
    text: "Done"
  - content:
      - {text: "Calling two tools"}
      - {tool_use: {name: a}}
      - {tool_use: {name: b, input: {x: 1}}}
  - error: {status: 529, message: "overloaded", times: 2, retry_after_ms: 250}
    text: "recovered"
  - error: {status: 400, message: "bad"}
chunk_chars: 3
"#;

    #[tokio::test]
    async fn grading_is_told_by_purpose_not_by_prompt() {
        let m = Scripted::from_yaml(
            "g.yaml",
            r#"
turns:
  - text: "a turn"
grades:
  - {result: needs_revision, explanation: "first"}
  - {result: satisfied}
"#,
        )
        .unwrap();
        let grade = |iteration| {
            let mut r = req(0, text("Evaluation iteration: 0"));
            r.system = Some(format!("{} Be strict.", crate::GRADER_SYSTEM_PREFIX));
            r.purpose = Purpose::Grading { iteration };
            r
        };
        let verdict = |r: Response| -> Value {
            let [Block::Text { text }] = &r.content[..] else {
                panic!("{:?}", r.content)
            };
            serde_json::from_str(text).unwrap()
        };
        let r = call(&m, &grade(0)).await.0.unwrap();
        assert_eq!(
            verdict(r),
            json!({"result": "needs_revision", "explanation": "first"})
        );
        // The iteration comes from the purpose, whatever the prompt says; the last grade
        // repeats.
        for iteration in [1, 5] {
            let r = call(&m, &grade(iteration)).await.0.unwrap();
            assert_eq!(verdict(r)["result"], "satisfied");
        }
        // A grader's prompt text alone does not make a request a grading one, and a
        // compaction is replayed from the turns.
        for purpose in [Purpose::Turn, Purpose::Compaction] {
            let r = grade(0);
            let r = call(&m, &Request { purpose, ..r }).await.0.unwrap();
            assert_eq!(r.content, text("a turn"));
        }
    }

    #[tokio::test]
    async fn turns_are_selected_by_assistant_count() {
        let m = Scripted::from_yaml("t.yaml", SCRIPT).unwrap();
        let (r, deltas) = call(&m, &req(0, text("hi"))).await;
        let r = r.unwrap();
        assert_eq!(r.content, text("Hello!"));
        assert_eq!(r.stop_reason, StopReason::EndTurn);
        assert_eq!(r.usage.input_tokens, 1);
        assert_eq!(r.usage.output_tokens, 2);
        assert_eq!(
            deltas,
            vec![
                Delta::Started,
                Delta::TextStart { index: 0 },
                Delta::Text {
                    index: 0,
                    text: "Hel".into()
                },
                Delta::Text {
                    index: 0,
                    text: "lo!".into()
                },
            ]
        );

        let r = call(&m, &req(1, text("weather?"))).await.0.unwrap();
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(
            r.content,
            vec![Block::ToolUse {
                id: "toolu_scripted_1_0".into(),
                name: "get_weather".into(),
                input: json!({"city": "Paris"})
            }]
        );

        let (r, deltas) = call(&m, &req(2, text("go"))).await;
        assert_eq!(
            r.unwrap().content,
            vec![
                Block::Thinking {
                    thinking: "Let me think".into(),
                    signature: "scripted".into()
                },
                Block::Text {
                    text: "Done".into()
                },
            ]
        );
        assert_eq!(deltas[1], Delta::ThinkingStart { index: 0 });
        assert_eq!(deltas[2], Delta::TextStart { index: 1 });

        let r = call(&m, &req(3, text("go"))).await.0.unwrap();
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(
            r.content,
            vec![
                Block::Text {
                    text: "Calling two tools".into()
                },
                Block::ToolUse {
                    id: "toolu_scripted_3_0".into(),
                    name: "a".into(),
                    input: json!({})
                },
                Block::ToolUse {
                    id: "toolu_scripted_3_1".into(),
                    name: "b".into(),
                    input: json!({"x": 1})
                },
            ]
        );
    }

    #[tokio::test]
    async fn errors_are_injected_then_fall_through() {
        let m = Scripted::from_yaml("t.yaml", SCRIPT).unwrap();
        let overloaded = Error::Overloaded {
            message: "overloaded".into(),
            retry_after: Some(Duration::from_millis(250)),
        };
        assert_eq!(
            call(&m, &req(4, text("x"))).await.0.unwrap_err(),
            overloaded
        );
        assert_eq!(
            call(&m, &req(4, text("x"))).await.0.unwrap_err(),
            overloaded
        );
        assert_eq!(
            call(&m, &req(4, text("x"))).await.0.unwrap().content,
            text("recovered")
        );
        assert_eq!(
            call(&m, &req(4, text("x"))).await.0.unwrap().content,
            text("recovered")
        );
        for _ in 0..3 {
            let e = call(&m, &req(5, text("x"))).await.0.unwrap_err();
            assert_eq!(
                e,
                Error::Rejected {
                    status: 400,
                    message: "bad".into()
                }
            );
        }
        let r = call(&m, &req(6, text("x"))).await.0.unwrap();
        assert_eq!(
            r.content,
            text("[scripted model: the script has no turn 6]")
        );
        assert_eq!(r.stop_reason, StopReason::EndTurn);
    }

    #[tokio::test]
    async fn status_mapping() {
        for (status, want) in [
            (0, Error::Transport("m".into())),
            (
                429,
                Error::RateLimited {
                    message: "m".into(),
                    retry_after: None,
                },
            ),
            (
                503,
                Error::Server {
                    status: 503,
                    message: "m".into(),
                },
            ),
            (
                404,
                Error::Rejected {
                    status: 404,
                    message: "m".into(),
                },
            ),
        ] {
            let m = Scripted::from_yaml(
                "s",
                &format!("turns: [{{error: {{status: {status}, message: m}}}}]"),
            )
            .unwrap();
            assert_eq!(call(&m, &req(0, text("x"))).await.0.unwrap_err(), want);
        }
    }

    #[tokio::test]
    async fn echo_repeats_the_last_user_message() {
        let m = Scripted::echo();
        let r = call(
            &m,
            &req(
                2,
                vec![
                    Block::Text { text: "a".into() },
                    Block::Text { text: "b".into() },
                ],
            ),
        )
        .await;
        assert_eq!(r.0.unwrap().content, text("echo: ab"));
        let results = vec![Block::ToolResult {
            tool_use_id: "t".into(),
            content: text("42"),
            is_error: false,
        }];
        assert_eq!(
            call(&m, &req(1, results)).await.0.unwrap().content,
            text("echo: tool result received")
        );
    }

    #[tokio::test]
    async fn delays_are_cancellable_sleeps() {
        let m = Scripted::from_yaml(
            "d",
            "turns: [{text: hi, delay_ms: 60000}, {text: ok}]\ndelay_ms: 150",
        )
        .unwrap();
        let mut noop = |_| {};
        let first = req(0, text("x"));
        let fut = m.complete(&first, &mut noop);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), fut)
                .await
                .is_err()
        );
        let start = std::time::Instant::now();
        assert!(call(&m, &req(1, text("x"))).await.0.is_ok());
        assert!(start.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn yaml_errors_name_file_line_and_column() {
        let e = Scripted::from_yaml("bad.yaml", "turns:\n  - text: hi\n  - txt: oops\n")
            .err()
            .unwrap();
        assert!(e.starts_with("bad.yaml:3:5: "), "{e}");
        assert!(e.contains("unknown field `txt`"), "{e}");
        let e = Scripted::from_yaml("bad.yaml", "turns:\n  - text: [unclosed\n")
            .err()
            .unwrap();
        assert!(e.starts_with("bad.yaml:"), "{e}");
        let e = Scripted::from_yaml("s.yaml", "turns: [{content: [{text: a}], text: b}]")
            .err()
            .unwrap();
        assert!(e.starts_with("s.yaml: turns[0]: `content` cannot"), "{e}");
        let e = Scripted::from_yaml("s.yaml", "turns: [{delay_ms: 5}]")
            .err()
            .unwrap();
        assert!(e.contains("a turn needs"), "{e}");
    }
}
