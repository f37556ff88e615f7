//! `agentd serve`: the API and the harness in one process, over the embedded SQLite store or a
//! PostgreSQL database that other agentd processes share.

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentd_api::{AppState, RateLimit};
use agentd_brain::sandboxes::Caps;
use agentd_brain::{Compaction, Harness, HarnessConfig, Previews, RetryPolicy, Runner, Sandboxes};
use agentd_catalog::{DEFAULT_WORKSPACE, Storage};
use agentd_hands::Limits;
use agentd_hands::bwrap::{Bwrap, HelperCommand};
use agentd_hands::cgroup::Totals;
use agentd_hands::disk::Disks;
use agentd_models::{Registry, RegistryConfig};
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "AGENTD_LISTEN", default_value = crate::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory for the embedded database, sandboxes and models (default:
    /// $XDG_DATA_HOME/agentd or ~/.local/share/agentd).
    #[arg(long, env = "AGENTD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    database: crate::database::DatabaseArgs,
    /// Seconds a process's hold on a running session lasts unless renewed: how soon another
    /// process sharing the database takes over the sessions of one that died.
    #[arg(long, env = "AGENTD_LEASE_SECS", default_value_t = 10)]
    lease_secs: u64,
    /// Directory of scripted-model YAML files, used by models named `scripted/<name>`
    /// (default: <data-dir>/scripts).
    #[arg(long, env = "AGENTD_SCRIPTS_DIR")]
    scripts_dir: Option<PathBuf>,
    /// An API key to register at start, in the default workspace.
    #[arg(long = "api-key", env = "AGENTD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Base URL of the Anthropic Messages API.
    #[arg(
        long,
        env = "AGENTD_ANTHROPIC_BASE_URL",
        default_value = "https://api.anthropic.com"
    )]
    anthropic_base_url: String,
    /// A YAML file of model providers (OpenAI-compatible servers such as vLLM, llama.cpp or
    /// Ollama, or other Anthropic endpoints); agents name their models `<provider>/<model>`.
    #[arg(long, env = "AGENTD_PROVIDERS")]
    providers: Option<PathBuf>,
    /// A YAML file of model list prices (USD per million tokens) over the built-in Claude
    /// list prices; models it does not name, other than Claude's, cost nothing.
    #[arg(long, env = "AGENTD_PRICES")]
    prices: Option<PathBuf>,
    /// Base URL of an OpenAI-compatible server (including `/v1`), offered as the provider
    /// `openai`: models `openai/<model>`.
    #[arg(long, env = "AGENTD_OPENAI_BASE_URL")]
    openai_base_url: Option<String>,
    /// Key for that server.
    #[arg(long, env = "AGENTD_OPENAI_API_KEY", hide_env_values = true)]
    openai_api_key: Option<String>,
    /// Key for the Anthropic Messages API; without it `claude-*` models are refused.
    #[arg(long, env = "AGENTD_ANTHROPIC_API_KEY", hide_env_values = true)]
    anthropic_api_key: Option<String>,
    /// Requests per second allowed per API key (bursts of twice that); 0 turns it off.
    #[arg(long, env = "AGENTD_RATE_LIMIT", default_value_t = 100.0)]
    rate_limit: f64,
    /// Seconds a client has to send a whole request head before its connection is dropped.
    #[arg(long, env = "AGENTD_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body after its head (0: no limit); a
    /// body trickled slower is refused with a 400 and the connection closed.
    #[arg(long, env = "AGENTD_BODY_TIMEOUT_SECS", default_value_t = 120)]
    body_timeout_secs: u64,
    /// Connections served at once; past it new ones wait in the listen backlog. Never more
    /// than the open-file limit (raised to its hard limit at start) less 256.
    #[arg(long, env = "AGENTD_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Event streams one API key may hold open at once; past it a new one gets a 429.
    #[arg(long, env = "AGENTD_MAX_STREAMS_PER_KEY", default_value_t = agentd_api::DEFAULT_STREAMS_PER_KEY)]
    max_streams_per_key: usize,
    /// Seconds a self_hosted environment's worker keeps a work item without a heartbeat
    /// before the item goes back to the queue (a worker may ask for another lease).
    #[arg(long, env = "AGENTD_WORK_LEASE_TTL", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600))]
    work_lease_ttl: u32,
    /// Attempts per model request before the session rests with `retries_exhausted`.
    #[arg(long, env = "AGENTD_MODEL_ATTEMPTS", default_value_t = 5)]
    model_attempts: u32,
    /// First pause between model attempts, in milliseconds; it doubles per attempt.
    #[arg(long, env = "AGENTD_RETRY_BASE_MS", default_value_t = 1000)]
    retry_base_ms: u64,
    /// Where built-in tools run: `bwrap` (bubblewrap sandboxes) or `none` (built-in tools
    /// answer with an error).
    #[arg(long, env = "AGENTD_SANDBOX", default_value = "bwrap")]
    sandbox: SandboxKind,
    /// Release a session's sandbox after this many idle seconds; the workspace stays.
    #[arg(long, env = "AGENTD_SANDBOX_IDLE_SECS", default_value_t = 600)]
    sandbox_idle_secs: u64,
    /// Address-space limit per sandboxed process, MiB.
    #[arg(long, env = "AGENTD_SANDBOX_MEMORY_MB", default_value_t = 4096)]
    sandbox_memory_mb: u64,
    /// Base URL of a SearXNG-compatible search backend for the web_search tool; without it,
    /// web_search is not offered.
    #[arg(long, env = "AGENTD_WEB_SEARCH_URL")]
    web_search_url: Option<String>,
    /// Compact a session's context once a model request's prompt reaches this many tokens
    /// (older turns become a summary the model writes; the log keeps everything); 0 never.
    #[arg(long, env = "AGENTD_COMPACT_AT_TOKENS", default_value_t = 150_000)]
    compact_at_tokens: u64,
    /// Recent messages a compaction keeps verbatim.
    #[arg(long, env = "AGENTD_COMPACT_KEEP_MESSAGES", default_value_t = 6)]
    compact_keep_messages: usize,
    #[command(flatten)]
    models_dir: crate::models::Dir,
    /// Context window of local models, tokens (capped by what each model was trained for).
    #[arg(long, env = "AGENTD_LOCAL_CONTEXT", default_value_t = agentd_local::DEFAULT_CONTEXT)]
    local_context: u32,
    /// Most threads a coordinator agent may start in one session.
    #[arg(long, env = "AGENTD_MAX_THREADS", default_value_t = 16)]
    max_threads: usize,
    /// Most a session's workspace may hold, MiB; 0 for no limit. As root, its own filesystem
    /// enforces it for every tool; otherwise only write and edit check it.
    #[arg(long, env = "AGENTD_SANDBOX_DISK_MB", default_value_t = 10240)]
    sandbox_disk_mb: u64,
    /// Most files and directories a session's workspace may hold (as root); 0 for ext4's
    /// default of one per 16 KiB of the quota.
    #[arg(long, env = "AGENTD_SANDBOX_DISK_INODES", default_value_t = 500_000)]
    sandbox_disk_inodes: u64,
    /// Keep sessions' workspaces in this directory (`<dir>/<session id>`) instead of under the
    /// data dir. Give every agentd process over one database the same shared directory (an NFS
    /// mount, say) and a session keeps its files when it moves to another process; without
    /// one, the model is told its workspace was lost and gets a fresh one. Here the disk quota
    /// is checked by write and edit only: a loop-mounted image must not be mounted by two
    /// hosts at once.
    #[arg(long, env = "AGENTD_WORKSPACE_ROOT", value_name = "DIR")]
    workspace_root: Option<PathBuf>,
    /// Memory all sandboxes together may use, MiB (as root, by cgroup); default: three
    /// quarters of this machine's.
    #[arg(long, env = "AGENTD_SANDBOXES_MEMORY_MB")]
    sandboxes_memory_mb: Option<u64>,
    /// Processes all sandboxes together may run (as root, by cgroup); default: half of what
    /// the kernel allows.
    #[arg(long, env = "AGENTD_SANDBOXES_PROCESSES")]
    sandboxes_processes: Option<u64>,
    /// Sandboxes that may run at once; at it an idle one makes room, and if all are at work a
    /// tool call gets an error saying so. Default: one per 512 MiB of memory, at least 4.
    #[arg(long, env = "AGENTD_MAX_SANDBOXES")]
    max_sandboxes: Option<usize>,
    /// Sandboxes that may run at once over one session's workspace (one per thread calling
    /// tools); default: --max-threads + 1.
    #[arg(long, env = "AGENTD_MAX_SANDBOXES_PER_SESSION")]
    max_sandboxes_per_session: Option<usize>,
    /// Processes a sandbox may run at once.
    #[arg(long, env = "AGENTD_SANDBOX_PROCESSES", default_value_t = 256)]
    sandbox_processes: u64,
    /// Non-public address ranges (CIDR, comma-separated, e.g. 10.0.0.0/8) that sandboxes and
    /// web_fetch may reach when an environment's policy names the host. None by default:
    /// private networks, and this host's own loopback, stay out of every tenant's reach.
    #[arg(
        long = "egress-allow-private",
        env = "AGENTD_EGRESS_ALLOW_PRIVATE",
        value_delimiter = ','
    )]
    egress_allow_private: Vec<agentd_egress::Cidr>,
    /// Seconds one MCP tool call may take; past it the model reads a timeout error.
    #[arg(long, env = "AGENTD_MCP_CALL_TIMEOUT_SECS", default_value_t = 60)]
    mcp_call_timeout_secs: u64,
    /// Seconds connecting to an MCP server and listing its tools may take.
    #[arg(long, env = "AGENTD_MCP_CONNECT_TIMEOUT_SECS", default_value_t = 15)]
    mcp_connect_timeout_secs: u64,
    /// Most bytes of content one MCP tool call may return; a larger result is an error the
    /// model reads.
    #[arg(long, env = "AGENTD_MCP_MAX_RESULT_BYTES", default_value_t = 1 << 20)]
    mcp_max_result_bytes: usize,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SandboxKind {
    Bwrap,
    None,
}

