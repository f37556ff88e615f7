//! PostgreSQL storage: the session log and the resource catalog, for many agentd processes
//! sharing one database.
//!
//! Owns: every SQL statement agentd issues to PostgreSQL, the PostgreSQL schema and its
//! migrations, the connection pool and the `LISTEN` connection that tells this process's
//! subscribers about appends other processes made. Must not touch: HTTP, models, harness
//! policy, the meaning of an event — an append loads rows, runs the guard and writes what
//! `agentd_session::append::plan` decided, exactly as `agentd-store` does on SQLite.
//!
//! `PgStore` is an `agentd_catalog::Storage`: the same interface, and the same behaviour (the
//! conformance suites of `agentd-session` and `agentd-catalog` run on both), as SQLite's.
//! Lock order: a transaction that touches a session's rows locks the session's row first.

mod agents;
mod catalog;
pub mod copy;
mod environments;
mod files;
mod keys;
mod lease;
mod log;
pub mod migrate;
mod notify;
mod sessions;
mod threads;
pub mod tls;
mod vaults;
mod work;

#[cfg(test)]
mod tests;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use agentd_session::{Error, Result};

/// The session log on one PostgreSQL database. Clones share the pool and the subscriptions.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    tails: notify::Tails,
    files_quota: agentd_session::catalog::FilesQuota,
}

/// How to open the database.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most connections the pool opens (the `LISTEN` connection is one more).
    pub pool_size: usize,
    /// Whom to trust when the config's `sslmode` asks for TLS.
    pub tls: tls::Tls,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pool_size: 16,
            tls: tls::Tls::default(),
        }
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is not one PostgreSQL's client understands.
    #[error("not a PostgreSQL URL ({0}); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")]
    Url(String),
    /// No server answered: it may be starting, or the host or port is wrong. Worth retrying.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The URL's TLS settings cannot be used (an unreadable `sslrootcert`, say).
    #[error("TLS to the database: {0}")]
    Tls(String),
    /// The server answered and refused (authentication, a missing database, a newer schema…).
    #[error(transparent)]
    Refused(#[from] Error),
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://user@host:port/db`, with TLS as its
    /// `sslmode` and `sslrootcert` say; see [`tls`]), migrating it.
    pub async fn open(url: &str, options: Options) -> Result<PgStore, OpenError> {
        let (config, tls) = tls::parse(url)?;
        PgStore::connect_with(config, Options { tls, ..options }).await
    }

    /// [`PgStore::open`] with a parsed config and the default options.
    pub async fn connect(config: tokio_postgres::Config) -> Result<PgStore, OpenError> {
        PgStore::connect_with(config, Options::default()).await
    }

    /// Connect with `config`, migrating the database and starting to `LISTEN` for appends
    /// made by other processes before returning.
    pub async fn connect_with(
        mut config: tokio_postgres::Config,
        options: Options,
    ) -> Result<PgStore, OpenError> {
        harden(&mut config);
        let connector = tls::connector(&options.tls, config.get_ssl_mode())?;
        let manager = Manager::from_config(
            config.clone(),
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            // A database that cannot be reached is an error, not a request that hangs.
            .wait_timeout(Some(CHECKOUT_TIMEOUT))
            .create_timeout(Some(CHECKOUT_TIMEOUT))
            .build()
            .map_err(|e| OpenError::Url(e.to_string()))?;
        let mut client = pool.get().await.map_err(opening)?;
        migrate::run(&mut client).await?;
        let tails = notify::Tails::listen(config, connector, pool.clone()).await?;
        Ok(PgStore {
            pool,
            tails,
            files_quota: Default::default(),
        })
    }

    /// What each workspace may keep in the Files API (uploads and collected outputs).
    pub fn with_files_quota(mut self, q: agentd_session::catalog::FilesQuota) -> PgStore {
        self.files_quota = q;
        self
    }
}

/// A failure to get the first connection: the server's refusal, or no server at all.
fn opening(e: deadpool_postgres::PoolError) -> OpenError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) if e.as_db_error().is_some() => OpenError::Refused(pg(e)),
        // The server answered and its certificate was not one to trust: retrying cannot help.
        PoolError::Backend(e) if e.to_string().contains("TLS") => OpenError::Tls(format!(
            "{e}: {}. A server certificate signed by your own CA is trusted once the URL \
                 names that CA: sslrootcert=/path/to/ca.pem",
            source_chain(&e)
        )),
        PoolError::Backend(e) => OpenError::Unreachable(e.to_string()),
        PoolError::Timeout(_) => OpenError::Unreachable("timed out connecting".into()),
        e => OpenError::Refused(storage(e)),
    }
}

