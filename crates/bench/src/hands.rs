//! `agentd-bench hands`: the seed's headline — time to first token when the sandbox is made
//! before inference (coupled, the older design) vs on the first tool call (decoupled, agentd).
//!
//! The provision is realistic: a sandbox, then a `git clone` of a repository of a few MB and a
//! Python virtualenv whose pip comes from the local wheel cache (ensurepip). The upstream is a
//! fake Messages API with a fixed latency before the first token, streaming in chunks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use agentd_brain::HarnessConfig;
use agentd_egress::Policy;
use agentd_hands::bwrap::{Bwrap, HelperCommand, Unconfined};
use agentd_hands::{Limits, Provider, Spec};
use agentd_testkit::world::World;
use agentd_testkit::{FakeAnthropic, FakeOptions, FakeReply};
use agentd_wire::event::Preview;

#[derive(clap::Args)]
pub struct Args {
    /// Sessions per mode in the time-to-first-token run.
    #[arg(long, default_value_t = 30)]
    sessions: usize,
    /// The fake upstream's latency before its first token.
    #[arg(long, default_value_t = 300)]
    first_token_ms: u64,
    /// Size of the repository cloned at provision.
    #[arg(long, default_value_t = 5)]
    repo_mb: usize,
    /// Bare sandboxes timed for the provision figure.
    #[arg(long, default_value_t = 50)]
    provisions: usize,
    /// Commands timed per mode for the per-call overhead.
    #[arg(long, default_value_t = 300)]
    calls: usize,
}

fn helper() -> anyhow::Result<HelperCommand> {
    Ok(HelperCommand {
        exe: std::env::current_exe()?,
        args: vec!["sandbox-helper".into()],
    })
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A bare repository of about `mb` MB with a little history, to clone at provision.
fn make_repo(dir: &Path, mb: usize) -> anyhow::Result<PathBuf> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src)?;
    let git = |args: &[&str], cwd: &Path| -> anyhow::Result<()> {
        let ok = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=bench",
                "-c",
                "user.email=bench@example.com",
            ])
            .args(args)
            .current_dir(cwd)
            .status()?
            .success();
        if !ok {
            bail!("git {args:?} failed");
        }
        Ok(())
    };
    git(&["init", "-q"], &src)?;
    // Incompressible content, so the clone moves real bytes.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for commit in 0..3 {
        for f in 0..(mb * 1024 / 3 / 32).max(1) {
            let mut bytes = Vec::with_capacity(32 * 1024);
            for _ in 0..(32 * 1024 / 8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.extend_from_slice(&seed.to_le_bytes());
            }
            std::fs::write(src.join(format!("blob-{commit}-{f}.bin")), bytes)?;
        }
        git(&["add", "-A"], &src)?;
        git(&["commit", "-qm", &format!("commit {commit}")], &src)?;
    }
    let bare = dir.join("repo.git");
    git(
        &[
            "clone",
            "-q",
            "--bare",
            src.to_str().context("path")?,
            bare.to_str().context("path")?,
        ],
        dir,
    )?;
    Ok(bare)
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("agentd-bench-")
        .tempdir_in("/tmp")?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let repo = make_repo(dir.path(), a.repo_mb)?;
    let bwrap = Arc::new(Bwrap::new(helper()?)?);

    provision_time(&a, &bwrap, dir.path()).await?;
    per_call(&a, &bwrap, dir.path()).await?;
    ttft(&a, bwrap.clone(), &repo).await?;
    repository_resource(&a, bwrap, dir.path()).await
}

async fn provision_time(a: &Args, bwrap: &Bwrap, dir: &Path) -> anyhow::Result<()> {
    let mut times = Vec::new();
    for i in 0..a.provisions {
        let t = Instant::now();
        let sb = bwrap
            .provision(&Spec {
                workspace: dir.join(format!("prov-{i}")),
                outputs: None,
                limits: Limits::default(),
                egress: None,
                setup: None,
                mounts: Vec::new(),
                env: Vec::new(),
            })
            .await?;
        times.push(t.elapsed());
        sb.release().await;
    }
    println!(
        "sandbox provision (bwrap + helper answering), {} runs:",
        a.provisions
    );
    println!(
        "  p50 {}  p95 {}",
        ms(pct(times.clone(), 0.5)),
        ms(pct(times, 0.95))
    );
    Ok(())
}

