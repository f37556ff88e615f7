//! Live previews (`event_start` / `event_delta`) of events still being produced.
//!
//! Previews are best effort and never logged: a stream that misses one loses nothing, since
//! the final event carries the complete content under the same id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentd_wire::event::Preview;
use tokio::sync::broadcast;

/// Previews buffered per subscriber before the slowest starts missing some.
const CAPACITY: usize = 1024;

#[derive(Clone, Default)]
pub struct Previews {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Published>>>>,
}

/// A preview and the log position it follows: everything up to `after` was durable before
/// it was made, so a stream sends it after those events and before any later one.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub after: u64,
    pub preview: Preview,
}

impl Previews {
    pub fn subscribe(&self, log_id: &str) -> broadcast::Receiver<Published> {
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        ch.entry(log_id.to_owned())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    /// Whether anyone listens; producers skip building previews nobody reads.
    pub fn wanted(&self, log_id: &str) -> bool {
        let ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        ch.get(log_id).is_some_and(|tx| tx.receiver_count() > 0)
    }

    pub fn publish(&self, log_id: &str, after: u64, preview: Preview) {
        let p = Published { after, preview };
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = ch.get(log_id)
            && tx.send(p).is_err()
        {
            ch.remove(log_id);
        }
    }
}
