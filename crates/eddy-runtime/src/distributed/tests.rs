//! The worker mesh over real sockets on 127.0.0.1, split assignment and placement.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eddy_core::{Batch, EddyError, Result, StreamElement};

use super::*;
use crate::channel::{GateEvent, InputGate, JobSignals};
use crate::net::ChannelId;
use crate::source::{SplitAssignment, SplitEnumerator, StaticSplitAssigner};

/// Longer than any healthy test needs.
const PATIENCE: Duration = Duration::from_secs(20);

fn bind(n: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addresses = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    (listeners, addresses)
}

/// Establishes worker `me` on a thread of its own.
fn spawn_worker(
    job: &str,
    me: usize,
    peers: &[SocketAddr],
    listener: TcpListener,
    timeout: Duration,
) -> thread::JoinHandle<Result<WorkerMesh>> {
    let (job, peers) = (job.to_string(), peers.to_vec());
    thread::spawn(move || {
        WorkerMesh::establish(&job, 0, me, &peers, listener, NetOptions::default(), timeout)
    })
}

fn meshes(job: &str, n: usize) -> (Vec<WorkerMesh>, Vec<SocketAddr>) {
    let (listeners, peers) = bind(n);
    let workers: Vec<_> =
        listeners.into_iter().enumerate().map(|(me, l)| spawn_worker(job, me, &peers, l, PATIENCE)).collect();
    (workers.into_iter().map(|w| w.join().unwrap().unwrap()).collect(), peers)
}

fn message_of(e: &EddyError) -> String {
    match e {
        EddyError::Network { source, .. } => format!("{e} ({source})"),
        other => other.to_string(),
    }
}

fn next(gate: &mut InputGate<u64>) -> Option<StreamElement<u64>> {
    let give_up = Instant::now() + PATIENCE;
    loop {
        match gate.next(Instant::now() + Duration::from_millis(50)).unwrap() {
            GateEvent::Element(_, e) => return Some(e),
            GateEvent::Finished => return None,
            GateEvent::Timeout => assert!(Instant::now() < give_up, "no element arrived"),
        }
    }
}

#[test]
fn every_pair_of_workers_shares_one_connection_that_carries_both_directions() {
    let (mesh, peers) = meshes("job-a", 3);
    for (me, m) in mesh.iter().enumerate() {
        assert_eq!((m.me(), m.workers()), (me, 3));
        assert!(m.connection(me).is_err(), "a worker has no connection to itself");
        for (w, address) in peers.iter().enumerate().skip(me + 1) {
            // The lower worker connected to the higher one's listener.
            assert_eq!(m.connection(w).unwrap().peer_addr(), *address);
        }
    }
    // Channels 0 -> 1 and 1 -> 0 over the single connection of the pair (0, 1).
    let signals = Arc::new(JobSignals::default());
    let there = ChannelId { job: 1, edge: 0, producer: 0, consumer: 1 };
    let back = ChannelId { job: 1, edge: 1, producer: 1, consumer: 0 };
    let mut gate_1 =
        InputGate::new(vec![mesh[1].connection(0).unwrap().register_input::<u64>(there, 2).unwrap()]);
    let mut gate_0 =
        InputGate::new(vec![mesh[0].connection(1).unwrap().register_input::<u64>(back, 2).unwrap()]);
    let tx_0 = mesh[0].connection(1).unwrap().register_output::<u64>(there, signals.clone()).unwrap();
    let tx_1 = mesh[1].connection(0).unwrap().register_output::<u64>(back, signals).unwrap();
    let send = |tx: crate::net::RemoteSender<u64>, from: u64| {
        thread::spawn(move || {
            for i in from..from + 20 {
                tx.send(StreamElement::Records(Batch::from_values(vec![i]))).unwrap();
            }
            tx.send(StreamElement::EndOfInput).unwrap();
        })
    };
    let sending = [send(tx_0, 0), send(tx_1, 100)];
    let values = |gate: &mut InputGate<u64>| {
        let mut out = Vec::new();
        while let Some(e) = next(gate) {
            if let StreamElement::Records(b) = e {
                out.extend(b.values);
            }
        }
        out
    };
    assert_eq!(values(&mut gate_1), (0..20).collect::<Vec<_>>());
    assert_eq!(values(&mut gate_0), (100..120).collect::<Vec<_>>());
    for s in sending {
        s.join().unwrap();
    }
    for m in mesh {
        m.close();
    }
}

