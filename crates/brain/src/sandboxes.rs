//! The sessions' sandboxes: made on a session's first tool call, kept while it works,
//! released when idle or done. Only a cache: a sandbox lost with the process is made again
//! over the same workspace on the next call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentd_hands::{Limits, Provider, Sandbox, Spec};

/// A live sandbox and when it was last used.
type Live = (Arc<dyn Sandbox>, Instant);

pub struct Sandboxes {
    provider: Arc<dyn Provider>,
    /// Workspaces live at `<root>/<session id>`.
    root: PathBuf,
    limits: Limits,
    live: Mutex<HashMap<String, Live>>,
}

impl Sandboxes {
    pub fn new(provider: Arc<dyn Provider>, root: PathBuf, limits: Limits) -> Self {
        Sandboxes {
            provider,
            root,
            limits,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn workspace(&self, session_id: &str) -> PathBuf {
        self.root.join(session_id)
    }

    /// The session's sandbox, provisioned now if it has none or its last one died.
    pub async fn get(&self, session_id: &str) -> Result<Arc<dyn Sandbox>, agentd_hands::Error> {
        if let Some((sb, used)) = self.live().get_mut(session_id)
            && sb.alive()
        {
            *used = Instant::now();
            return Ok(sb.clone());
        }
        let t0 = Instant::now();
        let sb = self
            .provider
            .provision(&Spec {
                workspace: self.workspace(session_id),
                limits: self.limits,
            })
            .await?;
        tracing::info!(session = session_id, took = ?t0.elapsed(), "provisioned a sandbox");
        self.live()
            .insert(session_id.to_owned(), (sb.clone(), Instant::now()));
        Ok(sb)
    }

    /// Stop the session's sandbox; its workspace stays for the next one.
    pub async fn release(&self, session_id: &str) {
        let sb = self.live().remove(session_id);
        if let Some((sb, _)) = sb {
            sb.release().await;
        }
    }

    /// Stop the sandbox and delete the workspace: the session is gone.
    pub async fn destroy(&self, session_id: &str) {
        self.release(session_id).await;
        let dir = self.workspace(session_id);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a workspace");
        }
    }

    /// Release sandboxes unused for `idle`; their sessions get fresh ones when they next call
    /// a tool.
    pub async fn release_idle(&self, idle: Duration) -> usize {
        let stale: Vec<(String, Arc<dyn Sandbox>)> = {
            let mut live = self.live();
            let ids: Vec<String> = live
                .iter()
                .filter(|(_, (_, used))| used.elapsed() >= idle)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| live.remove(&id).map(|(sb, _)| (id, sb)))
                .collect()
        };
        for (id, sb) in &stale {
            tracing::info!(session = %id, "releasing an idle sandbox");
            sb.release().await;
        }
        stale.len()
    }

    pub fn count(&self) -> usize {
        self.live().len()
    }
}
