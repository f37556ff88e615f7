//! What every handler shares.

use std::sync::Arc;

use agentd_brain::{Previews, Runner};
use agentd_models::Registry;
use agentd_store::Store;

use crate::auth::{KeyCache, RateLimit};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub runner: Runner,
    pub previews: Previews,
    pub models: Arc<Registry>,
    pub(crate) keys: KeyCache,
}

impl AppState {
    pub fn new(
        store: Store,
        runner: Runner,
        previews: Previews,
        models: Arc<Registry>,
        rate: RateLimit,
    ) -> Self {
        AppState {
            store,
            runner,
            previews,
            models,
            keys: KeyCache::new(rate),
        }
    }
}
