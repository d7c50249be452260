//! [`VipResource`]: a VIP held by the leader, as an [`ActiveResource`].

use std::sync::Mutex;

use async_trait::async_trait;
use cluster_core::Epoch;
use cluster_core::{ActiveResource, DeadlineWatch};
use tokio::sync::{mpsc, oneshot};

use crate::config::Vip;
use crate::error::VipError;
use crate::worker::{self, Cmd, VipStatus};

/// A virtual IP that the active instance of an app holds.
///
/// Add it to an app with `app.add_resource(Arc::new(VipResource::new(vip)?), policy)`: the
/// runtime claims it with the term's epoch before `on_active` and releases it after
/// `on_passive`.
///
/// * **Claim** (`activate(epoch)`): refuses an epoch lower than the highest this process has
///   seen for the address ([`VipError::Fenced`]); optionally probes the address with ARP and
///   refuses when another host answers ([`VipError::AddressInUse`]); adds the address
///   (idempotent); sends the first gratuitous ARP before returning, the rest of the burst at
///   `garp_interval`, then re-checks the address and re-announces it every `refresh_interval`.
///   A claim that fails after adding the address removes it again.
/// * **Release** (`deactivate`): removes the address if present (idempotent, also when the
///   interface is gone).
/// * **Namespace**: the resource acts in the network namespace of the thread that called
///   [`VipResource::new`] (its worker thread is spawned from there and opens every socket).
/// * **Shutdown**: [`VipResource::shutdown`], or dropping the resource, releases a held address
///   (best effort; `Drop` waits up to 2 s for it).
/// * **Watchdog** (default on): while the address is held, a guard process (`/bin/sh` + `ip`) in
///   the same namespace removes it if this process dies without releasing (SIGKILL); release
///   and shutdown stop the guard first-hand. Should even the guard be killed, the next start of
///   the resource removes the leftover (`release_stale_on_start`).
/// * **Deadline** (Singleton apps, with `/bin/bash`): the watchdog also receives the remaining
///   validity of the leadership on every renewal and removes the address itself when the
///   deadline passes without one (the daemon hung or `SIGSTOP`ped), before the lease can
///   expire elsewhere. The resumed daemon drops the claim (audit `vip.guard.fired`) and never
///   adds the address back for it.
pub struct VipResource {
    vip: Vip,
    tx: mpsc::UnboundedSender<Cmd>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The leadership deadline (Singleton apps).
    deadline: Mutex<Option<DeadlineWatch>>,
    /// Feeds the deadline of the current claim to the worker.
    forwarder: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for VipResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VipResource")
            .field("cidr", &self.vip.cidr)
            .field("interface", &self.vip.interface)
            .finish()
    }
}

impl VipResource {
    /// Validates `vip`, checks the capabilities (`CAP_NET_ADMIN`, `CAP_NET_RAW`) and that the
    /// interface exists in the calling thread's network namespace, removes a leftover address
    /// (unless disabled), and starts the worker. Blocks briefly (a few netlink round trips).
    pub fn new(vip: Vip) -> Result<Self, VipError> {
        vip.validate()?;
        let (tx, thread) = worker::spawn(vip.clone())?;
        Ok(Self {
            vip,
            tx,
            thread: Mutex::new(Some(thread)),
            deadline: Mutex::new(None),
            forwarder: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Vip {
        &self.vip
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, VipError>>) -> Cmd,
    ) -> Result<T, VipError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| VipError::ShutDown)?;
        rx.await.map_err(|_| VipError::ShutDown)?
    }

    /// Claims the address for the term `epoch` (see the type's documentation).
    pub async fn claim(&self, epoch: Epoch) -> Result<(), VipError> {
        self.call(|r| Cmd::Claim(epoch, r)).await
    }

    /// Releases the address. Succeeds when it is not held, and after shutdown.
    pub async fn release(&self) -> Result<(), VipError> {
        match self.call(Cmd::Release).await {
            Err(VipError::ShutDown) => Ok(()),
            r => r,
        }
    }

    /// The claim's epoch and whether the address is on the interface now.
    pub async fn status(&self) -> Result<VipStatus, VipError> {
        self.call(Cmd::Status).await
    }

    /// Releases a held address and stops the worker thread. Later claims fail with
    /// [`VipError::ShutDown`].
    pub async fn shutdown(&self) -> Result<(), VipError> {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Cmd::Shutdown(tx)).is_err() {
            return Ok(());
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        // The worker replies and exits within a few netlink round trips; wait off the runtime.
        let joined = tokio::task::spawn_blocking(move || {
            let r = rx.recv().unwrap_or(Ok(()));
            if let Some(t) = thread {
                let _ = t.join();
            }
            r
        })
        .await;
        joined.map_err(|e| VipError::Io(format!("waiting for the VIP thread: {e}")))?
    }
}

impl Drop for VipResource {
    fn drop(&mut self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Cmd::Shutdown(tx)).is_ok() {
            match rx.recv_timeout(worker::DROP_WAIT) {
                Ok(Ok(())) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
                Ok(Err(e)) => {
                    tracing::warn!(vip = %self.vip.cidr, error = %e, "releasing the VIP on drop failed")
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!(vip = %self.vip.cidr, "releasing the VIP on drop timed out")
                }
            }
        }
    }
}

#[async_trait]
impl ActiveResource for VipResource {
    fn name(&self) -> &str {
        "vip"
    }

    async fn activate(&self, epoch: Epoch) -> cluster_core::Result<()> {
        self.claim(epoch).await?;
        let watch = self
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(watch) = watch {
            let task = tokio::spawn(forward(watch, epoch, self.tx.clone()));
            let old = self
                .forwarder
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replace(task);
            if let Some(old) = old {
                old.abort();
            }
        }
        Ok(())
    }

    async fn deactivate(&self) -> cluster_core::Result<()> {
        let forwarder = self
            .forwarder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(f) = forwarder {
            f.abort();
        }
        Ok(self.release().await?)
    }

    /// Later claims hand this deadline to the watchdog (see the type's documentation).
    fn follow_deadline(&self, deadline: DeadlineWatch) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(deadline);
    }
}

/// Sends the deadline of term `epoch` to the worker now and on every change (a term that
/// ended sends nothing more: the guard keeps the last deadline).
async fn forward(mut watch: DeadlineWatch, epoch: Epoch, tx: mpsc::UnboundedSender<Cmd>) {
    loop {
        if let Some(deadline) = watch.deadline(epoch)
            && tx
                .send(Cmd::Deadline(epoch, deadline, watch.clone()))
                .is_err()
        {
            return;
        }
        if !watch.changed().await {
            return;
        }
    }
}
