//! Both ends of a remote channel: the credit-holding sender, and the input that feeds a local
//! queue and returns credit as the task consumes.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::{Sender, TrySendError};
use eddy_core::{codec, Data, EddyError, Result, StreamElement};

use super::connection::{lock, Outgoing, Shared};
use super::frame::{self, Kind};
use super::ChannelId;
use crate::channel::{cancelled_error, JobSignals, RemoteInput, CANCEL_CHECK};
use crate::task::TaskMetrics;

// ---- sending side ----

/// The credit of one outgoing channel, shared by its sender and the connection's reader.
pub(crate) struct OutChannel {
    id: ChannelId,
    state: Mutex<OutState>,
    changed: Condvar,
}

#[derive(Default)]
struct OutState {
    credit: u32,
    /// The consumer is gone, and why.
    closed: Option<String>,
    /// A `RemoteSender` has been handed out.
    claimed: bool,
}

impl OutChannel {
    pub(crate) fn new(id: ChannelId) -> Self {
        OutChannel { id, state: Mutex::new(OutState::default()), changed: Condvar::new() }
    }

    /// Marks the channel as having a sender; `false` if it already had one.
    pub(crate) fn claim(&self) -> bool {
        !std::mem::replace(&mut lock(&self.state).claimed, true)
    }

    pub(crate) fn add_credit(&self, n: u32) {
        let mut st = lock(&self.state);
        st.credit = st.credit.saturating_add(n);
        self.changed.notify_all();
    }

    pub(crate) fn close(&self, reason: String) {
        tracing::debug!(channel = %self.id, %reason, "the consumer closed its remote channel");
        lock(&self.state).closed = Some(reason);
        self.changed.notify_all();
    }

    /// Lets a waiting sender look at the connection again.
    pub(crate) fn wake(&self) {
        let _st = lock(&self.state);
        self.changed.notify_all();
    }
}

/// The producing end of a channel whose consumer runs in another process.
///
/// [`send`](Self::send) encodes the element on the calling thread, waits for a credit (the
/// consumer has room for it), and queues the frame for the connection's writer. Like
/// [`ChannelSender::send`](crate::channel::ChannelSender::send), waiting is backpressure, is
/// bounded by the job's cancellation, and fails if the consumer is gone. Dropping it before
/// sending [`StreamElement::EndOfInput`] tells the consumer the producer failed.
pub struct RemoteSender<T> {
    channel: Arc<OutChannel>,
    conn: Arc<Shared>,
    signals: Arc<JobSignals>,
    ended: AtomicBool,
    /// Counts the bytes sent (`bytes_out`).
    metrics: Option<Arc<TaskMetrics>>,
    _records: PhantomData<fn(T)>,
}

impl<T: Data> RemoteSender<T> {
    pub(crate) fn new(
        channel: Arc<OutChannel>,
        conn: Arc<Shared>,
        signals: Arc<JobSignals>,
        metrics: Option<Arc<TaskMetrics>>,
    ) -> Self {
        let ended = AtomicBool::new(false);
        RemoteSender { channel, conn, signals, ended, metrics, _records: PhantomData }
    }

    pub fn channel_id(&self) -> ChannelId {
        self.channel.id
    }

    /// Credits held: how many elements can be sent now without waiting.
    pub fn credit(&self) -> u32 {
        lock(&self.channel.state).credit
    }

