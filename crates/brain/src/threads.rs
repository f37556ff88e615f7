//! Threads: the tools a coordinator uses to hand work to the agents of its roster, and the
//! events that carry messages between threads.
//!
//! A thread's effects are logged in one append: `start_thread` creates the thread, delivers
//! the task into its log and answers the call together, so a crash either did all of it or
//! none, and the call is simply made again. A worker's answer travels the same way when it
//! rests: its idle status, the message it sent and the message its parent received.

use agentd_models::ToolDef;
use agentd_session::{NewEvent, Private};
use agentd_wire::agent::SessionAgent;
use agentd_wire::{ContentBlock, EventBody, StopReason, ids};
use serde::Deserialize;

use crate::ThreadInfo;
use crate::context::{Fold, Reply};
use crate::tool_name::ToolName;

const START: &str = ToolName::START_THREAD;
const SEND: &str = ToolName::SEND_TO_THREAD;

/// The coordinator's tools, describing the agents it may start.
pub fn definitions(roster: &[&SessionAgent]) -> Vec<ToolDef> {
    let agents: Vec<String> = roster
        .iter()
        .map(|a| match &a.spec.description {
            Some(d) if !d.trim().is_empty() => format!("- {}: {}", a.spec.name, d.trim()),
            _ => format!("- {}", a.spec.name),
        })
        .collect();
    vec![
        ToolDef {
            name: START.into(),
            description: format!(
                "Start a worker agent in a thread of its own and give it a task. The worker has \
                 its own context and tools and shares your workspace; several run at once. The \
                 call returns at once with the thread's id; the worker's reply comes to you as a \
                 message when it finishes. Once you have started everything you need, end your \
                 turn: you are woken when all replies are in.\nAgents you can start:\n{}",
                agents.join("\n")
            ),
            input_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "agent": {"type": "string", "description": "Name of the agent to start."},
                    "message": {"type": "string", "description": "The task: everything the worker needs to know, since it sees nothing of your conversation."}
                },
                "required": ["agent", "message"]
            }),
        },
        ToolDef {
            name: SEND.into(),
            description: "Send a follow-up message to a worker thread you started. It keeps \
                          everything from its earlier work; its reply comes to you as a message."
                .into(),
            input_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "thread_id": {"type": "string", "description": "The id start_thread returned (sthr_...)."},
                    "message": {"type": "string"}
                },
                "required": ["thread_id", "message"]
            }),
        },
    ]
}

#[derive(Deserialize)]
struct StartInput {
    agent: String,
    message: String,
}

#[derive(Deserialize)]
struct SendInput {
    thread_id: String,
    message: String,
}

/// What a thread call logs, or why it cannot run (an error result for the model).
pub struct Planned {
    pub events: Vec<NewEvent>,
    /// The thread to wake once the events are durable.
    pub wake: String,
}

/// Plan `start_thread`: create the thread, send it the task, answer the call.
pub fn start(
    call_id: &str,
    input: &serde_json::Value,
    roster: &[&SessionAgent],
    session_id: &str,
    started: usize,
    limit: usize,
) -> Result<Planned, String> {
    let i: StartInput = serde_json::from_value(input.clone())
        .map_err(|e| format!("{START}: invalid input: {e}. Give `agent` and `message`."))?;
    let Some(agent) = roster.iter().find(|a| a.spec.name == i.agent) else {
        let names: Vec<&str> = roster.iter().map(|a| a.spec.name.as_str()).collect();
        return Err(format!(
            "{START}: no agent named {:?} is on your roster. Agents you can start: {}.",
            i.agent,
            names.join(", ")
        ));
    };
    if started >= limit {
        return Err(format!(
            "{START}: this session already has {started} threads, its limit. Send follow-ups to an existing thread with {SEND} instead."
        ));
    }
    let tid = ids::new(ids::Kind::Thread);
    let name = agent.spec.name.clone();
    let content = vec![ContentBlock::text(i.message)];
    let mut events = vec![
        NewEvent::new(EventBody::SessionThreadCreated {
            session_thread_id: tid.clone(),
            agent_name: name.clone(),
        })
        .with_private(Private::Thread {
            agent: Box::new((*agent).clone()),
        }),
    ];
    let coordinator = ids::primary_thread(session_id);
    events.extend(message(
        End {
            thread: &coordinator,
            agent: None,
        },
        End {
            thread: &tid,
            agent: Some(&name),
        },
        &tid,
        content,
    ));
    events.push(result(
        call_id,
        format!(
            "Started thread {tid} running agent `{name}`. Its reply will come to you as a message; end your turn when you have nothing else to do, and you will be woken when every thread you started has replied."
        ),
    ));
    Ok(Planned { events, wake: tid })
}

