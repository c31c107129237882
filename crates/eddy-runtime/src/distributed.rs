//! One job attempt split over several worker processes: the engine side of a cluster.
//!
//! On a cluster a job attempt runs in several *workers*, one per TaskManager process that holds
//! slots of the job. Every worker builds the same StreamGraph and JobGraph (building them is
//! deterministic) but builds and runs only its own subtasks:
//!
//! - **Placement.** Slots are shared as in Flink's default slot-sharing group: slot `s` hosts
//!   subtask `s` of every vertex, so a job needs as many slots as its largest parallelism.
//!   [`Placement`] says which worker owns each slot.
//! - **Data plane.** [`WorkerMesh::establish`] opens exactly one [`DataConnection`] between
//!   every pair of workers of the attempt; it carries the channels of both directions. A channel
//!   between two subtasks of the same worker is an ordinary in-process channel; a channel to a
//!   subtask of another worker is a remote channel on the connection to that worker, and each
//!   side registers only its own end.
//! - **Sources.** Every worker has its own copy of each split enumerator, so the splits are
//!   assigned statically, the same way in every worker (see
//!   [`StaticSplitAssigner`](crate::source::StaticSplitAssigner)): every split is read once, by
//!   the reader it was assigned to.
//! - **Running.** [`build_worker_tasks`] builds the worker's subtasks with the same code as the
//!   local mini-cluster, and [`run_worker_tasks`] runs them, one thread each, reporting every
//!   task's state as it changes.
//!
//! # Checkpoints
//!
//! The job master runs the attempt's [`CheckpointCoordinator`](crate::checkpoint::CheckpointCoordinator)
//! (built from [`describe_operators`], since it has no graph); the worker feeds each task's
//! [`TaskCheckpointing`](crate::checkpoint::TaskCheckpointing) from the RPC and sends the
//! acknowledgements back. A restarted attempt builds its tasks from the checkpoint the job
//! master hands it ([`build_worker_tasks`]'s `restore`).
//!
//! With static split assignment every split is destined for one reader from the start, so a
//! reader checkpoints the splits it holds (with their progress) *and* the splits set aside for
//! it that it has not started ([`SplitEnumerator::splits_destined_for`]). The enumerator keeps
//! nothing of its own: on a cluster its checkpointed state is empty
//! ([`cluster_enumerators`]), a restored enumerator hands out no more splits, and every split
//! comes back with the reader it was destined for.
//!
//! [`SplitEnumerator::splits_destined_for`]: crate::source::SplitEnumerator::splits_destined_for
//!
//! # Failures
//!
//! A task that fails cancels the other tasks of its worker, which then drop their channel ends:
//! the workers at the other end of those channels see them closed and their tasks stop too
//! (reported as `CANCELED`). A worker that ends, well or not, closes its mesh, and a worker
//! still waiting on a connection to it then fails with a network error instead of waiting for
//! ever. Every worker's [`run_worker_tasks`] returns its own root cause (the first real error
//! beats the cancellations it causes); the root cause of the attempt is the one error among
//! them that is not a cancellation or a network error caused by another worker going away.
//!
//! ```no_run
//! # use std::net::{SocketAddr, TcpListener};
//! # use std::sync::Arc;
//! # use std::time::Duration;
//! # use eddy_runtime::StreamGraph;
//! # use eddy_runtime::channel::JobSignals;
//! # use eddy_runtime::distributed::*;
//! # use eddy_runtime::executor::ExecutionSettings;
//! # use eddy_runtime::net::NetOptions;
//! # fn worker(graph: StreamGraph, settings: ExecutionSettings, me: usize, peers: Vec<SocketAddr>,
//! #     listener: TcpListener) -> eddy_core::Result<()> {
//! let (graph, jg) = prepare(&graph, &settings)?;
//! let placement = Placement::new(vec![0, 1, 0, 1]);
//! let mesh = WorkerMesh::establish("job-id", 0, me, &peers, listener, NetOptions::default(),
//!     Duration::from_secs(10))?;
//! let signals = Arc::new(JobSignals::default());
//! let result = build_worker_tasks(&graph, &jg, &settings, "job-id", 0, &placement, &mesh, &signals)
//!     .and_then(|tasks| run_worker_tasks(tasks, signals, &settings, jg.runtime_mode,
//!         |vertex, subtask, state, _error| println!("{vertex}/{subtask}: {}", state.as_str())));
//! mesh.close();
//! result
//! # }
//! ```

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use eddy_core::config::RuntimeMode;
use eddy_core::{EddyError, Result};