async fn per_call(a: &Args, bwrap: &Bwrap, dir: &Path) -> anyhow::Result<()> {
    let unconfined = Unconfined { helper: helper()? };
    let mut rows = Vec::new();
    for (name, p) in [
        ("sandboxed", bwrap as &dyn Provider),
        ("unsandboxed", &unconfined as &dyn Provider),
    ] {
        let sb = p
            .provision(&Spec {
                workspace: dir.join(format!("calls-{name}")),
                outputs: None,
                limits: Limits::default(),
                egress: None,
                setup: None,
                mounts: Vec::new(),
                env: Vec::new(),
            })
            .await?;
        let input = json!({"command": "true"});
        for _ in 0..20 {
            sb.execute("bash", &input).await;
        }
        let mut v = Vec::new();
        for _ in 0..a.calls {
            let t = Instant::now();
            let o = sb.execute("bash", &input).await;
            v.push(t.elapsed());
            if o.is_error {
                bail!("bash `true` failed: {}", o.text);
            }
        }
        sb.release().await;
        rows.push((name, pct(v.clone(), 0.5), pct(v, 0.95)));
    }
    println!(
        "per-call cost of a trivial bash command (`true`), {} calls each:",
        a.calls
    );
    for (name, p50, p95) in &rows {
        println!("  {name:<12} p50 {}  p95 {}", ms(*p50), ms(*p95));
    }
    println!(
        "  sandbox overhead per call: p50 {}",
        ms(rows[0].1.saturating_sub(rows[1].1))
    );
    Ok(())
}

async fn ttft(a: &Args, bwrap: Arc<Bwrap>, repo: &Path) -> anyhow::Result<()> {
    let fake = FakeAnthropic::start_with(
        FakeOptions {
            first_byte_delay: Duration::from_millis(a.first_token_ms),
            chunk_delay: Duration::from_millis(5),
            text_chunk_chars: 8,
        },
        vec![FakeReply::text(
            "Here is the first part of a streamed answer.",
        )],
    )
    .await;
    let agent = json!({"name": "ttft", "model": "claude-bench", "tools": [{"type": "agent_toolset_20260401"}]});
    let w = World::start_with(
        &fake.base_url(),
        agent,
        HarnessConfig::default(),
        Some(bwrap),
    )
    .await;
    let sandboxes = w.sandboxes().context("sandboxes")?;
    let setup = "set -e\ngit clone -q --no-local file:///workspace/.cache/repo.git /workspace/repo\npython3 -m venv /workspace/.venv";

    let mut provision = Vec::new();
    let mut results = Vec::new();
    for coupled in [true, false] {
        let mut v = Vec::new();
        for i in 0..a.sessions {
            let sid = w.session().await;
            // The repository the provision clones, put where the sandbox can see it.
            let cache = sandboxes.workspace(&sid).join(".cache");
            std::fs::create_dir_all(&cache)?;
            copy_dir(repo, &cache.join("repo.git"))?;
            chown_to_sandbox(&sandboxes.workspace(&sid))?;
            let mut previews = w.previews.subscribe(&sid);
            let t0 = Instant::now();
            if coupled {
                // The older design: the session's sandbox is ready before inference starts.
                sandboxes
                    .get(
                        &sid,
                        &sid,
                        Policy::none(),
                        agentd_brain::sandboxes::Provision {
                            setup: Some(setup.to_owned()),
                            ..Default::default()
                        },
                    )
                    .await?;
                provision.push(t0.elapsed());
            }
            w.say(&sid, &format!("question {i}")).await;
            loop {
                match tokio::time::timeout(Duration::from_secs(60), previews.recv())
                    .await??
                    .preview
                {
                    Preview::EventDelta { .. } => break,
                    Preview::EventStart { .. } => {}
                }
            }
            v.push(t0.elapsed());
            w.settle(&sid, Duration::from_secs(60)).await;
            sandboxes.destroy(&sid).await;
        }
        results.push(v);
    }
    let (c, d) = (&results[0], &results[1]);
    let (c50, c95, d50, d95) = (
        pct(c.clone(), 0.5),
        pct(c.clone(), 0.95),
        pct(d.clone(), 0.5),
        pct(d.clone(), 0.95),
    );
    let cut = |c: Duration, d: Duration| 100.0 * (1.0 - d.as_secs_f64() / c.as_secs_f64());
    println!(
        "time to first token ({} sessions per mode, upstream first token after {} ms, {} MB repo cloned + venv at provision):",
        a.sessions, a.first_token_ms, a.repo_mb
    );
    println!(
        "  realistic provision (sandbox + clone + venv)  p50 {}  p95 {}",
        ms(pct(provision.clone(), 0.5)),
        ms(pct(provision, 0.95))
    );
    println!(
        "  coupled   (provision, then inference)   p50 {}  p95 {}",
        ms(c50),
        ms(c95)
    );
    println!(
        "  decoupled (inference first; agentd)     p50 {}  p95 {}",
        ms(d50),
        ms(d95)
    );
    println!(
        "  reduction                                p50 -{:.0}%  p95 -{:.0}%",
        cut(c50, d50),
        cut(c95, d95)
    );
    Ok(())
}

