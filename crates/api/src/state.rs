//! What every handler shares.

use std::sync::Arc;

use agentd_brain::{Previews, Runner};
use agentd_catalog::Storage;
use agentd_models::Registry;

use crate::auth::{KeyCache, RateLimit};
use crate::streams::{DEFAULT_STREAMS_PER_KEY, StreamCaps};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Storage>,
    pub runner: Runner,
    pub previews: Previews,
    pub models: Arc<Registry>,
    pub(crate) keys: KeyCache,
    pub(crate) streams: StreamCaps,
    pub(crate) work: crate::routes::work::WorkSettings,
    /// The vault key's sealer and the resolver over this store; None refuses credentials.
    pub(crate) vault: Option<VaultState>,
}

#[derive(Clone)]
pub(crate) struct VaultState {
    pub sealer: agentd_vault::Sealer,
    pub resolver: agentd_vault::Resolver,
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
            streams: StreamCaps::new(DEFAULT_STREAMS_PER_KEY),
            work: crate::routes::work::WorkSettings::new(agentd_catalog::work::DEFAULT_TTL_SECONDS),
            vault: None,
        }
    }

    /// The lease a work item of a self_hosted environment gets until its worker asks for one.
    #[must_use]
    pub fn with_work_lease_ttl(mut self, seconds: u32) -> Self {
        self.work = crate::routes::work::WorkSettings::new(seconds);
        self
    }

    /// Seal credentials with `sealer` (the vault key `agentd serve` checked at start).
    #[must_use]
    /// Requests made for a credential (token endpoints, `mcp_oauth_validate`) reach what
    /// `reach` allows: public addresses and the ranges the operator opened.
    /// `resolver` is the one the edge (the MCP client) uses too: one refresh per credential at a
    /// time holds only within one resolver, and a refresh token may be single-use.
    pub fn with_vault(
        mut self,
        sealer: agentd_vault::Sealer,
        resolver: agentd_vault::Resolver,
    ) -> Self {
        self.vault = Some(VaultState { sealer, resolver });
        self
    }

    /// The resolver the edge (MCP client, egress proxy) asks for a session's credentials.
    pub fn vault_resolver(&self) -> Option<agentd_vault::Resolver> {
        self.vault.as_ref().map(|v| v.resolver.clone())
    }

    /// End every event stream (and any opened later): the server is shutting down, and a
    /// stream never ends by itself, so its connection would hold the shutdown up forever.
    pub fn close_streams(&self) {
        self.streams.close_all();
    }

    /// Event streams one API key may hold open at once; past it a new one gets a 429.
    #[must_use]
    pub fn with_max_streams_per_key(mut self, max: usize) -> Self {
        self.streams = StreamCaps::new(max);
        self
    }
}
