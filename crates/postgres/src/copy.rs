//! `agentd db copy`: a whole SQLite installation into an empty PostgreSQL database, in one
//! transaction, so a copy that fails leaves the target as empty as it found it.
//!
//! Rows go across as they are stored: ids, key hashes, timestamps and every log's event bodies
//! (text in both, so each log is the same bytes). The SQLite file is brought to its latest
//! schema first, as `agentd serve` would on opening it.

use std::path::Path;

use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use rusqlite::types::Value;
use tokio_postgres::types::ToSql;

use crate::{PgStore, pg};

/// Why a copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the target database is not empty (it has {0}); copy into a new, empty database")]
    NotEmpty(String),
    #[error("cannot read {path}: {why}")]
    Source { path: String, why: String },
    #[error("{0}")]
    Target(#[from] agentd_session::Error),
}

/// How a column's SQLite value becomes its PostgreSQL one.
#[derive(Clone, Copy)]
enum Col {
    Text,
    Int,
    /// RFC 3339 text in SQLite, `timestamptz` here.
    Time,
    /// JSON kept as written (`json`).
    Json,
    /// JSON the database may normalise (`jsonb`).
    Jsonb,
    Bytes,
}

impl Col {
    fn cast(self) -> &'static str {
        match self {
            Col::Text => "text",
            Col::Int => "bigint",
            Col::Time => "timestamptz",
            Col::Json => "text::json",
            Col::Jsonb => "text::jsonb",
            Col::Bytes => "bytea",
        }
    }
}

/// A column as SQLite names it, as PostgreSQL names it, and how its value crosses.
type Column = (&'static str, &'static str, Col);

/// One table: its columns, the key columns first (rows are read in key order, a page at a
/// time), named as each side names them.
struct Table {
    name: &'static str,
    columns: &'static [Column],
    key: usize,
}

use Col::{Bytes, Int, Json, Jsonb, Text, Time};

