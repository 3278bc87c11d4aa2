//! The TUN worker: one mio event loop over the TUN device and the VXLAN socket.
//!
//! TUN -> prepend Ethernet -> pipeline -> VXLAN payload out of the UDP socket
//! (`sendmmsg`), or a rewritten Ethernet frame out of the AF_PACKET socket (host-gw).
//! UDP socket (`recvmmsg`) -> synthetic outer headers -> pipeline (validation and
//! decapsulation) -> inner IP packet written to the TUN.
//!
//! Every buffer is allocated once; a batch uses fixed-size stack arrays.

use super::frame::{self, ETH_OFFSET, IP_OFFSET, UDP_PAYLOAD_OFFSET};
use crate::counters::{Counters, SharedCounters};
use crate::nexthop::PortId;
use crate::pipeline::{Packet, Pipeline, Verdict};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Packets per batch: one pipeline window.
pub const BATCH: usize = 64;

/// The uplink's port id (plan: port 0).
pub const UPLINK: PortId = 0;
/// The TUN device's port id (plan: port 1).
pub const TUN: PortId = 1;

const TUN_TOKEN: Token = Token(0);
const UDP_TOKEN: Token = Token(1);

/// How long a full socket buffer is waited for before the rest of a batch is dropped.
const SEND_WAIT: Duration = Duration::from_millis(2);
const SEND_TRIES: usize = 8;

/// `UDP_SEGMENT` (linux/udp.h; not in the libc crate): the GSO segment size of a send.
const UDP_SEGMENT: libc::c_int = 103;

/// The most payload bytes one UDP GSO send carries (an IPv4 datagram's limit, less headers).
const GSO_MAX_BYTES: usize = 65_000;

/// A control message carrying `UDP_SEGMENT` (CMSG_SPACE(sizeof(u16)) on 64-bit Linux).
#[repr(C)]
#[derive(Clone, Copy)]
struct SegmentCmsg {
    hdr: libc::cmsghdr,
    size: u16,
    _pad: [u8; 6],
}

/// What the worker owns.
pub struct Worker {
    tun: RawFd,
    udp: Option<UdpSocket>,
    packet: Option<super::device::PacketSocket>,
    pipeline: Pipeline,
    node_ip: Ipv4Addr,
    vxlan_port: u16,
    /// Size of one packet buffer in `arena`.
    buf_size: usize,
    arena: Vec<u8>,
    /// The TUN's MTU: larger decapsulated TCP packets are segmented into `scratch`.
    tun_mtu: usize,
    scratch: Vec<u8>,
    /// Send runs of VXLAN datagrams to one peer as one UDP GSO super-packet; cleared
    /// if the kernel refuses one.
    gso: bool,
    lens: [usize; BATCH],
    counters: Counters,
    shared: Arc<SharedCounters>,
}

impl Worker {
    /// A worker over the TUN device `tun` (kept open by the caller until `run` returns),
    /// the VXLAN socket (vxlan/auto) and the uplink's packet socket (host-gw/auto).
    /// `max_packet` bounds the IP packets and VXLAN datagrams it must carry.
    pub fn new(
        tun: RawFd,
        udp: Option<UdpSocket>,
        packet: Option<super::device::PacketSocket>,
        pipeline: Pipeline,
        shared: Arc<SharedCounters>,
        max_packet: usize,
        tun_mtu: usize,
    ) -> Worker {
        let node = *pipeline.node();
        // A datagram is placed at UDP_PAYLOAD_OFFSET, an IP packet at IP_OFFSET (larger).
        let buf_size = (IP_OFFSET + max_packet + 63) & !63;
        Worker {
            tun,
            udp,
            packet,
            pipeline,
            node_ip: node.node_ip,
            vxlan_port: node.vxlan_port,
            buf_size,
            arena: vec![0; buf_size * BATCH],
            tun_mtu,
            scratch: vec![0; tun_mtu],
            gso: true,
            lens: [0; BATCH],
            counters: Counters::default(),
            shared,
        }
    }

