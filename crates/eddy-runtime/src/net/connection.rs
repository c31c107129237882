//! One TCP connection between two processes, its reader and writer threads, and the state
//! they share with the channels on it.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use eddy_core::{Data, EddyError, Result};

use super::channels::{InChannel, Inbound, OutChannel, RemoteSender};
use super::frame::{self, Kind, ReadError};
use super::{ChannelId, NetOptions};
use crate::channel::{ChannelReceiver, JobSignals};
use crate::task::TaskMetrics;

const READ_BUFFER: usize = 256 << 10;
const WRITE_BUFFER: usize = 256 << 10;
/// Frame buffers kept for reuse, and the largest one worth keeping.
const POOL_BUFFERS: usize = 64;
const POOL_MAX_BYTES: usize = 1 << 20;
/// How long a closing connection keeps reading for the peer to close its side too.
const LINGER: Duration = Duration::from_secs(5);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code holding these locks can panic half-way through an update.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the writer thread sends, in order.
pub(crate) enum Outgoing {
    /// A finished frame.
    Frame(Vec<u8>),
    /// The credit accumulated on this input: the writer takes it all at once.
    Credit(Arc<InChannel>),
    /// Write everything before this, then close the sending half.
    Shutdown,
}

/// Why a connection stopped: the first failure wins, and every channel reports it.
struct Failure {
    kind: io::ErrorKind,
    message: String,
}

/// What the connection's threads, senders and receivers share.
pub(crate) struct Shared {
    pub(crate) peer: SocketAddr,
    pub(crate) options: NetOptions,
    stream: TcpStream,
    outgoing: Sender<Outgoing>,
    inputs: Mutex<HashMap<ChannelId, Arc<dyn Inbound>>>,
    outputs: Mutex<HashMap<ChannelId, Arc<OutChannel>>>,
    failure: OnceLock<Failure>,
    pool: Mutex<Vec<Vec<u8>>>,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

impl Shared {
    /// The error every user of a failed connection gets.
    pub(crate) fn failure(&self) -> Option<EddyError> {
        self.failure.get().map(|f| EddyError::Network {
            action: "data-plane connection to",
            address: self.peer.to_string(),
            source: io::Error::new(f.kind, f.message.clone()),
        })
    }

    /// Hands a message to the writer thread.
    pub(crate) fn enqueue(&self, msg: Outgoing) -> Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        self.outgoing.send(msg).map_err(|_| self.closed_error())
    }

    fn closed_error(&self) -> EddyError {
        self.failure().unwrap_or_else(|| EddyError::Network {
            action: "data-plane connection to",
            address: self.peer.to_string(),
            source: io::Error::new(io::ErrorKind::NotConnected, "the connection is closed"),
        })
    }

    /// A buffer for one frame, reused if one is free.
    pub(crate) fn take_buffer(&self) -> Vec<u8> {
        lock(&self.pool).pop().unwrap_or_default()
    }

    pub(crate) fn recycle(&self, mut buf: Vec<u8>) {
        if buf.capacity() <= POOL_MAX_BYTES {
            let mut pool = lock(&self.pool);
            if pool.len() < POOL_BUFFERS {
                buf.clear();
                pool.push(buf);
            }
        }
    }

    /// The sending state of `id`, created by whichever comes first: its registration or its
    /// first credit.
    pub(crate) fn output(&self, id: ChannelId) -> Arc<OutChannel> {
        lock(&self.outputs).entry(id).or_insert_with(|| Arc::new(OutChannel::new(id))).clone()
    }

    pub(crate) fn remove_input(&self, id: ChannelId) {
        lock(&self.inputs).remove(&id);
    }

