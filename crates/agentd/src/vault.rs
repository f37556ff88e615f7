//! The vault key at start, and `agentd vault rotate-key`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use agentd_catalog::Storage;
use agentd_vault::{Key, KeySource, Sealer};

/// The new key for `rotate-key` (base64 of 32 bytes); one is generated when it is unset.
const NEW_KEY_ENV: &str = "AGENTD_VAULT_NEW_KEY";

#[derive(clap::Subcommand)]
pub enum Command {
    /// Reseal every stored secret under a new vault key, in one transaction. With a key file
    /// the file is replaced; with AGENTD_VAULT_KEY the new key comes from AGENTD_VAULT_NEW_KEY,
    /// or is generated and printed once, and agentd must be restarted with it.
    RotateKey {
        #[arg(long, env = "AGENTD_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        database: crate::database::DatabaseArgs,
    },
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The vault key for `store`: `AGENTD_VAULT_KEY`, else the key file in `data_dir` (made at
/// first start). A key that does not open the stored secrets stops agentd here.
pub async fn sealer(store: &dyn Storage, data_dir: &Path) -> anyhow::Result<Sealer> {
    let (key, source) = Key::load(env("AGENTD_VAULT_KEY").as_deref(), data_dir)?;
    let key = agentd_vault::check_key(store, key, &source).await?;
    Ok(Sealer::new(&key))
}

pub async fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::RotateKey { data_dir, database } => {
            let dir = data_dir.unwrap_or_else(crate::default_data_dir);
            let store = crate::database::open(&database, &dir).await?.0;
            let (old, source) = Key::load(env("AGENTD_VAULT_KEY").as_deref(), &dir)?;
            let given = env(NEW_KEY_ENV);
            let new = match &given {
                Some(k) => Key::from_base64(k, &KeySource::Env)
                    .with_context(|| format!("{NEW_KEY_ENV} is not a vault key"))?,
                None => Key::generate(),
            };
            if new == old {
                anyhow::bail!("the new vault key is the key in use; give a different one");
            }
            if matches!(source, KeySource::Env) && given.is_none() {
                // Shown before the secrets are resealed under it: after the commit, a crash or
                // a closed stdout would lose the only copy.
                eprintln!(
                    "agentd: the new key follows; once the rotation below succeeds, set AGENTD_VAULT_KEY to it before agentd starts again (it is not shown again):"
                );
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", new.to_base64())
                    .and_then(|()| out.flush())
                    .context("cannot show the new key, so nothing was rotated")?;
            }
            let n = agentd_vault::rotate(store.as_ref(), old, &source, &new).await?;
            eprintln!("agentd: resealed {n} credential(s) under the new vault key");
            match (&source, given) {
                (KeySource::File(p), _) => {
                    eprintln!("agentd: the new key is in {}", p.display());
                }
                (KeySource::Env, Some(_)) => {
                    eprintln!(
                        "agentd: start agentd with AGENTD_VAULT_KEY set to the value of {NEW_KEY_ENV} from now on"
                    );
                }
                (KeySource::Env, None) => {
                    eprintln!("agentd: done; the new key is the one shown above");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The harness's secrets from the vaults: repository tokens opened with the vault key, and the
/// `environment_variable` credentials of a session's vaults, found by the resolver.
pub struct Secrets {
    pub sealer: Sealer,
    pub resolver: agentd_vault::Resolver,
    pub store: std::sync::Arc<dyn Storage>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<vault>)")
    }
}

#[async_trait::async_trait]
impl agentd_brain::repositories::SessionSecrets for Secrets {
    fn open_token(&self, resource_id: &str, sealed: &[u8]) -> Result<String, String> {
        let plain = self.sealer.open(resource_id, sealed).map_err(|e| {
            format!("The token of repository resource {resource_id} cannot be used: {e}")
        })?;
        String::from_utf8(plain)
            .map_err(|_| format!("The token of repository resource {resource_id} is not text"))
    }

    async fn environment(
        &self,
        session_id: &str,
    ) -> Result<Vec<agentd_brain::repositories::EnvironmentSecret>, String> {
        use agentd_wire::vault::CredentialNetworking;
        let sv = self
            .store
            .session_vaults(session_id)
            .await
            .map_err(|e| format!("Could not read the session's vaults: {e}"))?;
        if sv.vault_ids.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .resolver
            .environment_secrets(&sv.workspace_id, &sv.vault_ids)
            .await
            .map_err(|e| format!("Could not read the session's environment secrets: {e}"))?;
        Ok(found
            .into_iter()
            .map(|e| agentd_brain::repositories::EnvironmentSecret {
                name: e.secret_name,
                value: e.value.expose().to_owned(),
                header: e.injection_location.header,
                body: e.injection_location.body,
                hosts: match e.networking {
                    CredentialNetworking::Unrestricted => None,
                    CredentialNetworking::Limited { allowed_hosts } => Some(allowed_hosts),
                },
            })
            .collect())
    }
}