fn sandboxes(a: &Args, data_dir: &Path) -> anyhow::Result<Option<Arc<Sandboxes>>> {
    if let SandboxKind::None = a.sandbox {
        return Ok(None);
    }
    let root = sandbox_root(data_dir)?;
    let helper = HelperCommand {
        exe: helper_exe(&root)?,
        args: vec!["sandbox-helper".into()],
    };
    let provider = Bwrap::new(helper)
        .context("cannot use bubblewrap sandboxes (or start with --sandbox none)")?;
    let machine = Totals::for_this_machine();
    let totals = Totals {
        memory_bytes: a
            .sandboxes_memory_mb
            .map_or(machine.memory_bytes, |mb| mb << 20),
        processes: a.sandboxes_processes.unwrap_or(machine.processes),
    };
    // Sandboxes still get their own groups; a host that refuses the parent's caps is told.
    if let Err(e) = provider.limit_total(&totals) {
        tracing::warn!(error = %e, "all sandboxes together are not capped");
    }
    // Where the workspace's own filesystem holds the quota, every tool meets ENOSPC and the
    // brain's check (a walk of the workspace around each call) would only cost time.
    let shared = a
        .workspace_root
        .as_deref()
        .map(shared_workspaces)
        .transpose()?;
    let tools_only = match provider.disks() {
        Disks::Images { .. } if shared.is_some() && a.sandbox_disk_mb > 0 => {
            tracing::warn!(
                "with --workspace-root the workspace disk quota is enforced only by the write and edit tools: bash can write past it"
            );
            true
        }
        Disks::Unavailable(why) if a.sandbox_disk_mb > 0 => {
            tracing::warn!(%why, "the workspace disk quota is enforced only by the write and edit tools: bash can write past it");
            true
        }
        _ => false,
    };
    let limits = Limits {
        memory_bytes: a.sandbox_memory_mb << 20,
        processes: a.sandbox_processes,
        disk_bytes: if shared.is_some() {
            0
        } else {
            a.sandbox_disk_mb << 20
        },
        disk_inodes: a.sandbox_disk_inodes,
        ..Limits::default()
    };
    let mut sandboxes = Sandboxes::new(Arc::new(provider), root.clone(), limits).with_caps(caps(a));
    match shared {
        Some(dir) => {
            tracing::info!(dir = %dir.display(), "sandboxes keep their workspaces in the shared workspace root");
            sandboxes = sandboxes.with_workspaces(dir);
        }
        None => {
            tracing::info!(dir = %root.join("workspaces").display(), "sandboxes keep their workspaces here")
        }
    }
    if tools_only {
        sandboxes = sandboxes.with_disk_quota(a.sandbox_disk_mb << 20);
    }
    Ok(Some(Arc::new(sandboxes)))
}

