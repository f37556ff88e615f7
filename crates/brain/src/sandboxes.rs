//! The sessions' sandboxes: made on a thread's first tool call, kept while it works,
//! released when idle or done. Only a cache: a sandbox lost with the process is made again
//! over the same workspace on the next call.
//!
//! A sandbox belongs to one log (a session's primary thread, or a worker thread), so threads
//! running at once never share a shell; every sandbox of a session mounts the session's one
//! workspace.

use agentd_session::catalog::MountedFile;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentd_egress::{Policy, Proxy};
use agentd_hands::{Limits, Provider, Sandbox, Spec};

pub use crate::admission::Caps;
use crate::admission::{Admission, Slot};

/// A live sandbox, the egress proxy that is its only way out, and when it was last used.
/// Host files and where a sandbox mounts each (`Spec::mounts`).
type Mounts = Vec<(PathBuf, String)>;

struct Live {
    /// The session whose workspace it mounts.
    session: String,
    sandbox: Arc<dyn Sandbox>,
    proxy: Proxy,
    /// The policy the proxy serves; a changed environment gets a new sandbox.
    policy: Policy,
    used: Instant,
    /// Calls running now; an idle sweep never takes a sandbox that is working.
    busy: usize,
    /// Its place under the caps, given back when it goes.
    _slot: Slot,
    /// Where its file resources were written for it to mount; removed with it.
    mounted: Option<PathBuf>,
    /// The session's resources changed while it was at work: the next call gets a new one.
    renew: bool,
}

/// What a new sandbox of a session is made with besides its workspace: read from the catalog
/// and the vaults only when one is made.
#[derive(Debug, Default)]
pub struct Provision {
    /// A bash script run in the new sandbox before it is handed out.
    pub setup: Option<String>,
    /// File resources, mounted read-only.
    pub files: Vec<MountedFile>,
    /// Repository credentials the egress proxy adds.
    pub grants: Vec<agentd_egress::Grant>,
    /// Secrets the egress proxy writes in place of their placeholders.
    pub substitutions: Vec<agentd_egress::Substitution>,
    /// The placeholders, as the sandbox's environment.
    pub env: Vec<(String, String)>,
}

pub struct Sandboxes {
    provider: Arc<dyn Provider>,
    /// Egress sockets live under `<root>/egress/`.
    root: PathBuf,
    /// Workspaces live at `<workspaces>/<session id>`: `<root>/workspaces` unless the operator
    /// shares one directory between hosts (`with_workspaces`).
    workspaces: PathBuf,
    /// Outputs live at `<outputs>/<session id>`: `<root>/outputs`, or `.outputs` in a shared
    /// workspace root, so that they follow a session that moves as its workspace does.
    outputs: PathBuf,
    limits: Limits,
    /// Most bytes a workspace may hold; checked around tool calls.
    disk_quota: Option<u64>,
    admission: Admission,
    live: Mutex<HashMap<String, Live>>,
    /// The TLS interception of HTTPS repositories' requests, made with the first sandbox
    /// that has one.
    intercept: std::sync::OnceLock<Option<Arc<agentd_egress::Interceptor>>>,
}

impl Sandboxes {
    pub fn new(provider: Arc<dyn Provider>, root: PathBuf, limits: Limits) -> Self {
        Sandboxes {
            provider,
            workspaces: root.join("workspaces"),
            outputs: root.join("outputs"),
            root,
            limits,
            disk_quota: None,
            admission: Admission::new(Caps::NONE),
            live: Mutex::new(HashMap::new()),
            intercept: std::sync::OnceLock::new(),
        }
    }

    /// Keep workspaces in `dir` instead of under the root: a directory every agentd process
    /// sees (an NFS mount, say), so a session that moves between hosts keeps its files.
    pub fn with_workspaces(mut self, dir: PathBuf) -> Self {
        self.outputs = dir.join(".outputs");
        self.workspaces = dir;
        self
    }

