//! The real bubblewrap sandbox with the real helper: the toolset, isolation, limits, and what
//! happens when something inside misbehaves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use agentd_hands::bwrap::{Bwrap, HelperCommand};
use agentd_hands::cgroup::{Cgroups, Totals};
use agentd_hands::disk::Disks;
use agentd_hands::{Limits, Output, Provider, Sandbox, Spec};

fn provider() -> Bwrap {
    Bwrap::new(HelperCommand {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_agentd-sandbox-helper")),
        args: vec![],
    })
    .expect("bubblewrap must be installed for these tests (apt-get install bubblewrap)")
}

struct Fixture {
    dir: tempfile::TempDir,
    provider: Bwrap,
    sb: Arc<dyn Sandbox>,
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 1 << 30,
        processes: 64,
        cpu_seconds: 60,
        file_bytes: 64 << 20,
        tmp_bytes: 16 << 20,
        shm_bytes: 4 << 20,
        cpu_percent: 100,
        disk_bytes: 0,
        disk_inodes: 0,
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    // Like agentd's data dir: a private parent the sandbox user may not list, holding the
    // workspace it owns.
    let provider = provider();
    let sb = provider.provision(&spec(&dir)).await.expect("provision");
    Fixture { dir, provider, sb }
}

fn spec(dir: &tempfile::TempDir) -> Spec {
    Spec {
        workspace: dir.path().join("ws"),
        outputs: Some(dir.path().join("out")),
        limits: limits(),
        egress: None,
        setup: None,
        mounts: Vec::new(),
        env: Vec::new(),
    }
}

async fn bash(sb: &Arc<dyn Sandbox>, cmd: &str) -> Output {
    sb.execute("bash", &json!({"command": cmd, "timeout_ms": 20_000}))
        .await
}

#[tokio::test]
async fn the_outputs_directory_is_writable_and_lands_on_the_host_beside_the_workspace() {
    let f = fixture().await;
    let o = bash(
        &f.sb,
        "mkdir -p /mnt/session/outputs/charts && printf 'a,b\\n1,2\\n' > /mnt/session/outputs/data.csv && echo x > /mnt/session/outputs/charts/c.txt && echo ok",
    )
    .await;
    assert_eq!(o.text.trim(), "ok", "{o:?}");
    let out = f.dir.path().join("out");
    assert_eq!(
        std::fs::read_to_string(out.join("data.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    assert!(out.join("charts/c.txt").is_file());
    // The file tools reach it too.
    let o =
        f.sb.execute(
            "read",
            &json!({"file_path": "/mnt/session/outputs/data.csv"}),
        )
        .await;
    assert!(o.text.contains("1,2"), "{o:?}");
    // Only the outputs directory is writable: not /mnt/session beside it, not the workspace's
    // view of it.
    for p in ["/mnt/session/other", "/mnt/x"] {
        let o = bash(&f.sb, &format!("touch {p} 2>&1; echo rc=$?")).await;
        assert!(o.text.contains("rc=1"), "{p}: {o:?}");
    }
    assert!(!f.dir.path().join("ws/charts").exists());
}

#[tokio::test]
async fn mounted_files_are_readable_at_their_paths_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("res");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("a"), "alpha\n").unwrap();
    std::fs::write(host.join("b"), "beta\n").unwrap();
    let spec = Spec {
        mounts: vec![
            (host.join("a"), "/mnt/session/uploads/file_a".into()),
            (host.join("b"), "/data/b.txt".into()),
        ],
        ..spec(&dir)
    };
    let sb = provider().provision(&spec).await.expect("provision");
    let o = bash(
        &sb,
        "cat /mnt/session/uploads/file_a /data/b.txt; \
         echo x > /mnt/session/uploads/file_a 2>/dev/null; echo rc=$?; \
         echo x > /data/b.txt 2>/dev/null; echo rc=$?; \
         rm -f /data/b.txt 2>/dev/null; echo rc=$?",
    )
    .await;
    assert!(o.text.starts_with("alpha\nbeta\n"), "{o:?}");
    assert_eq!(o.text.matches("rc=1").count(), 3, "{o:?}");
    assert!(o.text.contains("Read-only file system"), "{o:?}");
    let o = sb
        .execute("read", &json!({"file_path": "/mnt/session/uploads/file_a"}))
        .await;
    assert!(o.text.contains("alpha"), "{o:?}");
    assert_eq!(std::fs::read_to_string(host.join("b")).unwrap(), "beta\n");
}

#[tokio::test]
async fn bash_keeps_state_and_file_tools_share_the_workspace() {
    let f = fixture().await;
    let o = bash(
        &f.sb,
        "cd /tmp && export GREETING=hi && echo $(whoami) $(id -u) $(hostname)",
    )
    .await;
    assert_eq!(o.text.trim(), "sandbox 1000 sandbox", "{o:?}");
    assert_eq!(
        bash(&f.sb, "pwd; echo $GREETING").await.text.trim(),
        "/tmp\nhi"
    );
    let w =
        f.sb.execute(
            "write",
            &json!({"file_path": "notes/a.txt", "content": "alpha\nbeta\n"}),
        )
        .await;
    assert!(!w.is_error, "{w:?}");
    assert_eq!(
        bash(&f.sb, "cat /workspace/notes/a.txt | wc -l")
            .await
            .text
            .trim(),
        "2"
    );
    let e = f.sb.execute("edit", &json!({"file_path": "/workspace/notes/a.txt", "old_string": "beta", "new_string": "gamma"})).await;
    assert!(!e.is_error, "{e:?}");
    let g = f.sb.execute("grep", &json!({"pattern": "gam+a"})).await;
    assert_eq!(g.text.trim(), "/workspace/notes/a.txt:2:gamma");
    let gl = f.sb.execute("glob", &json!({"pattern": "**/*.txt"})).await;
    assert_eq!(gl.text.trim(), "/workspace/notes/a.txt");
    // The host sees the same files, owned by the sandbox's unprivileged host user.
    let host = f.dir.path().join("ws/notes/a.txt");
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "alpha\ngamma\n");
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&host).unwrap().uid(), 65534);
    }
    let bad = f.sb.execute("read", &json!({"path": "x"})).await;
    assert!(
        bad.is_error && bad.text.contains("invalid input"),
        "{bad:?}"
    );
    let unknown = f.sb.execute("teleport", &json!({})).await;
    assert!(unknown.is_error);
}

