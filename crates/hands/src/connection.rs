//! agentd's end of a helper: the command that runs it, and, once it is spawned (inside bwrap or
//! not), the live sandbox that sends it one call at a time over its stdin and reads the answer
//! from its stdout. Whatever provider made the process, this is what the rest of agentd holds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex;

use crate::cgroup::Group;
use crate::protocol::{Request, Response};
use crate::tools::{BASH_DEFAULT_TIMEOUT_MS, BASH_MAX_TIMEOUT_MS};
use crate::{Error, Output, Sandbox};

/// The program that runs as the helper: an executable and the arguments that select the
/// helper mode (for agentd itself, `["sandbox-helper"]`).
#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub exe: PathBuf,
    pub args: Vec<String>,
}

/// How long a new sandbox may take to answer its first ping.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes of the sandbox's stderr kept for error messages.
const STDERR_TAIL: usize = 4096;

/// Wait until a spawned helper (inside bwrap or not) answers.
pub(crate) async fn start(
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

/// The pipe to the helper, held for a whole call so each request meets its own reply.
struct Conn {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

/// A live helper as a `Sandbox`. Once `alive` is false it stays false: the owner provisions
/// a fresh sandbox rather than reviving this one.
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

impl Drop for Running {
    fn drop(&mut self) {
        self.forget_group();
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
        "bash" | crate::tools::CHECK => Duration::from_millis(bash) + Duration::from_secs(15),
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
