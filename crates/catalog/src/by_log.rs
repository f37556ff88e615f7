//! `agentd_session::Catalog` from the catalog's rows: what the harness reads, keyed by log id.
//! Every backend implements that trait by handing these functions its [`AnyWorkspace`] reads,
//! so the mapping from log ids to rows is written once.

use async_trait::async_trait;

use agentd_session::catalog::{Error, SessionVaults, ThreadInfo};
use agentd_wire::Session;
use agentd_wire::agent::SessionAgent;
use agentd_wire::environment::{Environment, EnvironmentConfig};
use agentd_wire::ids;

use crate::ThreadRow;

/// Rows read in whichever workspace holds them: the harness acts for whoever owns a session.
#[async_trait]
pub trait AnyWorkspace: Send + Sync {
    async fn session_row(&self, id: &str) -> crate::Result<Session>;
    /// The bytes of file `file_id` of session `session_id`'s workspace.
    async fn session_file(&self, session_id: &str, file_id: &str) -> crate::Result<Vec<u8>>;
    async fn environment_row(&self, id: &str) -> crate::Result<Environment>;
    async fn thread_row(&self, tid: &str) -> crate::Result<ThreadRow>;
    /// The workspace session `id` belongs to.
    async fn session_workspace(&self, id: &str) -> crate::Result<String>;
    /// The sealed authorization token of resource `resource_id`, if it has one.
    async fn resource_token(&self, resource_id: &str) -> crate::Result<Option<Vec<u8>>>;
}

fn is_thread(log_id: &str) -> bool {
    log_id.starts_with(ids::Kind::Thread.prefix())
}

/// A catalog error as the harness sees it: a row that is gone is a session that is gone.
pub fn error(e: crate::Error) -> Error {
    match e {
        crate::Error::NotFound(m) => Error::NotFound(m),
        e => Error::Storage(e.to_string()),
    }
}

/// A row that is gone is, to the harness, a session that is gone.
fn gone(e: crate::Error, log_id: &str) -> Error {
    match e {
        crate::Error::NotFound(_) => Error::NotFound(log_id.to_owned()),
        e => Error::Storage(e.to_string()),
    }
}

async fn thread(rows: &impl AnyWorkspace, log_id: &str) -> Result<ThreadRow, Error> {
    rows.thread_row(log_id).await.map_err(|e| gone(e, log_id))
}

/// The session log `log_id` belongs to: itself, or a worker thread's session.
async fn session_of(rows: &impl AnyWorkspace, log_id: &str) -> Result<String, Error> {
    if is_thread(log_id) {
        Ok(thread(rows, log_id).await?.session_id)
    } else {
        Ok(log_id.to_owned())
    }
}

pub async fn session_agent(rows: &impl AnyWorkspace, log_id: &str) -> Result<SessionAgent, Error> {
    if is_thread(log_id) {
        return Ok(thread(rows, log_id).await?.agent);
    }
    let session = rows.session_row(log_id).await;
    Ok(session.map_err(|e| gone(e, log_id))?.agent)
}

pub async fn session_environment(
    rows: &impl AnyWorkspace,
    log_id: &str,
) -> Result<EnvironmentConfig, Error> {
    let session_id = session_of(rows, log_id).await?;
    let storage = |e: crate::Error| Error::Storage(e.to_string());
    let s = rows.session_row(&session_id).await.map_err(storage)?;
    let env = rows.environment_row(&s.environment_id).await;
    Ok(env.map_err(storage)?.config)
}

pub async fn session_vaults(
    rows: &impl AnyWorkspace,
    log_id: &str,
) -> Result<SessionVaults, Error> {
    let session_id = session_of(rows, log_id).await?;
    let s = rows
        .session_row(&session_id)
        .await
        .map_err(|e| gone(e, log_id))?;
    let workspace_id = rows
        .session_workspace(&session_id)
        .await
        .map_err(|e| gone(e, log_id))?;
    Ok(SessionVaults {
        workspace_id,
        vault_ids: s.vault_ids,
    })
}

pub async fn thread_info(
    rows: &impl AnyWorkspace,
    log_id: &str,
) -> Result<Option<ThreadInfo>, Error> {
    if !is_thread(log_id) {
        return Ok(None);
    }
    let t = thread(rows, log_id).await?;
    let parent_log = if t.parent_thread_id == ids::primary_thread(&t.session_id) {
        t.session_id.clone()
    } else {
        t.parent_thread_id.clone()
    };
    Ok(Some(ThreadInfo {
        id: t.id,
        session_id: t.session_id,
        parent_log,
        parent_thread_id: t.parent_thread_id,
        agent_name: t.agent_name,
        archived: t.archived,
    }))
}

/// `Catalog::queue_work`: the session's live work item, queued if it has none.
pub async fn queue_work(
    rows: &(impl AnyWorkspace + crate::WorkQueue),
    log_id: &str,
) -> Result<agentd_session::catalog::WorkQueued, Error> {
    use agentd_session::catalog::WorkQueued;
    let session_id = session_of(rows, log_id).await?;
    let s = rows
        .session_row(&session_id)
        .await
        .map_err(|e| gone(e, log_id))?;
    // Archiving asked the worker to stop; queuing its open calls again would start the work
    // over on the next worker, forever (its answers to an archived session are refused).
    if s.archived_at.is_some() {
        return Ok(WorkQueued::Archived);
    }
    let item = crate::work::WorkItem::new(
        "",
        &s.environment_id,
        &session_id,
        crate::work::DEFAULT_TTL_SECONDS,
        chrono::Utc::now(),
    );
    let (_, queued) = rows
        .queue_work(item)
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    Ok(if queued {
        WorkQueued::Queued
    } else {
        WorkQueued::Live
    })
}

/// `Catalog::session_mounts`: each file resource of the session with its file's bytes, each
/// repository with its sealed token.
pub async fn session_mounts(
    rows: &impl AnyWorkspace,
    session_id: &str,
) -> Result<agentd_session::catalog::Mounts, Error> {
    use agentd_session::catalog::{MountedFile, MountedRepository, Mounts};
    use agentd_wire::resource::Resource;
    let s = rows
        .session_row(session_id)
        .await
        .map_err(|e| gone(e, session_id))?;
    let mut out = Mounts::default();
    for r in s.resources {
        match r {
            Resource::File(f) => match rows.session_file(session_id, &f.file_id).await {
                Ok(bytes) => out.files.push(MountedFile {
                    resource_id: f.id,
                    mount_path: f.mount_path,
                    bytes,
                }),
                // Deleted through the Files API since: nothing to mount.
                Err(crate::Error::NotFound(_)) => {}
                Err(e) => return Err(error(e)),
            },
            Resource::GithubRepository(g) => {
                let sealed_token = rows.resource_token(&g.id).await.map_err(error)?;
                out.repositories.push(MountedRepository {
                    resource_id: g.id,
                    url: g.url,
                    checkout: g.checkout,
                    mount_path: g.mount_path,
                    sealed_token,
                });
            }
        }
    }
    Ok(out)
}