/// Opens a bench token as it was "sealed": as it is.
#[derive(Debug)]
struct PlainTokens;

#[async_trait::async_trait]
impl agentd_brain::repositories::SessionSecrets for PlainTokens {
    fn open_token(&self, _: &str, sealed: &[u8]) -> Result<String, String> {
        Ok(String::from_utf8_lossy(sealed).into_owned())
    }

    async fn environment(
        &self,
        _: &str,
    ) -> Result<Vec<agentd_brain::repositories::EnvironmentSecret>, String> {
        Ok(vec![])
    }
}

/// A session with a `github_repository` resource beside one without: the first token comes as
/// soon (the repository is not touched before a tool needs the sandbox), and the first tool
/// call pays for the clone, made in the sandbox through the egress proxy that adds the token,
/// from a private repository on a git smart-HTTP server on loopback.
async fn repository_resource(a: &Args, bwrap: Arc<Bwrap>, dir: &Path) -> anyhow::Result<()> {
    use agentd_wire::resource::{RepositoryResource, Resource};
    let token = "bench-token";
    let git = agentd_testkit::git::GitHttp::start(dir.to_owned(), token, "127.0.0.2:0").await;
    let fake = FakeAnthropic::start_fn_with(
        FakeOptions {
            first_byte_delay: Duration::from_millis(a.first_token_ms),
            chunk_delay: Duration::from_millis(5),
            text_chunk_chars: 8,
        },
        |body| {
            let answered = body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .is_some_and(|m| m.to_string().contains("tool_result"));
            if answered {
                FakeReply::text("The repository is there.")
            } else {
                FakeReply::tool_use("bash", json!({"command": "ls /workspace"}))
            }
        },
    )
    .await;
    let agent = json!({"name": "repo", "model": "claude-bench", "tools": [{"type": "agent_toolset_20260401"}]});
    let cfg = HarnessConfig {
        egress_private: vec!["127.0.0.0/8".parse().map_err(anyhow::Error::msg)?],
        secrets: Some(Arc::new(PlainTokens)),
        ..HarnessConfig::default()
    };
    let w = World::start_with(&fake.base_url(), agent, cfg, Some(bwrap)).await;
    let sandboxes = w.sandboxes().context("sandboxes")?;
    let mut ttft: [Vec<Duration>; 2] = Default::default();
    let mut first_call: [Vec<Duration>; 2] = Default::default();
    for i in 0..a.sessions {
        for (mode, with_repo) in [false, true].into_iter().enumerate() {
            let sid = if with_repo {
                let now = chrono::Utc::now();
                let id = format!("sesrsc_bench{i}");
                let r = Resource::GithubRepository(RepositoryResource {
                    id: id.clone(),
                    url: git.url("repo.git"),
                    mount_path: "/workspace/repo".into(),
                    checkout: None,
                    created_at: now,
                    updated_at: now,
                });
                w.session_with_resources(vec![r], vec![(id, token.as_bytes().to_vec())])
                    .await
            } else {
                w.session().await
            };
            let (first, call) = first_token_and_call(&w, &fake, &sid, i, with_repo).await?;
            ttft[mode].push(first);
            first_call[mode].push(call);
            sandboxes.destroy(&sid).await;
        }
    }
    println!(
        "a github_repository resource ({} sessions per mode, {} MB private repository over smart HTTP through the egress proxy):",
        a.sessions, a.repo_mb
    );
    for (mode, name) in ["without a repository", "with a repository   "]
        .iter()
        .enumerate()
    {
        println!(
            "  {name}  first model request p50 {}  p95 {}   first tool call (provision{}) p50 {}  p95 {}",
            ms(pct(ttft[mode].clone(), 0.5)),
            ms(pct(ttft[mode].clone(), 0.95)),
            if mode == 1 { " + clone" } else { "" },
            ms(pct(first_call[mode].clone(), 0.5)),
            ms(pct(first_call[mode].clone(), 0.95)),
        );
    }
    let ratio = pct(ttft[1].clone(), 0.5).as_secs_f64() / pct(ttft[0].clone(), 0.5).as_secs_f64();
    println!(
        "  first model request with / without a repository: p50 ratio {ratio:.2} (the first token follows it by the upstream's {} ms)",
        a.first_token_ms
    );
    Ok(())
}

