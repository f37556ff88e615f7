//! The `agentd` binary: wiring only. `serve` runs the API and the harness over the embedded
//! store; the other subcommands are clients of a running server (`apply`, `run`,
//! `sessions`) or administer a data dir or database (`keys`, `db`) or the local models
//! (`models`); `worker` serves a self_hosted environment's tools on this machine.

mod apply;
mod client;
mod database;
mod db;
mod environments;
mod keys;
mod listen;
mod mcp_auth;
mod models;
mod run;
mod serve;
mod sessions;
mod vault;
mod worker;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The default address: loopback only, so nothing is exposed until the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8420";

#[derive(Parser)]
#[command(
    name = "agentd",
    version,
    about = "A self-hostable runtime for long-running AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server and the harness.
    Serve(Box<serve::Args>),
    /// Create or update agents and environments from YAML.
    Apply(apply::Args),
    /// Start a session with an agent, send a prompt and print its events until it rests.
    Run(run::Args),
    /// List and inspect sessions.
    #[command(subcommand)]
    Sessions(sessions::Command),
    /// Manage API keys of a data dir.
    #[command(subcommand)]
    Keys(keys::Command),
    /// Environments: the keys of self_hosted environments' workers.
    #[command(subcommand)]
    Environments(environments::Command),
    /// Move an installation between databases (SQLite to PostgreSQL).
    #[command(subcommand)]
    Db(db::Command),
    /// Vaults: the key that seals their credentials.
    #[command(subcommand)]
    Vault(vault::Command),
    /// Local models (`local/<name>`): fetch and list them.
    #[command(subcommand)]
    Models(models::Command),
    /// Serve a self_hosted environment: run its sessions' tools in sandboxes on this machine.
    Worker(Box<worker::Args>),
    /// The helper that runs inside each sandbox (started by agentd, not by hand).
    #[command(hide = true, disable_help_flag = true)]
    SandboxHelper {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Options shared by every command that talks to a running server.
#[derive(clap::Args, Clone)]
pub struct Remote {
    /// Base URL of the agentd server.
    #[arg(long, env = "AGENTD_URL", default_value = concat!("http://", "127.0.0.1:8420"))]
    pub url: String,
    /// API key to authenticate with.
    #[arg(long, env = "AGENTD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// Where agentd keeps its data unless told otherwise: `$XDG_DATA_HOME/agentd`, else
/// `~/.local/share/agentd`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("agentd");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/agentd"),
        None => PathBuf::from(".agentd"),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::SandboxHelper { args } = cli.command {
        return sandbox_helper(args);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve::run(*a).await,
            Command::Apply(a) => apply::run(a).await,
            Command::Run(a) => run::run(a).await,
            Command::Sessions(c) => sessions::run(c).await,
            Command::Keys(c) => keys::run(c).await,
            Command::Environments(c) => environments::run(c).await,
            Command::Db(c) => db::run(c).await,
            Command::Models(c) => models::run(c).await,
            Command::Vault(c) => vault::run(c).await,
            Command::Worker(a) => worker::run(*a).await,
            Command::SandboxHelper { .. } => Ok(std::process::ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agentd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Inside a sandbox: a single-threaded runtime is all the helper needs. Before one, the same
/// command launches bwrap (`agentd_hands::launch`).
fn sandbox_helper(args: Vec<String>) -> std::process::ExitCode {
    if let Some(launch) = agentd_hands::launch::requested(&args) {
        eprintln!(
            "agentd sandbox-helper: {}",
            agentd_hands::launch::exec(launch)
        );
        return std::process::ExitCode::FAILURE;
    }
    let run = || -> Result<(), String> {
        let cfg = agentd_hands::helper::Config::from_args(args)?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(agentd_hands::helper::run(cfg))
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentd sandbox-helper: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// Clap checks a command line's definition only when it is built: every subcommand here.
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
