use agentd_session::{NewEvent, StoredEvent};
use agentd_wire::event::{Permission, SessionErrorKind, SessionErrorObject};
use agentd_wire::usage::ModelUsage;
use agentd_wire::{ContentBlock, Event, EventBody, StopReason};

use super::*;

fn log(bodies: Vec<EventBody>) -> Vec<StoredEvent> {
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let n = NewEvent::new(body);
            StoredEvent {
                seq: i as u64 + 1,
                event: Event {
                    id: format!("sevt_{i}"),
                    processed_at: chrono::Utc::now(),
                    body: n.body,
                },
                private: None,
            }
        })
        .collect()
}

fn user(t: &str) -> EventBody {
    EventBody::UserMessage {
        content: vec![ContentBlock::text(t)],
    }
}

fn end() -> EventBody {
    EventBody::SpanModelRequestEnd {
        model_request_start_id: "x".into(),
        is_error: None,
        model_usage: ModelUsage {
            input_tokens: 3,
            output_tokens: 2,
            ..Default::default()
        },
    }
}

#[test]
fn a_new_message_calls_the_model() {
    let f = fold(&log(vec![user("hi"), EventBody::SessionStatusRunning {}]));
    assert_eq!(f.next, Next::CallModel { open_span: None });
    assert_eq!(f.messages.len(), 1);
    assert_eq!(f.tail, 2);
}

#[test]
fn a_logged_start_without_end_is_retried_under_the_same_span() {
    let f = fold(&log(vec![user("hi"), EventBody::SpanModelRequestStart {}]));
    assert_eq!(
        f.next,
        Next::CallModel {
            open_span: Some("sevt_1".into())
        }
    );
}

#[test]
fn a_request_made_again_knows_a_message_arrived_after_it_began() {
    let before = fold(&log(vec![user("one"), EventBody::SpanModelRequestStart {}]));
    assert!(!before.input_since_request);
    let f = fold(&log(vec![
        user("one"),
        EventBody::SpanModelRequestStart {},
        user("two"),
    ]));
    assert_eq!(
        f.next,
        Next::CallModel {
            open_span: Some("sevt_1".into())
        }
    );
    // The request is made again as it was, without "two"; its response must not rest.
    assert_eq!(f.messages.len(), 1);
    assert!(f.input_since_request);
}

#[test]
fn a_message_during_a_request_calls_the_model_again() {
    let f = fold(&log(vec![
        user("one"),
        EventBody::SpanModelRequestStart {},
        user("two"),
        EventBody::AgentMessage {
            content: vec![ContentBlock::text("reply")],
        },
        end(),
    ]));
    assert_eq!(f.next, Next::CallModel { open_span: None });
    assert_eq!(f.usage.input_tokens, 3);
    // The message that arrived mid-request follows the reply: the next request ends with it.
    let roles: Vec<Role> = f.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
    assert!(matches!(&f.messages[2].content[0], Block::Text { text } if text == "two"));
}

#[test]
fn calls_in_a_response_that_lands_after_an_interrupt_never_run() {
    let f = fold(&log(vec![
        user("go"),
        EventBody::SpanModelRequestStart {},
        EventBody::UserInterrupt {
            session_thread_id: None,
        },
        EventBody::AgentToolUse {
            name: "bash".into(),
            input: Default::default(),
            evaluated_permission: Some(agentd_wire::event::Permission::Allow),
            session_thread_id: None,
        },
        end(),
    ]));
    let Next::RunTools(work) = &f.next else {
        panic!("{:?}", f.next)
    };
    assert!(matches!(&work[0].action, ToolAction::Deny(why) if why.contains("interrupted")));
}

#[test]
fn custom_tool_use_waits_for_its_result_then_continues() {
    let mut events = vec![
        user("weather?"),
        EventBody::SpanModelRequestStart {},
        EventBody::AgentCustomToolUse {
            name: "get_weather".into(),
            input: Default::default(),
            session_thread_id: None,
        },
        end(),
    ];
    let f = fold(&log(events.clone()));
    assert_eq!(
        f.next,
        Next::Rest(StopReason::RequiresAction {
            event_ids: vec!["sevt_2".into()]
        })
    );
    events.push(EventBody::UserCustomToolResult {
        custom_tool_use_id: "sevt_2".into(),
        content: Some(vec![ContentBlock::text("sunny")]),
        is_error: None,
        session_thread_id: None,
    });
    let f = fold(&log(events));
    assert_eq!(f.next, Next::CallModel { open_span: None });
    let last = f.messages.last().unwrap();
    assert_eq!(last.role, Role::User);
    assert!(
        matches!(&last.content[0], Block::ToolResult { tool_use_id, is_error: false, .. } if tool_use_id == "sevt_2")
    );
}

