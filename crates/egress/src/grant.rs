//! Grants: a credential the proxy adds, at the edge, to the requests a sandbox sends to one
//! repository. The sandbox never holds it; it sends its requests without one and the proxy
//! puts the `Authorization` header on those whose destination and path are the repository's.

/// One repository's credential, as a ready `Authorization` header value.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    https: bool,
    host: String,
    port: u16,
    /// The repository's path without `.git`, e.g. `/acme/widgets`.
    path: String,
    authorization: String,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("https", &self.https)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// HTTP basic credentials for the repository at `host:port` and `path` (git's smart HTTP:
    /// GitHub takes a token as the password of any user name).
    pub fn basic(
        https: bool,
        host: &str,
        port: u16,
        path: &str,
        user: &str,
        password: &str,
    ) -> Grant {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Grant {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path: path.trim_end_matches('/').to_owned(),
            authorization: format!("Basic {b64}"),
        }
    }

    /// Whether the repository is reached over TLS (its requests need interception).
    pub fn https(&self) -> bool {
        self.https
    }

    /// Whether this grant covers a connection to `host:port` at all (so the proxy may open it
    /// whatever the environment's allow-list says).
    pub fn covers(&self, https: bool, host: &str, port: u16) -> bool {
        self.https == https
            && self.port == port
            && self.host.eq_ignore_ascii_case(host.trim_end_matches('.'))
    }

    /// Whether a request is one of git's smart-HTTP requests for this repository: the ref
    /// advertisement (`GET <repo>/info/refs?service=git-upload-pack` or `-receive-pack`) or a
    /// pack exchange (`POST <repo>/git-upload-pack` or `/git-receive-pack`), `<repo>` with or
    /// without `.git`. Nothing else on the host gets the credential: no other method (a TRACE
    /// would echo it), no other path (another repository, a web page that reflects headers).
    pub fn applies(&self, method: &str, target: &str) -> bool {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let base = &self.path;
        let at = |end: &str| path == format!("{base}{end}") || path == format!("{base}.git{end}");
        match method {
            "GET" | "HEAD" => {
                at("/info/refs")
                    && matches!(
                        query,
                        Some("service=git-upload-pack" | "service=git-receive-pack")
                    )
            }
            "POST" => query.is_none() && (at("/git-upload-pack") || at("/git-receive-pack")),
            _ => false,
        }
    }

    pub(crate) fn authorization(&self) -> &str {
        &self.authorization
    }
}

/// The grant for a `method` request to `host:port` for `target`, if any.
pub(crate) fn find<'a>(
    grants: &'a [Grant],
    https: bool,
    host: &str,
    port: u16,
    method: &str,
    target: &str,
) -> Option<&'a Grant> {
    grants
        .iter()
        .find(|g| g.covers(https, host, port) && g.applies(method, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> Grant {
        Grant::basic(
            false,
            "Git.Example",
            8080,
            "/acme/widgets",
            "x-access-token",
            "tok",
        )
    }

    #[test]
    fn a_grant_covers_git_s_requests_for_its_repository_and_nothing_beside_them() {
        let g = g();
        assert!(g.covers(false, "git.example", 8080));
        assert!(!g.covers(true, "git.example", 8080));
        assert!(!g.covers(false, "git.example", 80));
        assert!(!g.covers(false, "other.example", 8080));
        for (m, ok) in [
            ("GET", "/acme/widgets/info/refs?service=git-upload-pack"),
            (
                "GET",
                "/acme/widgets.git/info/refs?service=git-receive-pack",
            ),
            ("POST", "/acme/widgets.git/git-receive-pack"),
            ("POST", "/acme/widgets/git-upload-pack"),
        ] {
            assert!(g.applies(m, ok), "{m} {ok}");
        }
        for (m, no) in [
            (
                "TRACE",
                "/acme/widgets.git/info/refs?service=git-upload-pack",
            ),
            ("GET", "/acme/widgets/info/refs"),
            ("GET", "/acme/widgets/info/refs?service=git-upload-pack&x=1"),
            (
                "GET",
                "/acme/widgets/info/refs?service=git-upload-pack#/../../x",
            ),
            ("POST", "/acme/widgets/git-upload-pack?x"),
            (
                "GET",
                "/acme/widgets-private/info/refs?service=git-upload-pack",
            ),
            (
                "GET",
                "/acme/widgets/../secret/info/refs?service=git-upload-pack",
            ),
            ("POST", "/acme/widgets/..;/other/git-upload-pack"),
            ("GET", "/acme/widgets/README"),
            ("GET", "/acme/widgets"),
        ] {
            assert!(!g.applies(m, no), "{m} {no}");
        }
        assert!(!format!("{g:?}").contains("dG9r"));
    }
}
