//! Uploaded files: metadata and bytes in one row.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use agentd_catalog::{Files, NewFile};
use agentd_wire::file::{FileMetadata, FileTag};
use agentd_wire::ids::{self, Kind};

use crate::{Error, Page, Result, Store, time};

const SELECT: &str =
    "SELECT id, filename, mime_type, size_bytes, created_at, expires_at FROM files";

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
    })
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("file {id} not found"))
}

#[async_trait]
impl Files for Store {
    async fn create_file(&self, ws: &str, f: NewFile) -> Result<FileMetadata> {
        let ws = ws.to_owned();
        self.db
            .write(move |c| {
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
                        "{SELECT} WHERE id = ?1 AND workspace_id = ?2 AND (expires_at IS NULL OR expires_at > ?3)"
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
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<FileMetadata>> {
        let ws = ws.to_owned();
        self.db
            .read(move |c| {
                let mut st = c.prepare_cached(&format!(
                    "{SELECT} WHERE workspace_id = ?1 AND (expires_at IS NULL OR expires_at > ?2) AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
                ))?;
                let rows = st.query_map(
                    params![ws, time::fmt(&time::now()), page, (limit + 1) as i64],
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
                let n = c.execute(
                    "DELETE FROM files WHERE id = ?1 AND workspace_id = ?2",
                    params![id, ws],
                )?;
                if n == 0 {
                    return Err(not_found(&id));
                }
                Ok(())
            })
            .await
    }
}
