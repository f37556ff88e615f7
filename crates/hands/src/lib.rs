//! The hands: where tools run.
//!
//! Owns: the sandbox interface (`Provider::provision`, `Sandbox::execute`, `Sandbox::release`),
//! the built-in toolset's definitions and input checks (`tools`), the bubblewrap provider
//! (`bwrap`) and its whole-sandbox limits (`cgroup`), an unconfined provider for measuring what
//! the sandbox costs (`unconfined`), the helper that runs inside every sandbox (`helper`): a
//! persistent bash and the file tools, and agentd's end of the pipe to it (`connection`,
//! speaking `protocol`), and the launcher that starts bwrap with no inherited descriptor
//! (`launch`). Must not touch: sessions, the log, models, or any credential — a sandbox gets a
//! workspace directory and a policy, nothing else.

pub mod bwrap;
pub mod cgroup;
mod connection;
pub mod helper;
pub mod launch;
mod protocol;
pub mod tools;
mod unconfined;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

pub use protocol::{Image, Output};

/// What a sandbox is made from. The workspace survives the sandbox: a fresh sandbox over the
/// same directory sees the same files.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Host directory mounted read-write at `/workspace`.
    pub workspace: PathBuf,
    pub limits: Limits,
    /// Host directory holding `proxy.sock`, the egress proxy for this sandbox. Without it the
    /// sandbox has no network at all.
    pub egress: Option<PathBuf>,
    /// A bash script run in the new sandbox before it is handed out (installing packages);
    /// if it fails, provisioning fails with its output.
    pub setup: Option<String>,
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
    /// CPU the whole sandbox may use, in percent of one core (cgroups only).
    pub cpu_percent: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 4 << 30,
            processes: 256,
            cpu_seconds: 3600,
            file_bytes: 1 << 30,
            tmp_bytes: 512 << 20,
            cpu_percent: 100,
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
