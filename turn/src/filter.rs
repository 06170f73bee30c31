//! The peer address policy: which addresses a client may relay to.
//!
//! A TURN server relays from a public address, so an open policy lets anyone on the
//! internet reach what only the server can: its own loopback services, the VPC behind it,
//! the cloud metadata endpoint. Every address class that is not a public unicast address
//! is refused, whatever its spelling: IPv4-mapped (`::ffff:127.0.0.1`), IPv4-compatible
//! (`::127.0.0.1`), NAT64 (`64:ff9b::7f00:1`) and 6to4 (`2002:7f00:1::`) forms are judged
//! by the IPv4 address inside them, and the unspecified addresses (`0.0.0.0`, `::`), which
//! reach the server itself on Linux, are refused (coturn's CVE-2020-26262).
//!
//! Operators may open loopback (tests and the dev server only) and chosen ranges
//! ([`Cidr`]); the unspecified, multicast and broadcast addresses are never unicast peers
//! and stay refused whatever is allowed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a peer address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `0.0.0.0`, `::`: the server itself.
    Unspecified,
    /// `0.0.0.0/8` other than `0.0.0.0`: "this network".
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`) and unique local IPv6 (`fc00::/7`).
    Private,
    /// Shared address space for carrier-grade NAT, `100.64.0.0/10`.
    SharedNat,
    /// `169.254/16`, `fe80::/10` (and the deprecated site-local `fec0::/10`).
    LinkLocal,
    /// Cloud instance metadata: `169.254.169.254`, `fd00:ec2::254`.
    Metadata,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Other special-purpose ranges: `192.0.0/24`, `198.18/15`, `240/4`, `100::/64`,
    /// the deprecated IPv4-compatible `::/96`.
    Reserved,
}

impl Refusal {
    /// Whether an operator's [`Cidr`] may open this class; the server itself, multicast
    /// and broadcast addresses are never unicast peers.
    pub fn can_be_allowed(self) -> bool {
        !matches!(
            self,
            Refusal::Unspecified | Refusal::Multicast | Refusal::Broadcast
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Unspecified => "unspecified",
            Refusal::ThisNetwork => "this-network",
            Refusal::Loopback => "loopback",
            Refusal::Private => "private",
            Refusal::SharedNat => "shared-nat",
            Refusal::LinkLocal => "link-local",
            Refusal::Metadata => "metadata",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::Reserved => "reserved",
        })
    }
}

/// The class of a special-purpose address, or `None` for a public unicast address.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let o = ip.octets();
    let refusal = match o {
        [0, 0, 0, 0] => Refusal::Unspecified,
        [0, ..] => Refusal::ThisNetwork,
        [127, ..] => Refusal::Loopback,
        [10, ..] | [192, 168, ..] => Refusal::Private,
        [172, b, ..] if (16..32).contains(&b) => Refusal::Private,
        [100, b, ..] if (64..128).contains(&b) => Refusal::SharedNat,
        [169, 254, 169, 254] => Refusal::Metadata,
        [169, 254, ..] => Refusal::LinkLocal,
        [255, 255, 255, 255] => Refusal::Broadcast,
        [a, ..] if (224..240).contains(&a) => Refusal::Multicast,
        [a, ..] if a >= 240 => Refusal::Reserved,
        [192, 0, 0, _] => Refusal::Reserved,
        [198, b, ..] if b == 18 || b == 19 => Refusal::Reserved,
        _ => return None,
    };
    Some(refusal)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some(Refusal::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Refusal::Loopback);
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    // IPv4-compatible (::a.b.c.d, deprecated): judged by the address inside, and refused
    // as reserved when that address is public.
    if s[..6] == [0; 6] {
        return Some(classify_v4(embedded(s[6], s[7])).unwrap_or(Refusal::Reserved));
    }
    // NAT64 well-known prefix: a NAT64 gateway would forward to the IPv4 address inside.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded(s[6], s[7]));
    }
    // 6to4: a relay router would forward to the IPv4 address inside.
    if s[0] == 0x2002 {
        return classify_v4(embedded(s[1], s[2]));
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(Refusal::Metadata);
    }
    let refusal = match s[0] {
        a if a & 0xfe00 == 0xfc00 => Refusal::Private,
        // The local-use NAT64 prefix 64:ff9b:1::/48 reaches the operator's own network.
        0x64 if s[1] == 0xff9b && s[2] == 1 => Refusal::Private,
        a if a & 0xffc0 == 0xfe80 || a & 0xffc0 == 0xfec0 => Refusal::LinkLocal,
        a if a & 0xff00 == 0xff00 => Refusal::Multicast,
        0x100 if s[1..4] == [0, 0, 0] => Refusal::Reserved,
        _ => return None,
    };
    Some(refusal)
}

/// An address range, `10.0.0.0/8` or `2001:db8::/32`, that an operator opens to relaying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A [`Cidr`] that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an address range (want ADDRESS/PREFIX, e.g. 10.0.0.0/8): {0}")]
pub struct CidrError(String);

impl Cidr {
    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (a >> shift) == (b >> shift)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| err())?,
            None => bits,
        };
        if prefix > bits {
            return Err(err());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Which peers a client may relay to: public unicast addresses, plus loopback when
/// `allow_loopback` and the ranges in `allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Relay to `127.0.0.0/8` and `::1` (tests and the local dev server only).
    pub allow_loopback: bool,
    /// Special-purpose ranges the operator opens (never unspecified, multicast, broadcast).
    pub allow: Vec<Cidr>,
}

