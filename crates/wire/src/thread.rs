//! Session threads: the primary thread of every session and the worker threads a coordinator
//! starts.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::agent::SessionAgent;
use crate::session::SessionStatus;
use crate::usage::Usage;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionThread {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ThreadTag,
    pub session_id: String,
    /// The thread that started this one; null for the primary thread.
    pub parent_thread_id: Option<String>,
    /// The definition this thread runs, without a roster: the session's agent shows that.
    #[serde(serialize_with = "crate::agent::without_roster")]
    pub agent: SessionAgent,
    pub status: SessionStatus,
    pub usage: Option<Usage>,
    pub stats: Option<ThreadStats>,
    pub workflow_run_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadTag {
    SessionThread,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ThreadStats {
    pub active_seconds: f64,
    pub duration_seconds: f64,
}