/// How many sandboxes may run at once, from the flags or this machine's memory.
fn caps(a: &Args) -> Caps {
    let per_512_mib = Totals::for_this_machine().memory_bytes / 3 * 4 / (512 << 20);
    Caps {
        total: a
            .max_sandboxes
            .unwrap_or_else(|| usize::try_from(per_512_mib).unwrap_or(usize::MAX).max(4)),
        per_workspace: a.max_sandboxes_per_session.unwrap_or(a.max_threads + 1),
    }
}

/// Whether a user other than the owner can walk down to `path`.
pub(crate) fn reachable_by_others(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o001 != 0))
}

/// The directory for workspaces and egress sockets. As root, sandboxes run as `nobody`, who
/// must reach their workspace; a data dir under a private home (e.g. /root) cannot be reached,
/// so those sandboxes live under /var/lib/agentd instead.
fn sandbox_root(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let as_root = nix::unistd::geteuid().is_root();
    let root = if !as_root || reachable_by_others(&data_dir.join("sandbox")) {
        data_dir.join("sandbox")
    } else {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&data_dir, &mut h);
        PathBuf::from(format!(
            "/var/lib/agentd/sandboxes/{:016x}",
            std::hash::Hasher::finish(&h)
        ))
    };
    for dir in [root.clone(), root.join("workspaces"), root.join("egress")] {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        // Others may pass through to what they own, not list it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
    }
    if as_root {
        for p in root
            .ancestors()
            .skip(1)
            .take_while(|p| p.starts_with("/var/lib/agentd"))
        {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711))?;
        }
    }
    Ok(root)
}

