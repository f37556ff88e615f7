//! Runs at most one wake per log at a time (a session's, or a worker thread's), many logs at
//! once, and, when processes share a database, only the logs this process holds the lease of.
//!
//! `notify` after anything is appended that may need the harness; `interrupt` cancels the
//! wake in flight (dropping its upstream request). A notify that lands while a wake runs
//! makes that wake run once more, so no append is ever left unseen.
//!
//! Leases (`agentd_session::lease`): a wake first takes the log's lease, and the lease is kept,
//! renewed by a heartbeat, for as long as the log is running (a coordinator waiting on its
//! threads keeps it too). Work for a log another live process holds is passed on to that
//! process as a nudge. Logs left running by a process that died are found by a scan once
//! their lease has expired, and taken over.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use agentd_session::lease::{Leases, Nudge};
use agentd_wire::SessionStatus;

use crate::{Error, Harness};

/// How long a lease lasts unless renewed; it is renewed three times as often, and dead
/// owners' logs are looked for twice as often.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    harness: Harness,
    leases: Arc<dyn Leases>,
    /// This process, as lease rows name it.
    owner: String,
    ttl: Duration,
    active: Mutex<HashMap<String, Slot>>,
    /// Logs whose lease this process holds.
    held: Mutex<HashSet<String>>,
}

struct Slot {
    cancel: CancellationToken,
    again: bool,
}

impl Runner {
    /// Must be called inside a Tokio runtime: it starts the tasks that wake the logs the
    /// harness hands work to (threads and their parents), that act on nudges from other
    /// processes, and that keep leases alive and take over dead owners' logs.
    pub fn new(harness: Harness, leases: Arc<dyn Leases>, ttl: Duration) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let owner = owner_id();
        let inner = Arc::new(Inner {
            harness: harness.with_wakeups(tx).with_owner(&owner),
            owner,
            leases,
            ttl,
            active: Mutex::new(HashMap::new()),
            held: Mutex::new(HashSet::new()),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(log_id) = rx.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                Runner { inner }.notify(&log_id);
            }
        });
        tokio::spawn(listen(Arc::downgrade(&inner)));
        tokio::spawn(keep(Arc::downgrade(&inner)));
        Runner { inner }
    }

    pub fn harness(&self) -> &Harness {
        &self.inner.harness
    }

    /// Make sure a wake of `log_id` runs after this call, here or in the process that owns it.
    pub fn notify(&self, log_id: &str) {
        self.start(log_id, Some(Nudge::Wake));
    }

    /// Cancel the wake in flight, then wake again to log the rest; in the owner's process if
    /// another one owns the log.
    pub fn interrupt(&self, log_id: &str) {
        if self.cancel(log_id) {
            return;
        }
        self.start(log_id, Some(Nudge::Interrupt));
    }

    /// Cancel the wake of `log_id` in flight here and have it run again; false if none is.
    fn cancel(&self, log_id: &str) -> bool {
        let mut active = self.inner.lock();
        match active.get_mut(log_id) {
            Some(slot) => {
                slot.cancel.cancel();
                slot.again = true;
                true
            }
            None => false,
        }
    }

    /// Run a wake of `log_id` unless one is running here (then it runs once more); `relay`
    /// is what to nudge the owner with if another process owns the log.
    fn start(&self, log_id: &str, relay: Option<Nudge>) {
        let mut active = self.inner.lock();
        if let Some(slot) = active.get_mut(log_id) {
            slot.again = true;
            return;
        }
        active.insert(
            log_id.to_owned(),
            Slot {
                cancel: CancellationToken::new(),
                again: false,
            },
        );
        drop(active);
        let inner = self.inner.clone();
        let log_id = log_id.to_owned();
        tokio::spawn(async move { inner.run(log_id, relay).await });
    }

    /// Stop working on a log for good (its session was deleted).
    pub fn forget(&self, log_id: &str) {
        if let Some(slot) = self.inner.lock().get_mut(log_id) {
            slot.cancel.cancel();
            slot.again = false;
        }
        let inner = self.inner.clone();
        let log_id = log_id.to_owned();
        tokio::spawn(async move { inner.release(&log_id).await });
    }

    /// Whether a wake of `log_id` is in flight or queued.
    pub fn is_active(&self, log_id: &str) -> bool {
        self.inner.lock().contains_key(log_id)
    }

    /// Number of logs with a wake in flight.
    pub fn active(&self) -> usize {
        self.inner.lock().len()
    }

    /// Wake every running log no live process holds: at start, the ones the last run of this
    /// process (or another that died) left running.
    pub async fn take_over(&self) -> Result<usize, agentd_session::Error> {
        self.inner.take_over().await
    }
}

