//! Both ends of real connections over 127.0.0.1 in one process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eddy_core::{codec, Batch, EddyError, Result, StreamElement};

use super::frame::{self, Kind};
use super::{ChannelId, DataConnection, NetOptions, RemoteSender};
use crate::channel::{GateEvent, InputGate, JobSignals};

/// Longer than any test needs; reaching it means a hang.
const PATIENCE: Duration = Duration::from_secs(20);

fn id(edge: u32, producer: u32, consumer: u32) -> ChannelId {
    ChannelId { job: 0xE0D1, edge, producer, consumer }
}

fn signals() -> Arc<JobSignals> {
    Arc::new(JobSignals::default())
}

/// A connected pair: (the connecting side, the accepting side).
fn pair_with(connecting: NetOptions, accepting: NetOptions) -> (DataConnection, DataConnection) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || DataConnection::accept(&listener, accepting));
    let client = DataConnection::connect(addr, connecting).unwrap();
    (client, server.join().unwrap().unwrap())
}

fn pair() -> (DataConnection, DataConnection) {
    pair_with(NetOptions::default(), NetOptions::default())
}

/// The next element of `gate`, `None` when it is finished; panics after [`PATIENCE`].
fn next<T>(gate: &mut InputGate<T>) -> Result<Option<(usize, StreamElement<T>)>> {
    let give_up = Instant::now() + PATIENCE;
    loop {
        match gate.next(Instant::now() + Duration::from_millis(50))? {
            GateEvent::Element(ch, e) => return Ok(Some((ch, e))),
            GateEvent::Finished => return Ok(None),
            GateEvent::Timeout => assert!(Instant::now() < give_up, "no element arrived"),
        }
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let give_up = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn batch(from: u64, n: u64, with_timestamps: bool) -> StreamElement<(u64, String)> {
    let mut b = Batch::new();
    for i in from..from + n {
        if with_timestamps {
            b.push_with_timestamp((i, format!("r{i}")), i as i64 * 10);
        } else {
            b.push((i, format!("r{i}")));
        }
    }
    StreamElement::Records(b)
}

/// What producer `p` sends: batches with and without timestamps, watermarks, idleness.
fn script(p: u64) -> Vec<StreamElement<(u64, String)>> {
    let mut out = Vec::new();
    for k in 0..30 {
        out.push(batch(p * 1000 + k * 7, 7, k % 2 == 0));
        if k % 5 == 4 {
            out.push(StreamElement::Watermark((p * 1000 + k * 7) as i64 * 10));
        }
    }
    out.push(StreamElement::Idle(true));
    out.push(StreamElement::Idle(false));
    out.push(StreamElement::Watermark(i64::MAX));
    out.push(StreamElement::EndOfInput);
    out
}

#[test]
fn records_and_watermarks_of_several_channels_arrive_in_order() {
    let (producer, consumer) = pair();
    let ids: Vec<_> = (0..3).map(|p| id(1, p, 0)).collect();
    let receivers = ids.iter().map(|&c| consumer.register_input(c, 2).unwrap()).collect();
    let mut gate = InputGate::<(u64, String)>::new(receivers);
    let producers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(p, &c)| {
            let tx: RemoteSender<(u64, String)> = producer.register_output(c, signals()).unwrap();
            thread::spawn(move || script(p as u64).into_iter().try_for_each(|e| tx.send(e)))
        })
        .collect();
    let mut received = vec![Vec::new(); 3];
    while let Some((ch, e)) = next(&mut gate).unwrap() {
        received[ch].push(e);
    }
    for (p, h) in producers.into_iter().enumerate() {
        h.join().unwrap().unwrap();
        assert_eq!(received[p], script(p as u64), "channel {p}");
    }
    assert!(gate.is_finished());
    assert!(producer.bytes_sent() > 0 && producer.bytes_sent() == consumer.bytes_received());
}

#[test]
fn end_of_input_arrives_even_when_the_producer_closes_right_after() {
    let (producer, consumer) = pair();
    let mut gate = InputGate::<(u64, String)>::new(vec![consumer.register_input(id(2, 0, 0), 4).unwrap()]);
    let tx = producer.register_output::<(u64, String)>(id(2, 0, 0), signals()).unwrap();
    for e in [batch(0, 3, false), StreamElement::Watermark(5), StreamElement::EndOfInput] {
        tx.send(e).unwrap();
    }
    drop(tx);
    producer.close();
    assert_eq!(next(&mut gate).unwrap().unwrap().1, batch(0, 3, false));
    assert_eq!(next(&mut gate).unwrap().unwrap().1, StreamElement::Watermark(5));
    assert_eq!(next(&mut gate).unwrap().unwrap().1, StreamElement::EndOfInput);
    assert!(next(&mut gate).unwrap().is_none());
}

#[test]
fn backpressure_bounds_in_flight_batches_to_the_credit() {
    const CAPACITY: usize = 3;
    const BATCHES: usize = 40;
    let (producer, consumer) = pair();
    let mut gate = InputGate::<u64>::new(vec![consumer.register_input(id(3, 0, 0), CAPACITY).unwrap()]);
    let tx = Arc::new(producer.register_output::<u64>(id(3, 0, 0), signals()).unwrap());
    let sent = Arc::new(AtomicUsize::new(0));
    let (tx2, sent2) = (tx.clone(), sent.clone());
    let producing = thread::spawn(move || {
        for i in 0..BATCHES as u64 {
            tx2.send(StreamElement::Records(Batch::from_values(vec![i; 100])))?;
            sent2.fetch_add(1, Ordering::SeqCst);
        }
        tx2.send(StreamElement::EndOfInput)
    });
    for consumed in 0..BATCHES {
        // The producer fills every credit it has...
        let expected = CAPACITY.min(BATCHES + 1 - consumed);
        wait_until("the producer fills the queue", || gate.buffered(0) == expected);
        // ...and no more: with the queue full, every credit granted has been used.
        assert_eq!(tx.credit(), 0, "after {consumed} consumed");
        assert!(sent.load(Ordering::SeqCst) <= consumed + CAPACITY, "after {consumed} consumed");
        let Some((_, StreamElement::Records(b))) = next(&mut gate).unwrap() else { panic!() };
        assert_eq!(b.values, vec![consumed as u64; 100]);
    }
    assert_eq!(next(&mut gate).unwrap().unwrap().1, StreamElement::EndOfInput);
    producing.join().unwrap().unwrap();
}

#[test]
fn a_stalled_channel_does_not_block_the_others() {
    let (producer, consumer) = pair();
    let (a, b) = (id(4, 0, 0), id(4, 1, 0));
    let mut gate_a = InputGate::<u64>::new(vec![consumer.register_input(a, 2).unwrap()]);
    let mut gate_b = InputGate::<u64>::new(vec![consumer.register_input(b, 2).unwrap()]);
    let tx_a = Arc::new(producer.register_output::<u64>(a, signals()).unwrap());
    let tx_b = producer.register_output::<u64>(b, signals()).unwrap();
    let tx_a2 = tx_a.clone();
    let producing_a = thread::spawn(move || {
        (0..10).try_for_each(|i| tx_a2.send(StreamElement::Records(Batch::from_values(vec![i]))))?;
        tx_a2.send(StreamElement::EndOfInput)
    });
    let producing_b = thread::spawn(move || {
        (0..1000).try_for_each(|i| tx_b.send(StreamElement::Records(Batch::from_values(vec![i; 64]))))?;
        tx_b.send(StreamElement::EndOfInput)
    });
    // Nobody reads channel A, yet all of B flows through the same connection.
    let mut expected = 0;
    while let Some((_, e)) = next(&mut gate_b).unwrap() {
        match e {
            StreamElement::Records(batch) => assert_eq!(batch.values, vec![expected; 64]),
            other => assert_eq!(other, StreamElement::EndOfInput),
        }
        expected += 1;
    }
    assert_eq!(expected, 1001);
    producing_b.join().unwrap().unwrap();
    wait_until("channel A's queue is full", || gate_a.buffered(0) == 2);
    assert_eq!(tx_a.credit(), 0);
    assert!(!producing_a.is_finished());
    // Once A's consumer reads again, A completes.
    let mut values = Vec::new();
    while let Some((_, e)) = next(&mut gate_a).unwrap() {
        if let StreamElement::Records(batch) = e {
            values.extend(batch.values);
        }
    }
    assert_eq!(values, (0..10).collect::<Vec<_>>());
    producing_a.join().unwrap().unwrap();
}

fn assert_network_error_naming(err: EddyError, peer: &str, what: &str) {
    let text = err.to_string();
    assert!(matches!(err, EddyError::Network { .. }), "{err:?}");
    assert!(text.contains(peer) && text.contains(what), "{text}");
}

#[test]
fn a_peer_that_disconnects_mid_stream_fails_the_waiting_consumer() {
    let (producer, consumer) = pair();
    let peer = consumer.peer_addr().to_string();
    let mut gate = InputGate::<(u64, String)>::new(vec![consumer.register_input(id(5, 0, 0), 4).unwrap()]);
    let tx = producer.register_output::<(u64, String)>(id(5, 0, 0), signals()).unwrap();
    tx.send(batch(0, 5, true)).unwrap();
    // The producing process goes away without ending its channel.
    drop(producer);
    assert_eq!(next(&mut gate).unwrap().unwrap().1, batch(0, 5, true));
    let err = next(&mut gate).map(|_| ()).unwrap_err();
    assert_network_error_naming(err, &peer, "closed the connection");
    drop(tx);
}

#[test]
fn a_peer_that_disconnects_fails_the_waiting_producer() {
    let (producer, consumer) = pair();
    let peer = producer.peer_addr().to_string();
    let gate = InputGate::<u64>::new(vec![consumer.register_input(id(6, 0, 0), 1).unwrap()]);
    let tx = producer.register_output::<u64>(id(6, 0, 0), signals()).unwrap();
    tx.send(StreamElement::Watermark(1)).unwrap();
    let blocked = thread::spawn(move || tx.send(StreamElement::Watermark(2)));
    drop(consumer);
    assert_network_error_naming(blocked.join().unwrap().unwrap_err(), &peer, "closed the connection");
    drop(gate);
}

/// A peer speaking the protocol by hand: handshakes, then writes what a test wants.
fn raw_peer(conn_options: NetOptions) -> (TcpStream, DataConnection) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || DataConnection::accept(&listener, conn_options));
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.write_all(&frame::HANDSHAKE).unwrap();
    let mut theirs = [0u8; 6];
    raw.read_exact(&mut theirs).unwrap();
    (raw, server.join().unwrap().unwrap())
}

