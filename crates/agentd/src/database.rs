//! Which database a command opens: the embedded SQLite file in the data dir, or the one a
//! `--database-url` names (`postgres://…` for many processes sharing one database, or
//! `sqlite:PATH`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use agentd_catalog::Storage;
use agentd_postgres::{OpenError, PgStore};
use agentd_store::Store;

/// The database options every command that opens one takes.
#[derive(clap::Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// The database: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (any number of agentd
    /// processes may share one), or `sqlite:PATH` (default: agentd.db in the data dir).
    #[arg(
        long = "database-url",
        env = "AGENTD_DATABASE_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,
    /// Most PostgreSQL connections this process opens.
    #[arg(long, env = "AGENTD_DATABASE_POOL", default_value_t = 16)]
    pub database_pool: usize,
    /// How long to keep trying a PostgreSQL server that does not answer at start, seconds.
    #[arg(long, env = "AGENTD_DATABASE_WAIT_SECS", default_value_t = 30)]
    pub database_wait_secs: u64,
    /// Bytes each workspace may keep in the Files API, uploads and collected output files
    /// together (default 10 GiB).
    #[arg(long, env = "AGENTD_FILES_QUOTA_BYTES", default_value_t = 10 << 30)]
    pub files_quota_bytes: u64,
    /// Files each workspace may keep in the Files API.
    #[arg(long, env = "AGENTD_FILES_QUOTA_FILES", default_value_t = 10_000)]
    pub files_quota_files: u64,
}

impl DatabaseArgs {
    fn files_quota(&self) -> agentd_catalog::FilesQuota {
        agentd_catalog::FilesQuota {
            bytes: self.files_quota_bytes,
            files: self.files_quota_files,
        }
    }
}

/// Where a database lives, parsed from `--database-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    pub fn parse(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Location> {
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return Ok(Location::Sqlite(data_dir.join("agentd.db")));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Location::Postgres(url.to_owned()));
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                bail!("--database-url {url:?} names no file: write sqlite:PATH");
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        bail!(
            "--database-url must start with postgres://, postgresql:// or sqlite: (got {:?})",
            redact(url)
        )
    }

    /// The location with any password left out, for messages.
    pub fn shown(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(url) => redact(url),
        }
    }
}

/// `url` without the password between `user:` and `@`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

pub async fn open(
    a: &DatabaseArgs,
    data_dir: &Path,
) -> anyhow::Result<(Arc<dyn Storage>, Location)> {
    let location = Location::parse(a.url.as_deref(), data_dir)?;
    let store: Arc<dyn Storage> = match &location {
        Location::Sqlite(path) => Arc::new(open_sqlite(path)?.with_files_quota(a.files_quota())),
        Location::Postgres(url) => Arc::new(
            open_postgres(a, url)
                .await?
                .with_files_quota(a.files_quota()),
        ),
    };
    Ok((store, location))
}

pub fn open_sqlite(path: &Path) -> anyhow::Result<Store> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let store = Store::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // Transcripts and key hashes are agentd's alone.
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", p.display()))?;
        }
    }
    Ok(store)
}

/// Open PostgreSQL, waiting for a server that is not up yet (one started beside agentd, say)
/// up to `--database-wait-secs`; a server that answers and refuses fails at once.
async fn open_postgres(a: &DatabaseArgs, url: &str) -> anyhow::Result<PgStore> {
    let shown = redact(url);
    let options = agentd_postgres::Options {
        pool_size: a.database_pool,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(a.database_wait_secs);
    loop {
        match PgStore::open(url, options.clone()).await {
            Ok(store) => return Ok(store),
            Err(OpenError::Unreachable(why)) if Instant::now() < deadline => {
                eprintln!("agentd: PostgreSQL at {shown} does not answer yet ({why}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(OpenError::Unreachable(why)) => bail!(
                "cannot reach PostgreSQL at {shown}: {why}. Is the server running, and are host \
                 and port right? (waited {}s; --database-wait-secs sets how long)",
                a.database_wait_secs
            ),
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("cannot open PostgreSQL at {shown}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_backend_and_passwords_stay_out_of_messages() {
        let dir = Path::new("/data");
        assert_eq!(
            Location::parse(None, dir).unwrap(),
            Location::Sqlite(dir.join("agentd.db"))
        );
        assert_eq!(
            Location::parse(Some("sqlite:/tmp/x.db"), dir).unwrap(),
            Location::Sqlite("/tmp/x.db".into())
        );
        let pg = Location::parse(Some("postgres://u:secret@h:5432/db"), dir).unwrap();
        assert_eq!(pg.shown(), "postgres://u:***@h:5432/db");
        let plain = Location::parse(Some("postgres://u@h/db"), dir).unwrap();
        assert_eq!(plain.shown(), "postgres://u@h/db");
        let bad = Location::parse(Some("mysql://u:secret@h/db"), dir).unwrap_err();
        assert!(!bad.to_string().contains("secret"), "{bad}");
        assert!(Location::parse(Some("sqlite:"), dir).is_err());
    }
}