/// What an error says below its own message (a TLS handshake's reason, say).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut next = e.source();
    while let Some(s) = next {
        out.push(s.to_string());
        next = s.source();
    }
    out.join(": ")
}

/// Longest wait for a connection from the pool, or for a new one to open.
const CHECKOUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Timeouts the caller did not set: a connect that cannot reach the server fails instead of
/// hanging, and a connection whose peer vanished (a half-open TCP link, which the LISTEN
/// connection would otherwise sit on for the kernel's two hours) is noticed within a minute.
fn harden(config: &mut tokio_postgres::Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CHECKOUT_TIMEOUT);
    }
    config
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(30))
        .keepalives_interval(std::time::Duration::from_secs(10))
        .keepalives_retries(3);
}

/// A PostgreSQL error with the server's message, which `tokio_postgres::Error`'s own display
/// leaves out.
fn pg(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) if unavailable(db.code()) => Error::Unavailable(db.to_string()),
        Some(db) => Error::Storage(db.to_string()),
        // No answer from the server: the connection broke or could not be made.
        None => Error::Unavailable(e.to_string()),
    }
}

/// Errors the server gives while it cannot serve at all, rather than for this statement:
/// connection trouble, shutting down, out of disk, memory or connections.
fn unavailable(code: &tokio_postgres::error::SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

/// A failure to get a connection from the pool: the database is out of reach.
fn checkout(e: deadpool_postgres::PoolError) -> Error {
    Error::Unavailable(e.to_string())
}

/// The catalog's results from the driver's and the pool's.
trait Db<T> {
    fn db(self) -> agentd_catalog::Result<T>;
}

impl<T> Db<T> for std::result::Result<T, tokio_postgres::Error> {
    fn db(self) -> agentd_catalog::Result<T> {
        self.map_err(|e| match pg(e) {
            Error::Storage(m) => agentd_catalog::Error::Storage(m),
            Error::Unavailable(m) => agentd_catalog::Error::Unavailable(m),
            other => other.into(),
        })
    }
}

impl<T> Db<T> for std::result::Result<T, deadpool_postgres::PoolError> {
    fn db(self) -> agentd_catalog::Result<T> {
        self.map_err(|e| agentd_catalog::Error::Unavailable(e.to_string()))
    }
}

impl PgStore {
    async fn client(&self) -> agentd_catalog::Result<deadpool_postgres::Object> {
        self.pool.get().await.db()
    }

    /// A page of the JSON bodies of `table`'s rows in workspace `ws`, newest id first, the
    /// archived ones on request: how environments and vaults are listed.
    async fn list_bodies<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        ws: &str,
        include_archived: bool,
        (limit, page): (usize, Option<String>),
        id: impl Fn(&T) -> String,
    ) -> agentd_catalog::Result<agentd_catalog::Page<T>> {
        let sql = format!(
            "SELECT body::text FROM {table} WHERE workspace_id = $1 AND ($2 OR archived_at IS NULL)
             AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&ws, &include_archived, &page, &fetch(limit)])
            .await
            .db()?;
        let items = rows
            .iter()
            .map(|r| json::<T>(r.get(0)))
            .collect::<agentd_catalog::Result<Vec<_>>>()?;
        Ok(agentd_catalog::Page::of(items, limit, id))
    }
}

/// A JSON column read as text: the bytes as stored.
fn json<T: serde::de::DeserializeOwned>(text: &str) -> agentd_catalog::Result<T> {
    Ok(serde_json::from_str(text)?)
}

/// One more row than a page holds, so it knows whether another follows.
fn fetch(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
}
