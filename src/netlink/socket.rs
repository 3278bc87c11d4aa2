//! A small synchronous rtnetlink socket: send one request, collect its answers; split
//! datagrams into messages and messages into attributes, with every length checked.

use super::{NetlinkError, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_NOOP: u16 = 1;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLMSG_OVERRUN: u16 = 4;
pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_NEWNEIGH: u16 = 28;
pub(crate) const RTM_DELNEIGH: u16 = 29;
/// Set on dump messages when the dumped table changed during the dump.
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;
/// Error message flags: the request's payload was left out / TLVs follow.
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Netlink attribute type bits that are flags, not part of the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Receive buffer: large enough for the 32 KiB datagrams the kernel builds for dumps.
const RECV_BUF: usize = 64 * 1024;
/// How long a request may wait for the kernel's answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One netlink message inside a received datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawMsg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub port: u32,
    pub payload: &'a [u8],
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// Splits a datagram into netlink messages; yields one error and stops at the first
/// header that does not fit.
pub(crate) fn messages(buf: &[u8]) -> Messages<'_> {
    Messages {
        rest: buf,
        failed: false,
    }
}

pub(crate) struct Messages<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Messages<'a> {
    type Item = std::result::Result<RawMsg<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        let len = match u32_at(rest, 0) {
            Some(l) if rest.len() >= NLMSG_HDRLEN => l as usize,
            _ => {
                self.failed = true;
                return Some(Err(format!("{} trailing bytes", rest.len())));
            }
        };
        if len < NLMSG_HDRLEN || len > rest.len() {
            self.failed = true;
            return Some(Err(format!(
                "message length {len} with {} bytes left in the datagram",
                rest.len()
            )));
        }
        let msg = RawMsg {
            ty: u16_at(rest, 4).unwrap_or(0),
            flags: u16_at(rest, 6).unwrap_or(0),
            seq: u32_at(rest, 8).unwrap_or(0),
            port: u32_at(rest, 12).unwrap_or(0),
            payload: &rest[NLMSG_HDRLEN..len],
        };
        self.rest = &rest[align4(len).min(rest.len())..];
        Some(Ok(msg))
    }
}

/// Iterates over the attributes (type without flag bits, value) in `buf`; stops quietly
/// at a malformed one.
pub(crate) fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { rest: buf }
}

pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        let len = u16_at(rest, 0)? as usize;
        let kind = u16_at(rest, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            self.rest = &[];
            return None;
        }
        let value = &rest[4..len];
        self.rest = &rest[align4(len).min(rest.len())..];
        Some((kind, value))
    }
}

/// Decodes an `NLMSG_ERROR` payload: 0 is an acknowledgement; otherwise the error and
/// the kernel's extended-ack message if present.
pub(crate) fn decode_error(
    msg: &RawMsg<'_>,
) -> std::result::Result<(), (io::Error, Option<String>)> {
    let Some(code) = u32_at(msg.payload, 0).map(|c| c as i32) else {
        return Err((
            io::Error::new(io::ErrorKind::InvalidData, "truncated NLMSG_ERROR"),
            None,
        ));
    };
    if code == 0 {
        return Ok(());
    }
    let err = io::Error::from_raw_os_error(code.checked_neg().unwrap_or(i32::MAX));
    let mut extack = None;
    if msg.flags & NLM_F_ACK_TLVS != 0 {
        // After the error code: the request's header, and its payload unless capped.
        let orig_len = u32_at(msg.payload, 4).unwrap_or(0) as usize;
        let orig = if msg.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align4(orig_len.max(NLMSG_HDRLEN))
        };
        if let Some(tlvs) = msg.payload.get(4usize.saturating_add(orig)..) {
            extack = attrs(tlvs)
                .find(|(k, _)| *k == NLMSGERR_ATTR_MSG)
                .map(|(_, v)| c_string(v));
        }
    }
    Err((err, extack))
}

/// Encodes one netlink attribute (for attributes `netlink-packet-route` lacks).
pub(crate) fn encode_attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity(align4(len));
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(len), 0);
    out
}

/// A NUL-terminated (or not) byte string as text.
pub(crate) fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

fn sock_err(op: &'static str) -> impl FnOnce(io::Error) -> NetlinkError {
    move |source| NetlinkError::Socket { op, source }
}

/// A non-blocking `NETLINK_ROUTE` socket connected to the kernel.
pub(crate) struct RtSocket {
    sock: Socket,
    port: u32,
    seq: u32,
    buf: Vec<u8>,
}

