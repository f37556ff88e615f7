//! What a client's events do to a session: which log each lands in, what else is appended
//! with them, and which logs must wake. Pure: the API parses and validates, asks `deliver`,
//! appends each delivery, then wakes what it says.

use agentd_wire::event::UserEvent;
use agentd_wire::{EventBody, SessionStatus};

use crate::{Guard, NewEvent, Private, Refusal};

/// A client's event with the log it goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Addressed {
    pub event: UserEvent,
    /// Data copied into the log with it (a file rubric's text).
    pub private: Option<Private>,
    pub log_id: String,
}

/// A worker thread of the session, as delivery needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub struct Thread {
    pub id: String,
    pub agent_name: String,
    pub status: SessionStatus,
    pub archived: bool,
}

impl Thread {
    /// Whether a session-wide interrupt still has something to stop there.
    fn reachable(&self) -> bool {
        !self.archived && self.status != SessionStatus::Terminated
    }
}

/// What a log must do once a delivery is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Run: there is something new for the agent.
    Notify(String),
    /// Stop what it is doing.
    Interrupt(String),
}

/// One append: a run of the client's events bound for the same log, and what goes with them.
pub struct Delivery {
    pub log_id: String,
    /// How many of the events this append stores are the client's own; they come first.
    pub sent: usize,
    pub guard: Guard,
    pub wake: Vec<Wake>,
}

/// The thread an event names, normalised: naming the primary thread is naming none. An
/// answer naming no thread goes where the call it answers was made: `origin`, the worker
/// thread whose call was copied onto the session's log, if it was one.
pub fn address(session_id: &str, e: &mut UserEvent, origin: Option<&str>) {
    let thread = match e {
        UserEvent::CustomToolResult(p) => &mut p.session_thread_id,
        UserEvent::ToolConfirmation(p) => &mut p.session_thread_id,
        UserEvent::ToolResult(p) => &mut p.session_thread_id,
        _ => return,
    };
    if thread.as_deref() == Some(agentd_wire::ids::primary_thread(session_id).as_str()) {
        *thread = None;
    }
    if thread.is_none() {
        *thread = origin.map(str::to_owned);
    }
}

/// The call whose origin `address` needs: that of an answer naming no thread (or the primary
/// one). An answer naming a worker thread goes there without a lookup.
pub fn unaddressed_call<'a>(session_id: &str, e: &'a UserEvent) -> Option<&'a str> {
    let answer = answer_of(e)?;
    match e.thread() {
        Some(t) if t != agentd_wire::ids::primary_thread(session_id) => None,
        _ => Some(answer.call_id),
    }
}

/// What an answering event answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer<'a> {
    /// The id of the call it names.
    pub call_id: &'a str,
    /// The request field that names it.
    pub field: &'static str,
    /// The type of event it must name.
    pub call_type: &'static str,
}

/// What `e` answers, if it answers a call.
pub fn answer_of(e: &UserEvent) -> Option<Answer<'_>> {
    match e {
        UserEvent::CustomToolResult(p) => Some(Answer {
            call_id: &p.custom_tool_use_id,
            field: "custom_tool_use_id",
            call_type: "agent.custom_tool_use",
        }),
        UserEvent::ToolConfirmation(p) => Some(Answer {
            call_id: &p.tool_use_id,
            field: "tool_use_id",
            call_type: "agent.tool_use",
        }),
        UserEvent::ToolResult(p) => Some(Answer {
            call_id: &p.tool_use_id,
            field: "tool_use_id",
            call_type: "agent.tool_use",
        }),
        _ => None,
    }
}

/// Why an answer cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswerable {
    /// What it names is not a call of the kind it answers, in the log it goes to.
    NoSuchCall,
    /// A confirmation for a call that did not ask for one.
    NotAsking,
}