use crate::channel::JobSignals;
use crate::checkpoint::coordinator::CheckpointedOperator;
use crate::checkpoint::{CheckpointCoordinator, CompletedCheckpoint};
use crate::executor::{
    is_new_root_cause, job_hash, run_task_threads, Builder, Exchanges, ExecutionSettings, LocalExecutor,
};
use crate::graph::StreamGraph;
use crate::jobgraph::JobGraph;
use crate::net::{DataConnection, NetOptions};
use crate::source::SourceCoordinatorHandle;

pub use crate::task::{TaskMetrics, TaskState, VertexMetrics, WorkerTask};

/// Which worker owns which slot of a job attempt.
///
/// Slots are shared as in Flink's default slot-sharing group: slot `s` hosts subtask `s` of
/// every vertex, so the job needs [`slots_needed`] slots; `slot_workers[s]` is the index of the
/// worker that owns slot `s`. A worker may own any number of slots, in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub slot_workers: Vec<usize>,
}

impl Placement {
    pub fn new(slot_workers: Vec<usize>) -> Self {
        Placement { slot_workers }
    }

    /// The worker that runs subtask `subtask` (of any vertex).
    ///
    /// # Panics
    /// If there is no slot `subtask`; [`build_worker_tasks`] checks the placement first.
    pub fn worker_of(&self, subtask: usize) -> usize {
        self.slot_workers[subtask]
    }

    /// The slots of worker `worker`, in order.
    pub fn slots_of(&self, worker: usize) -> Vec<usize> {
        (0..self.slot_workers.len()).filter(|&s| self.slot_workers[s] == worker).collect()
    }

    /// Fails unless the placement gives every subtask of `jg` one of `workers` workers.
    pub fn check(&self, jg: &JobGraph, workers: usize) -> Result<()> {
        let needed = slots_needed(jg);
        if self.slot_workers.len() < needed {
            return Err(EddyError::InvalidJob(format!(
                "the placement has {} slots, the job needs {needed}",
                self.slot_workers.len()
            )));
        }
        if let Some((slot, w)) = self.slot_workers.iter().enumerate().find(|(_, &w)| w >= workers) {
            return Err(EddyError::InvalidJob(format!(
                "the placement puts slot {slot} on worker {w}, but there are only {workers} workers"
            )));
        }
        Ok(())
    }
}

/// The slots a job needs: its largest vertex parallelism.
pub fn slots_needed(jg: &JobGraph) -> usize {
    jg.vertices.iter().map(|v| v.parallelism).max().unwrap_or(0)
}

/// The graph to run (in its resolved runtime mode) and its job graph, as every worker of the
/// job must build them: the same as the local mini-cluster's.
pub fn prepare(graph: &StreamGraph, settings: &ExecutionSettings) -> Result<(StreamGraph, JobGraph)> {
    LocalExecutor::prepare(graph, settings)
}

// ---------------------------------------------------------------------------------------------
// The mesh
// ---------------------------------------------------------------------------------------------

/// How long a connecting worker waits before it tries a peer that refused again.
const CONNECT_RETRY: Duration = Duration::from_millis(50);
/// What a turned-away connection may still send before it is closed, and for how long.
const DRAIN_BYTES: u64 = 64 << 10;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// What a connecting worker says first, before the data plane's own handshake: which job,
/// attempt and worker it is, and which worker it wants.
///
/// ```text
/// [magic "EDDYMSH\x01"][job hash u64][attempt u32][from u32][to u32][workers u32]   (big-endian)
/// ```
///
/// The acceptor answers one byte: 0 accepted, or 1 followed by `[len u16][reason, UTF-8]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hello {
    job: u64,
    attempt: u32,
    from: u32,
    to: u32,
    workers: u32,
}

