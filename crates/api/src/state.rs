//! What every handler shares.

use std::sync::Arc;

use agentd_brain::{Previews, Runner};
use agentd_catalog::Storage;
use agentd_models::Registry;

use crate::auth::{KeyCache, RateLimit};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Storage>,
    pub runner: Runner,
    pub previews: Previews,
    pub models: Arc<Registry>,
    pub(crate) keys: KeyCache,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Storage>,
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