    /// Runs until `stop` is set; an error is a socket or device failure.
    pub fn run(mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&self.tun), TUN_TOKEN, Interest::READABLE)?;
        if let Some(u) = &self.udp {
            poll.registry().register(
                &mut SourceFd(&u.as_raw_fd()),
                UDP_TOKEN,
                Interest::READABLE,
            )?;
        }
        let mut events = Events::with_capacity(8);
        // mio is edge-triggered: a ready source is drained until it would block.
        let mut tun_ready = true;
        let mut udp_ready = self.udp.is_some();
        let mut batches = 0u32;
        // Relaxed: a stop flag that only needs to be seen eventually.
        while !stop.load(Ordering::Relaxed) {
            if !tun_ready && !udp_ready {
                self.shared.publish(&self.counters);
                match poll.poll(&mut events, Some(Duration::from_millis(100))) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                for ev in events.iter() {
                    match ev.token() {
                        TUN_TOKEN => tun_ready = true,
                        UDP_TOKEN => udp_ready = true,
                        _ => {}
                    }
                }
            }
            if tun_ready {
                tun_ready = self.tun_batch()?;
            }
            if udp_ready {
                udp_ready = self.udp_batch()?;
            }
            batches = batches.wrapping_add(1);
            if batches % 64 == 0 {
                self.shared.publish(&self.counters);
            }
        }
        self.shared.publish(&self.counters);
        Ok(())
    }

    /// Reads up to a batch from the TUN and forwards it; true if more may be queued.
    fn tun_batch(&mut self) -> io::Result<bool> {
        let bs = self.buf_size;
        let mut n = 0;
        let mut more = true;
        while n < BATCH {
            let buf = &mut self.arena[n * bs..(n + 1) * bs];
            let room = &mut buf[IP_OFFSET..];
            // SAFETY: `room` is a writable slice of the length given.
            let r = unsafe { libc::read(self.tun, room.as_mut_ptr().cast(), room.len()) };
            if r <= 0 {
                let e = io::Error::last_os_error();
                if r == 0 || e.kind() == io::ErrorKind::WouldBlock {
                    more = false;
                    break;
                }
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let len = r as usize;
            frame::prepend_ethernet(buf);
            // The kernel counted this node's hop when it routed the packet into the TUN.
            frame::undo_ttl_decrement(&mut buf[IP_OFFSET..IP_OFFSET + len]);
            self.lens[n] = IP_OFFSET - ETH_OFFSET + len;
            n += 1;
        }
        if n > 0 {
            self.forward(n, ETH_OFFSET, TUN);
        }
        Ok(more)
    }

    /// Receives up to a batch of VXLAN datagrams and forwards them; true if more may be
    /// queued.
    fn udp_batch(&mut self) -> io::Result<bool> {
        let Some(udp) = &self.udp else {
            return Ok(false);
        };
        let fd = udp.as_raw_fd();
        let bs = self.buf_size;
        // SAFETY: these C structs are plain old data; zero is a valid value.
        let mut names: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, ((m, iov), name)) in msgs
            .iter_mut()
            .zip(iovs.iter_mut())
            .zip(names.iter_mut())
            .enumerate()
        {
            let room = &mut self.arena[i * bs + UDP_PAYLOAD_OFFSET..(i + 1) * bs];
            iov.iov_base = room.as_mut_ptr().cast();
            iov.iov_len = room.len();
            m.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live name and iovec, and every iovec at a
        // distinct region of `arena`, all of which outlive the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(false),
                io::ErrorKind::Interrupted => Ok(true),
                _ => Err(e),
            };
        }
        let got = r as usize;
        for i in 0..got {
            let m = &msgs[i];
            let name = &names[i];
            let payload = m.msg_len as usize;
            let src = Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr));
            let sport = u16::from_be(name.sin_port);
            let buf = &mut self.arena[i * bs..(i + 1) * bs];
            let ok = m.msg_hdr.msg_flags & libc::MSG_TRUNC == 0
                && frame::write_received_outer(
                    buf,
                    src,
                    sport,
                    self.node_ip,
                    self.vxlan_port,
                    payload,
                );
            // A truncated datagram becomes an empty frame: the pipeline counts it malformed.
            self.lens[i] = if ok { UDP_PAYLOAD_OFFSET + payload } else { 0 };
        }
        if got > 0 {
            self.forward(got, 0, UPLINK);
        }
        Ok(got == BATCH)
    }

    /// Runs the pipeline over the first `n` buffers (frames at `offset`, lengths in
    /// `lens`) and sends what it decided.
    fn forward(&mut self, n: usize, offset: usize, ingress: PortId) {
        let bs = self.buf_size;
        let lens = self.lens;
        let mut chunks = self.arena.chunks_exact_mut(bs);
        let mut pkts: [Packet<'_>; BATCH] = std::array::from_fn(|i| Packet {
            buf: chunks.next().unwrap_or_default(),
            offset,
            len: if i < n { lens[i] } else { 0 },
            ingress,
        });
        let mut verdicts = [Verdict::ToKernel; BATCH];
        self.pipeline
            .process(&mut pkts[..n], &mut verdicts[..n], &mut self.counters);

        // SAFETY: plain old data; zero is a valid value.
        let mut udp_iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut udp_to: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
        let mut udp_dst = [0u32; BATCH];
        let mut udp_n = 0;
        let mut eth_iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut eth_n = 0;
        for (p, v) in pkts[..n].iter_mut().zip(&verdicts[..n]) {
            if *v == Verdict::ToKernel && ingress == UPLINK && p.offset == ETH_OFFSET {
                // A kernel VTEP's peer may leave inner TCP/UDP checksums partial (veth
                // offload); the UDP socket hands us the bytes without that state.
                crate::partial_csum::complete(&mut p.buf[p.offset..p.offset + p.len]);
            }
            let f = p.frame();
            match *v {
                // Encapsulated (the frame moved back over the outer headers): the UDP
                // socket sends the VXLAN header and the inner frame.
                Verdict::Tx(UPLINK) if p.offset == 0 && self.udp.is_some() => {
                    let Some(dst) = frame::outer_dst(f) else {
                        continue;
                    };
                    let payload = &f[UDP_PAYLOAD_OFFSET..];
                    udp_iov[udp_n] = libc::iovec {
                        iov_base: payload.as_ptr() as *mut libc::c_void,
                        iov_len: payload.len(),
                    };
                    let to = &mut udp_to[udp_n];
                    to.sin_family = libc::AF_INET as libc::sa_family_t;
                    to.sin_port = self.vxlan_port.to_be();
                    to.sin_addr.s_addr = u32::from(dst).to_be();
                    udp_dst[udp_n] = u32::from(dst);
                    udp_n += 1;
                }
                // host-gw: a rewritten Ethernet frame for the uplink.
                Verdict::Tx(UPLINK) if p.offset == ETH_OFFSET && self.packet.is_some() => {
                    eth_iov[eth_n] = libc::iovec {
                        iov_base: f.as_ptr() as *mut libc::c_void,
                        iov_len: f.len(),
                    };
                    eth_n += 1;
                }
                // Decapsulated for a local pod (or this node): the kernel delivers it.
                Verdict::ToKernel if ingress == UPLINK && p.offset == ETH_OFFSET => {
                    let ip = &f[IP_OFFSET - ETH_OFFSET..];
                    if ip.len() > self.tun_mtu {
                        let tun = self.tun;
                        let ctrs = &mut self.counters;
                        let r = frame::segment_tcp(ip, self.tun_mtu, &mut self.scratch, |seg| {
                            // SAFETY: `seg` is a readable slice of the length given.
                            let r = unsafe { libc::write(tun, seg.as_ptr().cast(), seg.len()) };
                            if r < 0 {
                                ctrs.ring_full += 1;
                            } else {
                                ctrs.tx += 1;
                            }
                        });
                        if r.is_none() {
                            self.counters.drop(crate::counters::DropReason::Mtu);
                        }
                        continue;
                    }
                    // SAFETY: `ip` is a readable slice of the length given.
                    let r = unsafe { libc::write(self.tun, ip.as_ptr().cast(), ip.len()) };
                    if r < 0 {
                        self.counters.ring_full += 1;
                    } else {
                        self.counters.tx += 1;
                    }
                }
                // Dropped (counted by the pipeline), to the kernel from the TUN (counted
                // as to_kernel: the kernel routed it here, so it has nowhere else to go),
                // or a port this backend does not transmit on.
                _ => {}
            }
        }
        if udp_n > 0 {
            if let Some(u) = &self.udp {
                let mut sizes = [0usize; BATCH];
                for (s, iov) in sizes.iter_mut().zip(&udp_iov[..udp_n]) {
                    *s = iov.iov_len;
                }
                let mut groups = [(0usize, 0usize); BATCH];
                let ng = if self.gso {
                    gso_groups(
                        &sizes[..udp_n],
                        &udp_dst[..udp_n],
                        GSO_MAX_BYTES,
                        &mut groups,
                    )
                } else {
                    for (i, g) in groups[..udp_n].iter_mut().enumerate() {
                        *g = (i, 1);
                    }
                    udp_n
                };
                // SAFETY: plain old data; zero is a valid value.
                let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
                let mut cmsgs: [SegmentCmsg; BATCH] = unsafe { std::mem::zeroed() };
                let mut segs = [0usize; BATCH];
                for (k, &(start, count)) in groups[..ng].iter().enumerate() {
                    segs[k] = count;
                    let h = &mut msgs[k].msg_hdr;
                    h.msg_name = (&mut udp_to[start] as *mut libc::sockaddr_in).cast();
                    h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    h.msg_iov = &mut udp_iov[start];
                    h.msg_iovlen = count;
                    if count > 1 {
                        let c = &mut cmsgs[k];
                        // SAFETY: CMSG_LEN only computes a length.
                        c.hdr.cmsg_len = unsafe { libc::CMSG_LEN(2) } as usize;
                        c.hdr.cmsg_level = libc::SOL_UDP;
                        c.hdr.cmsg_type = UDP_SEGMENT;
                        c.size = sizes[start] as u16;
                        h.msg_control = (c as *mut SegmentCmsg).cast();
                        h.msg_controllen = std::mem::size_of::<SegmentCmsg>();
                    }
                }
                let refused = send_batch(
                    u.as_raw_fd(),
                    &mut msgs[..ng],
                    &segs[..ng],
                    &mut self.counters,
                );
                if refused {
                    self.gso = false;
                }
            }
        }
        if eth_n > 0 {
            if let Some(s) = &self.packet {
                // SAFETY: plain old data; zero is a valid value.
                let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
                for i in 0..eth_n {
                    let h = &mut msgs[i].msg_hdr;
                    h.msg_iov = &mut eth_iov[i];
                    h.msg_iovlen = 1;
                }
                send_batch(
                    s.fd(),
                    &mut msgs[..eth_n],
                    &[1; BATCH][..eth_n],
                    &mut self.counters,
                );
            }
        }
    }
}

