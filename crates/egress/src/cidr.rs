//! Address ranges in CIDR notation, as the operator writes them to open non-public
//! destinations (`--egress-allow-private`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address range like 10.0.0.0/8 or fd00::/8")]
pub struct BadCidr(pub String);

impl Cidr {
    pub fn contains(&self, a: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address is its IPv4 address here, so ranges are written once.
        let a = match a {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl FromStr for Cidr {
    type Err = BadCidr;

    /// `10.0.0.0/8`, `fd00::/8`, or a bare address (that address alone).
    fn from_str(s: &str) -> Result<Cidr, BadCidr> {
        let bad = || BadCidr(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_hold_their_addresses_only() {
        assert!(c("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("172.16.0.0/12").contains(ip("172.31.255.255")));
        assert!(!c("172.16.0.0/12").contains(ip("172.32.0.0")));
        assert!(c("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(!c("192.168.1.7").contains(ip("192.168.1.8")));
        assert!(c("10.0.0.0/8").contains(ip("::ffff:10.1.1.1")));
        assert!(c("fd00::/8").contains(ip("fd12::1")));
        assert!(!c("fd00::/8").contains(ip("10.0.0.1")));
        assert!(c("0.0.0.0/0").contains(ip("8.8.8.8")));
    }

    #[test]
    fn nonsense_is_refused() {
        for s in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/x",
            "",
        ] {
            assert!(s.parse::<Cidr>().is_err(), "{s}");
        }
    }
}
