//! The hands: where tools run.
//!
//! Owns: the sandbox interface (`Provider::provision`, `Sandbox::execute`, `Sandbox::release`),
//! the built-in toolset's definitions and input checks (`tools`), the bubblewrap provider
//! (`bwrap`) with its whole-sandbox limits (`cgroup`) and workspace quotas (`disk`), an
//! unconfined provider for measuring what the sandbox costs (`unconfined`), the helper that
//! runs inside every sandbox (`helper`): a persistent bash and the file tools, and agentd's end
//! of the pipe to it (`connection`, speaking `protocol`), the launcher that starts bwrap
//! with no inherited descriptor (`launch`), and reading what a sandbox left in its outputs
//! directory without following its links (`outputs`). Must not touch: sessions, the log, models, or any
//! credential — a sandbox gets a workspace directory and a policy, nothing else.

pub mod bwrap;
pub mod cgroup;
mod connection;
pub mod disk;
pub mod helper;
pub mod launch;
pub mod outputs;
mod protocol;
pub mod tools;
mod unconfined;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

pub use protocol::{Image, Output};

/// What a sandbox is made from. The workspace survives the sandbox: a fresh sandbox over the
/// same directory sees the same files.
/// The name of the egress proxy's socket in `Spec::egress`: the brain binds it there, the
/// provider mounts it into the sandbox.
pub const EGRESS_SOCKET: &str = "proxy.sock";

/// Where a sandbox sees `Spec::egress` (read-only): the proxy's socket, and what else the brain
/// leaves there for the sandbox (a CA bundle).
pub const EGRESS_DIR: &str = "/run/agentd/egress";

/// Where a sandbox sees its session's outputs directory.
pub const OUTPUTS: &str = "/mnt/session/outputs";

#[derive(Debug, Clone)]
pub struct Spec {
    /// Host directory mounted read-write at `/workspace`.
    pub workspace: PathBuf,
    /// Host directory mounted read-write at `/mnt/session/outputs` (`OUTPUTS`): where the
    /// agent leaves what it delivers. Like the workspace it outlives the sandbox.
    pub outputs: Option<PathBuf>,
    pub limits: Limits,
    /// Host directory holding `EGRESS_SOCKET`, the egress proxy for this sandbox. Without it
    /// the sandbox has no network at all.
    pub egress: Option<PathBuf>,
    /// A bash script run in the new sandbox before it is handed out (installing packages);
    /// if it fails, provisioning fails with its output.
    pub setup: Option<String>,
    /// Host files mounted read-only into the sandbox, each at its absolute path there (a
    /// session's file resources). Paths are checked by the caller
    /// (`agentd_wire::resource::check_mount_path`).
    pub mounts: Vec<(PathBuf, String)>,
    /// Environment variables every process of the sandbox sees, after agentd's own: the
    /// placeholders of the session's secrets (the egress proxy writes the secrets in their
    /// place), never a secret.
    pub env: Vec<(String, String)>,
}

/// Resource limits applied inside every sandbox.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Address space per process (rlimit), and the whole sandbox's memory where cgroups are
    /// available, bytes.
    pub memory_bytes: u64,
    /// Processes (and threads) the sandbox's user may run at once.
    pub processes: u64,
    /// CPU seconds per process.
    pub cpu_seconds: u64,
    /// Largest file a process may write, bytes.
    pub file_bytes: u64,
    /// Size of the sandbox's private `/tmp`, bytes.
    pub tmp_bytes: u64,
    /// Size of the sandbox's `/dev/shm`, bytes: a tmpfs of its own, so POSIX shared memory
    /// works but cannot take half the host's RAM as bwrap's bare `/dev` would.
    pub shm_bytes: u64,
    /// CPU the whole sandbox may use, in percent of one core (cgroups only).
    pub cpu_percent: u64,
    /// What the workspace may hold, bytes; 0 for no quota. Enforced by the workspace's own
    /// filesystem where `disk::Disks` can make one, else not by the hands at all.
    pub disk_bytes: u64,
    /// Files and directories the workspace may hold; 0 for ext4's default (one per 16 KiB).
    pub disk_inodes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 4 << 30,
            processes: 256,
            cpu_seconds: 3600,
            file_bytes: 1 << 30,
            tmp_bytes: 512 << 20,
            // Docker's default: enough for Python's multiprocessing and browsers' IPC.
            shm_bytes: 64 << 20,
            cpu_percent: 100,
            disk_bytes: 0,
            disk_inodes: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot prepare the workspace {path}: {source}")]
    Workspace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the sandbox: {0}")]
    Spawn(String),
    #[error("the sandbox's setup failed:\n{0}")]
    Setup(String),
}

/// Makes sandboxes.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    async fn provision(&self, spec: &Spec) -> Result<Arc<dyn Sandbox>, Error>;

    /// Delete a workspace, with whatever this provider made to hold it. No sandbox may be
    /// using it any more.
    async fn remove_workspace(&self, dir: &Path) -> std::io::Result<()> {
        match tokio::fs::remove_dir_all(dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// One live sandbox. Calls are serialised; a dead sandbox answers every call with an error
/// output and reports `alive() == false`, so its owner can provision a fresh one.
#[async_trait]
pub trait Sandbox: Send + Sync + 'static {
    /// Run built-in tool `name` with `input`. Never fails: every problem is an error output the
    /// model can read.
    async fn execute(&self, name: &str, input: &serde_json::Value) -> Output;

    fn alive(&self) -> bool;

    /// Stop every process in the sandbox. The workspace stays.
    async fn release(&self);
}
