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
mod environments;
mod files;
mod keys;
mod log;
pub mod migrate;
mod notify;
mod sessions;
mod threads;

#[cfg(test)]
mod tests;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use agentd_session::{Error, Result};

/// The session log on one PostgreSQL database. Clones share the pool and the subscriptions.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    tails: notify::Tails,
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://user@host:port/db`), migrating it.
    pub async fn open(url: &str) -> Result<PgStore> {
        let config: tokio_postgres::Config = url.parse().map_err(storage)?;
        PgStore::connect(config).await
    }

    /// Connect with `config`, migrating the database and starting to `LISTEN` for appends
    /// made by other processes before returning.
    pub async fn connect(mut config: tokio_postgres::Config) -> Result<PgStore> {
        harden(&mut config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            // A database that cannot be reached is an error, not a request that hangs.
            .wait_timeout(Some(CHECKOUT_TIMEOUT))
            .create_timeout(Some(CHECKOUT_TIMEOUT))
            .build()
            .map_err(storage)?;
        let mut client = pool.get().await.map_err(storage)?;
        migrate::run(&mut client).await?;
        let tails = notify::Tails::listen(config, pool.clone()).await?;
        Ok(PgStore { pool, tails })
    }
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
        Some(db) => Error::Storage(db.to_string()),
        None => Error::Storage(e.to_string()),
    }
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

/// The catalog's results from the driver's and the pool's.
trait Db<T> {
    fn db(self) -> agentd_catalog::Result<T>;
}

impl<T> Db<T> for std::result::Result<T, tokio_postgres::Error> {
    fn db(self) -> agentd_catalog::Result<T> {
        self.map_err(|e| match pg(e) {
            Error::Storage(m) => agentd_catalog::Error::Storage(m),
            other => other.into(),
        })
    }
}

impl<T> Db<T> for std::result::Result<T, deadpool_postgres::PoolError> {
    fn db(self) -> agentd_catalog::Result<T> {
        self.map_err(|e| agentd_catalog::Error::Storage(e.to_string()))
    }
}

impl PgStore {
    async fn client(&self) -> agentd_catalog::Result<deadpool_postgres::Object> {
        self.pool.get().await.db()
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
