//! Anthropic Messages API client: one streamed `POST /v1/messages` per call. The request body
//! is built here, the stream's events are assembled into a provider-neutral `Response` in
//! `stream`, and the HTTP exchange itself is the shared `transport`.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::transport;
use crate::{Delta, Model, Request, Response, Result, Role};

mod stream;
use stream::Assembler;

pub const API_VERSION: &str = "2023-06-01";
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Upstream pings every few seconds while it generates, so two minutes of silence means the
/// connection is dead even though TCP has not noticed.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Anthropic {
    http: reqwest::Client,
    messages_url: String,
    api_key: String,
    idle_timeout: Duration,
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic")
            .field("messages_url", &self.messages_url)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// A client with its own connection pool; see [`Anthropic::with_client`] to share one.
    pub fn new(base_url: &str, api_key: String) -> Result<Anthropic> {
        Ok(Self::with_client(transport::client()?, base_url, api_key))
    }

    pub fn with_client(http: reqwest::Client, base_url: &str, api_key: String) -> Anthropic {
        Anthropic {
            http,
            messages_url: format!("{}/v1/messages", base_url.trim_end_matches('/')),
            api_key,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// The longest silence tolerated while waiting for headers or the next chunk.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Anthropic {
        self.idle_timeout = idle_timeout;
        self
    }
}