/// In the order the foreign keys need. (`work_pollers` is not copied: it is a figure of the
/// last half minute, not state.)
const TABLES: &[Table] = &[
    Table {
        name: "workspaces",
        columns: &[
            ("id", "id", Text),
            ("name", "name", Text),
            ("created_at", "created_at", Time),
        ],
        key: 1,
    },
    Table {
        name: "api_keys",
        columns: &[
            ("id", "id", Text),
            ("workspace_id", "workspace_id", Text),
            ("hash", "hash", Bytes),
            ("name", "name", Text),
            ("created_at", "created_at", Time),
        ],
        key: 1,
    },
    Table {
        name: "agents",
        columns: &[
            ("id", "id", Text),
            ("workspace_id", "workspace_id", Text),
            ("latest_version", "latest_version", Int),
            ("created_at", "created_at", Time),
            ("updated_at", "updated_at", Time),
            ("archived_at", "archived_at", Time),
        ],
        key: 1,
    },
    Table {
        name: "agent_versions",
        columns: &[
            ("agent_id", "agent_id", Text),
            ("version", "version", Int),
            ("spec", "spec", Json),
            ("created_at", "created_at", Time),
        ],
        key: 2,
    },
    Table {
        name: "environments",
        columns: &[
            ("id", "id", Text),
            ("workspace_id", "workspace_id", Text),
            ("body", "body", Json),
            ("created_at", "created_at", Time),
            ("updated_at", "updated_at", Time),
            ("archived_at", "archived_at", Time),
        ],
        key: 1,
    },
    Table {
        name: "files",
        columns: &[
            ("id", "id", Text),
            ("workspace_id", "workspace_id", Text),
            ("filename", "filename", Text),
            ("mime_type", "mime_type", Text),
            ("size_bytes", "size_bytes", Int),
            ("created_at", "created_at", Time),
            ("expires_at", "expires_at", Time),
            ("content", "content", Bytes),
            ("scope_id", "scope_id", Text),
            ("scope_path", "scope_path", Text),
            ("sha256", "sha256", Text),
            ("deleted_at", "deleted_at", Time),
        ],
        key: 1,
    },
    Table {
        name: "sessions",
        columns: &[
            ("id", "id", Text),
            ("workspace_id", "workspace_id", Text),
            ("agent_id", "agent_id", Text),
            ("agent_version", "agent_version", Int),
            ("agent", "agent", Jsonb),
            ("environment_id", "environment_id", Text),
            ("status", "status", Text),
            ("title", "title", Text),
            ("metadata", "metadata", Jsonb),
            ("usage", "usage", Jsonb),
            ("last_seq", "last_seq", Int),
            ("active_ms", "active_ms", Int),
            ("running_since", "running_since", Time),
            ("outcomes", "outcomes", Jsonb),
            ("list_cost", "list_cost", Int),
            ("resources", "resources", Jsonb),
            ("vault_ids", "vault_ids", Jsonb),
            ("created_at", "created_at", Time),
            ("updated_at", "updated_at", Time),
            ("archived_at", "archived_at", Time),
        ],
        key: 1,
    },
    Table {
        name: "environment_keys",
        columns: &[
            ("id", "id", Text),
            ("workspace_id", "workspace_id", Text),
            ("environment_id", "environment_id", Text),
            ("hash", "hash", Bytes),
            ("name", "name", Text),
            ("created_at", "created_at", Time),
            ("revoked_at", "revoked_at", Time),
        ],
        key: 1,
    },
    Table {
        name: "work_items",
        columns: &[
            ("id", "id", Text),
            ("workspace_id", "workspace_id", Text),
            ("environment_id", "environment_id", Text),
            ("session_id", "session_id", Text),
            ("state", "state", Text),
            ("body", "body", Json),
        ],
        key: 1,
    },
    Table {
        name: "threads",
        columns: &[
            ("id", "id", Text),
            ("session_id", "session_id", Text),
            ("parent_thread_id", "parent_thread_id", Text),
            ("agent_name", "agent_name", Text),
            ("agent", "agent", Jsonb),
            ("status", "status", Text),
            ("last_seq", "last_seq", Int),
            ("usage", "usage", Jsonb),
            ("list_cost", "list_cost", Int),
            ("active_ms", "active_ms", Int),
            ("running_since", "running_since", Time),
            ("created_at", "created_at", Time),
            ("updated_at", "updated_at", Time),
            ("archived_at", "archived_at", Time),
        ],
        key: 1,
    },
    Table {
        name: "vaults",
        columns: &[
            ("id", "id", Text),
            ("workspace_id", "workspace_id", Text),
            ("body", "body", Json),
            ("created_at", "created_at", Time),
            ("updated_at", "updated_at", Time),
            ("archived_at", "archived_at", Time),
        ],
        key: 1,
    },
    Table {
        name: "vault_credentials",
        columns: &[
            ("id", "id", Text),
            ("vault_id", "vault_id", Text),
            ("workspace_id", "workspace_id", Text),
            ("match_key", "match_key", Text),
            ("body", "body", Json),
            ("sealed", "sealed", Bytes),
            ("created_at", "created_at", Time),
            ("updated_at", "updated_at", Time),
            ("archived_at", "archived_at", Time),
        ],
        key: 1,
    },
    Table {
        name: "vault_key",
        columns: &[("id", "id", Int), ("check_value", "check_value", Bytes)],
        key: 1,
    },
    Table {
        name: "resource_secrets",
        columns: &[
            ("resource_id", "resource_id", Text),
            ("session_id", "session_id", Text),
            ("sealed", "sealed", Bytes),
        ],
        key: 1,
    },
    Table {
        name: "events",
        columns: &[
            ("session_id", "log_id", Text),
            ("seq", "seq", Int),
            ("id", "id", Text),
            ("type", "type", Text),
            ("processed_at", "processed_at", Time),
            ("body", "body", Json),
            ("private", "private", Json),
        ],
        key: 2,
    },
];

/// Rows read from SQLite per round trip.
const PAGE: usize = 2000;

