//! Fuzz target: `Pipeline::process` on arbitrary frames with arbitrary FIB contents.
//!
//! The input is read as a little program: node parameters and ports, a sequence of FIB
//! operations (`set_route`, `set_neighbour`, `remove_route`), then a batch of frames.
//! Each frame is either raw bytes or built from fields (Ethernet/IPv4, optionally inside
//! VXLAN to this node) with correct lengths and checksums unless the input says
//! otherwise, so the mutator reaches decapsulation and forwarding without having to guess
//! a checksum. Headroom, tailroom, offset, length and ingress port vary per frame.
//! Addresses come from a small universe (10.0-3.0-7.0-7) so that routes, neighbours,
//! VTEPs, the node's own address and frame addresses meet; prefixes are /16 to /32 (a
//! shorter one writes thousands to millions of tbl24 entries on every run, which would
//! slow the target down a hundredfold; the LPM's own tests cover short prefixes).
//!
//! Checked after the batch (see docs/fuzzing.md): the counters add up to rx and match the
//! verdicts one by one; a frame not transmitted is left byte for byte as it came (only
//! its offset may move to the inner frame of a VXLAN packet); a transmitted frame lies
//! inside its buffer, on an existing port, and is either a MAC rewrite of what the FIB
//! holds for its destination or a VXLAN encapsulation matching the FIB's template for the
//! inner destination, with valid IPv4 header checksums, lengths that match the frame
//! (Ethernet padding removed), TTL >= 1, within the MTU; bytes outside the frame before
//! and after are untouched.

use podfwd::counters::{Counters, DropReason};
use podfwd::lpm::{Ipv4Net, LpmConfig};
use podfwd::nexthop::{NextHop, PortId};
use podfwd::pipeline::{
    Adjacency, Fib, FibParams, FibWriter, NodeParams, Packet, Pipeline, PortInfo, Verdict,
    MAX_BATCH, SRC_PORT_MAX, SRC_PORT_MIN,
};
use podfwd::wire::MacAddr;
use std::net::Ipv4Addr;

/// Reads the fuzz input front to back; zeros once it runs out.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `n` bytes of the input (fewer when it runs out).
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    /// An address of the universe, or (0xff) any address.
    fn addr(&mut self) -> Ipv4Addr {
        match self.u8() {
            0xff => Ipv4Addr::from(self.u32()),
            b => Ipv4Addr::new(10, b >> 6, (b >> 3) & 7, b & 7),
        }
    }

    fn mac(&mut self) -> MacAddr {
        match self.u8() {
            0xff => {
                let mut m = [0u8; 6];
                for b in &mut m {
                    *b = self.u8();
                }
                MacAddr(m)
            }
            b => MacAddr([0x02, 0, 0, 0, 0, b]),
        }
    }

    /// A prefix of /16 to /32 around an address of the universe.
    fn prefix(&mut self) -> Ipv4Net {
        let ip = self.addr();
        let len = 16 + self.u8() % 17;
        Ipv4Net::new(ip, len).expect("a prefix length <= 32")
    }
}

/// Everything about the node the frame builder and the checks need.
struct Node {
    params: NodeParams,
    ports: Vec<PortInfo>,
}

fn main() {
    // Set to see what a single input did (run the binary with the input on stdin).
    let debug = std::env::var_os("PODFWD_FUZZ_DEBUG").is_some();
    afl::fuzz!(|data: &[u8]| {
        run(data, debug);
    });
}

