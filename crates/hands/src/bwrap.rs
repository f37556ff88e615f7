//! Sandboxes made with bubblewrap: new user, mount, PID, IPC, UTS, network and cgroup
//! namespaces; a read-only system; one writable workspace; no other host path; no
//! capabilities; no nested user namespaces; a cleared environment. When agentd runs as root the
//! sandbox runs as an unprivileged host uid too, so its files are not root's and process limits
//! apply.
//!
//! Inside runs the helper (`agentd sandbox-helper`), bind-mounted read-only, spoken to over the
//! bwrap child's stdin and stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

use crate::cgroup::{Cgroups, Group};
use crate::helper::Config;
use crate::protocol::{Request, Response};
use crate::tools::{BASH_DEFAULT_TIMEOUT_MS, BASH_MAX_TIMEOUT_MS};
use crate::{Error, Output, Provider, Sandbox, Spec};

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
/// How long a new sandbox may take to answer its first ping.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes of the sandbox's stderr kept for error messages.
const STDERR_TAIL: usize = 4096;

/// The program that runs as the helper: an executable and the arguments that select the
/// helper mode (for agentd itself, `["sandbox-helper"]`).
#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub exe: PathBuf,
    pub args: Vec<String>,
}

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

    #[expect(clippy::too_many_lines, reason = "split in issue 15")]
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

/// Wait until a spawned helper (inside bwrap or not) answers.
async fn start(
    mut child: Child,
    what: &str,
    group: Option<Group>,
) -> Result<Arc<dyn Sandbox>, Error> {
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Error::Spawn(format!("{what} started without pipes")));
    };
    let tail = Arc::new(StdMutex::new(String::new()));
    tokio::spawn(collect_stderr(stderr, tail.clone()));
    let sb = Box::new(Running {
        conn: Mutex::new(Conn {
            stdin,
            stdout: BufReader::new(stdout),
            next_id: 1,
        }),
        child: Mutex::new(child),
        alive: AtomicBool::new(true),
        stderr: tail,
        group: StdMutex::new(group),
    });
    let ping =
        tokio::time::timeout(READY_TIMEOUT, sb.call("ping", &Value::Null, READY_TIMEOUT)).await;
    match ping {
        Ok(o) if !o.is_error && o.text == "pong" => Ok(Arc::from(sb as Box<dyn Sandbox>)),
        Ok(o) => Err(Error::Spawn(o.text)),
        Err(_) => {
            sb.release().await;
            Err(Error::Spawn(format!(
                "the sandbox did not answer within {READY_TIMEOUT:?}: {}",
                sb.stderr_tail()
            )))
        }
    }
}

/// Largest reply line accepted from a helper; tool outputs are capped far below this, so a
/// longer line means something in the sandbox is writing where it should not.
const MAX_REPLY: u64 = 16 << 20;

/// One reply line, or None at end of stream; a line past `MAX_REPLY` is an error, so a
/// sandbox cannot make agentd buffer without bound.
async fn read_reply(stdout: &mut BufReader<ChildStdout>) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = (&mut *stdout)
        .take(MAX_REPLY)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the sandbox sent a reply longer than allowed",
        ));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

async fn collect_stderr(mut stderr: tokio::process::ChildStderr, tail: Arc<StdMutex<String>>) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            return;
        }
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        t.push_str(&String::from_utf8_lossy(&buf[..n]));
        if t.len() > STDERR_TAIL {
            let cut = t.len() - STDERR_TAIL;
            let cut = (cut..t.len())
                .find(|i| t.is_char_boundary(*i))
                .unwrap_or(t.len());
            t.drain(..cut);
        }
    }
}

struct Conn {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

struct Running {
    conn: Mutex<Conn>,
    child: Mutex<Child>,
    alive: AtomicBool,
    stderr: Arc<StdMutex<String>>,
    group: StdMutex<Option<Group>>,
}

impl Running {
    /// The sandbox is gone: remove its cgroup once its processes have exited.
    fn forget_group(&self) {
        let group = self.group.lock().map(|mut g| g.take()).unwrap_or_default();
        if let Some(g) = group {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(g.remove());
                }
                Err(_) => g.remove_now(),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.forget_group();
    }
}

impl Running {
    fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// Why the sandbox is gone, for the model: its exit and the last thing it said.
    async fn obituary(&self) -> String {
        self.alive.store(false, Ordering::SeqCst);
        self.forget_group();
        let mut child = self.child.lock().await;
        let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
            Ok(Ok(s)) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (_, Some(sig)) => format!("killed by signal {sig}"),
                (Some(c), None) => format!("exit code {c}"),
                (None, None) => "unknown exit".into(),
            },
            _ => {
                let _ = child.kill().await;
                "unresponsive, killed".into()
            }
        };
        let err = self.stderr_tail();
        if err.is_empty() {
            format!("the sandbox died ({status})")
        } else {
            format!("the sandbox died ({status}): {err}")
        }
    }

    async fn call(&self, tool: &str, input: &Value, timeout: Duration) -> Output {
        if !self.alive() {
            return Output::error(
                "the sandbox is gone; the next call gets a fresh one over the same workspace",
            );
        }
        let mut conn = self.conn.lock().await;
        let id = conn.next_id;
        conn.next_id += 1;
        let mut line = match serde_json::to_vec(&Request {
            id,
            tool: tool.to_owned(),
            input: input.clone(),
        }) {
            Ok(l) => l,
            Err(e) => return Output::error(format!("{tool}: cannot encode the input: {e}")),
        };
        line.push(b'\n');
        let sent = async {
            conn.stdin.write_all(&line).await?;
            conn.stdin.flush().await?;
            read_reply(&mut conn.stdout).await
        };
        let died = |why: String| {
            Output::error(format!(
                "{tool}: {why}; the next call gets a fresh sandbox over the same workspace"
            ))
        };
        match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(Some(reply))) => match serde_json::from_str::<Response>(&reply) {
                Ok(r) if r.id == id => r.output,
                Ok(r) => Output::error(format!(
                    "{tool}: the sandbox answered request {} for {id}",
                    r.id
                )),
                Err(e) => Output::error(format!("{tool}: unreadable answer from the sandbox: {e}")),
            },
            Ok(Ok(None)) | Ok(Err(_)) => {
                drop(conn);
                died(self.obituary().await)
            }
            Err(_) => {
                drop(conn);
                self.release().await;
                died(format!(
                    "no answer within {timeout:?}; the sandbox was stopped"
                ))
            }
        }
    }
}

/// How long agentd waits for a tool's answer before it gives the sandbox up.
fn deadline(tool: &str, input: &Value) -> Duration {
    let bash = input
        .get("timeout_ms")
        .and_then(Value::as_u64)
        .unwrap_or(BASH_DEFAULT_TIMEOUT_MS)
        .min(BASH_MAX_TIMEOUT_MS);
    match tool {
        "bash" => Duration::from_millis(bash) + Duration::from_secs(15),
        _ => Duration::from_secs(120),
    }
}

#[async_trait]
impl Sandbox for Running {
    async fn execute(&self, name: &str, input: &Value) -> Output {
        self.call(name, input, deadline(name, input)).await
    }

    fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    async fn release(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let mut child = self.child.lock().await;
        let _ = child.kill().await;
        drop(child);
        self.forget_group();
    }
}
