//! The data path as it was before the fast paths (commit 3d335bb), kept verbatim as the
//! reference the differential tests compare `Pipeline::process` with. Wire helpers whose
//! implementation changed since (checksum fold and verify, TTL decrement, outer header
//! write) are inlined here in their original form, so the reference shares no changed code.

use super::*;

/// `checksum::fold` as it was: fold until the sum fits 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Where a frame stands after the parse pass.
#[derive(Clone, Copy)]
struct RefParsed {
    /// Offset of the (inner, after decap) IPv4 header in the buffer.
    l3: usize,
}

impl Pipeline {
    /// Processes a batch: `verdicts[i]` receives the verdict for `pkts[i]` (the slices must
    /// be the same length; extra verdict slots are left alone). Counts into `ctrs`.
    pub(super) fn reference_process(
        &self,
        pkts: &mut [Packet<'_>],
        verdicts: &mut [Verdict],
        ctrs: &mut Counters,
    ) {
        let n = pkts.len().min(verdicts.len());
        let mut start = 0;
        while start < n {
            let end = (start + MAX_BATCH).min(n);
            self.ref_process_chunk(&mut pkts[start..end], &mut verdicts[start..end], ctrs);
            start = end;
        }
    }

    fn ref_process_chunk(
        &self,
        pkts: &mut [Packet<'_>],
        verdicts: &mut [Verdict],
        ctrs: &mut Counters,
    ) {
        debug_assert!(pkts.len() <= MAX_BATCH);
        ctrs.batches += 1;
        ctrs.rx += pkts.len() as u64;
        ctrs.rx_bytes += pkts.iter().map(|p| p.len as u64).sum::<u64>();

        // The FIB snapshot (adjacencies, known VTEPs) is loaded once per batch.
        let snap = self.fib.snapshot.load();

        // Pass 1: parse, decapsulate, collect destinations of frames that need a lookup.
        let mut idx = [0u16; MAX_BATCH];
        let mut addrs = [0u32; MAX_BATCH];
        let mut parsed = [RefParsed { l3: 0 }; MAX_BATCH];
        let mut n = 0;
        for (i, pkt) in pkts.iter_mut().enumerate() {
            match self.ref_parse(pkt, &snap, ctrs) {
                Ok((p, dst)) => {
                    idx[n] = i as u16;
                    addrs[n] = dst;
                    parsed[n] = p;
                    n += 1;
                }
                Err(v) => verdicts[i] = v,
            }
        }

        // Pass 2: one batched lookup.
        let mut nhs = [None; MAX_BATCH];
        let lpm = self.fib.lpm.pin();
        lpm.lookup_batch(&addrs[..n], &mut nhs[..n]);

        // Pass 3: rewrite.
        for k in 0..n {
            let i = usize::from(idx[k]);
            verdicts[i] = self.ref_forward(&mut pkts[i], parsed[k], nhs[k], &snap, ctrs);
        }
    }

    /// Validates the frame and, for VXLAN to us, the outer headers; returns where the IPv4
    /// header to route is and its destination, or a final verdict (already counted).
    fn ref_parse(
        &self,
        pkt: &mut Packet<'_>,
        snap: &FibSnapshot,
        ctrs: &mut Counters,
    ) -> Result<(RefParsed, u32), Verdict> {
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
            return Ok((RefParsed { l3 }, dst));
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
        let inner_total = usize::from(inner_ip.total_len());
        ctrs.decapsulated += 1;
        pkt.offset = inner_off;
        pkt.len = ethernet::HEADER_LEN + inner_total;
        ctrs.decapsulated_bytes += pkt.len as u64;
        Ok((
            RefParsed {
                l3: inner_off + ethernet::HEADER_LEN,
            },
            inner_dst,
        ))
    }

    /// Applies the route's adjacency to a parsed frame and counts the outcome.
    #[inline]
    fn ref_forward(
        &self,
        pkt: &mut Packet<'_>,
        p: RefParsed,
        nh: Option<NextHopId>,
        snap: &FibSnapshot,
        ctrs: &mut Counters,
    ) -> Verdict {
        let v = self.ref_apply(pkt, p, nh, snap);
        match v {
            Verdict::Drop(r) => ctrs.drop(r),
            Verdict::ToKernel => ctrs.to_kernel += 1,
            Verdict::Tx(_) if pkt.offset + ENCAP_HEADROOM + ethernet::HEADER_LEN == p.l3 => {
                ctrs.encapsulated += 1;
                ctrs.encapsulated_bytes += pkt.len as u64;
            }
            Verdict::Tx(_) => {
                ctrs.forwarded += 1;
                ctrs.forwarded_bytes += pkt.len as u64;
            }
        }
        v
    }

    #[inline]
    fn ref_apply(
        &self,
        pkt: &mut Packet<'_>,
        p: RefParsed,
        nh: Option<NextHopId>,
        snap: &FibSnapshot,
    ) -> Verdict {
        let Some(nh) = nh else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let Some(adj) = snap.adjacency(nh) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let l3 = p.l3;
        let ip_len = {
            let ip = ipv4::Packet::new_unchecked(&pkt.buf[l3..]);
            usize::from(ip.total_len())
        };
        match adj {
            Adjacency::Rewrite { port, macs, mtu } => {
                if ip_len > usize::from(*mtu) {
                    return Verdict::Drop(DropReason::Mtu);
                }
                if !decrement_ttl(&mut pkt.buf[l3..]) {
                    return Verdict::ToKernel;
                }
                pkt.buf[pkt.offset..pkt.offset + 12].copy_from_slice(macs);
                // Drop Ethernet padding: the egress frame carries exactly the IP packet.
                pkt.len = ethernet::HEADER_LEN + ip_len;
                Verdict::Tx(*port)
            }
            Adjacency::Encap(e) => {
                let inner_len = ethernet::HEADER_LEN + ip_len;
                // The outer IPv4 packet is the inner IP packet plus 50 bytes (flannel.1 MTU = uplink - 50).
                if ip_len + vxlan::ENCAP_OVERHEAD > usize::from(e.mtu) {
                    return Verdict::Drop(DropReason::Mtu);
                }
                let Some(outer) = pkt.offset.checked_sub(vxlan::ENCAP_OVERHEAD) else {
                    return Verdict::Drop(DropReason::NoHeadroom);
                };
                if !decrement_ttl(&mut pkt.buf[l3..]) {
                    return Verdict::ToKernel;
                }
                let sport = flow_src_port(&pkt.buf[l3..l3 + ip_len]);
                // RFC 6040 normal mode, as INET_ECN_encapsulate: copy ECN, CE becomes ECT(0).
                let ecn = match pkt.buf[l3 + 1] & 0x03 {
                    0x03 => 0x02,
                    e => e,
                };
                pkt.buf[pkt.offset..pkt.offset + 12].copy_from_slice(&e.inner_macs);
                write_outer(e, &mut pkt.buf[outer..pkt.offset], inner_len, sport, ecn);
                pkt.offset = outer;
                pkt.len = vxlan::ENCAP_OVERHEAD + inner_len;
                Verdict::Tx(e.port)
            }
            Adjacency::Unresolved => Verdict::Drop(DropReason::NeighbourUnresolved),
            Adjacency::Local => Verdict::ToKernel,
            Adjacency::Blackhole => Verdict::Drop(DropReason::Blackhole),
        }
    }
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
    if fold(checksum::add(0, &eth.payload()[..ip.header_len()])) != 0xffff {
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
    let (ttl, proto) = (p.ttl(), p.protocol());
    let old = u16::from_be_bytes([ttl, proto]);
    let new = u16::from_be_bytes([ttl - 1, proto]);
    let check = checksum::update_u16(p.checksum(), old, new);
    p.set_ttl(ttl - 1);
    p.set_checksum(check);
    true
}

/// The outer UDP source port for an inner IPv4 packet: a hash of its flow (addresses,
/// protocol, and TCP/UDP ports unless fragmented) scaled into the kernel's range, so that
/// flows spread over ECMP paths and RSS queues while a flow keeps its port.
#[inline]
fn flow_src_port(ip: &[u8]) -> u16 {
    let p = ipv4::Packet::new_unchecked(ip);
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

/// Writes the outer headers for an inner frame of `inner_len` bytes into `dst`
/// (exactly 50 bytes), with source port `sport` and outer ECN bits `ecn`.
#[inline]
fn write_outer(e: &EncapTemplate, dst: &mut [u8], inner_len: usize, sport: u16, ecn: u8) {
    dst.copy_from_slice(&e.outer);
    let ip_off = ethernet::HEADER_LEN;
    let udp_len = (udp::HEADER_LEN + vxlan::HEADER_LEN + inner_len) as u16;
    let ip_len = ipv4::HEADER_LEN as u16 + udp_len;
    dst[ip_off + 1] = ecn;
    dst[ip_off + 2..ip_off + 4].copy_from_slice(&ip_len.to_be_bytes());
    let sum = e.ip_sum + u32::from(ip_len) + u32::from(ecn);
    dst[ip_off + 10..ip_off + 12].copy_from_slice(&(!fold(sum)).to_be_bytes());
    let udp_off = ip_off + ipv4::HEADER_LEN;
    dst[udp_off..udp_off + 2].copy_from_slice(&sport.to_be_bytes());
    dst[udp_off + 4..udp_off + 6].copy_from_slice(&udp_len.to_be_bytes());
}

/// Differential tests: `Pipeline::process` must decide, count and write exactly what the
/// reference does, for valid frames of every kind and for mutilated ones.
mod differential {
    use super::*;
    use crate::lpm::{Ipv4Net, LpmConfig};
    use crate::nexthop::NextHop;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const UPLINK: PortId = 0;
    const POD: PortId = 1;
    const NARROW: PortId = 2;
    const NODE_IP: [u8; 4] = [10, 168, 0, 2];
    const VTEP: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x0a];
    /// Room in front of every frame, more than encapsulation needs.
    const ROOM: usize = 64;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    /// Node 10.168.0.2 with a route of every kind:
    /// 10.244.0.0/24 local pods (.2 and .3 resolved), 10.244.1.0/24 host-gw via .3,
    /// 10.244.2.0/24 VXLAN to .4, 10.244.3.0/24 VXLAN to .5 (unresolved), 10.244.4.0/24
    /// local, 10.244.5.0/24 blackhole, 10.244.6.0/24 host-gw on a port with MTU 100.
    fn node() -> (FibWriter, Pipeline) {
        let params = NodeParams {
            node_ip: Ipv4Addr::from(NODE_IP),
            uplink: UPLINK,
            vni: 1,
            vxlan_port: 8472,
            vtep_mac: MacAddr(VTEP),
        };
        let port = |last, mtu| PortInfo {
            mac: mac(last),
            mtu,
        };
        let (mut w, fib) = FibWriter::new(FibParams {
            node: params,
            ports: vec![port(0xa1, 1500), port(0xa3, 1500), port(0xa4, 100)],
            uplink_subnet: None,
            gateway: None,
            lpm: LpmConfig::default(),
        });
        let ip = |d| Ipv4Addr::new(10, 168, 0, d);
        w.set_route(net("10.244.0.0/24"), NextHop::Connected { port: POD })
            .unwrap();
        for h in [2, 3] {
            w.set_neighbour(POD, Ipv4Addr::new(10, 244, 0, h), Some(mac(h)))
                .unwrap();
        }
        let gw = |d, port| NextHop::HostGw {
            gateway: ip(d),
            port,
        };
        let vx = |d| NextHop::Vxlan {
            node_ip: ip(d),
            vtep_mac: MacAddr([0x0e, 0, 0, 0, 0, d]),
        };
        w.set_route(net("10.244.1.0/24"), gw(3, UPLINK)).unwrap();
        w.set_route(net("10.244.2.0/24"), vx(4)).unwrap();
        w.set_route(net("10.244.3.0/24"), vx(5)).unwrap();
        w.set_route(net("10.244.4.0/24"), NextHop::Local).unwrap();
        w.set_route(net("10.244.5.0/24"), NextHop::Drop).unwrap();
        w.set_route(net("10.244.6.0/24"), gw(6, NARROW)).unwrap();
        for d in [3, 4] {
            w.set_neighbour(UPLINK, ip(d), Some(mac(0xb0 + d))).unwrap();
        }
        w.set_neighbour(NARROW, ip(6), Some(mac(0xb6))).unwrap();
        (w, Pipeline::new(params, fib))
    }

    /// An Ethernet/IPv4 frame with `opts` bytes of (NOP) options and a valid checksum.
    #[allow(clippy::too_many_arguments)]
    fn ipv4_frame(
        dst_mac: [u8; 6],
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        ttl: u8,
        tos: u8,
        frag: u16,
        opts: usize,
        l4: &[u8],
    ) -> Vec<u8> {
        let hl = 20 + opts;
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 0x99]);
        f.extend_from_slice(&[0x08, 0x00]);
        f.push(0x40 | (hl / 4) as u8);
        f.push(tos);
        f.extend_from_slice(&((hl + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34]);
        f.extend_from_slice(&frag.to_be_bytes());
        f.extend_from_slice(&[ttl, proto, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend(std::iter::repeat_n(1u8, opts));
        f.extend_from_slice(l4);
        fix_ip_checksum(&mut f, 14);
        f
    }

    /// Recomputes the IPv4 header checksum at `l3` if the header is there.
    fn fix_ip_checksum(f: &mut [u8], l3: usize) {
        let Some(&vi) = f.get(l3) else { return };
        let hl = usize::from(vi & 0x0f) * 4;
        if hl < 10 || f.len() < l3 + hl {
            return;
        }
        f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&f[l3..l3 + hl]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }

    /// UDP (ports and length) or TCP-like (ports only) transport bytes.
    fn l4(proto: u8, sport: u16, payload: usize) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&5000u16.to_be_bytes());
        b.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend((0..payload).map(|i| i as u8));
        if proto == ipv4::protocol::TCP {
            b.resize(b.len().max(20), 0);
        }
        b
    }

    /// What a test frame is, before mutation.
    #[derive(Debug, Clone)]
    struct Spec {
        /// Index into the destinations: pods, peers, the node itself, no route, ...
        dst: usize,
        proto: u8,
        ttl: u8,
        tos: u8,
        frag: u16,
        opts: usize,
        payload: usize,
        sport: u16,
        pad: usize,
        /// Wrap in VXLAN from this peer (index into SOURCES), with these outer options.
        vxlan: Option<(usize, usize, u32)>,
        from_uplink: bool,
    }

    const DSTS: [[u8; 4]; 12] = [
        [10, 244, 0, 2],
        [10, 244, 0, 3],
        [10, 244, 0, 9], // local pod without a neighbour entry
        [10, 244, 1, 7],
        [10, 244, 2, 7],
        [10, 244, 3, 7],
        [10, 244, 4, 7],
        [10, 244, 5, 7],
        [10, 244, 6, 7],
        [192, 0, 2, 1], // no route
        NODE_IP,
        [10, 168, 0, 4],
    ];
    /// Outer sources: known peers and a stranger.
    const SOURCES: [[u8; 4]; 3] = [[10, 168, 0, 4], [10, 168, 0, 5], [10, 168, 0, 77]];
    const PROTOS: [u8; 4] = [17, 6, 1, 47];

    fn build(s: &Spec) -> Vec<u8> {
        let src = [10, 244, 9, 2];
        let inner_mac = if s.vxlan.is_some() {
            VTEP
        } else {
            [2, 0, 0, 0, 0, 0xa3]
        };
        let mut f = ipv4_frame(
            inner_mac,
            src,
            DSTS[s.dst],
            s.proto,
            s.ttl,
            s.tos,
            s.frag,
            s.opts,
            &l4(s.proto, s.sport, s.payload),
        );
        if let Some((from, outer_opts, vni)) = s.vxlan {
            let mut udp = Vec::new();
            udp.extend_from_slice(&s.sport.to_be_bytes());
            udp.extend_from_slice(&8472u16.to_be_bytes());
            udp.extend_from_slice(&((16 + f.len()) as u16).to_be_bytes());
            udp.extend_from_slice(&[0, 0, 0x08, 0, 0, 0]);
            udp.extend_from_slice(&vni.to_be_bytes()[1..]);
            udp.push(0);
            udp.extend_from_slice(&f);
            f = ipv4_frame(
                [2, 0, 0, 0, 0, 0xa1],
                SOURCES[from],
                NODE_IP,
                ipv4::protocol::UDP,
                64,
                0,
                0,
                outer_opts,
                &udp,
            );
        }
        f.resize(f.len() + s.pad, 0);
        f
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            (
                0..DSTS.len(),
                0..PROTOS.len(),
                prop::sample::select(vec![0u8, 1, 2, 3, 64, 255]),
            ),
            (
                any::<u8>(),
                prop::sample::select(vec![0u16, 0x4000, 0x2000, 0x0001]),
            ),
            (
                prop::sample::select(vec![0usize, 0, 0, 4, 40]),
                0..120usize,
                any::<u16>(),
            ),
            prop::sample::select(vec![0usize, 0, 3, 20]),
            prop::option::of((
                0..SOURCES.len(),
                prop::sample::select(vec![0usize, 0, 8]),
                0..3u32,
            )),
            any::<bool>(),
        )
            .prop_map(
                |((dst, p, ttl), (tos, frag), (opts, payload, sport), pad, vxlan, up)| Spec {
                    dst,
                    proto: PROTOS[p],
                    ttl,
                    tos,
                    frag,
                    opts,
                    payload,
                    sport,
                    pad,
                    vxlan,
                    from_uplink: up || vxlan.is_some(),
                },
            )
    }

    /// A frame to send: a spec, mutations (position, xor) with checksums fixed up or not,
    /// a cut-off length and the headroom in front of it.
    type Case = (Spec, Vec<(usize, u8)>, bool, Option<usize>, usize);

    fn case() -> impl Strategy<Value = Case> {
        (
            spec(),
            prop::collection::vec((0..160usize, 1..=255u8), 0..3),
            any::<bool>(),
            prop::option::of(0..200usize),
            prop::sample::select(vec![ROOM, ROOM, ROOM, 0, 49, 50]),
        )
    }

    /// Runs `cases` through `process` (or the reference) with the frame at `room` bytes
    /// into its buffer: verdicts, (offset, len, buffer) of every frame, counters.
    #[allow(clippy::type_complexity)]
    fn run(
        p: &Pipeline,
        cases: &[Case],
        reference: bool,
    ) -> (Vec<Verdict>, Vec<(usize, usize, Vec<u8>)>, Counters) {
        let mut bufs: Vec<(Vec<u8>, usize, usize, PortId)> = cases
            .iter()
            .map(|(spec, muts, fix, cut, room)| {
                let mut f = build(spec);
                for &(at, x) in muts {
                    if let Some(b) = f.get_mut(at) {
                        *b ^= x;
                    }
                }
                if *fix {
                    fix_ip_checksum(&mut f, 14);
                    if spec.vxlan.is_some() {
                        let hl = usize::from(f[14] & 0x0f) * 4;
                        fix_ip_checksum(&mut f, 14 + hl + 16 + 14);
                    }
                }
                let mut len = f.len();
                if let Some(c) = cut {
                    len = len.min(*c);
                }
                let mut buf = vec![0xeeu8; *room];
                buf.extend_from_slice(&f);
                let port = if spec.from_uplink { UPLINK } else { POD };
                (buf, *room, len, port)
            })
            .collect();
        let mut pkts: Vec<Packet> = bufs
            .iter_mut()
            .map(|(buf, off, len, port)| Packet {
                buf,
                offset: *off,
                len: *len,
                ingress: *port,
            })
            .collect();
        let mut v = vec![Verdict::ToKernel; pkts.len()];
        let mut c = Counters::default();
        if reference {
            p.reference_process(&mut pkts, &mut v, &mut c);
        } else {
            p.process(&mut pkts, &mut v, &mut c);
        }
        let frames = pkts
            .iter()
            .map(|p| (p.offset, p.len, p.buf.to_vec()))
            .collect();
        (v, frames, c)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn process_does_exactly_what_the_reference_does(
            cases in prop::collection::vec(case(), 1..80),
        ) {
            let (_w, p) = node();
            let ours = run(&p, &cases, false);
            let reference = run(&p, &cases, true);
            prop_assert_eq!(&ours.0, &reference.0);
            prop_assert_eq!(&ours.1, &reference.1);
            prop_assert_eq!(&ours.2, &reference.2);
        }
    }

    /// The generator reaches every verdict and drop reason it should.
    #[test]
    fn the_cases_cover_every_outcome() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let (_w, p) = node();
        let mut runner = TestRunner::deterministic();
        let mut total = Counters::default();
        for _ in 0..300 {
            let cases = prop::collection::vec(case(), 64)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            total.merge(&run(&p, &cases, false).2);
        }
        assert!(total.forwarded > 0 && total.encapsulated > 0 && total.decapsulated > 0);
        assert!(total.to_kernel > 0);
        for r in DropReason::ALL {
            if r == DropReason::HandoffFailed {
                continue; // a backend's, not the pipeline's
            }
            assert!(total.drops_of(r) > 0, "no frame dropped for {r}");
        }
    }
}