/// Sends `msgs` (message `i` carrying `segs[i]` packets) with `sendmmsg`, waiting
/// briefly while the socket buffer is full; counts what was sent as `tx` and what was
/// given up as `ring_full`. True if the kernel refused a GSO message (EIO, EINVAL).
fn send_batch(fd: RawFd, msgs: &mut [libc::mmsghdr], segs: &[usize], ctrs: &mut Counters) -> bool {
    let mut off = 0;
    let mut tries = 0;
    let mut refused = false;
    while off < msgs.len() {
        let rest = &mut msgs[off..];
        // SAFETY: every header points at live iovecs (and names) over live buffers.
        let r = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
        if r > 0 {
            let sent = r as usize;
            ctrs.tx += segs[off..off + sent].iter().sum::<usize>() as u64;
            off += sent;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) if tries < SEND_TRIES => {
                tries += 1;
                wait_writable(fd, SEND_WAIT);
            }
            // Full for too long, or this one message failed (no route, too big): give it
            // up and go on with the rest.
            e => {
                if segs[off] > 1 && matches!(e, Some(libc::EIO) | Some(libc::EINVAL)) {
                    refused = true;
                }
                ctrs.ring_full += segs[off] as u64;
                off += 1;
            }
        }
    }
    refused
}

/// Splits datagrams (payload `sizes`, destinations `dsts`) into UDP GSO groups written
/// to `out` as (first, count); returns how many. A group is a run of consecutive
/// datagrams to one destination, all the size of the first but the last (which may be
/// shorter, as GSO cuts them), at most `max_bytes` in total and `out.len()` long.
fn gso_groups(
    sizes: &[usize],
    dsts: &[u32],
    max_bytes: usize,
    out: &mut [(usize, usize)],
) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < sizes.len() && n < out.len() {
        let seg = sizes[i];
        let mut total = seg;
        let mut j = i + 1;
        while seg > 0
            && j < sizes.len()
            && dsts[j] == dsts[i]
            && sizes[j] <= seg
            && sizes[j] > 0
            && total + sizes[j] <= max_bytes
        {
            total += sizes[j];
            j += 1;
            if sizes[j - 1] < seg {
                break; // a shorter datagram can only end a group
            }
        }
        out[n] = (i, j - i);
        n += 1;
        i = j;
    }
    n
}

