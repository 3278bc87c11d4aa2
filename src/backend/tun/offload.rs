//! Segmentation offloads between the TUN device and the VXLAN socket: pure byte work.
//!
//! With `IFF_VNET_HDR` every packet read from or written to the TUN starts with a
//! `virtio_net_hdr` ([`VnetHdr`]). After `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4)` the
//! kernel hands podfwd whole TCP super-packets (up to 64 KB, `gso_type` TCPV4 and the
//! MSS in `gso_size`) and packets whose TCP/UDP checksum is left partial
//! (`NEEDS_CSUM`). A super-packet is cut into MSS-sized segments ([`TcpSegmenter`], the
//! work the kernel's GSO would do) and every segment is encapsulated on its own; the
//! segments to one peer then leave in one UDP GSO `sendmsg`.
//!
//! On receive (`UDP_GRO` on the socket) a train of datagrams arrives in one buffer; after
//! decapsulation, consecutive TCP segments of one flow are merged back into one
//! super-packet ([`Coalescer`]) and written to the TUN in one `writev` with a GSO
//! `virtio_net_hdr`: the kernel then delivers one large packet to the pod, as its own GRO
//! would. The rules follow the kernel's `tcp_gro_receive`.

use crate::wire::{checksum, ipv4};

/// Length of the `virtio_net_hdr` in front of every TUN packet (no `num_buffers`: the
/// TUN's default header size).
pub const VNET_HDR_LEN: usize = 10;