fn data_frame(channel: ChannelId, element: &StreamElement<u64>) -> Vec<u8> {
    let mut payload = Vec::new();
    codec::encode_element(element, &mut payload).unwrap();
    frame::encode(Kind::Data, channel, &payload)
}

#[test]
fn a_peer_that_dies_in_the_middle_of_a_frame_is_reported() {
    let (mut raw, conn) = raw_peer(NetOptions::default());
    let mut gate = InputGate::<u64>::new(vec![conn.register_input(id(7, 0, 0), 4).unwrap()]);
    let whole = data_frame(id(7, 0, 0), &StreamElement::Watermark(3));
    let cut = data_frame(id(7, 0, 0), &StreamElement::Records(Batch::from_values(vec![1, 2, 3])));
    raw.write_all(&whole).unwrap();
    raw.write_all(&cut[..cut.len() - 2]).unwrap();
    // Read the credit first: closing a socket with unread bytes sends a reset, not a FIN.
    let mut credit = [0u8; frame::HEADER_BYTES + 4];
    raw.read_exact(&mut credit).unwrap();
    drop(raw);
    assert_eq!(next(&mut gate).unwrap().unwrap().1, StreamElement::Watermark(3));
    let err = next(&mut gate).map(|_| ()).unwrap_err();
    assert_network_error_naming(err, &conn.peer_addr().to_string(), "in the middle of a frame");
}

