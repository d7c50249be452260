//! Delivery of routed items (messages, watch events) to one receiver: per-item delay and
//! partition gating, in FIFO order.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;

use crate::faults::Faults;

/// An item in flight with the instant it may be delivered (`None`: at once).
pub(crate) struct Stamped<T> {
    pub(crate) deliver_at: Option<Instant>,
    pub(crate) item: T,
}

impl<T> Stamped<T> {
    /// Stamps `item` with a delivery time `delay` from now.
    pub(crate) fn after(delay: Duration, item: T) -> Self {
        let deliver_at = (!delay.is_zero()).then(|| Instant::now() + delay);
        Self { deliver_at, item }
    }
}

/// What a receiver does with items that come due while its node is partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Discard them and count them as dropped (core messaging: at most once).
    Drop,
    /// Keep them and deliver them in order after the heal (KV watches resume).
    Hold,
}

/// The sending side of a receiver.
pub(crate) type Sender<T> = UnboundedSender<Stamped<T>>;

struct State<T> {
    rx: UnboundedReceiver<Stamped<T>>,
    faults: Arc<Faults>,
    node: String,
    gate: Gate,
    // Dropped with the stream: unregisters the receiver from its router.
    _guard: Box<dyn Send>,
}

/// Creates a receiver for `node`: the sender to route into and the stream that delivers.
///
/// Items are delivered in the order sent; an item waits for its stamp and for every item before
/// it, so delays never reorder. `guard` is dropped when the stream is dropped.
pub(crate) fn channel<T: Send + 'static>(
    faults: Arc<Faults>,
    node: &str,
    gate: Gate,
    guard: Box<dyn Send>,
) -> (Sender<T>, BoxStream<'static, T>) {
    let (tx, rx) = unbounded_channel();
    let state = State {
        rx,
        faults,
        node: node.to_owned(),
        gate,
        _guard: guard,
    };
    let stream = stream::unfold(state, |mut st| async move {
        loop {
            let stamped = st.rx.recv().await?;
            if let Some(at) = stamped.deliver_at {
                tokio::time::sleep_until(at).await;
            }
            match st.gate {
                Gate::Drop => {
                    if st.faults.is_partitioned(&st.node) {
                        st.faults.count_dropped(&st.node);
                        continue;
                    }
                    st.faults.count_delivered(&st.node);
                }
                Gate::Hold => st.faults.wait_reachable(&st.node).await,
            }
            return Some((stamped.item, st));
        }
    });
    (tx, stream.boxed())
}
