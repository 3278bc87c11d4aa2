//! The I/O-free data path: a function over a batch of frames.
//!
//! Backends (AF_XDP, TUN) lend frames as [`Packet`]s: a byte buffer with headroom, the
//! offset and length of the Ethernet frame in it, and the port it arrived on. For each
//! frame [`Pipeline::process`] decides a [`Verdict`] and rewrites the frame in place:
//!
//! - host-gw / local pods: dst MAC = next hop, src MAC = egress port, TTL-1 (RFC 1624);
//! - VXLAN encap: inner MACs = VTEPs, TTL-1, outer Ethernet/IPv4/UDP/VXLAN written into
//!   the headroom in front of the frame (the payload is never copied);
//! - VXLAN decap: the outer headers are validated and skipped, the inner packet forwarded.
//!
//! The batch runs in three passes, as DPDK's l3fwd does, over windows of 64 frames: parse
//! all frames and collect destination addresses, look them all up in one LPM call (misses
//! overlap), then rewrite. The parse reads the common frames (IPv4 without options, VXLAN
//! to us) at fixed offsets and leaves every other frame to the general parse, which gives
//! each drop its precise reason; `reference.rs` keeps the data path as it was before that
//! split, for differential tests. Nothing here allocates, locks, or formats; drops are
//! counted by [`DropReason`].

pub mod fib;

pub use fib::{Adjacency, Fib, FibError, FibParams, FibSnapshot, FibWriter, PortInfo};

use crate::counters::{Counters, DropReason};
use crate::lpm::LpmView;
use crate::nexthop::{NextHopId, PortId};
use crate::wire::{checksum, ethernet, ipv4, udp, vxlan, MacAddr, WireError};

/// The most frames one call processes at a time (larger inputs are chunked).
pub const MAX_BATCH: usize = 256;

/// Headroom a backend must leave in front of a frame so it can be encapsulated in place.
pub const ENCAP_HEADROOM: usize = vxlan::ENCAP_OVERHEAD;

/// A frame lent by a backend for one batch.
#[derive(Debug)]
pub struct Packet<'a> {
    /// The whole buffer, headroom included.
    pub buf: &'a mut [u8],
    /// Offset of the Ethernet header in `buf`. Encapsulation moves it back by 50 bytes,
    /// decapsulation forward.
    pub offset: usize,
    /// Length of the frame from `offset`.
    pub len: usize,
    /// The port the frame arrived on.
    pub ingress: PortId,
}

impl<'a> Packet<'a> {
    /// The frame's bytes.
    pub fn frame(&self) -> &[u8] {
        &self.buf[self.offset..self.offset + self.len]
    }
}

/// What to do with a frame after the pipeline ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the (rewritten) frame on this port.
    Tx(PortId),
    /// Not forwarded here: give it to the node's network stack (TTL expired, destination
    /// is the node itself, or a `Local` route).
    ToKernel,
    /// Dropped, for this reason (already counted).
    Drop(DropReason),
}

/// The node's own parameters the data path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeParams {
    /// This node's underlay address (VXLAN source, decap destination).
    pub node_ip: std::net::Ipv4Addr,
    /// The uplink port: the only port that accepts VXLAN.
    pub uplink: PortId,
    /// VXLAN network identifier.
    pub vni: u32,
    /// VXLAN UDP destination port.
    pub vxlan_port: u16,
    /// This node's VTEP MAC (inner source MAC; decap accepts only frames to it).
    pub vtep_mac: MacAddr,
}

/// One worker's pipeline: the node parameters and a read handle on the FIB.
pub struct Pipeline {
    node: NodeParams,
    node_ip: u32,
    fib: Fib,
}

/// Frames parsed, looked up and rewritten together: one window of
/// `LpmView::lookup_batch` (which prefetches 64 addresses at a time), small enough that
/// the per-window arrays cost next to nothing to initialise.
const WINDOW: usize = 64;

/// Ethernet header plus an IPv4 header without options.
const IPV4_FRAME_HEAD: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN;