impl RtSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(sock_err("socket(NETLINK_ROUTE)"))?;
        let addr = sock.bind_auto().map_err(sock_err("bind"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(sock_err("connect"))?;
        sock.set_non_blocking(true)
            .map_err(sock_err("set O_NONBLOCK"))?;
        // Optional niceties: error strings from the kernel, short error messages.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        Ok(RtSocket {
            sock,
            port: addr.port_number(),
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    pub fn port(&self) -> u32 {
        self.port
    }

    /// Sends `msg` with `NLM_F_REQUEST | flags` and `extra` (encoded attributes, see
    /// [`encode_attr`]) appended; returns its sequence number.
    pub fn send(&mut self, msg: RouteNetlinkMessage, flags: u16, extra: &[u8]) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut bytes = vec![0u8; m.buffer_len()];
        m.serialize(&mut bytes);
        if !extra.is_empty() {
            bytes.extend_from_slice(extra);
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            bytes[..4].copy_from_slice(&len.to_ne_bytes());
        }
        let n = self.sock.send(&bytes, 0).map_err(sock_err("send"))?;
        if n != bytes.len() {
            return Err(NetlinkError::Socket {
                op: "send",
                source: io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("sent {n} of {} bytes", bytes.len()),
                ),
            });
        }
        Ok(self.seq)
    }

    /// Receives one datagram without blocking. `Ok(None)`: nothing queued.
    /// Errors are the socket's (`ENOBUFS` means multicast messages were lost).
    pub fn try_recv(&mut self) -> io::Result<Option<&[u8]>> {
        self.buf.clear();
        if self.buf.capacity() < RECV_BUF {
            self.buf.reserve(RECV_BUF);
        }
        match self.sock.recv(&mut self.buf, libc::MSG_TRUNC) {
            Ok(n) if n > self.buf.len() => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("datagram of {n} bytes truncated to {}", self.buf.len()),
            )),
            Ok(_) => Ok(Some(&self.buf)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits until the socket is readable or `timeout` passes; true if readable.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        wait_readable(self.sock.as_raw_fd(), timeout)
    }

    /// Sends a request and passes each answer (other than acks, errors and the end of a
    /// dump) to `each`. Dumps end at `NLMSG_DONE`; other requests are sent with
    /// `NLM_F_ACK` and end at the acknowledgement. `what` names the request in errors.
    pub fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        extra: &[u8],
        what: &dyn Fn() -> String,
        mut each: impl FnMut(&RawMsg<'_>) -> Result<()>,
    ) -> Result<()> {
        let flags = if flags & NLM_F_DUMP == NLM_F_DUMP {
            flags
        } else {
            flags | NLM_F_ACK
        };
        let seq = self.send(msg, flags, extra)?;
        let port = self.port;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let data = match self.try_recv() {
                Ok(Some(d)) => d,
                Ok(None) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(NetlinkError::Timeout {
                            request: what(),
                            timeout: REQUEST_TIMEOUT,
                        });
                    }
                    self.wait(left).map_err(sock_err("poll"))?;
                    continue;
                }
                Err(e) => {
                    return Err(NetlinkError::Socket {
                        op: "recv",
                        source: e,
                    })
                }
            };
            for m in messages(data) {
                let m = m.map_err(|detail| NetlinkError::Malformed {
                    context: "reply",
                    detail,
                })?;
                if m.seq != seq || (m.port != port && m.port != 0) {
                    continue; // not ours (a stale answer to an earlier request)
                }
                match m.ty {
                    NLMSG_NOOP | NLMSG_OVERRUN => {}
                    NLMSG_ERROR => {
                        return decode_error(&m).map_err(|(source, extack)| NetlinkError::Kernel {
                            request: what(),
                            extack,
                            source,
                        });
                    }
                    NLMSG_DONE => {
                        // A dump's end carries an error code (0 = complete).
                        let code = u32_at(m.payload, 0).map(|c| c as i32).unwrap_or(0);
                        if code < 0 {
                            return Err(NetlinkError::Kernel {
                                request: what(),
                                extack: None,
                                source: io::Error::from_raw_os_error(-code),
                            });
                        }
                        return Ok(());
                    }
                    _ => each(&m)?,
                }
            }
        }
    }
}

/// Waits until `fd` is readable or `timeout` passes; true if readable. An interrupted
/// wait counts as "not readable yet".
pub(crate) fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    wait_any(&[fd], timeout)
}

/// Waits until one of `fds` is readable or `timeout` passes; true if one is. An
/// interrupted wait counts as "not readable yet".
pub fn wait_any(fds: &[RawFd], timeout: Duration) -> io::Result<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Round up so that a sub-millisecond timeout still waits a little.
    let ms = timeout
        .as_micros()
        .div_ceil(1000)
        .min(libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: `pfds` holds `pfds.len()` initialised pollfds and lives across the call
    // (poll with no descriptors just sleeps).
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
}

/// Sets the socket's receive buffer to `bytes`, beyond `rmem_max` when privileged
/// (`SO_RCVBUFFORCE` needs CAP_NET_ADMIN), else as far as `SO_RCVBUF` allows.
pub(crate) fn set_receive_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v: libc::c_int = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `v` is a c_int that outlives the call and the length passed is its
        // size; setsockopt only reads it.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
}