const HELLO_MAGIC: [u8; 8] = *b"EDDYMSH\x01";
const HELLO_BYTES: usize = 8 + 8 + 4 * 4;
const ACCEPTED: u8 = 0;
const REJECTED: u8 = 1;

impl Hello {
    fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut b = [0u8; HELLO_BYTES];
        b[..8].copy_from_slice(&HELLO_MAGIC);
        b[8..16].copy_from_slice(&self.job.to_be_bytes());
        for (k, v) in [self.attempt, self.from, self.to, self.workers].into_iter().enumerate() {
            b[16 + 4 * k..20 + 4 * k].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    fn decode(b: &[u8; HELLO_BYTES]) -> std::result::Result<Hello, String> {
        if b[..8] != HELLO_MAGIC {
            return Err(format!("it is not an Eddy worker of this version (it sent {:02x?})", &b[..8]));
        }
        let word =
            |k: usize| u32::from_be_bytes([b[16 + 4 * k], b[17 + 4 * k], b[18 + 4 * k], b[19 + 4 * k]]);
        let mut job = [0u8; 8];
        job.copy_from_slice(&b[8..16]);
        Ok(Hello {
            job: u64::from_be_bytes(job),
            attempt: word(0),
            from: word(1),
            to: word(2),
            workers: word(3),
        })
    }

    /// Why the acceptor `self` must turn `theirs` away, if it must.
    fn refusal(&self, theirs: &Hello) -> Option<String> {
        if theirs.job != self.job {
            return Some(format!(
                "it belongs to job {:016x}, this worker runs job {:016x}",
                theirs.job, self.job
            ));
        }
        if theirs.attempt != self.attempt {
            return Some(format!("it runs attempt {}, this worker attempt {}", theirs.attempt, self.attempt));
        }
        if theirs.workers != self.workers || theirs.to != self.to || theirs.from >= self.to {
            return Some(format!(
                "it is worker {} of {} and wants worker {}; this is worker {} of {}, which accepts only \
                 workers below it",
                theirs.from, theirs.workers, theirs.to, self.to, self.workers
            ));
        }
        None
    }
}

/// The data connections of one worker to every other worker of the same job attempt.
///
/// Every pair of workers shares exactly one [`DataConnection`], which carries the channels of
/// both directions. Dropping the mesh closes it, as [`close`](Self::close) does.
pub struct WorkerMesh {
    job: u64,
    attempt: usize,
    me: usize,
    /// Per worker; `None` for this one.
    connections: Vec<Option<DataConnection>>,
}

impl WorkerMesh {
    /// Connects worker `me` of `peers.len()` workers to all the others.
    ///
    /// `peers[w]` is worker `w`'s data listener address (`peers[me]` is this worker's, bound by
    /// `listener`). Of every pair, the lower index connects and the higher accepts. The
    /// connecting side first names the job (a hash of `job_id`), the attempt, itself and the
    /// worker it wants; the accepting side turns away any connection that does not fit (a
    /// stranger, another job or attempt, a duplicate) and keeps waiting for the right one.
    /// Then both run the data plane's handshake.
    ///
    /// Gives up with an [`EddyError::Network`] naming the missing workers when the mesh is not
    /// complete after `timeout`, or at once when a peer turns this worker away.
    pub fn establish(
        job_id: &str,
        attempt: usize,
        me: usize,
        peers: &[SocketAddr],
        listener: TcpListener,
        options: NetOptions,
        timeout: Duration,
    ) -> Result<WorkerMesh> {
        let workers = peers.len();
        if me >= workers {
            return Err(EddyError::InvalidJob(format!("worker {me} of a mesh of {workers} workers")));
        }
        let deadline = Instant::now() + timeout;
        let hello = Hello {
            job: job_hash(job_id),
            attempt: attempt as u32,
            from: me as u32,
            to: 0,
            workers: workers as u32,
        };
        let mut mesh =
            WorkerMesh { job: hello.job, attempt, me, connections: (0..workers).map(|_| None).collect() };
        // Accept from the start, so that no lower worker waits for this one's connects.
        let acceptor = if me > 0 {
            Some(Acceptor::start(listener, Hello { to: me as u32, ..hello }, options.clone(), deadline)?)
        } else {
            drop(listener);
            None
        };
        let connected = (me + 1..workers).try_for_each(|w| {
            let to = Hello { to: w as u32, ..hello };
            mesh.connections[w] = Some(connect(peers[w], to, &options, deadline, timeout)?);
            Ok(())
        });
        let accepted = match acceptor {
            Some(acceptor) if connected.is_ok() => acceptor.collect(&mut mesh.connections, deadline, timeout),
            Some(acceptor) => {
                acceptor.stop();
                Ok(())
            }
            None => Ok(()),
        };
        connected.and(accepted)?;
        tracing::info!(job = %format!("{:016x}", mesh.job), attempt, worker = me, workers, "worker mesh established");
        Ok(mesh)
    }

