//! Pure byte work that adapts TUN packets and UDP datagrams to the Ethernet-framed
//! pipeline, and back.
//!
//! One buffer layout serves both directions: the inner IP packet starts at
//! [`IP_OFFSET`], its (synthetic) Ethernet header at [`ETH_OFFSET`], and in front of that
//! lie exactly the 50 bytes of outer Ethernet/IPv4/UDP/VXLAN. A packet read from the TUN
//! is encapsulated by the pipeline into `buf[0..]`; a datagram received on the VXLAN
//! socket is placed at [`UDP_PAYLOAD_OFFSET`] behind synthetic outer headers, and the
//! pipeline's decapsulation moves the frame to `ETH_OFFSET`.

use crate::wire::{checksum, ethernet, ipv4, udp, vxlan};
use std::net::Ipv4Addr;

/// Offset of the Ethernet header the pipeline sees in a TUN packet's buffer.
pub const ETH_OFFSET: usize = vxlan::ENCAP_OVERHEAD;
/// Offset of the IP packet (as read from or written to the TUN).
pub const IP_OFFSET: usize = ETH_OFFSET + ethernet::HEADER_LEN;
/// Offset of the outer IPv4 header of an encapsulated or received VXLAN frame.
pub const OUTER_IP_OFFSET: usize = ethernet::HEADER_LEN;
/// Offset of the UDP payload (the VXLAN header) of an outer frame at offset 0.
pub const UDP_PAYLOAD_OFFSET: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;

/// Writes the Ethernet header in front of the IP packet at `IP_OFFSET`: zero MACs (the
/// pipeline rewrites them) and the ethertype of the IP version, so that anything but
/// IPv4 is counted as `not_ipv4`. `buf` must be at least `IP_OFFSET + 1` long.
#[inline]
pub fn prepend_ethernet(buf: &mut [u8]) {
    let ethertype = match buf[IP_OFFSET] >> 4 {
        4 => ethernet::ethertype::IPV4,
        6 => ethernet::ethertype::IPV6,
        _ => 0,
    };
    let h = &mut buf[ETH_OFFSET..IP_OFFSET];
    h[..12].fill(0);
    h[12..].copy_from_slice(&ethertype.to_be_bytes());
}

/// Undoes one TTL decrement (TTL+1, checksum patched per RFC 1624) on the IPv4 header at
/// the start of `ip`, so that the pipeline's own decrement leaves the TTL the kernel
/// gave the packet: the kernel already counted this node's hop when it routed the packet
/// into the TUN. Leaves TTL 255 (the node's own packets at most) and anything too short
/// or not IPv4 unchanged; returns whether it changed the header.
#[inline]
pub fn undo_ttl_decrement(ip: &mut [u8]) -> bool {
    let Some(h) = ip.first_chunk_mut::<{ ipv4::HEADER_LEN }>() else {
        return false;
    };
    if h[0] >> 4 != 4 || h[8] == u8::MAX {
        return false;
    }
    let old = u16::from_be_bytes([h[8], h[9]]);
    h[8] += 1;
    let new = u16::from_be_bytes([h[8], h[9]]);
    let check = u16::from_be_bytes([h[10], h[11]]);
    h[10..12].copy_from_slice(&checksum::update_u16(check, old, new).to_be_bytes());
    true
}

/// Writes synthetic outer Ethernet/IPv4/UDP headers into `buf[..UDP_PAYLOAD_OFFSET]` for a
/// VXLAN datagram of `payload_len` bytes received from `src:sport` on `dst:dport`, as the
/// wire carried them (IPv4 without options, valid header checksum, UDP checksum 0), so
/// that the pipeline validates and decapsulates it exactly as on the AF_XDP path.
/// Returns false (nothing written) if the datagram cannot be an IPv4 payload.
#[inline]
pub fn write_received_outer(
    buf: &mut [u8],
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    payload_len: usize,
) -> bool {
    let udp_len = udp::HEADER_LEN + payload_len;
    let ip_len = ipv4::HEADER_LEN + udp_len;
    let (Ok(udp_len), Ok(ip_len)) = (u16::try_from(udp_len), u16::try_from(ip_len)) else {
        return false;
    };
    let Some(h) = buf.first_chunk_mut::<UDP_PAYLOAD_OFFSET>() else {
        return false;
    };
    h[..12].fill(0);
    h[12..14].copy_from_slice(&ethernet::ethertype::IPV4.to_be_bytes());
    let ip = &mut h[OUTER_IP_OFFSET..OUTER_IP_OFFSET + ipv4::HEADER_LEN];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, DF
    ip[8] = 64;
    ip[9] = ipv4::protocol::UDP;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let u = &mut h[OUTER_IP_OFFSET + ipv4::HEADER_LEN..];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&udp_len.to_be_bytes());
    u[6..8].fill(0);
    true
}

