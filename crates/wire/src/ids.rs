//! Resource ids: a type prefix and a time-ordered UUID v7 in Crockford base32.
//!
//! Time order keeps B-tree inserts at the right edge and lets ids double as a creation-order
//! tie-breaker in pagination.

use uuid::Uuid;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Prefixes of every id agentd mints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Agent,
    Environment,
    Session,
    Event,
    Workspace,
    ApiKey,
    Outcome,
    Thread,
    File,
    Work,
    EnvironmentKey,
    SessionResource,
    Vault,
    Credential,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Agent => "agent_",
            Kind::Environment => "env_",
            Kind::Session => "sesn_",
            Kind::Event => "sevt_",
            Kind::Workspace => "wrkspc_",
            Kind::ApiKey => "apikey_",
            Kind::Outcome => "outc_",
            Kind::Thread => "sthr_",
            Kind::File => "file_",
            Kind::Work => "work_",
            Kind::EnvironmentKey => "envkey_",
            Kind::SessionResource => "sesrsc_",
            Kind::Vault => "vlt_",
            Kind::Credential => "vcrd_",
        }
    }
}

/// Mint a fresh id of `kind`.
pub fn new(kind: Kind) -> String {
    let mut out = String::with_capacity(kind.prefix().len() + 26);
    out.push_str(kind.prefix());
    encode(Uuid::now_v7().as_u128(), &mut out);
    out
}

/// The id of a session's primary thread. Derived, not stored: the primary thread's log is the
/// session's own, so the two ids name the same events.
pub fn primary_thread(session_id: &str) -> String {
    let suffix = session_id
        .strip_prefix(Kind::Session.prefix())
        .unwrap_or(session_id);
    format!("{}{suffix}", Kind::Thread.prefix())
}

/// The session whose primary thread `thread_id` is, if it names one.
pub fn session_of_primary(thread_id: &str) -> Option<String> {
    thread_id
        .strip_prefix(Kind::Thread.prefix())
        .map(|s| format!("{}{s}", Kind::Session.prefix()))
}

fn encode(mut v: u128, out: &mut String) {
    let mut buf = [0u8; 26];
    for slot in buf.iter_mut().rev() {
        *slot = ALPHABET[(v & 31) as usize];
        v >>= 5;
    }
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_unique_and_time_ordered() {
        let a = new(Kind::Session);
        let b = new(Kind::Session);
        assert!(a.starts_with("sesn_"));
        assert_eq!(a.len(), 5 + 26);
        assert_ne!(a, b);
        assert!(a < b, "v7 ids sort by creation: {a} !< {b}");
    }
}
