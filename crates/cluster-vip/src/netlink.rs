//! Address management over rtnetlink, in the network namespace the connection was opened in.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};

use crate::arp::Mac;
use crate::config::Cidr;
use crate::error::VipError;

/// What the VIP needs to know about its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) index: u32,
    pub(crate) mac: Mac,
    pub(crate) up: bool,
}

/// An rtnetlink connection (its task runs on the runtime it was opened on).
pub(crate) struct Netlink {
    handle: rtnetlink::Handle,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

fn nl_error(what: &str, e: &rtnetlink::Error) -> VipError {
    match errno(e) {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            VipError::PermissionDenied(format!("{what}: {e}"))
        }
        _ => VipError::Netlink(format!("{what}: {e}")),
    }
}

impl Netlink {
    /// Opens a connection and spawns its driver on the current runtime.
    pub(crate) fn open() -> Result<Self, VipError> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| VipError::io("opening a netlink socket", &e))?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Looks the interface up by name; `None` when there is none.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<Link>, VipError> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute()
            .try_next()
            .await;
        let msg = match found {
            Ok(Some(msg)) => msg,
            Ok(None) => return Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(nl_error(&format!("looking up interface {name}"), &e)),
        };
        let mut mac = None;
        for attr in &msg.attributes {
            if let LinkAttribute::Address(bytes) = attr
                && let Ok(m) = <[u8; 6]>::try_from(bytes.as_slice())
            {
                mac = Some(Mac(m));
            }
        }
        let mac = mac.ok_or_else(|| {
            VipError::InvalidConfig(format!(
                "interface {name} has no Ethernet hardware address; a VIP needs an ARP-capable \
                 interface (veth, bridge, physical)"
            ))
        })?;
        Ok(Some(Link {
            index: msg.header.index,
            mac,
            up: msg.header.flags.contains(LinkFlags::Up),
        }))
    }

    /// Whether `cidr` (address and prefix) is on the interface `index`.
    pub(crate) async fn has(&self, index: u32, cidr: Cidr) -> Result<bool, VipError> {
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(IpAddr::V4(cidr.address))
            .execute();
        loop {
            match addrs.try_next().await {
                Ok(Some(msg)) => {
                    let local = msg.attributes.iter().any(|a| {
                        matches!(a, AddressAttribute::Local(IpAddr::V4(x)) if *x == cidr.address)
                    });
                    if local && msg.header.prefix_len == cidr.prefix {
                        return Ok(true);
                    }
                }
                Ok(None) => return Ok(false),
                Err(e) => return Err(nl_error("listing addresses", &e)),
            }
        }
    }

    /// Adds `cidr` to the interface; an address already present counts as success.
    pub(crate) async fn add(&self, index: u32, cidr: Cidr) -> Result<(), VipError> {
        let r = self
            .handle
            .address()
            .add(index, IpAddr::V4(cidr.address), cidr.prefix)
            .execute()
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) && self.has(index, cidr).await? => Ok(()),
            Err(e) => Err(nl_error(&format!("adding {cidr}"), &e)),
        }
    }

    /// Removes `cidr` from the interface; an address already absent counts as success.
    pub(crate) async fn remove(&self, index: u32, cidr: Cidr) -> Result<(), VipError> {
        let msg = rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(cidr.address, cidr.prefix)
            .build();
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(errno(&e), Some(libc::EADDRNOTAVAIL) | Some(libc::ENODEV))
                    && !self.has(index, cidr).await? =>
            {
                Ok(())
            }
            Err(e) => Err(nl_error(&format!("removing {cidr}"), &e)),
        }
    }
}
