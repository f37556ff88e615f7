//! The work queue of `self_hosted` environments as every backend keeps it: a work item per
//! session whose tools a worker runs, the rules of its lease (poll, ack, heartbeat, stop,
//! expiry) as pure functions over the stored item, and the credentials that go with it
//! (environment keys, and the per-claim secret of a work item), kept only as hashes.
//!
//! A backend stores a `WorkItem` whole and changes it only through `WorkQueue::update_work`,
//! which runs one of these functions under the item's row lock: two workers racing for an item
//! or a lease see one winner, whatever the backend.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{Duration, SecondsFormat};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use agentd_wire::Timestamp;
use agentd_wire::work::{
    HeartbeatResponse, LeaseState, NO_HEARTBEAT, SessionWorkData, Work, WorkState,
};

/// The lease a work item gets when the server sets none (`agentd serve --work-lease-ttl`).
pub const DEFAULT_TTL_SECONDS: u32 = 60;

/// A work item as stored: the wire's fields plus the lease and the claims handed out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    pub id: String,
    pub workspace_id: String,
    pub environment_id: String,
    pub session_id: String,
    pub state: WorkState,
    pub metadata: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub latest_heartbeat_at: Option<Timestamp>,
    pub stop_requested_at: Option<Timestamp>,
    pub stopped_at: Option<Timestamp>,
    /// When a poll last handed it out; another poll skips it until the reclaim time passes.
    pub polled_at: Option<Timestamp>,
    pub worker_id: Option<String>,
    /// Past this, a worker that stopped heartbeating has lost the item.
    pub lease_expires_at: Option<Timestamp>,
    pub ttl_seconds: u32,
    /// Bumped by every hand-out and every requeue: a secret of an older claim no longer
    /// holds the lease.
    pub claim: u32,
    /// SHA-256 (hex) of each claim's session token, with the claim it was handed out for.
    pub secrets: Vec<(u32, String)>,
}

impl WorkItem {
    pub fn new(
        workspace_id: &str,
        environment_id: &str,
        session_id: &str,
        ttl_seconds: u32,
        now: Timestamp,
    ) -> WorkItem {
        WorkItem {
            id: agentd_wire::ids::new(agentd_wire::ids::Kind::Work),
            workspace_id: workspace_id.to_owned(),
            environment_id: environment_id.to_owned(),
            session_id: session_id.to_owned(),
            state: WorkState::Queued,
            metadata: BTreeMap::new(),
            created_at: now,
            acknowledged_at: None,
            started_at: None,
            latest_heartbeat_at: None,
            stop_requested_at: None,
            stopped_at: None,
            polled_at: None,
            worker_id: None,
            lease_expires_at: None,
            ttl_seconds,
            claim: 0,
            secrets: Vec::new(),
        }
    }

    /// As the API shows it; `secret` only in a poll's answer.
    pub fn to_wire(&self, secret: Option<String>) -> Work {
        Work {
            id: self.id.clone(),
            kind: "work".into(),
            environment_id: self.environment_id.clone(),
            data: SessionWorkData {
                id: self.session_id.clone(),
                kind: "session".into(),
            },
            state: self.state,
            metadata: self.metadata.clone(),
            created_at: self.created_at,
            acknowledged_at: self.acknowledged_at,
            started_at: self.started_at,
            latest_heartbeat_at: self.latest_heartbeat_at,
            stop_requested_at: self.stop_requested_at,
            stopped_at: self.stopped_at,
            secret,
        }
    }

    /// Waiting for a worker and not handed out within the last `reclaim`.
    pub fn claimable(&self, now: Timestamp, reclaim: Duration) -> bool {
        self.state == WorkState::Queued && self.polled_at.is_none_or(|p| now - p >= reclaim)
    }

    /// Handed out by a poll and not acknowledged yet.
    pub fn pending(&self, now: Timestamp, reclaim: Duration) -> bool {
        self.state == WorkState::Queued && self.polled_at.is_some_and(|p| now - p < reclaim)
    }