/// Offsets in a VXLAN frame whose outer IPv4 header has no options.
const OUTER_UDP: usize = IPV4_FRAME_HEAD;
const OUTER_VXLAN: usize = OUTER_UDP + udp::HEADER_LEN;
const INNER_FRAME: usize = OUTER_VXLAN + vxlan::HEADER_LEN;

/// A frame that passed the parse pass and needs a route.
#[derive(Clone, Copy, Default)]
struct Parsed {
    /// Index of the frame in its window.
    i: u16,
    /// Total length of the IPv4 packet to route, whose header starts right after the
    /// Ethernet header at `Packet::offset` (the inner one after decapsulation).
    ip_len: u16,
}

impl Pipeline {
    pub fn new(node: NodeParams, fib: Fib) -> Self {
        Pipeline {
            node_ip: u32::from(node.node_ip),
            node,
            fib,
        }
    }

    pub fn node(&self) -> &NodeParams {
        &self.node
    }

    /// Processes a batch: `verdicts[i]` receives the verdict for `pkts[i]` (the slices must
    /// be the same length; extra verdict slots are left alone). Counts into `ctrs`.
    pub fn process(&self, pkts: &mut [Packet<'_>], verdicts: &mut [Verdict], ctrs: &mut Counters) {
        let n = pkts.len().min(verdicts.len());
        let mut start = 0;
        while start < n {
            let end = (start + MAX_BATCH).min(n);
            self.process_chunk(&mut pkts[start..end], &mut verdicts[start..end], ctrs);
            start = end;
        }
    }

    fn process_chunk(
        &self,
        pkts: &mut [Packet<'_>],
        verdicts: &mut [Verdict],
        ctrs: &mut Counters,
    ) {
        debug_assert!(pkts.len() <= MAX_BATCH);
        ctrs.batches += 1;
        ctrs.rx += pkts.len() as u64;
        // The bytes the buffers really hold: a malformed frame's `len` may claim more
        // (it is dropped as such below) and must not overflow the sum (found by fuzzing).
        ctrs.rx_bytes += pkts
            .iter()
            .map(|p| p.len.min(p.buf.len().saturating_sub(p.offset)) as u64)
            .sum::<u64>();

        // The FIB snapshot (adjacencies, known VTEPs) is loaded once per batch, before any
        // LPM entry is read (the writer publishes an adjacency before the route to it).
        let snap = self.fib.snapshot.load();
        let lpm = self.fib.lpm.pin();
        for (pkts, verdicts) in pkts.chunks_mut(WINDOW).zip(verdicts.chunks_mut(WINDOW)) {
            self.process_window(pkts, verdicts, &snap, &lpm, ctrs);
        }
    }

    /// The three passes over at most `WINDOW` frames.
    #[inline(always)]
    fn process_window(
        &self,
        pkts: &mut [Packet<'_>],
        verdicts: &mut [Verdict],
        snap: &FibSnapshot,
        lpm: &LpmView<'_>,
        ctrs: &mut Counters,
    ) {
        // Pass 1: parse, decapsulate, collect destinations of frames that need a lookup.
        let mut todo = [Parsed::default(); WINDOW];
        let mut addrs = [0u32; WINDOW];
        let mut n = 0;
        for (i, (pkt, verdict)) in pkts.iter_mut().zip(verdicts.iter_mut()).enumerate() {
            // The frames a forwarder sees almost always (IPv4 without options, and VXLAN
            // to us whose outer and inner IPv4 have none) are accepted by `parse_fast` at
            // fixed offsets; every other frame, including every one to drop, takes
            // `parse_slow`, which decides as the general code always did.
            let (ip_len, dst) = match self.parse_fast(pkt, snap, ctrs) {
                Some(r) => r,
                None => match self.parse_slow(pkt, snap, ctrs) {
                    Ok(r) => r,
                    Err(v) => {
                        *verdict = v;
                        continue;
                    }
                },
            };
            todo[n] = Parsed {
                i: i as u16,
                ip_len,
            };
            addrs[n] = dst;
            n += 1;
        }

        // Pass 2: one batched lookup.
        let mut nhs = [None; WINDOW];
        lpm.lookup_batch(&addrs[..n], &mut nhs[..n]);

        // Pass 3: rewrite.
        for (p, nh) in todo[..n].iter().zip(&nhs[..n]) {
            let i = usize::from(p.i);
            self.forward(&mut pkts[i], p.ip_len, *nh, snap, ctrs, &mut verdicts[i]);
        }
    }

    /// Accepts the common frames: returns the total length and the destination of the
    /// IPv4 packet to route (after decapsulating VXLAN to us). Changes nothing (frame,
    /// counters) when it returns `None`.
    #[inline(always)]
    fn parse_fast(
        &self,
        pkt: &mut Packet<'_>,
        snap: &FibSnapshot,
        ctrs: &mut Counters,
    ) -> Option<(u16, u32)> {
        let end = pkt.offset.checked_add(pkt.len)?;
        let frame = pkt.buf.get(pkt.offset..end)?;
        let (h, ip_len) = ipv4_fast(frame)?;
        let dst = ipv4::Packet::new_unchecked(&h[ethernet::HEADER_LEN..]).dst_u32();
        if dst != self.node_ip {
            return Some((ip_len, dst));
        }
        let inner = self.decap_fast(frame, ip_len, pkt.ingress, snap)?;
        ctrs.decapsulated += 1;
        pkt.offset += INNER_FRAME;
        pkt.len = ethernet::HEADER_LEN + usize::from(inner.0);
        ctrs.decapsulated_bytes += pkt.len as u64;
        Some(inner)
    }

    /// VXLAN to us whose outer and inner IPv4 headers have no options, all checks of
    /// `parse_slow` passed: the inner packet's total length and destination. `frame`
    /// passed `ipv4_fast` (outer total length `ip_len`) and is addressed to this node.
    #[inline(always)]
    fn decap_fast(
        &self,
        frame: &[u8],
        ip_len: u16,
        ingress: PortId,
        snap: &FibSnapshot,
    ) -> Option<(u16, u32)> {
        if ingress != self.node.uplink {
            return None;
        }
        // The smallest VXLAN frame that can succeed: outer headers plus an inner
        // Ethernet/IPv4 header.
        let f = frame.first_chunk::<{ INNER_FRAME + IPV4_FRAME_HEAD }>()?;
        let ip = ipv4::Packet::new_unchecked(&f[ethernet::HEADER_LEN..OUTER_UDP]);
        let udp = udp::Packet::new_unchecked(&f[OUTER_UDP..OUTER_VXLAN]);
        let vx = vxlan::Packet::new_unchecked(&f[OUTER_VXLAN..INNER_FRAME]);
        let udp_len = usize::from(udp.len());
        // The datagram lies inside the outer packet and holds VXLAN and an inner
        // Ethernet/IPv4 header (anything shorter is dropped by `parse_slow`).
        let fits = (INNER_FRAME + IPV4_FRAME_HEAD - OUTER_UDP
            ..=usize::from(ip_len) - ipv4::HEADER_LEN)
            .contains(&udp_len);
        if ip.protocol() != ipv4::protocol::UDP
            || !fits
            || udp.dst_port() != self.node.vxlan_port
            || ip.is_fragment()
            || vx.flags() & vxlan::FLAG_I == 0
            || vx.vni() != self.node.vni
            || !snap.is_known_vtep(ip.src_u32())
        {
            return None;
        }
        let (ih, inner_len) = ipv4_fast(&frame[INNER_FRAME..OUTER_UDP + udp_len])?;
        let eth = ethernet::Frame::new_unchecked(&ih[..]);
        if eth.dst_addr() != self.node.vtep_mac {
            return None;
        }
        let inner_dst = ipv4::Packet::new_unchecked(&ih[ethernet::HEADER_LEN..]).dst_u32();
        Some((inner_len, inner_dst))
    }

    /// The general parse: validates the frame and, for VXLAN to us, the outer headers;
    /// returns what `parse_fast` does for any valid frame (IPv4 options included), or a
    /// final verdict (already counted) with the precise reason.
    #[cold]
    #[inline(never)]
    fn parse_slow(
        &self,
        pkt: &mut Packet<'_>,
        snap: &FibSnapshot,
        ctrs: &mut Counters,
    ) -> Result<(u16, u32), Verdict> {
        let drop = |ctrs: &mut Counters, r: DropReason| {
            ctrs.drop(r);
            Err(Verdict::Drop(r))
        };
        let end = match pkt.offset.checked_add(pkt.len) {
            Some(e) if e <= pkt.buf.len() => e,
            _ => return drop(ctrs, DropReason::Malformed),
        };
        let frame = &pkt.buf[pkt.offset..end];
        let l3 = match check_ipv4_frame(frame) {
            Ok(()) => pkt.offset + ethernet::HEADER_LEN,
            Err(r) => return drop(ctrs, r),
        };
        let ip = ipv4::Packet::new_unchecked(&pkt.buf[l3..end]);
        let dst = ip.dst_u32();
        if dst != self.node_ip {
            return Ok((ip.total_len(), dst));
        }
        // Addressed to this node: VXLAN from the uplink is ours, the rest is the kernel's.
        if pkt.ingress != self.node.uplink || ip.protocol() != ipv4::protocol::UDP {
            ctrs.to_kernel += 1;
            return Err(Verdict::ToKernel);
        }
        let ip_end = l3 + usize::from(ip.total_len());
        let l4 = l3 + ip.header_len();
        let udp = match udp::Packet::new_checked(&pkt.buf[l4..ip_end]) {
            Ok(u) => u,
            Err(_) => return drop(ctrs, DropReason::BadVxlan),
        };
        if udp.dst_port() != self.node.vxlan_port {
            ctrs.to_kernel += 1;
            return Err(Verdict::ToKernel);
        }
        if ip.is_fragment() {
            return drop(ctrs, DropReason::Fragment);
        }
        let udp_end = l4 + usize::from(udp.len());
        let vx_off = l4 + udp::HEADER_LEN;
        let vx = match vxlan::Packet::new_checked(&pkt.buf[vx_off..udp_end]) {
            Ok(v) => v,
            Err(_) => return drop(ctrs, DropReason::BadVxlan),
        };
        if vx.vni() != self.node.vni {
            return drop(ctrs, DropReason::BadVni);
        }
        if !snap.is_known_vtep(ip.src_u32()) {
            return drop(ctrs, DropReason::UnknownVtep);
        }
        let inner_off = vx_off + vxlan::HEADER_LEN;
        let inner = &pkt.buf[inner_off..udp_end];
        if let Err(r) = check_ipv4_frame(inner) {
            return drop(ctrs, r);
        }
        if ethernet::Frame::new_unchecked(inner).dst_addr() != self.node.vtep_mac {
            return drop(ctrs, DropReason::WrongInnerMac);
        }
        let inner_ip = ipv4::Packet::new_unchecked(&inner[ethernet::HEADER_LEN..]);
        let inner_dst = inner_ip.dst_u32();
        let inner_total = inner_ip.total_len();
        ctrs.decapsulated += 1;
        pkt.offset = inner_off;
        pkt.len = ethernet::HEADER_LEN + usize::from(inner_total);
        ctrs.decapsulated_bytes += pkt.len as u64;
        Ok((inner_total, inner_dst))
    }

    /// Applies the route's adjacency to a parsed frame (IPv4 total length `ip_len`),
    /// writes the verdict into `out` and counts it.
    #[inline(always)]
    fn forward(
        &self,
        pkt: &mut Packet<'_>,
        ip_len: u16,
        nh: Option<NextHopId>,
        snap: &FibSnapshot,
        ctrs: &mut Counters,
        out: &mut Verdict,
    ) {
        // Each forwarding arm stores its verdict itself: a constant tag and the port, not
        // one verdict value assembled from every arm.
        let v = match nh.and_then(|id| snap.adjacency(id)) {
            Some(Adjacency::Rewrite { port, macs, mtu }) => {
                if ip_len > *mtu {
                    Verdict::Drop(DropReason::Mtu)
                } else {
                    let h = frame_head_mut(pkt.buf, pkt.offset);
                    if !decrement_ttl(&mut h[ethernet::HEADER_LEN..]) {
                        Verdict::ToKernel
                    } else {
                        h[..12].copy_from_slice(macs);
                        // Drop Ethernet padding: the egress frame carries exactly the IP packet.
                        pkt.len = ethernet::HEADER_LEN + usize::from(ip_len);
                        ctrs.forwarded += 1;
                        ctrs.forwarded_bytes += pkt.len as u64;
                        *out = Verdict::Tx(*port);
                        return;
                    }
                }
            }
            Some(Adjacency::Encap(e)) => match encap(pkt, ip_len, e) {
                Ok(port) => {
                    ctrs.encapsulated += 1;
                    ctrs.encapsulated_bytes += pkt.len as u64;
                    *out = Verdict::Tx(port);
                    return;
                }
                Err(v) => v,
            },
            Some(Adjacency::Unresolved) => Verdict::Drop(DropReason::NeighbourUnresolved),
            Some(Adjacency::Local) => Verdict::ToKernel,
            Some(Adjacency::Blackhole) => Verdict::Drop(DropReason::Blackhole),
            None => Verdict::Drop(DropReason::NoRoute),
        };
        *out = not_sent(v, ctrs);
    }
}

/// Counts a frame that is not transmitted (dropped, or handed to the kernel).
#[cold]
#[inline(never)]
fn not_sent(v: Verdict, ctrs: &mut Counters) -> Verdict {
    match v {
        Verdict::Drop(r) => ctrs.drop(r),
        Verdict::ToKernel => ctrs.to_kernel += 1,
        Verdict::Tx(_) => {}
    }
    v
}

/// Encapsulates a parsed frame (IPv4 total length `ip_len`) with template `e`: the egress
/// port, or the verdict for a frame that cannot be sent (not counted yet).
#[inline(always)]
fn encap(pkt: &mut Packet<'_>, ip_len: u16, e: &EncapTemplate) -> Result<PortId, Verdict> {
    let ip_len = usize::from(ip_len);
    let inner_len = ethernet::HEADER_LEN + ip_len;
    // The outer IPv4 packet is the inner IP packet plus 50 bytes (flannel.1 MTU = uplink - 50).
    if ip_len + vxlan::ENCAP_OVERHEAD > usize::from(e.mtu) {
        return Err(Verdict::Drop(DropReason::Mtu));
    }
    let Some(outer) = pkt.offset.checked_sub(vxlan::ENCAP_OVERHEAD) else {
        return Err(Verdict::Drop(DropReason::NoHeadroom));
    };
    let l3 = pkt.offset + ethernet::HEADER_LEN;
    let sport = flow_src_port(&pkt.buf[l3..l3 + ip_len]);
    let f = pkt.buf[outer..]
        .first_chunk_mut::<{ vxlan::ENCAP_OVERHEAD + IPV4_FRAME_HEAD }>()
        .expect("parse saw the Ethernet and IPv4 headers");
    let (hdr, inner) = f.split_at_mut(vxlan::ENCAP_OVERHEAD);
    if !decrement_ttl(&mut inner[ethernet::HEADER_LEN..]) {
        return Err(Verdict::ToKernel);
    }
    // RFC 6040 normal mode, as INET_ECN_encapsulate: copy ECN, CE becomes ECT(0).
    let ecn = match ipv4::Packet::new_unchecked(&inner[ethernet::HEADER_LEN..]).tos() & 0x03 {
        0x03 => 0x02,
        e => e,
    };
    inner[..12].copy_from_slice(&e.inner_macs);
    let hdr: &mut [u8; vxlan::ENCAP_OVERHEAD] = hdr.try_into().expect("50 bytes");
    e.write_outer_fixed(hdr, inner_len, sport, ecn);
    pkt.offset = outer;
    pkt.len = vxlan::ENCAP_OVERHEAD + inner_len;
    Ok(e.port)
}

/// The Ethernet and IPv4 header of a frame that passed `parse` (so at least that long).
#[inline(always)]
fn frame_head_mut(buf: &mut [u8], offset: usize) -> &mut [u8; IPV4_FRAME_HEAD] {
    buf[offset..]
        .first_chunk_mut()
        .expect("parse saw the Ethernet and IPv4 headers")
}

/// `check_ipv4_frame` for the common frame, an IPv4 header without options: its first
/// 34 bytes and the IPv4 total length if it passes; `None` if it fails or has options.
#[inline(always)]
fn ipv4_fast(frame: &[u8]) -> Option<(&[u8; IPV4_FRAME_HEAD], u16)> {
    let h = frame.first_chunk::<IPV4_FRAME_HEAD>()?;
    let ip: &[u8; ipv4::HEADER_LEN] = h[ethernet::HEADER_LEN..].try_into().ok()?;
    let eth = ethernet::Frame::new_unchecked(&h[..]);
    let total = ipv4::Packet::new_unchecked(&ip[..]).total_len();
    let ok = eth.ethertype() == ethernet::ethertype::IPV4
        && ip[0] == 0x45 // version 4, 20-byte header
        && usize::from(total) >= ipv4::HEADER_LEN
        && usize::from(total) <= frame.len() - ethernet::HEADER_LEN
        && checksum::verify_header20(ip);
    ok.then_some((h, total))
}

/// Checks an Ethernet frame carrying IPv4: lengths, version, IHL, header checksum.
#[inline]
fn check_ipv4_frame(frame: &[u8]) -> Result<(), DropReason> {
    let eth = ethernet::Frame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
    if eth.ethertype() != ethernet::ethertype::IPV4 {
        return Err(DropReason::NotIpv4);
    }
    let ip = ipv4::Packet::new_checked(eth.payload()).map_err(|e| match e {
        WireError::Checksum => DropReason::BadChecksum,
        _ => DropReason::Malformed,
    })?;
    if !ip.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    Ok(())
}

/// Decrements the TTL of the IPv4 header at the start of `ip`; false if it would expire
/// (TTL <= 1: not forwarded, the kernel answers with ICMP time exceeded).
#[inline]
fn decrement_ttl(ip: &mut [u8]) -> bool {
    let mut p = ipv4::Packet::new_unchecked(ip);
    if p.ttl() <= 1 {
        return false;
    }
    p.decrement_ttl();
    true
}

/// The lowest and one past the highest VXLAN source port, as the kernel picks them by
/// default (the local port range 32768-60999, `udp_flow_src_port`).
pub const SRC_PORT_MIN: u16 = 32768;
pub const SRC_PORT_MAX: u16 = 61000;

/// The outer UDP source port for an inner IPv4 packet: a hash of its flow (addresses,
/// protocol, and TCP/UDP ports unless fragmented) scaled into the kernel's range, so that
/// flows spread over ECMP paths and RSS queues while a flow keeps its port.
///
/// Panics if `ip` is shorter than an IPv4 header.
#[inline]
pub fn flow_src_port(ip: &[u8]) -> u16 {
    let h: &[u8; ipv4::HEADER_LEN] = ip.first_chunk().expect("an IPv4 header");
    let p = ipv4::Packet::new_unchecked(&h[..]);
    let proto = p.protocol();
    let mut ports = 0u32;
    if (proto == ipv4::protocol::TCP || proto == ipv4::protocol::UDP) && !p.is_fragment() {
        let hl = p.header_len();
        if let Some(b) = ip.get(hl..hl + 4) {
            ports = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    let h = flow_hash(p.src_u32(), p.dst_u32(), ports, proto);
    let range = u64::from(SRC_PORT_MAX - SRC_PORT_MIN);
    SRC_PORT_MIN + ((u64::from(h) * range) >> 32) as u16
}

/// A fast, well-mixing 32-bit hash of a flow (a multiply-xorshift finaliser; not
/// cryptographic: it only spreads flows).
#[inline]
fn flow_hash(src: u32, dst: u32, ports: u32, proto: u8) -> u32 {
    let mut h = (u64::from(src) << 32 | u64::from(dst))
        ^ u64::from(ports).rotate_left(17)
        ^ u64::from(proto) << 56;
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    (h ^ (h >> 33)) as u32
}

/// Precomputed encapsulation data for one VXLAN next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapTemplate {
    /// Egress port (the uplink).
    pub port: PortId,
    /// Egress MTU: the outer IPv4 packet must fit.
    pub mtu: u16,
    /// Inner destination (peer VTEP) and source (own VTEP) MAC.
    pub inner_macs: [u8; 12],
    /// Outer Ethernet/IPv4/UDP/VXLAN with zero lengths, checksum and source port.
    pub outer: [u8; vxlan::ENCAP_OVERHEAD],
    /// Unfolded ones'-complement sum of the outer IPv4 header with zero length/checksum.
    pub ip_sum: u32,
}

impl EncapTemplate {
    /// Builds the template: outer Ethernet `outer_src -> outer_dst`, IPv4 `src -> dst`
    /// (DF, TTL 64), UDP to `port` (checksum 0), VXLAN with the I flag and `vni`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        port: PortId,
        mtu: u16,
        outer_src: MacAddr,
        outer_dst: MacAddr,
        src: std::net::Ipv4Addr,
        dst: std::net::Ipv4Addr,
        udp_port: u16,
        vni: u32,
        vtep_src: MacAddr,
        vtep_dst: MacAddr,
    ) -> Self {
        let mut outer = [0u8; vxlan::ENCAP_OVERHEAD];
        let mut eth = ethernet::Frame::new_unchecked(&mut outer[..]);
        eth.set_dst_addr(outer_dst);
        eth.set_src_addr(outer_src);
        eth.set_ethertype(ethernet::ethertype::IPV4);
        let ip_off = ethernet::HEADER_LEN;
        ipv4::Repr {
            src,
            dst,
            protocol: ipv4::protocol::UDP,
            payload_len: 0,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut outer[ip_off..]);
        // Length and checksum are filled per packet.
        outer[ip_off + 2..ip_off + 4].copy_from_slice(&[0, 0]);
        outer[ip_off + 10..ip_off + 12].copy_from_slice(&[0, 0]);
        let ip_sum = checksum::add(0, &outer[ip_off..ip_off + ipv4::HEADER_LEN]);
        let udp_off = ip_off + ipv4::HEADER_LEN;
        udp::Repr {
            src_port: 0,
            dst_port: udp_port,
            payload_len: 0,
        }
        .emit(&mut outer[udp_off..]);
        outer[udp_off + 4..udp_off + 6].copy_from_slice(&[0, 0]);
        vxlan::Repr { vni }.emit(&mut outer[udp_off + udp::HEADER_LEN..]);
        let mut inner_macs = [0u8; 12];
        inner_macs[..6].copy_from_slice(&vtep_dst.0);
        inner_macs[6..].copy_from_slice(&vtep_src.0);
        EncapTemplate {
            port,
            mtu,
            inner_macs,
            outer,
            ip_sum,
        }
    }

    /// Writes the outer headers for an inner frame of `inner_len` bytes into `dst`
    /// (exactly 50 bytes: panics otherwise), with source port `sport` and outer ECN bits
    /// `ecn`.
    #[inline]
    pub fn write_outer(&self, dst: &mut [u8], inner_len: usize, sport: u16, ecn: u8) {
        let dst: &mut [u8; vxlan::ENCAP_OVERHEAD] =
            dst.try_into().expect("the outer headers are 50 bytes");
        self.write_outer_fixed(dst, inner_len, sport, ecn);
    }

    /// `write_outer` into a 50-byte array: every offset is a constant, nothing is checked.
    #[inline(always)]
    fn write_outer_fixed(
        &self,
        dst: &mut [u8; vxlan::ENCAP_OVERHEAD],
        inner_len: usize,
        sport: u16,
        ecn: u8,
    ) {
        *dst = self.outer;
        let ip_off = ethernet::HEADER_LEN;
        let udp_len = (udp::HEADER_LEN + vxlan::HEADER_LEN + inner_len) as u16;
        let ip_len = ipv4::HEADER_LEN as u16 + udp_len;
        dst[ip_off + 1] = ecn;
        dst[ip_off + 2..ip_off + 4].copy_from_slice(&ip_len.to_be_bytes());
        let sum = self.ip_sum + u32::from(ip_len) + u32::from(ecn);
        dst[ip_off + 10..ip_off + 12].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
        let udp_off = ip_off + ipv4::HEADER_LEN;
        dst[udp_off..udp_off + 2].copy_from_slice(&sport.to_be_bytes());
        dst[udp_off + 4..udp_off + 6].copy_from_slice(&udp_len.to_be_bytes());
    }
}

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