/// Waits until `fd` is writable or `timeout` passes.
fn wait_writable(fd: RawFd, timeout: Duration) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(sizes: &[usize], dsts: &[u32], max: usize) -> Vec<(usize, usize)> {
        let mut out = [(0, 0); BATCH];
        let n = gso_groups(sizes, dsts, max, &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn equal_datagrams_to_one_peer_form_one_gso_group() {
        assert_eq!(groups(&[1472; 5], &[1; 5], 65_000), vec![(0, 5)]);
    }

    #[test]
    fn a_shorter_datagram_ends_its_group_and_a_longer_one_starts_a_new_one() {
        assert_eq!(
            groups(&[1472, 1472, 100, 1472, 200, 1472], &[1; 6], 65_000),
            vec![(0, 3), (3, 2), (5, 1)]
        );
        assert_eq!(groups(&[100, 1472], &[1; 2], 65_000), vec![(0, 1), (1, 1)]);
    }

    #[test]
    fn a_new_destination_or_the_byte_limit_starts_a_new_group() {
        assert_eq!(
            groups(&[1000; 4], &[1, 1, 2, 2], 65_000),
            vec![(0, 2), (2, 2)]
        );
        assert_eq!(
            groups(&[1000; 5], &[1; 5], 2500),
            vec![(0, 2), (2, 2), (4, 1)]
        );
    }

    #[test]
    fn empty_datagrams_are_sent_alone() {
        assert_eq!(
            groups(&[0, 0, 10], &[1; 3], 65_000),
            vec![(0, 1), (1, 1), (2, 1)]
        );
        assert_eq!(groups(&[], &[], 65_000), vec![]);
    }
}
