//! Bounded channels between tasks, and the input gate that reads a task's channels.
//!
//! One channel connects one producer subtask to one consumer subtask and holds at most
//! `capacity` elements (batches). A producer that finds it full waits: that is backpressure.
//! Every wait is bounded and re-checks the job's cancellation flag, so a failing or cancelled
//! job never leaves a task blocked on a channel.
//!
//! A channel whose producer runs in another process (see [`crate::net`]) is read the same way:
//! its receiving end is a bounded channel fed by the connection, plus a [`RemoteInput`] hook
//! through which the gate returns a credit for every element the task takes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, SendTimeoutError, Sender, TryRecvError, TrySendError};
use eddy_core::{EddyError, Result, StreamElement};

use crate::task::TaskMetrics;

/// How often a blocked task looks at the cancellation flag.
pub(crate) const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// Shared by all tasks of one job: cancellation, and the time spent backpressured.
#[derive(Debug, Default)]
pub struct JobSignals {
    cancelled: AtomicBool,
}

impl JobSignals {
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

pub(crate) fn cancelled_error() -> EddyError {
    EddyError::Cancelled("this task's job".into())
}

/// Creates one bounded channel.
pub fn channel<T>(capacity: usize, signals: Arc<JobSignals>) -> (ChannelSender<T>, ChannelReceiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    (ChannelSender { tx, signals }, ChannelReceiver { rx, remote: None })
}

/// The producing end of a channel.
pub struct ChannelSender<T> {
    tx: Sender<StreamElement<T>>,
    signals: Arc<JobSignals>,
}

impl<T> ChannelSender<T> {
    /// Sends, waiting while the channel is full (backpressure) unless the job is cancelled.
    pub fn send(&self, element: StreamElement<T>) -> Result<()> {
        self.send_waiting(element, None)
    }

    /// [`send`](Self::send), adding the time it waits for room to `backpressured_ns` (the
    /// clock is read only when the channel is full). A long wait is added in steps of at
    /// most [`CANCEL_CHECK`], so that it shows while it lasts.
    #[inline]
    pub fn send_counted(&self, element: StreamElement<T>, backpressured_ns: &AtomicU64) -> Result<()> {
        match self.tx.try_send(element) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(e)) => self.send_waiting(e, Some(backpressured_ns)),
            Err(TrySendError::Disconnected(_)) => Err(cancelled_error()),
        }
    }

    /// Waits for room in steps of [`CANCEL_CHECK`], checking for cancellation between them,
    /// and adds each step to `backpressured_ns` if given.
    fn send_waiting(
        &self,
        mut element: StreamElement<T>,
        backpressured_ns: Option<&AtomicU64>,
    ) -> Result<()> {
        loop {
            let sent = match backpressured_ns {
                Some(ns) => crate::metrics::timed(ns, || self.tx.send_timeout(element, CANCEL_CHECK)),
                None => self.tx.send_timeout(element, CANCEL_CHECK),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(e)) => {
                    if self.signals.is_cancelled() {
                        return Err(cancelled_error());
                    }
                    element = e;
                }
                // The consumer is gone: it failed or was cancelled, and the job with it.
                Err(SendTimeoutError::Disconnected(_)) => return Err(cancelled_error()),
            }
        }
    }
}

/// Where a partition writer sends one channel's elements: a local channel, or a remote one
/// whose consumer is reached over a [`DataConnection`](crate::net::DataConnection). Both
/// `send`s block the same way (backpressure bounded by cancellation); the local path costs one
/// match more than a bare [`ChannelSender`].
pub enum OutputChannel<T> {
    Local(ChannelSender<T>),
    Remote(crate::net::RemoteSender<T>),
}

impl<T: eddy_core::Data> OutputChannel<T> {
    #[inline]
    pub fn send(&self, element: StreamElement<T>) -> Result<()> {
        match self {
            OutputChannel::Local(tx) => tx.send(element),
            OutputChannel::Remote(tx) => tx.send(element),
        }
    }

    /// Sends, adding the time spent waiting for room (or credit) to the producing task's
    /// `backpressured_ns`.
    #[inline]
    pub fn send_counted(&self, element: StreamElement<T>, metrics: &TaskMetrics) -> Result<()> {
        match self {
            OutputChannel::Local(tx) => tx.send_counted(element, &metrics.backpressured_ns),
            // Counts its own wait for credit, into the producer's metrics it was made with.
            OutputChannel::Remote(tx) => tx.send(element),
        }
    }
}

