//! The TUN worker: one mio event loop over one TUN queue and one VXLAN socket.
//!
//! TUN -> (with offloads: a TCP super-packet cut into MSS segments) -> prepend Ethernet
//! -> pipeline -> VXLAN payload out of the UDP socket (`sendmmsg`, runs to one peer as
//! UDP GSO), or a rewritten Ethernet frame out of the AF_PACKET socket (host-gw).
//! UDP socket (`recvmmsg`; with UDP GRO a train per message, split into datagrams) ->
//! synthetic outer headers -> pipeline (validation and decapsulation) -> inner IP packet
//! written to the TUN (with offloads: consecutive segments of a flow merged into one GSO
//! write).
//!
//! Every buffer is allocated once; a batch uses fixed-size stack arrays.

use super::frame::{self, ETH_OFFSET, IP_OFFSET, UDP_PAYLOAD_OFFSET};
use super::offload::{self, Coalescer, TcpSegmenter, VnetHdr, F_NEEDS_CSUM, VNET_HDR_LEN};
use crate::counters::{Counters, DropReason, SharedCounters};
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
/// How long a send that the egress dropped (`ENOBUFS`) waits before it is tried again.
const NOBUFS_WAIT: Duration = Duration::from_micros(50);

/// `UDP_SEGMENT` (linux/udp.h; not in the libc crate): the GSO segment size of a send.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): receive trains of datagrams with their segment size.
pub const UDP_GRO: libc::c_int = 104;

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

/// Messages (UDP GRO trains, or single datagrams when nothing could be merged, as with
/// many small flows) received per `recvmmsg`: a whole batch, as without GRO. With 8 the
/// syscalls per datagram of 64-byte VXLAN decapsulation grew 8-fold.
const RX_MSGS: usize = BATCH;

/// Control-message room per received message: `CMSG_SPACE(sizeof(int))` is 24 bytes.
type RxCmsg = [u64; 4];

/// What the worker may use of the kernel's segmentation offloads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// TUN reads and writes start with a `virtio_net_hdr` (`IFF_VNET_HDR`): TCP
    /// super-packets are read and cut here, received segments are merged for the TUN.
    pub vnet_hdr: bool,
    /// The UDP socket has `UDP_GRO`: trains of datagrams arrive in one buffer.
    pub udp_gro: bool,
    /// Runs of equal datagrams to one peer leave as one UDP GSO send (`UDP_SEGMENT`).
    pub udp_gso: bool,
}

/// A TCP super-packet read from the TUN (held in `stage`) being cut into segments.
#[derive(Clone, Copy, Debug)]
struct Cutting {
    len: usize,
    mss: usize,
    next: usize,
    count: usize,
}

/// One received message: a datagram, or with UDP GRO a train of `seg`-byte datagrams.
#[derive(Clone, Copy, Debug)]
struct RxMsg {
    len: usize,
    /// Datagram size within the message (0: the message is one datagram).
    seg: usize,
    src: Ipv4Addr,
    sport: u16,
    truncated: bool,
}

impl Default for RxMsg {
    fn default() -> Self {
        RxMsg {
            len: 0,
            seg: 0,
            src: Ipv4Addr::UNSPECIFIED,
            sport: 0,
            truncated: false,
        }
    }
}

/// Received messages (UDP GRO) being split into datagrams for the pipeline.
struct RxTrains {
    bufs: Vec<Box<[u8]>>,
    msgs: [RxMsg; RX_MSGS],
    /// Messages held.
    held: usize,
    /// The next message to split, and the offset of its next datagram.
    msg: usize,
    off: usize,
}

/// What the worker owns.
pub struct Worker {
    tun: RawFd,
    offload: Offload,
    udp: Option<UdpSocket>,
    /// With UDP GRO: received trains waiting to be split.
    rx: Option<RxTrains>,
    packet: Option<super::sockets::PacketSocket>,
    pipeline: Pipeline,
    node_ip: Ipv4Addr,
    vxlan_port: u16,
    /// One buffer per packet of a batch.
    slots: Vec<Box<[u8]>>,
    /// A TCP super-packet from the TUN while it is cut into `slots` (swapped in from the
    /// slot it was read into).
    stage: Box<[u8]>,
    cutting: Option<Cutting>,
    /// The TUN's MTU: larger decapsulated TCP packets are segmented (or written as GSO).
    tun_mtu: usize,
    scratch: Vec<u8>,
    /// Send runs of VXLAN datagrams to one peer as one UDP GSO super-packet; cleared
    /// if the kernel refuses one.
    gso: bool,
    lens: [usize; BATCH],
    counters: Counters,
    shared: Arc<SharedCounters>,
    /// A failed TUN write was reported on stderr (once per worker).
    write_error_logged: bool,
    /// Copies batches at the verdict point while a `podfwd trace` client is attached.
    tracer: Option<crate::trace::Tracer>,
}