    /// Stops the connection: records why, disconnects every input, wakes every sender and
    /// closes the socket.
    fn fail(&self, kind: io::ErrorKind, message: String) {
        if self.stop(kind, message) {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }

    /// [`fail`](Self::fail) but leaves the socket open; `false` if it had already stopped.
    fn stop(&self, kind: io::ErrorKind, message: String) -> bool {
        if self.failure.set(Failure { kind, message }).is_err() {
            return false;
        }
        if let Some(f) = self.failure.get() {
            tracing::warn!(peer = %self.peer, reason = %f.message, "data-plane connection failed");
        }
        // Dropping an input's queue sender lets its gate see the disconnect, after the elements
        // already queued.
        lock(&self.inputs).clear();
        let outputs: Vec<_> = lock(&self.outputs).values().cloned().collect();
        for out in outputs {
            out.wake();
        }
        let _ = self.outgoing.send(Outgoing::Shutdown);
        true
    }
}

/// A data-plane connection to one peer process, carrying any number of channels both ways.
///
/// Dropping it (or [`close`](Self::close)) sends what is queued, then closes the socket;
/// channels still open on it then fail with a network error.
pub struct DataConnection {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    /// Disconnected when the reader thread ends: lets `shutdown` wait for it with a deadline.
    reader_done: crossbeam_channel::Receiver<()>,
}

impl DataConnection {
    /// Connects to a peer's data-plane listener.
    pub fn connect(address: impl ToSocketAddrs + std::fmt::Display, options: NetOptions) -> Result<Self> {
        let stream = TcpStream::connect(&address).map_err(|source| EddyError::Network {
            action: "connect to",
            address: address.to_string(),
            source,
        })?;
        Self::from_stream(stream, options)
    }

    /// Accepts the next connection on a data-plane listener.
    pub fn accept(listener: &TcpListener, options: NetOptions) -> Result<Self> {
        let (stream, _) = listener.accept().map_err(|source| EddyError::Network {
            action: "accept on",
            address: listener.local_addr().map_or_else(|_| "data-plane listener".into(), |a| a.to_string()),
            source,
        })?;
        Self::from_stream(stream, options)
    }

