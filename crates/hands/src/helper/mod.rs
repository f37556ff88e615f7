//! The helper: the one long-lived process inside a sandbox. It reads tool requests as JSON
//! lines on stdin and answers on stdout, keeping one bash alive across calls and running the
//! file tools beside it, so a call costs no new process beyond what the command itself starts.
//! An outcome's checks run apart from that bash (`check`).

mod bash;
mod check;
pub mod files;
mod seccomp;

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::resource::{Resource, setrlimit};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::protocol::{Request, Response};
use crate::tools::{
    self, BASH_DEFAULT_TIMEOUT_MS, BASH_MAX_TIMEOUT_MS, BASH_OUTPUT_LIMIT, BashInput,
};
use crate::{Limits, Output};

/// The helper's command line: `--workdir DIR` and the limits as `--limit-<name> N`.
pub struct Config {
    pub workdir: PathBuf,
    /// Confinement to apply to the helper and everything it starts: rlimits and the seccomp
    /// filter. None when run unconfined (benchmarks).
    pub limits: Option<Limits>,
    /// The egress proxy's socket and the loopback address to bridge it to.
    pub egress: Option<(PathBuf, String)>,
}

impl Config {
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec!["--workdir".into(), self.workdir.display().to_string()];
        if let Some((sock, addr)) = &self.egress {
            a.extend([
                "--egress-socket".into(),
                sock.display().to_string(),
                "--egress-listen".into(),
                addr.clone(),
            ]);
        }
        if let Some(l) = self.limits {
            for (k, v) in [
                ("memory", l.memory_bytes),
                ("processes", l.processes),
                ("cpu", l.cpu_seconds),
                ("file", l.file_bytes),
            ] {
                a.push(format!("--limit-{k}"));
                a.push(v.to_string());
            }
        }
        a
    }

    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
        let mut workdir = None;
        let (mut sock, mut listen) = (None, None);
        let mut limits = Limits::default();
        let mut any_limit = false;
        let mut it = args.into_iter();
        while let Some(k) = it.next() {
            let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
            let num = || {
                v.parse::<u64>()
                    .map_err(|_| format!("{k}: {v:?} is not a number"))
            };
            match k.as_str() {
                "--workdir" => workdir = Some(PathBuf::from(&v)),
                "--egress-socket" => sock = Some(PathBuf::from(&v)),
                "--egress-listen" => listen = Some(v.clone()),
                "--limit-memory" => (limits.memory_bytes, any_limit) = (num()?, true),
                "--limit-processes" => (limits.processes, any_limit) = (num()?, true),
                "--limit-cpu" => (limits.cpu_seconds, any_limit) = (num()?, true),
                "--limit-file" => (limits.file_bytes, any_limit) = (num()?, true),
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(Config {
            workdir: workdir.ok_or("--workdir is required")?,
            limits: any_limit.then_some(limits),
            egress: sock.zip(listen),
        })
    }
}

fn apply_limits(l: &Limits) -> Result<(), String> {
    for (r, v) in [
        (Resource::RLIMIT_AS, l.memory_bytes),
        (Resource::RLIMIT_NPROC, l.processes),
        (Resource::RLIMIT_CPU, l.cpu_seconds),
        (Resource::RLIMIT_FSIZE, l.file_bytes),
        (Resource::RLIMIT_CORE, 0),
    ] {
        setrlimit(r, v, v).map_err(|e| format!("setrlimit {r:?}: {e}"))?;
    }
    Ok(())
}

/// Serve requests until stdin closes.
pub async fn run(cfg: Config) -> Result<(), String> {
    // Nothing else running as the sandbox's user may open this process's file descriptors
    // through /proc: its stdout is agentd's only channel, and must not be forged or flooded.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;
    if let Some((sock, addr)) = &cfg.egress {
        bridge(sock.clone(), addr).await?;
    }
    if let Some(l) = &cfg.limits {
        apply_limits(l)?;
        // Last, after the bridge has its socket: nothing later needs what the filter refuses.
        seccomp::apply()?;
    }
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut shell: Option<bash::Shell> = None;
    while let Some(line) = stdin.next_line().await.map_err(|e| e.to_string())? {
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => return Err(format!("bad request from agentd: {e}")),
        };
        let output = dispatch(&cfg, &mut shell, &req).await;
        let mut resp =
            serde_json::to_vec(&Response { id: req.id, output }).map_err(|e| e.to_string())?;
        resp.push(b'\n');
        stdout.write_all(&resp).await.map_err(|e| e.to_string())?;
        stdout.flush().await.map_err(|e| e.to_string())?;
    }
    if let Some(mut s) = shell {
        s.kill().await;
    }
    Ok(())
}

