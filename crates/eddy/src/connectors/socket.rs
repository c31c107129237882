//! Lines from a TCP socket: Flink's `socketTextStream`.
//!
//! [`SocketTextSource`] connects to a server and emits every delimited piece of text it sends
//! as one record. It is the classic source for trying a job by hand (`nc -lk 9999`). The stream
//! is unbounded, but ends when the server closes the connection, as in Flink, unless the source
//! was told to reconnect ([`SocketTextSource::with_max_retry`]).
//!
//! There is a single split, so only one reader ever reads: the socket is parallelism 1.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use eddy_core::{EddyError, Result};
use eddy_runtime::source::{
    Boundedness, ReaderContext, ReaderStatus, Source, SourceOutput, SourceReader, SourceSplit,
    SplitAssignment, SplitEnumerator,
};

/// How long a read waits for data before the reader reports [`ReaderStatus::NothingAvailable`].
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// Flink's `SocketTextStreamFunction` waits this long between reconnection attempts.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(500);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_CHUNK: usize = 64 * 1024;

/// The one split of a socket source: the server to read from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SocketSplit {
    pub host: String,
    pub port: u16,
}

impl SocketSplit {
    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl SourceSplit for SocketSplit {
    fn split_id(&self) -> String {
        self.address()
    }
}

/// Reads text from a TCP server, one record per delimited line, as Flink's
/// `env.socketTextStream(host, port)`.
///
/// With the default delimiter `\n`, a trailing `\r` is removed too. When the server closes the
/// connection, the text after the last delimiter is emitted and the stream ends.
///
/// ```no_run
/// use eddy::connectors::socket::SocketTextSource;
///
/// // Reconnect up to 3 times, 500 ms apart, when the server goes away.
/// let source = SocketTextSource::new("localhost", 9999).with_max_retry(3);
/// ```
#[derive(Debug, Clone)]
pub struct SocketTextSource {
    host: String,
    port: u16,
    delimiter: u8,
    /// Flink's `maxRetry`: reconnection attempts after the server closes; negative is forever.
    max_retry: i64,
    connect_timeout: Duration,
    retry_delay: Duration,
}

impl SocketTextSource {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        SocketTextSource {
            host: host.into(),
            port,
            delimiter: b'\n',
            max_retry: 0,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry_delay: DEFAULT_RETRY_DELAY,
        }
    }

    /// Ends records at `delimiter` instead of `\n`.
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Reconnects up to `max_retry` times, 500 ms apart, when the server closes the connection
    /// or cannot be reached again; `-1` (any negative value) retries forever, `0` (the default)
    /// ends the stream at the first close. As Flink's `maxRetry`, the count is over the whole
    /// life of the source.
    pub fn with_max_retry(mut self, max_retry: i64) -> Self {
        self.max_retry = max_retry;
        self
    }

    /// How long connecting may take before it fails (10 s by default).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Source for SocketTextSource {
    type Output = String;
    type Split = SocketSplit;
    type Reader = SocketTextReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::ContinuousUnbounded
    }

    fn create_enumerator(&self, _parallelism: usize) -> Result<Box<dyn SplitEnumerator<SocketSplit>>> {
        let split = SocketSplit { host: self.host.clone(), port: self.port };
        Ok(Box::new(SocketSplitEnumerator { split: Some(split) }))
    }

    fn create_reader(&self, _ctx: &ReaderContext) -> Result<SocketTextReader> {
        Ok(SocketTextReader {
            delimiter: self.delimiter,
            max_retry: self.max_retry,
            connect_timeout: self.connect_timeout,
            retry_delay: self.retry_delay,
            address: String::new(),
            split: None,
            state: State::Unassigned,
            retries: 0,
            pending: Vec::new(),
            consumed: 0,
            chunk: vec![0; READ_CHUNK],
        })
    }
}

/// Gives the one split to the first reader that asks.
struct SocketSplitEnumerator {
    split: Option<SocketSplit>,
}