fn run(data: &[u8], debug: bool) {
    let mut r = Input { data };
    let (node, mut w, fib) = build_fib(&mut r);
    let pipeline = Pipeline::new(node.params, fib.clone());

    // The batch: usually a few frames, sometimes enough for several LPM windows (64)
    // and more than one chunk (MAX_BATCH).
    let n = match r.u8() {
        b @ 0..=0xef => usize::from(b % 12),
        b => 60 + usize::from(b & 0xf) * 16,
    };
    let mut bufs = Vec::with_capacity(n);
    let mut geometry = Vec::with_capacity(n);
    for _ in 0..n {
        let (buf, offset, len, ingress) = build_packet(&mut r, &node);
        bufs.push(buf);
        geometry.push((offset, len, ingress));
    }
    let originals = bufs.clone();
    let mut pkts: Vec<Packet<'_>> = bufs
        .iter_mut()
        .zip(&geometry)
        .map(|(buf, &(offset, len, ingress))| Packet {
            buf,
            offset,
            len,
            ingress,
        })
        .collect();
    // A port that does not exist: a verdict the pipeline failed to write fails the checks.
    // Spare slots past the batch must be left alone.
    let spare = usize::from(r.u8() % 3);
    let mut verdicts = vec![Verdict::Tx(PortId::MAX); n + spare];
    let mut ctrs = Counters::default();
    pipeline.process(&mut pkts, &mut verdicts, &mut ctrs);
    assert!(verdicts[n..].iter().all(|v| *v == Verdict::Tx(PortId::MAX)));
    verdicts.truncate(n);

    if debug {
        eprintln!("routes: {:?}", w.routes().collect::<Vec<_>>());
        eprintln!("verdicts: {verdicts:?}");
        eprintln!("{ctrs:?}");
    }
    check_counters(&ctrs, &verdicts, n);
    for ((pkt, v), (orig, &(offset, len, _))) in pkts
        .iter()
        .zip(&verdicts)
        .zip(originals.iter().zip(&geometry))
    {
        check_frame(&node, &fib, pkt, *v, orig, offset, len);
    }

    // The FIB can still change after a batch (the writer outlives the readers' use).
    let prefix = r.prefix();
    w.remove_route(prefix);
}

/// Node parameters, ports, and the FIB after a sequence of operations from the input.
fn build_fib(r: &mut Input<'_>) -> (Node, FibWriter, Fib) {
    let nports = 1 + usize::from(r.u8() % 4);
    let ports: Vec<PortInfo> = (0..nports)
        .map(|_| PortInfo {
            mac: r.mac(),
            mtu: match r.u8() % 4 {
                0 => 1500,
                1 => 9000,
                2 => 1450,
                _ => r.u16(),
            },
        })
        .collect();
    let params = NodeParams {
        node_ip: r.addr(),
        uplink: PortId::from(r.u8()) % nports as PortId,
        vni: match r.u8() {
            0 => 1,
            1 => (u32::from(r.u16()) << 8 | u32::from(r.u8())) & 0xff_ffff,
            b => u32::from(b),
        },
        vxlan_port: if r.bool() { r.u16() } else { 8472 },
        vtep_mac: r.mac(),
    };
    let uplink_subnet = r.bool().then(|| r.prefix());
    let gateway = r.bool().then(|| r.addr());
    let fib_params = FibParams {
        node: params,
        ports: ports.clone(),
        uplink_subnet,
        gateway,
        // Small: only address space is reserved, but keep each run's mapping modest.
        lpm: LpmConfig {
            max_tbl8_groups: 64,
            huge_pages: false,
        },
    };
    let (mut w, fib) = FibWriter::new(fib_params);
    let ops = r.u8() % 24;
    for _ in 0..ops {
        match r.u8() % 8 {
            0..=3 => {
                let prefix = r.prefix();
                // One past the last port: set_route must refuse it.
                let port = PortId::from(r.u8()) % (nports as PortId + 1);
                let nh = match r.u8() % 5 {
                    0 => NextHop::HostGw {
                        gateway: r.addr(),
                        port,
                    },
                    1 => NextHop::Connected { port },
                    2 => NextHop::Vxlan {
                        node_ip: r.addr(),
                        vtep_mac: r.mac(),
                    },
                    3 => NextHop::Local,
                    _ => NextHop::Drop,
                };
                let before: Vec<_> = w.routes().map(|(p, n)| (*p, *n)).collect();
                match w.set_route(prefix, nh) {
                    Ok(()) => assert!(
                        w.routes().any(|(p, n)| *p == prefix.trunc() && *n == nh),
                        "route {prefix} -> {nh} accepted but not listed"
                    ),
                    Err(podfwd::pipeline::FibError::NoSuchPort { .. }) => {
                        assert!(usize::from(port) >= nports);
                        let after: Vec<_> = w.routes().map(|(p, n)| (*p, *n)).collect();
                        assert_eq!(before, after, "a refused route changed the routes");
                    }
                    Err(_) => {}
                }
            }
            4..=6 => {
                let port = PortId::from(r.u8()) % (nports as PortId + 1);
                let ip = r.addr();
                let mac = (r.u8() % 4 != 3).then(|| r.mac());
                let _ = w.set_neighbour(port, ip, mac);
            }
            _ => {
                let prefix = r.prefix();
                w.remove_route(prefix);
            }
        }
    }
    // The control path's queries must not panic either.
    let _ = w.unresolved();
    let _ = w.next_hops();
    (Node { params, ports }, w, fib)
}

