//! Session resources: what a session's sandbox has mounted when it is provisioned. A `file`
//! resource is a Files API file, read-only at its mount path.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Where a file resource is mounted when its client names no path.
pub const UPLOADS: &str = "/mnt/session/uploads";

/// A session resource as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Resource {
    File(FileResource),
}

impl Resource {
    pub fn id(&self) -> &str {
        match self {
            Resource::File(f) => &f.id,
        }
    }

    pub fn mount_path(&self) -> &str {
        match self {
            Resource::File(f) => &f.mount_path,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileResource {
    pub id: String,
    pub file_id: String,
    pub mount_path: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `resources.add`, and an entry of `resources` on session create.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResourceParams {
    pub file_id: String,
    #[serde(default)]
    pub mount_path: Option<String>,
}

/// `DELETE /v1/sessions/{id}/resources/{resource_id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeletedResource {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Host paths a sandbox sees from its host (or that agentd itself mounts): a resource is not
/// mounted over them.
const RESERVED: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
    "/mnt/session/outputs",
    "/.agentd",
];

/// A mount path as the sandbox will use it, or why it cannot be one: absolute, no `.` or
/// `..` parts, not in the workspace, not a directory agentd itself mounts or one of the
/// host's system directories, and not the root itself.
pub fn check_mount_path(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} is not an absolute path"));
    }
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if parts.iter().any(|s| *s == "." || *s == "..") {
        return Err(format!("{p:?} has . or .. in it"));
    }
    if parts.iter().any(|s| s.contains('\0')) || p.len() > 1024 {
        return Err(format!("{p:?} is not a usable path"));
    }
    let norm = format!("/{}", parts.join("/"));
    if norm == "/" || norm == "/workspace" || norm == "/mnt/session" || norm == UPLOADS {
        return Err(format!("{p:?} names a directory, not a file's place"));
    }
    // The agent can change the workspace, links included: a mount point there could be
    // steered anywhere on the host while the sandbox is made.
    if norm.starts_with("/workspace/") {
        return Err(format!(
            "{p:?} is in the workspace, which the agent can change; mount it elsewhere (the default is {UPLOADS}/<file id>) and copy it in"
        ));
    }
    if let Some(r) = RESERVED
        .iter()
        .find(|r| norm == **r || norm.starts_with(&format!("{r}/")))
    {
        return Err(format!(
            "{p:?} is under {r}, which the sandbox takes from its host or agentd mounts itself"
        ));
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_normalised_and_kept_off_what_the_sandbox_needs() {
        assert_eq!(
            check_mount_path("/mnt/session/uploads//a.csv").unwrap(),
            "/mnt/session/uploads/a.csv"
        );
        assert_eq!(check_mount_path("/data/x").unwrap(), "/data/x");
        for bad in [
            "relative.txt",
            "/",
            "/workspace",
            "/workspace/data/x.txt",
            "/workspace/../etc/passwd",
            "/etc/passwd",
            "/usr/bin/env",
            "/proc/self",
            "/mnt/session/outputs/x",
            "/mnt/session/uploads",
        ] {
            assert!(check_mount_path(bad).is_err(), "{bad}");
        }
    }
}
