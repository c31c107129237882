//! Throughput of one data-plane connection over loopback: a producer thread sends
//! `(u64, u64)` records in batches through a `RemoteSender`, a consumer thread reads them from an
//! `InputGate`, as two TaskManagers' tasks would. Prints records/s and MB/s; asserts nothing
//! about time.
//!
//! ```sh
//! cargo bench -p eddy-runtime --bench net
//! EDDY_BENCH_NET_RECORDS=10000000 EDDY_BENCH_NET_CAPACITY=8 cargo bench -p eddy-runtime --bench net
//! ```

use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eddy_core::{Batch, StreamElement};
use eddy_runtime::channel::{GateEvent, InputGate, JobSignals};
use eddy_runtime::net::{ChannelId, DataConnection, NetOptions};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

fn main() {
    let records = env_or("EDDY_BENCH_NET_RECORDS", 50_000_000);
    let batch_size = env_or("EDDY_BENCH_NET_BATCH", 1024);
    let capacity = env_or("EDDY_BENCH_NET_CAPACITY", 4) as usize;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let accepting = thread::spawn(move || DataConnection::accept(&listener, NetOptions::default()));
    let producer = DataConnection::connect(addr, NetOptions::default()).expect("connect");
    let consumer = accepting.join().expect("accept thread").expect("accept");

    let channel = ChannelId { job: 1, edge: 0, producer: 0, consumer: 0 };
    let mut gate =
        InputGate::<(u64, u64)>::new(vec![consumer.register_input(channel, capacity).expect("input")]);
    let tx =
        producer.register_output::<(u64, u64)>(channel, Arc::new(JobSignals::default())).expect("output");

    let start = Instant::now();
    let producing = thread::spawn(move || {
        let mut i = 0u64;
        while i < records {
            let n = batch_size.min(records - i);
            // A keyed-shuffle-like record: about 2^20 distinct keys, and a sequence number.
            let values = (i..i + n).map(|j| (j & 0xF_FFFF, j)).collect();
            tx.send(StreamElement::Records(Batch::from_values(values))).expect("send");
            i += n;
        }
        tx.send(StreamElement::EndOfInput).expect("send end of input");
    });
    let (mut received, mut checksum) = (0u64, 0u64);
    loop {
        match gate.next(Instant::now() + Duration::from_millis(100)).expect("receive") {
            GateEvent::Element(_, StreamElement::Records(b)) => {
                received += b.len() as u64;
                checksum = b.values.iter().fold(checksum, |c, (_, v)| c.wrapping_add(*v));
            }
            GateEvent::Element(..) | GateEvent::Timeout => {}
            GateEvent::Finished => break,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    producing.join().expect("producer thread");
    assert_eq!(received, records, "records lost");
    assert_eq!(checksum, (0..records).fold(0u64, |c, v| c.wrapping_add(v)), "records corrupted");

    let wire = consumer.bytes_received() as f64;
    println!("| records | batch | capacity | records/s | MB/s as (u64, u64) | MB/s on the wire | wire bytes/record |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {records} | {batch_size} | {capacity} | {:.2} M | {:.0} | {:.0} | {:.2} |",
        records as f64 / secs / 1e6,
        records as f64 * 16.0 / secs / 1e6,
        wire / secs / 1e6,
        wire / records as f64,
    );
}