/// One frame in its own buffer: (buffer, offset, len, ingress port).
fn build_packet(r: &mut Input<'_>, node: &Node) -> (Vec<u8>, usize, usize, PortId) {
    let ctl = r.u8();
    let headroom = match ctl & 7 {
        1 => 49,
        2 => 50,
        3 => usize::from(r.u8()),
        4 => 0,
        _ => 64,
    };
    let ingress = match (ctl >> 3) & 3 {
        0 => node.params.uplink,
        1 => PortId::from(r.u8()),
        _ => (node.params.uplink + 1) % node.ports.len() as PortId,
    };
    let mut frame = Vec::new();
    match (ctl >> 5) & 3 {
        1 => {
            let mut inner = Vec::new();
            build_ipv4(r, node, &mut inner, None);
            build_ipv4(r, node, &mut frame, Some(&inner));
        }
        2 => {
            let len = usize::from(r.u8()) + if r.bool() { 256 } else { 0 };
            frame.extend_from_slice(r.bytes(len));
        }
        _ => build_ipv4(r, node, &mut frame, None),
    }
    // Flip a few bytes of a built frame (after its checksum was computed).
    if ctl & 0x80 != 0 && !frame.is_empty() {
        for _ in 0..1 + r.u8() % 3 {
            let i = usize::from(r.u16()) % frame.len();
            frame[i] ^= r.u8() | 1;
        }
    }
    let tailroom = match r.u8() {
        0xc0.. => usize::from(r.u8()),
        _ => 0,
    };
    let mut buf = vec![0xa5u8; headroom];
    buf.extend_from_slice(&frame);
    buf.resize(buf.len() + tailroom, 0x5a);
    let (mut offset, mut len) = (headroom, frame.len());
    // Rarely, a geometry that does not fit the buffer (a backend bug the pipeline must
    // survive), or a frame that ends before the buffer does.
    match r.u8() {
        0xff => len += usize::from(r.u8()) + 1,
        0xfe => offset = buf.len() + usize::from(r.u8()),
        0xfd => len = usize::MAX - usize::from(r.u8()),
        0xfc => len = len.saturating_sub(usize::from(r.u8())),
        _ => {}
    }
    (buf, offset, len, ingress)
}

