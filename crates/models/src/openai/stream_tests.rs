//! Byte-level tests of the SSE decoder and the chunk assembler, without a server.

use super::*;

fn assemble(chunks: &[Value]) -> (Result<Response>, Vec<Delta>) {
    let mut acc = Assembler::default();
    let mut deltas = Vec::new();
    let mut frames: Vec<Frame> = chunks
        .iter()
        .map(|c| Frame::Event {
            event: String::new(),
            data: c.to_string(),
        })
        .collect();
    if let Err(e) = acc.handle_all(&mut frames, &mut |d| deltas.push(d)) {
        return (Err(e), deltas);
    }
    (acc.finish(), deltas)
}

fn delta(d: Value, finish: Value) -> Value {
    json!({"choices": [{"index": 0, "delta": d, "finish_reason": finish}]})
}

#[test]
fn nulls_and_odd_shapes_are_tolerated() {
    let (r, deltas) = assemble(&[
        json!({"choices": null, "usage": null}),
        json!({}),
        json!({"choices": [{"delta": null, "finish_reason": ""}]}),
        delta(
            json!({"content": null, "tool_calls": null, "role": "assistant"}),
            Value::Null,
        ),
        // A second choice is someone else's reply.
        json!({"choices": [{"index": 1, "delta": {"content": "other"}}]}),
        delta(json!({"content": "hi"}), Value::Null),
        json!({"usage": {"prompt_tokens": 9}}),
        json!({"usage": {"completion_tokens": 4, "prompt_tokens_details": null}}),
        delta(json!({}), json!("stop")),
    ]);
    let r = r.unwrap();
    assert_eq!(r.content, vec![Block::Text { text: "hi".into() }]);
    assert_eq!(r.stop_reason, StopReason::EndTurn);
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (9, 4));
    assert_eq!(
        deltas,
        vec![
            Delta::TextStart { index: 0 },
            Delta::Text {
                index: 0,
                text: "hi".into()
            }
        ]
    );
}

#[test]
fn tool_calls_without_index_or_id() {
    // Ollama-style: whole calls in one fragment each, no `index`, arguments as an object.
    let (r, _) = assemble(&[
        delta(
            json!({"tool_calls": [
                {"id": "a", "function": {"name": "f", "arguments": {"x": 1}}},
                {"id": "b", "function": {"name": "g", "arguments": "{\"y\":"}},
            ]}),
            Value::Null,
        ),
        // No id and no index: continues the last call.
        delta(
            json!({"tool_calls": [{"function": {"arguments": " 2}"}}]}),
            Value::Null,
        ),
        // An explicit index without an id: a generated id.
        delta(
            json!({"tool_calls": [{"index": 5, "function": {"name": "h", "arguments": "{}"}}]}),
            json!("tool_calls"),
        ),
    ]);
    let content = r.unwrap().content;
    assert_eq!(content.len(), 3, "{content:?}");
    assert_eq!(
        content[..2],
        [
            Block::ToolUse {
                id: "a".into(),
                name: "f".into(),
                input: json!({"x": 1})
            },
            Block::ToolUse {
                id: "b".into(),
                name: "g".into(),
                input: json!({"y": 2})
            },
        ]
    );
    assert!(
        matches!(&content[2], Block::ToolUse { id, name, .. } if id.starts_with("call_2_") && name == "h"),
        "{content:?}"
    );
}

#[test]
fn stream_errors_in_every_shape() {
    let cases = [
        (
            r#"{"error": {"message": "slow", "code": 429}}"#,
            Error::RateLimited {
                message: "slow".into(),
                retry_after: None,
            },
        ),
        (
            r#"{"object": "error", "message": "bad input", "code": "400"}"#,
            Error::Rejected {
                status: 400,
                message: "bad input".into(),
            },
        ),
        (
            r#"{"error": "model crashed"}"#,
            Error::Server {
                status: 500,
                message: "model crashed".into(),
            },
        ),
        (
            r#"{"error": {"message": "gpu fell off", "code": 502}}"#,
            Error::Server {
                status: 502,
                message: "gpu fell off".into(),
            },
        ),
        (
            "not json",
            Error::Server {
                status: 500,
                message: "not json".into(),
            },
        ),
    ];
    for (data, want) in cases {
        assert_eq!(stream_error(data), want, "{data}");
    }
}

#[test]
fn unparseable_chunks_and_runaway_calls_are_protocol_errors() {
    for bad in [json!([1, 2]), json!({"choices": [{"index": "zero"}]})] {
        let (r, _) = assemble(std::slice::from_ref(&bad));
        assert!(matches!(r, Err(Error::Protocol(_))), "{bad}: {r:?}");
    }
    let many: Vec<Value> = (0..=MAX_TOOL_CALLS as u32)
        .map(|i| delta(json!({"tool_calls": [{"index": i}]}), Value::Null))
        .collect();
    let (r, _) = assemble(&many);
    assert!(
        matches!(&r, Err(Error::Protocol(m)) if m.contains("tool calls")),
        "{r:?}"
    );
}