    /// Cap how many sandboxes live at once; past a cap a tool call gets an error saying so.
    pub fn with_caps(mut self, caps: Caps) -> Self {
        self.admission = Admission::new(caps);
        self
    }

    /// Limit what each workspace may hold. Enforced at the tool layer: once a workspace is
    /// over, write and edit are refused (bash stays, to delete files) and results say so; a
    /// single command may overshoot, each file bounded by the file-size rlimit.
    pub fn with_disk_quota(mut self, bytes: u64) -> Self {
        self.disk_quota = Some(bytes);
        self
    }

    pub fn disk_quota(&self) -> Option<u64> {
        self.disk_quota
    }

    /// Bytes in the session's workspace and outputs (files only, links not followed).
    pub async fn disk_usage(&self, session_id: &str) -> u64 {
        let dirs = [self.workspace(session_id), self.outputs(session_id)];
        tokio::task::spawn_blocking(move || {
            dirs.iter()
                .flat_map(|d| walkdir::WalkDir::new(d).follow_links(false))
                .take(500_000)
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .await
        .unwrap_or(0)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn workspace(&self, session_id: &str) -> PathBuf {
        self.workspaces.join(session_id)
    }

    /// Whether session `session_id`'s workspace is missing from this host while log `log_id`
    /// has no sandbox here: made on another host, which this one does not share a workspace
    /// root with (or deleted by hand).
    pub fn workspace_missing(&self, log_id: &str, session_id: &str) -> bool {
        let dir = self.workspace(session_id);
        !self.live().contains_key(log_id)
            && !dir.exists()
            && !agentd_hands::disk::image_path(&dir).exists()
    }

    /// Make session `session_id`'s workspace afresh, empty, after it was found missing.
    pub fn recreate_workspace(&self, session_id: &str) -> std::io::Result<()> {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(self.workspace(session_id))
    }

    /// The host directory the session's sandboxes see as `/mnt/session/outputs`.
    pub fn outputs(&self, session_id: &str) -> PathBuf {
        self.outputs.join(session_id)
    }

    /// Whether log `log_id` has a live sandbox serving `policy`: `get` then reuses it, and the
    /// files to mount need not be read.
    pub fn has_live(&self, log_id: &str, policy: &Policy) -> bool {
        self.live()
            .get(log_id)
            .is_some_and(|l| l.sandbox.alive() && l.policy == *policy && !l.renew)
    }

    /// The sandbox of log `log_id` over session `session_id`'s workspace, provisioned now —
    /// behind a new egress proxy serving `policy`, with `files` mounted read-only — if it has
    /// none or its last one died.
    pub async fn get(
        &self,
        log_id: &str,
        session_id: &str,
        policy: Policy,
        p: Provision,
    ) -> Result<Arc<dyn Sandbox>, agentd_hands::Error> {
        let Provision {
            setup,
            files,
            grants,
            substitutions,
            env,
        } = p;
        if let Some(live) = self.live().get_mut(log_id)
            && live.sandbox.alive()
            && live.policy == policy
            && !live.renew
        {
            live.used = Instant::now();
            live.busy += 1;
            return Ok(live.sandbox.clone());
        }
        // Dead, made under a network policy the environment no longer has, or over resources
        // the session no longer has.
        self.release(log_id).await;
        let slot = self.slot(session_id).await?;
        let t0 = Instant::now();
        // Short names: a Unix socket path must fit in 108 bytes.
        let n: u32 = rand::random();
        let dir = self.root.join("egress").join(format!("{n:08x}"));
        let io = |e: std::io::Error| {
            agentd_hands::Error::Spawn(format!("cannot start the egress proxy: {e}"))
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        // The provider opens it to the sandbox's user, and to no one else.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io)?;
        let (mounted, mut mounts) = self.write_mounts(n, files).map_err(|e| {
            agentd_hands::Error::Spawn(format!("cannot prepare the session's file resources: {e}"))
        })?;
        let mut add = agentd_egress::Injections {
            grants,
            substitutions,
            intercept: None,
        };
        let mut env = env;
        if add.intercepts() {
            let tls = self.interceptor()?;
            mounts.extend(trust(&dir, &tls).map_err(io)?);
            // Clients with CA stores of their own (Python's requests, Node, ...) are pointed at
            // the bundle too.
            let bundle = format!("{}/{BUNDLE}", agentd_hands::EGRESS_DIR);
            for k in TRUST_VARIABLES {
                env.push(((*k).to_owned(), bundle.clone()));
            }
            add.intercept = Some(tls);
        }
        let proxy =
            Proxy::bind(&dir.join(agentd_hands::EGRESS_SOCKET), policy.clone(), add).map_err(io)?;
        let provisioned = self
            .provider
            .provision(&Spec {
                workspace: self.workspace(session_id),
                outputs: Some(self.outputs(session_id)),
                limits: self.limits,
                egress: Some(dir),
                setup,
                mounts,
                env,
            })
            .await;
        let sandbox = match provisioned {
            Ok(s) => s,
            Err(e) => {
                if let Some(m) = &mounted {
                    let _ = std::fs::remove_dir_all(m);
                }
                return Err(e);
            }
        };
        tracing::info!(log = log_id, took = ?t0.elapsed(), "provisioned a sandbox");
        self.live().insert(
            log_id.to_owned(),
            Live {
                session: session_id.to_owned(),
                sandbox: sandbox.clone(),
                proxy,
                policy,
                used: Instant::now(),
                busy: 1,
                _slot: slot,
                mounted,
                renew: false,
            },
        );
        Ok(sandbox)
    }

    /// The interception CA of this process, made on first use.
    fn interceptor(&self) -> Result<Arc<agentd_egress::Interceptor>, agentd_hands::Error> {
        self.intercept
            .get_or_init(|| match agentd_egress::Interceptor::new() {
                Ok(i) => Some(Arc::new(i)),
                Err(e) => {
                    tracing::error!(error = %e, "no TLS interception for HTTPS repositories");
                    None
                }
            })
            .clone()
            .ok_or_else(|| {
                agentd_hands::Error::Spawn(
                    "this agentd cannot intercept TLS (see its log), so HTTPS repositories cannot be reached with their tokens".into(),
                )
            })
    }

    /// Write `files` where a new sandbox (number `n`) mounts them from: each its own read-only
    /// copy, so a sandbox made later with other resources never changes what this one sees.
    fn write_mounts(
        &self,
        n: u32,
        files: Vec<MountedFile>,
    ) -> std::io::Result<(Option<PathBuf>, Mounts)> {
        use std::os::unix::fs::PermissionsExt;
        if files.is_empty() {
            return Ok((None, Vec::new()));
        }
        let dir = self.root.join("resources").join(format!("{n:08x}"));
        std::fs::create_dir_all(&dir)?;
        let mut mounts = Vec::with_capacity(files.len());
        for f in files {
            let host = dir.join(&f.resource_id);
            std::fs::write(&host, &f.bytes)?;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o444))?;
            mounts.push((host, f.mount_path));
        }
        Ok((Some(dir), mounts))
    }

    /// A place under the caps for a new sandbox over `session_id`'s workspace. At a cap, an
    /// idle sandbox (this session's first) makes way: only sandboxes at work refuse a new one.
    async fn slot(&self, session_id: &str) -> Result<Slot, agentd_hands::Error> {
        let refused = match self.admission.take(session_id) {
            Ok(slot) => return Ok(slot),
            Err(why) => why,
        };
        let idle = {
            let live = self.live();
            let mut idle: Vec<(&String, &Live)> =
                live.iter().filter(|(_, l)| l.busy == 0).collect();
            idle.sort_by_key(|(_, l)| (l.session != session_id, l.used));
            idle.first().map(|(id, _)| (*id).clone())
        };
        let Some(idle) = idle else {
            return Err(agentd_hands::Error::Spawn(refused));
        };
        tracing::info!(log = %idle, "releasing an idle sandbox to make room for a new one");
        self.release(&idle).await;
        self.admission
            .take(session_id)
            .map_err(agentd_hands::Error::Spawn)
    }

    /// A call that `get` started is over.
    pub fn done(&self, log_id: &str) {
        if let Some(live) = self.live().get_mut(log_id) {
            live.busy = live.busy.saturating_sub(1);
            live.used = Instant::now();
        }
    }

    /// Stop the log's sandbox; the workspace stays for the next one.
    pub async fn release(&self, log_id: &str) {
        let live = self.live().remove(log_id);
        if let Some(live) = live {
            live.sandbox.release().await;
            let dir = live.proxy.path().parent().map(std::path::Path::to_owned);
            let mounted = live.mounted.clone();
            drop(live);
            for dir in dir.into_iter().chain(mounted) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// Stop every sandbox of the session (its threads'); the workspace stays.
    /// The session's resources changed: its idle sandboxes go now, and one at work goes once
    /// its call is over (its next call gets a fresh one), so no running command is cut.
    pub async fn renew_session(&self, session_id: &str) {
        let idle: Vec<String> = {
            let mut live = self.live();
            let mut idle = Vec::new();
            for (id, l) in live.iter_mut().filter(|(_, l)| l.session == session_id) {
                if l.busy == 0 {
                    idle.push(id.clone());
                } else {
                    l.renew = true;
                }
            }
            idle
        };
        for log in idle {
            self.release(&log).await;
        }
    }

    /// The sessions that have a live sandbox here.
    pub fn live_sessions(&self) -> Vec<String> {
        let mut s: Vec<String> = self.live().values().map(|l| l.session.clone()).collect();
        s.sort();
        s.dedup();
        s
    }

    pub async fn release_session(&self, session_id: &str) {
        let logs: Vec<String> = self
            .live()
            .iter()
            .filter(|(_, l)| l.session == session_id)
            .map(|(id, _)| id.clone())
            .collect();
        for log in logs {
            self.release(&log).await;
        }
    }

    /// Stop the session's sandboxes and delete its workspace: the session is gone.
    pub async fn destroy(&self, session_id: &str) {
        self.release_session(session_id).await;
        let dir = self.workspace(session_id);
        // The provider may have made more than a directory (a filesystem of its own).
        if let Err(e) = self.provider.remove_workspace(&dir).await {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a workspace");
        }
        // What was collected from it stays in the Files API.
        let dir = self.outputs(session_id);
        if let Err(e) = self.provider.remove_workspace(&dir).await {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an outputs directory");
        }
    }

    /// Release sandboxes unused for `idle`; their sessions get fresh ones when they next call
    /// a tool.
    pub async fn release_idle(&self, idle: Duration) -> usize {
        let stale: Vec<String> = self
            .live()
            .iter()
            .filter(|(_, l)| l.busy == 0 && l.used.elapsed() >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            tracing::info!(session = %id, "releasing an idle sandbox");
            self.release(id).await;
        }
        stale.len()
    }

    pub fn count(&self) -> usize {
        self.live().len()
    }
}

/// The host's CA bundle with `tls`'s CA added, written into the sandbox's egress directory
/// and mounted over the system bundle, so the sandbox's git (and curl, Python, ...) trusts the
/// proxy that adds its repositories' tokens. None where the host has no bundle to stand in for.
fn trust(
    dir: &Path,
    tls: &agentd_egress::Interceptor,
) -> std::io::Result<Option<(PathBuf, String)>> {
    let path = dir.join(BUNDLE);
    std::fs::write(&path, tls.bundle())?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o444))?;
    // A mount over a link would land wherever it points: only over a plain file.
    let system = std::fs::symlink_metadata(agentd_egress::SYSTEM_BUNDLE);
    if !system.is_ok_and(|m| m.file_type().is_file()) {
        return Ok(None);
    }
    Ok(Some((path, agentd_egress::SYSTEM_BUNDLE.to_owned())))
}

/// The CA bundle's name in the sandbox's egress directory.
const BUNDLE: &str = "ca-bundle.pem";

/// The variables common clients read a CA bundle from.
const TRUST_VARIABLES: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
];