#[tokio::test]
async fn host_files_are_out_of_reach_by_every_tool() {
    let f = fixture().await;
    std::fs::write(f.dir.path().join("secret-next-to-ws"), "s3cret").unwrap();
    for path in [
        "/etc/shadow",
        "../secret-next-to-ws",
        "/root/.bashrc",
        "/home",
        "/work",
    ] {
        let r = f.sb.execute("read", &json!({"file_path": path})).await;
        assert!(r.is_error, "read {path}: {r:?}");
        assert!(!r.text.contains("s3cret"));
    }
    // A symlink planted in the workspace resolves inside the sandbox, not on the host.
    std::os::unix::fs::symlink(
        f.dir.path().join("secret-next-to-ws"),
        f.dir.path().join("ws/link"),
    )
    .unwrap();
    let r = f.sb.execute("read", &json!({"file_path": "link"})).await;
    assert!(r.is_error && !r.text.contains("s3cret"), "{r:?}");
    let g =
        f.sb.execute("grep", &json!({"pattern": "s3c+ret", "path": "/"}))
            .await;
    assert!(!g.text.contains("s3cret"), "{g:?}");
    let w =
        f.sb.execute("write", &json!({"file_path": "../escaped", "content": "x"}))
            .await;
    assert!(w.is_error, "{w:?}");
    assert!(!f.dir.path().join("escaped").exists());
    let o = bash(
        &f.sb,
        "ls /; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'",
    )
    .await;
    assert!(
        !o.text.contains("home") && !o.text.contains("root\n"),
        "{o:?}"
    );
    let procs: usize = o
        .text
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .expect(&o.text);
    assert!(procs < 10, "the sandbox sees host processes: {o:?}");
}

