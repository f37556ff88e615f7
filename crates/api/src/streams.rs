//! The cap on event streams one API key holds open at once. A stream costs a connection, a
//! task and a log subscription for as long as the client likes, so without a cap one key could
//! take every descriptor the server has.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use agentd_wire::ErrorKind;
use tokio::sync::watch;

use crate::error::{ApiError, ApiResult};

/// Streams a key may hold open unless `serve` is told otherwise.
pub const DEFAULT_STREAMS_PER_KEY: usize = 64;

/// Identifies the API key a request came with (its SHA-256), set by `authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub(crate) [u8; 32]);

#[derive(Clone)]
pub(crate) struct StreamCaps {
    max: usize,
    open: Arc<Mutex<HashMap<KeyId, usize>>>,
    /// Set when the server shuts down: every stream ends, so that its connection can close
    /// and the client reconnects (with Last-Event-ID) to a process that stays.
    closing: Arc<watch::Sender<bool>>,
}

/// One open stream, counted against its key until dropped.
pub(crate) struct StreamSlot {
    caps: StreamCaps,
    key: KeyId,
}

impl StreamCaps {
    pub fn new(max: usize) -> Self {
        StreamCaps {
            max,
            open: Arc::default(),
            closing: Arc::new(watch::channel(false).0),
        }
    }

    /// Resolves to true once the server shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        let mut rx = self.closing.subscribe();
        // Closed already (between a stream's opening and this call): say so at once.
        if *rx.borrow() {
            rx.mark_changed();
        }
        rx
    }

    /// End every open stream, and every stream opened from now on.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// A slot for one more stream of `key`, or a 429 naming the limit.
    pub fn open(&self, key: KeyId) -> ApiResult<StreamSlot> {
        if *self.closing.borrow() {
            return Err(ApiError::unavailable(
                "this server is shutting down; connect to another",
            ));
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_default();
        if *n >= self.max {
            return Err(ApiError::new(
                ErrorKind::RateLimitError,
                format!(
                    "this API key already has {} event streams open, the limit per key; close one before opening another",
                    self.max
                ),
            ));
        }
        *n += 1;
        Ok(StreamSlot {
            caps: self.clone(),
            key,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .caps
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}
