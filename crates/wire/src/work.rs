//! The work queue of a `self_hosted` environment (`/v1/environments/{id}/work…`): a work item
//! per session whose tools a worker outside agentd runs, its lease, and the queue's figures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Where a work item stands. `queued` until a worker acknowledges it, `starting` until its
/// first heartbeat, `active` while heartbeats keep its lease, `stopping` once a stop was asked
/// for (the worker learns it from its next heartbeat), `stopped` at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkState {
    Queued,
    Starting,
    Active,
    Stopping,
    Stopped,
}

impl WorkState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkState::Queued => "queued",
            WorkState::Starting => "starting",
            WorkState::Active => "active",
            WorkState::Stopping => "stopping",
            WorkState::Stopped => "stopped",
        }
    }

    /// Not stopped: the item still stands for its session.
    pub fn is_live(self) -> bool {
        self != WorkState::Stopped
    }
}

/// What a work item is about: always a session here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionWorkData {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `BetaSelfHostedWork`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Work {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub environment_id: String,
    pub data: SessionWorkData,
    pub state: WorkState,
    pub metadata: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub latest_heartbeat_at: Option<Timestamp>,
    pub stop_requested_at: Option<Timestamp>,
    pub stopped_at: Option<Timestamp>,
    /// Only a poll's answer carries it: the credential of the session-scoped calls.
    pub secret: Option<String>,
}

/// `BetaSelfHostedWorkHeartbeatResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    #[serde(rename = "type")]
    pub kind: String,
    /// Echoed by the worker as `expected_last_heartbeat` on its next beat.
    pub last_heartbeat: String,
    pub lease_extended: bool,
    pub state: WorkState,
    pub ttl_seconds: u32,
}

/// `BetaWorkLeaseState`: the lease as the server holds it, in a refused heartbeat's details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseState {
    pub last_heartbeat: Option<String>,
    pub lease_extended: bool,
    pub state: WorkState,
    pub ttl_seconds: u32,
}

/// `BetaSelfHostedWorkQueueStats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    #[serde(rename = "type")]
    pub kind: String,
    pub depth: u64,
    pub pending: u64,
    pub oldest_queued_at: Option<Timestamp>,
    pub workers_polling: Option<u64>,
}

/// The literal a worker sends as `expected_last_heartbeat` to take a lease never beaten.
pub const NO_HEARTBEAT: &str = "NO_HEARTBEAT";
