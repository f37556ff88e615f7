//! Who runs a log: a lease, held by one process at a time, for as long as the log is running.
//!
//! Many agentd processes may share one database. A log that is running has one owner, which
//! keeps its lease alive with a heartbeat; a process that dies stops renewing, the lease
//! expires, and any live process takes the log over (`orphaned`). A process that is handed
//! work for a log another one owns (a client's message reached it) nudges the owner instead of
//! running the log itself.
//!
//! The lease is also a fence. Every append a harness makes for a lease holder is refused
//! unless that holder's lease is still live at the moment of the append (`fenced`, checked
//! in the append's transaction), and a lapsed lease is never renewed, only taken afresh
//! before a new wake. So a former owner that wakes up after its lease lapsed (a paused
//! process, a partitioned host) cannot log a reply another process made meanwhile: the log
//! shows one answer, whoever made it.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

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

    /// Extend the lease `owner` holds on `log_id` until `ttl` from now; false if it lapsed or
    /// is another's. Unlike `acquire`, never takes a lease back after it expired: a process that
    /// stalled past its lease must not resume work another process may have done meanwhile.
    async fn renew(&self, log_id: &str, owner: &str, ttl: Duration) -> Result<bool>;

    /// Give the lease up, if `owner` holds it.
    async fn release(&self, log_id: &str, owner: &str) -> Result<()>;

    /// Running logs (sessions' and worker threads') that no live lease holds: the ones whose
    /// owner died.
    async fn orphaned(&self) -> Result<Vec<String>>;

    /// Tell every process that `log_id` needs its owner's attention.
    async fn nudge(&self, log_id: &str, nudge: Nudge) -> Result<()>;

    /// The nudges every process sent, this one's included.
    fn nudges(&self) -> broadcast::Receiver<(String, Nudge)>;

    /// Changes each time nudges may have been missed (the channel that carries them between
    /// processes was down for a while): every owner should then wake the logs it holds. Never
    /// changes where nudges cannot be lost.
    fn nudges_missed(&self) -> watch::Receiver<u64> {
        watch::channel(0).1
    }
}

/// A lease owner's name as `Head::holder` carries it: FNV-1a, the same in every process.
pub fn key(owner: &str) -> u64 {
    owner.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `guard`, refused unless `owner` holds a live lease on the log: what a harness running for
/// a lease holder appends, so that one that stalled past its lease (a paused process, a
/// partitioned host) cannot log a reply another process has made meanwhile, or is making.
pub fn fenced(owner: u64, guard: crate::Guard) -> crate::Guard {
    Box::new(move |head: &crate::Head| match head.holder {
        Some(holder) if holder == owner => guard(head),
        _ => Err(crate::Refusal::Fenced),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Head, Refusal, events};
    use agentd_wire::SessionStatus;

    fn head(holder: Option<u64>) -> Head {
        Head {
            status: SessionStatus::Running,
            last_seq: 1,
            holder,
        }
    }

    #[test]
    fn only_the_live_holder_appends() {
        let me = key("host:1:a");
        assert_ne!(me, key("host:1:b"));
        assert!(fenced(me, events(vec![]))(&head(Some(me))).is_ok());
        let lapsed = fenced(me, events(vec![]))(&head(None));
        assert_eq!(lapsed.unwrap_err(), Refusal::Fenced);
        let other = fenced(me, events(vec![]))(&head(Some(key("host:2:c"))));
        assert_eq!(other.unwrap_err(), Refusal::Fenced);
    }
}
