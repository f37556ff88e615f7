//! A persistent bash, like a terminal the model types into: the working directory, exported
//! variables and background jobs carry over from one call to the next.
//!
//! Each command is written to a file and sourced, so a syntax error stays inside that command
//! instead of swallowing the end marker; a random marker then reports the exit status. Output
//! is capped: beyond the limit the middle is dropped as it streams, so a gigabyte of output
//! costs a bounded buffer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    scratch: PathBuf,
}

/// Why a command did not finish normally.
#[derive(Debug)]
pub enum Failure {
    /// It ran past its timeout; the shell and everything it started were killed.
    Timeout {
        output: String,
    },
    /// The shell went away (the command ran `exit`, or it was killed).
    Exited {
        output: String,
    },
    Io(std::io::Error),
}

pub struct Finished {
    pub output: String,
    pub code: i32,
}

impl Shell {
    pub async fn start(workdir: &Path) -> std::io::Result<Shell> {
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group, so a timeout can kill the command's whole tree.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("bash started without pipes"));
        };
        stdin.write_all(b"exec 2>&1\n").await?;
        Ok(Shell {
            child,
            stdin,
            stdout,
            scratch: std::env::temp_dir(),
        })
    }

    pub async fn run(
        &mut self,
        command: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<Finished, Failure> {
        let nonce: u64 = rand::rng().random();
        let file = self.scratch.join(format!(".agentd-cmd-{nonce:016x}"));
        std::fs::write(&file, command).map_err(Failure::Io)?;
        let marker = format!("\n__AGENTD_DONE_{nonce:016x} ");
        let script = format!(
            ". '{f}' </dev/null; __agentd_rc=$?; rm -f '{f}'; printf '\\n__AGENTD_DONE_{nonce:016x} %d\\n' \"$__agentd_rc\"\n",
            f = file.display()
        );
        if let Err(e) = self.stdin.write_all(script.as_bytes()).await {
            let _ = std::fs::remove_file(&file);
            return Err(Failure::Exited {
                output: format!("(the shell is gone: {e})"),
            });
        }
        let mut out = Capped::new(limit);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match tokio::time::timeout_at(deadline, self.stdout.read(&mut chunk)).await {
                Err(_) => {
                    self.kill().await;
                    let _ = std::fs::remove_file(&file);
                    return Err(Failure::Timeout {
                        output: out.finish_without_marker(),
                    });
                }
                Ok(Err(e)) => return Err(Failure::Io(e)),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                let _ = std::fs::remove_file(&file);
                return Err(Failure::Exited {
                    output: out.finish_without_marker(),
                });
            }
            if let Some(done) = out.push(&chunk[..n], marker.as_bytes()) {
                return Ok(done);
            }
        }
    }

    /// Kill the shell and every process in its group.
    pub async fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let _ = self.child.kill().await;
    }
}

/// Output with its middle dropped beyond `limit`, and the end marker found across chunks.
struct Capped {
    limit: usize,
    head: Vec<u8>,
    buf: Vec<u8>,
    omitted: usize,
    search_from: usize,
}

impl Capped {
    fn new(limit: usize) -> Self {
        Capped {
            limit: limit.max(1024),
            head: Vec::new(),
            buf: Vec::new(),
            omitted: 0,
            search_from: 0,
        }
    }

    fn push(&mut self, chunk: &[u8], marker: &[u8]) -> Option<Finished> {
        self.buf.extend_from_slice(chunk);
        let from = self.search_from.min(self.buf.len());
        if let Some(at) = memchr::memmem::find(&self.buf[from..], marker).map(|i| i + from) {
            let rest = &self.buf[at + marker.len()..];
            if let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                let code = std::str::from_utf8(&rest[..nl])
                    .ok()
                    .and_then(|c| c.trim().parse().ok())
                    .unwrap_or(-1);
                self.buf.truncate(at);
                return Some(Finished {
                    output: self.render(),
                    code,
                });
            }
            // The status digits have not arrived yet; look again from the marker.
            self.search_from = at;
            return None;
        }
        let half = self.limit / 2;
        let keep = half.max(marker.len() + 32);
        if self.head.is_empty() && self.buf.len() > self.limit + marker.len() {
            self.head = self.buf[..half].to_vec();
            self.buf.drain(..half);
        }
        // Drop the middle in large steps, so a flood costs amortised O(1) copies per byte.
        if !self.head.is_empty() && self.buf.len() > 4 * keep {
            let drop = self.buf.len() - keep;
            self.omitted += drop;
            self.buf.drain(..drop);
        }
        self.search_from = self.buf.len().saturating_sub(marker.len() + 32);
        None
    }

    fn render(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.head).into_owned();
        // Once the head is taken, only the last half of the limit is shown of the rest.
        let tail_from = if self.head.is_empty() {
            0
        } else {
            self.buf.len().saturating_sub(self.limit / 2)
        };
        let omitted = self.omitted + tail_from;
        if omitted > 0 {
            s.push_str(&format!(
                "\n[... {omitted} bytes of output omitted; the output limit is {} bytes — redirect to a file and read parts of it ...]\n",
                self.limit
            ));
        }
        s.push_str(&String::from_utf8_lossy(&self.buf[tail_from..]));
        s
    }

    fn finish_without_marker(&self) -> String {
        self.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn shell() -> (tempfile::TempDir, Shell) {
        let d = tempfile::tempdir().unwrap();
        let s = Shell::start(d.path()).await.unwrap();
        (d, s)
    }

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn state_persists_between_commands() {
        let (_d, mut s) = shell().await;
        let r = s
            .run("mkdir sub && cd sub && export X=42", T, 1 << 20)
            .await
            .unwrap();
        assert_eq!(r.code, 0);
        let r = s.run("echo $X $(basename $PWD)", T, 1 << 20).await.unwrap();
        assert_eq!(r.output.trim(), "42 sub");
        let r = s.run("echo err >&2; false", T, 1 << 20).await.unwrap();
        assert_eq!((r.output.trim(), r.code), ("err", 1));
    }

    #[tokio::test]
    async fn a_syntax_error_stays_inside_its_command() {
        let (_d, mut s) = shell().await;
        let r = s.run("echo 'unclosed", T, 1 << 20).await.unwrap();
        assert_ne!(r.code, 0);
        let r = s.run("echo fine", T, 1 << 20).await.unwrap();
        assert_eq!(r.output.trim(), "fine");
    }

    #[tokio::test]
    async fn huge_output_is_cut_in_the_middle() {
        let (_d, mut s) = shell().await;
        let r = s
            .run(
                "echo START; head -c 50000000 /dev/zero | tr '\\0' x; echo; echo END",
                T,
                4096,
            )
            .await
            .unwrap();
        assert!(r.output.starts_with("START"));
        assert!(r.output.trim_end().ends_with("END"));
        assert!(r.output.contains("bytes of output omitted"));
        assert!(r.output.len() < 8192);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_command_tree_and_exit_ends_the_shell() {
        let (_d, mut s) = shell().await;
        let t0 = std::time::Instant::now();
        let r = s
            .run("echo before; sleep 30", Duration::from_millis(300), 1 << 20)
            .await;
        assert!(matches!(r, Err(Failure::Timeout { ref output }) if output.contains("before")));
        assert!(t0.elapsed() < Duration::from_secs(5));
        let (_d, mut s) = shell().await;
        assert!(matches!(
            s.run("exit 3", T, 1024).await,
            Err(Failure::Exited { .. })
        ));
    }
}
