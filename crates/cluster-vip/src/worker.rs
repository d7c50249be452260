//! The VIP worker: one OS thread per resource with its own single-threaded runtime.
//!
//! Every socket the resource uses (netlink, ARP) is opened on this thread. A thread inherits
//! the network namespace of the thread that spawned it, so the resource acts in the namespace
//! of whoever constructed it, whatever thread later calls it. The worker owns the state (held or
//! not, the epoch, the announcement schedule) and handles one command at a time.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use cluster_core::DeadlineWatch;
use cluster_core::Epoch;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::arp::{Arp, Mac, OP_REPLY, OP_REQUEST};
use crate::config::{ClaimCheck, GarpForm, Vip};
use crate::error::VipError;
use crate::netlink::{Link, Netlink};
use crate::packet::ArpSocket;
use crate::watchdog::{self, Guard};
use crate::{caps, fence};

/// What the resource reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipStatus {
    /// The epoch of the current claim, `None` when not claimed.
    pub claimed: Option<Epoch>,
    /// Whether the address is on the interface right now (asked from the kernel).
    pub on_interface: bool,
    /// The process id of the watchdog guarding the held address (`None` when not held or the
    /// watchdog is disabled).
    pub watchdog_pid: Option<u32>,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, VipError>>;

/// Requests to the worker.
pub(crate) enum Cmd {
    Claim(Epoch, Reply<()>),
    Release(Reply<()>),
    Status(Reply<VipStatus>),
    /// The leadership deadline of term `epoch` moved: hand the remaining time to the guard.
    Deadline(Epoch, Instant, DeadlineWatch),
    /// Release if claimed, then stop the thread.
    Shutdown(std::sync::mpsc::Sender<Result<(), VipError>>),
}

struct Held {
    epoch: Epoch,
    link: Link,
    socket: ArpSocket,
    /// GARPs of the claim burst still to send.
    burst_left: u32,
    next: Option<Instant>,
    /// Removes the address if this process dies while holding it (or misses its deadline).
    guard: Option<Guard>,
    /// The deadline watch of the claim, where a fired guard is audited.
    reporter: Option<DeadlineWatch>,
}

struct Worker {
    vip: Vip,
    nl: Netlink,
    netns: u64,
    /// The `ip` binary for the watchdog (`None`: watchdog disabled).
    ip: Option<PathBuf>,
    held: Option<Held>,
}

/// Starts the worker thread; returns once it is ready or failed to start.
pub(crate) fn spawn(
    vip: Vip,
) -> Result<(mpsc::UnboundedSender<Cmd>, std::thread::JoinHandle<()>), VipError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let name = format!("vip-{}", vip.interface);
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(VipError::io("starting the VIP runtime", &e)));
                    return;
                }
            };
            rt.block_on(async move {
                match Worker::start(vip).await {
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                    Ok(w) => {
                        let _ = ready_tx.send(Ok(()));
                        w.serve(rx).await;
                    }
                }
            });
        })
        .map_err(|e| VipError::io("spawning the VIP thread", &e))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((tx, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(VipError::Io("the VIP thread exited while starting".into()))
        }
    }
}

impl Worker {
    async fn start(vip: Vip) -> Result<Self, VipError> {
        vip.validate()?;
        caps::require_net_caps()?;
        let ip = if vip.watchdog {
            Some(watchdog::find_ip()?)
        } else {
            None
        };
        let nl = Netlink::open()?;
        let link = nl
            .link(&vip.interface)
            .await?
            .ok_or_else(|| VipError::NoSuchInterface(vip.interface.clone()))?;
        // Fail now, not at the first failover, if raw ARP sockets are not allowed.
        let socket = ArpSocket::open(link.index, false)
            .map_err(|e| VipError::io("opening an AF_PACKET socket for ARP", &e))?;
        let netns = match socket.netns_cookie() {
            Ok(cookie) => cookie,
            // Kernels before 5.14: the namespace's inode (may be reused after deletion).
            Err(_) => std::fs::metadata("/proc/thread-self/ns/net")
                .map_err(|e| VipError::io("reading /proc/thread-self/ns/net", &e))?
                .ino(),
        };
        if vip.release_stale_on_start && nl.has(link.index, vip.cidr).await? {
            warn!(vip = %vip.cidr, interface = %vip.interface,
                "removing a VIP left on the interface by an earlier run");
            nl.remove(link.index, vip.cidr).await?;
        }
        Ok(Self {
            vip,
            nl,
            netns,
            ip,
            held: None,
        })
    }