impl SplitEnumerator<SocketSplit> for SocketSplitEnumerator {
    fn request_split(&mut self, _subtask: usize) -> Result<SplitAssignment<SocketSplit>> {
        Ok(match self.split.take() {
            Some(split) => SplitAssignment::Split(split),
            None => SplitAssignment::NoMoreSplits,
        })
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<SocketSplit>> {
        Ok(self.split.iter().cloned().collect())
    }
}

enum State {
    /// No split yet.
    Unassigned,
    Connected(TcpStream),
    /// The server closed the connection; try again at the given time.
    Reconnecting(Instant),
    Ended,
}

/// Reads lines from the socket of its [`SocketSplit`].
pub struct SocketTextReader {
    delimiter: u8,
    max_retry: i64,
    connect_timeout: Duration,
    retry_delay: Duration,
    /// `host:port`, for errors.
    address: String,
    split: Option<SocketSplit>,
    state: State,
    /// Reconnection attempts made so far.
    retries: i64,
    /// Received bytes; `pending[consumed..]` is not emitted yet.
    pending: Vec<u8>,
    consumed: usize,
    chunk: Vec<u8>,
}

impl SourceReader for SocketTextReader {
    type Output = String;
    type Split = SocketSplit;

    fn add_split(&mut self, split: SocketSplit) -> Result<()> {
        self.address = split.address();
        let stream = connect(&split, self.connect_timeout)?;
        self.split = Some(split);
        self.state = State::Connected(stream);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<String>) -> Result<ReaderStatus> {
        match &self.state {
            State::Unassigned => Ok(ReaderStatus::NeedsSplit),
            State::Ended => Ok(ReaderStatus::EndOfInput),
            State::Reconnecting(at) => self.reconnect(*at),
            State::Connected(_) => self.read(out),
        }
    }

    /// A socket cannot be rewound: the state is only which server to read from, so a
    /// restored reader connects again and what the server sent while the job was down, or
    /// had not been emitted yet, is lost (as with Flink's socket source).
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<SocketSplit>> {
        Ok(match self.state {
            State::Ended => Vec::new(),
            _ => self.split.iter().cloned().collect(),
        })
    }