#[test]
fn sending_beyond_the_credit_breaks_the_protocol() {
    let (mut raw, conn) = raw_peer(NetOptions::default());
    let mut gate = InputGate::<u64>::new(vec![conn.register_input(id(8, 0, 0), 1).unwrap()]);
    for w in [1, 2] {
        raw.write_all(&data_frame(id(8, 0, 0), &StreamElement::Watermark(w))).unwrap();
    }
    // The connection shuts down, before the gate has taken anything (which would return credit).
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut credit_frames = Vec::new();
    raw.read_to_end(&mut credit_frames).unwrap();
    assert_eq!(credit_frames, frame::encode(Kind::Credit, id(8, 0, 0), &1u32.to_be_bytes()));
    assert_eq!(next(&mut gate).unwrap().unwrap().1, StreamElement::Watermark(1));
    let err = next(&mut gate).map(|_| ()).unwrap_err();
    assert_network_error_naming(err, &conn.peer_addr().to_string(), "beyond its credit");
}

#[test]
fn oversized_frames_are_refused_by_the_receiver() {
    let small = NetOptions { max_frame_bytes: 1024, ..NetOptions::default() };
    let (producer, consumer) = pair_with(NetOptions::default(), small);
    let mut gate = InputGate::<u64>::new(vec![consumer.register_input(id(9, 0, 0), 4).unwrap()]);
    let tx = producer.register_output::<u64>(id(9, 0, 0), signals()).unwrap();
    tx.send(StreamElement::Records(Batch::from_values(vec![u64::MAX; 200]))).unwrap();
    let err = next(&mut gate).map(|_| ()).unwrap_err();
    assert_network_error_naming(err, &consumer.peer_addr().to_string(), "exceeds the limit of 1024 bytes");
}