/// What was copied: rows per table, in copy order.
pub type Copied = Vec<(&'static str, u64)>;

/// Copy the SQLite database at `path` into `to`, which must be empty; `progress` hears each
/// table's running count.
pub async fn from_sqlite(
    path: &Path,
    to: &PgStore,
    progress: impl Fn(&str, u64),
) -> Result<Copied, CopyError> {
    let source_error = |e: rusqlite::Error| CopyError::Source {
        path: path.display().to_string(),
        why: e.to_string(),
    };
    let mut source =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(source_error)?;
    agentd_store::migrate::run(&mut source).map_err(source_error)?;

    let mut client = to.pool.get().await.map_err(crate::checkout)?;
    let tx = client.transaction().await.map_err(pg)?;
    refuse_if_not_empty(&tx).await?;
    let mut copied = Vec::new();
    for table in TABLES {
        let n = copy_table(&source, &tx, table, &progress)
            .await
            .map_err(|e| match e {
                Failure::Source(e) => source_error(e),
                Failure::Target(e) => CopyError::Target(e),
            })?;
        copied.push((table.name, n));
    }
    tx.commit().await.map_err(pg)?;
    Ok(copied)
}

async fn refuse_if_not_empty(tx: &tokio_postgres::Transaction<'_>) -> Result<(), CopyError> {
    let mut held = Vec::new();
    for table in ["workspaces", "sessions", "events", "vault_key"] {
        let sql = format!("SELECT count(*) FROM {table}");
        let n: i64 = tx.query_one(&sql, &[]).await.map_err(pg)?.get(0);
        if n > 0 {
            held.push(format!("{n} {table}"));
        }
    }
    if held.is_empty() {
        Ok(())
    } else {
        Err(CopyError::NotEmpty(held.join(", ")))
    }
}

enum Failure {
    Source(rusqlite::Error),
    Target(agentd_session::Error),
}

async fn copy_table(
    source: &rusqlite::Connection,
    tx: &tokio_postgres::Transaction<'_>,
    t: &Table,
    progress: &impl Fn(&str, u64),
) -> Result<u64, Failure> {
    let names = |side: fn(&Column) -> &'static str| {
        t.columns.iter().map(side).collect::<Vec<_>>().join(", ")
    };
    let key = t.columns[..t.key]
        .iter()
        .map(|c| c.0)
        .collect::<Vec<_>>()
        .join(", ");
    let after = (1..=t.key).map(|i| format!("?{i}")).collect::<Vec<_>>();
    let select = |first: bool| {
        let filter = if first {
            String::new()
        } else {
            format!("WHERE ({key}) > ({})", after.join(", "))
        };
        format!(
            "SELECT {} FROM {} {filter} ORDER BY {key} LIMIT {PAGE}",
            names(|c| c.0),
            t.name
        )
    };
    let values = (1..=t.columns.len())
        .zip(t.columns)
        .map(|(i, c)| format!("${i}::{}", c.2.cast()))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!(
        "INSERT INTO {} ({}) VALUES ({values})",
        t.name,
        names(|c| c.1)
    );
    let insert = tx
        .prepare(&insert)
        .await
        .map_err(|e| Failure::Target(pg(e)))?;

    let mut last: Option<Vec<Value>> = None;
    let mut count = 0u64;
    loop {
        let rows = read_page(source, &select(last.is_none()), last.as_deref(), t)
            .map_err(Failure::Source)?;
        let Some(tail) = rows.last() else { break };
        last = Some(tail[..t.key].to_vec());
        let params: Vec<Vec<Box<dyn ToSql + Sync + Send>>> = rows
            .iter()
            .map(|row| convert(row, t))
            .collect::<Result<_, _>>()
            .map_err(Failure::Target)?;
        // Sent together: the driver pipelines them on the one connection.
        try_join_all(params.iter().map(|p| {
            let refs: Vec<&(dyn ToSql + Sync)> = p
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let insert = &insert;
            async move { tx.execute(insert, &refs).await }
        }))
        .await
        .map_err(|e| Failure::Target(pg(e)))?;
        count += rows.len() as u64;
        progress(t.name, count);
        if rows.len() < PAGE {
            break;
        }
    }
    Ok(count)
}

fn read_page(
    source: &rusqlite::Connection,
    sql: &str,
    after: Option<&[Value]>,
    t: &Table,
) -> rusqlite::Result<Vec<Vec<Value>>> {
    let mut st = source.prepare_cached(sql)?;
    let params = rusqlite::params_from_iter(after.unwrap_or_default().iter());
    let rows = st.query_map(params, |r| {
        (0..t.columns.len()).map(|i| r.get::<_, Value>(i)).collect()
    })?;
    rows.collect()
}

fn convert(row: &[Value], t: &Table) -> agentd_session::Result<Vec<Box<dyn ToSql + Sync + Send>>> {
    row.iter()
        .zip(t.columns)
        .map(|(v, (name, _, col))| {
            value(v, *col)
                .map_err(|why| agentd_session::Error::Storage(format!("{}.{name}: {why}", t.name)))
        })
        .collect()
}

fn value(v: &Value, col: Col) -> Result<Box<dyn ToSql + Sync + Send>, String> {
    Ok(match (col, v) {
        (Col::Text | Col::Json | Col::Jsonb, Value::Null) => Box::new(None::<String>),
        (Col::Text | Col::Json | Col::Jsonb, Value::Text(s)) => Box::new(Some(s.clone())),
        (Col::Int, Value::Null) => Box::new(None::<i64>),
        (Col::Int, Value::Integer(n)) => Box::new(Some(*n)),
        (Col::Time, Value::Null) => Box::new(None::<DateTime<Utc>>),
        (Col::Time, Value::Text(s)) => Box::new(Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("{s:?} is not a timestamp: {e}"))?
                .with_timezone(&Utc),
        )),
        (Col::Bytes, Value::Null) => Box::new(None::<Vec<u8>>),
        (Col::Bytes, Value::Blob(b)) => Box::new(Some(b.clone())),
        (_, other) => return Err(format!("unexpected value {other:?}")),
    })
}
