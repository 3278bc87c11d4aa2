//! What `podfwd trace` and a running instance say over the control socket.
//!
//! The client sends one request line, `trace drops=0|1 count=N\n` (both keys optional:
//! all frames, no limit; `count=0` is no limit too). The server then streams records,
//! each `[u32 length][u8 kind][payload]`, the length (big-endian, like every integer
//! here) counting kind and payload:
//!
//! | kind | record | payload |
//! |------|--------|---------|
//! | 1 | hello  | `b"PFTR"`, u8 version (1), u16 snap length, u16 port count, per port u8 length + UTF-8 name |
//! | 2 | frame  | u64 time (ns since the Unix epoch), u16 worker's CPU, u16 ingress port, u8 verdict (0 tx, 1 to_kernel, 2 drop), u16 tx port (0 unless tx), u8 length + drop reason name (empty unless drop), u32 original length, then the captured bytes |
//! | 3 | missed | u64: frames this client missed so far (the rings or its queue were full), also sent every 250 ms as a heartbeat |
//! | 4 | error  | UTF-8 message; the server closes after it |
//!
//! The hello comes first; a reply starting with `{` instead is the JSON error of a
//! control socket that does not serve `trace` (an older podfwd).

use super::ring::Slot;
use crate::nexthop::PortId;
use crate::pipeline::Verdict;
use std::fmt;
use std::io::{self, Read};

/// The protocol version in the hello record.
pub const VERSION: u8 = 1;
/// The hello's magic bytes.
pub const MAGIC: &[u8; 4] = b"PFTR";
/// The longest record a reader accepts (a frame record is at most ~300 bytes).
pub const MAX_RECORD: usize = 64 * 1024;

const KIND_HELLO: u8 = 1;
const KIND_FRAME: u8 = 2;
const KIND_MISSED: u8 = 3;
const KIND_ERROR: u8 = 4;

/// A client's request: which frames and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceRequest {
    /// Only dropped frames.
    pub drops_only: bool,
    /// Stop after this many frames (`None`: until the client leaves).
    pub count: Option<u64>,
}

/// A request line the server does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("trace request {line:?} does not start with \"trace\"")]
    NotTrace { line: String },
    #[error("trace request: {key}={value:?} is not valid (expected {expected})")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("trace request: unknown key {key:?} (known: drops, count)")]
    UnknownKey { key: String },
}

impl TraceRequest {
    /// The request line, newline included.
    pub fn to_line(&self) -> String {
        format!(
            "trace drops={} count={}\n",
            u8::from(self.drops_only),
            self.count.unwrap_or(0)
        )
    }

    /// Parses a request line (with or without its newline).
    pub fn parse(line: &str) -> Result<TraceRequest, RequestError> {
        let mut words = line.split_whitespace();
        if words.next() != Some("trace") {
            return Err(RequestError::NotTrace {
                line: line.trim().to_string(),
            });
        }
        let mut req = TraceRequest::default();
        for w in words {
            let (key, value) = w.split_once('=').unwrap_or((w, ""));
            let bad = |expected| RequestError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
                expected,
            };
            match key {
                "drops" => {
                    req.drops_only = match value {
                        "0" => false,
                        "1" => true,
                        _ => return Err(bad("0 or 1")),
                    }
                }
                "count" => {
                    let n: u64 = value.parse().map_err(|_| bad("a number of frames"))?;
                    req.count = (n > 0).then_some(n);
                }
                _ => {
                    return Err(RequestError::UnknownKey {
                        key: key.to_string(),
                    })
                }
            }
        }
        Ok(req)
    }
}

/// A verdict as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireVerdict {
    Tx(PortId),
    ToKernel,
    /// The drop reason's snake_case name (`DropReason::name`).
    Drop(String),
}

impl fmt::Display for WireVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireVerdict::Tx(p) => write!(f, "tx port {p}"),
            WireVerdict::ToKernel => f.write_str("to_kernel"),
            WireVerdict::Drop(r) => write!(f, "drop {r}"),
        }
    }
}

/// One traced frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRecord {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The CPU of the worker that saw the frame.
    pub worker: u16,
    pub ingress: PortId,
    pub verdict: WireVerdict,
    /// The frame's length at the verdict point.
    pub orig_len: u32,
    /// Its first bytes (at most the snap length).
    pub data: Vec<u8>,
}

/// One record of the stream, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Hello {
        version: u8,
        snap_len: u16,
        /// Port names by port id.
        ports: Vec<String>,
    },
    Frame(FrameRecord),
    Missed(u64),
    Error(String),
}

fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

fn finish(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a hello record.
pub fn encode_hello(out: &mut Vec<u8>, snap_len: u16, ports: &[String]) {
    let at = begin(out, KIND_HELLO);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&snap_len.to_be_bytes());
    out.extend_from_slice(&(ports.len() as u16).to_be_bytes());
    for p in ports {
        let name = &p.as_bytes()[..p.len().min(255)];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
    }
    finish(out, at);
}