    /// This worker's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// How many workers the mesh connects.
    pub fn workers(&self) -> usize {
        self.connections.len()
    }

    /// The attempt the mesh was established for.
    pub fn attempt(&self) -> usize {
        self.attempt
    }

    /// The connection to worker `worker`.
    pub fn connection(&self, worker: usize) -> Result<&DataConnection> {
        self.connections.get(worker).and_then(Option::as_ref).ok_or_else(|| {
            EddyError::InvalidJob(format!(
                "worker {} has no data connection to worker {worker} (the mesh has {} workers)",
                self.me,
                self.workers()
            ))
        })
    }

    /// Bytes of frames written to and read from all connections so far.
    pub fn bytes_sent_and_received(&self) -> (u64, u64) {
        let conns = self.connections.iter().flatten();
        conns.fold((0, 0), |(s, r), c| (s + c.bytes_sent(), r + c.bytes_received()))
    }

    /// Closes every connection, after this worker's tasks have ended: what is queued is sent,
    /// then each connection closes once the peer has closed its side too (or after a linger).
    /// The connections close side by side, so a peer that never closes costs one linger.
    pub fn close(self) {
        std::thread::scope(|scope| {
            for conn in self.connections.into_iter().flatten() {
                // Without a thread the connection is dropped at once, which closes it too.
                let _ = std::thread::Builder::new()
                    .name("mesh-close".into())
                    .spawn_scoped(scope, || conn.close());
            }
        });
    }
}

fn timed_out(action: &'static str, address: impl ToString, message: String) -> EddyError {
    EddyError::Network {
        action,
        address: address.to_string(),
        source: io::Error::new(io::ErrorKind::TimedOut, message),
    }
}

/// The time left until `deadline`, at least a millisecond (a zero socket timeout is refused).
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}

