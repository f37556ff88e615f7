//! Which hosts a sandbox may reach.

use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::class::{Class, classify};

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
    /// Non-public ranges the operator opened (`--egress-allow-private`); an environment's
    /// own entries never open one.
    operator_ranges: Vec<Cidr>,
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
            operator_ranges: vec![],
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
            operator_ranges: vec![],
        }
    }

    /// Nothing at all.
    pub fn none() -> Policy {
        Self::limited(&[], false)
    }

    /// Also reach addresses in the operator's `ranges`, which may be private.
    pub fn with_operator_ranges(mut self, ranges: &[Cidr]) -> Policy {
        self.operator_ranges = ranges.to_vec();
        self
    }

    fn named(&self, host: &str) -> bool {
        self.hosts.iter().any(|p| host_matches(p, host))
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

    /// May `host`, resolved to `addrs`, be reached? Every address must be public or in a
    /// range the operator opened: what the environment names does not matter here, so neither
    /// an entry nor a name that resolves to this host reaches it.
    pub fn check(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Denied> {
        self.check_name(host)?;
        self.check_addresses(host, addrs)
    }

    /// `check` without the allow-list: every address must be public or in a range the
    /// operator opened.
    pub fn check_addresses(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Denied> {
        for a in addrs {
            if let Some(why) = refusal(*a, &self.operator_ranges) {
                return Err(Denied(format!(
                    "blocked by the network policy: {host} resolves to {why}"
                )));
            }
        }
        Ok(())
    }
}

/// Whether `host` is what `pattern` names: that host, or for `*.d` a subdomain of `d` (not
/// `d` itself). Case and a trailing dot do not matter. The one rule for allow-lists and for
/// the hosts a credential's secret may go to.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').as_bytes();
    match pattern.strip_prefix("*.") {
        Some(d) => {
            let d = d.as_bytes();
            // At least one label and its dot before `d`.
            host.len() >= d.len() + 2
                && host[host.len() - d.len()..].eq_ignore_ascii_case(d)
                && host[host.len() - d.len() - 1] == b'.'
        }
        None => host.eq_ignore_ascii_case(pattern.as_bytes()),
    }
}

/// Why address `a` may not be reached, unless it is public or in one of `ranges`.
pub fn refusal(a: IpAddr, ranges: &[Cidr]) -> Option<String> {
    if ranges.iter().any(|r| r.contains(a)) {
        return None;
    }
    match classify(a) {
        Class::Public => None,
        Class::Private => Some(format!(
            "the private address {a}; private destinations are reachable only when the operator allows them (agentd serve --egress-allow-private)"
        )),
        Class::Local => Some(format!(
            "{a}, an address of the host itself or its link, which no environment may reach"
        )),
    }
}

/// Why an `allowed_hosts` entry could never be reached, if it names such a destination
/// outright: a loopback name, or a non-public address outside the operator's `ranges`. Names
/// that merely resolve to one are caught at connect time.
pub fn unreachable_entry(entry: &str, ranges: &[Cidr]) -> Option<String> {
    let host = entry.trim_end_matches('.').to_ascii_lowercase();
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let addr = if name == "localhost" || name.ends_with(".localhost") {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        name.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()?
    };
    refusal(addr, ranges).map(|why| format!("{entry} names {why}"))
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
    fn non_public_addresses_need_the_operator_whatever_the_environment_names() {
        let any = Policy::unrestricted();
        assert!(any.check("example.com", &ip("93.184.216.34")).is_ok());
        for a in ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fd00::1"] {
            assert!(any.check("sneaky.example", &ip(a)).is_err(), "{a}");
        }
        // Named exactly, by address or by a name that resolves there: still refused.
        let named = Policy::limited(
            &[
                "127.0.0.1".into(),
                "169.254.169.254".into(),
                "mirror.internal".into(),
            ],
            false,
        );
        let e = named.check("127.0.0.1", &ip("127.0.0.1")).unwrap_err();
        assert!(e.0.contains("no environment may reach"), "{e}");
        assert!(
            named
                .check("169.254.169.254", &ip("169.254.169.254"))
                .is_err()
        );
        let e = named.check("mirror.internal", &ip("10.0.0.5")).unwrap_err();
        assert!(e.0.contains("--egress-allow-private"), "{e}");
        // One bad address among several refuses the name.
        let mixed = [ip("93.184.216.34"), ip("127.0.0.1")].concat();
        assert!(any.check("rebind.example", &mixed).is_err());
        // The operator opens ranges; the environment still decides which names.
        let opened = named.with_operator_ranges(&["10.0.0.0/8".parse().unwrap()]);
        assert!(opened.check("mirror.internal", &ip("10.0.0.5")).is_ok());
        assert!(opened.check("other.internal", &ip("10.0.0.5")).is_err());
        assert!(opened.check("127.0.0.1", &ip("127.0.0.1")).is_err());
    }

    #[test]
    fn entries_naming_this_host_or_private_space_are_caught_before_use() {
        let none: &[Cidr] = &[];
        for e in [
            "localhost",
            "LocalHost.",
            "*.localhost",
            "127.0.0.1",
            "[::1]",
            "169.254.169.254",
            "0.0.0.0",
            "10.0.0.1",
            "fd00::1",
        ] {
            assert!(unreachable_entry(e, none).is_some(), "{e}");
        }
        for e in [
            "example.com",
            "*.example.com",
            "8.8.8.8",
            "localhost.example.com",
        ] {
            assert_eq!(unreachable_entry(e, none), None, "{e}");
        }
        let ten = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(unreachable_entry("10.0.0.1", &ten), None);
        assert!(
            unreachable_entry("127.0.0.1", &ten)
                .unwrap()
                .contains("no environment may reach")
        );
    }
}
