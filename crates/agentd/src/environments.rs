//! `agentd environments keys`: the keys a self_hosted environment's workers authenticate with.
//! There is no public endpoint for them; the operator mints and revokes them here, offline,
//! and each is kept only as a hash.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Keys of a self_hosted environment.
    #[command(subcommand)]
    Keys(Keys),
}

#[derive(clap::Subcommand)]
pub enum Keys {
    /// Mint a key for environment ENV and print it (shown once).
    Create {
        env: String,
        /// A label for the key.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        at: At,
    },
    /// List an environment's keys (ids, never the secrets), revoked ones marked.
    Ls {
        env: String,
        #[command(flatten)]
        at: At,
    },
    /// Revoke key KEY_ID of environment ENV: its workers are refused from the next request.
    Revoke {
        env: String,
        key_id: String,
        #[command(flatten)]
        at: At,
    },
}

#[derive(clap::Args)]
pub struct At {
    #[arg(long, env = "AGENTD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    database: crate::database::DatabaseArgs,
}

async fn open(at: &At) -> anyhow::Result<std::sync::Arc<dyn agentd_catalog::Storage>> {
    let dir = at.data_dir.clone().unwrap_or_else(crate::default_data_dir);
    Ok(crate::database::open(&at.database, &dir).await?.0)
}

pub async fn run(c: Command) -> anyhow::Result<ExitCode> {
    let Command::Keys(k) = c;
    match k {
        Keys::Create { env, name, at } => {
            let store = open(&at).await?;
            let (info, key) = store.create_environment_key(&env, name.as_deref()).await?;
            eprintln!(
                "created key {} for environment {}; store it now, it is not shown again:",
                info.id, info.environment_id
            );
            println!("{key}");
        }
        Keys::Ls { env, at } => {
            let store = open(&at).await?;
            for k in store.list_environment_keys(&env).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    k.id,
                    k.name.unwrap_or_default(),
                    k.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    k.revoked_at
                        .map(|t| format!("revoked {}", t.format("%Y-%m-%dT%H:%M:%SZ")))
                        .unwrap_or_default()
                );
            }
        }
        Keys::Revoke { env, key_id, at } => {
            let store = open(&at).await?;
            let k = store.revoke_environment_key(&env, &key_id).await?;
            eprintln!("revoked key {} of environment {}", k.id, k.environment_id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
