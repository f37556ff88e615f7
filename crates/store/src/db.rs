//! One SQLite database: a dedicated writer thread that group-commits, and a pool of readers.
//!
//! Every write runs on the writer thread. Jobs that queue up while a commit is in flight share
//! the next transaction (each inside its own savepoint), so many sessions appending at once
//! pay for one fsync, and a job's result is released only after its commit is durable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::{Error, Result, migrate};

/// A write: runs inside the group transaction (given no connection when there is none to run
/// in), says whether it succeeded, and hands back what to tell its caller once the commit is
/// durable, or failed.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Reply) + Send>;
/// Answers a job's caller: with its own result, or with why the transaction it ran in did not
/// commit.
type Reply = Box<dyn FnOnce(Option<Error>) + Send>;

/// Most jobs folded into one transaction.
const MAX_GROUP: usize = 256;

#[derive(Clone)]
pub struct Db {
    writer: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: Arc<PathBuf>,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let mut conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
        )?;
        let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > migrate::LATEST {
            // Migrating down is not a thing: an older agentd would misread the newer schema.
            return Err(Error::Storage(format!(
                "{} was written by a newer agentd (schema version {version}; this one knows up to {}): run that agentd or a newer one",
                path.display(),
                migrate::LATEST
            )));
        }
        migrate::run(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("agentd-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| Error::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(Db {
            writer: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            path: Arc::new(path.to_owned()),
        })
    }

    /// Run `f` inside a write transaction; its result comes back once the commit is durable.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let out = conn.map(f);
            let ok = matches!(out, Some(Ok(_)));
            let reply: Reply = Box::new(move |failed| {
                let _ = tx.send(match (failed, out) {
                    (Some(e), _) => Err(e),
                    (None, Some(out)) => out,
                    (None, None) => Err(Error::Storage("a write was never run".into())),
                });
            });
            (ok, reply)
        });
        self.writer
            .send(job)
            .map_err(|_| Error::Storage("the writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Storage("the writer thread dropped a job".into()))?
    }

    /// Run `f` on a read-only connection off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match readers.lock().map(|mut r| r.pop()) {
                Ok(Some(c)) => c,
                _ => {
                    let c = Connection::open_with_flags(
                        path.as_path(),
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    c.execute_batch("PRAGMA busy_timeout=5000;")?;
                    c
                }
            };
            let out = f(&conn);
            if let Ok(mut r) = readers.lock() {
                r.push(conn);
            }
            out
        })
        .await
        .map_err(|e| Error::Storage(format!("reader task failed: {e}")))?
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(jobs.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Without a transaction nothing may run.
            tracing::error!(error = %e, "cannot begin a write transaction");
            for job in jobs {
                job(None).1(Some(Error::from_sqlite(&e)));
            }
            continue;
        }
        for job in jobs {
            // A savepoint per job: one job's failure rolls back only its own writes.
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                tracing::error!(error = %e, "cannot open a savepoint");
                job(None).1(Some(Error::from_sqlite(&e)));
                continue;
            }
            let (ok, reply) = job(Some(&conn));
            let end = if ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %e, "cannot close a savepoint");
            }
            replies.push(reply);
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => replies.into_iter().for_each(|r| r(None)),
            Err(e) => {
                // Nothing was stored: every caller hears why (a full disk is a 503 to clients).
                tracing::error!(error = %e, "commit failed");
                let _ = conn.execute_batch("ROLLBACK");
                replies
                    .into_iter()
                    .for_each(|r| r(Some(Error::from_sqlite(&e))));
            }
        }
    }
}