#[tokio::test]
async fn the_system_is_read_only_and_the_network_absent() {
    let f = fixture().await;
    let o = bash(
        &f.sb,
        "touch /usr/x 2>&1; echo > /etc/passwd 2>&1; echo done",
    )
    .await;
    assert!(o.text.contains("Read-only file system"), "{o:?}");
    let w =
        f.sb.execute(
            "write",
            &json!({"file_path": "/usr/bin/evil", "content": "x"}),
        )
        .await;
    assert!(w.is_error, "{w:?}");
    let n = bash(
        &f.sb,
        "exec 3<>/dev/tcp/1.1.1.1/80 && echo CONNECTED; ip -o link 2>/dev/null | wc -l",
    )
    .await;
    assert!(!n.text.contains("CONNECTED"), "{n:?}");
    assert!(
        n.text.contains("unreachable") || n.text.contains("not permitted"),
        "{n:?}"
    );
    let u = bash(&f.sb, "unshare -U true 2>&1 || echo REFUSED").await;
    assert!(u.text.contains("REFUSED"), "{u:?}");
}

#[tokio::test]
async fn escape_syscalls_are_refused_by_seccomp() {
    let f = fixture().await;
    let o = bash(&f.sb, "grep Seccomp: /proc/self/status").await;
    assert!(o.text.contains("Seccomp:\t2"), "{o:?}");
    let probe = r#"python3 - <<'PY'
import ctypes, ctypes.util, socket
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace", libc.ptrace(0, 0, 0, 0), ctypes.get_errno())
print("keyctl", libc.syscall(250, 0, 0, 0, 0), ctypes.get_errno())
try:
    socket.socket(40, socket.SOCK_STREAM)
    print("vsock open")
except OSError as e:
    print("vsock", e.errno)
PY"#;
    let o = bash(&f.sb, probe).await;
    assert!(o.text.contains("ptrace -1 1"), "{o:?}");
    assert!(o.text.contains("keyctl -1 1"), "{o:?}");
    assert!(o.text.contains("vsock 1"), "{o:?}");
}

#[tokio::test]
async fn no_credential_of_the_host_is_visible_inside() {
    let f = fixture().await;
    // Nothing of agentd's environment is inherited: only the variables the sandbox sets, and
    // the ones bash keeps for itself, exist.
    let o = bash(&f.sb, "env | cut -d= -f1 | sort").await;
    let allowed = [
        "HOME", "LANG", "OLDPWD", "PATH", "PWD", "SHLVL", "TERM", "TMPDIR", "USER", "_",
    ];
    for var in o.text.lines() {
        assert!(
            allowed.contains(&var),
            "unexpected variable {var:?} inside: {}",
            o.text
        );
    }
    // scripts/test.sh plants canaries in the environment the tests run in; look everywhere.
    let o = bash(
        &f.sb,
        "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; cat /proc/*/cmdline 2>/dev/null | tr '\\0' ' '; grep -rs . /etc /run 2>/dev/null | head -c 100000",
    )
    .await;
    for (k, v) in std::env::vars() {
        if k.starts_with("AGENTD_CANARY") || k.contains("API_KEY") {
            assert!(
                !o.text.contains(&v),
                "{k}'s value is visible inside the sandbox"
            );
        }
    }
    assert!(!o.text.contains("ANTHROPIC"), "{}", o.text);
}

