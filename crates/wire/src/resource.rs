//! Session resources: what a session's sandbox has mounted when it is provisioned. A `file`
//! resource is a Files API file, read-only at its mount path; a `github_repository` is a clone
//! in the workspace, whose token agentd keeps (it is write-only here: no field carries it out).

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Where a file resource is mounted when its client names no path.
pub const UPLOADS: &str = "/mnt/session/uploads";

/// A session resource as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Resource {
    File(FileResource),
    GithubRepository(RepositoryResource),
}

impl Resource {
    pub fn id(&self) -> &str {
        match self {
            Resource::File(f) => &f.id,
            Resource::GithubRepository(r) => &r.id,
        }
    }

    pub fn mount_path(&self) -> &str {
        match self {
            Resource::File(f) => &f.mount_path,
            Resource::GithubRepository(r) => &r.mount_path,
        }
    }

    pub fn set_updated_at(&mut self, at: Timestamp) {
        match self {
            Resource::File(f) => f.updated_at = at,
            Resource::GithubRepository(r) => r.updated_at = at,
        }
    }
}

/// A git repository cloned into the workspace when the session's sandbox is first made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryResource {
    pub id: String,
    pub url: String,
    pub mount_path: String,
    #[serde(default)]
    pub checkout: Option<Checkout>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a repository resource checks out; without one, the repository's default branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Checkout {
    Branch { name: String },
    Commit { sha: String },
}

impl Checkout {
    /// The checkout if git can take it as it is: a branch name git accepts (and no option in
    /// disguise), or a full commit SHA.
    pub fn checked(self) -> Result<Checkout, String> {
        match &self {
            Checkout::Branch { name } => {
                let bad = name.is_empty()
                    || name.len() > 255
                    || name.starts_with(['-', '/', '.'])
                    || name.ends_with(['/', '.'])
                    || name.ends_with(".lock")
                    || name.contains("..")
                    || name.contains("//")
                    || name.contains("@{")
                    || name
                        .chars()
                        .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c) || c == '\u{7f}');
                if bad {
                    return Err(format!("{name:?} is not a branch name git accepts"));
                }
            }
            Checkout::Commit { sha } => {
                let hex = sha.chars().all(|c| c.is_ascii_hexdigit());
                if !(hex && (sha.len() == 40 || sha.len() == 64)) {
                    return Err(format!(
                        "{sha:?} is not a full commit SHA (40 or 64 hexadecimal digits)"
                    ));
                }
            }
        }
        Ok(self)
    }
}

/// `resources.add` of a repository, and such an entry of `resources` on session create.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryResourceParams {
    pub url: String,
    #[serde(default)]
    pub authorization_token: Option<String>,
    #[serde(default)]
    pub checkout: Option<Checkout>,
    #[serde(default)]
    pub mount_path: Option<String>,
}

impl std::fmt::Debug for RepositoryResourceParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryResourceParams")
            .field("url", &self.url)
            .field(
                "authorization_token",
                &self.authorization_token.as_ref().map(|_| "<redacted>"),
            )
            .field("checkout", &self.checkout)
            .field("mount_path", &self.mount_path)
            .finish()
    }
}