    async fn serve(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        loop {
            let next = self.held.as_ref().and_then(|h| h.next);
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Claim(epoch, reply)) => {
                        let _ = reply.send(self.claim(epoch).await);
                    }
                    Some(Cmd::Release(reply)) => {
                        let _ = reply.send(self.release().await);
                    }
                    Some(Cmd::Status(reply)) => {
                        let _ = reply.send(self.status().await);
                    }
                    Some(Cmd::Deadline(epoch, deadline, watch)) => {
                        self.deadline(epoch, deadline, watch)
                    }
                    Some(Cmd::Shutdown(reply)) => {
                        let r = self.release_if_held().await;
                        let _ = reply.send(r);
                        return;
                    }
                    None => {
                        if let Err(e) = self.release_if_held().await {
                            warn!(vip = %self.vip.cidr, error = %e, "releasing the VIP on drop failed");
                        }
                        return;
                    }
                },
                _ = async {
                    match next {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => self.announce_tick().await,
            }
        }
    }

    async fn current_link(&self) -> Result<Link, VipError> {
        self.nl
            .link(&self.vip.interface)
            .await?
            .ok_or_else(|| VipError::NoSuchInterface(self.vip.interface.clone()))
    }

    async fn claim(&mut self, epoch: Epoch) -> Result<(), VipError> {
        let cidr = self.vip.cidr;
        fence::claim(self.netns, cidr.address, epoch)?;
        let link = self.current_link().await?;
        if !link.up {
            return Err(VipError::InterfaceDown(self.vip.interface.clone()));
        }
        let present = self.nl.has(link.index, cidr).await?;
        if !present && let Some(check) = self.vip.check_before_claim {
            self.check(&link, check).await?;
        }
        // The probe took time: a newer claim may have been recorded meanwhile.
        fence::still_current(self.netns, cidr.address, epoch)?;
        // The watchdog runs before the address exists: dying right after adding it must not
        // leave it behind.
        let guard = self.live_guard()?;
        if let Err(e) = self.nl.add(link.index, cidr).await {
            match self.held.as_mut() {
                // Still held from an earlier claim: keep guarding it.
                Some(h) => h.guard = guard,
                None => guard.into_iter().for_each(Guard::disarm),
            }
            return Err(e);
        }
        let announced = ArpSocket::open(link.index, false)
            .map_err(|e| VipError::io("opening an AF_PACKET socket for ARP", &e))
            .and_then(|socket| {
                send_garp(&socket, self.vip.garp_form, link.mac, cidr.address)?;
                Ok(socket)
            });
        let socket = match announced {
            Ok(s) => s,
            Err(e) => {
                // Leave nothing behind: the runtime does not deactivate a failed activation.
                self.held = None;
                match self.nl.remove(link.index, cidr).await {
                    Ok(()) => guard.into_iter().for_each(Guard::disarm),
                    // Dropping the guard closes its pipe: it tries to remove the address too.
                    Err(undo) => {
                        warn!(vip = %cidr, error = %undo, "removing the VIP after a failed claim failed");
                        drop(guard);
                    }
                }
                return Err(e);
            }
        };
        let burst_left = self.vip.garp_count.saturating_sub(1);
        let next = self.schedule(burst_left);
        info!(vip = %cidr, interface = %self.vip.interface, %epoch, mac = %link.mac,
            watchdog = ?guard.as_ref().map(Guard::pid), "VIP claimed");
        self.held = Some(Held {
            epoch,
            link,
            socket,
            burst_left,
            next,
            guard,
            reporter: None,
        });
        Ok(())
    }

    /// The watchdog of the current claim if it still runs, else a new one (`None` when the
    /// watchdog is disabled).
    fn live_guard(&mut self) -> Result<Option<Guard>, VipError> {
        let Some(ip) = &self.ip else {
            return Ok(None);
        };
        if let Some(mut g) = self.held.as_mut().and_then(|h| h.guard.take()) {
            if g.alive() {
                return Ok(Some(g));
            }
            warn!(vip = %self.vip.cidr, pid = g.pid(), "the VIP watchdog exited; starting a new one");
        }
        Guard::spawn(ip, self.vip.cidr, &self.vip.interface).map(Some)
    }

    fn schedule(&self, burst_left: u32) -> Option<Instant> {
        if burst_left > 0 {
            Some(Instant::now() + self.vip.garp_interval)
        } else {
            self.vip.refresh_interval.map(|r| Instant::now() + r)
        }
    }

    /// Probes the address; fails with `AddressInUse` when another host answers.
    async fn check(&self, link: &Link, check: ClaimCheck) -> Result<(), VipError> {
        let address = self.vip.cidr.address;
        let socket = ArpSocket::open(link.index, true)
            .map_err(|e| VipError::io("opening an AF_PACKET socket for ARP probes", &e))?;
        socket
            .drain()
            .map_err(|e| VipError::io("reading ARP", &e))?;
        for _ in 0..check.probes {
            socket
                .send(&Arp::probe(link.mac, address))
                .map_err(|e| VipError::io("sending an ARP probe", &e))?;
            let answer = socket
                .recv_matching(check.wait, |a| a.claims(address, link.mac))
                .await
                .map_err(|e| VipError::io("reading ARP", &e))?;
            if let Some(a) = answer {
                warn!(vip = %address, by = %a.sender_mac, "another host answers for the VIP; not claiming");
                return Err(VipError::AddressInUse {
                    address,
                    mac: a.sender_mac.to_string(),
                });
            }
        }
        debug!(vip = %address, "no other host answers for the VIP");
        Ok(())
    }

    /// Whether the guard of `held` removed the address because this process missed its
    /// leadership deadline (it was hung or stopped); logged and audited.
    fn guard_fired(&self, held: &mut Held) -> bool {
        let fired = held.guard.as_mut().is_some_and(Guard::fired);
        if fired {
            tracing::error!(target: "cluster::audit", event = "vip.guard.fired",
                vip = %self.vip.cidr, interface = %self.vip.interface, epoch = %held.epoch,
                "the VIP guard removed the address: this daemon did not renew its leadership \
                 before the deadline; the claim is dropped");
            if let Some(r) = &held.reporter {
                let vip = self.vip.cidr.to_string();
                r.report_guard_fired("vip", held.epoch, &[("vip", &vip)]);
            }
        }
        fired
    }

    /// Passes the remaining time of term `epoch` to the guard of a claim for that term.
    fn deadline(&mut self, epoch: Epoch, deadline: Instant, watch: DeadlineWatch) {
        if let Some(h) = self.held.as_mut().filter(|h| h.epoch == epoch)
            && let Some(g) = h.guard.as_mut()
        {
            g.write_remaining(deadline.saturating_duration_since(Instant::now()));
            h.reporter.get_or_insert(watch);
        }
    }

    /// The next GARP of the burst, or a refresh: re-check the address and announce it again.
    async fn announce_tick(&mut self) {
        let Some(mut held) = self.held.take() else {
            return;
        };
        let cidr = self.vip.cidr;
        if self.guard_fired(&mut held) {
            // The claim is over: never add the address back.
            return;
        }
        let announce = if held.burst_left > 0 {
            held.burst_left -= 1;
            true
        } else {
            match self.refresh(&mut held).await {
                Ok(()) => true,
                Err(e) => {
                    // Never announce an address that could not be verified.
                    tracing::error!(vip = %cidr, interface = %self.vip.interface, error = %e,
                        "VIP refresh failed; not announcing, retrying at the next refresh");
                    false
                }
            }
        };
        if announce
            && let Err(e) = send_garp(
                &held.socket,
                self.vip.garp_form,
                held.link.mac,
                cidr.address,
            )
        {
            tracing::error!(vip = %cidr, interface = %self.vip.interface, error = %e,
                "sending a gratuitous ARP failed");
        }
        held.next = self.schedule(held.burst_left);
        self.held = Some(held);
    }

    /// Makes sure the address is still on the (possibly re-created) interface.
    async fn refresh(&self, held: &mut Held) -> Result<(), VipError> {
        let cidr = self.vip.cidr;
        fence::still_current(self.netns, cidr.address, held.epoch)?;
        let link = self.current_link().await?;
        if link != held.link {
            held.socket = ArpSocket::open(link.index, false)
                .map_err(|e| VipError::io("opening an AF_PACKET socket for ARP", &e))?;
            held.link = link;
        }
        if self.ip.is_some() && !held.guard.as_mut().is_some_and(Guard::alive) {
            warn!(vip = %cidr, "the VIP watchdog is gone while the VIP is held; starting a new one");
            if let Some(ip) = &self.ip {
                held.guard = Some(Guard::spawn(ip, cidr, &self.vip.interface)?);
            }
        }
        if !self.nl.has(held.link.index, cidr).await? {
            warn!(vip = %cidr, interface = %self.vip.interface,
                "the VIP disappeared from the interface while held; adding it again");
            self.nl.add(held.link.index, cidr).await?;
        }
        Ok(())
    }

    async fn release(&mut self) -> Result<(), VipError> {
        let cidr = self.vip.cidr;
        let mut was = self.held.take();
        if let Some(h) = was.as_mut() {
            self.guard_fired(h);
        }
        let guard = was.as_mut().and_then(|h| h.guard.take());
        let removed = match self.nl.link(&self.vip.interface).await {
            // The interface is gone, and its addresses with it.
            Ok(None) => Ok(()),
            Ok(Some(link)) => self.nl.remove(link.index, cidr).await,
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => {
                // The address is gone: stop the watchdog before its pipe closes.
                guard.into_iter().for_each(Guard::disarm);
                if let Some(h) = was {
                    info!(vip = %cidr, interface = %self.vip.interface, epoch = %h.epoch, "VIP released");
                }
                Ok(())
            }
            Err(e) => {
                // Dropping the guard closes its pipe: it tries to remove the address too.
                drop(guard);
                Err(e)
            }
        }
    }

    async fn release_if_held(&mut self) -> Result<(), VipError> {
        if self.held.is_some() {
            self.release().await
        } else {
            Ok(())
        }
    }

    async fn status(&self) -> Result<VipStatus, VipError> {
        let on_interface = match self.nl.link(&self.vip.interface).await? {
            Some(link) => self.nl.has(link.index, self.vip.cidr).await?,
            None => false,
        };
        Ok(VipStatus {
            claimed: self.held.as_ref().map(|h| h.epoch),
            on_interface,
            watchdog_pid: self
                .held
                .as_ref()
                .and_then(|h| h.guard.as_ref().map(Guard::pid)),
        })
    }
}

fn send_garp(
    socket: &ArpSocket,
    form: GarpForm,
    mac: Mac,
    ip: std::net::Ipv4Addr,
) -> Result<(), VipError> {
    let ops: &[u16] = match form {
        GarpForm::Request => &[OP_REQUEST],
        GarpForm::Reply => &[OP_REPLY],
        GarpForm::Both => &[OP_REQUEST, OP_REPLY],
    };
    for op in ops {
        socket
            .send(&Arp::gratuitous(*op, mac, ip))
            .map_err(|e| VipError::io("sending a gratuitous ARP", &e))?;
    }
    Ok(())
}

/// How long `Drop` waits for the worker to release the address.
pub(crate) const DROP_WAIT: Duration = Duration::from_secs(2);