/// Whether `e` may answer `call`, the event its id names in the log it goes to.
pub fn check_answer(e: &UserEvent, call: Option<&EventBody>) -> Result<(), Unanswerable> {
    let Some(answer) = answer_of(e) else {
        return Ok(());
    };
    // A confirmation answers an MCP call that asks as it answers a built-in one.
    let mcp_confirmation = |c: &EventBody| {
        matches!(e, UserEvent::ToolConfirmation(_)) && c.type_name() == "agent.mcp_tool_use"
    };
    let Some(call) = call.filter(|c| c.type_name() == answer.call_type || mcp_confirmation(c))
    else {
        return Err(Unanswerable::NoSuchCall);
    };
    match (e, call) {
        (
            UserEvent::ToolConfirmation(_),
            EventBody::AgentToolUse {
                evaluated_permission,
                ..
            }
            | EventBody::AgentMcpToolUse {
                evaluated_permission,
                ..
            },
        ) if *evaluated_permission != Some(agentd_wire::event::Permission::Ask) => {
            Err(Unanswerable::NotAsking)
        }
        _ => Ok(()),
    }
}

/// A request's events as the appends `deliver` makes of them: consecutive events for the
/// same log, in the order sent.
pub fn runs(events: Vec<Addressed>) -> Vec<Vec<Addressed>> {
    let mut out: Vec<Vec<Addressed>> = Vec::new();
    for e in events {
        match out.last_mut() {
            Some(run) if run[0].log_id == e.log_id => run.push(e),
            _ => out.push(vec![e]),
        }
    }
    out
}

/// Split a request's events into appends, in the order sent: consecutive events for the same
/// log go in one append. `threads` are the session's worker threads.
pub fn deliver(session_id: &str, events: Vec<Addressed>, threads: &[Thread]) -> Vec<Delivery> {
    let reachable: Vec<String> = threads
        .iter()
        .filter(|t| t.reachable())
        .map(|t| t.id.clone())
        .collect();
    let mut out = Vec::new();
    let mut events = events.into_iter().peekable();
    while let Some(first) = events.next() {
        let log_id = first.log_id;
        let mut group = vec![(first.event, first.private)];
        while let Some(next) = events.next_if(|e| e.log_id == log_id) {
            group.push((next.event, next.private));
        }
        let target = match threads.iter().find(|t| t.id == log_id) {
            Some(t) => Target::Thread {
                session: session_id,
                tid: &t.id,
                agent_name: &t.agent_name,
            },
            None => Target::Session {
                threads: &reachable,
            },
        };
        out.push(delivery(log_id, group, target));
    }
    out
}

/// A new session's initial events: one append to its own log, made before its id is known.
/// Returns the guard and whether the session must wake.
pub fn initial(events: Vec<(UserEvent, Option<Private>)>) -> (Guard, bool) {
    let wakes = events
        .iter()
        .any(|(e, _)| !matches!(e, UserEvent::Interrupt(_)));
    let d = delivery(String::new(), events, Target::Session { threads: &[] });
    (d.guard, wakes)
}

/// Where a group of a client's events goes.
enum Target<'a> {
    /// The session's own log. A session-wide interrupt (one naming no thread) reaches
    /// `threads` too, in the same append.
    Session { threads: &'a [String] },
    /// A worker thread's log: the session's log gets a copy of each answer to a call it
    /// showed, and sees the thread start running.
    Thread {
        session: &'a str,
        tid: &'a str,
        agent_name: &'a str,
    },
}

