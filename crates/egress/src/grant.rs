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

    /// Whether a request for `target` (origin form: path and query) on a covered connection
    /// goes to this repository. A path git would not send (`.` or `..` parts, escapes, which a
    /// server may decode to another repository's path) never does.
    pub fn applies(&self, target: &str) -> bool {
        let path = target.split(['?', '#']).next().unwrap_or_default();
        if path.contains('%') || path.contains('\\') {
            return false;
        }
        if path.split('/').any(|p| p == "." || p == "..") {
            return false;
        }
        let base = &self.path;
        [base.clone(), format!("{base}.git")]
            .iter()
            .any(|b| path == b || path.starts_with(&format!("{b}/")))
    }

    pub(crate) fn authorization(&self) -> &str {
        &self.authorization
    }
}

/// The grant for a request to `host:port` for `target`, if any.
pub(crate) fn find<'a>(
    grants: &'a [Grant],
    https: bool,
    host: &str,
    port: u16,
    target: &str,
) -> Option<&'a Grant> {
    grants
        .iter()
        .find(|g| g.covers(https, host, port) && g.applies(target))
}

/// A request head with its `Authorization` (and proxy) headers replaced by `grant`'s, its
/// request line in origin form `line`, and `Connection: close`: one request per connection,
/// so every request is looked at here.
pub(crate) fn rewrite_head<'a>(
    line: &str,
    headers: impl Iterator<Item = &'a str>,
    grant: Option<&Grant>,
) -> String {
    let mut out = format!("{line}\r\n");
    for h in headers.filter(|l| !l.is_empty()) {
        let name = h
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let drop = matches!(
            name.as_str(),
            "proxy-connection" | "proxy-authorization" | "connection" | "keep-alive"
        ) || (grant.is_some() && name == "authorization");
        if !drop {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    if let Some(g) = grant {
        out.push_str("Authorization: ");
        out.push_str(g.authorization());
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
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
    fn a_grant_covers_its_repository_and_nothing_beside_it() {
        let g = g();
        assert!(g.covers(false, "git.example", 8080));
        assert!(!g.covers(true, "git.example", 8080));
        assert!(!g.covers(false, "git.example", 80));
        assert!(!g.covers(false, "other.example", 8080));
        for ok in [
            "/acme/widgets/info/refs?service=git-upload-pack",
            "/acme/widgets.git/git-receive-pack",
            "/acme/widgets",
        ] {
            assert!(g.applies(ok), "{ok}");
        }
        for no in [
            "/acme/widgets-private/info/refs",
            "/acme/widgets/../secret/info/refs",
            "/acme/widgets/%2e%2e/secret/info/refs",
            "/acme/widgetsX",
            "/acme",
            "/other/acme/widgets/info/refs",
        ] {
            assert!(!g.applies(no), "{no}");
        }
    }

    #[test]
    fn the_sandbox_s_own_authorization_is_replaced_and_the_token_is_not_in_debug() {
        let g = g();
        let head = rewrite_head(
            "GET /acme/widgets/info/refs HTTP/1.1",
            [
                "Host: git.example:8080",
                "Authorization: Basic Zm9vOmJhcg==",
                "Connection: keep-alive",
            ]
            .into_iter(),
            Some(&g),
        );
        assert_eq!(head.matches("Authorization:").count(), 1);
        assert!(head.contains("Authorization: Basic eC1hY2Nlc3MtdG9rZW46dG9r\r\n"));
        assert!(head.ends_with("Connection: close\r\n\r\n"));
        assert!(!format!("{g:?}").contains("eC1hY2Nlc3M"));
        let plain = rewrite_head("GET / HTTP/1.1", ["Authorization: mine"].into_iter(), None);
        assert!(plain.contains("Authorization: mine"));
    }
}
