//! The real offline default, SmolLM2-135M-Instruct, run on this machine's CPU. The model file
//! must be there: `agentd models pull smollm2` (scripts/test.sh does it) puts it in the
//! default models directory, or set AGENTD_MODELS_DIR.

use std::path::PathBuf;
use std::time::Duration;

use agentd_local::{Local, fetch};
use agentd_models::{Block, Delta, LocalModels, Message, Model, Purpose, Request, Role, ToolDef};

fn models_dir() -> PathBuf {
    std::env::var_os("AGENTD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(agentd_local::default_models_dir)
}

/// One test at a time: each uses every core, and together they would crawl.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn local() -> Local {
    let dir = models_dir();
    let l = Local::new(&dir, 2048);
    if let Err(e) = l.check("smollm2") {
        panic!(
            "{e}\n(the model is {} in {})",
            fetch::SMOLLM2.file,
            dir.display()
        );
    }
    l
}

fn ask(text: &str, tools: Vec<ToolDef>) -> Request {
    Request {
        model: "smollm2".into(),
        system: Some("You are a helpful assistant. Answer briefly.".into()),
        messages: vec![Message {
            role: Role::User,
            content: vec![Block::Text { text: text.into() }],
        }],
        tools,
        max_tokens: 64,
        purpose: Purpose::Turn,
    }
}

#[tokio::test]
async fn it_answers_a_question_and_streams_what_it_answers() {
    let _one = SERIAL.lock().await;
    let l = local();
    let mut streamed = String::new();
    let (resp, timing) = l
        .timed(&ask("What is the capital of France?", vec![]), &mut |d| {
            if let Delta::Text { text, .. } = d {
                streamed.push_str(&text);
            }
        })
        .await
        .unwrap();
    let text = match &resp.content[..] {
        [Block::Text { text }] => text.clone(),
        other => panic!("{other:?}"),
    };
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(streamed.trim(), text);
    assert!(resp.usage.input_tokens > 10 && resp.usage.output_tokens > 0);
    assert!(resp.usage.output_tokens <= 64);
    assert!(
        timing.load > Duration::ZERO,
        "the first call loads the model"
    );
    // The second call finds it loaded.
    let (_, again) = l.timed(&ask("Say hi.", vec![]), &mut |_| {}).await.unwrap();
    assert_eq!(again.load, Duration::ZERO);
}

#[tokio::test]
async fn whatever_it_writes_with_tools_on_offer_comes_back_as_blocks() {
    let _one = SERIAL.lock().await;
    let l = local();
    let tools = vec![ToolDef {
        name: "get_weather".into(),
        description: "Current weather for a city.".into(),
        input_schema: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    }];
    for q in [
        "What is the weather in Paris? Use the get_weather tool.",
        "Reply with a tool call to get_weather for Oslo.",
        "{\"name\": ",
    ] {
        let resp = l
            .complete(&ask(q, tools.clone()), &mut |_| {})
            .await
            .unwrap();
        assert!(!resp.content.is_empty(), "{q}");
        for b in &resp.content {
            match b {
                Block::Text { .. } => {}
                Block::ToolUse { name, input, .. } => {
                    assert_eq!(name, "get_weather");
                    assert!(input.is_object());
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_tool_result_larger_than_the_window_is_cut_not_refused() {
    let _one = SERIAL.lock().await;
    let l = local();
    let big = (0..4000)
        .map(|i| format!("line {i}: some output"))
        .collect::<Vec<_>>()
        .join("\n");
    let req = Request {
        messages: vec![
            Message {
                role: Role::User,
                content: vec![Block::Text {
                    text: "List the files.".into(),
                }],
            },
            Message {
                role: Role::Assistant,
                content: vec![Block::ToolUse {
                    id: "t1".into(),
                    name: "bash".into(),
                    input: serde_json::json!({"command": "ls"}),
                }],
            },
            Message {
                role: Role::User,
                content: vec![
                    Block::ToolResult {
                        tool_use_id: "t1".into(),
                        content: vec![Block::Text { text: big }],
                        is_error: false,
                    },
                    Block::Text {
                        text: "How many lines were there?".into(),
                    },
                ],
            },
        ],
        ..ask("", vec![])
    };
    let resp = l.complete(&req, &mut |_| {}).await.unwrap();
    assert!(resp.usage.input_tokens < 2048 && resp.usage.output_tokens > 0);
}

#[tokio::test]
async fn a_prompt_longer_than_the_window_drops_the_oldest_turns() {
    let _one = SERIAL.lock().await;
    let l = local();
    let filler = "The quick brown fox jumps over the lazy dog. ".repeat(60);
    let mut messages = Vec::new();
    for i in 0..12 {
        messages.push(Message {
            role: Role::User,
            content: vec![Block::Text {
                text: format!("{i}: {filler}"),
            }],
        });
        messages.push(Message {
            role: Role::Assistant,
            content: vec![Block::Text { text: "OK.".into() }],
        });
    }
    messages.push(Message {
        role: Role::User,
        content: vec![Block::Text {
            text: "Say the word yes.".into(),
        }],
    });
    let req = Request {
        messages,
        ..ask("", vec![])
    };
    let resp = l.complete(&req, &mut |_| {}).await.unwrap();
    // About 7,000 tokens of history in a 2,048-token window: it still answers.
    assert!(
        resp.usage.input_tokens < 2048,
        "{}",
        resp.usage.input_tokens
    );
    assert!(resp.usage.output_tokens > 0);
}

#[tokio::test]
async fn dropping_the_call_stops_the_generation() {
    let _one = SERIAL.lock().await;
    let l = local();
    let mut long = ask("Write a very long story about a dragon.", vec![]);
    long.max_tokens = 4000;
    // Cut the call short, as an interrupt does.
    let cut =
        tokio::time::timeout(Duration::from_millis(300), l.complete(&long, &mut |_| {})).await;
    assert!(cut.is_err(), "a 4,000-token story took under 300 ms");
    // The generation itself stops at its next token, not at the end of the story (minutes
    // away); the bound is loose because a token, or the prompt's batch, can take seconds on a
    // loaded 2-core machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while l.running() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped generation is still running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let next = l.complete(&ask("Say hi.", vec![]), &mut |_| {}).await;
    assert!(next.is_ok());
}