impl PeerPolicy {
    /// Whether a client may relay to `ip`, and if not, why.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let Some(refusal) = classify(ip) else {
            return Ok(());
        };
        if !refusal.can_be_allowed() {
            return Err(refusal);
        }
        if refusal == Refusal::Loopback && self.allow_loopback {
            return Ok(());
        }
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn every_special_purpose_class_is_refused_in_every_spelling() {
        let policy = PeerPolicy::default();
        for (addr, why) in [
            ("0.0.0.0", Refusal::Unspecified),
            ("::", Refusal::Unspecified),
            ("::ffff:0.0.0.0", Refusal::Unspecified),
            ("0.1.2.3", Refusal::ThisNetwork),
            ("127.0.0.1", Refusal::Loopback),
            ("127.255.0.9", Refusal::Loopback),
            ("::1", Refusal::Loopback),
            ("::ffff:127.0.0.1", Refusal::Loopback),
            ("::127.0.0.1", Refusal::Loopback),
            ("64:ff9b::7f00:1", Refusal::Loopback),
            ("2002:7f00:1::", Refusal::Loopback),
            ("10.1.2.3", Refusal::Private),
            ("172.16.0.1", Refusal::Private),
            ("172.31.255.254", Refusal::Private),
            ("192.168.1.1", Refusal::Private),
            ("::ffff:10.0.0.1", Refusal::Private),
            ("fc00::1", Refusal::Private),
            ("fd12:3456::1", Refusal::Private),
            ("64:ff9b:1::1", Refusal::Private),
            ("100.64.0.1", Refusal::SharedNat),
            ("100.127.255.255", Refusal::SharedNat),
            ("169.254.1.1", Refusal::LinkLocal),
            ("fe80::1", Refusal::LinkLocal),
            ("fec0::1", Refusal::LinkLocal),
            ("169.254.169.254", Refusal::Metadata),
            ("::ffff:169.254.169.254", Refusal::Metadata),
            ("fd00:ec2::254", Refusal::Metadata),
            ("224.0.0.1", Refusal::Multicast),
            ("239.255.255.250", Refusal::Multicast),
            ("ff02::1", Refusal::Multicast),
            ("255.255.255.255", Refusal::Broadcast),
            ("240.0.0.1", Refusal::Reserved),
            ("192.0.0.170", Refusal::Reserved),
            ("198.18.0.1", Refusal::Reserved),
            ("100::1", Refusal::Reserved),
            ("::8.8.8.8", Refusal::Reserved),
        ] {
            assert_eq!(policy.check(ip(addr)), Err(why), "{addr}");
        }
    }

    #[test]
    fn public_unicast_addresses_are_relayed() {
        let policy = PeerPolicy::default();
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "203.0.113.7",
            "::ffff:8.8.8.8",
            "2001:4860:4860::8888",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(policy.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn allow_loopback_opens_loopback_and_nothing_else() {
        let policy = PeerPolicy {
            allow_loopback: true,
            allow: vec![],
        };
        for addr in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(policy.check(ip(addr)), Ok(()), "{addr}");
        }
        for addr in ["0.0.0.0", "::", "10.0.0.1", "169.254.169.254", "224.0.0.1"] {
            assert!(policy.check(ip(addr)).is_err(), "{addr}");
        }
    }

    #[test]
    fn operator_ranges_open_only_unicast_classes() {
        let policy = PeerPolicy {
            allow_loopback: false,
            allow: vec![
                "10.0.0.0/8".parse().expect("cidr"),
                "0.0.0.0/0".parse().expect("cidr"),
            ],
        };
        assert_eq!(policy.check(ip("10.9.8.7")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:10.9.8.7")), Ok(()));
        assert_eq!(policy.check(ip("0.0.0.0")), Err(Refusal::Unspecified));
        assert_eq!(policy.check(ip("224.0.0.1")), Err(Refusal::Multicast));
        assert_eq!(policy.check(ip("255.255.255.255")), Err(Refusal::Broadcast));
        let narrow = PeerPolicy {
            allow_loopback: false,
            allow: vec!["10.1.0.0/16".parse().expect("cidr")],
        };
        assert_eq!(narrow.check(ip("10.1.200.1")), Ok(()));
        assert_eq!(narrow.check(ip("10.2.0.1")), Err(Refusal::Private));
    }

    #[test]
    fn cidrs_parse_and_refuse_nonsense() {
        assert_eq!(
            "2001:db8::/32".parse::<Cidr>().map(|c| c.to_string()),
            Ok("2001:db8::/32".to_string())
        );
        assert_eq!(
            "10.0.0.1".parse::<Cidr>().map(|c| c.to_string()),
            Ok("10.0.0.1/32".to_string())
        );
        for bad in ["10.0.0.0/33", "::/129", "nope/8", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