    /// Sends, waiting while the consumer has no room (backpressure) unless the job is cancelled.
    pub fn send(&self, element: StreamElement<T>) -> Result<()> {
        let ends = matches!(element, StreamElement::EndOfInput);
        let frame = self.encode(&element)?;
        drop(element);
        if let Err(e) = self.acquire_credit() {
            self.conn.recycle(frame);
            return Err(e);
        }
        let bytes = frame.len();
        self.conn.enqueue(Outgoing::Frame(frame))?;
        if let Some(m) = &self.metrics {
            crate::metrics::count(&m.bytes_out, bytes);
        }
        if ends {
            self.ended.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn encode(&self, element: &StreamElement<T>) -> Result<Vec<u8>> {
        let mut buf = self.conn.take_buffer();
        frame::begin(&mut buf, Kind::Data, self.channel.id);
        codec::encode_element(element, &mut buf)?;
        let max = self.conn.options.max_frame_bytes;
        frame::finish(&mut buf, max).map_err(|len| EddyError::BadInput {
            location: format!("channel {} to {}", self.channel.id, self.conn.peer),
            reason: format!("an element encodes to a frame of {len} bytes, above the limit of {max} bytes"),
        })?;
        Ok(buf)
    }

    fn acquire_credit(&self) -> Result<()> {
        let mut st = lock(&self.channel.state);
        loop {
            if let Some(e) = self.conn.failure() {
                return Err(e);
            }
            if st.closed.is_some() {
                // The consumer failed or was cancelled, and reports the root cause itself.
                return Err(cancelled_error());
            }
            if st.credit > 0 {
                st.credit -= 1;
                return Ok(());
            }
            if self.signals.is_cancelled() {
                return Err(cancelled_error());
            }
            let wait = || self.channel.changed.wait_timeout(st, CANCEL_CHECK);
            let waited = match &self.metrics {
                Some(m) => crate::metrics::timed(&m.backpressured_ns, wait),
                None => wait(),
            };
            st = waited.map_or_else(|e| e.into_inner().0, |r| r.0);
        }
    }
}

impl<T> Drop for RemoteSender<T> {
    fn drop(&mut self) {
        if !self.ended.load(Ordering::Relaxed) && self.conn.failure().is_none() {
            let reason = b"the producer ended without end of input";
            let _ = self.conn.enqueue(Outgoing::Frame(frame::encode(Kind::Close, self.channel.id, reason)));
        }
    }
}

// ---- receiving side ----

/// The credit owed to the producer of one input, shared by the gate's hook and the writer.
pub(crate) struct InChannel {
    pub(crate) id: ChannelId,
    pending: AtomicU32,
    /// End of input has arrived: no credit is owed any more, no close notice is needed.
    ended: AtomicBool,
    /// The producer closed the channel without end of input.
    closed: Mutex<Option<String>>,
}

impl InChannel {
    /// Takes all credit accumulated so far, for one credit frame.
    pub(crate) fn take_credit(&self) -> u32 {
        self.pending.swap(0, Ordering::AcqRel)
    }
}

/// What the connection's reader does with the frames of one input, whatever its record type.
pub(crate) trait Inbound: Send + Sync {
    /// Decodes and queues one element; `Ok(true)` once it was the end of input.
    fn deliver(&self, payload: &[u8]) -> std::result::Result<bool, String>;
    /// The producer closed the channel.
    fn close(&self, reason: String);
}

struct TypedInbound<T> {
    tx: Sender<StreamElement<T>>,
    channel: Arc<InChannel>,
    /// Counts the bytes received (`bytes_in`).
    metrics: Option<Arc<TaskMetrics>>,
}

impl<T: Data> Inbound for TypedInbound<T> {
    fn deliver(&self, payload: &[u8]) -> std::result::Result<bool, String> {
        let id = self.channel.id;
        if let Some(m) = &self.metrics {
            crate::metrics::count(&m.bytes_in, frame::HEADER_BYTES + payload.len());
        }
        let element = codec::decode_element::<T>(payload).map_err(|e| format!("channel {id}: {e}"))?;
        let ends = matches!(element, StreamElement::EndOfInput);
        if ends {
            self.channel.ended.store(true, Ordering::Release);
        }
        match self.tx.try_send(element) {
            Ok(()) => Ok(ends),
            Err(TrySendError::Full(_)) => Err(format!("the peer sent beyond its credit on channel {id}")),
            // The task is gone; its hook has told the producer to stop. The input stays
            // registered until the producer's end of input or close notice, so that elements
            // it sent before it learnt of that are dropped here, not taken for a protocol error.
            Err(TrySendError::Disconnected(_)) => Ok(ends),
        }
    }

    fn close(&self, reason: String) {
        tracing::debug!(channel = %self.channel.id, %reason, "the producer closed its remote channel");
        *lock(&self.channel.closed) = Some(reason);
    }
}

/// The input gate's side of a remote input: returns credit, explains a disconnect.
pub(crate) struct InputHook {
    channel: Arc<InChannel>,
    conn: Arc<Shared>,
}

impl InputHook {
    /// Owes `n` more credits to the producer and asks the writer to send them.
    pub(crate) fn grant(&self, n: u32) {
        if self.channel.pending.fetch_add(n, Ordering::AcqRel) == 0 {
            // A failed connection has no one to grant credit to.
            let _ = self.conn.enqueue(Outgoing::Credit(self.channel.clone()));
        }
    }
}

impl RemoteInput for InputHook {
    fn consumed(&self) {
        if !self.channel.ended.load(Ordering::Acquire) {
            self.grant(1);
        }
    }

    fn lost(&self) -> EddyError {
        if lock(&self.channel.closed).is_some() {
            // The producer failed or was cancelled, and reports the root cause itself.
            return cancelled_error();
        }
        self.conn.failure().unwrap_or_else(cancelled_error)
    }
}

impl Drop for InputHook {
    fn drop(&mut self) {
        // The input stays registered: elements already in flight find it, and are dropped
        // since its queue is disconnected.
        if !self.channel.ended.load(Ordering::Acquire) && self.conn.failure().is_none() {
            let reason = b"the consumer stopped reading";
            let _ = self.conn.enqueue(Outgoing::Frame(frame::encode(Kind::Close, self.channel.id, reason)));
        }
    }
}

/// The reader's and the gate's halves of a new input that queues into `tx`.
pub(crate) fn input<T: Data>(
    id: ChannelId,
    tx: Sender<StreamElement<T>>,
    conn: Arc<Shared>,
    metrics: Option<Arc<TaskMetrics>>,
) -> (Arc<dyn Inbound>, Arc<InputHook>) {
    let channel = Arc::new(InChannel {
        id,
        pending: AtomicU32::new(0),
        ended: AtomicBool::new(false),
        closed: Mutex::new(None),
    });
    let inbound = TypedInbound { tx, channel: channel.clone(), metrics };
    (Arc::new(inbound), Arc::new(InputHook { channel, conn }))
}
