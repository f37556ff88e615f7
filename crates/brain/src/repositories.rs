//! A session's repository resources at provision: the script that clones each one into the
//! workspace from inside the new sandbox, and the grants that let the egress proxy add each
//! one's token to that repository's requests. The sandbox's git talks to the proxy without a
//! credential; the token stays in agentd's memory and is never written where the sandbox, the
//! model or the log can read it.

use std::sync::Arc;

use agentd_egress::Grant;
use agentd_session::catalog::MountedRepository;
use agentd_wire::resource::{Checkout, check_repository_url};

/// Opens a repository token sealed with the vault key (the binary binds it to
/// `agentd_vault::Sealer`); the resource id is the associated data.
pub trait TokenOpener: Send + Sync + std::fmt::Debug {
    fn open(&self, resource_id: &str, sealed: &[u8]) -> Result<String, String>;
}

/// The user name git sends with a token as its password (what GitHub expects of an app or
/// personal token; any git server checking the password alone takes it too).
const TOKEN_USER: &str = "x-access-token";

/// The grants for `repos`' tokens; an error the model can read if one cannot be opened.
pub fn grants(
    repos: &[MountedRepository],
    opener: Option<&Arc<dyn TokenOpener>>,
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
        let token = opener.open(&r.resource_id, sealed)?;
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
    impl TokenOpener for Plain {
        fn open(&self, id: &str, sealed: &[u8]) -> Result<String, String> {
            Ok(format!("{id}:{}", String::from_utf8_lossy(sealed)))
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
        let opener: Arc<dyn TokenOpener> = Arc::new(Plain);
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
