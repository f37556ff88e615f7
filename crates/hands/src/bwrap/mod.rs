//! Sandboxes made with bubblewrap: new user, mount, PID, IPC, UTS, network and cgroup
//! namespaces; a read-only system; one writable workspace and the session's outputs
//! directory (`/mnt/session/outputs`); no other host path; no
//! capabilities; no nested user namespaces; a cleared environment. When agentd runs as root the
//! sandbox runs as an unprivileged host uid too, so its files are not root's and process limits
//! apply.
//!
//! Inside runs the helper (`agentd sandbox-helper`), bind-mounted read-only, spoken to over the
//! bwrap child's stdin and stdout (`connection`).
//!
//! Here: checking bwrap runs, preparing the workspace, and spawning bwrap inside the sandbox's
//! cgroup. The command line is `command`'s; the /etc files it mounts are `etc`'s.

mod command;
mod etc;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::cgroup::{Cgroups, Totals};
use crate::connection::start;
use crate::disk::Disks;
use crate::launch;
use crate::{Error, Limits, Provider, Sandbox, Spec};
use etc::Etc;

pub use command::WORKSPACE;
// Callers name both providers and the helper's command through this module.
pub use crate::connection::HelperCommand;
pub use crate::unconfined::Unconfined;

/// Printed by a setup script that ran to its end.
const SETUP_OK: &str = "__AGENTD_SETUP_OK__";

pub struct Bwrap {
    helper: HelperCommand,
    /// Host uid and gid to run as; set when agentd runs as root.
    host_user: Option<(u32, u32)>,
    etc: Etc,
    cgroups: Cgroups,
    disks: Disks,
}

impl Bwrap {
    /// Checks that bubblewrap runs here; when running as root, sandboxes run as `nobody`.
    pub fn new(helper: HelperCommand) -> Result<Bwrap, Error> {
        let host_user = nix::unistd::geteuid().is_root().then_some((65534, 65534));
        Self::with_host_user(helper, host_user)
    }

    pub fn with_host_user(
        helper: HelperCommand,
        host_user: Option<(u32, u32)>,
    ) -> Result<Bwrap, Error> {
        let ok = std::process::Command::new("bwrap")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(Error::Spawn(
                "bubblewrap (bwrap) is not installed; on Debian: apt-get install bubblewrap".into(),
            ));
        }
        let etc = Etc::create().map_err(|e| Error::Spawn(e.to_string()))?;
        let cgroups = Cgroups::detect();
        // Groups left by a previous agentd that died are empty now; clear them away.
        cgroups.remove_stale();
        // Capped from the start; an operator's own totals come through `limit_total`.
        if let Err(e) = cgroups.limit_total(&Totals::for_this_machine()) {
            tracing::warn!(error = %e, "cannot cap all sandboxes together");
        }
        match &cgroups {
            Cgroups::Unavailable(why) => {
                tracing::warn!(%why, "sandboxes get rlimits but no cgroup limits")
            }
            c => tracing::info!(cgroups = ?c, "sandboxes get cgroup limits"),
        }
        Ok(Bwrap {
            helper,
            host_user,
            etc,
            cgroups,
            disks: Disks::detect(),
        })
    }

    /// The cgroup mechanism sandboxes get here.
    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// Cap what all sandboxes together may use (where cgroups are available).
    pub fn limit_total(&self, totals: &Totals) -> Result<(), Error> {
        self.cgroups
            .limit_total(totals)
            .map_err(|e| Error::Spawn(format!("cannot cap all sandboxes together: {e}")))
    }

    /// How workspaces get their disk quota here.
    pub fn disks(&self) -> &Disks {
        &self.disks
    }

    /// A directory the sandbox writes (its workspace, its outputs): made if new, its quota
    /// attached, the sandbox user's alone.
    async fn prepare_workspace(&self, dir: &Path, limits: &Limits) -> Result<(), Error> {
        let err = |source| Error::Workspace {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        // Mounting runs mkfs and mount; keep the runtime's threads free meanwhile.
        let (disks, d, l) = (self.disks.clone(), dir.to_owned(), *limits);
        tokio::task::spawn_blocking(move || disks.attach(&d, &l))
            .await
            .map_err(|e| err(std::io::Error::other(e)))?
            .map_err(err)?;
        if let Some((uid, gid)) = self.host_user {
            // lchown: never follow a link, whoever made it.
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(err)?;
        }
        // The session's files are its own: no other local user reads them.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(err)?;
        Ok(())
    }

    /// The egress directory and its socket belong to the sandbox's user alone: anyone else
    /// who could connect would get this sandbox's network allow-list.
    fn prepare_egress(&self, dir: &Path) -> Result<(), Error> {
        let err =
            |e: std::io::Error| Error::Spawn(format!("cannot hand over the egress socket: {e}"));
        if let Some((uid, gid)) = self.host_user {
            for p in [dir.to_owned(), dir.join(command::EGRESS_SOCKET)] {
                std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(err)?;
            }
        }
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(err)
    }
}

#[async_trait]
impl Provider for Bwrap {
    async fn provision(&self, spec: &Spec) -> Result<Arc<dyn Sandbox>, Error> {
        self.prepare_workspace(&spec.workspace, &spec.limits)
            .await?;
        if let Some(dir) = &spec.outputs {
            // Made like a workspace, with a filesystem of its own under the same quota, so
            // the outputs are no way around it.
            self.prepare_workspace(dir, &spec.limits).await?;
        }
        if let Some(dir) = &spec.egress {
            self.prepare_egress(dir)?;
        }
        let group = self
            .cgroups
            .create(&Cgroups::group_name(), &spec.limits)
            .map_err(|e| Error::Spawn(format!("cannot create the sandbox's cgroup: {e}")))?;
        // The launcher closes what agentd inherited, then becomes bwrap; with a cgroup it
        // first waits until it has joined the group.
        let mut cmd = Command::new(&self.helper.exe);
        cmd.args(&self.helper.args).arg(launch::LAUNCH);
        if group.is_some() {
            cmd.arg(launch::AFTER_GO);
        }
        cmd.arg("bwrap")
            .args(command::args(&self.helper, self.etc.path(), spec))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.host_user {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Spawn(format!("cannot run bwrap: {e}")))?;
        if let Some(g) = &group {
            let joined = match child.id() {
                Some(pid) => g.add(pid),
                None => Err(std::io::Error::other("bwrap exited at once")),
            };
            let go = match (joined, child.stdin.as_mut()) {
                (Ok(()), Some(stdin)) => stdin.write_all(b"\n").await.map_err(|e| e.to_string()),
                (Err(e), _) => Err(format!("cannot join the sandbox's cgroup: {e}")),
                (_, None) => Err("no stdin".into()),
            };
            if let Err(e) = go {
                let _ = child.kill().await;
                return Err(Error::Spawn(e));
            }
        }
        let sb = start(child, "bwrap", group).await?;
        if let Some(script) = &spec.setup {
            let o = sb
                .execute("bash", &serde_json::json!({"command": format!("{script}\necho {SETUP_OK}"), "timeout_ms": 600_000}))
                .await;
            if o.is_error || !o.text.contains(SETUP_OK) {
                sb.release().await;
                return Err(Error::Setup(o.text));
            }
        }
        Ok(sb)
    }

    async fn remove_workspace(&self, dir: &Path) -> std::io::Result<()> {
        let (disks, d) = (self.disks.clone(), dir.to_owned());
        tokio::task::spawn_blocking(move || disks.remove(&d))
            .await
            .map_err(std::io::Error::other)?
    }
}
