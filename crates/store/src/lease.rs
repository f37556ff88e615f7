//! `agentd_session::lease::Leases` for the one process a SQLite file serves: the leases live
//! in memory, since no other process could hold one, and nudges go round this process only.
//! An append reports the holder of the log's live lease (`Head::holder`) from the same map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::broadcast;

use agentd_catalog::{Sessions, Threads};
use agentd_session::Result;
use agentd_session::lease::{Leases, Nudge};

use crate::Store;

/// The leases held, by log id: owner and expiry.
#[derive(Clone)]
pub(crate) struct Held {
    leases: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    nudges: broadcast::Sender<(String, Nudge)>,
}

impl Default for Held {
    fn default() -> Self {
        Held {
            leases: Arc::default(),
            nudges: broadcast::channel(1024).0,
        }
    }
}

impl Held {
    /// The live lease holder of `log_id`, as `Head::holder` carries it.
    pub(crate) fn holder(&self, log_id: &str) -> Option<u64> {
        let leases = self.lock();
        let (owner, until) = leases.get(log_id)?;
        (*until > Instant::now()).then(|| agentd_session::lease::key(owner))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn storage(e: agentd_catalog::Error) -> agentd_session::Error {
    match e {
        agentd_catalog::Error::Unavailable(m) => agentd_session::Error::Unavailable(m),
        e => agentd_session::Error::Storage(e.to_string()),
    }
}

#[async_trait]
impl Leases for Store {
    async fn acquire(&self, log_id: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let mut leases = self.held.lock();
        let now = Instant::now();
        match leases.get(log_id) {
            Some((holder, until)) if holder != owner && *until > now => Ok(false),
            _ => {
                leases.insert(log_id.to_owned(), (owner.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn renew(&self, log_id: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let mut leases = self.held.lock();
        let now = Instant::now();
        match leases.get_mut(log_id) {
            Some((holder, until)) if holder == owner && *until > now => {
                *until = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, log_id: &str, owner: &str) -> Result<()> {
        let mut leases = self.held.lock();
        if leases
            .get(log_id)
            .is_some_and(|(holder, _)| holder == owner)
        {
            leases.remove(log_id);
        }
        Ok(())
    }

    async fn orphaned(&self) -> Result<Vec<String>> {
        let mut running = self.running_sessions().await.map_err(storage)?;
        running.extend(self.running_threads().await.map_err(storage)?);
        let leases = self.held.lock();
        let now = Instant::now();
        running.retain(|log| leases.get(log).is_none_or(|(_, until)| *until <= now));
        Ok(running)
    }

    async fn nudge(&self, log_id: &str, nudge: Nudge) -> Result<()> {
        // No one listening is not a failure: no one could own the log.
        let _ = self.held.nudges.send((log_id.to_owned(), nudge));
        Ok(())
    }

    fn nudges(&self) -> broadcast::Receiver<(String, Nudge)> {
        self.held.nudges.subscribe()
    }
}