#[async_trait]
impl Model for Anthropic {
    async fn complete(
        &self,
        request: &Request,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Response> {
        let send = self
            .http
            .post(&self.messages_url)
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", API_VERSION);
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

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// The Messages API body. Cache breakpoints go on the system prompt, the last tool and the
/// last block of the last user message, so each call re-reads the previous call's prefix.
fn request_body(req: &Request) -> Value {
    let mut messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    if let Some(i) = req.messages.iter().rposition(|m| m.role == Role::User)
        && let Some(last) = messages[i]["content"]
            .as_array_mut()
            .and_then(|c| c.last_mut())
        && let Some(block) = last.as_object_mut()
    {
        block.insert("cache_control".into(), ephemeral());
    }
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens,
        "messages": messages,
        "stream": true,
    });
    // The API rejects empty text blocks, so an empty system prompt is sent as none.
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        body["system"] = json!([{"type": "text", "text": system, "cache_control": ephemeral()}]);
    }
    if !req.tools.is_empty() {
        let last = req.tools.len() - 1;
        let tools: Vec<Value> = req
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut tool = json!({"name": t.name, "input_schema": t.input_schema});
                if !t.description.is_empty() {
                    tool["description"] = json!(t.description);
                }
                if i == last {
                    tool["cache_control"] = ephemeral();
                }
                tool
            })
            .collect();
        body["tools"] = Value::Array(tools);
    }
    body
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::{Block, Error, Message, StopReason, ToolDef, Usage};
    use agentd_testkit::{FakeAnthropic, FakeReply};

    fn req(messages: Vec<Message>) -> Request {
        Request {
            model: "claude-test".into(),
            system: None,
            messages,
            tools: vec![],
            max_tokens: 1024,
            purpose: crate::Purpose::Turn,
        }
    }

    fn user(text: &str) -> Message {
        Message {
            role: Role::User,
            content: vec![Block::Text { text: text.into() }],
        }
    }

    async fn run(fake: &FakeAnthropic, request: &Request) -> (Result<Response>, Vec<Delta>) {
        let model = Anthropic::new(&fake.base_url(), "sk-test".into()).unwrap();
        let mut deltas = Vec::new();
        let r = model.complete(request, &mut |d| deltas.push(d)).await;
        (r, deltas)
    }

    fn start(input_tokens: u64) -> Value {
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "content": [], "model": "claude-test", "stop_reason": null,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 7,
                      "cache_read_input_tokens": 11, "output_tokens": 1}}})
    }

    fn block_delta(index: u32, delta: Value) -> Value {
        json!({"type": "content_block_delta", "index": index, "delta": delta})
    }

    #[tokio::test]
    async fn assembles_thinking_text_and_tool_use() {
        let fake = FakeAnthropic::start(vec![FakeReply::sse(&[
            start(25),
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            block_delta(0, json!({"type": "thinking_delta", "thinking": "Let me "})),
            block_delta(0, json!({"type": "thinking_delta", "thinking": "think."})),
            block_delta(0, json!({"type": "signature_delta", "signature": "sig=="})),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "ping"}),
            json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "text", "text": ""}}),
            block_delta(1, json!({"type": "text_delta", "text": "Héllo "})),
            block_delta(1, json!({"type": "text_delta", "text": "wörld ☃"})),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block":
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
            block_delta(2, json!({"type": "input_json_delta", "partial_json": ""})),
            block_delta(
                2,
                json!({"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"}),
            ),
            block_delta(
                2,
                json!({"type": "input_json_delta", "partial_json": "ris\", \"days\""}),
            ),
            block_delta(
                2,
                json!({"type": "input_json_delta", "partial_json": ": 3}"}),
            ),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "content_block_start", "index": 3, "content_block":
                {"type": "tool_use", "id": "toolu_2", "name": "noargs", "input": {}}}),
            json!({"type": "content_block_stop", "index": 3}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 42}}),
            json!({"type": "message_stop"}),
        ])])
        .await;
        let (r, deltas) = run(&fake, &req(vec![user("hi")])).await;
        let r = r.unwrap();
        assert_eq!(
            r.content,
            vec![
                Block::Thinking {
                    thinking: "Let me think.".into(),
                    signature: "sig==".into()
                },
                Block::Text {
                    text: "Héllo wörld ☃".into()
                },
                Block::ToolUse {
                    id: "toolu_1".into(),
                    name: "get_weather".into(),
                    input: json!({"city": "Paris", "days": 3})
                },
                Block::ToolUse {
                    id: "toolu_2".into(),
                    name: "noargs".into(),
                    input: json!({})
                },
            ]
        );
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 25,
                output_tokens: 42,
                cache_creation_input_tokens: 7,
                cache_read_input_tokens: 11
            }
        );
        assert_eq!(
            deltas,
            vec![
                Delta::Started,
                Delta::ThinkingStart { index: 0 },
                Delta::TextStart { index: 1 },
                Delta::Text {
                    index: 1,
                    text: "Héllo ".into()
                },
                Delta::Text {
                    index: 1,
                    text: "wörld ☃".into()
                },
            ]
        );
    }

    #[tokio::test]
    async fn request_body_headers_and_cache_breakpoints() {
        let fake = FakeAnthropic::start(vec![FakeReply::text("ok")]).await;
        let thinking = Block::Thinking {
            thinking: "hmm".into(),
            signature: "s1".into(),
        };
        let mut request = req(vec![
            user("first"),
            Message {
                role: Role::Assistant,
                content: vec![
                    thinking.clone(),
                    Block::RedactedThinking {
                        data: "opaque".into(),
                    },
                    Block::ToolUse {
                        id: "t1".into(),
                        name: "a".into(),
                        input: json!({"x": 1}),
                    },
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    Block::ToolResult {
                        tool_use_id: "t1".into(),
                        is_error: false,
                        content: vec![Block::Text { text: "42".into() }],
                    },
                    Block::Text {
                        text: "go on".into(),
                    },
                ],
            },
        ]);
        request.system = Some("You are terse.".into());
        request.tools = ["a", "b"]
            .iter()
            .map(|n| ToolDef {
                name: (*n).into(),
                description: format!("tool {n}"),
                input_schema: json!({"type": "object"}),
            })
            .collect();
        let (r, _) = run(&fake, &request).await;
        assert_eq!(r.unwrap().content, vec![Block::Text { text: "ok".into() }]);

        let body = &fake.requests()[0];
        assert_eq!(body["model"], "claude-test");
        assert_eq!(body["max_tokens"], 1024);
        assert_eq!(body["stream"], true);
        assert_eq!(
            body["system"],
            json!([{"type": "text", "text": "You are terse.",
            "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(
            body["tools"][0],
            json!({"name": "a", "description": "tool a",
            "input_schema": {"type": "object"}})
        );
        assert_eq!(
            body["tools"][1]["cache_control"],
            json!({"type": "ephemeral"})
        );
        let msgs = body["messages"].as_array().unwrap();
        assert_eq!(
            msgs[0],
            json!({"role": "user", "content": [{"type": "text", "text": "first"}]})
        );
        assert_eq!(
            msgs[1]["content"][0],
            json!({"type": "thinking", "thinking": "hmm", "signature": "s1"})
        );
        assert_eq!(
            msgs[1]["content"][1],
            json!({"type": "redacted_thinking", "data": "opaque"})
        );
        assert_eq!(
            msgs[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "t1",
            "content": [{"type": "text", "text": "42"}], "is_error": false})
        );
        assert_eq!(
            msgs[2]["content"][1],
            json!({"type": "text", "text": "go on",
            "cache_control": {"type": "ephemeral"}})
        );
        assert_eq!(body.to_string().matches("cache_control").count(), 3);

        let headers = &fake.request_headers()[0];
        assert_eq!(headers["x-api-key"], "sk-test");
        assert_eq!(headers["anthropic-version"], API_VERSION);
        assert_eq!(headers["content-type"], "application/json");
    }

    fn raw_error(status: u16, retry: Option<&str>, body: &str) -> FakeReply {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        headers.extend(retry.map(|r| ("retry-after".to_owned(), r.to_owned())));
        FakeReply::Raw {
            status,
            headers,
            chunks: vec![body.to_owned().into()],
        }
    }

    #[tokio::test]
    async fn http_errors_are_mapped() {
        let anthropic_body = |kind: &str, msg: &str| {
            json!({"type": "error", "error": {"type": kind, "message": msg}}).to_string()
        };
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let fake = FakeAnthropic::start(vec![
            raw_error(
                429,
                Some("7"),
                &anthropic_body("rate_limit_error", "slow down"),
            ),
            raw_error(
                529,
                Some("1.5"),
                &anthropic_body("overloaded_error", "Overloaded"),
            ),
            FakeReply::error(500, "api_error", "boom"),
            FakeReply::error(400, "invalid_request_error", "max_tokens: too big"),
            // A proxy in front of the API: 503 is overload too, and its Retry-After a date.
            raw_error(503, Some(later.as_str()), "upstream connect error"),
        ])
        .await;
        let request = req(vec![user("hi")]);
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(run(&fake, &request).await.0.unwrap_err());
        }
        assert_eq!(
            got[..4],
            [
                Error::RateLimited {
                    message: "slow down".into(),
                    retry_after: Some(Duration::from_secs(7))
                },
                Error::Overloaded {
                    message: "Overloaded".into(),
                    retry_after: Some(Duration::from_millis(1500))
                },
                Error::Server {
                    status: 500,
                    message: "boom".into()
                },
                Error::Rejected {
                    status: 400,
                    message: "max_tokens: too big".into()
                },
            ]
        );
        let Error::Overloaded {
            message,
            retry_after: Some(wait),
        } = &got[4]
        else {
            panic!("503 is not overload: {:?}", got[4]);
        };
        assert_eq!(message, "upstream connect error");
        assert!(
            *wait > Duration::from_secs(25) && *wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(got[0].retryable() && !got[3].retryable());
    }

    #[tokio::test]
    async fn error_event_and_cut_stream() {
        let fake = FakeAnthropic::start(vec![
            FakeReply::sse(&[
                start(3),
                json!({"type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ]),
            FakeReply::sse(&[
                start(3),
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
                block_delta(0, json!({"type": "text_delta", "text": "partial"})),
            ]),
            FakeReply::Raw {
                status: 200,
                headers: vec![],
                chunks: vec!["not sse at all".into()],
            },
        ])
        .await;
        let request = req(vec![user("hi")]);
        assert_eq!(
            run(&fake, &request).await.0.unwrap_err(),
            Error::Overloaded {
                message: "Overloaded".into(),
                retry_after: None
            }
        );
        let (r, deltas) = run(&fake, &request).await;
        assert!(
            matches!(r, Err(Error::Protocol(m)) if m.contains("message_stop")),
            "{deltas:?}"
        );
        assert_eq!(
            deltas.last(),
            Some(&Delta::Text {
                index: 0,
                text: "partial".into()
            })
        );
        assert!(matches!(
            run(&fake, &request).await.0,
            Err(Error::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn dropping_the_future_closes_the_stream() {
        let fake = FakeAnthropic::start(vec![FakeReply::Hang]).await;
        let model = Anthropic::new(&fake.base_url(), "k".into()).unwrap();
        let request = req(vec![user("hi")]);
        let mut deltas = Vec::new();
        let mut record = |d| deltas.push(d);
        let call = model.complete(&request, &mut record);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), call)
                .await
                .is_err()
        );
        assert_eq!(deltas, vec![Delta::Started]);
        assert!(fake.wait_no_active_streams(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn stalled_stream_and_refused_connection_are_transport_errors() {
        let fake = FakeAnthropic::start(vec![FakeReply::Hang]).await;
        let model = Anthropic::new(&fake.base_url(), "k".into())
            .unwrap()
            .with_idle_timeout(Duration::from_millis(200));
        let r = model.complete(&req(vec![user("hi")]), &mut |_| {}).await;
        assert!(matches!(r, Err(Error::Transport(m)) if m.contains("no data")));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let model = Anthropic::new(&url, "k".into()).unwrap();
        let r = model.complete(&req(vec![user("hi")]), &mut |_| {}).await;
        assert!(matches!(r, Err(Error::Transport(_))), "{r:?}");
    }
}
