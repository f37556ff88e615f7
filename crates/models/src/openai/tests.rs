//! Tests of the OpenAI-compatible client against a fake chat-completions server on loopback.

use super::fake::{Fake, Reply, raw, sse, sse_in_pieces};
use super::*;
use std::time::SystemTime;

use crate::{Error, Message, StopReason, ToolDef, Usage};

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn text(t: &str) -> Value {
    chunk(json!({"content": t}), None)
}

fn finish(reason: &str) -> Value {
    chunk(json!({}), Some(reason))
}

fn usage(u: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": u})
}

fn call_fragment(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> Value {
    let mut call = json!({"index": index, "function": {"arguments": args}});
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = name {
        call["function"]["name"] = json!(name);
    }
    chunk(json!({"tool_calls": [call]}), None)
}

fn req(messages: Vec<Message>) -> Request {
    Request {
        model: "llama".into(),
        system: None,
        messages,
        tools: vec![],
        max_tokens: 512,
        purpose: crate::Purpose::Turn,
    }
}

fn user(text: &str) -> Message {
    Message {
        role: Role::User,
        content: vec![Block::Text { text: text.into() }],
    }
}

async fn run(fake: &Fake, key: Option<&str>, request: &Request) -> (Result<Response>, Vec<Delta>) {
    let model = OpenAi::new(&fake.base_url(), key.map(str::to_owned)).unwrap();
    let mut deltas = Vec::new();
    let r = model.complete(request, &mut |d| deltas.push(d)).await;
    (r, deltas)
}

#[tokio::test]
async fn streams_text_ignores_reasoning_and_reads_usage() {
    let fake = Fake::start(vec![sse(
        &[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"reasoning_content": "The user greets."}), None),
            chunk(
                json!({"reasoning": "Ollama's name for it", "content": null}),
                None,
            ),
            text("\n"),
            text("Héllo "),
            text("wörld ☃"),
            finish("stop"),
            usage(
                json!({"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35,
                "prompt_tokens_details": {"cached_tokens": 10}}),
            ),
        ],
        true,
    )])
    .await;
    let (r, deltas) = run(&fake, None, &req(vec![user("hi")])).await;
    let r = r.unwrap();
    assert_eq!(
        r.content,
        vec![Block::Text {
            text: "\nHéllo wörld ☃".into()
        }]
    );
    assert_eq!(r.stop_reason, StopReason::EndTurn);
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 20,
            output_tokens: 5,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 10
        }
    );
    // The leading newline waits for real text, so no preview starts for whitespace alone.
    assert_eq!(
        deltas,
        vec![
            Delta::Started,
            Delta::TextStart { index: 0 },
            Delta::Text {
                index: 0,
                text: "\nHéllo ".into()
            },
            Delta::Text {
                index: 0,
                text: "wörld ☃".into()
            },
        ]
    );
}

#[tokio::test]
async fn parallel_tool_calls_assemble_by_index_across_split_chunks() {
    let fake = Fake::start(vec![sse_in_pieces(
        &[
            text("\n\n"),
            call_fragment(0, Some("call_a"), Some("get_weather"), ""),
            call_fragment(1, Some("call_b"), Some("get_time"), "{\"tz\""),
            call_fragment(0, None, None, "{\"city\": \"Pa"),
            call_fragment(0, None, None, "rís\", \"days\""),
            call_fragment(1, None, None, ": \"UTC\"}"),
            call_fragment(0, None, None, ": 3}"),
            finish("tool_calls"),
            usage(json!({})),
        ],
        5,
    )])
    .await;
    let (r, deltas) = run(&fake, None, &req(vec![user("hi")])).await;
    let r = r.unwrap();
    assert_eq!(
        r.content,
        vec![
            Block::ToolUse {
                id: "call_a".into(),
                name: "get_weather".into(),
                input: json!({"city": "París", "days": 3})
            },
            Block::ToolUse {
                id: "call_b".into(),
                name: "get_time".into(),
                input: json!({"tz": "UTC"})
            },
        ]
    );
    assert_eq!(r.stop_reason, StopReason::ToolUse);
    assert_eq!(r.usage, Usage::default());
    // Whitespace-only text is dropped, and no preview was started for it.
    assert_eq!(deltas, vec![Delta::Started]);
}