#[test]
fn interrupt_rests_and_answers_open_tools_with_an_error() {
    let f = fold(&log(vec![
        user("go"),
        EventBody::SpanModelRequestStart {},
        EventBody::AgentCustomToolUse {
            name: "t".into(),
            input: Default::default(),
            session_thread_id: None,
        },
        end(),
        EventBody::UserInterrupt {
            session_thread_id: None,
        },
    ]));
    assert_eq!(f.next, Next::Rest(StopReason::EndTurn));
    let last = f.messages.last().unwrap();
    assert!(matches!(
        &last.content[0],
        Block::ToolResult { is_error: true, .. }
    ));
}

#[test]
fn exhausted_retries_rest_with_that_reason_until_the_user_speaks() {
    let err = EventBody::SessionError {
        error: SessionErrorObject {
            kind: SessionErrorKind::ModelOverloadedError,
            message: "overloaded".into(),
            retry_status: agentd_wire::event::RetryStatus::Exhausted,
            mcp_server_name: None,
        },
    };
    let mut events = vec![user("hi"), EventBody::SpanModelRequestStart {}, err, end()];
    assert_eq!(
        fold(&log(events.clone())).next,
        Next::Rest(StopReason::RetriesExhausted)
    );
    events.push(user("again"));
    assert_eq!(fold(&log(events)).next, Next::CallModel { open_span: None });
}

#[test]
fn roles_alternate_even_when_the_model_said_nothing() {
    let f = fold(&log(vec![
        user("a"),
        EventBody::SpanModelRequestStart {},
        end(),
        user("b"),
    ]));
    assert_eq!(f.messages.len(), 1);
    assert_eq!(f.messages[0].content.len(), 2);
}

fn created(tid: &str) -> EventBody {
    EventBody::SessionThreadCreated {
        session_thread_id: tid.into(),
        agent_name: "worker".into(),
    }
}

fn reply_from(tid: &str, text: &str) -> EventBody {
    EventBody::AgentThreadMessageReceived {
        from_session_thread_id: tid.into(),
        from_agent_name: Some("worker".into()),
        content: vec![ContentBlock::text(text)],
    }
}

fn start_call() -> EventBody {
    EventBody::AgentToolUse {
        name: "start_thread".into(),
        input: serde_json::Map::new(),
        evaluated_permission: Some(agentd_wire::event::Permission::Allow),
        session_thread_id: None,
    }
}

fn result_for(id: &str) -> EventBody {
    EventBody::AgentToolResult {
        tool_use_id: id.into(),
        content: Some(vec![ContentBlock::text("started")]),
        is_error: Some(false),
    }
}

fn said(t: &str) -> EventBody {
    EventBody::AgentMessage {
        content: vec![ContentBlock::text(t)],
    }
}

/// A coordinator that started two threads (calls sevt_3, sevt_4) and ended its turn.
fn coordinator_waiting() -> Vec<EventBody> {
    vec![
        user("split it"),
        EventBody::SessionStatusRunning {},
        EventBody::SpanModelRequestStart {},
        start_call(),
        start_call(),
        end(),
        created("sthr_a"),
        result_for("sevt_3"),
        created("sthr_b"),
        result_for("sevt_4"),
        EventBody::SpanModelRequestStart {},
        said("waiting"),
        end(),
    ]
}

#[test]
fn a_coordinator_waits_until_every_thread_has_replied() {
    let mut events = coordinator_waiting();
    assert_eq!(fold(&log(events.clone())).next, Next::Wait);
    events.push(reply_from("sthr_a", "A done"));
    let f = fold(&log(events.clone()));
    assert_eq!(f.next, Next::Wait, "one thread is still at work");
    assert_eq!(f.busy_children().count(), 1);
    events.push(reply_from("sthr_b", "B done"));
    let f = fold(&log(events));
    assert_eq!(f.next, Next::CallModel { open_span: None });
    // Both replies are the user's side of the next turn, in arrival order.
    let last = f.messages.last().unwrap();
    assert_eq!(last.role, Role::User);
    let texts: Vec<String> = last
        .content
        .iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts.len(), 2);
    assert!(texts[0].contains("sthr_a") && texts[0].ends_with("A done"));
    assert!(texts[1].ends_with("B done"));
}

