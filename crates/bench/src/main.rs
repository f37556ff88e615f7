//! `agentd-bench`: figures, not timed tests. Every comparison is measured in one run on one
//! machine, so ratios mean something even when the machine is noisy.
//!
//! - `agentd-bench core`: harness overhead, log append rate, turn throughput, memory.
//! - `agentd-bench hands`: time to first token with the sandbox provisioned before inference
//!   (coupled) vs on the first tool call (decoupled); sandbox provision time; per-call cost of
//!   a command in the sandbox vs unsandboxed.
//! - `agentd-bench outcomes`: success rate on structured-file tasks with and without an
//!   outcome (scripted by default; any configured model with `--model`).
//! - `agentd-bench cluster --postgres URL`: real `agentd serve` processes over HTTP, one on
//!   SQLite against 1, 2 and 4 on one PostgreSQL database; failover time after kill -9.
//! - `agentd-bench local`: the in-process model's load time and tokens per second.
//! - `agentd-bench selfhosted`: a self-hosted session (an `agentd worker` on loopback) beside
//!   a cloud session through a real `agentd serve`: TTFT and per-tool-call round trip.
//!
//! Run with `cargo run --release -p agentd-bench -- <core|hands|outcomes|local|cluster|selfhosted>`.

mod cluster;
mod core;
mod hands;
mod local;
mod outcomes;
mod process;
mod selfhosted;

use clap::Parser;

#[derive(Parser)]
#[command(name = "agentd-bench")]
enum Cli {
    /// The core: harness overhead, log append rate, throughput, memory, concurrency.
    Core(core::Args),
    /// The hands: TTFT coupled vs decoupled, provision time, per-call sandbox overhead.
    Hands(hands::Args),
    /// Outcomes: structured-file tasks with and without an outcome.
    Outcomes(outcomes::Args),
    /// Many processes: turns/s and turn latency over HTTP, SQLite vs PostgreSQL with 1, 2, 4
    /// processes; failover time.
    Cluster(cluster::Args),
    /// The local model: load time, tokens per second.
    Local(local::Args),
    /// Self-hosted vs cloud hands: TTFT and per-tool-call round trip, an `agentd worker` on
    /// loopback against agentd's own sandbox.
    Selfhosted(selfhosted::Args),
    /// The sandbox helper (this binary plays it for the hands bench).
    #[command(hide = true, disable_help_flag = true)]
    SandboxHelper {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cli::SandboxHelper { args } = cli {
        if let Some(launch) = agentd_hands::launch::requested(&args) {
            anyhow::bail!("{}", agentd_hands::launch::exec(launch));
        }
        let cfg = agentd_hands::helper::Config::from_args(args).map_err(anyhow::Error::msg)?;
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(agentd_hands::helper::run(cfg))
            .map_err(anyhow::Error::msg);
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with --release for real figures");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli {
            Cli::Core(a) => core::run(a).await,
            Cli::Hands(a) => hands::run(a).await,
            Cli::Outcomes(a) => outcomes::run(a).await,
            Cli::Local(a) => local::run(a).await,
            Cli::Cluster(a) => cluster::run(a).await,
            Cli::Selfhosted(a) => selfhosted::run(a).await,
            Cli::SandboxHelper { .. } => Ok(()),
        }
    })
}
