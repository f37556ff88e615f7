//! What kind of destination an address is. Transition addresses (IPv4-mapped, -compatible,
//! -translated, NAT64, 6to4) are judged by the IPv4 address they carry, since that is where a
//! packet to them ends up; tunnels whose far end cannot be told (Teredo, local-use NAT64) are
//! never public.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Reachable by any environment whose policy names it.
    Public,
    /// Private, shared, reserved or documentation space: reachable only where the operator
    /// allows it.
    Private,
    /// This host or its link (loopback, link-local, unspecified, multicast, broadcast): never
    /// reachable by an environment's policy alone.
    Local,
}

pub fn classify(a: IpAddr) -> Class {
    match a {
        IpAddr::V4(v) => v4(v),
        IpAddr::V6(v) => v6(v),
    }
}

fn v4(v: Ipv4Addr) -> Class {
    let [a, b, c, _] = v.octets();
    if v.is_loopback() || v.is_link_local() || v.is_broadcast() || v.is_multicast() || a == 0 {
        return Class::Local;
    }
    let private = v.is_private()
        || v.is_documentation()
        // 100.64.0.0/10 (carrier-grade NAT), 192.0.0.0/24 (protocol assignments),
        // 198.18.0.0/15 (benchmarking), 240.0.0.0/4 (reserved).
        || a == 100 && (b & 0xc0) == 64
        || [a, b, c] == [192, 0, 0]
        || a == 198 && (b & 0xfe) == 18
        || a >= 240;
    if private {
        Class::Private
    } else {
        Class::Public
    }
}

fn v6(v: Ipv6Addr) -> Class {
    if v.is_loopback() || v.is_unspecified() || v.is_multicast() || v.is_unicast_link_local() {
        return Class::Local;
    }
    if let Some(inner) = embedded_v4(v) {
        return v4(inner);
    }
    let s = v.segments();
    let private = v.is_unique_local()
        // fec0::/10 (site-local, deprecated but still routed by some stacks).
        || (s[0] & 0xffc0) == 0xfec0
        // 64:ff9b:1::/48 (local-use NAT64: its IPv4 side is the operator's network).
        || s[..3] == [0x64, 0xff9b, 1]
        // 2001::/32 (Teredo: the far end is hidden), 2001:db8::/32 (documentation).
        || s[..2] == [0x2001, 0]
        || s[..2] == [0x2001, 0xdb8]
        // 100::/64 (discard-only).
        || s[..4] == [0x100, 0, 0, 0];
    if private {
        Class::Private
    } else {
        Class::Public
    }
}

/// The IPv4 address a transition address delivers to, if it is one.
fn embedded_v4(v: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v.segments();
    let o = v.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // ::a.b.c.d (IPv4-compatible), ::ffff:a.b.c.d (mapped), ::ffff:0:a.b.c.d (SIIT).
        [0, 0, 0, 0, 0, 0, _, _]
        | [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(last),
        // 64:ff9b::/96 (NAT64, well-known prefix).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last),
        // 2002:AABB:CCDD::/48 (6to4).
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Class {
        classify(s.parse().unwrap())
    }

    #[test]
    fn this_host_and_its_link_are_local() {
        for a in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
        ] {
            assert_eq!(class(a), Class::Local, "{a}");
        }
    }

    #[test]
    fn private_and_reserved_space_is_private() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "192.0.2.1",
            "240.0.0.1",
            "fd00::1",
            "fec0::1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "::ffff:0:192.168.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::8.8.8.8",
            "2002:c0a8:101::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "100::1",
        ] {
            assert_eq!(class(a), Class::Private, "{a}");
        }
    }

    #[test]
    fn the_internet_is_public() {
        for a in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(class(a), Class::Public, "{a}");
        }
    }
}
