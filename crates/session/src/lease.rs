//! Who runs a log: a lease, held by one process at a time, for as long as the log is running.
//!
//! Many agentd processes may share one database. A log that is running has one owner, which
//! keeps its lease alive with a heartbeat; a process that dies stops renewing, the lease
//! expires, and any live process takes the log over (`orphaned`). A process that is handed
//! work for a log another one owns (a client's message reached it) nudges the owner instead of
//! running the log itself.
//!
//! The lease keeps work from being done twice; it is not what keeps the log whole. Every
//! append the harness makes names the tail it expects (`at_tail`), so a former owner that
//! wakes up after its lease was taken (a paused process, a partitioned host) has its next
//! append refused as stale: the log stays one history, whoever appends.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::Result;

/// What a nudge asks of the owner of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudge {
    /// Something was appended: wake the log (again).
    Wake,
    /// The client interrupted: cancel the wake in flight, then wake again.
    Interrupt,
}

impl Nudge {
    pub fn as_str(self) -> &'static str {
        match self {
            Nudge::Wake => "wake",
            Nudge::Interrupt => "interrupt",
        }
    }

    pub fn parse(s: &str) -> Option<Nudge> {
        match s {
            "wake" => Some(Nudge::Wake),
            "interrupt" => Some(Nudge::Interrupt),
            _ => None,
        }
    }
}

#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Take the lease on `log_id` for `owner`, or extend the one `owner` holds, until `ttl`
    /// from now; false if another owner's lease on it has not expired.
    async fn acquire(&self, log_id: &str, owner: &str, ttl: Duration) -> Result<bool>;

    /// Give the lease up, if `owner` holds it.
    async fn release(&self, log_id: &str, owner: &str) -> Result<()>;

    /// Running logs (sessions' and worker threads') that no live lease holds: the ones whose
    /// owner died.
    async fn orphaned(&self) -> Result<Vec<String>>;

    /// Tell every process that `log_id` needs its owner's attention.
    async fn nudge(&self, log_id: &str, nudge: Nudge) -> Result<()>;

    /// The nudges every process sent, this one's included.
    fn nudges(&self) -> broadcast::Receiver<(String, Nudge)>;
}