/// Connects to the worker `hello.to` at `address` and joins it into the mesh.
fn connect(
    address: SocketAddr,
    hello: Hello,
    options: &NetOptions,
    deadline: Instant,
    timeout: Duration,
) -> Result<DataConnection> {
    let who = format!("worker {} of job {:016x} attempt {}", hello.to, hello.job, hello.attempt);
    let stream = loop {
        match TcpStream::connect_timeout(&address, left(deadline)) {
            Ok(stream) => break stream,
            // Not listening yet, or its backlog is full: try again until the deadline.
            Err(e) if Instant::now() < deadline && is_transient(&e) => {
                std::thread::sleep(CONNECT_RETRY.min(left(deadline)));
            }
            Err(e) if is_transient(&e) || e.kind() == io::ErrorKind::TimedOut => {
                let message = format!("{who} could not be reached within {timeout:?}: {e}");
                return Err(timed_out("connect to", address, message));
            }
            Err(source) => {
                return Err(EddyError::Network { action: "connect to", address: address.to_string(), source })
            }
        }
    };
    let net = |source: io::Error| {
        let source = if matches!(source.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            io::Error::new(io::ErrorKind::TimedOut, format!("{who} did not answer within {timeout:?}"))
        } else {
            io::Error::new(source.kind(), format!("{who}: {source}"))
        };
        EddyError::Network { action: "join the worker mesh at", address: address.to_string(), source }
    };
    stream.set_read_timeout(Some(left(deadline))).map_err(net)?;
    (&stream).write_all(&hello.encode()).map_err(net)?;
    let mut status = [0u8; 1];
    (&stream).read_exact(&mut status).map_err(net)?;
    if status[0] != ACCEPTED {
        let mut len = [0u8; 2];
        (&stream).read_exact(&mut len).map_err(net)?;
        let mut reason = vec![0u8; u16::from_be_bytes(len) as usize];
        (&stream).read_exact(&mut reason).map_err(net)?;
        let reason = String::from_utf8_lossy(&reason);
        let message = format!("{who} turned this worker away: {reason}");
        return Err(EddyError::Network {
            action: "join the worker mesh at",
            address: address.to_string(),
            source: io::Error::new(io::ErrorKind::ConnectionRefused, message),
        });
    }
    DataConnection::from_stream(stream, options.clone())
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

/// What the accepting side reports to the worker that waits for its peers.
enum Arrival {
    Peer(usize, DataConnection),
    /// The listener broke, or an accepted peer failed the data-plane handshake.
    Broken(EddyError),
}

/// Accepts the lower workers of the mesh on a thread of its own; each connection is checked on
/// a short-lived thread, so that a silent stranger cannot hold up the peers behind it.
struct Acceptor {
    arrivals: Receiver<Arrival>,
    stop: Arc<AtomicBool>,
    /// Where to connect to wake the thread blocked in `accept`.
    address: SocketAddr,
    thread: JoinHandle<()>,
    expected: Hello,
}

impl Acceptor {
    fn start(
        listener: TcpListener,
        expected: Hello,
        options: NetOptions,
        deadline: Instant,
    ) -> Result<Acceptor> {
        let local = listener.local_addr().map_err(|source| EddyError::Network {
            action: "read the address of",
            address: "the data listener".into(),
            source,
        })?;
        let address = SocketAddr::new(reachable(local.ip()), local.port());
        let (tx, arrivals) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("mesh-accept {local}"))
            .spawn(move || accept_loop(listener, expected, options, deadline, tx, stopping))
            .map_err(|e| EddyError::user(format!("cannot start the worker mesh's accept thread: {e}")))?;
        Ok(Acceptor { arrivals, stop, address, thread, expected })
    }

    /// Waits until every lower worker has joined, then stops accepting.
    fn collect(
        self,
        connections: &mut [Option<DataConnection>],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<()> {
        let mut missing: BTreeSet<usize> = (0..self.expected.to as usize).collect();
        let result = loop {
            if missing.is_empty() {
                break Ok(());
            }
            match self.arrivals.recv_deadline(deadline) {
                Ok(Arrival::Peer(w, conn)) => {
                    missing.remove(&w);
                    connections[w] = Some(conn);
                }
                Ok(Arrival::Broken(e)) => break Err(e),
                Err(_) => {
                    let missing: Vec<usize> = missing.into_iter().collect();
                    let message = format!(
                        "worker {} of job {:016x} attempt {}: workers {missing:?} did not connect within {timeout:?}",
                        self.expected.to, self.expected.job, self.expected.attempt
                    );
                    break Err(timed_out("wait for peer workers on", self.address, message));
                }
            }
        };
        self.stop();
        result
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the thread blocked in `accept`; if that fails it is left to end with the
        // process rather than waited for.
        if TcpStream::connect_timeout(&self.address, Duration::from_secs(1)).is_ok() {
            let _ = self.thread.join();
        }
    }
}

/// An address this process can connect to for a listener bound to `ip`.
fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

fn accept_loop(
    listener: TcpListener,
    expected: Hello,
    options: NetOptions,
    deadline: Instant,
    arrivals: Sender<Arrival>,
    stop: Arc<AtomicBool>,
) {
    let claimed = Arc::new(Mutex::new(vec![false; expected.to as usize]));
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) if is_transient(&e) => continue,
            Err(source) => {
                let address =
                    listener.local_addr().map_or_else(|_| "the data listener".into(), |a| a.to_string());
                let _ = arrivals.send(Arrival::Broken(EddyError::Network {
                    action: "accept on",
                    address,
                    source,
                }));
                return;
            }
        };
        let (claimed, to_collector, options) = (claimed.clone(), arrivals.clone(), options.clone());
        let spawned = std::thread::Builder::new().name("mesh-admit".into()).spawn(move || {
            if let Some(arrival) = admit(stream, expected, &claimed, options, deadline) {
                let _ = to_collector.send(arrival);
            }
        });
        if let Err(e) = spawned {
            let e = EddyError::user(format!("cannot start a thread for a connecting worker: {e}"));
            let _ = arrivals.send(Arrival::Broken(e));
            return;
        }
    }
}

