//! Cursor pagination as the SDK's `SyncPageCursor` reads it: `data` and an opaque `next_page`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_page: Option<String>,
}

/// Default and maximum `limit` of every list endpoint.
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
