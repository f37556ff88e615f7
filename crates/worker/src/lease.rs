//! One work item's lease, kept alive by heartbeats while the worker serves it, exactly as the
//! SDK's worker keeps it: echo the last heartbeat, beat at half the TTL, end on `stopping` or
//! a refused extension, and count the lease lost on a 412 or once no beat got through for a
//! whole TTL (so two workers never serve one session). agentd being down is not a loss by
//! itself: beats go on with backoff, and a restarted agentd extends the lease it finds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::api::Api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The worker finished with the item while holding it.
    Done,
    /// agentd asked the worker to stop (operator, archive, or a refused extension).
    Stop,
    /// Someone else holds the item now, or it went back to the queue: leave it alone.
    Lost,
}

/// The worker's view of one lease; the first reason recorded wins.
#[derive(Clone, Default)]
pub struct Lease {
    ended: CancellationToken,
    why: Arc<Mutex<Option<End>>>,
}

impl Lease {
    pub fn finish(&self, why: End) {
        let mut w = self.why.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_none() {
            *w = Some(why);
        }
        self.ended.cancel();
    }

    pub fn end(&self) -> Option<End> {
        *self.why.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lost(&self) -> bool {
        self.end() == Some(End::Lost)
    }

    pub async fn ended(&self) {
        self.ended.cancelled().await
    }

    pub fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }
}

/// Assumed TTL until agentd's first answer says what it is.
const TTL_DEFAULT: Duration = Duration::from_secs(90);
const INTERVAL_MAX: Duration = Duration::from_secs(30);

/// Heartbeat item `id` until `lease` ends; ends it on a stop, a loss, or a refusal.
pub async fn keep(api: Api, env: String, id: String, token: String, lease: Lease) {
    let mut last = String::from("NO_HEARTBEAT");
    let mut ttl = TTL_DEFAULT;
    let mut interval = Duration::from_secs(1);
    let mut last_ok = Instant::now();
    while !lease.is_ended() {
        let beat = tokio::time::timeout(interval.max(Duration::from_secs(2)), async {
            api.heartbeat(&env, &id, &token, &last).await
        })
        .await;
        match beat {
            Ok(Ok(h)) => {
                last = h.last_heartbeat;
                last_ok = Instant::now();
                if h.ttl_seconds > 0 {
                    ttl = Duration::from_secs(h.ttl_seconds);
                    interval = (ttl / 2).clamp(Duration::from_secs(1), INTERVAL_MAX);
                }
                if matches!(h.state.as_str(), "stopping" | "stopped") || !h.lease_extended {
                    tracing::info!(work = %id, state = %h.state, "agentd asks this worker to stop the item");
                    lease.finish(End::Stop);
                    return;
                }
            }
            Ok(Err(e)) if e.status() == Some(412) => {
                tracing::error!(work = %id, error = %e, "lease lost: another worker holds the item or it was queued again");
                lease.finish(End::Lost);
                return;
            }
            Ok(Err(e)) if !e.transient() => {
                tracing::error!(work = %id, error = %e, "heartbeat refused; giving the item up");
                lease.finish(End::Lost);
                return;
            }
            failed => {
                if last_ok.elapsed() > ttl {
                    tracing::error!(work = %id, "no heartbeat got through for a whole lease; assuming it lost");
                    lease.finish(End::Lost);
                    return;
                }
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                tracing::warn!(work = %id, error = %why, "heartbeat failed; trying again");
                // Sooner than a full interval: the lease runs out while agentd is away.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = lease.ended() => return,
                }
                continue;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = lease.ended() => return,
        }
    }
}