/// A name for this process in lease rows, unique across hosts and restarts.
fn owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}:{}:{:08x}",
        host.trim(),
        std::process::id(),
        rand::random::<u32>()
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        lock(&self.active)
    }

    /// Hold the lease of `log_id`: already held, or taken now.
    async fn lease(&self, log_id: &str) -> bool {
        if lock(&self.held).contains(log_id) {
            return true;
        }
        match self.leases.acquire(log_id, &self.owner, self.ttl).await {
            Ok(true) => {
                lock(&self.held).insert(log_id.to_owned());
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(log = %log_id, error = %e, "cannot take the lease; not waking");
                false
            }
        }
    }

    async fn release(&self, log_id: &str) {
        if lock(&self.held).remove(log_id)
            && let Err(e) = self.leases.release(log_id, &self.owner).await
        {
            // It expires on its own.
            tracing::warn!(log = %log_id, error = %e, "cannot release a lease");
        }
    }

    async fn run(self: Arc<Self>, log_id: String, mut relay: Option<Nudge>) {
        loop {
            if !self.lease(&log_id).await {
                // Another live process owns the log: the work is theirs.
                tracing::info!(log = %log_id, ?relay, "another process holds the log's lease");
                self.lock().remove(&log_id);
                if let Some(nudge) = relay
                    && let Err(e) = self.leases.nudge(&log_id, nudge).await
                {
                    tracing::warn!(log = %log_id, error = %e, "cannot nudge the log's owner");
                }
                return;
            }
            // Losing the lease later means another process took the log over: tell it.
            relay = Some(Nudge::Wake);
            let cancel = match self.lock().get(&log_id) {
                Some(slot) => slot.cancel.clone(),
                None => return,
            };
            match self.harness.wake(&log_id, &cancel).await {
                Ok(()) => {}
                Err(Error::SessionNotFound(_)) => {
                    self.lock().remove(&log_id);
                    self.release(&log_id).await;
                    return;
                }
                Err(Error::Fenced(_)) => {
                    // This process stalled past its lease and another took the log over.
                    tracing::warn!(log = %log_id, "lost the log to another process; stopping here");
                    lock(&self.held).remove(&log_id);
                    self.lock().remove(&log_id);
                    return;
                }
                Err(e) => {
                    // Storage trouble: the log still says what to do, so back off and retry
                    // rather than leave the session running with no one working on it.
                    tracing::error!(session = %log_id, error = %e, "wake failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Some(slot) = self.lock().get_mut(&log_id) {
                        slot.again = true;
                    }
                }
            }
            if !self.again(&log_id) {
                // A log at rest needs no owner; one still running (a coordinator waiting on
                // its threads) keeps this one. A notify landing meanwhile runs the loop again,
                // which takes the lease again first.
                self.settle(&log_id).await;
            }
            let mut active = self.lock();
            let Some(slot) = active.get_mut(&log_id) else {
                return;
            };
            if !slot.again {
                active.remove(&log_id);
                return;
            }
            slot.again = false;
            if slot.cancel.is_cancelled() {
                slot.cancel = CancellationToken::new();
            }
        }
    }

    fn again(&self, log_id: &str) -> bool {
        self.lock().get(log_id).is_some_and(|s| s.again)
    }

    async fn settle(&self, log_id: &str) {
        match self.harness.log().head(log_id).await {
            Ok(head) if head.status == SessionStatus::Running => {}
            Ok(_) | Err(agentd_session::Error::NotFound(_)) => self.release(log_id).await,
            Err(e) => tracing::warn!(log = %log_id, error = %e, "cannot read the log's head"),
        }
    }

    async fn take_over(self: &Arc<Self>) -> Result<usize, agentd_session::Error> {
        let orphans = self.leases.orphaned().await?;
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "taking over running sessions no one holds"
            );
        }
        let runner = Runner {
            inner: self.clone(),
        };
        for log in &orphans {
            runner.start(log, None);
        }
        Ok(orphans.len())
    }

    /// Renew every lease held; a lease lost meanwhile (this process stalled past its expiry
    /// and another took the log over) stops the work on that log here.
    async fn renew(&self) {
        let held: Vec<String> = lock(&self.held).iter().cloned().collect();
        for log in held {
            match self.leases.renew(&log, &self.owner, self.ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(log = %log, "lost the lease to another process; stopping here");
                    lock(&self.held).remove(&log);
                    if let Some(slot) = self.lock().get_mut(&log) {
                        slot.cancel.cancel();
                        slot.again = false;
                    }
                }
                Err(e) => tracing::warn!(log = %log, error = %e, "cannot renew a lease"),
            }
        }
    }
}

/// Act on other processes' nudges for the logs this one owns.
async fn listen(inner: std::sync::Weak<Inner>) {
    let Some((mut nudges, mut missed)) = inner
        .upgrade()
        .map(|i| (i.leases.nudges(), i.leases.nudges_missed()))
    else {
        return;
    };
    loop {
        let heard = tokio::select! {
            n = nudges.recv() => match n {
                Ok(n) => Some(n),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            Ok(()) = missed.changed() => None,
        };
        let Some(inner) = inner.upgrade() else { return };
        let runner = Runner { inner };
        let Some((log, nudge)) = heard else {
            // Some nudges never arrived: wake every log held here, which finds any work they
            // announced in the log itself.
            let held: Vec<String> = lock(&runner.inner.held).iter().cloned().collect();
            tracing::info!(
                logs = held.len(),
                "nudges may have been missed; waking the logs held here"
            );
            for log in held {
                runner.start(&log, None);
            }
            continue;
        };
        // Never relayed again: a process that does not own the log drops the nudge.
        if nudge == Nudge::Interrupt && runner.cancel(&log) {
            continue;
        }
        runner.start(&log, None);
    }
}

/// The heartbeat of the leases held, and the scan for logs whose owner died.
async fn keep(inner: std::sync::Weak<Inner>) {
    let Some(ttl) = inner.upgrade().map(|i| i.ttl) else {
        return;
    };
    let beat = (ttl / 3).max(Duration::from_millis(10));
    let mut since_scan = Duration::ZERO;
    loop {
        tokio::time::sleep(beat).await;
        let Some(inner) = inner.upgrade() else { return };
        inner.renew().await;
        since_scan += beat;
        if since_scan >= ttl / 2 {
            since_scan = Duration::ZERO;
            if let Err(e) = inner.take_over().await {
                tracing::warn!(error = %e, "cannot look for sessions to take over");
            }
        }
    }
}