/// One turn of session `sid`: the time to its first model request, and how long its first
/// tool call took (provision, clone if any, command), from the log's timestamps.
async fn first_token_and_call(
    w: &World,
    fake: &FakeAnthropic,
    sid: &str,
    i: usize,
    with_repo: bool,
) -> anyhow::Result<(Duration, Duration)> {
    use agentd_wire::EventBody;
    let before = fake.timings().len();
    let t0 = Instant::now();
    w.say(sid, &format!("question {i}")).await;
    let events = w.settle(sid, Duration::from_secs(120)).await;
    // The first reply is a tool call, which streams no text to preview: the first token is
    // the upstream's latency after the first model request, which is what agentd decides.
    let asked = fake
        .timings()
        .get(before)
        .map(|t| t.received)
        .context("no model request")?;
    let first = asked.saturating_duration_since(t0);
    let at = |pick: fn(&EventBody) -> bool| {
        events
            .iter()
            .find(|e| pick(&e.event.body))
            .map(|e| e.event.processed_at)
    };
    let (Some(called), Some(answered)) = (
        at(|b| matches!(b, EventBody::AgentToolUse { .. })),
        at(|b| matches!(b, EventBody::AgentToolResult { .. })),
    ) else {
        bail!("session {sid} made no tool call");
    };
    let ok = events.iter().any(|e| {
        matches!(&e.event.body, EventBody::AgentToolResult { is_error, content, .. }
            if !is_error.unwrap_or(false)
                && serde_json::to_string(content).is_ok_and(|c| !with_repo || c.contains("repo")))
    });
    if !ok {
        bail!("session {sid}: the tool call failed (was the repository cloned?)");
    }
    Ok((first, (answered - called).to_std().unwrap_or_default()))
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// As root the sandbox runs as nobody, who must own what it writes into.
fn chown_to_sandbox(dir: &Path) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    for e in walkdir::WalkDir::new(dir) {
        std::os::unix::fs::chown(e?.path(), Some(65534), Some(65534))?;
    }
    Ok(())
}
