//! Which hosts a sandbox may reach.

use std::net::IpAddr;

/// Hosts of the common package registries, allowed when an environment asks for package
/// managers.
pub const PACKAGE_HOSTS: &[&str] = &[
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "proxy.golang.org",
    "sum.golang.org",
    "rubygems.org",
    "index.rubygems.org",
    "deb.debian.org",
    "security.debian.org",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Any public host (`unrestricted`).
    any_public: bool,
    /// `example.com` matches that host; `*.example.com` matches its subdomains.
    hosts: Vec<String>,
}

/// Why a destination was refused; the text is what the tool reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Policy {
    pub fn unrestricted() -> Policy {
        Policy {
            any_public: true,
            hosts: vec![],
        }
    }

    pub fn limited(allowed_hosts: &[String], package_managers: bool) -> Policy {
        let mut hosts: Vec<String> = allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if package_managers {
            hosts.extend(PACKAGE_HOSTS.iter().map(|h| (*h).to_owned()));
        }
        Policy {
            any_public: false,
            hosts,
        }
    }

    /// Nothing at all.
    pub fn none() -> Policy {
        Self::limited(&[], false)
    }

    fn named(&self, host: &str) -> bool {
        self.matches(host, true)
    }

    /// Whether an entry names `host` exactly (not through a `*.` pattern).
    fn named_exactly(&self, host: &str) -> bool {
        self.matches(host, false)
    }

    fn matches(&self, host: &str, wildcards: bool) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => {
                wildcards
                    && host.len() > suffix.len()
                    && host.ends_with(suffix)
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
            None => *p == host,
        })
    }

    /// May `host` be reached at all, before looking up its addresses? Refusing here keeps a
    /// refused name from even being resolved.
    pub fn check_name(&self, host: &str) -> Result<(), Denied> {
        if self.any_public || self.named(host) {
            Ok(())
        } else {
            Err(Denied(format!(
                "blocked by the environment's network policy: {host} is not in allowed_hosts"
            )))
        }
    }

    /// May `host`, resolved to `addrs`, be reached?
    pub fn check(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Denied> {
        self.check_name(host)?;
        // A name the operator listed exactly may be private (an internal mirror); anything
        // else — a `*.` match included — must be public, or it could reach agentd's own host.
        if !self.named_exactly(host)
            && let Some(a) = addrs.iter().find(|a| !is_public(a))
        {
            return Err(Denied(format!(
                "blocked by the environment's network policy: {host} resolves to the non-public address {a}"
            )));
        }
        Ok(())
    }
}

fn is_public(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            !(v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.is_multicast()
                || v.is_documentation()
                || v.octets()[0] == 100 && (v.octets()[1] & 0xc0) == 64
                // 192.0.0.0/24 (protocol assignments), 198.18.0.0/15 (benchmarking), 240/4.
                || v.octets()[..3] == [192, 0, 0]
                || v.octets()[0] == 198 && (v.octets()[1] & 0xfe) == 18
                || v.octets()[0] >= 240)
        }
        IpAddr::V6(v) => {
            if let Some(v4) = v.to_ipv4_mapped() {
                return is_public(&IpAddr::V4(v4));
            }
            // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
            let seg = v.segments();
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v.octets();
                return is_public(&IpAddr::V4(std::net::Ipv4Addr::new(
                    o[12], o[13], o[14], o[15],
                )));
            }
            !(v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Vec<IpAddr> {
        vec![s.parse().unwrap()]
    }

    #[test]
    fn limited_allows_named_hosts_and_subdomain_patterns_only() {
        let p = Policy::limited(&["api.example.com".into(), "*.pypi.org".into()], false);
        assert!(p.check("api.example.com", &ip("93.184.216.34")).is_ok());
        assert!(p.check("API.Example.COM.", &ip("93.184.216.34")).is_ok());
        assert!(p.check("files.pypi.org", &ip("151.101.0.223")).is_ok());
        assert!(p.check("pypi.org", &ip("151.101.0.223")).is_err());
        assert!(p.check("evilpypi.org", &ip("1.2.3.4")).is_err());
        let e = p.check("example.com", &ip("93.184.216.34")).unwrap_err();
        assert!(e.0.contains("not in allowed_hosts"));
        assert!(
            Policy::none()
                .check("example.com", &ip("93.184.216.34"))
                .is_err()
        );
        let pm = Policy::limited(&[], true);
        assert!(pm.check("registry.npmjs.org", &ip("104.16.0.1")).is_ok());
    }

    #[test]
    fn private_addresses_need_an_exact_name() {
        let any = Policy::unrestricted();
        assert!(any.check("example.com", &ip("93.184.216.34")).is_ok());
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(any.check("sneaky.example", &ip(a)).is_err(), "{a}");
        }
        // A wildcard match is not an exact name: private addresses stay out of reach.
        let wild = Policy::limited(&["*.example.com".into()], false);
        assert!(wild.check("x.example.com", &ip("93.184.216.34")).is_ok());
        assert!(wild.check("x.example.com", &ip("169.254.169.254")).is_err());
        assert!(wild.check("x.example.com", &ip("10.0.0.1")).is_err());
        for a in ["64:ff9b::a00:1", "198.18.0.1", "192.0.0.8", "240.0.0.1"] {
            assert!(any.check("sneaky.example", &ip(a)).is_err(), "{a}");
        }
        let mirror = Policy::limited(&["127.0.0.1".into(), "mirror.internal".into()], false);
        assert!(mirror.check("127.0.0.1", &ip("127.0.0.1")).is_ok());
        assert!(mirror.check("mirror.internal", &ip("10.0.0.5")).is_ok());
    }
}
