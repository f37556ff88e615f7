//! Substitutions: a secret the sandbox knows only by a placeholder (an `environment_variable`
//! credential of its session's vaults). The sandbox's environment holds the placeholder; the
//! proxy writes the secret in its place in the requests that leave for the credential's hosts,
//! in header values and, where the credential allows it, in bodies. Requests to other hosts
//! carry the placeholder as it is.

/// Most bytes of a body the proxy reads whole to substitute in it; a larger body (or a
/// chunked one) goes on as it is.
pub const MAX_BODY: u64 = 1 << 20;

#[derive(Clone, PartialEq, Eq)]
pub struct Substitution {
    placeholder: String,
    value: String,
    header: bool,
    body: bool,
    /// None: any host. Entries are host names, or `*.d` for the subdomains of `d`
    /// (`host_matches`).
    hosts: Option<Vec<String>>,
}

impl std::fmt::Debug for Substitution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Substitution")
            .field("placeholder", &self.placeholder)
            .field("header", &self.header)
            .field("body", &self.body)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl Substitution {
    pub fn new(
        placeholder: String,
        value: String,
        header: bool,
        body: bool,
        hosts: Option<Vec<String>>,
    ) -> Substitution {
        Substitution {
            placeholder,
            value,
            header,
            body,
            hosts,
        }
    }

    /// Whether requests to `host` get the secret.
    pub fn applies_to(&self, host: &str) -> bool {
        self.hosts
            .as_ref()
            .is_none_or(|hosts| hosts.iter().any(|e| crate::host_matches(e, host)))
    }

    pub(crate) fn in_headers(&self) -> bool {
        self.header
    }

    pub(crate) fn in_body(&self) -> bool {
        self.body
    }

    /// `text` with the placeholder replaced by the secret.
    pub(crate) fn apply(&self, text: &str) -> String {
        text.replace(&self.placeholder, &self.value)
    }

    pub(crate) fn apply_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let p = self.placeholder.as_bytes();
        if p.is_empty() {
            return bytes.to_vec();
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(p) {
                out.extend_from_slice(self.value.as_bytes());
                i += p.len();
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }
}

/// The substitutions for requests to `host`.
pub(crate) fn for_host<'a>(subs: &'a [Substitution], host: &str) -> Vec<&'a Substitution> {
    subs.iter().filter(|s| s.applies_to(host)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_goes_to_its_hosts_only_and_is_never_printed() {
        let s = Substitution::new(
            "PH_1".into(),
            "s3cret".into(),
            true,
            false,
            Some(vec!["api.example.com".into(), "*.corp.example".into()]),
        );
        assert!(s.applies_to("API.example.com."));
        assert!(s.applies_to("a.corp.example") && !s.applies_to("corp.example"));
        assert!(!s.applies_to("evil.example"));
        assert_eq!(s.apply("Bearer PH_1 PH_1"), "Bearer s3cret s3cret");
        assert_eq!(s.apply_bytes(b"{\"k\":\"PH_1\"}"), b"{\"k\":\"s3cret\"}");
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