#[test]
fn a_reply_never_lands_between_a_tool_call_and_its_result() {
    // Thread a answers before the second start_thread call has its result.
    let events = vec![
        user("split it"),
        EventBody::SpanModelRequestStart {},
        start_call(),
        start_call(),
        end(),
        created("sthr_a"),
        result_for("sevt_2"),
        reply_from("sthr_a", "A done"),
        created("sthr_b"),
        result_for("sevt_3"),
    ];
    let f = fold(&log(events));
    let last = f.messages.last().unwrap();
    let kinds: Vec<&str> = last
        .content
        .iter()
        .map(|b| match b {
            Block::ToolResult { .. } => "result",
            Block::Text { .. } => "text",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["result", "result", "text"]);
    assert_eq!(f.next, Next::CallModel { open_span: None });
}

#[test]
fn after_an_interrupt_replies_start_no_turn_and_the_coordinator_rests_once_threads_do() {
    let mut events = coordinator_waiting();
    events.push(EventBody::UserInterrupt {
        session_thread_id: None,
    });
    assert_eq!(fold(&log(events.clone())).next, Next::Wait);
    events.push(reply_from("sthr_a", "interrupted"));
    events.push(reply_from("sthr_b", "interrupted"));
    assert_eq!(
        fold(&log(events)).next,
        Next::Rest(StopReason::EndTurn),
        "the replies wait for the user's next message"
    );
}

#[test]
fn a_workers_reply_is_what_it_said_since_its_last_reply() {
    let task = |t: &str| EventBody::AgentThreadMessageReceived {
        from_session_thread_id: "sthr_primary".into(),
        from_agent_name: None,
        content: vec![ContentBlock::text(t)],
    };
    let replied = EventBody::AgentThreadMessageSent {
        to_session_thread_id: "sthr_primary".into(),
        to_agent_name: None,
        content: vec![ContentBlock::text("zero")],
    };
    // A first task answered; then a second, and a follow-up before the worker answered it.
    let f = fold(&log(vec![
        task("first"),
        EventBody::SpanModelRequestStart {},
        said("zero"),
        end(),
        replied,
        task("second"),
        EventBody::SpanModelRequestStart {},
        said("one"),
        end(),
        task("and also"),
        EventBody::SpanModelRequestStart {},
        said("two"),
        end(),
    ]));
    assert_eq!(f.reply.text, "one\ntwo");
    assert!(f.owes_reply);
    assert_eq!(f.next, Next::Rest(StopReason::EndTurn));
    let failed = fold(&log(vec![
        task("third"),
        EventBody::SpanModelRequestStart {},
        EventBody::SessionError {
            error: SessionErrorObject {
                kind: SessionErrorKind::ModelRequestFailedError,
                message: "bad request".into(),
                retry_status: agentd_wire::event::RetryStatus::Terminal,
                mcp_server_name: None,
            },
        },
        end(),
    ]));
    assert_eq!(failed.reply.failure.as_deref(), Some("bad request"));
}

fn mcp_call(permission: Permission) -> EventBody {
    let mut input = serde_json::Map::new();
    input.insert("q".into(), serde_json::json!("x"));
    EventBody::AgentMcpToolUse {
        name: "lookup".into(),
        mcp_server_name: "crm".into(),
        input,
        evaluated_permission: Some(permission),
        session_thread_id: None,
    }
}

fn mcp_name() -> ToolName {
    ToolName::Mcp {
        server: "crm".into(),
        tool: "lookup".into(),
    }
}

#[test]
fn an_allowed_mcp_call_runs_and_the_model_knows_it_by_its_offered_name() {
    let f = fold(&log(vec![
        user("hi"),
        EventBody::SpanModelRequestStart {},
        mcp_call(Permission::Allow),
        end(),
    ]));
    let Next::RunTools(work) = &f.next else {
        panic!("{:?}", f.next)
    };
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].id, "sevt_2");
    assert_eq!(work[0].name, mcp_name());
    assert_eq!(work[0].action, ToolAction::Run);
    let Block::ToolUse { name, .. } = &f.messages[1].content[0] else {
        panic!("{:?}", f.messages[1])
    };
    assert_eq!(name, "mcp__crm__lookup");
}

#[test]
fn an_mcp_call_started_before_a_crash_is_reported_interrupted_never_run_again() {
    let f = fold(&log(vec![
        user("hi"),
        EventBody::SpanModelRequestStart {},
        mcp_call(Permission::Allow),
        end(),
        EventBody::ToolStarted {
            tool_use_id: "sevt_2".into(),
        },
    ]));
    let Next::RunTools(work) = &f.next else {
        panic!("{:?}", f.next)
    };
    assert_eq!(work[0].name, mcp_name());
    assert_eq!(work[0].action, ToolAction::Interrupted);
}

#[test]
fn an_mcp_call_that_asks_waits_for_the_user_then_its_result_calls_the_model() {
    let mut events = vec![
        user("hi"),
        EventBody::SpanModelRequestStart {},
        mcp_call(Permission::Ask),
        end(),
    ];
    let f = fold(&log(events.clone()));
    assert_eq!(
        f.next,
        Next::Rest(StopReason::RequiresAction {
            event_ids: vec!["sevt_2".into()]
        })
    );
    events.push(EventBody::UserToolConfirmation {
        tool_use_id: "sevt_2".into(),
        result: agentd_wire::event::Confirmation::Allow,
        deny_message: None,
        session_thread_id: None,
    });
    let f = fold(&log(events.clone()));
    let Next::RunTools(work) = &f.next else {
        panic!("{:?}", f.next)
    };
    assert_eq!(work[0].action, ToolAction::Run);
    events.push(EventBody::AgentMcpToolResult {
        mcp_tool_use_id: "sevt_2".into(),
        content: Some(vec![ContentBlock::text("found")]),
        is_error: Some(false),
    });
    let f = fold(&log(events));
    assert_eq!(f.next, Next::CallModel { open_span: None });
    let Block::ToolResult { tool_use_id, .. } = &f.messages[2].content[0] else {
        panic!("{:?}", f.messages[2])
    };
    assert_eq!(tool_use_id, "sevt_2");
}
