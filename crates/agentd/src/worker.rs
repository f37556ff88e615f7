//! `agentd worker`: the command line of the self-hosted worker (`agentd_worker`), and the
//! sandboxes it runs tools in, made as `agentd serve` makes them.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use agentd_brain::Sandboxes;
use agentd_hands::Limits;
use agentd_hands::bwrap::{Bwrap, HelperCommand};

#[derive(clap::Args)]
pub struct Args {
    /// Base URL of agentd.
    #[arg(long, env = "AGENTD_URL")]
    url: String,
    /// The self_hosted environment to serve (`env_…`).
    #[arg(long, env = "AGENTD_ENVIRONMENT")]
    environment: String,
    /// The environment's key (`agentd environments keys create ENV`).
    #[arg(long, env = "AGENTD_ENVIRONMENT_KEY", hide_env_values = true)]
    key: String,
    /// Sessions' workspaces are made here, one directory per session (`DIR/<session id>`).
    #[arg(long, env = "AGENTD_WORKER_WORKDIR", value_name = "DIR")]
    workdir: PathBuf,
    /// Sessions served at once.
    #[arg(long, default_value_t = 4)]
    max_sessions: usize,
    /// Hand a session back after it rested this many seconds; its next tool call queues it
    /// again.
    #[arg(long, default_value_t = 60)]
    max_idle_secs: u64,
    /// Hosts the sandboxes may reach (repeat it); without one, and without
    /// --unrestricted-network, sandboxes have no network.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Let sandboxes reach the package registries (pip, npm, apt, …).
    #[arg(long)]
    allow_package_managers: bool,
    /// Let sandboxes reach any public address.
    #[arg(long, conflicts_with = "allow_hosts")]
    unrestricted_network: bool,
    /// Non-public address ranges (CIDR) the allowed hosts may resolve to.
    #[arg(long = "egress-allow-private", value_delimiter = ',')]
    egress_allow_private: Vec<agentd_egress::Cidr>,
    /// Address-space limit per sandboxed process, MiB.
    #[arg(long, default_value_t = 4096)]
    sandbox_memory_mb: u64,
    /// Processes a sandbox may run at once.
    #[arg(long, default_value_t = 256)]
    sandbox_processes: u64,
    /// Sent with each poll so the queue's stats count this worker; default: host name and pid.
    #[arg(long)]
    worker_id: Option<String>,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::serve::init_tracing();
    let workdir = std::path::absolute(&a.workdir)?;
    let root = workdir.join(".agentd");
    for dir in [workdir.clone(), root.clone(), root.join("egress")] {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        // Sandboxes of a root worker run as nobody, who must pass through to its workspace.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
    }
    if nix::unistd::geteuid().is_root() && !crate::serve::reachable_by_others(&root) {
        anyhow::bail!(
            "--workdir {}: as root, sandboxes run as nobody, who cannot reach a directory under {}; choose a workdir every user may pass through (e.g. under /var/lib)",
            workdir.display(),
            workdir
                .parent()
                .map_or_else(String::new, |p| p.display().to_string())
        );
    }
    let helper = HelperCommand {
        exe: crate::serve::helper_exe(&root)?,
        args: vec!["sandbox-helper".into()],
    };
    let provider = Bwrap::new(helper).context("cannot use bubblewrap sandboxes")?;
    let limits = Limits {
        memory_bytes: a.sandbox_memory_mb << 20,
        processes: a.sandbox_processes,
        ..Limits::default()
    };
    let sandboxes =
        Sandboxes::new(Arc::new(provider), root, limits).with_workspaces(workdir.clone());
    let policy = if a.unrestricted_network {
        agentd_egress::Policy::unrestricted()
    } else if a.allow_hosts.is_empty() && !a.allow_package_managers {
        agentd_egress::Policy::none()
    } else {
        agentd_egress::Policy::limited(&a.allow_hosts, a.allow_package_managers)
    }
    .with_operator_ranges(&a.egress_allow_private);
    let worker_id = a.worker_id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        crate::serve::shutdown().await;
        on_signal.cancel();
    });
    agentd_worker::run(
        agentd_worker::Config {
            url: a.url,
            environment: a.environment,
            key: a.key,
            worker_id,
            sandboxes: Arc::new(sandboxes),
            policy,
            max_sessions: a.max_sessions,
            max_idle: Duration::from_secs(a.max_idle_secs),
            workdir,
        },
        stop,
    )
    .await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
