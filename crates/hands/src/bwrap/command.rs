//! The bwrap command line for one sandbox: what it unshares, what it mounts, the environment
//! it starts with, and the helper it runs. Only the arguments; spawning is the provider's.

use std::path::Path;

use crate::Spec;
use crate::connection::HelperCommand;
use crate::helper::Config;

/// Where the workspace and the helper appear inside.
pub const WORKSPACE: &str = "/workspace";
const HELPER: &str = "/run/agentd/helper";
/// Where the egress proxy's socket directory appears, and where the helper's bridge to it
/// listens inside the sandbox's own network namespace.
const EGRESS_DIR: &str = crate::EGRESS_DIR;
const PROXY_ADDR: &str = "127.0.0.1:3128";
pub(super) use crate::EGRESS_SOCKET;
/// Where packages installed at provision live, first on PATH.
const PACKAGE_BINS: &str = "/workspace/.venv/bin:/workspace/.npm-global/bin:/workspace/.cargo/bin:/workspace/.gem/bin:/workspace/go/bin";
/// The uid and gid the sandbox's user has inside.
const INNER_ID: &str = "1000";

/// Everything after `bwrap`. `etc` holds the passwd, group and hosts every sandbox sees.
pub(super) fn args(helper: &HelperCommand, etc: &Path, spec: &Spec) -> Vec<String> {
    [
        namespaces(),
        mounts(helper, etc, spec),
        environment(spec),
        run_helper(helper, spec),
    ]
    .concat()
}

fn namespaces() -> Vec<String> {
    [
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
    ]
    .map(String::from)
    .to_vec()
}

fn mounts(helper: &HelperCommand, etc: &Path, spec: &Spec) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    push(&["--ro-bind", "/usr", "/usr"]);
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
    for f in ["passwd", "group", "hosts"] {
        push(&[
            "--ro-bind",
            &etc.join(f).display().to_string(),
            &format!("/etc/{f}"),
        ]);
    }
    push(&["--proc", "/proc", "--dev", "/dev"]);
    // bwrap's /dev is a writable tmpfs sized at half the host's RAM, /dev/shm a directory in
    // it: shared memory gets a capped tmpfs of its own, and the rest of /dev goes read-only
    // (device nodes stay usable; only new files are refused).
    push(&[
        "--size",
        &spec.limits.shm_bytes.to_string(),
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
    ]);
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
    if let Some(dir) = &spec.outputs {
        // bwrap makes /mnt/session in its root, read-only below; only the directory itself
        // is writable, so nothing else of /mnt is.
        push(&["--bind", &dir.display().to_string(), crate::OUTPUTS]);
    }
    for (host, at) in &spec.mounts {
        // Never in the workspace (see `agentd_wire::resource::check_mount_path`): bwrap makes
        // the mount point, and the agent could have steered a path there with a link.
        push(&["--ro-bind", &host.display().to_string(), at]);
    }
    push(&["--ro-bind", &helper.exe.display().to_string(), HELPER]);
    if let Some(dir) = &spec.egress {
        push(&["--ro-bind", &dir.display().to_string(), EGRESS_DIR]);
    }
    // The root itself is a tmpfs bwrap made; only the workspace, the outputs and /tmp stay
    // writable.
    push(&["--remount-ro", "/"]);
    a
}

fn environment(spec: &Spec) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
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
    for (k, v) in &spec.env {
        push(&["--setenv", k, v]);
    }
    a
}

/// The command bwrap runs: the helper as mounted inside, told where it is and what it may use.
fn run_helper(helper: &HelperCommand, spec: &Spec) -> Vec<String> {
    let mut a = vec![HELPER.to_owned()];
    a.extend(helper.args.iter().cloned());
    a.extend(
        Config {
            workdir: WORKSPACE.into(),
            limits: Some(spec.limits),
            egress: spec.egress.as_ref().map(|_| {
                (
                    format!("{EGRESS_DIR}/{EGRESS_SOCKET}").into(),
                    PROXY_ADDR.to_owned(),
                )
            }),
        }
        .to_args(),
    );
    a
}
