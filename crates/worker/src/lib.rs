//! The self-hosted worker (`agentd worker`): the hands of a `self_hosted` environment's
//! sessions on a machine of the user's.
//!
//! Owns: the poll → ack → serve loop over agentd's work queue (`run`), each item's lease
//! (`lease`), serving a session's tool calls in the bubblewrap sandbox (`session`), and the
//! HTTP calls all of that makes (`api`). It speaks the same protocol the SDK's
//! `EnvironmentWorker` does, so agentd cannot tell them apart. Must not touch: agentd's
//! storage, models, or any credential but the environment key and the per-item session
//! tokens it is handed — and neither of those enters a sandbox: the sandbox gets its
//! workspace and an egress proxy, nothing else.

pub mod api;
pub mod lease;
pub mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use agentd_brain::Sandboxes;
use agentd_egress::Policy;

use api::{Api, CallError, Work};
use lease::{End, Lease};

pub struct Config {
    /// agentd's base URL.
    pub url: String,
    pub environment: String,
    /// The environment key: the worker's standing credential, for the queue only.
    pub key: String,
    /// Sent with each poll (`anthropic-worker-id`).
    pub worker_id: String,
    /// Where sandboxes and their workspaces (`<workdir>/<session id>`) are made.
    pub sandboxes: Arc<Sandboxes>,
    /// What the sandboxes may reach, enforced on this host by an egress proxy per sandbox.
    pub policy: Policy,
    /// Sessions served at once.
    pub max_sessions: usize,
    /// How long a session that rests is kept before its item is handed back.
    pub max_idle: Duration,
    pub workdir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("agentd refused this worker's poll: {0}")]
    Refused(CallError),
    #[error("cannot start: {0}")]
    Start(CallError),
}

/// Serve environment `cfg.environment` until `shutdown`; then finish the calls running,
/// hand every item back, and return. Fails only when agentd refuses the worker itself (a
/// revoked key, an unknown environment); an agentd that is down is waited for.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let cfg = Arc::new(cfg);
    let api = Api::new(&cfg.url, &cfg.worker_id).map_err(Error::Start)?;
    let slots = Arc::new(Semaphore::new(cfg.max_sessions.max(1)));
    let mut items = JoinSet::new();
    let mut attempt = 0u32;
    tracing::info!(environment = %cfg.environment, worker = %cfg.worker_id, "polling for work");
    let outcome = loop {
        while items.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break Ok(()),
        };
        let polled = tokio::select! {
            r = api.poll(&cfg.environment, &cfg.key) => r,
            () = shutdown.cancelled() => break Ok(()),
        };
        let item = match polled {
            Ok(Some(item)) => item,
            Ok(None) => {
                attempt = 0;
                continue;
            }
            Err(e) if !e.transient() => break Err(Error::Refused(e)),
            Err(e) => {
                attempt += 1;
                let wait = session::backoff(attempt + 2);
                tracing::warn!(error = %e, ?wait, "poll failed; trying again");
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = shutdown.cancelled() => break Ok(()),
                }
            }
        };
        attempt = 0;
        if let Err(e) = api.ack(&cfg.environment, &item.id, &cfg.key).await {
            tracing::warn!(work = %item.id, error = %e, "cannot acknowledge the item");
            if !e.transient() && e.status() != Some(409) {
                let _ = api.stop(&cfg.environment, &item.id, &cfg.key).await;
            }
            continue;
        }
        tracing::info!(work = %item.id, session = %item.data.id, "claimed");
        let (cfg, api, stop) = (cfg.clone(), api.clone(), shutdown.clone());
        items.spawn(async move {
            let _permit = permit;
            serve_item(&cfg, &api, item, &stop).await;
        });
    };
    // Items finish their running call, answer it, and hand themselves back.
    while items.join_next().await.is_some() {}
    outcome
}

/// One claimed item from start to stop: heartbeat it while its session is served, then stop
/// it unless it was lost (then it is someone else's).
async fn serve_item(cfg: &Config, api: &Api, item: Work, shutdown: &CancellationToken) {
    let token = api::sessions_token(item.secret.as_deref()).unwrap_or_else(|| cfg.key.clone());
    let lease = Lease::default();
    let beats = tokio::spawn(lease::keep(
        api.clone(),
        item.environment_id.clone(),
        item.id.clone(),
        token.clone(),
        lease.clone(),
    ));
    if item.data.kind == "session" {
        let served = session::Served {
            api,
            token: &token,
            session_id: &item.data.id,
            lease: &lease,
            sandboxes: &cfg.sandboxes,
            policy: &cfg.policy,
            max_idle: cfg.max_idle,
            shutdown,
        };
        if let Err(e) = served.run().await {
            tracing::error!(work = %item.id, error = %e, "serving the session failed");
        }
        cfg.sandboxes.release_session(&item.data.id).await;
    }
    lease.finish(End::Done);
    let _ = beats.await;
    if lease.lost() {
        tracing::info!(work = %item.id, "lease lost; leaving the item to whoever holds it");
        return;
    }
    let mut attempt = 0;
    loop {
        match api.stop(&item.environment_id, &item.id, &token).await {
            Err(e) if e.transient() && attempt < 8 => {
                attempt += 1;
                tokio::time::sleep(session::backoff(attempt)).await;
                continue;
            }
            Err(e) if e.status() != Some(409) => {
                tracing::warn!(work = %item.id, error = %e, "cannot stop the item")
            }
            _ => {}
        }
        break;
    }
    tracing::info!(work = %item.id, session = %item.data.id, "item handed back");
}
