//! The helper as a plain child process in the workspace, for hosts where measuring the
//! sandbox's own cost matters more than isolation.

use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::process::Command;

use crate::connection::{HelperCommand, start};
use crate::helper::Config;
use crate::{Error, Provider, Sandbox, Spec};

/// Runs the helper with no isolation at all, in the workspace. Not a sandbox: it exists only
/// so benchmarks can measure what the sandbox itself costs.
pub struct Unconfined {
    pub helper: HelperCommand,
}

#[async_trait]
impl Provider for Unconfined {
    async fn provision(&self, spec: &Spec) -> Result<Arc<dyn Sandbox>, Error> {
        std::fs::create_dir_all(&spec.workspace).map_err(|source| Error::Workspace {
            path: spec.workspace.clone(),
            source,
        })?;
        let mut cmd = Command::new(&self.helper.exe);
        cmd.args(&self.helper.args)
            .args(
                Config {
                    workdir: spec.workspace.clone(),
                    limits: None,
                    egress: None,
                }
                .to_args(),
            )
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| Error::Spawn(format!("cannot run the helper: {e}")))?;
        start(child, "the helper", None).await
    }
}