impl Worker {
    /// Records every batch at the verdict point into `tracer` while it is active.
    pub fn with_tracer(mut self, tracer: crate::trace::Tracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// A worker over the TUN queue `tun` (kept open by the caller until `run` returns),
    /// the VXLAN socket (vxlan/auto) and the uplink's packet socket (host-gw/auto).
    /// `max_packet` bounds the IP packets and VXLAN datagrams it must carry.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tun: RawFd,
        udp: Option<UdpSocket>,
        packet: Option<super::sockets::PacketSocket>,
        pipeline: Pipeline,
        shared: Arc<SharedCounters>,
        max_packet: usize,
        tun_mtu: usize,
        offload: Offload,
    ) -> Worker {
        let node = *pipeline.node();
        // With offloads, a TUN read is a super-packet of up to 64 KB.
        let max_packet = if offload.vnet_hdr {
            max_packet.max(usize::from(u16::MAX))
        } else {
            max_packet
        };
        // A datagram is placed at UDP_PAYLOAD_OFFSET, an IP packet at IP_OFFSET (larger).
        let slot_size = (IP_OFFSET + max_packet + 63) & !63;
        let slot = || vec![0u8; slot_size].into_boxed_slice();
        let rx = (offload.udp_gro && udp.is_some()).then(|| RxTrains {
            bufs: (0..RX_MSGS)
                .map(|_| vec![0u8; usize::from(u16::MAX)].into_boxed_slice())
                .collect(),
            msgs: [RxMsg::default(); RX_MSGS],
            held: 0,
            msg: 0,
            off: 0,
        });
        Worker {
            tun,
            offload,
            udp,
            rx,
            packet,
            pipeline,
            node_ip: node.node_ip,
            vxlan_port: node.vxlan_port,
            slots: (0..BATCH).map(|_| slot()).collect(),
            stage: slot(),
            cutting: None,
            tun_mtu,
            scratch: vec![0; tun_mtu],
            gso: offload.udp_gso,
            lens: [0; BATCH],
            counters: Counters::default(),
            shared,
            write_error_logged: false,
            tracer: None,
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
    /// With offloads a TCP super-packet is cut into MSS-sized segments, each a packet of
    /// the batch (a super-packet may span batches).
    fn tun_batch(&mut self) -> io::Result<bool> {
        let mut n = 0;
        let mut more = true;
        let vnet = if self.offload.vnet_hdr {
            VNET_HDR_LEN
        } else {
            0
        };
        loop {
            if let Some(mut c) = self.cutting.take() {
                let ip = &self.stage[IP_OFFSET..IP_OFFSET + c.len];
                if let Some(seg) = TcpSegmenter::new(ip, c.mss) {
                    while n < BATCH && c.next < c.count {
                        let slot = &mut self.slots[n];
                        match seg.write(c.next, &mut slot[IP_OFFSET..]) {
                            Some(len) => {
                                frame::prepend_ethernet(slot);
                                self.lens[n] = IP_OFFSET - ETH_OFFSET + len;
                                n += 1;
                            }
                            None => self.counters.drop(DropReason::Mtu),
                        }
                        c.next += 1;
                    }
                    if c.next < c.count {
                        self.cutting = Some(c);
                    }
                }
            }
            if n == BATCH {
                break;
            }
            let slot = &mut self.slots[n];
            let room = &mut slot[IP_OFFSET - vnet..];
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
            let Some(len) = (r as usize).checked_sub(vnet) else {
                self.counters.drop(DropReason::Malformed);
                continue;
            };
            let hdr = if vnet > 0 {
                VnetHdr::parse(&slot[IP_OFFSET - VNET_HDR_LEN..IP_OFFSET])
            } else {
                None
            };
            let ip = &mut slot[IP_OFFSET..IP_OFFSET + len];
            // The kernel counted this node's hop when it routed the packet into the TUN.
            frame::undo_ttl_decrement(ip);
            if let Some(h) = hdr {
                if let Some(mss) = h.tcp4_mss() {
                    match TcpSegmenter::new(ip, mss) {
                        Some(seg) => {
                            self.counters.tso_in += 1;
                            self.cutting = Some(Cutting {
                                len,
                                mss,
                                next: 0,
                                count: seg.count(),
                            });
                            std::mem::swap(&mut self.slots[n], &mut self.stage);
                        }
                        None => self.counters.drop(DropReason::Malformed),
                    }
                    continue;
                }
                if h.flags & F_NEEDS_CSUM != 0 {
                    offload::complete_partial(
                        ip,
                        usize::from(h.csum_start),
                        usize::from(h.csum_offset),
                    );
                }
            }
            frame::prepend_ethernet(slot);
            self.lens[n] = IP_OFFSET - ETH_OFFSET + len;
            n += 1;
        }
        if n > 0 {
            self.forward(n, ETH_OFFSET, TUN);
        }
        Ok(more || self.cutting.is_some())
    }

    /// Receives up to a batch of VXLAN datagrams and forwards them; true if more may be
    /// queued.
    fn udp_batch(&mut self) -> io::Result<bool> {
        if self.rx.is_some() {
            return self.udp_trains_batch();
        }
        let Some(udp) = &self.udp else {
            return Ok(false);
        };
        let fd = udp.as_raw_fd();
        // SAFETY: these C structs are plain old data; zero is a valid value.
        let mut names: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (((m, iov), name), slot) in msgs
            .iter_mut()
            .zip(iovs.iter_mut())
            .zip(names.iter_mut())
            .zip(self.slots.iter_mut())
        {
            let room = &mut slot[UDP_PAYLOAD_OFFSET..];
            iov.iov_base = room.as_mut_ptr().cast();
            iov.iov_len = room.len();
            m.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live name and iovec, and every iovec at a
        // distinct slot, all of which outlive the call.
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
            let ok = m.msg_hdr.msg_flags & libc::MSG_TRUNC == 0
                && frame::write_received_outer(
                    &mut self.slots[i],
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

    /// With UDP GRO: splits received trains into datagrams (each copied into a slot
    /// behind synthetic outer headers), receiving more as they run out, and forwards a
    /// batch; true if more may be queued.
    fn udp_trains_batch(&mut self) -> io::Result<bool> {
        let mut n = 0;
        let mut more = true;
        loop {
            let Some(rx) = self.rx.as_mut() else {
                return Ok(false);
            };
            while n < BATCH && rx.msg < rx.held {
                let m = rx.msgs[rx.msg];
                let seg = if m.seg > 0 { m.seg } else { m.len };
                let d = seg.min(m.len - rx.off);
                let slot = &mut self.slots[n];
                let ok = !m.truncated
                    && UDP_PAYLOAD_OFFSET + d <= slot.len()
                    && frame::write_received_outer(
                        slot,
                        m.src,
                        m.sport,
                        self.node_ip,
                        self.vxlan_port,
                        d,
                    );
                if ok {
                    slot[UDP_PAYLOAD_OFFSET..UDP_PAYLOAD_OFFSET + d]
                        .copy_from_slice(&rx.bufs[rx.msg][rx.off..rx.off + d]);
                }
                // Truncated: an empty frame, which the pipeline counts as malformed; the
                // rest of the train is counted here (it is skipped below).
                self.lens[n] = if ok { UDP_PAYLOAD_OFFSET + d } else { 0 };
                if !ok && m.seg > 0 {
                    let rest = (m.len - rx.off).div_ceil(m.seg).saturating_sub(1);
                    self.counters.rx += rest as u64;
                    self.counters.drops[DropReason::Malformed as usize] += rest as u64;
                }
                n += 1;
                rx.off += d;
                if rx.off >= m.len || !ok {
                    rx.msg += 1;
                    rx.off = 0;
                }
            }
            if n == BATCH {
                break;
            }
            let Some(udp) = &self.udp else {
                return Ok(false);
            };
            match recv_trains(udp.as_raw_fd(), rx)? {
                0 => {
                    more = false;
                    break;
                }
                _ => continue,
            }
        }
        if n > 0 {
            self.forward(n, 0, UPLINK);
        }
        Ok(more)
    }

    /// Runs the pipeline over the first `n` slots (frames at `offset`, lengths in
    /// `lens`) and sends what it decided.
    fn forward(&mut self, n: usize, offset: usize, ingress: PortId) {
        let lens = self.lens;
        let mut slots = self.slots.iter_mut();
        let mut pkts: [Packet<'_>; BATCH] = std::array::from_fn(|i| Packet {
            buf: slots.next().map_or(&mut [][..], |s| &mut s[..]),
            offset,
            len: if i < n { lens[i] } else { 0 },
            ingress,
        });
        let mut verdicts = [Verdict::ToKernel; BATCH];
        self.pipeline
            .process(&mut pkts[..n], &mut verdicts[..n], &mut self.counters);
        if let Some(t) = self.tracer.as_mut().and_then(|t| t.active()) {
            t.record_batch(&pkts[..n], &verdicts[..n], std::time::SystemTime::now());
        }

        // SAFETY: plain old data; zero is a valid value.
        let mut udp_iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut udp_to: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
        let mut udp_dst = [0u32; BATCH];
        let mut udp_n = 0;
        let mut eth_iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut eth_n = 0;
        let mut to_tun = [0usize; BATCH];
        let mut tun_n = 0;
        for (i, (p, v)) in pkts[..n].iter().zip(&verdicts[..n]).enumerate() {
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
                    to_tun[tun_n] = i;
                    tun_n += 1;
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
        if tun_n > 0 {
            let mut out = TunWriter {
                fd: self.tun,
                mtu: self.tun_mtu,
                counters: &mut self.counters,
                logged: &mut self.write_error_logged,
            };
            if self.offload.vnet_hdr {
                out.write_merged(&mut pkts, &to_tun[..tun_n]);
            } else {
                out.write_plain(&mut pkts, &to_tun[..tun_n], &mut self.scratch);
            }
        }
    }
}

/// Receives up to [`RX_MSGS`] messages (UDP GRO trains) into `rx`, replacing what it
/// held; returns how many (0: none queued).
fn recv_trains(fd: RawFd, rx: &mut RxTrains) -> io::Result<usize> {
    // SAFETY: these C structs are plain old data; zero is a valid value.
    let mut names: [libc::sockaddr_in; RX_MSGS] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; RX_MSGS] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; RX_MSGS] = unsafe { std::mem::zeroed() };
    let mut ctrl: [RxCmsg; RX_MSGS] = [[0; 4]; RX_MSGS];
    for ((((m, iov), name), buf), c) in msgs
        .iter_mut()
        .zip(iovs.iter_mut())
        .zip(names.iter_mut())
        .zip(rx.bufs.iter_mut())
        .zip(ctrl.iter_mut())
    {
        iov.iov_base = buf.as_mut_ptr().cast();
        iov.iov_len = buf.len();
        m.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_control = c.as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = std::mem::size_of::<RxCmsg>();
    }
    rx.held = 0;
    rx.msg = 0;
    rx.off = 0;
    let r = loop {
        // SAFETY: every header points at a live name, iovec and control buffer, every
        // iovec at a distinct receive buffer, all of which outlive the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                RX_MSGS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r >= 0 {
            break r;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(e),
        }
    };
    let got = r as usize;
    for i in 0..got {
        let m = &msgs[i];
        let name = &names[i];
        rx.msgs[i] = RxMsg {
            len: m.msg_len as usize,
            seg: gro_segment_size(&m.msg_hdr),
            src: Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
            sport: u16::from_be(name.sin_port),
            truncated: m.msg_hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0,
        };
    }
    rx.held = got;
    Ok(got)
}

/// The `UDP_GRO` segment size of a received message (0: a single datagram).
fn gro_segment_size(h: &libc::msghdr) -> usize {
    // SAFETY: `h` was filled by recvmmsg; CMSG_FIRSTHDR/NXTHDR stay within
    // msg_control/msg_controllen and CMSG_DATA points into the same buffer.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    0
}

/// Writes decapsulated packets to the TUN.
struct TunWriter<'a> {
    fd: RawFd,
    mtu: usize,
    counters: &'a mut Counters,
    logged: &'a mut bool,
}

impl TunWriter<'_> {
    /// Without a `virtio_net_hdr`: one write per packet, partial checksums completed,
    /// packets over the MTU (a kernel VTEP's GSO super-packets) cut in software.
    fn write_plain(&mut self, pkts: &mut [Packet<'_>], idx: &[usize], scratch: &mut [u8]) {
        for &i in idx {
            let p = &mut pkts[i];
            let f = &mut p.buf[p.offset..p.offset + p.len];
            // A kernel VTEP's peer may leave inner TCP/UDP checksums partial (veth
            // offload); the UDP socket hands us the bytes without that state.
            if crate::partial_csum::complete(f) {
                self.counters.checksums_completed += 1;
            }
            let ip = &f[IP_OFFSET - ETH_OFFSET..];
            if ip.len() > self.mtu {
                let (fd, mtu) = (self.fd, self.mtu);
                let mut sent = 0u64;
                let mut failed = 0u64;
                let r = frame::segment_tcp(ip, mtu, scratch, |seg| {
                    // SAFETY: `seg` is a readable slice of the length given.
                    if unsafe { libc::write(fd, seg.as_ptr().cast(), seg.len()) } < 0 {
                        failed += 1;
                    } else {
                        sent += 1;
                    }
                });
                self.counters.tx += sent;
                self.counters.ring_full += failed;
                if r.is_none() {
                    self.counters.drop(DropReason::Mtu);
                }
                continue;
            }
            self.writev(&mut [iov(ip)], 1);
        }
    }

    /// With a `virtio_net_hdr`: consecutive segments of one TCP flow are merged into one
    /// GSO write (`offload::Coalescer`); a packet over the MTU is written as GSO for the
    /// kernel to cut; anything else is written alone.
    fn write_merged(&mut self, pkts: &mut [Packet<'_>], idx: &[usize]) {
        let ip_of = |p: &Packet<'_>| IP_OFFSET - ETH_OFFSET + p.offset..p.offset + p.len;
        let mut co = Coalescer::default();
        let mut open: Option<usize> = None; // position in `idx` of the group's first
        for k in 0..idx.len() {
            let i = idx[k];
            if let Some(g) = open {
                let (a, b) = (&pkts[idx[g]], &pkts[i]);
                if co.push(&a.buf[ip_of(a)], &b.buf[ip_of(b)]) {
                    continue;
                }
                self.flush(&mut co, pkts, &idx[g..k]);
                open = None;
            }
            let p = &mut pkts[i];
            let r = ip_of(p);
            if r.len() > self.mtu {
                let ip = &mut p.buf[r];
                match offload::gso_header_for(ip, self.mtu) {
                    Some(h) => {
                        let h = h.to_bytes();
                        self.writev(&mut [iov(&h), iov(ip)], 1);
                    }
                    None => self.counters.drop(DropReason::Mtu),
                }
                continue;
            }
            co.start(&p.buf[r]);
            open = Some(k);
        }
        if let Some(g) = open {
            self.flush(&mut co, pkts, &idx[g..]);
        }
    }

    /// Writes the group `group` (packet indices; the first is the coalescer's open group).
    fn flush(&mut self, co: &mut Coalescer, pkts: &mut [Packet<'_>], group: &[usize]) {
        let first = &mut pkts[group[0]];
        let r = IP_OFFSET - ETH_OFFSET + first.offset..first.offset + first.len;
        match co.finish(&mut first.buf[r.clone()]) {
            Some((h, head)) => {
                let h = h.to_bytes();
                let mut iovs = [iov(&[]); BATCH + 2];
                iovs[0] = iov(&h);
                iovs[1] = iov(&pkts[group[0]].buf[r]);
                for (v, &i) in iovs[2..].iter_mut().zip(&group[1..]) {
                    let p = &pkts[i];
                    *v = iov(&p.buf[IP_OFFSET - ETH_OFFSET + p.offset + head..p.offset + p.len]);
                }
                if self.writev(&mut iovs[..group.len() + 1], group.len() as u64) {
                    self.counters.gro_out += 1;
                }
            }
            None => {
                let f = &mut first.buf[first.offset..first.offset + first.len];
                if crate::partial_csum::complete(f) {
                    self.counters.checksums_completed += 1;
                }
                let zero = [0u8; VNET_HDR_LEN];
                self.writev(&mut [iov(&zero), iov(&f[IP_OFFSET - ETH_OFFSET..])], 1);
            }
        }
    }

    /// One write of `iovs` to the TUN, counted as `packets` sent (or lost); true if sent.
    fn writev(&mut self, iovs: &mut [libc::iovec], packets: u64) -> bool {
        // SAFETY: every iovec points at a live, readable buffer of its length.
        let r = unsafe { libc::writev(self.fd, iovs.as_ptr(), iovs.len() as libc::c_int) };
        if r < 0 {
            self.counters.ring_full += packets;
            if !*self.logged {
                *self.logged = true;
                tracing::warn!(
                    error = %io::Error::last_os_error(),
                    "writing to the TUN device failed (counted as ring_full; reported once per worker)"
                );
            }
            false
        } else {
            self.counters.tx += packets;
            true
        }
    }
}

/// An iovec over `b` (for writing).
fn iov(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
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
            // The socket buffer is full: wait until it drains.
            Some(libc::EAGAIN) if tries < SEND_TRIES => {
                tries += 1;
                wait_writable(fd, SEND_WAIT);
            }
            // The device or its qdisc dropped the frame (the socket itself is writable,
            // so poll would not wait): give the egress a moment and send it again.
            Some(libc::ENOBUFS) if tries < SEND_TRIES => {
                tries += 1;
                std::thread::sleep(NOBUFS_WAIT);
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
