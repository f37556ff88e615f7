//! `agentd_session::lease::Leases` on PostgreSQL: a row per held lease, expiry by the
//! database's clock; nudges are `NOTIFY agentd_nudge`, relayed by the listening connection.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use agentd_session::Result;
use agentd_session::lease::{Leases, Nudge};

use crate::{PgStore, checkout, notify, pg};

#[async_trait]
impl Leases for PgStore {
    async fn acquire(&self, log_id: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let client = self.pool.get().await.map_err(checkout)?;
        let row = client
            .query_opt(
                "INSERT INTO leases (log_id, owner, expires_at)
                 VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
                 ON CONFLICT (log_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                 WHERE leases.owner = excluded.owner OR leases.expires_at < now()
                 RETURNING owner",
                &[&log_id, &owner, &ms],
            )
            .await
            .map_err(pg)?;
        Ok(row.is_some())
    }

    async fn renew(&self, log_id: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let client = self.pool.get().await.map_err(checkout)?;
        let n = client
            .execute(
                "UPDATE leases SET expires_at = now() + $3::bigint * interval '1 millisecond'
                 WHERE log_id = $1 AND owner = $2 AND expires_at > now()",
                &[&log_id, &owner, &ms],
            )
            .await
            .map_err(pg)?;
        Ok(n == 1)
    }

    async fn release(&self, log_id: &str, owner: &str) -> Result<()> {
        let client = self.pool.get().await.map_err(checkout)?;
        client
            .execute(
                "DELETE FROM leases WHERE log_id = $1 AND owner = $2",
                &[&log_id, &owner],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn orphaned(&self) -> Result<Vec<String>> {
        let client = self.pool.get().await.map_err(checkout)?;
        let rows = client
            .query(
                "SELECT id FROM sessions s WHERE status = 'running'
                   AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.log_id = s.id AND l.expires_at > now())
                 UNION ALL
                 SELECT id FROM threads t WHERE status = 'running'
                   AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.log_id = t.id AND l.expires_at > now())",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn nudge(&self, log_id: &str, nudge: Nudge) -> Result<()> {
        let client = self.pool.get().await.map_err(checkout)?;
        notify::nudge(&client, log_id, nudge).await
    }

    fn nudges(&self) -> broadcast::Receiver<(String, Nudge)> {
        self.tails.nudges()
    }

    fn nudges_missed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tails.nudges_missed()
    }
}
