//! A session's repository resources and secrets at provision: the script that clones each
//! repository into the workspace from inside the new sandbox, the grants that let the egress
//! proxy add each one's token to that repository's requests, and the placeholders the sandbox
//! sees in place of its `environment_variable` secrets. The sandbox's git talks to the proxy without a
//! credential; the token stays in agentd's memory and is never written where the sandbox, the
//! model or the log can read it.

use std::sync::Arc;

use agentd_egress::Grant;
use agentd_session::catalog::MountedRepository;
use agentd_wire::resource::{Checkout, check_repository_url};

/// The session's secrets as the edge gets them from the vaults (the binary binds this to
/// `agentd_vault`): never held by the harness longer than it takes to hand them to a proxy.
#[async_trait::async_trait]
pub trait SessionSecrets: Send + Sync + std::fmt::Debug {
    /// Open a repository token sealed with the vault key; the resource id is the associated
    /// data.
    fn open_token(&self, resource_id: &str, sealed: &[u8]) -> Result<String, String>;

    /// The `environment_variable` credentials of the session's vaults. The error is what the
    /// model reads.
    async fn environment(&self, session_id: &str) -> Result<Vec<EnvironmentSecret>, String>;
}

/// An `environment_variable` credential: the sandbox sees `name` set to a placeholder, and
/// the egress proxy writes `value` in its place on requests to `hosts` (None: any host).
#[derive(Clone)]
pub struct EnvironmentSecret {
    pub name: String,
    pub value: String,
    pub header: bool,
    pub body: bool,
    pub hosts: Option<Vec<String>>,
}

impl std::fmt::Debug for EnvironmentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentSecret")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// Each secret's placeholder (set in the sandbox's environment under its name) and the
/// substitution the proxy makes for it. A placeholder is random per sandbox, so it names
/// nothing outside it.
pub fn placeholders(
    secrets: Vec<EnvironmentSecret>,
) -> (Vec<(String, String)>, Vec<agentd_egress::Substitution>) {
    let mut env = Vec::new();
    let mut subs = Vec::new();
    for s in secrets {
        let placeholder = format!(
            "agentd-secret-{}-{:016x}{:016x}",
            s.name.to_ascii_lowercase(),
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        env.push((s.name, placeholder.clone()));
        subs.push(agentd_egress::Substitution::new(
            placeholder,
            s.value,
            s.header,
            s.body,
            s.hosts,
        ));
    }
    (env, subs)
}

/// The user name git sends with a token as its password (what GitHub expects of an app or
/// personal token; any git server checking the password alone takes it too).
const TOKEN_USER: &str = "x-access-token";

/// The grants for `repos`' tokens; an error the model can read if one cannot be opened.
pub fn grants(
    repos: &[MountedRepository],
    opener: Option<&Arc<dyn SessionSecrets>>,
) -> Result<Vec<Grant>, String> {
    let mut out = Vec::new();
    for r in repos {
        let Some(sealed) = &r.sealed_token else {
            continue;
        };
        let Some(opener) = opener else {
            return Err(format!(
                "Repository {} has a token, but this agentd has no vault key to open it.",
                r.url
            ));
        };
        let token = opener.open_token(&r.resource_id, sealed)?;
        let u = check_repository_url(&r.url)?;
        out.push(Grant::basic(
            u.https, &u.host, u.port, &u.path, TOKEN_USER, &token,
        ));
    }
    Ok(out)
}

/// A bash script that clones each of `repos` not yet in the workspace, or None for none. A
/// clone is made beside its place and moved there whole, so a clone cut short is never taken
/// for a finished one; one already there (the workspace outlives sandboxes) is left as the
/// agent left it.
pub fn clone_script(repos: &[MountedRepository]) -> Option<String> {
    if repos.is_empty() {
        return None;
    }
    let mut s = String::from("set -e\nexport GIT_TERMINAL_PROMPT=0\n");
    for r in repos {
        let path = q(&r.mount_path);
        let tmp = q(&format!("{}.agentd-clone", r.mount_path));
        s.push_str(&format!("if [ ! -e {path} ]; then\n"));
        s.push_str(&format!(
            "  mkdir -p \"$(dirname {path})\"\n  rm -rf {tmp}\n"
        ));
        let branch = match &r.checkout {
            Some(Checkout::Branch { name }) => format!(" --branch {}", q(name)),
            _ => String::new(),
        };
        s.push_str(&format!(
            "  echo \"cloning {} into {}\"\n  git clone --quiet{branch} -- {} {tmp}\n",
            r.url.replace(['"', '$', '`', '\\'], ""),
            r.mount_path.replace(['"', '$', '`', '\\'], ""),
            q(&r.url),
        ));
        if let Some(Checkout::Commit { sha }) = &r.checkout {
            s.push_str(&format!(
                "  git -C {tmp} checkout --quiet --detach {}\n",
                q(sha)
            ));
        }
        s.push_str(&format!("  mv {tmp} {path}\nfi\n"));
    }
    Some(s)
}

/// `v` single-quoted for bash.
fn q(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Plain;
    #[async_trait::async_trait]
    impl SessionSecrets for Plain {
        fn open_token(&self, id: &str, sealed: &[u8]) -> Result<String, String> {
            Ok(format!("{id}:{}", String::from_utf8_lossy(sealed)))
        }

        async fn environment(&self, _: &str) -> Result<Vec<EnvironmentSecret>, String> {
            Ok(vec![])
        }
    }

    fn repo(url: &str, token: Option<&str>, checkout: Option<Checkout>) -> MountedRepository {
        MountedRepository {
            resource_id: "sesrsc_1".into(),
            url: url.into(),
            checkout,
            mount_path: "/workspace/it's".into(),
            sealed_token: token.map(|t| t.as_bytes().to_vec()),
        }
    }

    #[test]
    fn the_script_clones_each_repository_once_and_quotes_what_it_is_given() {
        let s = clone_script(&[repo(
            "https://git.example/a/b.git",
            None,
            Some(Checkout::Commit {
                sha: "ab".repeat(20),
            }),
        )])
        .unwrap();
        assert!(s.contains("if [ ! -e '/workspace/it'\\''s' ]"), "{s}");
        assert!(
            s.contains("git clone --quiet -- 'https://git.example/a/b.git'"),
            "{s}"
        );
        assert!(s.contains(&format!("checkout --quiet --detach '{}'", "ab".repeat(20))));
        assert!(clone_script(&[]).is_none());
    }

    #[test]
    fn only_repositories_with_a_token_get_a_grant_and_a_token_needs_a_key() {
        let opener: Arc<dyn SessionSecrets> = Arc::new(Plain);
        let repos = [
            repo("https://git.example/a/b", Some("t"), None),
            repo("https://git.example/a/c", None, None),
        ];
        let g = grants(&repos, Some(&opener)).unwrap();
        assert_eq!(g.len(), 1);
        assert!(
            g[0].covers(true, "git.example", 443) && g[0].applies("POST", "/a/b/git-upload-pack")
        );
        assert!(grants(&repos, None).unwrap_err().contains("no vault key"));
    }
}