    /// Runs the data plane over an established stream: handshake, then reader and writer.
    pub fn from_stream(stream: TcpStream, options: NetOptions) -> Result<Self> {
        let peer =
            stream.peer_addr().map_err(|source| net_error("read the peer address of", "socket", source))?;
        handshake(&stream, &options).map_err(|source| net_error("handshake with", peer, source))?;
        let reader_stream =
            stream.try_clone().map_err(|source| net_error("clone socket of", peer, source))?;
        let writer_stream =
            stream.try_clone().map_err(|source| net_error("clone socket of", peer, source))?;
        let (outgoing, queue) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            peer,
            options,
            stream,
            outgoing,
            inputs: Mutex::new(HashMap::new()),
            outputs: Mutex::new(HashMap::new()),
            failure: OnceLock::new(),
            pool: Mutex::new(Vec::new()),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
        });
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|source| net_error("start a thread for the connection to", peer, source))
        };
        let s = shared.clone();
        let writer =
            spawn(format!("net-writer {peer}"), Box::new(move || run_writer(writer_stream, queue, s)))?;
        let s = shared.clone();
        let (done_tx, reader_done) = crossbeam_channel::bounded::<()>(0);
        let reader = spawn(
            format!("net-reader {peer}"),
            Box::new(move || {
                run_reader(reader_stream, s);
                drop(done_tx);
            }),
        );
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                shared.fail(io::ErrorKind::Other, "the reader thread could not start".into());
                let _ = writer.join();
                return Err(e);
            }
        };
        Ok(DataConnection { shared, reader: Some(reader), writer: Some(writer), reader_done })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Bytes of frames written to and read from the socket so far.
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes_sent.load(Ordering::Relaxed)
    }

    pub fn bytes_received(&self) -> u64 {
        self.shared.bytes_received.load(Ordering::Relaxed)
    }

    /// The producing end of channel `id`, whose consumer is in the peer process. It may send
    /// once the peer has registered the input and granted credit.
    pub fn register_output<T: Data>(
        &self,
        id: ChannelId,
        signals: Arc<JobSignals>,
    ) -> Result<RemoteSender<T>> {
        self.register_output_with(id, signals, None)
    }

    /// [`register_output`](Self::register_output) that counts the bytes of the frames it sends
    /// into `metrics.bytes_out`.
    pub fn register_output_with<T: Data>(
        &self,
        id: ChannelId,
        signals: Arc<JobSignals>,
        metrics: Option<Arc<TaskMetrics>>,
    ) -> Result<RemoteSender<T>> {
        if let Some(e) = self.shared.failure() {
            return Err(e);
        }
        let out = self.shared.output(id);
        if !out.claim() {
            return Err(EddyError::InvalidJob(format!("the output of channel {id} is registered twice")));
        }
        Ok(RemoteSender::new(out, self.shared.clone(), signals, metrics))
    }

    /// The consuming end of channel `id`, whose producer is in the peer process: a queue of
    /// `capacity` elements, all granted to the producer as credit at once.
    pub fn register_input<T: Data>(&self, id: ChannelId, capacity: usize) -> Result<ChannelReceiver<T>> {
        self.register_input_with(id, capacity, None)
    }

    /// [`register_input`](Self::register_input) that counts the bytes of the data frames it
    /// receives into `metrics.bytes_in`.
    pub fn register_input_with<T: Data>(
        &self,
        id: ChannelId,
        capacity: usize,
        metrics: Option<Arc<TaskMetrics>>,
    ) -> Result<ChannelReceiver<T>> {
        let capacity = capacity.max(1);
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let (inbound, hook) = super::channels::input::<T>(id, tx, self.shared.clone(), metrics);
        {
            let mut inputs = lock(&self.shared.inputs);
            // Checked under the lock: a failure clears the inputs, and must not miss this one.
            if let Some(e) = self.shared.failure() {
                return Err(e);
            }
            if inputs.contains_key(&id) {
                return Err(EddyError::InvalidJob(format!("the input of channel {id} is registered twice")));
            }
            inputs.insert(id, inbound);
        }
        hook.grant(capacity as u32);
        Ok(ChannelReceiver::remote(rx, hook))
    }

    /// Sends what is queued, closes the connection and waits for its threads.
    pub fn close(mut self) {
        self.shutdown();
    }

    /// Closes gracefully: everything queued is sent before the FIN, and the reader drains
    /// until the peer closes too. Closing a socket with unread bytes would send a reset instead,
    /// and the peer's kernel could drop data it has not read yet.
    fn shutdown(&mut self) {
        let Some(writer) = self.writer.take() else { return };
        let _ = self.shared.outgoing.send(Outgoing::Shutdown);
        let _ = writer.join();
        self.shared.stop(io::ErrorKind::NotConnected, "the connection was closed by this process".into());
        if let Some(reader) = self.reader.take() {
            // A read already blocked does not see a new timeout: wait for the peer to close
            // for a while, then cut the connection so that the blocked read returns.
            if let Err(crossbeam_channel::RecvTimeoutError::Timeout) = self.reader_done.recv_timeout(LINGER) {
                let _ = self.shared.stream.shutdown(std::net::Shutdown::Both);
            }
            let _ = reader.join();
        }
    }
}

impl Drop for DataConnection {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn net_error(action: &'static str, address: impl ToString, source: io::Error) -> EddyError {
    EddyError::Network { action, address: address.to_string(), source }
}

fn handshake(stream: &TcpStream, options: &NetOptions) -> io::Result<()> {
    stream.set_nodelay(true)?;
    (&*stream).write_all(&frame::HANDSHAKE)?;
    stream.set_read_timeout(Some(options.handshake_timeout))?;
    let mut theirs = [0u8; frame::HANDSHAKE.len()];
    (&*stream).read_exact(&mut theirs)?;
    stream.set_read_timeout(None)?;
    if theirs != frame::HANDSHAKE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the peer is not an Eddy data plane of this version (it sent {theirs:02x?})"),
        ));
    }
    Ok(())
}

