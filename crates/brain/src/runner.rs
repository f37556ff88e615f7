//! Runs at most one wake per log at a time (a session's, or a worker thread's), many logs at
//! once.
//!
//! `notify` after anything is appended that may need the harness; `interrupt` cancels the
//! wake in flight (dropping its upstream request). A notify that lands while a wake runs
//! makes that wake run once more, so no append is ever left unseen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::{Error, Harness};

#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    harness: Harness,
    active: Mutex<HashMap<String, Slot>>,
}

struct Slot {
    cancel: CancellationToken,
    again: bool,
}

impl Runner {
    /// Must be called inside a Tokio runtime: it starts the task that wakes the logs the
    /// harness hands work to (threads and their parents).
    pub fn new(harness: Harness) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let inner = Arc::new(Inner {
            harness: harness.with_wakeups(tx),
            active: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(log_id) = rx.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                Runner { inner }.notify(&log_id);
            }
        });
        Runner { inner }
    }

    pub fn harness(&self) -> &Harness {
        &self.inner.harness
    }

    /// Make sure a wake of `log_id` runs after this call.
    pub fn notify(&self, log_id: &str) {
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
        tokio::spawn(async move { inner.run(log_id).await });
    }

    /// Cancel the wake in flight, then wake again to log the rest.
    pub fn interrupt(&self, log_id: &str) {
        {
            let mut active = self.inner.lock();
            if let Some(slot) = active.get_mut(log_id) {
                slot.cancel.cancel();
                slot.again = true;
                return;
            }
        }
        self.notify(log_id);
    }

    /// Stop working on a log for good (its session was deleted).
    pub fn forget(&self, log_id: &str) {
        if let Some(slot) = self.inner.lock().get_mut(log_id) {
            slot.cancel.cancel();
            slot.again = false;
        }
    }

    /// Whether a wake of `log_id` is in flight or queued.
    pub fn is_active(&self, log_id: &str) -> bool {
        self.inner.lock().contains_key(log_id)
    }

    /// Number of logs with a wake in flight.
    pub fn active(&self) -> usize {
        self.inner.lock().len()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(self: Arc<Self>, log_id: String) {
        loop {
            let cancel = match self.lock().get(&log_id) {
                Some(slot) => slot.cancel.clone(),
                None => return,
            };
            match self.harness.wake(&log_id, &cancel).await {
                Ok(()) => {}
                Err(Error::SessionNotFound(_)) => {
                    self.lock().remove(&log_id);
                    return;
                }
                Err(e) => {
                    // Storage trouble: the log still says what to do, so back off and retry
                    // rather than leave the session running with no one working on it.
                    tracing::error!(session = %log_id, error = %e, "wake failed; retrying in 1s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    if let Some(slot) = self.lock().get_mut(&log_id) {
                        slot.again = true;
                    }
                }
            }
            let mut active = self.lock();
            let Some(slot) = active.get_mut(&log_id) else {
                return;
            };
            if slot.again {
                slot.again = false;
                if slot.cancel.is_cancelled() {
                    slot.cancel = CancellationToken::new();
                }
            } else {
                active.remove(&log_id);
                return;
            }
        }
    }
}