fn delivery(
    log_id: String,
    events: Vec<(UserEvent, Option<Private>)>,
    target: Target<'_>,
) -> Delivery {
    let is_interrupt = |e: &UserEvent| matches!(e, UserEvent::Interrupt(_));
    let wakes = events.iter().any(|(e, _)| !is_interrupt(e));
    let interrupts = events.iter().any(|(e, _)| is_interrupt(e));
    let session_wide = events
        .iter()
        .any(|(e, _)| matches!(e, UserEvent::Interrupt(p) if p.session_thread_id.is_none()));
    let sent = events.len();
    let mut batch = Vec::with_capacity(sent);
    let mut extra = Vec::new();
    for (e, private) in events {
        let mut body = EventBody::from(e);
        let own = match &target {
            Target::Thread { session, .. } if body.copied_from().is_some() => {
                let copy = NewEvent::new(body.clone()).to(*session);
                body.set_copied_from(None);
                let own = NewEvent {
                    id: copy.id.clone(),
                    ..NewEvent::new(body)
                };
                extra.push(copy);
                own
            }
            Target::Session { threads } => {
                // Only copies of a worker's events are marked with a thread on this log.
                let this_is_session_wide = matches!(
                    &body,
                    EventBody::UserInterrupt {
                        session_thread_id: None
                    }
                );
                body.set_copied_from(None);
                if this_is_session_wide {
                    extra.extend(threads.iter().map(|t| {
                        NewEvent::new(EventBody::UserInterrupt {
                            session_thread_id: None,
                        })
                        .to(t.clone())
                    }));
                }
                NewEvent::new(body)
            }
            Target::Thread { .. } => NewEvent::new(body),
        };
        batch.push(NewEvent { private, ..own });
    }
    let running = match &target {
        Target::Session { .. } => vec![NewEvent::new(EventBody::SessionStatusRunning {})],
        Target::Thread {
            session,
            tid,
            agent_name,
        } => vec![
            NewEvent::new(EventBody::SessionStatusRunning {}),
            NewEvent::new(EventBody::SessionThreadStatusRunning {
                session_thread_id: (*tid).to_owned(),
                agent_name: (*agent_name).to_owned(),
            })
            .to(*session),
        ],
    };
    let mut wake = Vec::new();
    if interrupts {
        wake.push(Wake::Interrupt(log_id.clone()));
        if let Target::Session { threads } = &target
            && session_wide
        {
            wake.extend(threads.iter().cloned().map(Wake::Interrupt));
        }
    } else if wakes {
        wake.push(Wake::Notify(log_id.clone()));
    }
    let guard: Guard = Box::new(move |head| {
        if head.status == SessionStatus::Terminated {
            return Err(Refusal::Terminated);
        }
        if wakes && head.status != SessionStatus::Running {
            batch.extend(running);
        }
        batch.extend(extra);
        Ok(batch)
    });
    Delivery {
        log_id,
        sent,
        guard,
        wake,
    }
}

#[cfg(test)]
mod tests {
    use agentd_wire::event::{CustomToolResultParams, InterruptParams, MessageParams};

    use super::*;
    use crate::Head;

    fn message() -> UserEvent {
        UserEvent::Message(MessageParams {
            content: vec![agentd_wire::ContentBlock::text("hi")],
        })
    }

    fn interrupt(thread: Option<&str>) -> UserEvent {
        UserEvent::Interrupt(InterruptParams {
            session_thread_id: thread.map(str::to_owned),
        })
    }

    fn to(log: &str, event: UserEvent) -> Addressed {
        Addressed {
            event,
            private: None,
            log_id: log.into(),
        }
    }

    fn thread(id: &str, status: SessionStatus, archived: bool) -> Thread {
        Thread {
            id: id.into(),
            agent_name: "worker".into(),
            status,
            archived,
        }
    }

    fn run(d: Delivery, status: SessionStatus) -> Vec<NewEvent> {
        (d.guard)(&Head {
            status,
            last_seq: 3,
            holder: None,
        })
        .unwrap()
    }

    fn types(events: &[NewEvent]) -> Vec<(&'static str, Option<&str>)> {
        events
            .iter()
            .map(|e| (e.body.type_name(), e.to.as_deref()))
            .collect()
    }

    #[test]
    fn a_message_starts_an_idle_session_and_wakes_it() {
        let mut d = deliver("sesn_1", vec![to("sesn_1", message())], &[]);
        assert_eq!(d.len(), 1);
        let d = d.remove(0);
        assert_eq!(
            (d.sent, d.wake.clone()),
            (1, vec![Wake::Notify("sesn_1".into())])
        );
        let events = run(d, SessionStatus::Idle);
        assert_eq!(
            types(&events),
            vec![("user.message", None), ("session.status_running", None)]
        );
    }

