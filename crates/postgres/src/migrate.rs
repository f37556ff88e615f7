//! Schema migrations: versioned `.sql` files, applied at open in one transaction each and
//! recorded in `schema_migrations`. An advisory lock held by each step's transaction keeps two
//! processes opening the same database at once from applying a step twice.

use tokio_postgres::Client;

const STEPS: &[&str] = &[
    include_str!("migrations/0001_session_log.sql"),
    include_str!("migrations/0002_catalog.sql"),
    include_str!("migrations/0003_leases.sql"),
    include_str!("migrations/0004_self_hosted_work.sql"),
    include_str!("migrations/0005_list_cost.sql"),
    include_str!("migrations/0006_output_files.sql"),
    include_str!("migrations/0007_work_pollers.sql"),
    include_str!("migrations/0008_session_resources.sql"),
    include_str!("migrations/0009_vaults.sql"),
    include_str!("migrations/0010_resource_secrets.sql"),
];

/// The schema version this build writes.
pub const LATEST: i32 = STEPS.len() as i32;

/// Any constant will do, as long as nothing else in the database locks it.
const LOCK: i64 = 0x6167_656e_7464; // "agentd"

/// Bring the database to `LATEST`; refuse one a newer agentd wrote.
pub async fn run(client: &mut Client) -> agentd_session::Result<()> {
    run_to(client, LATEST).await
}

/// Migrate up to `target`; tests use it to make an old-format database.
pub async fn run_to(client: &mut Client, target: i32) -> agentd_session::Result<()> {
    apply(client, target).await.map_err(crate::pg)?;
    let newest: Option<i32> = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .map_err(crate::pg)?
        .get(0);
    match newest {
        // Migrating down is not a thing: an older agentd would misread the newer schema.
        Some(v) if v > LATEST => Err(agentd_session::Error::Storage(format!(
            "the database was written by a newer agentd (schema version {v}; this one knows up to {LATEST}): run that agentd or a newer one"
        ))),
        _ => Ok(()),
    }
}

async fn apply(client: &mut Client, target: i32) -> Result<(), tokio_postgres::Error> {
    for (version, sql) in (1..=target).zip(STEPS) {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await?;
        // Not a notice per start that the table below already exists.
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version     INTEGER PRIMARY KEY,
                applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
        let done: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
                &[&version],
            )
            .await?
            .get(0);
        if done {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "migrated the PostgreSQL database");
    }
    Ok(())
}