/// The `--workspace-root` directory, made if need be, that sandboxes' users can reach.
fn shared_workspaces(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the workspace root {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    if nix::unistd::geteuid().is_root() && !reachable_by_others(&dir) {
        anyhow::bail!(
            "sandboxes run as nobody, who cannot reach the workspace root {}: open its parent directories to traversal (chmod o+x) or choose another",
            dir.display()
        );
    }
    // Others may pass through to what they own, not list it.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
    Ok(dir)
}

/// agentd's own binary, where a sandbox's user can read it (copied next to the sandboxes if
/// it lives somewhere private).
pub(crate) fn helper_exe(root: &Path) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()
        .context("cannot find agentd's own executable for the sandbox helper")?;
    let readable =
        std::fs::metadata(&exe).is_ok_and(|m| m.mode() & 0o004 != 0) && reachable_by_others(&exe);
    if !nix::unistd::geteuid().is_root() || readable {
        return Ok(exe);
    }
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o711))?;
    let copy = bin.join("agentd");
    let tmp = bin.join(format!("agentd.{}", std::process::id()));
    std::fs::copy(&exe, &tmp)
        .with_context(|| format!("cannot copy {} for the sandboxes", exe.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &copy)?;
    Ok(copy)
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    init_tracing();
    if a.local_context < agentd_local::MIN_CONTEXT {
        anyhow::bail!(
            "--local-context {} is too small: local models need at least {} tokens",
            a.local_context,
            agentd_local::MIN_CONTEXT
        );
    }
    let nofile = crate::listen::raise_nofile();
    let max_connections = crate::listen::max_connections(a.max_connections, nofile);
    if max_connections < a.max_connections {
        tracing::warn!(
            wanted = a.max_connections,
            max_connections,
            nofile,
            "the open-file limit holds fewer connections than --max-connections"
        );
    }
    let data_dir = a.data_dir.clone().unwrap_or_else(crate::default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let sandboxes = sandboxes(&a, &data_dir)?;
    let (store, location) = crate::database::open(&a.database, &data_dir).await?;
    // Before anything else uses the store: a wrong vault key stops agentd here, unchanged.
    let sealer = crate::vault::sealer(store.as_ref(), &data_dir).await?;
    first_key(store.as_ref(), a.api_key.as_deref(), &data_dir).await?;
    let models = models(&a, &data_dir)?;
    let previews = Previews::default();
    let lease = Duration::from_secs(a.lease_secs.max(1));
    let prices = match &a.prices {
        Some(p) => agentd_models::Prices::load(p).map_err(anyhow::Error::msg)?,
        None => agentd_models::Prices::default(),
    };
    let resolver = agentd_vault::Resolver::new(
        store.clone(),
        sealer.clone(),
        agentd_vault::Reach::new(a.egress_allow_private.clone()),
    );
    let mcp_auth = Arc::new(crate::mcp_auth::VaultAuth::new(
        store.clone(),
        resolver.clone(),
    ));
    let harness = harness(
        &a,
        &store,
        models.clone(),
        &previews,
        sandboxes,
        prices,
        Edge {
            mcp_auth,
            secrets: Arc::new(crate::vault::Secrets {
                sealer: sealer.clone(),
                resolver: resolver.clone(),
                store: store.clone(),
            }),
        },
    );
    let runner = Runner::new(harness, store.clone(), lease);
    let rate = RateLimit {
        per_second: a.rate_limit,
        burst: a.rate_limit * 2.0,
    };
    let state = AppState::new(store.clone(), runner.clone(), previews, models, rate)
        .with_max_streams_per_key(a.max_streams_per_key.max(1))
        .with_work_lease_ttl(a.work_lease_ttl)
        .with_vault(sealer, resolver);
    tokio::spawn(agentd_api::run_work_leases(state.clone()));

    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another agentd running?)", a.listen))?;
    let addr = listener.local_addr()?;
    // Sessions left running by this process's last run, or by another that died, carry on.
    runner
        .take_over()
        .await
        .context("cannot look for sessions to resume")?;

    eprintln!(
        "agentd: listening on http://{addr} (database {}, data in {})",
        location.shown(),
        data_dir.display()
    );
    let limits = crate::listen::ConnLimits {
        header_timeout: Duration::from_secs(a.header_timeout_secs.max(1)),
        body_timeout: (a.body_timeout_secs > 0).then(|| Duration::from_secs(a.body_timeout_secs)),
        max_connections,
    };
    let streams = state.clone();
    let stop = async move {
        shutdown().await;
        streams.close_streams();
    };
    crate::listen::serve(listener, agentd_api::router(state), limits, stop).await;
    Ok(ExitCode::SUCCESS)
}

