//! Files: metadata and bytes in one row; uploads, and sessions' collected outputs (scoped to
//! their session, one row per output path).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use agentd_catalog::{Files, NewFile};
use agentd_session::catalog::{CollectedOutput, NewOutput};
use agentd_wire::file::{FileMetadata, FileScope, FileTag};
use agentd_wire::ids::{self, Kind};

use crate::{Error, Page, Result, Store, time};

const SELECT: &str =
    "SELECT id, filename, mime_type, size_bytes, created_at, expires_at, scope_id FROM files";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileMetadata> {
    Ok(FileMetadata {
        id: r.get(0)?,
        kind: FileTag::File,
        filename: r.get(1)?,
        mime_type: r.get(2)?,
        size_bytes: r.get::<_, i64>(3)? as u64,
        created_at: time::parse(&r.get::<_, String>(4)?)?,
        downloadable: true,
        expires_at: time::parse_opt(r.get(5)?)?,
        scope: r.get::<_, Option<String>>(6)?.map(FileScope::session),
    })
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("file {id} not found"))
}

#[async_trait]
impl Files for Store {
    async fn create_file(&self, ws: &str, f: NewFile) -> Result<FileMetadata> {
        let ws = ws.to_owned();
        let quota = self.files_quota;
        self.db
            .write(move |c| {
                quota
                    .admits(usage(c, &ws)?, f.content.len() as u64, (0, 0))
                    .map_err(Error::Invalid)?;
                let id = ids::new(Kind::File);
                c.execute(
                    "INSERT INTO files (id, workspace_id, filename, mime_type, size_bytes, created_at, expires_at, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        id,
                        ws,
                        f.filename,
                        f.mime_type,
                        f.content.len() as i64,
                        time::fmt(&time::now()),
                        f.expires_at.as_ref().map(time::fmt),
                        f.content
                    ],
                )?;
                Ok(c.query_row(&format!("{SELECT} WHERE id = ?1"), [&id], row)?)
            })
            .await
    }

    async fn get_file(&self, ws: &str, id: &str) -> Result<FileMetadata> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .read(move |c| {
                c.query_row(
                    // A file past its expiry is gone, whether or not its row is.
                    &format!(
                        "{SELECT} WHERE id = ?1 AND workspace_id = ?2 AND (expires_at IS NULL OR expires_at > ?3) AND deleted_at IS NULL"
                    ),
                    params![id, ws, time::fmt(&time::now())],
                    row,
                )
                .optional()?
                .ok_or_else(|| not_found(&id))
            })
            .await
    }

    async fn file_content(&self, ws: &str, id: &str) -> Result<(FileMetadata, Vec<u8>)> {
        let meta = self.get_file(ws, id).await?;
        let id = id.to_owned();
        let bytes = self
            .db
            .read(move |c| {
                c.query_row("SELECT content FROM files WHERE id = ?1", [&id], |r| {
                    r.get::<_, Vec<u8>>(0)
                })
                .optional()?
                .ok_or_else(|| not_found(&id))
            })
            .await?;
        Ok((meta, bytes))
    }

    async fn list_files(
        &self,
        ws: &str,
        scope_id: Option<&str>,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<FileMetadata>> {
        let (ws, scope_id) = (ws.to_owned(), scope_id.map(str::to_owned));
        self.db
            .read(move |c| {
                let mut st = c.prepare_cached(&format!(
                    "{SELECT} WHERE workspace_id = ?1 AND (expires_at IS NULL OR expires_at > ?2) AND (?3 IS NULL OR id < ?3) AND (?5 IS NULL OR scope_id = ?5) AND deleted_at IS NULL ORDER BY id DESC LIMIT ?4"
                ))?;
                let rows = st.query_map(
                    params![ws, time::fmt(&time::now()), page, (limit + 1) as i64, scope_id],
                    row,
                )?;
                let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(Page::of(rows, limit, |f| f.id.clone()))
            })
            .await
    }

    async fn delete_file(&self, ws: &str, id: &str) -> Result<()> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                let mut n = c.execute(
                    "DELETE FROM files WHERE id = ?1 AND workspace_id = ?2 AND scope_id IS NULL",
                    params![id, ws],
                )?;
                if n == 0 {
                    // A collected output leaves a tombstone (see `put_output`).
                    n = c.execute(
                        "UPDATE files SET deleted_at = ?3, content = x'' WHERE id = ?1 AND workspace_id = ?2 AND scope_id IS NOT NULL AND deleted_at IS NULL",
                        params![id, ws, time::fmt(&time::now())],
                    )?;
                }
                if n == 0 {
                    return Err(not_found(&id));
                }
                Ok(())
            })
            .await
    }
}