/// Ethernet/IPv4 from fields read from the input, appended to `out`. With `vxlan_inner`,
/// an outer packet carrying UDP/VXLAN and that inner frame, usually to this node.
fn build_ipv4(r: &mut Input<'_>, node: &Node, out: &mut Vec<u8>, vxlan_inner: Option<&[u8]>) {
    let dst_mac = match r.u8() % 4 {
        0 => node.params.vtep_mac,
        1 => node.ports[usize::from(r.u8()) % node.ports.len()].mac,
        _ => r.mac(),
    };
    out.extend_from_slice(&dst_mac.0);
    out.extend_from_slice(&r.mac().0);
    let ethertype = match r.u8() {
        0xff => r.u16(),
        _ => 0x0800,
    };
    out.extend_from_slice(&ethertype.to_be_bytes());

    let opts = match r.u8() {
        b @ 0xf0.. => 4 * usize::from(b % 11),
        _ => 0,
    };
    let ihl = 5 + opts / 4;
    let ver_ihl = match r.u8() {
        0xff => r.u8(),
        _ => 0x40 | ihl as u8,
    };
    let tos = r.u8();
    let ident = r.u16();
    let flags_frag: u16 = match r.u8() % 8 {
        0 => 0,
        1 => 0x2000,
        2 => r.u16(),
        _ => 0x4000,
    };
    // 0 reads as 64; 192, 193 and 194 as the TTLs that expire or just survive.
    let ttl = r.u8().wrapping_add(64);
    let vxlan = vxlan_inner.is_some();
    let proto = if vxlan {
        17
    } else {
        match r.u8() % 4 {
            0 => 17,
            1 => 6,
            2 => 1,
            _ => r.u8(),
        }
    };
    let src = r.addr();
    let dst = if vxlan && r.u8() % 4 != 3 {
        node.params.node_ip
    } else {
        r.addr()
    };

    let mut payload = Vec::new();
    if let Some(inner) = vxlan_inner {
        let sport = r.u16();
        let dport = match r.u8() % 8 {
            7 => r.u16(),
            _ => node.params.vxlan_port,
        };
        let udp_len = match r.u8() {
            0xff => r.u16(),
            _ => (8 + 8 + inner.len()) as u16,
        };
        payload.extend_from_slice(&sport.to_be_bytes());
        payload.extend_from_slice(&dport.to_be_bytes());
        payload.extend_from_slice(&udp_len.to_be_bytes());
        payload.extend_from_slice(&r.u16().to_be_bytes()); // checksum (0: none)
        let flags = match r.u8() % 8 {
            7 => r.u8(),
            _ => 0x08,
        };
        let vni = match r.u8() % 8 {
            7 => r.u32() & 0xff_ffff,
            _ => node.params.vni,
        };
        payload.extend_from_slice(&[flags, 0, 0, 0]);
        payload.extend_from_slice(&(vni << 8).to_be_bytes());
        payload.extend_from_slice(inner);
    } else {
        let n = usize::from(r.u8());
        payload.extend_from_slice(r.bytes(n));
        // Large packets for the MTU checks: zeros after the bytes from the input.
        if r.u8() == 0xff {
            payload.resize(n + usize::from(r.u16()) % 9200, 0);
        }
    }
    let total = match r.u8() {
        0xff => r.u16(),
        0xfe => (20 + opts + payload.len()).saturating_sub(usize::from(r.u8() % 8)) as u16,
        _ => (20 + opts + payload.len()).min(usize::from(u16::MAX)) as u16,
    };
    let ip = out.len();
    out.push(ver_ihl);
    out.push(tos);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&ident.to_be_bytes());
    out.extend_from_slice(&flags_frag.to_be_bytes());
    out.push(ttl);
    out.push(proto);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    for _ in 0..opts {
        out.push(r.u8());
    }
    let hlen = out.len() - ip;
    let sum = match r.u8() {
        0xff => r.u16(),
        _ => !ones_sum(&out[ip..ip + hlen]),
    };
    out[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&payload);
    // Ethernet padding after the IPv4 packet (as on short frames from a NIC).
    if r.u8() == 0xff {
        let pad = usize::from(r.u8() % 64);
        out.resize(out.len() + pad, 0);
    }
}

