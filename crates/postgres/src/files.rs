//! Uploaded files: metadata and bytes in one row.

use async_trait::async_trait;
use tokio_postgres::Row;

use agentd_catalog::{Error, Files, NewFile, Page, Result};
use agentd_wire::file::{FileMetadata, FileTag};
use agentd_wire::ids::{self, Kind};

use crate::{Db, PgStore, fetch, log::now};

const SELECT: &str =
    "SELECT id, filename, mime_type, size_bytes, created_at, expires_at FROM files";

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
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO files (id, workspace_id, filename, mime_type, size_bytes, created_at, expires_at, content) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 RETURNING id, filename, mime_type, size_bytes, created_at, expires_at",
                &[&id, &ws, &f.filename, &f.mime_type, &size, &now(), &f.expires_at, &f.content],
            )
            .await
            .db()?;
        decode(&row)
    }

    async fn get_file(&self, ws: &str, id: &str) -> Result<FileMetadata> {
        // A file past its expiry is gone, whether or not its row is.
        let sql = format!(
            "{SELECT} WHERE id = $1 AND workspace_id = $2 AND (expires_at IS NULL OR expires_at > $3)"
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
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<FileMetadata>> {
        let sql = format!(
            "{SELECT} WHERE workspace_id = $1 AND (expires_at IS NULL OR expires_at > $2) AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&ws, &now(), &page, &fetch(limit)])
            .await
            .db()?;
        let files = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(Page::of(files, limit, |f| f.id.clone()))
    }

    async fn delete_file(&self, ws: &str, id: &str) -> Result<()> {
        let n = self
            .client()
            .await?
            .execute(
                "DELETE FROM files WHERE id = $1 AND workspace_id = $2",
                &[&id, &ws],
            )
            .await
            .db()?;
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }
}
