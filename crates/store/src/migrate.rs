//! Schema migrations keyed by `PRAGMA user_version`: a data dir made by an older agentd is
//! brought forward on open, in one transaction per step.

use rusqlite::Connection;

const STEPS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_session_activity.sql"),
    include_str!("migrations/0003_one_answer_per_tool_use.sql"),
    include_str!("migrations/0004_outcome_evaluations.sql"),
    include_str!("migrations/0005_threads.sql"),
    include_str!("migrations/0006_event_ids_per_log.sql"),
    include_str!("migrations/0007_files.sql"),
    include_str!("migrations/0008_self_hosted_work.sql"),
    include_str!("migrations/0009_list_cost.sql"),
    include_str!("migrations/0010_output_files.sql"),
    include_str!("migrations/0011_work_pollers.sql"),
    include_str!("migrations/0012_session_resources.sql"),
    include_str!("migrations/0013_vaults.sql"),
    include_str!("migrations/0014_resource_secrets.sql"),
];

/// The schema version this build writes.
pub const LATEST: u32 = STEPS.len() as u32;

pub fn run(conn: &mut Connection) -> rusqlite::Result<u32> {
    run_to(conn, LATEST)
}

/// Migrate up to `target`; tests use it to make an old-format database.
pub fn run_to(conn: &mut Connection, target: u32) -> rusqlite::Result<u32> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in STEPS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(current as usize)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as u32)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "migrated the database");
    }
    Ok(current)
}