/// A repository URL agentd can clone and guard: `http` or `https`, a host, a path naming the
/// repository, and nothing that would carry a credential or escape the path.
pub fn check_repository_url(url: &str) -> Result<RepositoryUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "{url:?}: only https:// (and http://) repository URLs can be cloned"
        ));
    }
    if url.len() > 2048 || url.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(format!("{url:?} is not a usable URL"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(
            "a credential in the URL would reach the sandbox's git config; pass it as authorization_token".into(),
        );
    }
    if path.contains(['?', '#']) {
        return Err(format!(
            "{url:?}: a repository URL has no query or fragment"
        ));
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let bad_port = || format!("{url:?} has a bad port");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, rest) = v6.split_once(']').ok_or_else(bad_port)?;
        match rest.strip_prefix(':') {
            Some(p) => (h, p.parse::<u16>().map_err(|_| bad_port())?),
            None if rest.is_empty() => (h, default_port),
            None => return Err(bad_port()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad_port())?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty()
        || parts
            .iter()
            .any(|p| *p == "." || *p == ".." || p.contains('%'))
    {
        return Err(format!(
            "{url:?} names no repository (expected a path such as /owner/repo)"
        ));
    }
    let name = parts[parts.len() - 1];
    let name = name.strip_suffix(".git").unwrap_or(name).to_owned();
    if name.is_empty() {
        return Err(format!("{url:?} names no repository"));
    }
    // Git asks for `<repo>/info/refs` and `<repo>/git-*-pack`: the credential goes with
    // requests under the repository's path, with or without `.git`.
    let base = format!("/{}", parts.join("/"));
    let base = base.strip_suffix(".git").unwrap_or(&base).to_owned();
    Ok(RepositoryUrl {
        https: scheme == "https",
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
        port,
        path: base,
        name,
    })
}

/// A repository URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryUrl {
    pub https: bool,
    /// Lower case, without brackets for an IPv6 address.
    pub host: String,
    pub port: u16,
    /// The repository's path without a trailing `.git`, e.g. `/owner/repo`.
    pub path: String,
    /// The last part of the path without `.git`: the default directory name.
    pub name: String,
}

/// Where a repository is cloned when its client names no path.
pub fn default_repository_path(u: &RepositoryUrl) -> String {
    format!("/workspace/{}", u.name)
}

/// A repository's mount path: in the workspace (the clone is the agent's to change), below
/// `/workspace` itself, with no `.` or `..` parts.
pub fn check_repository_path(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} is not an absolute path"));
    }
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if parts.iter().any(|s| *s == "." || *s == "..") {
        return Err(format!("{p:?} has . or .. in it"));
    }
    if p.chars().any(char::is_control) || p.len() > 1024 {
        return Err(format!("{p:?} has control characters or is too long"));
    }
    let norm = format!("/{}", parts.join("/"));
    if !norm.starts_with("/workspace/") {
        return Err(format!(
            "{p:?} is not in /workspace: a repository is cloned into the session's workspace"
        ));
    }
    Ok(norm)
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
    fn repository_urls_are_taken_apart_and_credentials_in_them_refused() {
        let u = check_repository_url("https://github.com/acme/widgets.git").unwrap();
        assert_eq!(
            (
                u.https,
                u.host.as_str(),
                u.port,
                u.path.as_str(),
                u.name.as_str()
            ),
            (true, "github.com", 443, "/acme/widgets", "widgets")
        );
        let u = check_repository_url("http://[::1]/a/b").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        let u = check_repository_url("https://[::1]:8443/a/b").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8443));
        let u = check_repository_url("http://127.0.0.1:8080/git/r").unwrap();
        assert_eq!((u.https, u.port, u.path.as_str()), (false, 8080, "/git/r"));
        assert_eq!(default_repository_path(&u), "/workspace/r");
        for bad in [
            "git@github.com:acme/w.git",
            "ssh://github.com/acme/w",
            "https://user:tok@github.com/acme/w",
            "https://github.com/",
            "https://github.com/acme/../w",
            "https://github.com/acme/w?x=1",
            "file:///etc",
        ] {
            assert!(check_repository_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checkouts_are_what_git_takes_as_a_name_or_a_full_sha() {
        let ok = |c: Checkout| c.checked().is_ok();
        assert!(ok(Checkout::Branch {
            name: "feature/x-1".into()
        }));
        assert!(ok(Checkout::Commit {
            sha: "a".repeat(40)
        }));
        assert!(!ok(Checkout::Branch {
            name: "--upload-pack=x".into()
        }));
        assert!(!ok(Checkout::Branch {
            name: "a..b".into()
        }));
        assert!(!ok(Checkout::Branch { name: "a b".into() }));
        assert!(!ok(Checkout::Commit {
            sha: "abc123".into()
        }));
        assert_eq!(
            check_repository_path("/workspace/r/").unwrap(),
            "/workspace/r"
        );
        assert!(check_repository_path("/workspace").is_err());
        assert!(check_repository_path("/data/r").is_err());
        assert!(check_repository_path("/workspace/../etc").is_err());
        assert!(check_repository_path("/workspace/a\nb").is_err());
    }

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