fn run_writer(stream: TcpStream, queue: Receiver<Outgoing>, shared: Arc<Shared>) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, stream);
    if let Err(e) = write_all_queued(&mut out, &queue, &shared) {
        shared.fail(e.kind(), format!("cannot send: {e}"));
    }
}

/// Writes frames as they come, flushing whenever the queue runs dry.
fn write_all_queued(
    out: &mut BufWriter<TcpStream>,
    queue: &Receiver<Outgoing>,
    shared: &Shared,
) -> io::Result<()> {
    while let Ok(first) = queue.recv() {
        let mut open = write_one(out, first, shared)?;
        while open {
            match queue.try_recv() {
                Ok(msg) => open = write_one(out, msg, shared)?,
                Err(_) => break,
            }
        }
        out.flush()?;
        if !open {
            let _ = out.get_ref().shutdown(Shutdown::Write);
            return Ok(());
        }
    }
    Ok(())
}

/// Writes one message; returns `false` after a shutdown.
fn write_one(out: &mut BufWriter<TcpStream>, msg: Outgoing, shared: &Shared) -> io::Result<bool> {
    let bytes = match msg {
        Outgoing::Frame(buf) => {
            out.write_all(&buf)?;
            let n = buf.len();
            shared.recycle(buf);
            n
        }
        Outgoing::Credit(input) => {
            let credit = input.take_credit();
            if credit == 0 {
                return Ok(true);
            }
            let buf = frame::encode(Kind::Credit, input.id, &credit.to_be_bytes());
            out.write_all(&buf)?;
            buf.len()
        }
        Outgoing::Shutdown => return Ok(false),
    };
    shared.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    Ok(true)
}

fn run_reader(stream: TcpStream, shared: Arc<Shared>) {
    let mut input = BufReader::with_capacity(READ_BUFFER, stream);
    let mut payload = Vec::new();
    let (kind, message) = loop {
        let header = match frame::read(&mut input, shared.options.max_frame_bytes, &mut payload) {
            Ok(h) => h,
            Err(ReadError::Closed) => {
                break (io::ErrorKind::ConnectionAborted, "the peer closed the connection".to_string())
            }
            Err(ReadError::Io(e)) => break (e.kind(), format!("cannot receive: {e}")),
            Err(ReadError::Protocol(m)) => break (io::ErrorKind::InvalidData, m),
        };
        shared.bytes_received.fetch_add((frame::HEADER_BYTES + payload.len()) as u64, Ordering::Relaxed);
        if shared.failure.get().is_some() {
            // Closing: drain until the peer closes its side.
            continue;
        }
        if let Err(m) = dispatch(&shared, header, &payload) {
            break (io::ErrorKind::InvalidData, m);
        }
    };
    shared.fail(kind, message);
    // Also after a graceful close, which left the socket open for draining.
    let _ = shared.stream.shutdown(Shutdown::Both);
}

/// Acts on one frame; an error breaks the protocol and ends the connection.
fn dispatch(shared: &Shared, header: frame::Header, payload: &[u8]) -> std::result::Result<(), String> {
    let id = header.channel;
    match header.kind {
        Kind::Data => {
            let input = lock(&shared.inputs).get(&id).cloned();
            let Some(input) = input else {
                return Err(format!("the peer sent data on channel {id}, which has no input here"));
            };
            if input.deliver(payload)? {
                shared.remove_input(id);
            }
        }
        Kind::Credit => {
            let bytes: [u8; 4] =
                payload.try_into().map_err(|_| format!("a credit frame of {} bytes", payload.len()))?;
            shared.output(id).add_credit(u32::from_be_bytes(bytes));
        }
        Kind::Close => {
            let reason = String::from_utf8_lossy(payload).into_owned();
            let input = lock(&shared.inputs).remove(&id);
            match input {
                Some(input) => input.close(reason),
                None => shared.output(id).close(reason),
            }
        }
    }
    Ok(())
}