#[test]
fn an_absurd_frame_length_is_refused_without_allocating_it() {
    let (mut raw, conn) = raw_peer(NetOptions::default());
    let mut gate = InputGate::<u64>::new(vec![conn.register_input(id(10, 0, 0), 4).unwrap()]);
    raw.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 0]).unwrap();
    let err = next(&mut gate).map(|_| ()).unwrap_err();
    assert_network_error_naming(err, &conn.peer_addr().to_string(), "exceeds the limit");
}

#[test]
fn the_sender_refuses_an_element_above_the_frame_limit_and_goes_on() {
    let small = NetOptions { max_frame_bytes: 1024, ..NetOptions::default() };
    let (producer, consumer) = pair_with(small, NetOptions::default());
    let mut gate = InputGate::<u64>::new(vec![consumer.register_input(id(11, 0, 0), 4).unwrap()]);
    let tx = producer.register_output::<u64>(id(11, 0, 0), signals()).unwrap();
    let err = tx.send(StreamElement::Records(Batch::from_values(vec![u64::MAX; 200]))).unwrap_err();
    assert!(matches!(err, EddyError::BadInput { .. }), "{err:?}");
    assert!(err.to_string().contains("above the limit of 1024 bytes"), "{err}");
    tx.send(StreamElement::Records(Batch::from_values(vec![7]))).unwrap();
    tx.send(StreamElement::EndOfInput).unwrap();
    assert_eq!(next(&mut gate).unwrap().unwrap().1, StreamElement::Records(Batch::from_values(vec![7])));
    assert_eq!(next(&mut gate).unwrap().unwrap().1, StreamElement::EndOfInput);
}

#[test]
fn cancellation_releases_a_sender_waiting_for_credit() {
    let (producer, consumer) = pair();
    let _gate = InputGate::<u64>::new(vec![consumer.register_input(id(12, 0, 0), 1).unwrap()]);
    let job = signals();
    let tx = producer.register_output::<u64>(id(12, 0, 0), job.clone()).unwrap();
    tx.send(StreamElement::Watermark(1)).unwrap();
    let blocked = thread::spawn(move || tx.send(StreamElement::Watermark(2)));
    job.cancel();
    assert!(matches!(blocked.join().unwrap(), Err(EddyError::Cancelled(_))));
}