#[tokio::test]
async fn malformed_tool_arguments_reach_the_model_verbatim() {
    let fake = Fake::start(vec![sse(
        &[
            call_fragment(0, Some("c1"), Some("f"), "{\"a\": "),
            call_fragment(1, Some("c2"), Some("g"), ""),
            call_fragment(2, Some("c3"), Some("h"), "[1, 2]"),
            call_fragment(3, Some("c4"), Some("k"), "\"{\\\"x\\\": 1}\""),
            finish("tool_calls"),
        ],
        true,
    )])
    .await;
    let r = run(&fake, None, &req(vec![user("hi")])).await.0.unwrap();
    let inputs: Vec<Value> = r
        .content
        .into_iter()
        .map(|b| match b {
            Block::ToolUse { input, .. } => input,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        inputs,
        vec![
            json!({"_raw_arguments": "{\"a\": "}),
            json!({}),
            json!({"_raw_arguments": "[1, 2]"}),
            json!({"x": 1}),
        ]
    );
}

#[tokio::test]
async fn finish_reasons_are_mapped() {
    let tool = call_fragment(0, Some("c"), Some("f"), "{}");
    let cases = [
        (vec![text("a"), finish("stop")], StopReason::EndTurn),
        (vec![text("a"), finish("length")], StopReason::MaxTokens),
        (vec![finish("content_filter")], StopReason::Refusal),
        (
            vec![tool.clone(), finish("function_call")],
            StopReason::ToolUse,
        ),
        // Ollama reports `stop` for a reply that calls tools.
        (vec![tool.clone(), finish("stop")], StopReason::ToolUse),
        (vec![text("a"), finish("eos_token")], StopReason::EndTurn),
        (vec![tool, finish("brand_new")], StopReason::ToolUse),
    ];
    let fake = Fake::start(cases.iter().map(|(c, _)| sse(c, true)).collect()).await;
    for (i, (_, want)) in cases.iter().enumerate() {
        let r = run(&fake, None, &req(vec![user("hi")])).await.0.unwrap();
        assert_eq!(r.stop_reason, *want, "case {i}");
    }
}

#[tokio::test]
async fn end_of_stream_needs_a_finish_reason_or_done() {
    let fake = Fake::start(vec![
        // A finish_reason without [DONE]: complete.
        sse(&[text("ok"), finish("stop")], false),
        // [DONE] without a finish_reason: complete too.
        sse(&[text("ok")], true),
        // Neither: the connection was cut.
        sse(&[text("partial")], false),
        sse(&[], false),
    ])
    .await;
    let request = req(vec![user("hi")]);
    for _ in 0..2 {
        let r = run(&fake, None, &request).await.0.unwrap();
        assert_eq!(r.content, vec![Block::Text { text: "ok".into() }]);
        assert_eq!(r.stop_reason, StopReason::EndTurn);
    }
    let (r, deltas) = run(&fake, None, &request).await;
    assert!(
        matches!(&r, Err(Error::Protocol(m)) if m.contains("finish_reason")),
        "{r:?}"
    );
    assert_eq!(deltas.len(), 3, "{deltas:?}");
    let r = run(&fake, None, &request).await.0;
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
}

#[tokio::test]
async fn http_errors_are_mapped() {
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let fake = Fake::start(vec![
        raw(
            429,
            vec![("retry-after", "7".into())],
            r#"{"error": {"message": "slow down", "type": "rate_limit"}}"#,
        ),
        raw(429, vec![("retry-after", later)], "busy"),
        raw(503, vec![("retry-after", "2".into())], ""),
        raw(500, vec![], r#"{"error": {"message": "boom"}}"#),
        raw(
            400,
            vec![],
            r#"{"error": {"message": "max_tokens is too large", "code": 400}}"#,
        ),
        raw(404, vec![], r#"{"error": "model \"x\" not found"}"#),
        raw(422, vec![], r#"{"detail": [{"msg": "field required"}]}"#),
        raw(401, vec![], &"x".repeat(2000)),
    ])
    .await;
    let request = req(vec![user("hi")]);
    let mut got = Vec::new();
    for _ in 0..8 {
        got.push(run(&fake, Some("k"), &request).await.0.unwrap_err());
    }
    assert_eq!(
        got[0],
        Error::RateLimited {
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(7))
        }
    );
    let wait = got[1].retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!(
        got[2],
        Error::Overloaded {
            message: "Service Unavailable".into(),
            retry_after: Some(Duration::from_secs(2))
        }
    );
    assert_eq!(
        got[3],
        Error::Server {
            status: 500,
            message: "boom".into()
        }
    );
    assert_eq!(
        got[4],
        Error::Rejected {
            status: 400,
            message: "max_tokens is too large".into()
        }
    );
    assert_eq!(
        got[5],
        Error::Rejected {
            status: 404,
            message: "model \"x\" not found".into()
        }
    );
    assert!(
        matches!(&got[6], Error::Rejected { status: 422, message } if message.contains("field required")),
        "{:?}",
        got[6]
    );
    assert!(
        matches!(&got[7], Error::Rejected { status: 401, message } if message.len() == 500),
        "{:?}",
        got[7]
    );
    assert!(got[0].retryable() && got[2].retryable() && !got[4].retryable());
}

#[tokio::test]
async fn errors_inside_the_stream_are_mapped() {
    let fake = Fake::start(vec![
        // vLLM: an error chunk after the headers.
        sse(
            &[
                text("par"),
                json!({"error": {"object": "error", "message": "context too long",
                    "type": "BadRequestError", "code": 400}}),
            ],
            false,
        ),
        // llama.cpp: an `error:` field instead of `data:`.
        Reply::Raw {
            status: 200,
            headers: vec![],
            chunks: vec![
                b"error: {\"code\": 503, \"message\": \"Loading model\", \"type\": \"unavailable_error\"}\n\n"
                    .to_vec(),
            ],
        },
        Reply::Raw {
            status: 200,
            headers: vec![],
            chunks: vec![b"data: not json\n\n".to_vec()],
        },
    ])
    .await;
    let request = req(vec![user("hi")]);
    assert_eq!(
        run(&fake, None, &request).await.0.unwrap_err(),
        Error::Rejected {
            status: 400,
            message: "context too long".into()
        }
    );
    assert_eq!(
        run(&fake, None, &request).await.0.unwrap_err(),
        Error::Overloaded {
            message: "Loading model".into(),
            retry_after: None
        }
    );
    assert!(matches!(
        run(&fake, None, &request).await.0,
        Err(Error::Protocol(_))
    ));
}

/// A conversation using every block the request translation treats specially: images in
/// user turns and in tool results, thinking, parallel tool calls, an error result, and text
/// between results.
fn every_kind_of_block() -> Request {
    let image = json!({"type": "base64", "media_type": "image/jpeg", "data": "AAAA"});
    let tool_use = |id: &str, name: &str, input: Value| Block::ToolUse {
        id: id.into(),
        name: name.into(),
        input,
    };
    let result = |id: &str, is_error: bool, content: Vec<Block>| Block::ToolResult {
        tool_use_id: id.into(),
        content,
        is_error,
    };
    let text = |t: &str| Block::Text { text: t.into() };
    let mut request = req(vec![
        Message {
            role: Role::User,
            content: vec![
                text("look"),
                Block::Image {
                    source: image.clone(),
                },
            ],
        },
        Message {
            role: Role::Assistant,
            content: vec![
                Block::Thinking {
                    thinking: "hmm".into(),
                    signature: "s".into(),
                },
                text("Checking."),
                tool_use("t1", "a", json!({"x": 1})),
                tool_use("t2", "b", json!({})),
            ],
        },
        Message {
            role: Role::User,
            content: vec![
                result("t1", false, vec![text("4"), text("2")]),
                text("go on"),
                result("t2", true, vec![text("boom")]),
            ],
        },
        Message {
            role: Role::Assistant,
            content: vec![tool_use("t3", "shot", json!({}))],
        },
        Message {
            role: Role::User,
            content: vec![result("t3", false, vec![Block::Image { source: image }])],
        },
    ]);
    request.system = Some("You are terse.".into());
    request.tools = vec![
        ToolDef {
            name: "a".into(),
            description: "tool a".into(),
            input_schema: json!({"type": "object"}),
        },
        ToolDef {
            name: "b".into(),
            description: String::new(),
            input_schema: json!({"type": "object", "properties": {}}),
        },
    ];
    request
}

#[tokio::test]
async fn request_body_and_headers() {
    let fake = Fake::start(vec![sse(&[text("ok"), finish("stop")], true)]).await;
    let (r, _) = run(&fake, Some("sk-local"), &every_kind_of_block()).await;
    assert_eq!(r.unwrap().content, vec![Block::Text { text: "ok".into() }]);
    run(&fake, Some("  "), &req(vec![user("no key")]))
        .await
        .0
        .unwrap();

    let requests = fake.requests();
    let (headers, body) = &requests[0];
    assert_eq!(headers["authorization"], "Bearer sk-local");
    assert_eq!(headers["content-type"], "application/json");
    assert!(!requests[1].0.contains_key("authorization"));
    assert_eq!(body["model"], "llama");
    assert_eq!(body["max_tokens"], 512);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert!(body.get("max_completion_tokens").is_none());
    let data_url =
        json!({"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}});
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "look"}, data_url]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "a", "arguments": "{\"x\":1}"}},
                {"id": "t2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "t1", "content": "4\n2"},
            {"role": "tool", "tool_call_id": "t2", "content": "Error: boom"},
            {"role": "user", "content": "go on"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "t3", "type": "function", "function": {"name": "shot", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "t3", "content": ""},
            {"role": "user", "content": [
                {"type": "text", "text": "Image returned by tool call t3:"}, data_url]},
        ])
    );
    assert_eq!(
        body["tools"],
        json!([
            {"type": "function", "function": {"name": "a", "description": "tool a",
                "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "b",
                "parameters": {"type": "object", "properties": {}}}},
        ])
    );
    // No tools: the key is left out, not sent empty.
    assert!(requests[1].1.get("tools").is_none());
    assert_eq!(
        requests[1].1["messages"],
        json!([{"role": "user", "content": "no key"}])
    );
}

#[tokio::test]
async fn stalled_stream_and_refused_connection_are_transport_errors() {
    let fake = Fake::start(vec![Reply::Hang]).await;
    let model = OpenAi::new(&fake.base_url(), None)
        .unwrap()
        .with_idle_timeout(Duration::from_millis(200));
    let mut deltas = Vec::new();
    let r = model
        .complete(&req(vec![user("hi")]), &mut |d| deltas.push(d))
        .await;
    assert!(
        matches!(&r, Err(Error::Transport(m)) if m.contains("no data")),
        "{r:?}"
    );
    assert_eq!(deltas, vec![Delta::Started]);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let r = OpenAi::new(&url, None)
        .unwrap()
        .complete(&req(vec![user("hi")]), &mut |_| {})
        .await;
    assert!(matches!(r, Err(Error::Transport(_))), "{r:?}");
}
