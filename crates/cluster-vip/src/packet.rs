//! A raw `AF_PACKET`/`SOCK_DGRAM` socket for sending and receiving ARP (needs `CAP_NET_RAW`).
//!
//! Why a native socket instead of running `arping`: no extra package at runtime, no process to
//! spawn on the failover path, and no ~1 s wait for replies that `arping -U` does (see
//! `docs/architecture/cluster-vip.md`). The socket is created in the network namespace of the
//! calling thread, like every socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::arp::{ARP_LEN, Arp, ETH_P_ARP, Mac};

/// `PACKET_OUTGOING`: a packet this host sent (seen by packet sockets too).
const PACKET_OUTGOING: u8 = 4;

/// An `AF_PACKET` datagram socket for ARP on one interface.
pub(crate) struct ArpSocket {
    fd: AsyncFd<OwnedFd>,
    ifindex: u32,
}

fn link_addr(ifindex: u32, dest: Mac) -> io::Result<libc::sockaddr_ll> {
    // SAFETY: `sockaddr_ll` is a plain C struct of integers and byte arrays, for which all-zero
    // bytes are a valid value.
    #[allow(unsafe_code)]
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_ARP.to_be();
    sa.sll_ifindex = i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&dest.0);
    Ok(sa)
}

impl ArpSocket {
    /// A socket that sends on `ifindex`. With `receive`, it is also bound to ARP on that
    /// interface and receives every ARP packet there; without, it receives nothing.
    pub(crate) fn open(ifindex: u32, receive: bool) -> io::Result<Self> {
        let proto = if receive { ETH_P_ARP.to_be() } else { 0 };
        // SAFETY: plain socket(2) call with constant arguments; the result is checked before use.
        #[allow(unsafe_code)]
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created, valid descriptor that nothing else owns.
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if receive {
            let sa = link_addr(ifindex, Mac::default())?;
            // SAFETY: `sa` is a valid, initialised `sockaddr_ll` and the length passed is its
            // size; `fd` is a valid socket for the duration of the call.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sa).cast::<libc::sockaddr>(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: `fd` is an open descriptor owned by the `OwnedFd` moved into the `AsyncFd`;
        // it stays open and unchanged until the `AsyncFd` is dropped (nothing replaces it).
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(Self { fd, ifindex })
    }

    /// The kernel's cookie of the socket's network namespace (`SO_NETNS_COOKIE`, Linux ≥ 5.14):
    /// unique per namespace and never reused while the system runs, unlike the namespace's
    /// inode number, which a new namespace may get after an old one is deleted.
    pub(crate) fn netns_cookie(&self) -> io::Result<u64> {
        /// `SO_NETNS_COOKIE` from `<asm-generic/socket.h>` (not exported by `libc`).
        const SO_NETNS_COOKIE: libc::c_int = 71;
        let mut cookie: u64 = 0;
        let mut len = size_of::<u64>() as libc::socklen_t;
        // SAFETY: `cookie` is writable for `len` bytes and `len` is a valid pointer; the
        // descriptor is valid.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::getsockopt(
                self.fd.get_ref().as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&raw mut cookie).cast(),
                &raw mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(cookie)
    }

    /// Sends `arp` to the broadcast address.
    pub(crate) fn send(&self, arp: &Arp) -> io::Result<()> {
        let sa = link_addr(self.ifindex, Mac::BROADCAST)?;
        let buf = arp.encode();
        // SAFETY: `buf` is a valid buffer of `buf.len()` bytes; `sa` is a valid, initialised
        // `sockaddr_ll` and the length passed is its size; the descriptor is valid.
        #[allow(unsafe_code)]
        let n = unsafe {
            libc::sendto(
                self.fd.get_ref().as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&raw const sa).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != buf.len() {
            return Err(io::Error::other(format!(
                "short ARP send: {n} of {}",
                buf.len()
            )));
        }
        Ok(())
    }

    /// Drops everything queued so far (packets received before a probe).
    pub(crate) fn drain(&self) -> io::Result<()> {
        while self.try_recv()?.is_some() {}
        Ok(())
    }

    /// Waits up to `wait` for an incoming (not self-sent) ARP packet matching `pred`.
    pub(crate) async fn recv_matching(
        &self,
        wait: Duration,
        mut pred: impl FnMut(&Arp) -> bool,
    ) -> io::Result<Option<Arp>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(arp) = self.try_recv()? {
                if pred(&arp) {
                    return Ok(Some(arp));
                }
            }
            let readable = tokio::time::timeout_at(deadline, self.fd.readable()).await;
            match readable {
                Err(_) => return Ok(None),
                Ok(guard) => guard?.clear_ready(),
            }
        }
    }

    /// One incoming ARP packet if one is queued (`Ok(None)` when the queue is empty; packets
    /// that are not ARP for Ethernet/IPv4, or that this host sent, are skipped).
    fn try_recv(&self) -> io::Result<Option<Arp>> {
        loop {
            let mut buf = [0u8; 64];
            // SAFETY: see `link_addr`; all-zero is a valid `sockaddr_ll`.
            #[allow(unsafe_code)]
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is writable for `buf.len()` bytes; `sa` is writable for `len` bytes
            // and `len` is a valid pointer; the descriptor is valid.
            #[allow(unsafe_code)]
            let n = unsafe {
                libc::recvfrom(
                    self.fd.get_ref().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut sa).cast::<libc::sockaddr>(),
                    &raw mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if sa.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let n = usize::try_from(n).unwrap_or(0).min(buf.len());
            if n < ARP_LEN {
                continue;
            }
            if let Some(arp) = Arp::decode(&buf[..n]) {
                return Ok(Some(arp));
            }
        }
    }
}
