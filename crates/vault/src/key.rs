//! The vault key: where it comes from, the check value that proves it is the right one, and
//! rotation.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};

use agentd_catalog::Vaults;

use crate::Sealer;

/// The environment variable that holds the key (base64 of 32 bytes).
pub const ENV: &str = "AGENTD_VAULT_KEY";
/// The key file in the data dir, made at first start when `AGENTD_VAULT_KEY` is unset.
pub const FILE: &str = "vault.key";
/// The next key while a rotation runs; a start that finds the check sealed under it finishes
/// the rotation.
const NEXT: &str = "vault.key.next";

const CHECK_AAD: &str = "agentd-vault-key-check";
const CHECK_PLAIN: &[u8] = b"agentd vault key check v1";

/// A 32-byte key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Where the key in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => write!(f, "{ENV}"),
            KeySource::File(p) => write!(f, "the key file {}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{0} is not a vault key: it must be the base64 of 32 random bytes (make one with `openssl rand -base64 32`)"
    )]
    Malformed(KeySource),
    #[error("cannot use the vault key file {path}: {why}")]
    File { path: String, why: String },
    #[error(
        "the vault key from {0} does not open the secrets stored in this database: it is not the key they were sealed with. Start agentd with the key it used before (set AGENTD_VAULT_KEY, or restore the key file in the data dir); nothing was changed"
    )]
    Wrong(KeySource),
    #[error(
        "this agentd's vault key is not the key the database's secrets are sealed with (another process sharing the database sealed them first): give every process the same key (AGENTD_VAULT_KEY, or the same key file) and restart this one"
    )]
    Unbound,
    #[error("{0}")]
    Storage(#[from] agentd_catalog::Error),
}

impl Key {
    pub fn generate() -> Key {
        let mut k = [0u8; 32];
        SystemRandom::new()
            .fill(&mut k)
            .expect("the system random number generator works");
        Key(k)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key as `AGENTD_VAULT_KEY` spells it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn from_base64(s: &str, source: &KeySource) -> Result<Key, KeyError> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| KeyError::Malformed(source.clone()))?;
        let k: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Malformed(source.clone()))?;
        Ok(Key(k))
    }

    /// `AGENTD_VAULT_KEY` (`env`) if set, else the key file in `data_dir`, made (mode 0600)
    /// if it does not exist yet.
    pub fn load(env: Option<&str>, data_dir: &Path) -> Result<(Key, KeySource), KeyError> {
        if let Some(v) = env.filter(|v| !v.trim().is_empty()) {
            return Ok((Key::from_base64(v, &KeySource::Env)?, KeySource::Env));
        }
        let path = data_dir.join(FILE);
        let source = KeySource::File(path.clone());
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok((Key::from_base64(&s, &source)?, source)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Key::generate();
                write_key_file(&path, &key, false)?;
                tracing::info!(path = %path.display(), "made a new vault key file");
                // Another process may have made it first: whatever is on disk is the key.
                let s = std::fs::read_to_string(&path).map_err(|e| file_error(&path, &e))?;
                Ok((Key::from_base64(&s, &source)?, source))
            }
            Err(e) => Err(file_error(&path, &e)),
        }
    }
}

fn file_error(path: &Path, e: &std::io::Error) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

