//! A TCP fault proxy between one client and one server: cut, blackhole, delay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward bytes (after the configured delay).
    Pass,
    /// Keep connections open, drop every byte in both directions.
    Blackhole,
    /// Close every connection and refuse new ones.
    Cut,
    /// The proxy was dropped.
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct State {
    mode: Mode,
    delay: Duration,
}

/// A TCP proxy on a random loopback port forwarding to one upstream address, with faults.
///
/// Point a client at [`FaultProxy::url`] (with discovered servers ignored, so it cannot
/// reconnect around the proxy) to partition that one client from NATS. Needs a tokio runtime
/// with the `net` driver. Dropping the proxy closes everything.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    connections: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (state, _) = watch::channel(State {
            mode: Mode::Pass,
            delay: Duration::ZERO,
        });
        let connections = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            state.clone(),
            connections.clone(),
        ));
        Ok(Self {
            addr,
            state,
            connections,
            accept,
        })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy as a NATS URL.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Number of client connections currently proxied.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Closes every connection and refuses new ones until [`FaultProxy::heal`].
    pub fn cut(&self) {
        self.state.send_modify(|s| s.mode = Mode::Cut);
    }

    /// Keeps connections open but drops every byte in both directions (new connections are
    /// accepted and black-holed too) until [`FaultProxy::heal`].
    pub fn blackhole(&self) {
        self.state.send_modify(|s| s.mode = Mode::Blackhole);
    }

    /// Delays every chunk of bytes by `delay` in each direction (order is kept).
    pub fn delay(&self, delay: Duration) {
        self.state.send_modify(|s| s.delay = delay);
    }

    /// Forwards normally again, without delay.
    pub fn heal(&self) {
        self.state.send_modify(|s| {
            s.mode = Mode::Pass;
            s.delay = Duration::ZERO;
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.send_modify(|s| s.mode = Mode::Closed);
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Sender<State>,
    connections: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        match state.borrow().mode {
            Mode::Cut => {
                drop(client);
                continue;
            }
            Mode::Closed => return,
            Mode::Pass | Mode::Blackhole => {}
        }
        let rx = state.subscribe();
        let connections = connections.clone();
        tokio::spawn(async move {
            connections.fetch_add(1, Ordering::SeqCst);
            run_connection(client, upstream, rx).await;
            connections.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn is_closing(mode: Mode) -> bool {
    matches!(mode, Mode::Cut | Mode::Closed)
}

async fn run_connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut state: watch::Receiver<State>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut up = tokio::spawn(pump(client_read, server_write, state.clone()));
    let mut down = tokio::spawn(pump(server_read, client_write, state.clone()));
    loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() || is_closing(state.borrow().mode) {
                    break;
                }
            }
            _ = &mut up => break,
            _ = &mut down => break,
        }
    }
    // Aborting drops all four halves: both sockets close.
    up.abort();
    down.abort();
}

/// Copies one direction, applying blackhole and delay; finishes when either side closes.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, state: watch::Receiver<State>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, data)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let current = *state.borrow();
            match current.mode {
                Mode::Pass => {
                    let due = Instant::now() + current.delay;
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Mode::Blackhole => {}
                Mode::Cut | Mode::Closed => return,
            }
        }
    };
    tokio::join!(reader, writer);
}