/// Appends a frame record for a ring slot of worker `worker`.
pub fn encode_frame(out: &mut Vec<u8>, worker: u16, s: &Slot) {
    let at = begin(out, KIND_FRAME);
    out.extend_from_slice(&s.ts_ns.to_be_bytes());
    out.extend_from_slice(&worker.to_be_bytes());
    out.extend_from_slice(&s.ingress.to_be_bytes());
    let (tag, port, reason) = match s.verdict {
        Verdict::Tx(p) => (0u8, p, ""),
        Verdict::ToKernel => (1, 0, ""),
        Verdict::Drop(r) => (2, 0, r.name()),
    };
    out.push(tag);
    out.extend_from_slice(&port.to_be_bytes());
    out.push(reason.len() as u8);
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(&s.orig_len.to_be_bytes());
    out.extend_from_slice(s.bytes());
    finish(out, at);
}

/// Appends a missed record (the client's running total).
pub fn encode_missed(out: &mut Vec<u8>, total: u64) {
    let at = begin(out, KIND_MISSED);
    out.extend_from_slice(&total.to_be_bytes());
    finish(out, at);
}

/// Appends an error record.
pub fn encode_error(out: &mut Vec<u8>, msg: &str) {
    let at = begin(out, KIND_ERROR);
    out.extend_from_slice(msg.as_bytes());
    finish(out, at);
}

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the control socket does not serve trace (an older podfwd?); it answered: {reply}")]
    NotTrace { reply: String },
    #[error("bad trace record: {why}")]
    BadRecord { why: String },
}

fn bad(why: impl Into<String>) -> ProtocolError {
    ProtocolError::BadRecord { why: why.into() }
}

/// Reads records off a stream. Keeps partial records across read timeouts, so a caller
/// may set one and poll a stop flag between calls.
pub struct RecordReader<R> {
    inner: R,
    buf: Vec<u8>,
    started: bool,
}

impl<R: Read> RecordReader<R> {
    pub fn new(inner: R) -> Self {
        RecordReader {
            inner,
            buf: Vec::with_capacity(8192),
            started: false,
        }
    }

    /// The next record; `Ok(None)` at a clean end of stream. A read timeout is returned
    /// as the `Io` error (`WouldBlock`/`TimedOut`) with nothing lost.
    pub fn next_record(&mut self) -> Result<Option<Record>, ProtocolError> {
        loop {
            if !self.started && self.buf.first() == Some(&b'{') {
                // The JSON error line of a control socket without trace: read it whole.
                if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                    let reply = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    return Err(ProtocolError::NotTrace { reply });
                }
            } else if self.buf.len() >= 4 {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if len == 0 || len > MAX_RECORD {
                    return Err(bad(format!("record length {len} (1..={MAX_RECORD})")));
                }
                if self.buf.len() >= 4 + len {
                    let rec = decode(&self.buf[4..4 + len])?;
                    self.buf.drain(..4 + len);
                    if !self.started && !matches!(rec, Record::Hello { .. } | Record::Error(_)) {
                        return Err(bad("the stream does not begin with a hello record"));
                    }
                    self.started = true;
                    return Ok(Some(rec));
                }
            }
            let mut tmp = [0u8; 8192];
            let n = self.inner.read(&mut tmp)?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else if !self.started && self.buf[0] == b'{' {
                    let reply = String::from_utf8_lossy(&self.buf).trim().to_string();
                    Err(ProtocolError::NotTrace { reply })
                } else {
                    Err(bad(format!(
                        "the stream ended inside a record ({} bytes left over)",
                        self.buf.len()
                    )))
                };
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
}

/// A cursor over a record's payload.
struct Cur<'a>(&'a [u8], &'static str);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.0.len() < n {
            return Err(bad(format!("{} record truncated", self.1)));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn str8(&mut self) -> Result<String, ProtocolError> {
        let n = usize::from(self.u8()?);
        let what = self.1;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| bad(format!("{what} record: a name is not UTF-8")))
    }
}