impl<T> From<ChannelSender<T>> for OutputChannel<T> {
    fn from(tx: ChannelSender<T>) -> Self {
        OutputChannel::Local(tx)
    }
}

impl<T> From<crate::net::RemoteSender<T>> for OutputChannel<T> {
    fn from(tx: crate::net::RemoteSender<T>) -> Self {
        OutputChannel::Remote(tx)
    }
}

/// The consuming end of a channel.
pub struct ChannelReceiver<T> {
    rx: Receiver<StreamElement<T>>,
    remote: Option<Arc<dyn RemoteInput>>,
}

impl<T> ChannelReceiver<T> {
    /// The receiving end of a channel fed from another process through `rx`.
    pub(crate) fn remote(rx: Receiver<StreamElement<T>>, input: Arc<dyn RemoteInput>) -> Self {
        ChannelReceiver { rx, remote: Some(input) }
    }
}

/// What the input gate tells the network layer about a channel fed from another process.
pub trait RemoteInput: Send + Sync {
    /// The task took one element: the producer may send one more (a credit).
    fn consumed(&self);
    /// Why the channel disconnected before its end of input.
    fn lost(&self) -> EddyError;
}

/// What the input gate yields.
pub enum GateEvent<T> {
    /// An element from channel `usize`.
    Element(usize, StreamElement<T>),
    /// Nothing arrived before the deadline.
    Timeout,
    /// Every channel has delivered its end of input.
    Finished,
}

/// All input channels of one logical input of a task.
///
/// A channel can be *blocked* while the task aligns checkpoint barriers: the gate then does
/// not read it, so its elements wait in the channel (and its producer is backpressured) until
/// [`unblock_all`](Self::unblock_all).
pub struct InputGate<T> {
    channels: Vec<Receiver<StreamElement<T>>>,
    remotes: Vec<Option<Arc<dyn RemoteInput>>>,
    finished: Vec<bool>,
    blocked: Vec<bool>,
    /// Not read: finished or blocked (one flag on the polling path).
    skip: Vec<bool>,
    open: usize,
    next: usize,
    ready: Option<(usize, StreamElement<T>)>,
    /// Counts the records handed to the task (`records_in`).
    metrics: Arc<TaskMetrics>,
}

impl<T> InputGate<T> {
    pub fn new(receivers: Vec<ChannelReceiver<T>>) -> Self {
        Self::with_metrics(receivers, Arc::default())
    }

    /// A gate that counts the records it hands to the task into `metrics.records_in`.
    pub fn with_metrics(receivers: Vec<ChannelReceiver<T>>, metrics: Arc<TaskMetrics>) -> Self {
        let n = receivers.len();
        let (channels, remotes) = receivers.into_iter().map(|r| (r.rx, r.remote)).unzip();
        InputGate {
            channels,
            remotes,
            finished: vec![false; n],
            blocked: vec![false; n],
            skip: vec![false; n],
            open: n,
            next: 0,
            ready: None,
            metrics,
        }
    }

    /// Stops reading channel `ch` until [`unblock_all`](Self::unblock_all).
    pub fn block(&mut self, ch: usize) {
        self.blocked[ch] = true;
        self.skip[ch] = true;
    }

    /// Reads every channel that has not finished again.
    pub fn unblock_all(&mut self) {
        for ch in 0..self.channels.len() {
            self.blocked[ch] = false;
            self.skip[ch] = self.finished[ch];
        }
    }

    pub fn is_blocked(&self, ch: usize) -> bool {
        self.blocked[ch]
    }

    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    pub fn is_finished(&self) -> bool {
        self.open == 0
    }

    /// How many elements channel `ch` holds that the task has not taken yet.
    pub fn buffered(&self, ch: usize) -> usize {
        self.channels[ch].len()
    }

    /// Returns the next element, waiting at most until `deadline`.
    ///
    /// Channels are polled round-robin so that a busy channel cannot starve the others.
    pub fn next(&mut self, deadline: Instant) -> Result<GateEvent<T>> {
        if self.open == 0 {
            return Ok(GateEvent::Finished);
        }
        if let Some(ev) = self.try_next()? {
            return Ok(ev);
        }
        let mut sel = Select::new();
        let mut index = Vec::with_capacity(self.open);
        for (i, rx) in self.channels.iter().enumerate() {
            if !self.skip[i] {
                sel.recv(rx);
                index.push(i);
            }
        }
        let received = {
            let clock = crate::metrics::WaitClock::start();
            let selected = sel.select_deadline(deadline);
            clock.stop(&self.metrics.idle_ns);
            match selected {
                Ok(op) => {
                    let ch = index[op.index()];
                    Some((ch, op.recv(&self.channels[ch])))
                }
                Err(_) => None,
            }
        };
        drop(sel);
        match received {
            Some((ch, Ok(e))) => Ok(self.deliver(ch, e)),
            Some((ch, Err(_))) => Err(self.lost(ch)),
            None => Ok(GateEvent::Timeout),
        }
    }

