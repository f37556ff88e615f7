//! Sandboxes made with bubblewrap: new user, mount, PID, IPC, UTS, network and cgroup
//! namespaces; a read-only system; one writable workspace; no other host path; no
//! capabilities; no nested user namespaces; a cleared environment. When agentd runs as root the
//! sandbox runs as an unprivileged host uid too, so its files are not root's and process limits
//! apply.
//!
//! Inside runs the helper (`agentd sandbox-helper`), bind-mounted read-only, spoken to over the
//! bwrap child's stdin and stdout (`connection`).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::cgroup::Cgroups;
use crate::connection::start;
use crate::helper::Config;
use crate::{Error, Provider, Sandbox, Spec};

// Callers name both providers and the helper's command through this module.
pub use crate::connection::HelperCommand;
pub use crate::unconfined::Unconfined;

/// Where the workspace and the helper appear inside.
pub const WORKSPACE: &str = "/workspace";
const HELPER: &str = "/run/agentd/helper";
/// Where the egress proxy's socket directory appears, and where the helper's bridge to it
/// listens inside the sandbox's own network namespace.
const EGRESS_DIR: &str = "/run/agentd/egress";
const PROXY_ADDR: &str = "127.0.0.1:3128";
/// Printed by a setup script that ran to its end.
const SETUP_OK: &str = "__AGENTD_SETUP_OK__";
/// Where packages installed at provision live, first on PATH.
const PACKAGE_BINS: &str = "/workspace/.venv/bin:/workspace/.npm-global/bin:/workspace/.cargo/bin:/workspace/.gem/bin:/workspace/go/bin";
/// The uid and gid the sandbox's user has inside.
const INNER_ID: &str = "1000";

pub struct Bwrap {
    helper: HelperCommand,
    /// Host uid and gid to run as; set when agentd runs as root.
    host_user: Option<(u32, u32)>,
    etc: tempfile_dir::Dir,
    cgroups: Cgroups,
}

mod tempfile_dir {
    //! A directory removed on drop, holding the few /etc files every sandbox sees.
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn create(prefix: &str) -> std::io::Result<Dir> {
            let n: u64 = rand::random();
            let p = std::env::temp_dir().join(format!("{prefix}-{}-{n:x}", std::process::id()));
            std::fs::create_dir_all(&p)?;
            Ok(Dir(p))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
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
        let etc = tempfile_dir::Dir::create("agentd-sandbox-etc")
            .map_err(|e| Error::Spawn(e.to_string()))?;
        let write = |name: &str, body: &str| {
            std::fs::write(etc.path().join(name), body).map_err(|e| Error::Spawn(e.to_string()))
        };
        write(
            "passwd",
            "root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:1000:1000:sandbox:/workspace:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
        )?;
        write("group", "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n")?;
        write("hosts", "127.0.0.1 localhost sandbox\n::1 localhost\n")?;
        let cgroups = Cgroups::detect();
        // Groups left by a previous agentd that died are empty now; clear them away.
        cgroups.remove_stale();
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
        })
    }

    fn args(&self, spec: &Spec) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&[
            "--unshare-user",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--uid",
            INNER_ID,
            "--gid",
            INNER_ID,
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            "sandbox",
            "--ro-bind",
            "/usr",
            "/usr",
        ]);
        for (link, target) in [
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
        ] {
            if Path::new(link).is_symlink() || !Path::new(link).exists() {
                push(&["--symlink", target, link]);
            } else {
                push(&["--ro-bind", link, link]);
            }
        }
        for p in [
            "/etc/ssl",
            "/etc/ca-certificates",
            "/etc/alternatives",
            "/etc/ld.so.cache",
            "/etc/localtime",
            "/etc/mime.types",
        ] {
            push(&["--ro-bind-try", p, p]);
        }
        let etc = self.etc.path();
        for f in ["passwd", "group", "hosts"] {
            a.extend([
                "--ro-bind".into(),
                etc.join(f).display().to_string(),
                format!("/etc/{f}"),
            ]);
        }
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&["--proc", "/proc", "--dev", "/dev"]);
        push(&[
            "--size",
            &spec.limits.tmp_bytes.to_string(),
            "--tmpfs",
            "/tmp",
        ]);
        push(&[
            "--bind",
            &spec.workspace.display().to_string(),
            WORKSPACE,
            "--chdir",
            WORKSPACE,
        ]);
        push(&["--ro-bind", &self.helper.exe.display().to_string(), HELPER]);
        if let Some(dir) = &spec.egress {
            push(&["--ro-bind", &dir.display().to_string(), EGRESS_DIR]);
        }
        // The root itself is a tmpfs bwrap made; only the workspace and /tmp stay writable.
        push(&["--remount-ro", "/"]);
        push(&[
            "--clearenv",
            "--setenv",
            "PATH",
            &format!("{PACKAGE_BINS}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "--setenv",
            "HOME",
            WORKSPACE,
            "--setenv",
            "USER",
            "sandbox",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--setenv",
            "TERM",
            "dumb",
            "--setenv",
            "TMPDIR",
            "/tmp",
        ]);
        if spec.egress.is_some() {
            // Every common client honours one of these; the helper's bridge answers on it.
            let proxy = format!("http://{PROXY_ADDR}");
            for k in [
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "http_proxy",
                "https_proxy",
                "ALL_PROXY",
                "all_proxy",
            ] {
                push(&["--setenv", k, &proxy]);
            }
            for k in ["NO_PROXY", "no_proxy"] {
                push(&["--setenv", k, "localhost,127.0.0.1,::1"]);
            }
        }
        push(&[HELPER]);
        a.extend(self.helper.args.iter().cloned());
        a.extend(
            Config {
                workdir: WORKSPACE.into(),
                limits: Some(spec.limits),
                egress: spec.egress.as_ref().map(|_| {
                    (
                        format!("{EGRESS_DIR}/proxy.sock").into(),
                        PROXY_ADDR.to_owned(),
                    )
                }),
            }
            .to_args(),
        );
        a
    }

    /// The cgroup mechanism sandboxes get here.
    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    fn prepare_workspace(&self, dir: &Path) -> Result<(), Error> {
        let err = |source| Error::Workspace {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        if let Some((uid, gid)) = self.host_user {
            // lchown: never follow a link, whoever made it.
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(err)?;
        }
        // The session's files are its own: no other local user reads them.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(err)?;
        Ok(())
    }
}

#[async_trait]
impl Provider for Bwrap {
    async fn provision(&self, spec: &Spec) -> Result<Arc<dyn Sandbox>, Error> {
        self.prepare_workspace(&spec.workspace)?;
        let group = self
            .cgroups
            .create(&Cgroups::group_name(), &spec.limits)
            .map_err(|e| Error::Spawn(format!("cannot create the sandbox's cgroup: {e}")))?;
        // With a cgroup, a shell holds bwrap back until it has joined the group.
        let mut cmd = match &group {
            Some(_) => {
                let mut c = Command::new("/bin/sh");
                c.args(["-c", "read _ && exec \"$0\" \"$@\"", "bwrap"]);
                c
            }
            None => Command::new("bwrap"),
        };
        cmd.args(self.args(spec))
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
}