/// Decodes one record (kind and payload, without the length).
pub fn decode(rec: &[u8]) -> Result<Record, ProtocolError> {
    let (&kind, payload) = rec.split_first().ok_or_else(|| bad("empty record"))?;
    match kind {
        KIND_HELLO => {
            let mut c = Cur(payload, "hello");
            if c.take(4)? != MAGIC {
                return Err(bad("hello record without the PFTR magic"));
            }
            let version = c.u8()?;
            if version != VERSION {
                return Err(bad(format!(
                    "protocol version {version} (this client speaks {VERSION})"
                )));
            }
            let snap_len = c.u16()?;
            let n = c.u16()?;
            let ports = (0..n).map(|_| c.str8()).collect::<Result<_, _>>()?;
            Ok(Record::Hello {
                version,
                snap_len,
                ports,
            })
        }
        KIND_FRAME => {
            let mut c = Cur(payload, "frame");
            let ts_ns = c.u64()?;
            let worker = c.u16()?;
            let ingress = c.u16()?;
            let tag = c.u8()?;
            let port = c.u16()?;
            let reason = c.str8()?;
            let verdict = match tag {
                0 => WireVerdict::Tx(port),
                1 => WireVerdict::ToKernel,
                2 => WireVerdict::Drop(reason),
                t => return Err(bad(format!("frame record: verdict tag {t} (0..=2)"))),
            };
            let orig_len = c.u32()?;
            Ok(Record::Frame(FrameRecord {
                ts_ns,
                worker,
                ingress,
                verdict,
                orig_len,
                data: c.0.to_vec(),
            }))
        }
        KIND_MISSED => Ok(Record::Missed(Cur(payload, "missed").u64()?)),
        KIND_ERROR => Ok(Record::Error(String::from_utf8_lossy(payload).into_owned())),
        k => Err(bad(format!("record kind {k} (1..=4)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::DropReason;
    use crate::trace::ring::ring;

    #[test]
    fn request_lines_round_trip_and_bad_ones_name_the_key_and_value() {
        for req in [
            TraceRequest::default(),
            TraceRequest {
                drops_only: true,
                count: Some(7),
            },
        ] {
            assert_eq!(TraceRequest::parse(&req.to_line()), Ok(req));
        }
        assert_eq!(TraceRequest::parse("trace\n"), Ok(TraceRequest::default()));
        let e = TraceRequest::parse("trace drops=yes").unwrap_err();
        assert_eq!(
            e.to_string(),
            "trace request: drops=\"yes\" is not valid (expected 0 or 1)"
        );
        let e = TraceRequest::parse("trace count=-1").unwrap_err();
        assert!(e.to_string().contains("count=\"-1\""), "{e}");
        assert!(matches!(
            TraceRequest::parse("trace snap=9"),
            Err(RequestError::UnknownKey { .. })
        ));
        assert!(matches!(
            TraceRequest::parse("stats"),
            Err(RequestError::NotTrace { .. })
        ));
    }

    #[test]
    fn records_round_trip_through_a_reader_that_gets_one_byte_at_a_time() {
        let (mut p, mut c) = ring(4);
        p.push(
            1_700_000_000_123_456_789,
            1,
            Verdict::Drop(DropReason::UnknownVtep),
            &[0xaa; 300],
            300,
        );
        p.push(5, 0, Verdict::Tx(1), &[1, 2, 3], 3);
        let mut out = Vec::new();
        encode_hello(&mut out, 256, &["eth0".into(), "veth-pod".into()]);
        c.drain(|s| encode_frame(&mut out, 3, s));
        encode_missed(&mut out, 42);
        encode_error(&mut out, "bye");

        /// Hands out one byte per read: every record boundary falls mid-read.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut r = RecordReader::new(Trickle(&out));
        let mut got = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            got.push(rec);
        }
        assert_eq!(
            got,
            [
                Record::Hello {
                    version: 1,
                    snap_len: 256,
                    ports: vec!["eth0".into(), "veth-pod".into()]
                },
                Record::Frame(FrameRecord {
                    ts_ns: 1_700_000_000_123_456_789,
                    worker: 3,
                    ingress: 1,
                    verdict: WireVerdict::Drop("unknown_vtep".into()),
                    orig_len: 300,
                    data: vec![0xaa; 256],
                }),
                Record::Frame(FrameRecord {
                    ts_ns: 5,
                    worker: 3,
                    ingress: 0,
                    verdict: WireVerdict::Tx(1),
                    orig_len: 3,
                    data: vec![1, 2, 3],
                }),
                Record::Missed(42),
                Record::Error("bye".into()),
            ]
        );
    }

    #[test]
    fn a_json_reply_is_reported_as_a_socket_without_trace() {
        let reply = b"{\"error\":\"unknown request \\\"trace\\\"; try stats\"}\n";
        let e = RecordReader::new(&reply[..]).next_record().unwrap_err();
        assert!(matches!(e, ProtocolError::NotTrace { .. }), "{e}");
        assert!(e.to_string().contains("try stats"), "{e}");
    }

    #[test]
    fn garbage_is_a_clear_error_not_a_panic() {
        let e = RecordReader::new(&[0xff, 0xff, 0xff, 0xff, 1][..])
            .next_record()
            .unwrap_err();
        assert!(e.to_string().contains("record length 4294967295"), "{e}");
        let mut out = Vec::new();
        encode_missed(&mut out, 1);
        let e = RecordReader::new(&out[..]).next_record().unwrap_err();
        assert!(e.to_string().contains("hello"), "{e}");
        assert!(decode(&[2, 0, 0]).is_err());
        assert!(decode(&[9]).is_err());
    }
}