    fn try_next(&mut self) -> Result<Option<GateEvent<T>>> {
        let n = self.channels.len();
        for k in 0..n {
            let ch = (self.next + k) % n;
            if self.skip[ch] {
                continue;
            }
            match self.channels[ch].try_recv() {
                Ok(e) => {
                    self.next = (ch + 1) % n;
                    return Ok(Some(self.deliver(ch, e)));
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(self.lost(ch)),
            }
        }
        Ok(None)
    }

    /// The element found by [`next_of_two`], if it was this gate's.
    pub fn take_ready(&mut self) -> Option<(usize, StreamElement<T>)> {
        self.ready.take()
    }

    fn stash(&mut self, ev: GateEvent<T>) -> bool {
        match ev {
            GateEvent::Element(ch, e) => {
                self.ready = Some((ch, e));
                true
            }
            _ => false,
        }
    }

    fn add_to<'a>(&'a self, sel: &mut Select<'a>, index: &mut Vec<(bool, usize)>, first: bool) {
        for (i, rx) in self.channels.iter().enumerate() {
            if !self.skip[i] {
                sel.recv(rx);
                index.push((first, i));
            }
        }
    }

    fn deliver(&mut self, ch: usize, e: StreamElement<T>) -> GateEvent<T> {
        if let Some(remote) = &self.remotes[ch] {
            remote.consumed();
        }
        match &e {
            StreamElement::Records(b) => crate::metrics::count(&self.metrics.records_in, b.len()),
            StreamElement::EndOfInput => {
                self.finished[ch] = true;
                self.skip[ch] = true;
                self.open -= 1;
            }
            _ => {}
        }
        GateEvent::Element(ch, e)
    }

    fn lost(&self, ch: usize) -> EddyError {
        match &self.remotes[ch] {
            Some(remote) => remote.lost(),
            // A producer dropped its channel without end of input: it failed or was cancelled.
            None => cancelled_error(),
        }
    }
}

/// Waits for the next element of either gate, trying `g1` first when `prefer_first`.
///
/// Returns `true` when `g1` holds a ready element, `false` when `g2` does or nothing arrived
/// before `deadline` (then neither does); fetch it with [`InputGate::take_ready`].
pub fn next_of_two<A, B>(
    g1: &mut InputGate<A>,
    g2: &mut InputGate<B>,
    prefer_first: bool,
    deadline: Instant,
) -> Result<bool> {
    let order = if prefer_first { [true, false] } else { [false, true] };
    for first in order {
        if first {
            if g1.open > 0 {
                if let Some(ev) = g1.try_next()? {
                    return Ok(g1.stash(ev));
                }
            }
        } else if g2.open > 0 {
            if let Some(ev) = g2.try_next()? {
                g2.stash(ev);
                return Ok(false);
            }
        }
    }
    let mut sel = Select::new();
    let mut index = Vec::new();
    g1.add_to(&mut sel, &mut index, true);
    g2.add_to(&mut sel, &mut index, false);
    if index.is_empty() {
        return Ok(false);
    }
    let received = {
        let clock = crate::metrics::WaitClock::start();
        let selected = sel.select_deadline(deadline);
        clock.stop(&g1.metrics.idle_ns);
        selected.map(|op| {
            let (first, ch) = index[op.index()];
            let (r1, r2) = if first {
                (Some(op.recv(&g1.channels[ch])), None)
            } else {
                (None, Some(op.recv(&g2.channels[ch])))
            };
            (ch, r1, r2)
        })
    };
    drop(sel);
    let Ok((ch, r1, r2)) = received else {
        return Ok(false);
    };
    match (r1, r2) {
        (Some(r), _) => {
            let e = r.map_err(|_| g1.lost(ch))?;
            let ev = g1.deliver(ch, e);
            Ok(g1.stash(ev))
        }
        (_, Some(r)) => {
            let e = r.map_err(|_| g2.lost(ch))?;
            let ev = g2.deliver(ch, e);
            g2.stash(ev);
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Returns an error if the job has been cancelled.
#[inline]
pub fn check_cancelled(signals: &JobSignals) -> Result<()> {
    if signals.is_cancelled() {
        Err(cancelled_error())
    } else {
        Ok(())
    }
}