/// The folded ones'-complement sum of `data` (an independent implementation, not
/// podfwd's `wire::checksum`).
fn ones_sum(data: &[u8]) -> u16 {
    let mut s: u64 = 0;
    for c in data.chunks(2) {
        s += u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// The counters add up to rx and match the verdicts, reason by reason.
fn check_counters(c: &Counters, verdicts: &[Verdict], n: usize) {
    assert_eq!(c.rx, n as u64);
    assert_eq!(c.batches, n.div_ceil(MAX_BATCH) as u64);
    assert_eq!(
        c.forwarded + c.encapsulated + c.to_kernel + c.total_drops(),
        c.rx,
        "counters do not add up: {c:?}"
    );
    assert!(c.decapsulated <= c.rx);
    let tx = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Tx(_)))
        .count() as u64;
    let to_kernel = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::ToKernel))
        .count() as u64;
    assert_eq!(tx, c.forwarded + c.encapsulated, "{c:?} {verdicts:?}");
    assert_eq!(to_kernel, c.to_kernel, "{c:?} {verdicts:?}");
    for r in DropReason::ALL {
        let dropped = verdicts.iter().filter(|v| **v == Verdict::Drop(r)).count() as u64;
        assert_eq!(dropped, c.drops_of(r), "drops of {r}: {c:?} {verdicts:?}");
    }
    // Nothing the pipeline must leave alone was touched.
    assert_eq!((c.tx, c.ring_full, c.tso_in, c.gro_out), (0, 0, 0, 0));
}

/// Checks one frame after the batch against its buffer before it.
fn check_frame(
    node: &Node,
    fib: &Fib,
    pkt: &Packet<'_>,
    v: Verdict,
    orig: &[u8],
    offset: usize,
    len: usize,
) {
    let buf = &*pkt.buf;
    assert_eq!(buf.len(), orig.len());
    let port = match v {
        Verdict::Tx(port) => port,
        Verdict::ToKernel | Verdict::Drop(_) => {
            // Not sent: the bytes are as they came (the offset may have moved to the
            // inner frame of a decapsulated packet).
            assert!(buf == orig, "a frame not sent ({v:?}) was modified");
            if v == Verdict::ToKernel {
                let end = pkt.offset.checked_add(pkt.len).expect("no overflow");
                assert!(
                    end <= buf.len(),
                    "a frame for the kernel is out of its buffer"
                );
                assert!(pkt.offset >= offset && end <= offset.saturating_add(len));
            }
            return;
        }
    };
    assert!(usize::from(port) < node.ports.len(), "Tx to port {port}");
    let end = pkt.offset.checked_add(pkt.len).expect("no overflow");
    assert!(
        end <= buf.len(),
        "Tx frame {}+{} out of its buffer",
        pkt.offset,
        pkt.len
    );
    // Only the frame as sent and the frame as received may differ from before.
    let old_end = offset.saturating_add(len); // valid, or it would not be sent
    for (i, (a, b)) in buf.iter().zip(orig).enumerate() {
        if a != b {
            assert!(
                (pkt.offset..end).contains(&i) || (offset..old_end).contains(&i),
                "byte {i} outside the frame changed (frame {}..{end}, was {offset}..{old_end})",
                pkt.offset
            );
        }
    }
    let f = pkt.frame();
    let rewrite = check_rewrite(fib, f, port);
    let encap = check_encap(node, fib, f, port);
    assert!(
        rewrite.is_ok() || encap.is_ok(),
        "Tx frame on port {port} is neither a valid rewrite ({rewrite:?}) nor a valid \
         encapsulation ({encap:?}): {f:02x?}"
    );
}