/// The outer destination address of an encapsulated frame at the start of `frame` (the
/// pipeline's `EncapTemplate` writes IPv4 without options).
#[inline]
pub fn outer_dst(frame: &[u8]) -> Option<Ipv4Addr> {
    let b = frame.get(OUTER_IP_OFFSET + 16..OUTER_IP_OFFSET + 20)?;
    Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

/// Splits the IPv4/TCP packet `ip` into segments whose IP packets fit `mtu` bytes, as the
/// kernel's GSO would, assembling each in `scratch` (at least `mtu` long) and passing it
/// to `emit`; returns how many it emitted. `None` (nothing emitted): not TCP, a fragment,
/// malformed, or headers that leave no room for payload.
///
/// A kernel VTEP behind a veth hands its peer whole tunnel GSO super-packets (a real NIC
/// segments them on the wire); the UDP socket delivers one as a single datagram whose
/// inner packet exceeds the TUN's MTU. Checksums are computed in full (the inner TCP
/// checksum of such a packet is only the pseudo-header sum).
pub fn segment_tcp(
    ip: &[u8],
    mtu: usize,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Option<usize> {
    let seg = super::offload::TcpSegmenter::to_fit(ip, mtu)?;
    let scratch = scratch.get_mut(..mtu)?;
    for k in 0..seg.count() {
        let len = seg.write(k, scratch)?;
        emit(&scratch[..len]);
    }
    Some(seg.count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Packet as Ip;

    fn ip_header(ttl: u8) -> [u8; 20] {
        let mut h = [0u8; 20];
        ipv4::Repr {
            src: Ipv4Addr::new(10, 244, 0, 2),
            dst: Ipv4Addr::new(10, 244, 1, 2),
            protocol: ipv4::protocol::ICMP,
            payload_len: 0,
            ttl,
            tos: 0,
            ident: 0x1234,
            dont_frag: true,
        }
        .emit(&mut h);
        h
    }

    #[test]
    fn undo_ttl_decrement_adds_one_and_keeps_the_checksum_valid() {
        for ttl in [0u8, 1, 63, 64, 200, 254] {
            let mut h = ip_header(ttl);
            assert!(undo_ttl_decrement(&mut h));
            let p = Ip::new_unchecked(&h[..]);
            assert_eq!(p.ttl(), ttl + 1);
            assert!(p.verify_checksum(), "ttl {ttl}");
            assert_eq!(h, ip_header(ttl + 1));
        }
    }

    #[test]
    fn undo_ttl_decrement_leaves_ttl_255_short_and_non_ipv4_packets_alone() {
        let mut h = ip_header(255);
        assert!(!undo_ttl_decrement(&mut h));
        assert_eq!(h, ip_header(255));
        let mut short = [0x45u8; 10];
        assert!(!undo_ttl_decrement(&mut short));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        assert!(!undo_ttl_decrement(&mut v6));
        assert_eq!(v6[8], 0);
    }

    #[test]
    fn prepend_ethernet_names_the_ip_version() {
        let mut buf = [0xaau8; IP_OFFSET + 20];
        buf[IP_OFFSET] = 0x45;
        prepend_ethernet(&mut buf);
        let eth = ethernet::Frame::new_unchecked(&buf[ETH_OFFSET..]);
        assert_eq!(eth.ethertype(), ethernet::ethertype::IPV4);
        assert_eq!(&buf[ETH_OFFSET..ETH_OFFSET + 12], &[0u8; 12]);
        assert_eq!(
            buf[ETH_OFFSET - 1],
            0xaa,
            "nothing before the header is touched"
        );
        buf[IP_OFFSET] = 0x60;
        prepend_ethernet(&mut buf);
        let eth = ethernet::Frame::new_unchecked(&buf[ETH_OFFSET..]);
        assert_eq!(eth.ethertype(), ethernet::ethertype::IPV6);
    }

    #[test]
    fn received_outer_headers_parse_as_the_datagram_that_arrived() {
        let mut buf = [0u8; UDP_PAYLOAD_OFFSET + 100];
        let src = Ipv4Addr::new(10, 168, 0, 3);
        let dst = Ipv4Addr::new(10, 168, 0, 2);
        assert!(write_received_outer(&mut buf, src, 40000, dst, 8472, 100));
        let eth = ethernet::Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(eth.ethertype(), ethernet::ethertype::IPV4);
        let ip = Ip::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), src);
        assert_eq!(ip.dst_addr(), dst);
        assert_eq!(ip.protocol(), ipv4::protocol::UDP);
        assert_eq!(
            usize::from(ip.total_len()),
            buf.len() - ethernet::HEADER_LEN
        );
        assert!(!ip.is_fragment());
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(u.dst_port(), 8472);
        assert_eq!(u.src_port(), 40000);
        assert_eq!(usize::from(u.len()), 8 + 100);
        assert_eq!(outer_dst(&buf), Some(dst));
    }

    /// An IPv4/TCP packet with `payload` bytes of data, flags PSH|ACK|FIN|CWR.
    fn tcp_packet(payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; 40 + payload];
        ipv4::Repr {
            src: Ipv4Addr::new(10, 244, 1, 2),
            dst: Ipv4Addr::new(10, 244, 0, 2),
            protocol: ipv4::protocol::TCP,
            payload_len: 20 + payload,
            ttl: 63,
            tos: 0,
            ident: 7,
            dont_frag: true,
        }
        .emit(&mut p);
        let t = &mut p[20..];
        t[0..4].copy_from_slice(&[0x14, 0x51, 0xc0, 0x00]);
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x80 | 0x10 | 0x08 | 0x01;
        for (i, b) in t[20..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        p
    }

    fn tcp_checksum_ok(seg: &[u8]) -> bool {
        let sum = checksum::add(0, &seg[12..20]) + 6 + (seg.len() - 20) as u32;
        checksum::fold(checksum::add(sum, &seg[20..])) == 0xffff
    }

    #[test]
    fn a_tcp_super_packet_is_split_into_mtu_sized_segments_with_valid_checksums() {
        let big = tcp_packet(4000);
        let mut scratch = vec![0u8; 1450];
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let n = segment_tcp(&big, 1450, &mut scratch, |s| segs.push(s.to_vec()));
        assert_eq!(n, Some(3));
        assert_eq!(segs.len(), 3);
        let mut data = Vec::new();
        for (k, s) in segs.iter().enumerate() {
            let ip = Ip::new_checked(&s[..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(usize::from(ip.total_len()), s.len());
            assert!(s.len() <= 1450);
            assert!(tcp_checksum_ok(s), "segment {k}");
            let seq = u32::from_be_bytes(s[24..28].try_into().unwrap());
            assert_eq!(seq, 1000 + data.len() as u32);
            let flags = s[33];
            assert_eq!(flags & 0x80 != 0, k == 0, "CWR on the first only");
            assert_eq!(flags & 0x09 != 0, k == 2, "FIN/PSH on the last only");
            assert!(flags & 0x10 != 0, "ACK on every one");
            data.extend_from_slice(&s[40..]);
        }
        assert_eq!(data, big[40..]);
    }

    #[test]
    fn segment_tcp_refuses_what_it_cannot_split() {
        let mut scratch = vec![0u8; 1450];
        let mut udp = tcp_packet(100);
        udp[9] = ipv4::protocol::UDP;
        let c = checksum::checksum(&{
            let mut h = [0u8; 20];
            h.copy_from_slice(&udp[..20]);
            h[10..12].fill(0);
            h
        });
        udp[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(segment_tcp(&udp, 1450, &mut scratch, |_| panic!()), None);
        assert_eq!(
            segment_tcp(&[0u8; 10], 1450, &mut scratch, |_| panic!()),
            None
        );
        let big = tcp_packet(3000);
        assert_eq!(segment_tcp(&big, 40, &mut scratch, |_| panic!()), None);
        assert_eq!(
            segment_tcp(&big, 2000, &mut scratch, |_| panic!()),
            None,
            "scratch too short"
        );
    }

    #[test]
    fn received_outer_headers_refuse_oversized_datagrams_and_short_buffers() {
        let mut buf = [0u8; UDP_PAYLOAD_OFFSET];
        let a = Ipv4Addr::LOCALHOST;
        assert!(!write_received_outer(&mut buf, a, 1, a, 2, 70_000));
        let mut short = [0u8; 10];
        assert!(!write_received_outer(&mut short, a, 1, a, 2, 0));
        assert_eq!(outer_dst(&short), None);
    }
}