/// Checks who connected and lets it in, or turns it away (`None`, logged).
fn admit(
    stream: TcpStream,
    expected: Hello,
    claimed: &Mutex<Vec<bool>>,
    options: NetOptions,
    deadline: Instant,
) -> Option<Arrival> {
    let peer = stream.peer_addr().map_or_else(|_| "an unknown address".to_string(), |a| a.to_string());
    let refuse = |stream: &TcpStream, reason: String| {
        tracing::warn!(peer = %peer, worker = expected.to, %reason, "turned away a connection to the worker mesh");
        let mut answer = vec![REJECTED];
        let reason = &reason.as_bytes()[..reason.len().min(u16::MAX as usize)];
        answer.extend_from_slice(&(reason.len() as u16).to_be_bytes());
        answer.extend_from_slice(reason);
        let _ = (&*stream).write_all(&answer);
        // Closing with unread bytes would reset the connection, and the answer could be lost.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.set_read_timeout(Some(DRAIN_TIMEOUT));
        let _ = io::copy(&mut stream.take(DRAIN_BYTES), &mut io::sink());
        None
    };
    let mut bytes = [0u8; HELLO_BYTES];
    let read = stream
        .set_read_timeout(Some(options.handshake_timeout.min(left(deadline))))
        .and_then(|()| (&stream).read_exact(&mut bytes));
    if let Err(e) = read {
        return refuse(&stream, format!("it did not introduce itself as a worker: {e}"));
    }
    let hello = match Hello::decode(&bytes) {
        Ok(hello) => hello,
        Err(reason) => return refuse(&stream, reason),
    };
    if let Some(reason) = expected.refusal(&hello) {
        return refuse(&stream, reason);
    }
    let from = hello.from as usize;
    if std::mem::replace(&mut claimed.lock().unwrap_or_else(PoisonError::into_inner)[from], true) {
        return refuse(&stream, format!("worker {from} is already connected"));
    }
    if let Err(source) = (&stream).write_all(&[ACCEPTED]) {
        let address = peer.clone();
        return Some(Arrival::Broken(EddyError::Network {
            action: "answer peer worker at",
            address,
            source,
        }));
    }
    Some(match DataConnection::from_stream(stream, options) {
        Ok(conn) => Arrival::Peer(from, conn),
        Err(e) => Arrival::Broken(e),
    })
}

// ---------------------------------------------------------------------------------------------
// Building and running a worker's tasks
// ---------------------------------------------------------------------------------------------

/// Builds the subtasks that `placement` puts on worker `mesh.me()`, with their channels: local
/// ones to subtasks of this worker, remote ones over `mesh` to the others. Splits of sources
/// are assigned statically (see the module docs).
///
/// `graph` and `jg` are what [`prepare`] returns, the same in every worker; `job_id` and
/// `attempt` must be those the mesh was established with. `signals` cancels these tasks.
/// The tasks come with checkpointing disabled: the caller sets each one's
/// [`WorkerTask::checkpoints`].
#[allow(clippy::too_many_arguments)]
pub fn build_worker_tasks(
    graph: &StreamGraph,
    jg: &JobGraph,
    settings: &ExecutionSettings,
    job_id: &str,
    attempt: usize,
    placement: &Placement,
    mesh: &WorkerMesh,
    signals: &Arc<JobSignals>,
) -> Result<Vec<WorkerTask>> {
    build_restored_worker_tasks(graph, jg, settings, job_id, attempt, placement, mesh, signals, None)
}