#[tokio::test]
async fn runaway_commands_are_contained_and_the_sandbox_stays_usable() {
    let f = fixture().await;
    // Never ends: the timeout kills it and a fresh shell follows.
    let t0 = Instant::now();
    let o =
        f.sb.execute("bash", &json!({"command": "sleep 1000", "timeout_ms": 500}))
            .await;
    assert!(o.is_error && o.text.contains("timed out"), "{o:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(bash(&f.sb, "echo alive").await.text.trim(), "alive");

    // A gigabyte of output comes back capped.
    let o = bash(
        &f.sb,
        "head -c 1000000000 /dev/zero | tr '\\0' y; echo; echo END",
    )
    .await;
    assert!(
        o.text.len() < 200_000 && o.text.contains("omitted") && o.text.trim_end().ends_with("END")
    );

    // A memory bomb hits the address-space limit.
    let o = bash(&f.sb, "python3 -c 'b = bytearray(8 << 30)' 2>&1 | tail -1").await;
    assert!(o.text.contains("MemoryError"), "{o:?}");

    // A fork bomb hits the process limit: the command still returns, and the bomb stays
    // inside the sandbox's limits until a restart of the shell kills its process group.
    let o = f
        .sb
        .execute("bash", &json!({"command": "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived", "timeout_ms": 8000}))
        .await;
    assert!(
        o.text.contains("survived") || o.text.contains("timed out"),
        "{o:?}"
    );
    let o =
        f.sb.execute(
            "bash",
            &json!({"command": "echo still here", "restart": true}),
        )
        .await;
    assert!(!o.is_error && o.text.contains("still here"), "{o:?}");

    // A file larger than the limit is cut off.
    let o = bash(
        &f.sb,
        "head -c 100000000 /dev/zero > big 2>&1; stat -c %s big",
    )
    .await;
    assert!(
        o.text.contains("File size limit exceeded") || o.text.contains(&(64u64 << 20).to_string()),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_background_process_dies_with_its_sandbox() {
    let f = fixture().await;
    let o = bash(
        &f.sb,
        "(sleep 4242 &) ; nohup sleep 4243 >/dev/null 2>&1 & echo started",
    )
    .await;
    assert_eq!(o.text.trim(), "started");
    let host_sees = || {
        std::process::Command::new("pgrep")
            .args(["-f", "sleep 424[23]"])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    };
    assert!(host_sees(), "the background sleeps should be running");
    f.sb.release().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while host_sees() {
        assert!(
            Instant::now() < deadline,
            "a sandboxed process outlived its sandbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_dead_sandbox_is_an_error_and_a_fresh_one_keeps_the_files() {
    let f = fixture().await;
    assert!(!bash(&f.sb, "echo keep > kept.txt").await.is_error);
    // Kill everything inside, the helper included.
    let o = bash(&f.sb, "kill -9 -1").await;
    assert!(o.is_error, "{o:?}");
    assert!(o.text.contains("fresh sandbox"), "{o:?}");
    assert!(!f.sb.alive());
    let again = bash(&f.sb, "echo hi").await;
    assert!(again.is_error);
    let fresh = f.provider.provision(&spec(&f.dir)).await.unwrap();
    assert_eq!(bash(&fresh, "cat kept.txt").await.text.trim(), "keep");
}

#[tokio::test]
async fn as_root_a_sandbox_gets_a_cgroup_capping_its_total_memory() {
    if !nix::unistd::geteuid().is_root() {
        // Without root there is no cgroup to create; rlimits (tested above) still apply.
        return;
    }
    let f = fixture().await;
    let cg = f.provider.cgroups().clone();
    let groups = |cg: &Cgroups| -> Vec<std::path::PathBuf> {
        let base = match cg {
            Cgroups::V2 { base } => base.clone(),
            Cgroups::V1 { pids, .. } => pids.clone(),
            Cgroups::Unavailable(why) => panic!("root, yet no cgroups: {why}"),
        };
        std::fs::read_dir(base)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("sbx-"))
            .collect()
    };
    // The helper runs inside one of the groups, with the configured process cap.
    let o = bash(&f.sb, "echo $$").await;
    assert!(!o.is_error);
    let with_procs: Vec<_> = groups(&cg)
        .into_iter()
        .filter(|g| {
            std::fs::read_to_string(g.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
        })
        .collect();
    assert!(!with_procs.is_empty(), "no sandbox cgroup holds a process");
    assert!(
        with_procs
            .iter()
            .any(|g| std::fs::read_to_string(g.join("pids.max")).unwrap().trim() == "64")
    );
    // Two processes each under the per-process limit, together over the sandbox's 1 GiB.
    let o = f
        .sb
        .execute(
            "bash",
            &json!({"command": "big() { python3 -c 'import time; b = bytearray(700 << 20); time.sleep(2)'; }; big & a=$!; big & b=$!; wait $a; echo A=$?; wait $b; echo B=$?", "timeout_ms": 30000}),
        )
        .await;
    assert!(o.text.contains("=137"), "neither was killed: {o:?}");
    f.sb.release().await;
}

#[tokio::test]
async fn nothing_inside_can_write_to_the_helpers_channel() {
    let f = fixture().await;
    // The helper is the parent of bash; its stdout is agentd's only line to the sandbox.
    let o = bash(
        &f.sb,
        "h=$PPID; (echo forged > /proc/$h/fd/1) 2>&1 || echo DENIED; ls /proc/$h/fd 2>&1 | head -1",
    )
    .await;
    assert!(o.text.contains("DENIED"), "{o:?}");
    assert_eq!(
        bash(&f.sb, "echo still fine").await.text.trim(),
        "still fine"
    );
}

#[tokio::test]
async fn shared_memory_and_dev_are_capped_not_half_the_hosts_ram() {
    let f = fixture().await;
    // The fixture gives /dev/shm 4 MiB; 8 MiB does not fit.
    let o = bash(
        &f.sb,
        "head -c 8000000 /dev/zero > /dev/shm/bomb; echo rc=$?; stat -c %s /dev/shm/bomb",
    )
    .await;
    assert!(o.text.contains("No space left on device"), "{o:?}");
    let kept: u64 = o
        .text
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .expect(&o.text);
    assert!(kept <= 4 << 20, "{o:?}");
    // Shared memory within the cap still works, as Python's multiprocessing uses it.
    let o = bash(
        &f.sb,
        "rm /dev/shm/bomb; python3 -c 'from multiprocessing import shared_memory as s; m = s.SharedMemory(create=True, size=1 << 20); m.buf[0] = 7; print(\"shm\", m.buf[0]); m.close(); m.unlink()'",
    )
    .await;
    assert_eq!(o.text.trim(), "shm 7", "{o:?}");
    // /dev itself was a second uncapped tmpfs; now nothing new lands there, yet devices work.
    let o = bash(
        &f.sb,
        "head -c 1000000 /dev/zero > /dev/bomb 2>&1; echo hi > /dev/null && echo null ok",
    )
    .await;
    assert!(o.text.contains("Read-only file system"), "{o:?}");
    assert!(o.text.contains("null ok"), "{o:?}");
}

/// The fixture's limits with a workspace quota of 16 MiB and 300 files.
fn quota() -> Limits {
    Limits {
        disk_bytes: 16 << 20,
        disk_inodes: 300,
        ..limits()
    }
}

/// A test that fails half-way must not leave its workspace mounted on the host.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::process::Command::new("umount")
                .arg("--lazy")
                .arg(&self.0)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Host bytes the workspace's image really takes (it is sparse).
fn image_bytes(dir: &tempfile::TempDir) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let image = agentd_hands::disk::image_path(&dir.path().join("ws"));
    std::fs::metadata(image)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

#[tokio::test]
async fn the_workspace_quota_binds_bash_in_bytes_and_in_files() {
    let provider = provider();
    if let Disks::Unavailable(why) = provider.disks() {
        eprintln!("skipped: no filesystem quota here: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _unmount = Unmount(dir.path().join("ws"));
    let _unmount_outputs = Unmount(dir.path().join("out"));
    let spec = Spec {
        limits: quota(),
        ..spec(&dir)
    };
    let sb = provider.provision(&spec).await.expect("provision");
    // The outputs directory is no way around the quota: it has a filesystem of its own.
    let o = bash(&sb, "{ head -c 50000000 /dev/zero > /mnt/session/outputs/bomb; } 2>&1; rm -f /mnt/session/outputs/bomb; echo done").await;
    assert!(o.text.contains("No space left on device"), "{o:?}");
    // Work within the quota goes on as before.
    let o = bash(
        &sb,
        "head -c 4000000 /dev/urandom > ok.bin && mkdir -p src && echo hi > src/a && ls",
    )
    .await;
    assert_eq!(o.text.trim(), "ok.bin\nsrc", "{o:?}");
    // A disk bomb in bash stops at the quota, and so does the host's disk use.
    let o = bash(&sb, "dd if=/dev/zero of=bomb bs=1M count=200 2>&1; head -c 50000000 /dev/zero > bomb2; echo done").await;
    assert!(o.text.contains("No space left on device"), "{o:?}");
    assert!(
        image_bytes(&dir) <= 17 << 20,
        "the host holds {} bytes",
        image_bytes(&dir)
    );
    // The write tool is refused, and says why.
    let w = sb
        .execute(
            "write",
            &json!({"file_path": "more.txt", "content": "y".repeat(1 << 20)}),
        )
        .await;
    assert!(w.is_error && w.text.contains("disk quota"), "{w:?}");
    // Deleting frees the space again, on the host too.
    let o = bash(
        &sb,
        "rm -f bomb bomb2 more.txt && head -c 1000000 /dev/zero > after && echo ok",
    )
    .await;
    assert_eq!(o.text.trim(), "ok", "{o:?}");
    // Empty files cost no bytes but each takes an inode: the 301st cannot be made.
    let o = bash(&sb, "mkdir many && cd many && for i in $(seq 1 1000); do : > f$i 2>/dev/null || { echo stopped at $i; break; }; done; cd ..; touch one-more 2>&1").await;
    let stopped: u64 = o
        .text
        .split_once("stopped at ")
        .and_then(|(_, n)| n.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no file was refused: {o:?}"));
    assert!(stopped <= 300, "{o:?}");
    assert!(o.text.contains("No space left on device"), "{o:?}");
    assert!(!bash(&sb, "rm -r many && touch one-more").await.is_error);
    // The files and their quota outlive the sandbox.
    sb.release().await;
    let again = provider.provision(&spec).await.expect("provision again");
    let o = bash(
        &again,
        "wc -c < ok.bin; ls; df -B1M --output=size . | tail -1",
    )
    .await;
    let lines: Vec<&str> = o.text.lines().map(str::trim).collect();
    assert_eq!(
        lines[..5],
        ["4000000", "after", "ok.bin", "one-more", "src"],
        "{o:?}"
    );
    assert!(lines[5].parse::<u64>().unwrap() <= 16, "{o:?}");
    again.release().await;
    // Removing the workspace takes its filesystem with it.
    let ws = dir.path().join("ws");
    provider.remove_workspace(&ws).await.unwrap();
    assert!(!ws.exists() && !agentd_hands::disk::image_path(&ws).exists());
    provider
        .remove_workspace(&dir.path().join("out"))
        .await
        .unwrap();
}

#[tokio::test]
async fn all_sandboxes_together_sit_in_a_capped_parent_group() {
    let provider = provider();
    let (memory, pids) = match provider.cgroups() {
        Cgroups::V2 { base } => (base.join("memory.max"), base.join("pids.max")),
        Cgroups::V1 { memory, pids, .. } => {
            (memory.join("memory.limit_in_bytes"), pids.join("pids.max"))
        }
        Cgroups::Unavailable(why) => {
            eprintln!("skipped: no cgroups here: {why}");
            return;
        }
    };
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().trim().to_owned();
    // By default a share of this machine, never the unlimited parent it used to be.
    let t = Totals::for_this_machine();
    let mem_total: u64 = read(&memory).parse().expect("memory is capped");
    assert!(mem_total < t.memory_bytes / 3 * 4 && mem_total >= t.memory_bytes / 2);
    assert_eq!(read(&pids), t.processes.to_string());
    // Each sandbox's group lives inside it.
    let f = fixture().await;
    assert!(!bash(&f.sb, "echo hi").await.is_error);
    let inside = std::fs::read_dir(memory.parent().unwrap())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("sbx-"));
    assert!(inside, "no sandbox group under {}", memory.display());
}

#[tokio::test]
async fn a_workspace_from_before_quotas_keeps_its_files_under_one() {
    let provider = provider();
    if let Disks::Unavailable(why) = provider.disks() {
        eprintln!("skipped: no filesystem quota here: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let _unmount = Unmount(ws.clone());
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("src/main.py"), "print('kept')\n").unwrap();
    let spec = Spec {
        limits: quota(),
        outputs: None,
        ..spec(&dir)
    };
    let sb = provider.provision(&spec).await.expect("provision");
    let o = bash(
        &sb,
        "python3 src/main.py; ls -A; df -B1M --output=size . | tail -1",
    )
    .await;
    let lines: Vec<&str> = o.text.lines().map(str::trim).collect();
    assert_eq!(lines[..2], ["kept", "src"], "{o:?}");
    assert!(lines[2].parse::<u64>().unwrap() <= 16, "{o:?}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "ws" && n != "ws.ext4")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    sb.release().await;
    provider.remove_workspace(&ws).await.unwrap();
}

#[tokio::test]
async fn descriptors_agentd_inherited_stay_outside() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("leak-probe");
    std::fs::write(&probe, "").unwrap();
    // Without O_CLOEXEC, like a descriptor left open by whatever launched agentd.
    let _leaked = nix::fcntl::open(
        &probe,
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let f = fixture().await;
    // 3 is the directory ls opens to list itself.
    let o = bash(&f.sb, "ls /proc/self/fd | xargs").await;
    assert_eq!(o.text.trim(), "0 1 2 3", "{o:?}");
    // Nor does bwrap's own process inside hold it.
    let o = bash(&f.sb, "ls -l /proc/[0-9]*/fd/ 2>/dev/null").await;
    assert!(!o.text.contains("leak-probe"), "{o:?}");
}

#[tokio::test]
async fn a_check_runs_apart_from_the_agents_shell() {
    let f = fixture().await;
    // What an agent could leave in its shell to make a failing check pass.
    let o = bash(
        &f.sb,
        "test() { return 0; }; export -f test; alias test=true; trap 'exit 0' EXIT; echo ok",
    )
    .await;
    assert_eq!(o.text.trim(), "ok", "{o:?}");
    let check = |command: &str| {
        let input = json!({"command": command, "timeout_ms": 20_000});
        let sb = f.sb.clone();
        async move { sb.execute(agentd_hands::tools::CHECK, &input).await }
    };
    let o = check("test -f missing.txt").await;
    assert_eq!((o.exit_code, o.is_error), (Some(1), false), "{o:?}");
    let o = check("declare -F; alias; echo $PWD").await;
    assert_eq!(
        (o.text.trim(), o.exit_code),
        ("/workspace", Some(0)),
        "{o:?}"
    );
    // The agent's shell is as it left it.
    assert_eq!(
        bash(&f.sb, "test -f missing.txt; echo $?")
            .await
            .text
            .trim(),
        "0"
    );
}

#[tokio::test]
async fn the_egress_socket_is_the_sandbox_users_alone() {
    use std::io::{Read, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let egress = dir.path().join("egress");
    std::fs::create_dir(&egress).unwrap();
    let sock = egress.join("proxy.sock");
    // A stand-in proxy that answers one request, with the mode agentd's proxy binds with.
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, PermissionsExt::from_mode(0o600)).unwrap();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            // Read the whole request and half-close after answering, as a real proxy does: a
            // stand-in that closed after a partial read made the bridge's later write fail,
            // and the answer was lost with it (seen under CI load).
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nproxy");
            let _ = c.shutdown(std::net::Shutdown::Write);
            let _ = c.read_to_end(&mut req);
        }
    });
    let provider = provider();
    let sb = provider
        .provision(&Spec {
            egress: Some(egress.clone()),
            ..spec(&dir)
        })
        .await
        .expect("provision");
    let expected_owner = if nix::unistd::geteuid().is_root() {
        65534
    } else {
        nix::unistd::geteuid().as_raw()
    };
    for (path, mode) in [(&egress, 0o700), (&sock, 0o600)] {
        let m = std::fs::metadata(path).unwrap();
        assert_eq!(m.mode() & 0o777, mode, "{}", path.display());
        assert_eq!(m.uid(), expected_owner, "{}", path.display());
    }
    // The sandbox itself still reaches its proxy.
    let o = bash(
        &sb,
        "exec 3<>/dev/tcp/127.0.0.1/3128; printf 'GET http://x/ HTTP/1.1\\r\\n\\r\\n' >&3; cat <&3",
    )
    .await;
    assert!(o.text.ends_with("proxy"), "{o:?}");
}

#[tokio::test]
async fn an_early_answer_from_the_proxy_reaches_the_sandbox() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let egress = dir.path().join("egress");
    std::fs::create_dir(&egress).unwrap();
    let l = std::os::unix::net::UnixListener::bind(egress.join("proxy.sock")).unwrap();
    // A proxy that refuses after the head, as the egress proxy does for a host it denies,
    // and closes while the request's body is still coming.
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = c.write_all(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nConnection: close\r\n\r\ndenied",
            );
        }
    });
    let sb = provider()
        .provision(&Spec {
            egress: Some(egress.clone()),
            ..spec(&dir)
        })
        .await
        .expect("provision");
    let o = bash(
        &sb,
        "exec 3<>/dev/tcp/127.0.0.1/3128; \
         { printf 'POST http://x/ HTTP/1.1\\r\\nContent-Length: 4000000\\r\\n\\r\\n'; \
           head -c 4000000 /dev/zero; } >&3 2>/dev/null; cat <&3",
    )
    .await;
    assert!(o.text.contains("403 Forbidden"), "{o:?}");
    assert!(o.text.ends_with("denied"), "{o:?}");
}
