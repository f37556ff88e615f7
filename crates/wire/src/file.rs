//! Files: bytes uploaded once and referred to by id (a rubric, for one).

use serde::{Deserialize, Serialize};

use crate::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMetadata {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: FileTag,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub created_at: Timestamp,
    pub downloadable: bool,
    pub expires_at: Option<Timestamp>,
    /// What the file belongs to: a session, for the files its agent left in
    /// `/mnt/session/outputs/`; null for an upload.
    pub scope: Option<FileScope>,
}

/// The SDK's `BetaFileScope`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileScope {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: FileScopeTag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileScopeTag {
    Session,
}

impl FileScope {
    pub fn session(id: impl Into<String>) -> Self {
        FileScope {
            id: id.into(),
            kind: FileScopeTag::Session,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileTag {
    File,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletedFile {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: DeletedFileTag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletedFileTag {
    FileDeleted,
}

/// The MIME type a file name suggests, for bytes that came without one (an upload sent as
/// `application/octet-stream`, a file an agent left in its outputs).
pub fn mime_type_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt" | "md" | "markdown" | "rst" | "log") => "text/plain",
        Some("json") => "application/json",
        Some("yaml" | "yml") => "application/yaml",
        Some("csv") => "text/csv",
        Some("html" | "htm") => "text/html",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}