    /// Hand the item to a poller: a new claim whose session token hashes to `token_hash`.
    /// False (and nothing changes) when another poller took it first.
    pub fn hand_out(
        &mut self,
        now: Timestamp,
        reclaim: Duration,
        worker: Option<&str>,
        token_hash: String,
    ) -> bool {
        if !self.claimable(now, reclaim) {
            return false;
        }
        self.claim += 1;
        self.polled_at = Some(now);
        self.worker_id = worker.map(str::to_owned);
        self.secrets.push((self.claim, token_hash));
        // Only recent claims can still be presented usefully; keep the row small.
        let n = self.secrets.len();
        if n > 8 {
            self.secrets.drain(..n - 8);
        }
        true
    }

    /// `ack`: the worker took it. The lease starts now, so an item acknowledged by a worker
    /// that dies before its first heartbeat goes back to the queue.
    /// `claim` is the claim whose secret the worker presented (None for the environment key):
    /// a poll's secret acknowledges only the hand-out it came with.
    pub fn acknowledge(&mut self, now: Timestamp, claim: Option<u32>) -> Result<(), String> {
        if claim.is_some_and(|c| c != self.claim) {
            return Err(format!(
                "work {} was handed out again after this secret's poll: only the latest poller may acknowledge it",
                self.id
            ));
        }
        if self.state != WorkState::Queued {
            return Err(format!(
                "work {} is {}, not queued: another worker acknowledged it",
                self.id,
                self.state.as_str()
            ));
        }
        self.state = WorkState::Starting;
        self.acknowledged_at = Some(now);
        self.lease_expires_at = Some(now + Duration::seconds(i64::from(self.ttl_seconds)));
        Ok(())
    }

    /// The stored heartbeat as a worker echoes it.
    pub fn last_heartbeat(&self) -> Option<String> {
        self.latest_heartbeat_at.map(heartbeat_text)
    }

    pub fn lease_state(&self) -> LeaseState {
        LeaseState {
            last_heartbeat: self.last_heartbeat(),
            lease_extended: false,
            state: self.state,
            ttl_seconds: self.ttl_seconds,
        }
    }

    /// A heartbeat. `claim` is the claim whose secret the worker presented (None for the
    /// environment key). Err is the 412: the lease is not the caller's (it was requeued, or
    /// another worker holds it), with the lease as stored. A stopping or stopped item is
    /// not compared: the answer tells the worker to stop.
    pub fn heartbeat(
        &mut self,
        now: Timestamp,
        expected: Option<&str>,
        ttl_seconds: Option<u32>,
        claim: Option<u32>,
    ) -> Result<HeartbeatResponse, LeaseState> {
        if matches!(self.state, WorkState::Stopping | WorkState::Stopped) {
            return Ok(HeartbeatResponse {
                kind: "work_heartbeat".into(),
                last_heartbeat: self.last_heartbeat().unwrap_or_default(),
                lease_extended: false,
                state: self.state,
                ttl_seconds: self.ttl_seconds,
            });
        }
        let stored = self.last_heartbeat();
        let stale_claim = claim.is_some_and(|c| c != self.claim);
        let mismatch = expected.is_some_and(|e| e != stored.as_deref().unwrap_or(NO_HEARTBEAT));
        // A lapse is final, whether or not the sweeper has requeued the item yet: its open
        // calls may already have been answered "lease expired", and a worker that beat late
        // must not go on running them.
        let lapsed = self.lease_lapsed(now);
        if self.state == WorkState::Queued || stale_claim || mismatch || lapsed {
            return Err(self.lease_state());
        }
        if let Some(t) = ttl_seconds {
            self.ttl_seconds = t;
        }
        // Each beat stores a value the last one did not have, so an echo is never ambiguous.
        let at = match self.latest_heartbeat_at {
            Some(prev) if prev >= now => prev + Duration::microseconds(1),
            _ => now,
        };
        self.latest_heartbeat_at = Some(at);
        self.lease_expires_at = Some(at + Duration::seconds(i64::from(self.ttl_seconds)));
        if self.state == WorkState::Starting {
            self.state = WorkState::Active;
            self.started_at = Some(now);
        }
        Ok(HeartbeatResponse {
            kind: "work_heartbeat".into(),
            last_heartbeat: heartbeat_text(at),
            lease_extended: true,
            state: self.state,
            ttl_seconds: self.ttl_seconds,
        })
    }

    /// `stop`: a forced stop, or one of an item no worker holds, ends it now; otherwise the
    /// worker is asked through its heartbeat and stops it itself.
    pub fn request_stop(&mut self, now: Timestamp, force: bool) -> Result<(), String> {
        if self.state == WorkState::Stopped {
            return Err(format!("work {} is already stopped", self.id));
        }
        self.stop_requested_at.get_or_insert(now);
        if force || self.state == WorkState::Queued {
            self.stop(now);
        } else {
            self.state = WorkState::Stopping;
        }
        Ok(())
    }