/// Write `key` to `path` with mode 0600 and sync it; `replace` allows an existing file.
fn write_key_file(path: &Path, key: &Key, replace: bool) -> Result<(), KeyError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600);
    if replace {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    match o.open(path) {
        Ok(mut f) => {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .and_then(|()| writeln!(f, "{}", key.to_base64()))
                .and_then(|()| f.sync_all())
                .map_err(|e| file_error(path, &e))?;
            sync_dir(path);
            Ok(())
        }
        Err(e) if !replace && e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(file_error(path, &e)),
    }
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Make sure `key` opens the database's secrets, if it holds any (their check value is stored
/// with the first secret, `bind_key`). A key file whose rotation was cut short is finished
/// here. Returns the key to use.
pub async fn check_key(store: &dyn Vaults, key: Key, source: &KeySource) -> Result<Key, KeyError> {
    let Some(stored) = store.vault_key_check().await? else {
        return Ok(key);
    };
    if opens(&key, &stored) {
        if let KeySource::File(path) = source {
            let _ = std::fs::remove_file(path.with_file_name(NEXT));
        }
        return Ok(key);
    }
    if let KeySource::File(path) = source {
        let next = path.with_file_name(NEXT);
        if let Ok(s) = std::fs::read_to_string(&next) {
            let new = Key::from_base64(&s, &KeySource::File(next.clone()))?;
            if opens(&new, &stored) {
                std::fs::rename(&next, path).map_err(|e| file_error(path, &e))?;
                sync_dir(path);
                tracing::info!(path = %path.display(), "finished a vault key rotation that was cut short");
                return Ok(new);
            }
        }
    }
    Err(KeyError::Wrong(source.clone()))
}

/// Before the first secret is sealed: store `sealer`'s check value unless one is stored, and
/// refuse if the stored one is another key's. Until a secret exists the key binds nothing, so
/// processes sharing a database that holds no secrets may start with keys of their own.
pub async fn bind_key(store: &dyn Vaults, sealer: &Sealer) -> Result<(), KeyError> {
    let stored = match store.vault_key_check().await? {
        Some(c) => c,
        None => {
            store
                .init_vault_key_check(sealer.seal(CHECK_AAD, CHECK_PLAIN))
                .await?
        }
    };
    if sealer
        .open(CHECK_AAD, &stored)
        .is_ok_and(|p| p == CHECK_PLAIN)
    {
        Ok(())
    } else {
        Err(KeyError::Unbound)
    }
}

fn opens(key: &Key, check: &[u8]) -> bool {
    Sealer::new(key)
        .open(CHECK_AAD, check)
        .is_ok_and(|p| p == CHECK_PLAIN)
}

/// Reseal every secret under `new` in one transaction. With a key file, the new key is written
/// beside it first and takes its place after the commit, so a crash anywhere leaves a key that
/// opens the database (`check_key` picks it). Returns how many credentials were resealed.
pub async fn rotate(
    store: &dyn Vaults,
    old: Key,
    source: &KeySource,
    new: &Key,
) -> Result<u64, KeyError> {
    let old = check_key(store, old, source).await?;
    let next = match source {
        KeySource::File(path) => {
            let next = path.with_file_name(NEXT);
            write_key_file(&next, new, true)?;
            Some((next, path.clone()))
        }
        KeySource::Env => None,
    };
    let (from, to) = (Sealer::new(&old), Sealer::new(new));
    let n = store
        .reseal_credentials(
            Box::new(move |id, sealed| {
                let plain = from
                    .open(id, sealed)
                    .map_err(|e| agentd_catalog::Error::Storage(e.to_string()))?;
                Ok(to.seal(id, &plain))
            }),
            Sealer::new(new).seal(CHECK_AAD, CHECK_PLAIN),
        )
        .await?;
    if let Some((next, path)) = next {
        std::fs::rename(&next, &path).map_err(|e| file_error(&path, &e))?;
        sync_dir(&path);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agentd_catalog::Vaults;

    use super::*;

    fn store(dir: &Path) -> Arc<agentd_store::Store> {
        Arc::new(agentd_store::Store::open(&dir.join("agentd.db")).unwrap())
    }

    #[test]
    fn the_key_file_is_made_once_with_mode_0600_and_the_variable_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, src) = Key::load(None, dir.path()).unwrap();
        let path = dir.path().join(FILE);
        assert_eq!(src, KeySource::File(path.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (k2, _) = Key::load(None, dir.path()).unwrap();
        assert_eq!(k1, k2, "made once");
        let env = Key::generate().to_base64();
        let (k3, src) = Key::load(Some(&env), dir.path()).unwrap();
        assert_eq!((k3.to_base64(), src), (env, KeySource::Env));
        let bad = Key::load(Some("c2VjcmV0LXZhbHVl"), dir.path()).unwrap_err();
        let text = format!("{bad} {bad:?} {k1:?}");
        assert!(text.contains("AGENTD_VAULT_KEY") && !text.contains("c2VjcmV0LXZhbHVl"));
        assert!(!text.contains(&k1.to_base64()));
    }

    #[tokio::test]
    async fn a_wrong_key_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (right, other) = (Key::generate(), Key::generate());
        // No secret yet: any key starts, and binds nothing.
        check_key(s.as_ref(), other.clone(), &KeySource::Env)
            .await
            .unwrap();
        assert_eq!(s.vault_key_check().await.unwrap(), None);
        bind_key(s.as_ref(), &Sealer::new(&right)).await.unwrap();
        let stored = s.vault_key_check().await.unwrap();
        assert!(stored.is_some());
        let late = bind_key(s.as_ref(), &Sealer::new(&other)).await;
        assert!(matches!(late, Err(KeyError::Unbound)), "{late:?}");
        let wrong = check_key(s.as_ref(), other, &KeySource::Env).await;
        assert!(
            matches!(wrong, Err(KeyError::Wrong(KeySource::Env))),
            "{wrong:?}"
        );
        assert_eq!(s.vault_key_check().await.unwrap(), stored);
        check_key(s.as_ref(), right.clone(), &KeySource::Env)
            .await
            .unwrap();
        bind_key(s.as_ref(), &Sealer::new(&right)).await.unwrap();
    }

    #[tokio::test]
    async fn a_rotation_cut_short_is_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (old, src) = Key::load(None, dir.path()).unwrap();
        let old = check_key(s.as_ref(), old, &src).await.unwrap();
        bind_key(s.as_ref(), &Sealer::new(&old)).await.unwrap();
        let path = dir.path().join(FILE);
        let next = dir.path().join(NEXT);

        // Cut short before the commit: the next key is on disk, the database is not resealed.
        let new = Key::generate();
        write_key_file(&next, &new, true).unwrap();
        let (k, _) = Key::load(None, dir.path()).unwrap();
        assert_eq!(check_key(s.as_ref(), k, &src).await.unwrap(), old);
        assert!(!next.exists(), "the unused next key is dropped");

        // Cut short after the commit: the database is under the new key, the file is not yet.
        rotate(s.as_ref(), old.clone(), &src, &new).await.unwrap();
        assert_eq!(Key::load(None, dir.path()).unwrap().0, new);
        write_key_file(&path, &old, true).unwrap();
        write_key_file(&next, &new, true).unwrap();
        let (k, _) = Key::load(None, dir.path()).unwrap();
        assert_eq!(check_key(s.as_ref(), k, &src).await.unwrap(), new);
        assert_eq!(Key::load(None, dir.path()).unwrap().0, new);
        assert!(!next.exists());
    }
}