#[test]
fn a_stranger_and_a_worker_of_another_job_are_turned_away_and_the_mesh_still_forms() {
    let (mut listeners, peers) = bind(2);
    let upper = spawn_worker("job-b", 1, &peers, listeners.pop().unwrap(), PATIENCE);

    // Someone speaking HTTP to the data port.
    let mut stranger = TcpStream::connect(peers[1]).unwrap();
    stranger.write_all(b"GET / HTTP/1.1\r\nHost: eddy\r\nAccept: */*\r\n\r\n").unwrap();
    stranger.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = Vec::new();
    stranger.read_to_end(&mut answer).unwrap();
    assert_eq!(answer[0], REJECTED);
    let reason = String::from_utf8_lossy(&answer[3..]).into_owned();
    assert!(reason.contains("not an Eddy worker"), "{reason}");

    // A worker 0 of another job.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = WorkerMesh::establish("job-other", 0, 0, &peers, other, NetOptions::default(), PATIENCE)
        .err()
        .expect("another job's worker must be turned away");
    let msg = message_of(&err);
    assert!(msg.contains("turned this worker away") && msg.contains("job"), "{msg}");

    // A worker of the right job but the wrong attempt.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = WorkerMesh::establish("job-b", 7, 0, &peers, other, NetOptions::default(), PATIENCE)
        .err()
        .expect("another attempt's worker must be turned away");
    assert!(message_of(&err).contains("attempt 7"), "{}", message_of(&err));

    let lower = spawn_worker("job-b", 0, &peers, listeners.pop().unwrap(), PATIENCE);
    let (lower, upper) = (lower.join().unwrap().unwrap(), upper.join().unwrap().unwrap());
    assert!(lower.connection(1).is_ok() && upper.connection(0).is_ok());
}

#[test]
fn establish_gives_up_when_a_lower_peer_never_connects() {
    let (mut listeners, peers) = bind(3);
    let started = Instant::now();
    let timeout = Duration::from_millis(300);
    let err = WorkerMesh::establish(
        "job-c",
        0,
        2,
        &peers,
        listeners.pop().unwrap(),
        NetOptions::default(),
        timeout,
    )
    .err()
    .expect("no peer connected");
    let msg = message_of(&err);
    assert!(matches!(err, EddyError::Network { .. }), "{msg}");
    assert!(msg.contains("workers [0, 1] did not connect within 300ms"), "{msg}");
    assert!(started.elapsed() < PATIENCE);
}

#[test]
fn establish_gives_up_when_a_higher_peer_is_not_there_or_never_answers() {
    // Nobody listens on the port any more: connection refused, retried until the timeout.
    let (mut listeners, peers) = bind(2);
    drop(listeners.pop());
    let timeout = Duration::from_millis(300);
    let err = WorkerMesh::establish(
        "job-d",
        0,
        0,
        &peers,
        listeners.pop().unwrap(),
        NetOptions::default(),
        timeout,
    )
    .err()
    .expect("the peer is not there");
    let msg = message_of(&err);
    assert!(msg.contains("worker 1 of job") && msg.contains("could not be reached within 300ms"), "{msg}");

    // Something listens but never answers.
    let (mut listeners, peers) = bind(2);
    let _silent = listeners.pop();
    let err = WorkerMesh::establish(
        "job-d",
        0,
        0,
        &peers,
        listeners.pop().unwrap(),
        NetOptions::default(),
        timeout,
    )
    .err()
    .expect("the peer never answers");
    let msg = message_of(&err);
    assert!(msg.contains("worker 1 of job") && msg.contains("did not answer within 300ms"), "{msg}");
}

// ---- static split assignment ----

/// Hands out `0..n` in order to whoever asks; every `not_yet`-th call says `NotYet`.
struct Numbers {
    left: VecDeque<u32>,
    calls: usize,
    not_yet: usize,
}

impl SplitEnumerator<u32> for Numbers {
    fn request_split(&mut self, _subtask: usize) -> Result<SplitAssignment<u32>> {
        self.calls += 1;
        if self.calls == self.not_yet {
            self.calls = 0;
            return Ok(SplitAssignment::NotYet);
        }
        Ok(self.left.pop_front().map_or(SplitAssignment::NoMoreSplits, SplitAssignment::Split))
    }
}

/// What each subtask of `local` gets from its own assigner, asking in the order `turns` (a
/// subtask whose turn comes after it got `NoMoreSplits` is skipped).
fn drain(splits: u32, parallelism: usize, local: &[usize], not_yet: usize, turns: &[usize]) -> Vec<Vec<u32>> {
    let numbers = Numbers { left: (0..splits).collect(), calls: 0, not_yet };
    let here = (0..parallelism).map(|s| local.contains(&s)).collect();
    let mut assigner = StaticSplitAssigner::new(Box::new(numbers), parallelism, here);
    let mut got = vec![Vec::new(); parallelism];
    let mut done = vec![false; parallelism];
    for &s in turns.iter().cycle() {
        if local.iter().all(|&l| done[l]) {
            break;
        }
        if done[s] || !local.contains(&s) {
            continue;
        }
        match assigner.request_split(s).unwrap() {
            SplitAssignment::Split(x) => got[s].push(x),
            SplitAssignment::NoMoreSplits => done[s] = true,
            SplitAssignment::NotYet => {}
        }
    }
    got
}