impl Store {
    /// See `agentd_session::Catalog::outputs`; a deleted one still holds its path, so the
    /// same bytes are not collected again.
    pub(crate) async fn outputs(&self, session_id: &str) -> Result<Vec<CollectedOutput>> {
        let sid = session_id.to_owned();
        self.db
            .read(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT scope_path, sha256 FROM files WHERE scope_id = ?1 ORDER BY scope_path",
                )?;
                let rows = st.query_map([&sid], |r| {
                    Ok(CollectedOutput {
                        path: r.get(0)?,
                        sha256: r.get(1)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    /// The bytes of file `file_id` in session `session_id`'s workspace.
    pub(crate) async fn session_file_bytes(
        &self,
        session_id: &str,
        file_id: &str,
    ) -> Result<Vec<u8>> {
        let sid = session_id.to_owned();
        let ws: String = self.db.read(move |c| session_workspace(c, &sid)).await?;
        Ok(agentd_catalog::Files::file_content(self, &ws, file_id)
            .await?
            .1)
    }

    /// See `agentd_session::Catalog::put_output`.
    pub(crate) async fn put_output(&self, session_id: &str, out: NewOutput) -> Result<()> {
        let sid = session_id.to_owned();
        let quota = self.files_quota;
        self.db
            .write(move |c| {
                let ws = session_workspace(c, &sid)?;
                let held: Option<String> = c
                    .query_row(
                        "SELECT sha256 FROM files WHERE scope_id = ?1 AND scope_path = ?2",
                        params![sid, out.path],
                        |r| r.get(0),
                    )
                    .optional()?;
                if held.as_deref() == Some(out.sha256.as_str()) {
                    return Ok(());
                }
                let freed: (i64, i64) = c.query_row(
                    "SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) FROM files WHERE scope_id = ?1 AND scope_path = ?2 AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?3)",
                    params![sid, out.path, time::fmt(&time::now())],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                quota
                    .admits(
                        usage(c, &ws)?,
                        out.content.len() as u64,
                        (freed.0 as u64, freed.1 as u64),
                    )
                    .map_err(Error::Invalid)?;
                c.execute(
                    "DELETE FROM files WHERE scope_id = ?1 AND scope_path = ?2",
                    params![sid, out.path],
                )?;
                c.execute(
                    "INSERT INTO files (id, workspace_id, filename, mime_type, size_bytes, created_at, expires_at, content, scope_id, scope_path, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, ?3, ?9)",
                    params![
                        ids::new(Kind::File),
                        ws,
                        out.path,
                        out.mime_type,
                        out.content.len() as i64,
                        time::fmt(&time::now()),
                        out.content,
                        sid,
                        out.sha256
                    ],
                )?;
                Ok(())
            })
            .await
    }
}

/// What workspace `ws` keeps in the Files API now: (bytes, files), live ones only.
fn usage(c: &rusqlite::Connection, ws: &str) -> Result<(u64, u64)> {
    let (bytes, files): (i64, i64) = c.query_row(
        "SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) FROM files WHERE workspace_id = ?1 AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
        params![ws, time::fmt(&time::now())],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((bytes as u64, files as u64))
}

/// The workspace session `sid` belongs to.
fn session_workspace(c: &rusqlite::Connection, sid: &str) -> Result<String> {
    c.query_row(
        "SELECT workspace_id FROM sessions WHERE id = ?1",
        [sid],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| Error::NotFound(format!("session {sid} not found")))
}