    fn close(&mut self) -> Result<()> {
        self.state = State::Ended;
        Ok(())
    }
}

impl SocketTextReader {
    /// Emits buffered lines, or reads once from the socket and emits what arrived.
    fn read(&mut self, out: &mut SourceOutput<String>) -> Result<ReaderStatus> {
        let emitted = self.emit_lines(out)?;
        if emitted > 0 || out.remaining() == 0 {
            // Hand these over before a read that may wait.
            return Ok(ReaderStatus::MoreAvailable);
        }
        self.compact();
        let State::Connected(stream) = &mut self.state else {
            return Ok(ReaderStatus::NothingAvailable);
        };
        match stream.read(&mut self.chunk) {
            Ok(0) => self.connection_closed(out),
            Ok(n) => {
                self.pending.extend_from_slice(&self.chunk[..n]);
                self.emit_lines(out)?;
                Ok(ReaderStatus::MoreAvailable)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Ok(ReaderStatus::NothingAvailable)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(ReaderStatus::MoreAvailable),
            Err(source) => Err(EddyError::Network {
                action: "cannot read from socket source at",
                address: self.address.clone(),
                source,
            }),
        }
    }

    /// Emits complete lines from `pending` while `out` has room; returns how many.
    fn emit_lines(&mut self, out: &mut SourceOutput<String>) -> Result<usize> {
        let mut emitted = 0;
        while out.remaining() > 0 {
            let rest = &self.pending[self.consumed..];
            let Some(len) = rest.iter().position(|&b| b == self.delimiter) else {
                break;
            };
            let line = self.decode(&rest[..len])?;
            self.consumed += len + 1;
            out.collect(line);
            emitted += 1;
        }
        Ok(emitted)
    }

    fn compact(&mut self) {
        if self.consumed > 0 {
            self.pending.drain(..self.consumed);
            self.consumed = 0;
        }
    }

    /// The server closed the connection: emit the unterminated rest, then reconnect or end.
    fn connection_closed(&mut self, out: &mut SourceOutput<String>) -> Result<ReaderStatus> {
        if self.consumed < self.pending.len() {
            let line = self.decode(&self.pending[self.consumed..])?;
            out.collect(line);
        }
        self.pending.clear();
        self.consumed = 0;
        if self.may_retry() {
            tracing::info!(address = %self.address, "socket source connection closed, reconnecting");
            self.state = State::Reconnecting(Instant::now() + self.retry_delay);
            Ok(ReaderStatus::MoreAvailable)
        } else {
            tracing::info!(address = %self.address, "socket source connection closed, stream ends");
            self.state = State::Ended;
            Ok(ReaderStatus::EndOfInput)
        }
    }

    fn may_retry(&self) -> bool {
        self.max_retry < 0 || self.retries < self.max_retry
    }

    /// Waits at most [`READ_TIMEOUT`] per call, so the task still sees cancellation.
    fn reconnect(&mut self, at: Instant) -> Result<ReaderStatus> {
        let now = Instant::now();
        if now < at {
            std::thread::sleep((at - now).min(READ_TIMEOUT));
            return Ok(ReaderStatus::NothingAvailable);
        }
        let Some(split) = &self.split else {
            return Ok(ReaderStatus::NeedsSplit);
        };
        self.retries += 1;
        match connect(split, self.connect_timeout) {
            Ok(stream) => {
                self.state = State::Connected(stream);
                Ok(ReaderStatus::MoreAvailable)
            }
            Err(e) if self.may_retry() => {
                tracing::warn!(address = %self.address, error = %e, "socket source reconnection failed");
                self.state = State::Reconnecting(Instant::now() + self.retry_delay);
                Ok(ReaderStatus::NothingAvailable)
            }
            Err(e) => Err(e),
        }
    }

    fn decode(&self, line: &[u8]) -> Result<String> {
        let line = if self.delimiter == b'\n' { line.strip_suffix(b"\r").unwrap_or(line) } else { line };
        match std::str::from_utf8(line) {
            Ok(text) => Ok(text.to_owned()),
            Err(e) => Err(EddyError::BadInput {
                location: format!("socket source at {}", self.address),
                reason: format!("a line is not valid UTF-8: {e}"),
            }),
        }
    }
}

/// Connects to the first address of `split` that accepts, with the reader's read timeout set.
fn connect(split: &SocketSplit, timeout: Duration) -> Result<TcpStream> {
    let address = split.address();
    let network_error = |source| EddyError::Network {
        action: "cannot connect to socket source at",
        address: address.clone(),
        source,
    };
    let addrs: Vec<SocketAddr> =
        (split.host.as_str(), split.port).to_socket_addrs().map_err(network_error)?.collect();
    let mut last_error = std::io::Error::new(ErrorKind::NotFound, "the host name resolves to no address");
    for addr in addrs {
        match connect_addr(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = e,
        }
    }
    Err(network_error(last_error))
}

fn connect_addr(addr: &SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = if timeout.is_zero() {
        TcpStream::connect(addr)?
    } else {
        TcpStream::connect_timeout(addr, timeout)?
    };
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::thread;

    fn ctx(subtask_index: usize) -> ReaderContext {
        ReaderContext { subtask_index, parallelism: 1, batch_size: 3 }
    }

    /// Polls until the end of input, with a generous limit so a bug fails instead of hanging.
    fn read_to_end(reader: &mut SocketTextReader, capacity: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut out = SourceOutput::new(capacity);
        let mut lines = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no end of input; got {lines:?}");
            let status = reader.poll_next(&mut out).unwrap();
            let batch = out.take();
            assert!(batch.len() <= capacity);
            lines.extend(batch.values);
            match status {
                ReaderStatus::EndOfInput => return lines,
                ReaderStatus::NeedsSplit => panic!("the reader has its split"),
                ReaderStatus::MoreAvailable | ReaderStatus::NothingAvailable => {}
            }
        }
    }

