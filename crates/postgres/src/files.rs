//! Files: metadata and bytes in one row; uploads, and sessions' collected outputs (scoped to
//! their session, one row per output path).

use async_trait::async_trait;
use tokio_postgres::Row;

use agentd_catalog::{Error, Files, NewFile, Page, Result};
use agentd_session::catalog::{CollectedOutput, NewOutput};
use agentd_wire::file::{FileMetadata, FileScope, FileTag};
use agentd_wire::ids::{self, Kind};

use crate::{Db, PgStore, fetch, log::now};

const SELECT: &str =
    "SELECT id, filename, mime_type, size_bytes, created_at, expires_at, scope_id FROM files";

fn decode(r: &Row) -> Result<FileMetadata> {
    Ok(FileMetadata {
        id: r.get(0),
        kind: FileTag::File,
        filename: r.get(1),
        mime_type: r.get(2),
        size_bytes: u64::try_from(r.get::<_, i64>(3)).map_err(|e| Error::Storage(e.to_string()))?,
        created_at: r.get(4),
        downloadable: true,
        expires_at: r.get(5),
        scope: r.get::<_, Option<String>>(6).map(FileScope::session),
    })
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("file {id} not found"))
}

#[async_trait]
impl Files for PgStore {
    async fn create_file(&self, ws: &str, f: NewFile) -> Result<FileMetadata> {
        let id = ids::new(Kind::File);
        let size = i64::try_from(f.content.len()).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        lock_workspace(&tx, ws).await?;
        self.files_quota
            .admits(usage(&tx, ws).await?, size as u64, (0, 0))
            .map_err(Error::Invalid)?;
        let row = tx
            .query_one(
                "INSERT INTO files (id, workspace_id, filename, mime_type, size_bytes, created_at, expires_at, content) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 RETURNING id, filename, mime_type, size_bytes, created_at, expires_at, scope_id",
                &[&id, &ws, &f.filename, &f.mime_type, &size, &now(), &f.expires_at, &f.content],
            )
            .await
            .db()?;
        tx.commit().await.db()?;
        decode(&row)
    }

    async fn get_file(&self, ws: &str, id: &str) -> Result<FileMetadata> {
        // A file past its expiry is gone, whether or not its row is.
        let sql = format!(
            "{SELECT} WHERE id = $1 AND workspace_id = $2 AND (expires_at IS NULL OR expires_at > $3) AND deleted_at IS NULL"
        );
        let row = self
            .client()
            .await?
            .query_opt(&sql, &[&id, &ws, &now()])
            .await
            .db()?
            .ok_or_else(|| not_found(id))?;
        decode(&row)
    }

    async fn file_content(&self, ws: &str, id: &str) -> Result<(FileMetadata, Vec<u8>)> {
        let meta = self.get_file(ws, id).await?;
        let row = self
            .client()
            .await?
            .query_opt("SELECT content FROM files WHERE id = $1", &[&id])
            .await
            .db()?
            .ok_or_else(|| not_found(id))?;
        Ok((meta, row.get(0)))
    }

    async fn list_files(
        &self,
        ws: &str,
        scope_id: Option<&str>,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<FileMetadata>> {
        let sql = format!(
            "{SELECT} WHERE workspace_id = $1 AND (expires_at IS NULL OR expires_at > $2) AND ($3::text IS NULL OR id < $3) AND ($5::text IS NULL OR scope_id = $5) AND deleted_at IS NULL ORDER BY id DESC LIMIT $4"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&ws, &now(), &page, &fetch(limit), &scope_id])
            .await
            .db()?;
        let files = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(Page::of(files, limit, |f| f.id.clone()))
    }

    async fn delete_file(&self, ws: &str, id: &str) -> Result<()> {
        let c = self.client().await?;
        let mut n = c
            .execute(
                "DELETE FROM files WHERE id = $1 AND workspace_id = $2 AND scope_id IS NULL",
                &[&id, &ws],
            )
            .await
            .db()?;
        if n == 0 {
            // A collected output leaves a tombstone (see `put_output`).
            n = c
                .execute(
                    "UPDATE files SET deleted_at = $3, content = ''::bytea WHERE id = $1 AND workspace_id = $2 AND scope_id IS NOT NULL AND deleted_at IS NULL",
                    &[&id, &ws, &now()],
                )
                .await
                .db()?;
        }
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }
}