/// [`build_worker_tasks`] for an attempt that starts from checkpoint `restore`: every operator
/// and reader of this worker gets its state back (the checkpoint needs to hold only the state
/// of this worker's subtasks).
#[allow(clippy::too_many_arguments)]
pub fn build_restored_worker_tasks(
    graph: &StreamGraph,
    jg: &JobGraph,
    settings: &ExecutionSettings,
    job_id: &str,
    attempt: usize,
    placement: &Placement,
    mesh: &WorkerMesh,
    signals: &Arc<JobSignals>,
    restore: Option<Arc<CompletedCheckpoint>>,
) -> Result<Vec<WorkerTask>> {
    let job = job_hash(job_id);
    if mesh.job != job || mesh.attempt != attempt {
        return Err(EddyError::InvalidJob(format!(
            "the worker mesh was established for job {:016x} attempt {}, not for job {job:016x} attempt {attempt}",
            mesh.job, mesh.attempt
        )));
    }
    placement.check(jg, mesh.workers())?;
    let exchanges = Exchanges::Mesh { placement, mesh };
    let builder = Builder::new(graph, jg, settings, signals, attempt, job, exchanges, restore)?;
    builder.build_tasks()
}

/// Whether the job's tasks take part in checkpoints: the job runs in STREAMING mode (BATCH
/// jobs never do, as in Flink). Without periodic checkpoints they still take savepoints and
/// restore them, as on the local mini-cluster.
pub fn checkpoints(_settings: &ExecutionSettings, jg: &JobGraph) -> bool {
    jg.runtime_mode != RuntimeMode::Batch
}

/// Every operator of the job, as a job master without the graph needs to know it to
/// coordinate checkpoints.
pub fn describe_operators(graph: &StreamGraph, jg: &JobGraph) -> Vec<CheckpointedOperator> {
    CheckpointCoordinator::describe_operators(graph, jg)
}

/// The split enumerators of a job on a cluster, as its job master's checkpoint coordinator
/// sees them: one per source, whose state is always empty (see the module docs).
pub fn cluster_enumerators(
    operators: &[CheckpointedOperator],
) -> Vec<(String, Arc<dyn SourceCoordinatorHandle>)> {
    let handle: Arc<dyn SourceCoordinatorHandle> = Arc::new(StaticEnumeratorState);
    operators.iter().filter(|o| o.source).map(|o| (o.id.clone(), handle.clone())).collect()
}

/// The enumerator of a source whose splits are all destined for readers in advance.
struct StaticEnumeratorState;

impl SourceCoordinatorHandle for StaticEnumeratorState {
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }

    /// No splits left to hand out, encoded as an empty list of splits of any type.
    fn snapshot(&self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        eddy_core::codec::encode_value(&Vec::<()>::new(), &mut bytes)?;
        Ok(bytes)
    }

    fn abort(&self, _checkpoint_id: u64) {}
}

/// Runs a worker's tasks, one thread each, and returns when all have ended.
///
/// `on_state(vertex, subtask, state, error)` hears `RUNNING` when a task starts and then
/// `FINISHED`, `FAILED` or `CANCELED`, with the error of a task that did not finish. A task
/// that fails cancels the others (through `signals`). Returns `Ok` when every task finished,
/// else this worker's root cause: the first real failure, which beats the cancellations it
/// causes.
pub fn run_worker_tasks(
    tasks: Vec<WorkerTask>,
    signals: Arc<JobSignals>,
    settings: &ExecutionSettings,
    mode: RuntimeMode,
    on_state: impl Fn(usize, usize, TaskState, Option<&EddyError>) + Send + Sync + 'static,
) -> Result<()> {
    let root_cause = Arc::new(Mutex::new(None::<EddyError>));
    let (cause, cancel) = (root_cause.clone(), signals.clone());
    let report = move |vertex: usize, subtask: usize, state: TaskState, error: Option<EddyError>| {
        on_state(vertex, subtask, state, error.as_ref());
        if let Some(e) = error {
            let mut cause = cause.lock().unwrap_or_else(PoisonError::into_inner);
            if is_new_root_cause(&cause, &e) {
                if !matches!(e, EddyError::Cancelled(_)) {
                    tracing::error!(vertex, subtask, error = %e, "task failed; cancelling this worker's tasks");
                }
                *cause = Some(e);
            }
            drop(cause);
            cancel.cancel();
        }
    };
    run_task_threads(tasks, &signals, settings, mode, Arc::new(report));
    let cause = root_cause.lock().unwrap_or_else(PoisonError::into_inner).take();
    cause.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests;