    #[test]
    fn a_running_session_is_not_moved_and_a_terminated_one_refuses() {
        let d = deliver("sesn_1", vec![to("sesn_1", message())], &[]).remove(0);
        assert_eq!(run(d, SessionStatus::Running).len(), 1);
        let d = deliver("sesn_1", vec![to("sesn_1", message())], &[]).remove(0);
        let head = Head {
            status: SessionStatus::Terminated,
            last_seq: 9,
            holder: None,
        };
        assert!(matches!((d.guard)(&head), Err(Refusal::Terminated)));
    }

    #[test]
    fn a_session_wide_interrupt_reaches_every_live_thread_in_the_same_append() {
        let threads = [
            thread("sthr_a", SessionStatus::Running, false),
            thread("sthr_b", SessionStatus::Terminated, false),
            thread("sthr_c", SessionStatus::Idle, true),
        ];
        let d = deliver("sesn_1", vec![to("sesn_1", interrupt(None))], &threads).remove(0);
        assert_eq!(
            d.wake,
            vec![
                Wake::Interrupt("sesn_1".into()),
                Wake::Interrupt("sthr_a".into())
            ]
        );
        let events = run(d, SessionStatus::Running);
        assert_eq!(
            types(&events),
            vec![("user.interrupt", None), ("user.interrupt", Some("sthr_a"))]
        );
    }

    #[test]
    fn an_answer_for_a_thread_is_copied_to_the_session_under_the_same_id() {
        let threads = [thread("sthr_a", SessionStatus::Idle, false)];
        let mut answer = UserEvent::CustomToolResult(CustomToolResultParams {
            custom_tool_use_id: "sevt_call".into(),
            content: None,
            is_error: None,
            session_thread_id: None,
        });
        address("sesn_1", &mut answer, Some("sthr_a"));
        assert_eq!(answer.thread(), Some("sthr_a"));
        // Once it names its worker, it needs no lookup.
        assert_eq!(unaddressed_call("sesn_1", &answer), None);
        let d = deliver("sesn_1", vec![to("sthr_a", answer)], &threads).remove(0);
        assert_eq!(d.wake, vec![Wake::Notify("sthr_a".into())]);
        let events = run(d, SessionStatus::Idle);
        assert_eq!(
            types(&events),
            vec![
                ("user.custom_tool_result", None),
                ("session.status_running", None),
                ("session.thread_status_running", Some("sesn_1")),
                ("user.custom_tool_result", Some("sesn_1")),
            ]
        );
        assert_eq!(events[0].id, events[3].id);
        assert_eq!(events[0].body.copied_from(), None);
        assert_eq!(events[3].body.copied_from(), Some("sthr_a"));
    }

    #[test]
    fn naming_the_primary_thread_is_naming_none_and_runs_group_by_log() {
        let mut answer = UserEvent::CustomToolResult(CustomToolResultParams {
            custom_tool_use_id: "sevt_call".into(),
            content: None,
            is_error: None,
            session_thread_id: Some(agentd_wire::ids::primary_thread("sesn_1")),
        });
        assert_eq!(unaddressed_call("sesn_1", &answer), Some("sevt_call"));
        address("sesn_1", &mut answer, None);
        assert_eq!(answer.thread(), None);
        let threads = [thread("sthr_a", SessionStatus::Idle, false)];
        let batches = deliver(
            "sesn_1",
            vec![
                to("sesn_1", message()),
                to("sesn_1", message()),
                to("sthr_a", message()),
                to("sesn_1", message()),
            ],
            &threads,
        );
        let shape: Vec<(&str, usize)> = batches
            .iter()
            .map(|d| (d.log_id.as_str(), d.sent))
            .collect();
        assert_eq!(shape, vec![("sesn_1", 2), ("sthr_a", 1), ("sesn_1", 1)]);
    }
}