/// A valid Ethernet/IPv4 header filling the whole frame: (header length, total length).
fn check_ipv4(f: &[u8]) -> Result<(usize, usize), String> {
    if f.len() < 34 {
        return Err(format!("{} bytes, shorter than Ethernet/IPv4", f.len()));
    }
    if be16(f, 12) != 0x0800 {
        return Err("not IPv4".into());
    }
    let ip = &f[14..];
    if ip[0] >> 4 != 4 || ip[0] & 0xf < 5 {
        return Err(format!("version/IHL {:#x}", ip[0]));
    }
    let hl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(be16(ip, 2));
    if total != f.len() - 14 {
        return Err(format!(
            "IPv4 total length {total} in a {}-byte frame",
            f.len()
        ));
    }
    if hl > total {
        return Err(format!("header {hl} longer than the packet {total}"));
    }
    if ones_sum(&ip[..hl]) != 0xffff {
        return Err("bad IPv4 header checksum".into());
    }
    if ip[8] == 0 {
        return Err("TTL 0".into());
    }
    Ok((hl, total))
}

/// `f` is a frame routed by a MAC rewrite to `port` as the FIB says.
fn check_rewrite(fib: &Fib, f: &[u8], port: PortId) -> Result<(), String> {
    let (_, total) = check_ipv4(f)?;
    let dst = ip_at(f, 30);
    match fib.lookup(dst) {
        Some(Adjacency::Rewrite { port: p, macs, mtu }) => {
            if p != port {
                return Err(format!("sent on {port}, the FIB says {p}"));
            }
            if f[..12] != macs {
                return Err("MACs are not the adjacency's".into());
            }
            if total > usize::from(mtu) {
                return Err(format!("{total} bytes over MTU {mtu}"));
            }
            Ok(())
        }
        other => Err(format!("{dst} has adjacency {other:?}")),
    }
}

/// `f` is a frame encapsulated in VXLAN as the FIB's template for its inner destination
/// says.
fn check_encap(node: &Node, fib: &Fib, f: &[u8], port: PortId) -> Result<(), String> {
    let (hl, total) = check_ipv4(f)?;
    if hl != 20 || f.len() < 50 + 34 {
        return Err("too short for VXLAN".into());
    }
    let inner = &f[50..];
    check_ipv4(inner).map_err(|e| format!("inner: {e}"))?;
    let dst = ip_at(inner, 30);
    let e = match fib.lookup(dst) {
        Some(Adjacency::Encap(e)) => e,
        other => return Err(format!("inner {dst} has adjacency {other:?}")),
    };
    if e.port != port || port != node.params.uplink {
        return Err(format!("sent on {port}, template port {}", e.port));
    }
    if total > usize::from(e.mtu) {
        return Err(format!("{total} bytes over MTU {}", e.mtu));
    }
    let o = &e.outer;
    // Outer Ethernet; IPv4 but for TOS, length and checksum; UDP destination; VXLAN.
    if f[..14] != o[..14]
        || f[14] != o[14]
        || f[18..24] != o[18..24]
        || f[26..34] != o[26..34]
        || f[36..38] != o[36..38]
        || f[42..50] != o[42..50]
    {
        return Err("outer headers differ from the template".into());
    }
    if ip_at(f, 26) != node.params.node_ip || f[22] != 64 || f[23] != 17 {
        return Err("outer source, TTL or protocol".into());
    }
    let sport = be16(f, 34);
    if !(SRC_PORT_MIN..SRC_PORT_MAX).contains(&sport) {
        return Err(format!("source port {sport}"));
    }
    if usize::from(be16(f, 38)) != f.len() - 34 || be16(f, 40) != 0 {
        return Err("UDP length or checksum".into());
    }
    let ecn = match inner[15] & 3 {
        3 => 2,
        e => e,
    };
    if f[15] != ecn {
        return Err(format!("outer TOS {:#x} for inner {:#x}", f[15], inner[15]));
    }
    if inner[..12] != e.inner_macs {
        return Err("inner MACs are not the VTEPs'".into());
    }
    if inner[6..12] != node.params.vtep_mac.0 {
        return Err("inner source MAC is not our VTEP".into());
    }
    Ok(())
}