impl PgStore {
    /// See `agentd_session::Catalog::outputs`; a deleted one still holds its path, so the
    /// same bytes are not collected again.
    pub(crate) async fn outputs(&self, session_id: &str) -> Result<Vec<CollectedOutput>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT scope_path, sha256 FROM files WHERE scope_id = $1 ORDER BY scope_path",
                &[&session_id],
            )
            .await
            .db()?;
        Ok(rows
            .iter()
            .map(|r| CollectedOutput {
                path: r.get(0),
                sha256: r.get(1),
            })
            .collect())
    }

    /// The bytes of file `file_id` in session `session_id`'s workspace.
    pub(crate) async fn session_file_bytes(
        &self,
        session_id: &str,
        file_id: &str,
    ) -> Result<Vec<u8>> {
        let ws: String = self
            .client()
            .await?
            .query_opt(
                "SELECT workspace_id FROM sessions WHERE id = $1",
                &[&session_id],
            )
            .await
            .db()?
            .ok_or_else(|| Error::NotFound(format!("session {session_id} not found")))?
            .get(0);
        Ok(agentd_catalog::Files::file_content(self, &ws, file_id)
            .await?
            .1)
    }

    /// See `agentd_session::Catalog::put_output`. The session's row is locked first, as an
    /// append locks it, so two collections of one session take turns.
    pub(crate) async fn put_output(&self, session_id: &str, out: NewOutput) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let ws: String = tx
            .query_opt(
                "SELECT workspace_id FROM sessions WHERE id = $1 FOR UPDATE",
                &[&session_id],
            )
            .await
            .db()?
            .ok_or_else(|| Error::NotFound(format!("session {session_id} not found")))?
            .get(0);
        let held: Option<String> = tx
            .query_opt(
                "SELECT sha256 FROM files WHERE scope_id = $1 AND scope_path = $2",
                &[&session_id, &out.path],
            )
            .await
            .db()?
            .map(|r| r.get(0));
        if held.as_deref() == Some(out.sha256.as_str()) {
            return Ok(());
        }
        lock_workspace(&tx, &ws).await?;
        let freed = tx
            .query_one(
                "SELECT COALESCE(SUM(size_bytes), 0)::bigint, COUNT(*) FROM files WHERE scope_id = $1 AND scope_path = $2 AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > $3)",
                &[&session_id, &out.path, &now()],
            )
            .await
            .db()?;
        let freed: (i64, i64) = (freed.get(0), freed.get(1));
        self.files_quota
            .admits(
                usage(&tx, &ws).await?,
                out.content.len() as u64,
                (freed.0 as u64, freed.1 as u64),
            )
            .map_err(Error::Invalid)?;
        tx.execute(
            "DELETE FROM files WHERE scope_id = $1 AND scope_path = $2",
            &[&session_id, &out.path],
        )
        .await
        .db()?;
        let size = i64::try_from(out.content.len()).map_err(|e| Error::Invalid(e.to_string()))?;
        tx.execute(
            "INSERT INTO files (id, workspace_id, filename, mime_type, size_bytes, created_at, expires_at, content, scope_id, scope_path, sha256)
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $3, $9)",
            &[
                &ids::new(Kind::File),
                &ws,
                &out.path,
                &out.mime_type,
                &size,
                &now(),
                &out.content,
                &session_id,
                &out.sha256,
            ],
        )
        .await
        .db()?;
        tx.commit().await.db()
    }
}

/// Uploads and collections of one workspace take turns, so two cannot pass its quota together.
async fn lock_workspace(c: &impl deadpool_postgres::GenericClient, ws: &str) -> Result<()> {
    c.execute("SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE", &[&ws])
        .await
        .db()?;
    Ok(())
}

/// What workspace `ws` keeps in the Files API now: (bytes, files), live ones only.
async fn usage(c: &impl deadpool_postgres::GenericClient, ws: &str) -> Result<(u64, u64)> {
    let r = c
        .query_one(
            "SELECT COALESCE(SUM(size_bytes), 0)::bigint, COUNT(*) FROM files WHERE workspace_id = $1 AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
            &[&ws, &now()],
        )
        .await
        .db()?;
    let (bytes, files): (i64, i64) = (r.get(0), r.get(1));
    Ok((bytes as u64, files as u64))
}
