//! `agentd keys`: API keys of a data dir, managed offline.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use agentd_catalog::{DEFAULT_WORKSPACE, Storage};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Mint a key and print it (shown once).
    Create {
        /// Workspace the key belongs to; created if new.
        #[arg(long, default_value = DEFAULT_WORKSPACE)]
        workspace: String,
        /// A label for the key.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, env = "AGENTD_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        database: crate::database::DatabaseArgs,
    },
    /// List keys (ids and workspaces, never the secrets).
    Ls {
        #[arg(long, env = "AGENTD_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        database: crate::database::DatabaseArgs,
    },
}

async fn open(
    data_dir: Option<PathBuf>,
    database: &crate::database::DatabaseArgs,
) -> anyhow::Result<Arc<dyn Storage>> {
    let dir = data_dir.unwrap_or_else(crate::default_data_dir);
    Ok(crate::database::open(database, &dir).await?.0)
}

pub async fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Create {
            workspace,
            name,
            data_dir,
            database,
        } => {
            let store = open(data_dir, &database).await?;
            let (info, key) = store.create_key(&workspace, name.as_deref()).await?;
            eprintln!(
                "created key {} in workspace {:?} ({}); store it now, it is not shown again:",
                info.id, info.workspace.name, info.workspace.id
            );
            println!("{key}");
        }
        Command::Ls { data_dir, database } => {
            let store = open(data_dir, &database).await?;
            for k in store.list_keys().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    k.id,
                    k.workspace.name,
                    k.name.unwrap_or_default(),
                    k.created_at.format("%Y-%m-%dT%H:%M:%SZ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
