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
