//! `socket_text_stream` against a real TCP server on 127.0.0.1.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::thread;

use eddy::prelude::*;

fn word_count(lines: &DataStream<String>) -> DataStream<(String, i64)> {
    lines
        .flat_map(|line: String, out: &mut Collector<(String, i64)>| {
            for word in line.split_whitespace() {
                out.collect((word.to_string(), 1));
            }
        })
        .key_by(|t: &(String, i64)| t.0.clone())
        .sum(|t: &mut (String, i64)| &mut t.1)
}

/// Deterministic lines of words from a small vocabulary.
fn lines(n: usize) -> Vec<String> {
    let words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler"];
    let mut state: u64 = 7;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    (0..n)
        .map(|_| {
            let len = next() % 9;
            (0..len).map(|_| words[(next() % words.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

#[test]
fn streaming_word_count_over_a_socket_ends_when_the_server_closes() {
    let text = lines(3_000);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let to_send = text.clone();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for line in &to_send {
            conn.write_all(line.as_bytes()).unwrap();
            conn.write_all(b"\n").unwrap();
        }
        conn.flush().unwrap();
        // Dropping the connection closes it: the stream ends.
    });

    let env = StreamExecutionEnvironment::local().with_parallelism(2);
    let counts = word_count(&env.socket_text_stream("127.0.0.1", port)).collect_to_vec();
    env.execute("socket word count").unwrap();
    server.join().unwrap();

    let mut expected: HashMap<String, i64> = HashMap::new();
    for line in &text {
        for w in line.split_whitespace() {
            *expected.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    let mut per_word: HashMap<String, Vec<i64>> = HashMap::new();
    for (word, count) in counts.take() {
        per_word.entry(word).or_default().push(count);
    }
    assert_eq!(per_word.len(), expected.len());
    for (word, n) in &expected {
        let got = &per_word[word];
        assert!(got.iter().copied().eq(1..=*n), "counts of {word:?}: want 1..={n}, got {got:?}");
    }
}

#[test]
fn a_refused_connection_fails_the_job_naming_host_and_port() {
    // A port that was free a moment ago and has no listener now.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = StreamExecutionEnvironment::local().with_parallelism(1);
    word_count(&env.socket_text_stream("127.0.0.1", port)).collect_to_vec();
    let client = env.execute_async("refused").unwrap();
    // A failure must end the job, not leave it waiting.
    let status = client.wait_timeout(Duration::from_secs(30));
    assert_eq!(status, JobStatus::Failed);
    let err = client.wait().unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// Counts records, so the test can see them arrive while the job runs.
#[derive(Clone)]
struct Seen(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl eddy::sink::Sink<String> for Seen {
    fn create_writer(&self, _: &eddy::sink::SinkContext) -> Result<Box<dyn eddy::sink::SinkWriter<String>>> {
        Ok(Box::new(self.clone()))
    }
}

impl eddy::sink::SinkWriter<String> for Seen {
    fn write_batch(&mut self, batch: eddy::Batch<String>) -> Result<()> {
        self.0.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn partly_filled_batches_reach_the_sink_after_the_buffer_timeout() {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Seen(Default::default());
    let counter = seen.0.clone();
    // The server keeps the stream open until the sink has seen the first three words: far
    // fewer than a batch, so only the buffer timeout can have sent them.
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"a b c\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while counter.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        let arrived_while_open = counter.load(Ordering::SeqCst) == 3;
        conn.write_all(b"d\n").unwrap();
        arrived_while_open
    });

    let env = StreamExecutionEnvironment::local().with_parallelism(2);
    env.set_buffer_timeout(Duration::from_millis(20));
    env.socket_text_stream("127.0.0.1", port)
        .flat_map(|line: String, out: &mut Collector<String>| {
            for w in line.split_whitespace() {
                out.collect(w.to_string())
            }
        })
        .rebalance()
        .sink_to(seen.clone(), "Seen");
    env.execute("buffer timeout").unwrap();
    assert!(server.join().unwrap(), "the first words waited for a full batch instead of the buffer timeout");
    assert_eq!(seen.0.load(Ordering::SeqCst), 4);
}
