//! An outcome's check command, run apart from the agent's shell: a fresh bash in a process
//! group of its own, so nothing the agent defined in its persistent shell (functions, aliases,
//! variables, traps, jobs) can change what the check does or what it reports. The exit status
//! travels as data beside the output, never parsed out of it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::Output;

/// How long output may keep arriving after the check has exited and its group was killed.
const DRAIN: Duration = Duration::from_secs(1);

/// Run `command` with `bash -c` in `workdir`; the output keeps its last `limit` bytes.
pub async fn run(workdir: &Path, command: &str, timeout: Duration, limit: usize) -> Output {
    let spawned = Command::new("bash")
        // stderr joins stdout first thing, so the tail shows both in order.
        .args([
            "--noprofile",
            "--norc",
            "-c",
            &format!("exec 2>&1\n{command}"),
        ])
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Output::error(format!("cannot start the check: {e}")),
    };
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let reader = child
        .stdout
        .take()
        .map(|out| tokio::spawn(tail(out, limit)));
    let status = tokio::time::timeout(timeout, child.wait()).await;
    // Whether it finished or not, nothing the check started outlives it.
    if let Some(g) = group {
        let _ = killpg(g, Signal::SIGKILL);
    }
    let _ = child.wait().await;
    let text = match reader {
        Some(r) => match tokio::time::timeout(DRAIN, r).await {
            Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::new(),
        },
        None => String::new(),
    };
    match status {
        Ok(Ok(s)) => Output {
            exit_code: Some(code(s)),
            ..Output::ok(text)
        },
        Ok(Err(e)) => Output::error(format!("{text}\n[the check could not be waited for: {e}]")),
        Err(_) => Output::error(format!(
            "{text}\n[timed out after {} ms; the check was killed]",
            timeout.as_millis()
        )),
    }
}

/// The shell's convention: a signal's death reads as 128 plus its number.
fn code(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().or(s.signal().map(|n| 128 + n)).unwrap_or(-1)
}

async fn tail(mut out: tokio::process::ChildStdout, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    while let Ok(n) = out.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..n]);
        // Trim in large steps, so a flood costs amortised O(1) copies per byte.
        if kept.len() > 2 * limit {
            kept.drain(..kept.len() - limit);
        }
    }
    if kept.len() > limit {
        kept.drain(..kept.len() - limit);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn the_status_is_data_and_output_keeps_its_tail() {
        let d = tempfile::tempdir().unwrap();
        let o = run(d.path(), "echo out; echo err >&2; exit 3", T, 1024).await;
        assert_eq!((o.text.as_str(), o.exit_code), ("out\nerr\n", Some(3)));
        assert!(!o.is_error);
        let o = run(d.path(), "echo __AGENTD_CHECK_EXIT=0; false", T, 1024).await;
        assert_eq!(o.exit_code, Some(1));
        let o = run(
            d.path(),
            "head -c 100000 /dev/zero | tr '\\0' x; echo END",
            T,
            100,
        )
        .await;
        assert!(
            o.text.ends_with("xEND\n") && o.text.len() == 100,
            "{}",
            o.text.len()
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_check_and_everything_it_started() {
        let d = tempfile::tempdir().unwrap();
        let t0 = std::time::Instant::now();
        let o = run(
            d.path(),
            "echo before; sleep 30 & sleep 30",
            Duration::from_millis(300),
            1024,
        )
        .await;
        assert!(o.is_error && o.exit_code.is_none(), "{o:?}");
        assert!(
            o.text.contains("before") && o.text.contains("timed out"),
            "{o:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