/// `virtio_net_hdr.flags`: the checksum from `csum_start` to the end is left to complete
/// and goes to `csum_start + csum_offset` (the field holds the pseudo-header sum).
pub const F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.gso_type`: no segmentation.
pub const GSO_NONE: u8 = 0;
/// `virtio_net_hdr.gso_type`: IPv4 TCP segmentation.
pub const GSO_TCPV4: u8 = 1;
/// `virtio_net_hdr.gso_type` flag: the packet carries ECN (CWR) semantics.
pub const GSO_ECN: u8 = 0x80;

const TCP: u8 = ipv4::protocol::TCP;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const TCP_CWR: u8 = 0x80;

/// The `virtio_net_hdr` of the TUN (fields in the host's byte order, as the TUN uses
/// them unless `TUNSETVNETBE`/`LE` says otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Parses the first [`VNET_HDR_LEN`] bytes of `b` (`None` if shorter).
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.first_chunk::<VNET_HDR_LEN>()?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// The segment size if this is an IPv4 TCP super-packet to cut.
    pub fn tcp4_mss(&self) -> Option<usize> {
        (self.gso_type & !GSO_ECN == GSO_TCPV4 && self.gso_size > 0)
            .then_some(usize::from(self.gso_size))
    }
}

/// Completes a checksum the sender left partial (`NEEDS_CSUM`): the field at
/// `start + offset` holds the pseudo-header sum; the sum of `pkt[start..]` goes there.
/// Returns false (nothing changed) if the offsets lie outside `pkt`.
pub fn complete_partial(pkt: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start + offset;
    if start >= pkt.len() || at + 2 > pkt.len() {
        return false;
    }
    let c = !checksum::fold(checksum::add(0, &pkt[start..]));
    // A UDP checksum that computes to zero is sent as all ones (RFC 768); for TCP the
    // two are the same value in ones' complement.
    let c = if c == 0 { 0xffff } else { c };
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// The pseudo-header sum (unfolded) of an IPv4 TCP packet with `tcp_len` bytes of TCP.
fn tcp_pseudo(ip: &[u8], tcp_len: usize) -> u32 {
    checksum::add(0, &ip[12..20]) + u32::from(TCP) + tcp_len as u32
}

/// Cuts an IPv4 TCP super-packet into segments of at most `mss` payload bytes, the way
/// the kernel's GSO does: every segment gets the headers, its own IP total length, IP id
/// (first + k), IP checksum and sequence number, and a full TCP checksum; FIN and PSH
/// only on the last segment, CWR only on the first.
pub struct TcpSegmenter<'a> {
    ip: &'a [u8],
    hl: usize,
    head: usize,
    total: usize,
    mss: usize,
    count: usize,
}

impl<'a> TcpSegmenter<'a> {
    /// `None`: not IPv4 TCP, a fragment, malformed, or `mss` 0.
    pub fn new(ip: &'a [u8], mss: usize) -> Option<TcpSegmenter<'a>> {
        let p = ipv4::Packet::new_checked(ip).ok()?;
        if p.protocol() != TCP || p.is_fragment() || mss == 0 {
            return None;
        }
        let hl = p.header_len();
        let total = usize::from(p.total_len());
        let tcp = ip.get(hl..total)?;
        let thl = usize::from(*tcp.get(12)? >> 4) * 4;
        if thl < 20 || tcp.len() < thl {
            return None;
        }
        let head = hl + thl;
        let count = (total - head).div_ceil(mss).max(1);
        Some(TcpSegmenter {
            ip,
            hl,
            head,
            total,
            mss,
            count,
        })
    }

    /// A segmenter whose segments' IP packets fit `mtu` bytes (MSS = `mtu` less the IP
    /// and TCP headers); `None` also if the headers leave no room for payload.
    pub fn to_fit(ip: &'a [u8], mtu: usize) -> Option<TcpSegmenter<'a>> {
        let s = TcpSegmenter::new(ip, 1)?;
        TcpSegmenter::new(ip, mtu.checked_sub(s.head).filter(|m| *m > 0)?)
    }

    /// How many segments.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The IP packet length of the largest segment.
    pub fn max_len(&self) -> usize {
        self.head + self.mss.min(self.total - self.head)
    }

    /// Writes segment `k` (< `count`) to the start of `out` and returns its length;
    /// `None` if `out` is too short.
    pub fn write(&self, k: usize, out: &mut [u8]) -> Option<usize> {
        let (ip, hl, head) = (self.ip, self.hl, self.head);
        let from = head + k * self.mss;
        let to = (from + self.mss).min(self.total);
        let chunk = ip.get(from..to)?;
        let len = head + chunk.len();
        let seg = out.get_mut(..len)?;
        seg[..head].copy_from_slice(&ip[..head]);
        seg[head..].copy_from_slice(chunk);
        seg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        let id = u16::from_be_bytes([ip[4], ip[5]]).wrapping_add(k as u16);
        seg[4..6].copy_from_slice(&id.to_be_bytes());
        ipv4::Packet::new_unchecked(&mut seg[..]).fill_checksum();
        let t = &mut seg[hl..];
        let seq0 = u32::from_be_bytes([ip[hl + 4], ip[hl + 5], ip[hl + 6], ip[hl + 7]]);
        let seq = seq0.wrapping_add((k * self.mss) as u32);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut f = ip[hl + 13];
        if k + 1 < self.count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if k > 0 {
            f &= !TCP_CWR;
        }
        t[13] = f;
        t[16..18].fill(0);
        let sum = checksum::add(tcp_pseudo(ip, len - hl), t);
        t[16..18].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
        Some(len)
    }
}

/// What the coalescer needs of one IPv4 TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seg {
    /// IP header length (20: options are never merged) plus TCP header length.
    head: usize,
    payload: usize,
    seq: u32,
    flags: u8,
}

/// Reads a segment that may be merged with others: IPv4 without options, not a
/// fragment, TCP with payload, flags ACK (and PSH), and a checksum that is either valid
/// or left partial by its sender (the field holds the pseudo-header sum).
fn mergeable(ip: &[u8]) -> Option<Seg> {
    let h = ip.first_chunk::<20>()?;
    if h[0] != 0x45 || h[9] != TCP || u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total != ip.len() {
        return None;
    }
    let t = ip.get(20..)?;
    let thl = usize::from(*t.get(12)? >> 4) * 4;
    if thl < 20 || t.len() <= thl {
        return None;
    }
    let flags = t[13];
    if flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG | TCP_CWR) != 0 || flags & TCP_ACK == 0 {
        return None;
    }
    let pseudo = tcp_pseudo(ip, t.len());
    let field = u16::from_be_bytes([t[16], t[17]]);
    if field != checksum::fold(pseudo) && checksum::fold(checksum::add(pseudo, t)) != 0xffff {
        return None;
    }
    Some(Seg {
        head: 20 + thl,
        payload: t.len() - thl,
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        flags,
    })
}

/// True if `b` continues the flow of `a` so that their headers are interchangeable: the
/// same IP header but for length, id and checksum; the same TCP header but for sequence
/// number, PSH and checksum (ports, ack, window, options).
fn same_flow(a: &[u8], b: &[u8], head: usize) -> bool {
    b.len() >= head
        && a[..2] == b[..2]
        && a[6..10] == b[6..10]
        && a[12..20] == b[12..20]
        && a[20..24] == b[20..24]
        && a[28..33] == b[28..33]
        && a[33] & !TCP_PSH == b[33] & !TCP_PSH
        && a[34..36] == b[34..36]
        && a[38..head] == b[38..head]
}

/// Groups consecutive decapsulated packets into TUN writes.
///
/// Feed packets in order with [`Coalescer::push`]; it answers whether the packet joined
/// the open group. A group is written with [`Coalescer::finish`]: one packet alone is
/// written as it is (with a zero `virtio_net_hdr`); several become one super-packet whose
/// header is the first packet's, patched in place.
#[derive(Debug, Default)]
pub struct Coalescer {
    open: Option<Group>,
}

#[derive(Clone, Copy, Debug)]
struct Group {
    first: Seg,
    /// Packets in the group.
    count: usize,
    /// IP length of the merged packet so far.
    len: usize,
    next_seq: u32,
    /// The last packet was shorter than the first or carried PSH: nothing may follow.
    closed: bool,
    psh: bool,
}

/// The most packets merged into one write (the kernel's GRO limit is 64 as well).
pub const MAX_SEGMENTS: usize = 64;

impl Coalescer {
    /// Offers packet `ip`; `prev` is the group's first packet if one is open. Returns
    /// true if `ip` joined the open group. If it returns false, the caller must
    /// [`finish`](Self::finish) the open group (if any) and then [`start`](Self::start)
    /// a new one with `ip`.
    pub fn push(&mut self, first: &[u8], ip: &[u8]) -> bool {
        let Some(g) = &mut self.open else {
            return false;
        };
        if g.closed || g.count >= MAX_SEGMENTS {
            return false;
        }
        let Some(s) = mergeable(ip) else {
            return false;
        };
        if s.head != g.first.head
            || s.payload > g.first.payload
            || s.seq != g.next_seq
            || g.len + s.payload > usize::from(u16::MAX)
            || !same_flow(first, ip, s.head)
        {
            return false;
        }
        g.count += 1;
        g.len += s.payload;
        g.next_seq = s.seq.wrapping_add(s.payload as u32);
        g.psh |= s.flags & TCP_PSH != 0;
        g.closed = s.payload < g.first.payload || g.psh;
        true
    }

    /// Opens a group with `ip` as its first packet (if it can be merged at all).
    pub fn start(&mut self, ip: &[u8]) {
        self.open = mergeable(ip).map(|s| Group {
            first: s,
            count: 1,
            len: ip.len(),
            next_seq: s.seq.wrapping_add(s.payload as u32),
            closed: s.flags & TCP_PSH != 0,
            psh: s.flags & TCP_PSH != 0,
        });
    }

    /// Closes the open group. For a group of several packets, patches the first packet's
    /// headers (`first`, in place) into those of the merged packet and returns the
    /// `virtio_net_hdr` to write before it and the other packets' payload offset (the
    /// header length: write each following packet from there). `None`: write `first`
    /// alone with a zero header.
    pub fn finish(&mut self, first: &mut [u8]) -> Option<(VnetHdr, usize)> {
        let g = self.open.take()?;
        if g.count < 2 {
            return None;
        }
        let head = g.first.head;
        first[2..4].copy_from_slice(&(g.len as u16).to_be_bytes());
        ipv4::Packet::new_unchecked(&mut first[..20]).fill_checksum();
        if g.psh {
            first[33] |= TCP_PSH;
        }
        let pseudo = checksum::fold(tcp_pseudo(first, g.len - 20));
        first[36..38].copy_from_slice(&pseudo.to_be_bytes());
        Some((
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: head as u16,
                gso_size: g.first.payload as u16,
                csum_start: 20,
                csum_offset: 16,
            },
            head,
        ))
    }

    /// Whether a group is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }
}

/// The `virtio_net_hdr` for writing one IPv4 TCP packet larger than the TUN's MTU (a
/// kernel VTEP's tunnel GSO super-packet, decapsulated) as a GSO packet the kernel cuts
/// into segments that fit `mtu`. Puts the pseudo-header sum into the TCP checksum field
/// (NEEDS_CSUM). `None`: not a TCP packet (without IP options) that can be cut that way.
pub fn gso_header_for(ip: &mut [u8], mtu: usize) -> Option<VnetHdr> {
    let seg = TcpSegmenter::to_fit(ip, mtu)?;
    let mss = seg.mss;
    let (hl, head) = (seg.hl, seg.head);
    if seg.total != ip.len() || hl != 20 || mss > usize::from(u16::MAX) {
        return None;
    }
    let pseudo = checksum::fold(tcp_pseudo(ip, ip.len() - hl));
    ip[hl + 16..hl + 18].copy_from_slice(&pseudo.to_be_bytes());
    Some(VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: head as u16,
        gso_size: mss as u16,
        csum_start: hl as u16,
        csum_offset: 16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// An IPv4/TCP packet: `payload` bytes of data at `seq`, flags `flags`, 12 bytes of
    /// options (timestamps), a full checksum.
    fn tcp(seq: u32, payload: usize, flags: u8) -> Vec<u8> {
        let thl = 32;
        let mut p = vec![0u8; 20 + thl + payload];
        ipv4::Repr {
            src: Ipv4Addr::new(10, 244, 1, 2),
            dst: Ipv4Addr::new(10, 244, 0, 2),
            protocol: TCP,
            payload_len: thl + payload,
            ttl: 63,
            tos: 0,
            ident: seq as u16,
            dont_frag: true,
        }
        .emit(&mut p);
        let t = &mut p[20..];
        t[0..4].copy_from_slice(&[0x14, 0x51, 0xc0, 0x00]);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&77u32.to_be_bytes());
        t[12] = (thl as u8 / 4) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&512u16.to_be_bytes());
        t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
        for (i, b) in t[thl..].iter_mut().enumerate() {
            *b = (seq as usize + i) as u8;
        }
        fill_tcp_checksum(&mut p);
        p
    }

    fn fill_tcp_checksum(p: &mut [u8]) {
        p[36..38].fill(0);
        let c = !checksum::fold(checksum::add(tcp_pseudo(p, p.len() - 20), &p[20..]));
        p[36..38].copy_from_slice(&c.to_be_bytes());
    }

    fn tcp_ok(p: &[u8]) -> bool {
        checksum::fold(checksum::add(tcp_pseudo(p, p.len() - 20), &p[20..])) == 0xffff
    }

    #[test]
    fn vnet_header_round_trips_in_host_order() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1398,
            csum_start: 20,
            csum_offset: 16,
        };
        let b = h.to_bytes();
        assert_eq!(b[0], 1);
        assert_eq!(b[1], 1);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 1398);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert_eq!(h.tcp4_mss(), Some(1398));
        let ecn = VnetHdr {
            gso_type: GSO_TCPV4 | GSO_ECN,
            ..h
        };
        assert_eq!(ecn.tcp4_mss(), Some(1398));
        assert_eq!(VnetHdr::default().tcp4_mss(), None);
        assert_eq!(VnetHdr::parse(&b[..9]), None);
    }

    #[test]
    fn a_partial_checksum_is_completed_at_the_offsets_given() {
        let mut p = tcp(1000, 100, TCP_ACK);
        let good = p.clone();
        let pseudo = checksum::fold(tcp_pseudo(&p, p.len() - 20));
        p[36..38].copy_from_slice(&pseudo.to_be_bytes());
        assert!(!tcp_ok(&p));
        assert!(complete_partial(&mut p, 20, 16));
        assert_eq!(p, good);
        assert!(!complete_partial(&mut p, 20, 200));
        assert!(!complete_partial(&mut p, 500, 0));
    }

    #[test]
    fn a_super_packet_is_cut_like_kernel_gso() {
        let big = tcp(5000, 4000, TCP_ACK | TCP_PSH | TCP_CWR);
        let s = TcpSegmenter::new(&big, 1398).unwrap();
        assert_eq!(s.count(), 3);
        assert_eq!(s.max_len(), 52 + 1398);
        let mut out = vec![0u8; 2000];
        let mut data = Vec::new();
        for k in 0..3 {
            let n = s.write(k, &mut out).unwrap();
            let seg = &out[..n];
            assert_eq!(n, 52 + if k < 2 { 1398 } else { 4000 - 2 * 1398 });
            assert!(tcp_ok(seg), "segment {k} checksum");
            let ip = ipv4::Packet::new_checked(seg).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(usize::from(ip.total_len()), n);
            assert_eq!(ip.ident(), 5000u16.wrapping_add(k as u16));
            let seq = u32::from_be_bytes(seg[24..28].try_into().unwrap());
            assert_eq!(seq, 5000 + (k * 1398) as u32);
            let f = seg[33];
            assert_eq!(f & TCP_PSH != 0, k == 2, "PSH only on the last");
            assert_eq!(f & TCP_CWR != 0, k == 0, "CWR only on the first");
            assert_eq!(seg[40..52], big[40..52], "options copied");
            data.extend_from_slice(&seg[52..]);
        }
        assert_eq!(data, big[52..]);
        assert_eq!(s.write(0, &mut out[..100]), None, "too short");
    }

    #[test]
    fn the_segmenter_refuses_what_it_cannot_cut() {
        let mut udp = tcp(0, 100, TCP_ACK);
        udp[9] = ipv4::protocol::UDP;
        assert!(TcpSegmenter::new(&udp, 1000).is_none());
        assert!(TcpSegmenter::new(&tcp(0, 100, TCP_ACK), 0).is_none());
        assert!(TcpSegmenter::new(&[0x45; 10], 1000).is_none());
        let mut frag = tcp(0, 100, TCP_ACK);
        frag[6] = 0x20; // MF
        assert!(TcpSegmenter::new(&frag, 1000).is_none());
    }

    /// Runs the coalescer over `pkts` as the worker does; returns the bytes the TUN
    /// would receive for each write (virtio header + packet).
    fn coalesce(mut pkts: Vec<Vec<u8>>) -> Vec<(Option<VnetHdr>, Vec<u8>)> {
        let mut writes = Vec::new();
        let mut c = Coalescer::default();
        let mut first = 0;
        let flush = |c: &mut Coalescer, pkts: &mut Vec<Vec<u8>>, first: usize, end: usize| {
            let (a, rest) = pkts.split_at_mut(first + 1);
            let f = &mut a[first];
            match c.finish(f) {
                Some((h, head)) => {
                    let mut bytes = f.clone();
                    for p in &rest[..end - first - 1] {
                        bytes.extend_from_slice(&p[head..]);
                    }
                    (Some(h), bytes)
                }
                None => (None, f.clone()),
            }
        };
        for i in 0..pkts.len() {
            if i > 0 && c.push(&pkts[first].clone(), &pkts[i]) {
                continue;
            }
            if i > 0 {
                writes.push(flush(&mut c, &mut pkts, first, i));
            }
            c.start(&pkts[i]);
            first = i;
        }
        if !pkts.is_empty() {
            let n = pkts.len();
            writes.push(flush(&mut c, &mut pkts, first, n));
        }
        writes
    }

    #[test]
    fn consecutive_segments_of_a_flow_become_one_gso_write_that_cuts_back_to_them() {
        let segs: Vec<Vec<u8>> = (0..4)
            .map(|k| {
                let flags = if k == 3 { TCP_ACK | TCP_PSH } else { TCP_ACK };
                tcp(9000 + k * 1000, if k == 3 { 300 } else { 1000 }, flags)
            })
            .collect();
        let writes = coalesce(segs.clone());
        assert_eq!(writes.len(), 1);
        let (h, merged) = &writes[0];
        let h = h.expect("a GSO write");
        assert_eq!(h.gso_type, GSO_TCPV4);
        assert_eq!(h.flags, F_NEEDS_CSUM);
        assert_eq!((h.hdr_len, h.gso_size), (52, 1000));
        assert_eq!((h.csum_start, h.csum_offset), (20, 16));
        assert_eq!(merged.len(), 52 + 3300);
        let ip = ipv4::Packet::new_checked(&merged[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), merged.len());
        assert_eq!(merged[33], TCP_ACK | TCP_PSH);
        // The checksum field holds the pseudo-header sum: completing it gives a valid
        // packet, and cutting that at gso_size gives back the original segments' bytes.
        let mut full = merged.clone();
        assert!(complete_partial(&mut full, 20, 16));
        assert!(tcp_ok(&full));
        let s = TcpSegmenter::new(&full, 1000).unwrap();
        assert_eq!(s.count(), 4);
        let mut out = vec![0u8; 1100];
        for (k, orig) in segs.iter().enumerate() {
            let n = s.write(k, &mut out).unwrap();
            // IP ids differ (the kernel numbers segments from the first id); the rest is
            // byte for byte what was sent.
            assert_eq!(out[..4], orig[..4]);
            assert_eq!(out[6..10], orig[6..10]);
            assert_eq!(out[12..n], orig[12..], "segment {k}");
        }
    }

    #[test]
    fn a_partial_checksum_from_a_kernel_sender_still_merges() {
        let mut segs: Vec<Vec<u8>> = (0..2).map(|k| tcp(k * 100, 100, TCP_ACK)).collect();
        for p in &mut segs {
            let pseudo = checksum::fold(tcp_pseudo(p, p.len() - 20));
            p[36..38].copy_from_slice(&pseudo.to_be_bytes());
        }
        assert_eq!(coalesce(segs).len(), 1);
    }

    #[test]
    fn what_breaks_a_flow_or_the_rules_starts_a_new_write() {
        let base = |k: u32| tcp(k * 100, 100, TCP_ACK);
        // A gap in sequence numbers.
        let w = coalesce(vec![base(0), base(2)]);
        assert_eq!(w.len(), 2);
        assert!(
            w.iter().all(|(h, _)| h.is_none()),
            "single packets unchanged"
        );
        assert_eq!(w[0].1, base(0));
        // Another flow (port), another ack, other options, another TOS.
        for (at, v) in [(21usize, 0x99u8), (30, 1), (45, 7), (1, 4)] {
            let mut b = base(1);
            b[at] ^= v;
            if at == 1 {
                ipv4::Packet::new_unchecked(&mut b[..20]).fill_checksum();
            }
            fill_tcp_checksum(&mut b);
            assert_eq!(coalesce(vec![base(0), b]).len(), 2, "byte {at}");
        }
        // A bad checksum is never merged (the pod's kernel drops it on its own).
        let mut bad = base(1);
        bad[60] ^= 1;
        assert_eq!(coalesce(vec![base(0), bad.clone()]).len(), 2);
        assert_eq!(coalesce(vec![base(0), bad.clone()])[1].1, bad);
        // A longer segment after a shorter one, anything after a PSH, SYN/FIN, no data.
        let w = coalesce(vec![tcp(0, 50, TCP_ACK), tcp(50, 100, TCP_ACK)]);
        assert_eq!(w.len(), 2);
        let w = coalesce(vec![tcp(0, 100, TCP_ACK | TCP_PSH), base(1)]);
        assert_eq!(w.len(), 2);
        let w = coalesce(vec![base(0), tcp(100, 100, TCP_ACK | TCP_FIN)]);
        assert_eq!(w.len(), 2);
        let w = coalesce(vec![tcp(0, 0, TCP_ACK), tcp(0, 0, TCP_ACK)]);
        assert_eq!(w.len(), 2);
        // A short one ends the group: what follows starts anew.
        let w = coalesce(vec![base(0), tcp(100, 50, TCP_ACK), tcp(150, 100, TCP_ACK)]);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].1.len(), 52 + 150);
    }

    #[test]
    fn a_merged_packet_never_exceeds_the_ip_length_limit_or_64_segments() {
        let segs: Vec<Vec<u8>> = (0..50).map(|k| tcp(k * 1400, 1400, TCP_ACK)).collect();
        let w = coalesce(segs);
        assert!(w.len() >= 2);
        assert!(w.iter().all(|(_, b)| b.len() <= 65_535));
        assert_eq!(
            w.iter().map(|(_, b)| b.len() - 52).sum::<usize>(),
            50 * 1400
        );
        let segs: Vec<Vec<u8>> = (0..70).map(|k| tcp(k * 10, 10, TCP_ACK)).collect();
        let w = coalesce(segs);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn a_decapsulated_super_packet_gets_a_gso_header() {
        let mut big = tcp(0, 5000, TCP_ACK);
        let h = gso_header_for(&mut big, 1450).unwrap();
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (GSO_TCPV4, 1398, 52));
        assert!(complete_partial(&mut big, 20, 16));
        assert!(tcp_ok(&big));
        let mut udp = tcp(0, 5000, TCP_ACK);
        udp[9] = ipv4::protocol::UDP;
        assert_eq!(gso_header_for(&mut udp, 1450), None);
    }
}