#[test]
fn static_assignment_gives_each_split_to_the_same_subtask_in_every_process() {
    for not_yet in [0, 3] {
        // One process holds all four readers: round-robin, whatever order they ask in.
        let all = drain(10, 4, &[0, 1, 2, 3], not_yet, &[3, 3, 0, 2, 1]);
        assert_eq!(all, vec![vec![0, 4, 8], vec![1, 5, 9], vec![2, 6], vec![3, 7]]);
        // Split over two processes, asking in different orders: the same assignment.
        let a = drain(10, 4, &[0, 2], not_yet, &[2, 2, 2, 0]);
        let b = drain(10, 4, &[1, 3], not_yet, &[1, 3, 3, 1]);
        assert_eq!((a[0].clone(), a[2].clone()), (all[0].clone(), all[2].clone()));
        assert_eq!((b[1].clone(), b[3].clone()), (all[1].clone(), all[3].clone()));
        assert!(a[1].is_empty() && a[3].is_empty() && b[0].is_empty() && b[2].is_empty());
    }
}

#[test]
fn a_remote_subtask_cannot_ask_this_process_for_splits() {
    let numbers = Numbers { left: (0..4).collect(), calls: 0, not_yet: 0 };
    let mut assigner = StaticSplitAssigner::new(Box::new(numbers), 2, vec![true, false]);
    assert!(assigner.request_split(1).is_err());
    assert!(matches!(assigner.request_split(0).unwrap(), SplitAssignment::Split(0)));
    assert!(matches!(assigner.request_split(0).unwrap(), SplitAssignment::Split(2)));
    assert!(matches!(assigner.request_split(0).unwrap(), SplitAssignment::NoMoreSplits));
}

// ---- placement ----

#[test]
fn placement_maps_slots_to_workers_and_is_checked_against_the_job() {
    let p = Placement::new(vec![2, 0, 1, 2]);
    assert_eq!((p.worker_of(0), p.worker_of(3)), (2, 2));
    assert_eq!((p.slots_of(2), p.slots_of(0), p.slots_of(5)), (vec![0, 3], vec![1], vec![]));
}

#[test]
fn a_reader_checkpoints_the_splits_destined_for_it_and_the_enumerator_keeps_none() {
    let numbers = Numbers { left: (0..7).collect(), calls: 0, not_yet: 0 };
    let mut assigner = StaticSplitAssigner::new(Box::new(numbers), 3, vec![true, false, true]);
    assert!(matches!(assigner.request_split(0).unwrap(), SplitAssignment::Split(0)));
    // Subtask 0 holds split 0; 3 and 6 are set aside for it, 2 and 5 for subtask 2.
    assert_eq!(assigner.splits_destined_for(0).unwrap(), vec![3, 6]);
    assert_eq!(assigner.splits_destined_for(2).unwrap(), vec![2, 5]);
    assert_eq!(assigner.splits_destined_for(1).unwrap(), Vec::<u32>::new(), "remote: none here");
    assert_eq!(assigner.snapshot_state(1).unwrap(), Vec::<u32>::new());
    // Recording them hands nothing out: the reader still gets them, in order.
    assert!(matches!(assigner.request_split(0).unwrap(), SplitAssignment::Split(3)));
    assert_eq!(assigner.splits_destined_for(0).unwrap(), vec![6]);
}

#[test]
fn an_enumerator_that_discovers_splits_over_time_cannot_be_checkpointed_on_a_cluster() {
    let numbers = Numbers { left: (0..7).collect(), calls: 0, not_yet: 2 };
    let mut assigner = StaticSplitAssigner::new(Box::new(numbers), 2, vec![true, true]);
    let e = assigner.splits_destined_for(0).unwrap_err().to_string();
    assert!(e.contains("discovers splits over time"), "{e}");
}

#[test]
fn on_a_cluster_the_enumerator_state_is_an_empty_list_of_any_split_type() {
    let op = |id: &str, source| CheckpointedOperator {
        id: id.into(),
        uid: None,
        name: id.into(),
        vertex: 0,
        parallelism: 2,
        max_parallelism: 128,
        source,
    };
    let enumerators = cluster_enumerators(&[op("src", true), op("map", false)]);
    assert_eq!(enumerators.len(), 1);
    assert_eq!(enumerators[0].0, "src");
    let bytes = enumerators[0].1.snapshot(3).unwrap();
    let strings: Vec<String> = eddy_core::codec::decode_value(&bytes).unwrap();
    let numbers: Vec<(u64, String)> = eddy_core::codec::decode_value(&bytes).unwrap();
    assert!(strings.is_empty() && numbers.is_empty());
}
