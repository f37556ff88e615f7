//! `agentd_session::Catalog` on PostgreSQL, through `agentd_catalog::by_log`.

use async_trait::async_trait;

use agentd_catalog::ThreadRow;
use agentd_catalog::by_log::{self, AnyWorkspace};
use agentd_session::catalog::{
    Catalog, CollectedOutput, Error, NewOutput, SessionVaults, ThreadInfo,
};
use agentd_wire::Session;
use agentd_wire::agent::SessionAgent;
use agentd_wire::environment::{Environment, EnvironmentConfig};

use crate::PgStore;

#[async_trait]
impl AnyWorkspace for PgStore {
    async fn session_row(&self, id: &str) -> agentd_catalog::Result<Session> {
        self.load_session(id).await
    }

    async fn session_file(
        &self,
        session_id: &str,
        file_id: &str,
    ) -> agentd_catalog::Result<Vec<u8>> {
        self.session_file_bytes(session_id, file_id).await
    }

    async fn environment_row(&self, id: &str) -> agentd_catalog::Result<Environment> {
        crate::environments::get(&self.client().await?, None, id, "").await
    }

    async fn thread_row(&self, tid: &str) -> agentd_catalog::Result<ThreadRow> {
        self.thread(tid).await
    }

    async fn session_workspace(&self, id: &str) -> agentd_catalog::Result<String> {
        self.session_workspace(id).await
    }

    async fn resource_token(&self, resource_id: &str) -> agentd_catalog::Result<Option<Vec<u8>>> {
        use crate::Db;
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT sealed FROM resource_secrets WHERE resource_id = $1",
                &[&resource_id],
            )
            .await
            .db()?
            .map(|r| r.get(0)))
    }
}

#[async_trait]
impl Catalog for PgStore {
    async fn session_agent(&self, log_id: &str) -> Result<SessionAgent, Error> {
        by_log::session_agent(self, log_id).await
    }

    async fn session_environment(&self, log_id: &str) -> Result<EnvironmentConfig, Error> {
        by_log::session_environment(self, log_id).await
    }

    async fn thread(&self, log_id: &str) -> Result<Option<ThreadInfo>, Error> {
        by_log::thread_info(self, log_id).await
    }

    async fn outputs(&self, session_id: &str) -> Result<Vec<CollectedOutput>, Error> {
        PgStore::outputs(self, session_id)
            .await
            .map_err(by_log::error)
    }

    async fn put_output(&self, session_id: &str, out: NewOutput) -> Result<(), Error> {
        PgStore::put_output(self, session_id, out)
            .await
            .map_err(|e| match e {
                agentd_catalog::Error::Invalid(m) => Error::Quota(m),
                e => by_log::error(e),
            })
    }

    async fn session_vaults(&self, log_id: &str) -> Result<SessionVaults, Error> {
        by_log::session_vaults(self, log_id).await
    }

    async fn session_mounts(
        &self,
        session_id: &str,
    ) -> Result<agentd_session::catalog::Mounts, Error> {
        by_log::session_mounts(self, session_id).await
    }

    async fn queue_session_work(
        &self,
        log_id: &str,
    ) -> Result<agentd_session::catalog::WorkQueued, Error> {
        by_log::queue_work(self, log_id).await
    }
}