/// Plan `send_to_thread`: a follow-up to a thread this one started.
pub fn send(
    call_id: &str,
    input: &serde_json::Value,
    f: &Fold,
    session_id: &str,
    archived: impl Fn(&str) -> bool,
) -> Result<Planned, String> {
    let i: SendInput = serde_json::from_value(input.clone())
        .map_err(|e| format!("{SEND}: invalid input: {e}. Give `thread_id` and `message`."))?;
    let Some(child) = f.children.iter().find(|c| c.id == i.thread_id) else {
        let known: Vec<&str> = f.children.iter().map(|c| c.id.as_str()).collect();
        return Err(format!(
            "{SEND}: {:?} is not a thread you started. Your threads: {}.",
            i.thread_id,
            if known.is_empty() {
                "none yet".to_owned()
            } else {
                known.join(", ")
            }
        ));
    };
    if archived(&child.id) {
        return Err(format!(
            "{SEND}: thread {} is archived and takes no more messages; start a new one.",
            child.id
        ));
    }
    let content = vec![ContentBlock::text(i.message)];
    let coordinator = ids::primary_thread(session_id);
    let mut events = message(
        End {
            thread: &coordinator,
            agent: None,
        },
        End {
            thread: &child.id,
            agent: Some(&child.agent_name),
        },
        &child.id,
        content,
    )
    .to_vec();
    events.push(result(
        call_id,
        format!(
            "Sent to thread {} (agent `{}`). Its reply will come to you as a message.",
            child.id, child.agent_name
        ),
    ));
    Ok(Planned {
        events,
        wake: child.id.clone(),
    })
}

/// One side of a message between threads. `agent` is None for the coordinator (the session's
/// own agent), as the wire leaves its name out.
struct End<'a> {
    thread: &'a str,
    agent: Option<&'a str>,
}

/// A message from one thread to another: sent in the sender's log (the append's), received
/// in `to_log`, the receiver's, in the same append.
fn message(from: End<'_>, to: End<'_>, to_log: &str, content: Vec<ContentBlock>) -> [NewEvent; 2] {
    [
        NewEvent::new(EventBody::AgentThreadMessageSent {
            to_session_thread_id: to.thread.to_owned(),
            to_agent_name: to.agent.map(str::to_owned),
            content: content.clone(),
        }),
        NewEvent::new(EventBody::AgentThreadMessageReceived {
            from_session_thread_id: from.thread.to_owned(),
            from_agent_name: from.agent.map(str::to_owned),
            content,
        })
        .to(to_log),
    ]
}

fn result(call_id: &str, text: String) -> NewEvent {
    NewEvent::new(EventBody::AgentToolResult {
        tool_use_id: call_id.to_owned(),
        content: Some(vec![ContentBlock::text(text)]),
        is_error: Some(false),
    })
}

/// The parent's view of a worker starting a turn.
pub fn running(t: &ThreadInfo) -> NewEvent {
    NewEvent::new(EventBody::SessionThreadStatusRunning {
        session_thread_id: t.id.clone(),
        agent_name: t.agent_name.clone(),
    })
    .to(t.parent_log.clone())
}

/// A worker at rest: the parent receives its reply, unless it waits on the user, and sees its
/// status. These go before the worker's own idle status, as the message is sent before the
/// worker rests.
pub fn rest(t: &ThreadInfo, reason: &StopReason, reply: &Reply) -> Vec<NewEvent> {
    let mut out = Vec::new();
    if !matches!(reason, StopReason::RequiresAction { .. }) {
        out.extend(message(
            End {
                thread: &t.id,
                agent: Some(&t.agent_name),
            },
            End {
                thread: &t.parent_thread_id,
                agent: None,
            },
            &t.parent_log,
            vec![ContentBlock::text(reply_text(reply))],
        ));
    }
    out.push(
        NewEvent::new(EventBody::SessionThreadStatusIdle {
            session_thread_id: t.id.clone(),
            agent_name: t.agent_name.clone(),
            stop_reason: reason.clone(),
            stop_details: None,
        })
        .to(t.parent_log.clone()),
    );
    out
}

/// The session's copy of a worker's event: the same event, marked with the worker's thread.
pub fn copy_to_session(e: &NewEvent, t: &ThreadInfo) -> NewEvent {
    let mut body = e.body.clone();
    body.set_copied_from(Some(t.id.clone()));
    NewEvent {
        id: e.id.clone(),
        body,
        private: None,
        to: Some(t.session_id.clone()),
    }
}

fn reply_text(r: &Reply) -> String {
    match (&r.failure, r.interrupted, r.text.trim().is_empty()) {
        (Some(why), _, true) => format!("The thread failed: {why}"),
        (Some(why), _, false) => format!(
            "The thread failed: {why}\nWhat it had written before failing:\n{}",
            r.text
        ),
        (None, true, true) => "The thread was interrupted before it replied.".into(),
        (None, true, false) => format!("The thread was interrupted. Its last words:\n{}", r.text),
        (None, false, true) => "The thread finished without a message.".into(),
        (None, false, false) => r.text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_says_what_happened_to_the_work() {
        let ok = Reply {
            text: "42".into(),
            ..Reply::default()
        };
        assert_eq!(reply_text(&ok), "42");
        let failed = Reply {
            failure: Some("upstream said 400".into()),
            ..Reply::default()
        };
        assert_eq!(reply_text(&failed), "The thread failed: upstream said 400");
        let cut = Reply {
            interrupted: true,
            ..Reply::default()
        };
        assert!(reply_text(&cut).contains("interrupted"));
        assert!(reply_text(&Reply::default()).contains("without a message"));
    }
}