async fn dispatch(cfg: &Config, shell: &mut Option<bash::Shell>, req: &Request) -> Output {
    let root = cfg.workdir.as_path();
    let input = &req.input;
    match req.tool.as_str() {
        "bash" => match tools::parse::<BashInput>("bash", input) {
            Ok(i) => bash(cfg, shell, i).await,
            Err(e) => Output::error(e),
        },
        "read" => tools::parse("read", input).map_or_else(Output::error, |i| files::read(root, i)),
        "write" => {
            tools::parse("write", input).map_or_else(Output::error, |i| files::write(root, i))
        }
        "edit" => tools::parse("edit", input).map_or_else(Output::error, |i| files::edit(root, i)),
        "glob" => tools::parse("glob", input).map_or_else(Output::error, |i| files::glob(root, i)),
        "grep" => tools::parse("grep", input).map_or_else(Output::error, |i| files::grep(root, i)),
        tools::CHECK => match tools::parse::<tools::CheckInput>(tools::CHECK, input) {
            Ok(i) => {
                let ms = i.timeout_ms.unwrap_or(BASH_DEFAULT_TIMEOUT_MS);
                let timeout = Duration::from_millis(ms.clamp(1, BASH_MAX_TIMEOUT_MS));
                check::run(root, &i.command, timeout, BASH_OUTPUT_LIMIT).await
            }
            Err(e) => Output::error(e),
        },
        // The provider's readiness check.
        "ping" => Output::ok("pong"),
        other => Output::error(format!("{other}: no such tool in this sandbox")),
    }
}

async fn bash(cfg: &Config, shell: &mut Option<bash::Shell>, i: BashInput) -> Output {
    let mut note = String::new();
    if i.restart.unwrap_or(false) {
        if let Some(mut s) = shell.take() {
            s.kill().await;
        }
        note.push_str("[shell restarted]\n");
    }
    let Some(command) = i.command.filter(|c| !c.trim().is_empty()) else {
        return if note.is_empty() {
            Output::error("bash: give a command (or restart: true)")
        } else {
            Output::ok(note)
        };
    };
    let timeout_ms = i
        .timeout_ms
        .unwrap_or(BASH_DEFAULT_TIMEOUT_MS)
        .clamp(1, BASH_MAX_TIMEOUT_MS);
    let s = match shell {
        Some(s) => s,
        None => match bash::Shell::start(&cfg.workdir).await {
            Ok(s) => shell.insert(s),
            Err(e) => return Output::error(format!("bash: cannot start a shell: {e}")),
        },
    };
    match s
        .run(
            &command,
            Duration::from_millis(timeout_ms),
            BASH_OUTPUT_LIMIT,
        )
        .await
    {
        Ok(done) => {
            let mut text = note + &done.output;
            if done.code != 0 {
                text.push_str(&format!("\n[exit code {}]", done.code));
            }
            Output::ok(text)
        }
        Err(bash::Failure::Timeout { output }) => {
            *shell = None;
            Output::error(format!(
                "{note}{output}\n[timed out after {timeout_ms} ms; the command and the shell were killed, the next call starts a fresh shell (state such as cwd and variables is lost); pass a larger timeout_ms or run it in the background]"
            ))
        }
        Err(bash::Failure::Exited { output }) => {
            *shell = None;
            Output::error(format!(
                "{note}{output}\n[the shell exited; the next call starts a fresh one]"
            ))
        }
        Err(bash::Failure::Io(e)) => {
            *shell = None;
            Output::error(format!("bash: {e}"))
        }
    }
}

/// Forward connections on `addr` (loopback in the sandbox's own network namespace) to the
/// egress proxy's Unix socket: the sandbox's only way out.
async fn bridge(sock: PathBuf, addr: &str) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("egress bridge on {addr}: {e}"))?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let sock = sock.clone();
            tokio::spawn(async move {
                match tokio::net::UnixStream::connect(&sock).await {
                    Ok(unix) => relay(tcp, unix).await,
                    Err(e) => {
                        let msg = format!(
                            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nagentd egress proxy unavailable: {e}\n"
                        );
                        let _ = tcp.write_all(msg.as_bytes()).await;
                    }
                }
            });
        }
    });
    Ok(())
}

/// Copy both ways until both ends are done. Unlike `copy_bidirectional`, a failed write to
/// the proxy (it answered early, say a 403 to a request whose body was still coming, and
/// closed) does not drop what the proxy said: its answer still reaches the sandbox.
async fn relay(tcp: tokio::net::TcpStream, unix: tokio::net::UnixStream) {
    let (mut tcp_r, mut tcp_w) = tcp.into_split();
    let (mut unix_r, mut unix_w) = unix.into_split();
    let up = async {
        if tokio::io::copy(&mut tcp_r, &mut unix_w).await.is_err() {
            // Keep reading what the sandbox still sends, so that its writes do not block
            // before it reads the answer.
            let _ = tokio::io::copy(&mut tcp_r, &mut tokio::io::sink()).await;
        }
        let _ = unix_w.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut unix_r, &mut tcp_w).await;
        let _ = tcp_w.shutdown().await;
    };
    tokio::join!(up, down);
}
