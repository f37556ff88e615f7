//! The session log: the one interface every part of agentd reads state from.
//!
//! Owns: the `SessionLog` trait (append, read a range, subscribe), the stored event record and
//! the harness-private data that rides along with an event. Must not touch: SQL, HTTP, models.
//! Backends live elsewhere (`agentd-store`); the harness and the API see only this trait.
//!
//! A log is a thread's: a session's own id names its primary thread's log, a child thread's
//! id (`sthr_…`) names that thread's log. Positions, heads and subscriptions are per log.
//!
//! Invariants every backend keeps:
//! - positions (`seq`) of a session start at 1 and have no gaps; an event is never rewritten;
//! - `append` is atomic and durable before it returns: either every event of the batch is
//!   stored, with the session's status and usage projection updated in the same transaction,
//!   or none is;
//! - a subscriber is told the new tail only after the append is durable, so a stream fed from
//!   `read` after a notification can never show an event that a crash would take back.

pub mod append;
pub mod catalog;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod inbox;
pub mod lease;
pub mod projection;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use agentd_wire::{Event, EventBody, SessionStatus};

/// One event as stored: its position in the session, the wire event, and harness-only data.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub event: Event,
    pub private: Option<Private>,
}

/// An event to append. Its id is minted by the caller so previews can name it in advance.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub body: EventBody,
    pub private: Option<Private>,
    /// Another log of the same session this event goes to instead (a message delivered to
    /// another thread), in the same transaction as the rest of the batch.
    pub to: Option<String>,
}

impl NewEvent {
    pub fn new(body: EventBody) -> Self {
        NewEvent {
            id: agentd_wire::ids::new(agentd_wire::ids::Kind::Event),
            body,
            private: None,
            to: None,
        }
    }

    /// Send this event to the log `log_id` of the same session instead.
    pub fn to(mut self, log_id: impl Into<String>) -> Self {
        self.to = Some(log_id.into());
        self
    }

    pub fn with_private(mut self, p: Private) -> Self {
        self.private = Some(p);
        self
    }
}

/// Data the harness needs to rebuild a model's context that the API never shows:
/// thinking blocks must go back to the model verbatim, signature included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Private {
    Thinking {
        thinking: String,
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    /// A compaction: the conversation before position `upto` is replaced, in the model's
    /// context only, by `summary`. The log keeps every event.
    Compaction {
        summary: String,
        upto: u64,
        /// What writing the summary cost; counted in the log's usage.
        #[serde(default)]
        usage: agentd_wire::usage::ModelUsage,
        /// Its list cost, picodollars (see `Cost`).
        #[serde(default)]
        pico_usd: u64,
    },
    /// The list cost of the model call an event ends (`span.model_request_end`,
    /// `span.outcome_evaluation_end`), picodollars, priced when the call was logged: a price
    /// table changed later does not rewrite what a session spent.
    Cost {
        pico_usd: u64,
        /// The model refused to answer (a `refusal` stop): the rest that follows says so.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        refused: bool,
    },
    /// The text of a file rubric, copied when `user.define_outcome` is logged.
    Rubric {
        text: String,
    },
    /// The definition a new thread runs, pinned when `session.thread_created` is logged.
    Thread {
        agent: Box<agentd_wire::agent::SessionAgent>,
    },
}

/// What an append's guard sees: the session as it is inside the appending transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: SessionStatus,
    pub last_seq: u64,
    /// The process holding a live lease on the log, as `lease::key` of its owner name, as of
    /// this append; filled in by the backend for the log appended to, so that a harness refuses
    /// to append to a log another process now owns.
    pub holder: Option<u64>,
}

/// Why a guard refused an append.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("session is terminated")]
    Terminated,
    #[error("the log moved on (tail {actual}, expected {expected})")]
    Stale { expected: u64, actual: u64 },
    /// The harness appending lost the log's lease to another process (see `lease`).
    #[error("another process now runs this log")]
    Fenced,
    #[error("{0}")]
    Invalid(String),
}

/// Decides, inside the transaction, which events to append given the session's head.
pub type Guard = Box<dyn FnOnce(&Head) -> Result<Vec<NewEvent>, Refusal> + Send>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("session {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("storage failure: {0}")]
    Storage(String),
    /// The database cannot be reached, or cannot take writes (a full disk): nothing was
    /// stored, and the same request may succeed shortly.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[async_trait]
pub trait SessionLog: Send + Sync + 'static {
    /// Append what `guard` returns, atomically and durably. The guard sees the head of
    /// `log_id`; events with `to` set land in that other log of the session, in the same
    /// transaction. An empty batch is a no-op that still reports the head.
    async fn append(&self, log_id: &str, guard: Guard) -> Result<(Head, Vec<StoredEvent>)>;

    /// Events with `after < seq`, in order, at most `limit`.
    async fn read(&self, log_id: &str, after: u64, limit: usize) -> Result<Vec<StoredEvent>>;

    /// The log's status and last position, as of the last durable append.
    async fn head(&self, log_id: &str) -> Result<Head>;

    /// The durable tail position of a log, updated after every append; `DELETED` once its
    /// session is gone.
    fn subscribe(&self, log_id: &str) -> watch::Receiver<u64>;
}

/// The tail a subscription reports once its session has been deleted: nothing more will come.
pub const DELETED: u64 = u64::MAX;

/// Unconditional append of `events` unless the session is terminated.
pub fn events(events: Vec<NewEvent>) -> Guard {
    Box::new(move |head| {
        if head.status == SessionStatus::Terminated {
            return Err(Refusal::Terminated);
        }
        Ok(events)
    })
}

/// Append only if nothing was appended since `expected`: the harness's compare-and-append.
pub fn at_tail(expected: u64, events: Vec<NewEvent>) -> Guard {
    Box::new(move |head| {
        if head.last_seq != expected {
            return Err(Refusal::Stale {
                expected,
                actual: head.last_seq,
            });
        }
        if head.status == SessionStatus::Terminated {
            return Err(Refusal::Terminated);
        }
        Ok(events)
    })
}

/// The status a session moves to when `body` is appended, if it moves.
pub fn status_after(body: &EventBody) -> Option<SessionStatus> {
    match body {
        EventBody::SessionStatusRunning {} => Some(SessionStatus::Running),
        EventBody::SessionStatusIdle { .. } => Some(SessionStatus::Idle),
        EventBody::SessionStatusRescheduled {} => Some(SessionStatus::Rescheduling),
        EventBody::SessionStatusTerminated {} => Some(SessionStatus::Terminated),
        _ => None,
    }
}
