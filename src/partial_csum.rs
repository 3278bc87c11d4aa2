//! Completing checksums that a sender left to "hardware".
//!
//! A veth with tx checksum offload (the default, also for Kubernetes pods) hands its peer
//! `CHECKSUM_PARTIAL` packets: the TCP/UDP checksum field holds only the folded
//! pseudo-header sum, and the kernel completes it if the packet ever leaves through a
//! device without offload. AF_XDP copies the bytes and loses that state, so a userspace
//! forwarder must complete such checksums itself or the receiver drops the segments
//! (measured: TCP through podfwd stalled with pod offload on; docs/afxdp.md).
//!
//! Detection: the field equals the folded pseudo-header sum. A complete checksum equals
//! that value with probability 2^-16; recomputing it then rewrites the same correct value,
//! so the fix-up never harms a packet whose checksum was right.

use crate::wire::checksum;
use crate::wire::ipv4;

/// Completes the TCP or UDP checksum of the IPv4 packet in the Ethernet frame `frame` if
/// it holds only the pseudo-header sum. Returns true if it rewrote the checksum. Frames
/// that are not IPv4 TCP/UDP, fragments, and malformed frames are left alone.
pub fn complete(frame: &mut [u8]) -> bool {
    if frame.len() < 14 + ipv4::HEADER_LEN || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let ip = &frame[14..];
    let Ok(p) = ipv4::Packet::new_checked(ip) else {
        return false;
    };
    if p.is_fragment() {
        return false;
    }
    let proto = p.protocol();
    let csum_at = match proto {
        ipv4::protocol::TCP => 16,
        ipv4::protocol::UDP => 6,
        _ => return false,
    };
    let hl = p.header_len();
    let total = usize::from(p.total_len());
    let l4_len = total - hl;
    if l4_len < csum_at + 2 {
        return false;
    }
    let field_off = 14 + hl + csum_at;
    let field = u16::from_be_bytes([frame[field_off], frame[field_off + 1]]);
    if proto == ipv4::protocol::UDP && field == 0 {
        return false; // no checksum
    }
    let mut pseudo = checksum::add(0, &frame[14 + 12..14 + 20]);
    pseudo += u32::from(proto) + l4_len as u32;
    if field != checksum::fold(pseudo) {
        return false;
    }
    frame[field_off..field_off + 2].fill(0);
    let sum = checksum::add(pseudo, &frame[14 + hl..14 + total]);
    let mut c = !checksum::fold(sum);
    if proto == ipv4::protocol::UDP && c == 0 {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    frame[field_off..field_off + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn frame(tcp: bool, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(
            [10, 244, 0, 2],
            [10, 244, 1, 2],
            64,
        );
        let mut out = Vec::new();
        if tcp {
            b.tcp(40000, 5201, 12345, 64240)
                .write(&mut out, payload)
                .unwrap();
        } else {
            b.udp(40000, 5000).write(&mut out, payload).unwrap();
        }
        out
    }

    /// What a sender with checksum offload puts in the field: the folded pseudo-header.
    fn make_partial(f: &mut [u8], csum_at: usize) {
        let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
        let mut pseudo = checksum::add(0, &f[26..34]);
        pseudo += u32::from(f[23]) + (total - 20) as u32;
        let v = checksum::fold(pseudo).to_be_bytes();
        f[34 + csum_at..36 + csum_at].copy_from_slice(&v);
    }

    #[test]
    fn partial_tcp_and_udp_checksums_are_completed() {
        for (tcp, at) in [(true, 16), (false, 6)] {
            for len in [0usize, 1, 7, 100, 1400] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let good = frame(tcp, &payload);
                let mut f = good.clone();
                make_partial(&mut f, at);
                assert_ne!(f, good);
                assert!(complete(&mut f));
                assert_eq!(f, good, "tcp={tcp} len={len}");
            }
        }
    }

    #[test]
    fn complete_checksums_and_other_frames_are_left_alone() {
        let mut good = frame(true, b"hello");
        let copy = good.clone();
        assert!(!complete(&mut good));
        assert_eq!(good, copy);
        let mut no_csum = frame(false, b"x");
        no_csum[40..42].fill(0);
        assert!(!complete(&mut no_csum));
        let mut arp = copy.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!complete(&mut arp));
        assert!(!complete(&mut copy[..20].to_vec()));
        let mut frag = copy.clone();
        frag[20] = 0x20;
        make_partial(&mut frag, 16);
        assert!(!complete(&mut frag), "fragments are not touched");
    }
}