    fn stop(&mut self, now: Timestamp) {
        self.state = WorkState::Stopped;
        self.stopped_at = Some(now);
        self.lease_expires_at = None;
        self.polled_at = None;
    }

    /// Whether a worker held the item and let its lease run out.
    pub fn lease_lapsed(&self, now: Timestamp) -> bool {
        matches!(
            self.state,
            WorkState::Starting | WorkState::Active | WorkState::Stopping
        ) && self.lease_expires_at.is_some_and(|t| t <= now)
    }

    /// The worker is gone: back to the queue for another (a stopping item just stops). The
    /// new claim makes the lost worker's secret stale, so its heartbeat gets the 412 and its
    /// results are refused. False when the lease was renewed meanwhile.
    pub fn requeue_lapsed(&mut self, now: Timestamp) -> bool {
        if !self.lease_lapsed(now) {
            return false;
        }
        if self.state == WorkState::Stopping {
            self.stop(now);
            return true;
        }
        self.state = WorkState::Queued;
        self.claim += 1;
        self.acknowledged_at = None;
        self.started_at = None;
        self.latest_heartbeat_at = None;
        self.lease_expires_at = None;
        self.polled_at = None;
        self.worker_id = None;
        true
    }

    /// The claim a session token belongs to, if it is one of this item's.
    pub fn claim_of(&self, token: &str) -> Option<u32> {
        let h = hex(&crate::keys::hash(token));
        self.secrets
            .iter()
            .find(|(_, s)| constant_time_eq(s.as_bytes(), h.as_bytes()))
            .map(|(c, _)| *c)
    }
}

/// Equal without an early exit, so the time taken says nothing of where two hashes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 3339 with microseconds: the precision both backends keep.
pub fn heartbeat_text(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

const TOKEN_PREFIX: &str = "sk-agentd-work-";
const ENV_KEY_PREFIX: &str = "sk-agentd-env-";

fn random_hex() -> String {
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    hex(&raw)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new session token for item `work_id`, its hash (hex, as `WorkItem::secrets` keeps it),
/// and the `secret` a poll returns: URL-safe base64 of `{"sessions_token": token}`, the
/// payload the SDK's worker unpacks. The token names its item so it is found without a scan.
pub fn mint_secret(work_id: &str) -> (String, String, String) {
    let token = format!("{TOKEN_PREFIX}{work_id}.{}", random_hex());
    let hash = hex(&crate::keys::hash(&token));
    let payload = serde_json::json!({ "sessions_token": token }).to_string();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
    (token, hash, secret)
}

/// The work item a session token names, if `key` is one.
pub fn token_work_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(TOKEN_PREFIX)?;
    rest.split_once('.').map(|(id, _)| id)
}

/// A new environment key.
pub fn mint_environment_key() -> String {
    format!("{ENV_KEY_PREFIX}{}", random_hex())
}

/// Whether `key` has the form of an environment key (it may still be unknown or revoked).
pub fn is_environment_key(key: &str) -> bool {
    key.starts_with(ENV_KEY_PREFIX)
}

/// An environment key as listed; the plaintext is shown once, at creation.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentKeyInfo {
    pub id: String,
    pub environment_id: String,
    pub workspace_id: String,
    pub name: Option<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// What a known, unrevoked environment key is for.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentKeyOwner {
    pub workspace_id: String,
    pub environment_id: String,
}