/// Registers `--api-key`; without one, a store with no keys gets a new key, written next to
/// the database, so a fresh install is usable without a separate setup step.
async fn first_key(
    store: &dyn Storage,
    api_key: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<()> {
    match api_key {
        Some(k) => {
            store.register_key(k, DEFAULT_WORKSPACE).await?;
        }
        None if store.list_keys().await?.is_empty() => {
            let (info, key) = store
                .create_key(DEFAULT_WORKSPACE, Some("first key"))
                .await?;
            let path = data_dir.join("api-key");
            write_secret(&path, &key)?;
            eprintln!(
                "agentd: created API key {} in workspace {:?}; it is saved in {}",
                info.id,
                info.workspace.name,
                path.display()
            );
        }
        None => {}
    }
    Ok(())
}

/// The model registry: providers from `--providers`, then `--openai-base-url` as `openai`.
fn models(a: &Args, data_dir: &Path) -> anyhow::Result<Arc<Registry>> {
    let mut providers = match &a.providers {
        Some(p) => agentd_models::load_providers(p).map_err(anyhow::Error::msg)?,
        None => vec![],
    };
    if let Some(base_url) = a.openai_base_url.clone() {
        providers.push(agentd_models::ProviderConfig {
            name: "openai".into(),
            kind: agentd_models::ProviderKind::OpenAi,
            base_url,
            api_key: a.openai_api_key.clone().filter(|k| !k.trim().is_empty()),
            ..Default::default()
        });
    }
    Ok(Arc::new(
        Registry::new(RegistryConfig {
            anthropic_base_url: a.anthropic_base_url.clone(),
            anthropic_api_key: a.anthropic_api_key.clone().filter(|k| !k.trim().is_empty()),
            scripts_dir: a
                .scripts_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("scripts")),
        })
        .with_providers(providers)
        .map_err(anyhow::Error::msg)
        .context("the model providers are not usable")?
        .with_local(Arc::new(agentd_local::Local::new(
            a.models_dir.resolve(),
            a.local_context,
        ))),
    ))
}