    /// A server that serves each of `connections` to one client, in turn, then closes.
    fn serve(connections: Vec<Vec<&'static [u8]>>) -> (u16, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            for writes in connections {
                let (mut conn, _) = listener.accept().unwrap();
                for bytes in writes {
                    conn.write_all(bytes).unwrap();
                    conn.flush().unwrap();
                    // Lets the reader see the writes as separate reads.
                    thread::sleep(Duration::from_millis(20));
                }
            }
        });
        (port, server)
    }

    fn assigned_reader(source: &SocketTextSource) -> SocketTextReader {
        let mut enumerator = source.create_enumerator(1).unwrap();
        let mut reader = source.create_reader(&ctx(0)).unwrap();
        let SplitAssignment::Split(split) = enumerator.request_split(0).unwrap() else {
            panic!("the first reader gets the split");
        };
        reader.add_split(split).unwrap();
        reader
    }

    #[test]
    fn reads_lines_until_the_server_closes() {
        let writes: Vec<&[u8]> = vec![b"hello\nwor", b"ld\r\n\nwindows\r\n", b"one\ntwo\nthree\nfour\nlast"];
        let (port, server) = serve(vec![writes]);
        let mut reader = assigned_reader(&SocketTextSource::new("127.0.0.1", port));
        let lines = read_to_end(&mut reader, 2);
        assert_eq!(lines, ["hello", "world", "", "windows", "one", "two", "three", "four", "last"]);
        let mut out = SourceOutput::new(2);
        assert_eq!(reader.poll_next(&mut out).unwrap(), ReaderStatus::EndOfInput);
        server.join().unwrap();
    }

    #[test]
    fn custom_delimiter_keeps_carriage_returns() {
        let (port, server) = serve(vec![vec![b"a\r;b;c"]]);
        let source = SocketTextSource::new("localhost", port).with_delimiter(b';');
        let mut reader = assigned_reader(&source);
        assert_eq!(read_to_end(&mut reader, 8), ["a\r", "b", "c"]);
        server.join().unwrap();
    }

    #[test]
    fn reconnects_when_asked_to_retry() {
        let (port, server) = serve(vec![vec![b"first\npart"], vec![b"second\n"]]);
        let mut source = SocketTextSource::new("127.0.0.1", port).with_max_retry(1);
        source.retry_delay = Duration::from_millis(10);
        let mut reader = assigned_reader(&source);
        assert_eq!(read_to_end(&mut reader, 8), ["first", "part", "second"]);
        server.join().unwrap();
    }

    #[test]
    fn only_the_first_reader_gets_the_split() {
        let source = SocketTextSource::new("localhost", 1);
        let mut enumerator = source.create_enumerator(2).unwrap();
        match enumerator.request_split(1).unwrap() {
            SplitAssignment::Split(s) => assert_eq!(s.split_id(), "localhost:1"),
            other => panic!("expected the split, got {other:?}"),
        }
        assert!(matches!(enumerator.request_split(0).unwrap(), SplitAssignment::NoMoreSplits));
        let mut reader = source.create_reader(&ctx(0)).unwrap();
        let mut out = SourceOutput::new(4);
        assert_eq!(reader.poll_next(&mut out).unwrap(), ReaderStatus::NeedsSplit);
    }

    #[test]
    fn refused_connection_is_a_network_error_naming_the_address() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let source = SocketTextSource::new("127.0.0.1", port);
        let mut reader = source.create_reader(&ctx(0)).unwrap();
        let err = reader.add_split(SocketSplit { host: "127.0.0.1".into(), port }).unwrap_err();
        let want = format!("127.0.0.1:{port}");
        assert!(matches!(&err, EddyError::Network { address, .. } if *address == want), "{err}");
        assert!(err.to_string().contains(&want), "{err}");
    }

    #[test]
    fn unresolvable_host_is_a_network_error() {
        let source = SocketTextSource::new("no-such-host.invalid", 9999);
        let mut reader = source.create_reader(&ctx(0)).unwrap();
        let split = SocketSplit { host: "no-such-host.invalid".into(), port: 9999 };
        let err = reader.add_split(split).unwrap_err();
        assert!(err.to_string().contains("no-such-host.invalid:9999"), "{err}");
    }

    #[test]
    fn invalid_utf8_is_bad_input_naming_the_address() {
        let (port, server) = serve(vec![vec![b"ok\n\xff\xfe\n"]]);
        let mut reader = assigned_reader(&SocketTextSource::new("127.0.0.1", port));
        let mut out = SourceOutput::new(8);
        let deadline = Instant::now() + Duration::from_secs(30);
        let err = loop {
            assert!(Instant::now() < deadline, "no error");
            match reader.poll_next(&mut out) {
                Ok(ReaderStatus::EndOfInput) => panic!("expected an error"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(matches!(&err, EddyError::BadInput { location, .. } if location.contains(&port.to_string())));
        server.join().unwrap();
    }
}