/// A change `WorkQueue::update_work` applies under the item's lock; stored when it returns true.
pub type WorkChange = Box<dyn FnOnce(&mut WorkItem) -> bool + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn acked() -> WorkItem {
        let mut w = WorkItem::new("w", "env", "sesn", 10, t(0));
        assert!(w.hand_out(t(0), Duration::seconds(5), Some("a"), "h1".into()));
        w.acknowledge(t(1), Some(1)).unwrap();
        w
    }

    #[test]
    fn a_handed_out_item_is_skipped_until_its_reclaim_time() {
        let mut w = WorkItem::new("w", "env", "sesn", 10, t(0));
        assert!(w.hand_out(t(0), Duration::seconds(5), None, "h1".into()));
        assert!(!w.hand_out(t(4), Duration::seconds(5), None, "h2".into()));
        assert!(w.pending(t(4), Duration::seconds(5)));
        assert!(w.hand_out(t(5), Duration::seconds(5), None, "h2".into()));
        assert_eq!(w.claim, 2);
    }

    #[test]
    fn only_the_latest_pollers_secret_acknowledges() {
        let mut w = WorkItem::new("w", "env", "sesn", 10, t(0));
        assert!(w.hand_out(t(0), Duration::seconds(5), Some("a"), "h1".into()));
        assert!(w.hand_out(t(5), Duration::seconds(5), Some("b"), "h2".into()));
        assert!(w.acknowledge(t(6), Some(1)).is_err());
        assert_eq!(w.state, WorkState::Queued);
        w.acknowledge(t(6), Some(2)).unwrap();
        assert_eq!(w.state, WorkState::Starting);
    }

    #[test]
    fn heartbeats_must_echo_the_last_one() {
        let mut w = acked();
        let first = w
            .heartbeat(t(2), Some(NO_HEARTBEAT), None, Some(1))
            .unwrap();
        assert!(first.lease_extended);
        assert_eq!(first.state, WorkState::Active);
        let refused = w
            .heartbeat(t(3), Some(NO_HEARTBEAT), None, Some(1))
            .unwrap_err();
        assert_eq!(
            refused.last_heartbeat.as_deref(),
            Some(first.last_heartbeat.as_str())
        );
        let second = w
            .heartbeat(t(3), Some(&first.last_heartbeat), Some(30), Some(1))
            .unwrap();
        assert_ne!(second.last_heartbeat, first.last_heartbeat);
        assert_eq!(w.lease_expires_at, Some(t(33)));
    }

    #[test]
    fn a_lapsed_lease_requeues_and_the_old_claim_is_refused() {
        let mut w = acked();
        let hb = w
            .heartbeat(t(2), Some(NO_HEARTBEAT), None, Some(1))
            .unwrap();
        assert!(!w.requeue_lapsed(t(11)));
        assert!(w.requeue_lapsed(t(12)));
        assert_eq!(w.state, WorkState::Queued);
        let refused = w
            .heartbeat(t(13), Some(&hb.last_heartbeat), None, Some(1))
            .unwrap_err();
        assert_eq!(refused.state, WorkState::Queued);
    }

    #[test]
    fn a_heartbeat_after_the_lease_lapsed_is_refused_before_any_requeue() {
        let mut w = acked();
        let hb = w
            .heartbeat(t(2), Some(NO_HEARTBEAT), None, Some(1))
            .unwrap();
        // The sweeper has not run yet: the lease is lost all the same.
        let refused = w
            .heartbeat(t(12), Some(&hb.last_heartbeat), None, Some(1))
            .unwrap_err();
        assert_eq!(refused.state, WorkState::Active);
        assert_eq!(w.lease_expires_at, Some(t(12)));
        assert!(w.requeue_lapsed(t(12)));
    }

    #[test]
    fn stop_asks_a_held_item_and_ends_a_queued_one() {
        let mut w = acked();
        w.request_stop(t(2), false).unwrap();
        assert_eq!(w.state, WorkState::Stopping);
        let hb = w.heartbeat(t(3), Some("anything"), None, Some(1)).unwrap();
        assert!(!hb.lease_extended);
        assert_eq!(hb.state, WorkState::Stopping);
        w.request_stop(t(4), true).unwrap();
        assert_eq!(w.state, WorkState::Stopped);
        assert!(w.request_stop(t(5), true).is_err());
        let mut q = WorkItem::new("w", "env", "sesn", 10, t(0));
        q.request_stop(t(1), false).unwrap();
        assert_eq!(q.state, WorkState::Stopped);
    }

    #[test]
    fn secrets_carry_a_token_that_names_its_item() {
        let (token, hash, secret) = mint_secret("work_abc");
        assert_eq!(token_work_id(&token), Some("work_abc"));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(secret)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["sessions_token"], token.as_str());
        let mut w = WorkItem::new("w", "env", "sesn", 10, t(0));
        w.hand_out(t(0), Duration::seconds(5), None, hash);
        assert_eq!(w.claim_of(&token), Some(1));
        assert_eq!(w.claim_of("sk-agentd-work-work_abc.00"), None);
    }
}
