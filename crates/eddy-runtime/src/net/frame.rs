//! The frame layout: writing headers, and reading whole frames off a stream.

use std::io::{self, Read};

use super::ChannelId;

/// What a connection's two ends send each other first.
pub(crate) const HANDSHAKE: [u8; 6] = *b"EDDY\x00\x01";

/// Bytes before the payload: length, kind and channel id.
pub(crate) const HEADER_BYTES: usize = 4 + 1 + CHANNEL_ID_BYTES;
const CHANNEL_ID_BYTES: usize = 8 + 4 + 4 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Data = 0,
    Credit = 1,
    Close = 2,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Data),
            1 => Some(Kind::Credit),
            2 => Some(Kind::Close),
            _ => None,
        }
    }
}

/// Starts a frame in `buf` (cleared first): the length is left for [`finish`].
pub(crate) fn begin(buf: &mut Vec<u8>, kind: Kind, id: ChannelId) {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    buf.push(kind as u8);
    buf.extend_from_slice(&id.job.to_be_bytes());
    buf.extend_from_slice(&id.edge.to_be_bytes());
    buf.extend_from_slice(&id.producer.to_be_bytes());
    buf.extend_from_slice(&id.consumer.to_be_bytes());
}

/// Writes the length of the frame in `buf`; fails if it exceeds `max_frame_bytes`.
pub(crate) fn finish(buf: &mut [u8], max_frame_bytes: usize) -> Result<(), usize> {
    if buf.len() > max_frame_bytes || buf.len() - 4 > u32::MAX as usize {
        return Err(buf.len());
    }
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A whole frame: `kind` and `channel` from the header, the payload in the caller's buffer.
pub(crate) fn encode(kind: Kind, id: ChannelId, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_BYTES + payload.len());
    begin(&mut buf, kind, id);
    buf.extend_from_slice(payload);
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf
}

#[derive(Debug)]
pub(crate) struct Header {
    pub kind: Kind,
    pub channel: ChannelId,
}

/// Why reading a frame failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection between frames.
    Closed,
    Io(io::Error),
    /// The bytes are not a frame.
    Protocol(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Protocol("the peer closed the connection in the middle of a frame".into())
        } else {
            ReadError::Io(e)
        }
    }
}

/// Reads the next frame, its payload into `payload` (resized to fit).
pub(crate) fn read(
    r: &mut impl Read,
    max_frame_bytes: usize,
    payload: &mut Vec<u8>,
) -> Result<Header, ReadError> {
    let mut len = [0u8; 4];
    let first = loop {
        match r.read(&mut len) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    };
    if first == 0 {
        return Err(ReadError::Closed);
    }
    r.read_exact(&mut len[first..])?;
    let len = u32::from_be_bytes(len) as usize;
    if len + 4 > max_frame_bytes {
        return Err(ReadError::Protocol(format!(
            "a frame of {} bytes exceeds the limit of {max_frame_bytes} bytes",
            len + 4
        )));
    }
    if len + 4 < HEADER_BYTES {
        return Err(ReadError::Protocol(format!("a frame of {} bytes is shorter than its header", len + 4)));
    }
    let mut head = [0u8; HEADER_BYTES - 4];
    r.read_exact(&mut head)?;
    let kind = Kind::from_byte(head[0])
        .ok_or_else(|| ReadError::Protocol(format!("unknown frame kind {}", head[0])))?;
    let word = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let channel = ChannelId {
        job: u64::from_be_bytes([head[1], head[2], head[3], head[4], head[5], head[6], head[7], head[8]]),
        edge: word(9),
        producer: word(13),
        consumer: word(17),
    };
    payload.clear();
    payload.resize(len + 4 - HEADER_BYTES, 0);
    r.read_exact(payload)?;
    Ok(Header { kind, channel })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: ChannelId = ChannelId { job: 0x0102_0304_0506_0708, edge: 9, producer: 10, consumer: 11 };

    #[test]
    fn a_frame_reads_back_as_written() {
        let mut buf = Vec::new();
        begin(&mut buf, Kind::Credit, ID);
        buf.extend_from_slice(&7u32.to_be_bytes());
        finish(&mut buf, 1024).unwrap();
        assert_eq!(buf.len(), HEADER_BYTES + 4);
        assert_eq!(&buf[..5], &[0, 0, 0, 25, 1]);
        let mut payload = Vec::new();
        let h = read(&mut &buf[..], 1024, &mut payload).unwrap();
        assert_eq!((h.kind, h.channel), (Kind::Credit, ID));
        assert_eq!(payload, 7u32.to_be_bytes());
        assert_eq!(encode(Kind::Credit, ID, &7u32.to_be_bytes()), buf);
    }

    #[test]
    fn limits_and_garbage_are_refused() {
        let mut buf = encode(Kind::Data, ID, &[0; 100]);
        assert_eq!(finish(&mut buf, 100), Err(HEADER_BYTES + 100));
        let mut payload = Vec::new();
        let Err(ReadError::Protocol(msg)) = read(&mut &buf[..], 100, &mut payload) else { panic!() };
        assert!(msg.contains("exceeds the limit of 100 bytes"), "{msg}");
        let short = [0, 0, 0, 3, 0, 0, 0];
        assert!(matches!(read(&mut &short[..], 100, &mut payload), Err(ReadError::Protocol(_))));
        let mut unknown = encode(Kind::Data, ID, &[]);
        unknown[4] = 77;
        let Err(ReadError::Protocol(msg)) = read(&mut &unknown[..], 100, &mut payload) else { panic!() };
        assert!(msg.contains("unknown frame kind 77"));
        let truncated = &encode(Kind::Data, ID, &[1, 2, 3])[..HEADER_BYTES + 1];
        let Err(ReadError::Protocol(msg)) = read(&mut &truncated[..], 100, &mut payload) else { panic!() };
        assert!(msg.contains("middle of a frame"));
        assert!(matches!(read(&mut &[][..], 100, &mut payload), Err(ReadError::Closed)));
    }
}