/// What the harness uses credentials through, at the edge: they never enter it otherwise.
struct Edge {
    mcp_auth: Arc<dyn agentd_mcp::McpAuth>,
    secrets: Arc<dyn agentd_brain::repositories::SessionSecrets>,
}

/// The harness the flags describe. With sandboxes it also starts the sweeper that releases
/// idle ones, since nothing else would.
fn harness(
    a: &Args,
    store: &Arc<dyn Storage>,
    models: Arc<Registry>,
    previews: &Previews,
    sandboxes: Option<Arc<Sandboxes>>,
    prices: agentd_models::Prices,
    edge: Edge,
) -> Harness {
    let Edge { mcp_auth, secrets } = edge;
    let harness = Harness::new(
        store.clone(),
        store.clone(),
        models,
        previews.clone(),
        HarnessConfig {
            retry: RetryPolicy {
                max_attempts: a.model_attempts.max(1),
                base_delay: Duration::from_millis(a.retry_base_ms),
                ..RetryPolicy::default()
            },
            web_search: a.web_search_url.clone(),
            compaction: (a.compact_at_tokens > 0).then_some(Compaction {
                at_tokens: a.compact_at_tokens,
                keep_messages: a.compact_keep_messages,
            }),
            max_threads: a.max_threads,
            egress_private: a.egress_allow_private.clone(),
            prices,
            secrets: Some(secrets),
            ..HarnessConfig::default()
        },
    );
    let mcp = agentd_mcp::Mcp::new(
        mcp_auth,
        agentd_mcp::Limits {
            connect_timeout: Duration::from_secs(a.mcp_connect_timeout_secs.max(1)),
            call_timeout: Duration::from_secs(a.mcp_call_timeout_secs.max(1)),
            max_result_bytes: a.mcp_max_result_bytes,
            ..agentd_mcp::Limits::default()
        },
    );
    let mcp = Arc::new(mcp);
    let sweeper = mcp.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            sweeper.sweep();
        }
    });
    let harness = harness.with_mcp(mcp);
    let Some(sb) = sandboxes else {
        return harness;
    };
    let sweeper = sb.clone();
    let idle = Duration::from_secs(a.sandbox_idle_secs.max(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(idle.min(Duration::from_secs(60))).await;
            sweeper.release_idle(idle).await;
        }
    });
    harness.with_sandboxes(sb)
}

pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{secret}")?;
    Ok(())
}

pub(crate) async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