#[test]
fn a_consumer_that_goes_away_stops_its_producer() {
    let (producer, consumer) = pair();
    let gate = InputGate::<u64>::new(vec![consumer.register_input(id(13, 0, 0), 1).unwrap()]);
    let tx = producer.register_output::<u64>(id(13, 0, 0), signals()).unwrap();
    tx.send(StreamElement::Watermark(1)).unwrap();
    let blocked = thread::spawn(move || tx.send(StreamElement::Watermark(2)));
    drop(gate);
    let result = blocked.join().unwrap();
    assert!(matches!(result, Err(EddyError::Cancelled(_))), "{result:?}");
}

#[test]
fn a_producer_that_fails_closes_only_its_channel() {
    let (producer, consumer) = pair();
    let mut failing = InputGate::<u64>::new(vec![consumer.register_input(id(14, 0, 0), 4).unwrap()]);
    let mut healthy = InputGate::<u64>::new(vec![consumer.register_input(id(14, 1, 0), 4).unwrap()]);
    let tx = producer.register_output::<u64>(id(14, 0, 0), signals()).unwrap();
    let other = producer.register_output::<u64>(id(14, 1, 0), signals()).unwrap();
    tx.send(StreamElement::Watermark(1)).unwrap();
    drop(tx);
    assert_eq!(next(&mut failing).unwrap().unwrap().1, StreamElement::Watermark(1));
    assert!(matches!(next(&mut failing).map(|_| ()), Err(EddyError::Cancelled(_))));
    other.send(StreamElement::EndOfInput).unwrap();
    assert_eq!(next(&mut healthy).unwrap().unwrap().1, StreamElement::EndOfInput);
}

#[test]
fn a_stranger_fails_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stranger = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    let err = DataConnection::accept(&listener, NetOptions::default()).map(|_| ()).unwrap_err();
    assert!(matches!(err, EddyError::Network { action: "handshake with", .. }), "{err:?}");
    assert!(err.to_string().contains("not an Eddy data plane"), "{err}");
    stranger.join().unwrap();
}

#[test]
fn a_channel_is_registered_once_per_end() {
    let (producer, consumer) = pair();
    let _rx = consumer.register_input::<u64>(id(15, 0, 0), 1).unwrap();
    assert!(matches!(consumer.register_input::<u64>(id(15, 0, 0), 1), Err(EddyError::InvalidJob(_))));
    let _tx = producer.register_output::<u64>(id(15, 0, 0), signals()).unwrap();
    assert!(matches!(
        producer.register_output::<u64>(id(15, 0, 0), signals()),
        Err(EddyError::InvalidJob(_))
    ));
}

#[test]
fn elements_in_flight_to_a_consumer_that_went_away_are_dropped_not_a_protocol_error() {
    let (mut raw, conn) = raw_peer(NetOptions::default());
    let gone = InputGate::<u64>::new(vec![conn.register_input(id(16, 0, 0), 4).unwrap()]);
    let mut other = InputGate::<u64>::new(vec![conn.register_input(id(16, 1, 0), 4).unwrap()]);
    let mut credits = [0u8; 2 * (frame::HEADER_BYTES + 4)];
    raw.read_exact(&mut credits).unwrap();
    drop(gone);
    // The producer sent these before the consumer's close notice could reach it.
    for w in [1, 2, 3] {
        raw.write_all(&data_frame(id(16, 0, 0), &StreamElement::Watermark(w))).unwrap();
    }
    raw.write_all(&frame::encode(Kind::Close, id(16, 0, 0), b"cancelled")).unwrap();
    raw.write_all(&data_frame(id(16, 1, 0), &StreamElement::Watermark(9))).unwrap();
    assert_eq!(next(&mut other).unwrap().unwrap().1, StreamElement::Watermark(9));
    // Closing first: `conn` lingers until its peer has closed too.
    drop(raw);
}

#[test]
fn closing_returns_even_when_the_peer_never_closes() {
    // The raw peer stays connected and silent: the graceful drain cannot end by itself, so
    // close must cut the connection after its linger time instead of waiting forever.
    let (raw, conn) = raw_peer(NetOptions::default());
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let closer = thread::spawn(move || {
        conn.close();
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(20)).is_ok(),
        "close() still blocked 20 s after the peer went silent"
    );
    closer.join().unwrap();
    drop(raw);
}
