//! ARP packets for Ethernet/IPv4 (RFC 826): gratuitous announcements and RFC 5227 probes.
//!
//! Packets are the 28-byte ARP payload; the link-layer header is added by the kernel
//! (`AF_PACKET`/`SOCK_DGRAM`).

use std::fmt;
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP payload.
pub(crate) const ARP_LEN: usize = 28;
/// `ETH_P_ARP`.
pub(crate) const ETH_P_ARP: u16 = 0x0806;
/// ARP request opcode.
pub(crate) const OP_REQUEST: u16 = 1;
/// ARP reply opcode.
pub(crate) const OP_REPLY: u16 = 2;

/// An Ethernet hardware address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The fields of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arp {
    pub(crate) op: u16,
    pub(crate) sender_mac: Mac,
    pub(crate) sender_ip: Ipv4Addr,
    pub(crate) target_mac: Mac,
    pub(crate) target_ip: Ipv4Addr,
}

impl Arp {
    /// A gratuitous ARP for `ip` held by `mac`: sender and target address are both `ip`.
    /// The request form (`arping -U`) targets the broadcast hardware address; the reply form
    /// (`arping -A`) repeats the sender's.
    pub(crate) fn gratuitous(op: u16, mac: Mac, ip: Ipv4Addr) -> Self {
        Self {
            op,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: if op == OP_REPLY { mac } else { Mac::BROADCAST },
            target_ip: ip,
        }
    }

    /// An RFC 5227 probe for `ip`: a request with sender address 0.0.0.0, so no neighbour
    /// cache is changed by it; a host holding `ip` answers with a reply.
    pub(crate) fn probe(mac: Mac, ip: Ipv4Addr) -> Self {
        Self {
            op: OP_REQUEST,
            sender_mac: mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: Mac::default(),
            target_ip: ip,
        }
    }

    /// Encodes the packet.
    pub(crate) fn encode(&self) -> [u8; ARP_LEN] {
        let mut b = [0u8; ARP_LEN];
        b[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
        b[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol type: IPv4
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac.0);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac.0);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        b
    }

    /// Decodes an Ethernet/IPv4 ARP packet; `None` for anything else.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < ARP_LEN || b[0..2] != [0, 1] || b[2..4] != [8, 0] || b[4] != 6 || b[5] != 4 {
            return None;
        }
        let mac = |r: std::ops::Range<usize>| {
            let mut m = [0u8; 6];
            m.copy_from_slice(&b[r]);
            Mac(m)
        };
        let ip = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
        Some(Self {
            op: u16::from_be_bytes([b[6], b[7]]),
            sender_mac: mac(8..14),
            sender_ip: ip(14),
            target_mac: mac(18..24),
            target_ip: ip(24),
        })
    }

    /// Whether this packet shows another host (not `own`) using `ip`: a reply from `ip`, or an
    /// announcement (request with sender `ip`).
    pub(crate) fn claims(&self, ip: Ipv4Addr, own: Mac) -> bool {
        self.sender_ip == ip && self.sender_mac != own && matches!(self.op, OP_REQUEST | OP_REPLY)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const OTHER: Mac = Mac([2, 0, 0, 0, 0, 2]);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);

    #[test]
    fn gratuitous_request_matches_arping_u() {
        let p = Arp::gratuitous(OP_REQUEST, MAC, VIP).encode();
        assert_eq!(
            p.to_vec(),
            [
                vec![0, 1, 8, 0, 6, 4, 0, 1],
                MAC.0.to_vec(),
                vec![198, 51, 100, 100],
                vec![0xff; 6],
                vec![198, 51, 100, 100]
            ]
            .concat()
        );
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        for a in [
            Arp::gratuitous(OP_REPLY, MAC, VIP),
            Arp::gratuitous(OP_REQUEST, MAC, VIP),
            Arp::probe(MAC, VIP),
        ] {
            assert_eq!(Arp::decode(&a.encode()), Some(a));
        }
        assert_eq!(Arp::decode(&[0u8; 10]), None);
        let mut ipv6ish = Arp::probe(MAC, VIP).encode();
        ipv6ish[2] = 0x86;
        assert_eq!(Arp::decode(&ipv6ish), None);
        assert_eq!(MAC.to_string(), "02:00:00:00:00:01");
    }

    #[test]
    fn claims_detects_other_hosts_only() {
        let reply = Arp {
            op: OP_REPLY,
            sender_mac: OTHER,
            sender_ip: VIP,
            target_mac: MAC,
            target_ip: Ipv4Addr::UNSPECIFIED,
        };
        assert!(reply.claims(VIP, MAC));
        assert!(!reply.claims(VIP, OTHER), "own packets never count");
        assert!(Arp::gratuitous(OP_REQUEST, OTHER, VIP).claims(VIP, MAC));
        assert!(
            !Arp::probe(OTHER, VIP).claims(VIP, MAC),
            "another prober is no holder"
        );
    }
}
