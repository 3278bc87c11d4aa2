//! IPv4 headers (RFC 791).
//!
//! `Packet::new_checked` validates version, IHL and total length against the buffer, so
//! that after it no accessor panics. The header checksum is verified separately
//! ([`Packet::verify_checksum`]) because forwarding must count it as its own drop reason.

use super::checksum;
use super::WireError;
use std::net::Ipv4Addr;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// IP protocol numbers podfwd looks at.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// Don't Fragment, in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// More Fragments, in the flags/fragment-offset word.
pub const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view over an IPv4 packet.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the whole header and the total length it declares
    /// (a buffer may be longer: Ethernet pads short frames), and that version and IHL
    /// are valid.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::Malformed);
        }
        let hlen = self.header_len();
        if hlen < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let total = usize::from(self.total_len());
        if total < hlen {
            return Err(WireError::Malformed);
        }
        if b.len() < total {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::IDENT];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The flags and fragment offset word.
    #[inline]
    pub fn flags_frag(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FLG_OFF];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    /// True if this is a fragment (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_u32())
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_u32())
    }

    /// Source address in host byte order.
    #[inline]
    pub fn src_u32(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Destination address in host byte order.
    #[inline]
    pub fn dst_u32(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// True if the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        match header.first_chunk::<HEADER_LEN>() {
            // The common header without options: a fixed, unrolled sum.
            Some(h) if header.len() == HEADER_LEN => checksum::verify_header20(h),
            _ => checksum::fold(checksum::add(0, header)) == 0xffff,
        }
    }

    /// The payload, up to the declared total length (Ethernet padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Decrements the TTL and patches the checksum incrementally (RFC 1624), as routers do.
    /// The caller checks `ttl() > 1` first.
    ///
    /// The TTL is the high byte of its 16-bit word, so the word drops by 0x0100 and, by
    /// RFC 1624 eqn. 3, the checksum rises by 0x0100 in ones'-complement arithmetic: the
    /// kernel's `ip_decrease_ttl`. Equal to `checksum::update_u16(check, old, new)` for
    /// every checksum (tested exhaustively), 0x0000/0xffff corner cases included.
    #[inline]
    pub fn decrement_ttl(&mut self) {
        let b = self.buffer.as_mut();
        b[field::TTL] = b[field::TTL].wrapping_sub(1);
        let c = &mut b[field::CHECKSUM];
        let check = u32::from(u16::from_be_bytes([c[0], c[1]])) + 0x0100;
        let check = check + u32::from(check >= 0xffff);
        c.copy_from_slice(&(check as u16).to_be_bytes());
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// Recomputes the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let total = usize::from(self.total_len());
        &mut self.buffer.as_mut()[hl..total]
    }
}

/// An owned IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Repr {
    /// Parses a checked packet; rejects a bad checksum, options and fragments are allowed.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        if !p.verify_checksum() {
            return Err(WireError::Checksum);
        }
        Ok(Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (with a valid checksum) into the first 20 bytes of `buf`.
    /// Panics if `buf` is shorter than 20 bytes or the payload length does not fit in u16.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..HEADER_LEN];
        b[field::VER_IHL] = 0x45;
        b[field::TOS] = self.tos;
        let total = u16::try_from(HEADER_LEN + self.payload_len).expect("IPv4 length fits u16");
        b[field::LENGTH].copy_from_slice(&total.to_be_bytes());
        b[field::IDENT].copy_from_slice(&self.ident.to_be_bytes());
        let ff: u16 = if self.dont_frag { FLAG_DF } else { 0 };
        b[field::FLG_OFF].copy_from_slice(&ff.to_be_bytes());
        b[field::TTL] = self.ttl;
        b[field::PROTOCOL] = self.protocol;
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        b[field::SRC_ADDR].copy_from_slice(&self.src.octets());
        b[field::DST_ADDR].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(b);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.244.0.2 -> 10.244.1.2, UDP, TTL 64, DF, 4 bytes of payload.
    static PACKET_BYTES: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0x0a, 0xf4, 0x00,
        0x02, 0x0a, 0xf4, 0x01, 0x02, 0xde, 0xad, 0xbe, 0xef,
    ];

    fn packet_bytes() -> [u8; 24] {
        let mut b = PACKET_BYTES;
        let c = checksum::checksum(&b[..20]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b
    }

    fn repr() -> Repr {
        Repr {
            src: Ipv4Addr::new(10, 244, 0, 2),
            dst: Ipv4Addr::new(10, 244, 1, 2),
            protocol: protocol::UDP,
            payload_len: 4,
            ttl: 64,
            tos: 0,
            ident: 0x1234,
            dont_frag: true,
        }
    }

    #[test]
    fn test_deconstruct() {
        let b = packet_bytes();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::UDP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 244, 1, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn test_parse_and_emit_round_trip() {
        let b = packet_bytes();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), repr());
        let mut out = [0u8; 24];
        repr().emit(&mut out);
        out[20..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(out, b);
    }

    #[test]
    fn emitted_header_matches_etherparse() {
        let mut out = [0u8; 20];
        repr().emit(&mut out);
        let (h, _) = etherparse::Ipv4Header::from_slice(&out).unwrap();
        assert_eq!(h.source, [10, 244, 0, 2]);
        assert_eq!(h.destination, [10, 244, 1, 2]);
        assert_eq!(h.time_to_live, 64);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
    }

    #[test]
    fn decrement_ttl_keeps_the_checksum_valid() {
        let mut b = packet_bytes();
        for expected in (1..64).rev() {
            let mut p = Packet::new_checked(&mut b[..]).unwrap();
            p.decrement_ttl();
            assert_eq!(p.ttl(), expected);
            assert!(p.verify_checksum(), "ttl {expected}");
        }
    }

    #[test]
    fn decrement_ttl_equals_the_rfc_1624_update_for_every_checksum() {
        let mut b = packet_bytes();
        // The change of the TTL/protocol word is -0x0100 whatever the TTL: a few will do.
        for ttl in [2u8, 3, 64, 128, 255] {
            for check in 0..=u16::MAX {
                b[8] = ttl;
                b[10..12].copy_from_slice(&check.to_be_bytes());
                let old = u16::from_be_bytes([ttl, b[9]]);
                let new = u16::from_be_bytes([ttl - 1, b[9]]);
                let want = checksum::update_u16(check, old, new);
                let mut p = Packet::new_unchecked(&mut b[..]);
                p.decrement_ttl();
                assert_eq!(
                    (p.ttl(), p.checksum()),
                    (ttl - 1, want),
                    "ttl {ttl} {check:#x}"
                );
            }
        }
    }

    #[test]
    fn a_header_with_options_is_verified_over_its_whole_length() {
        let mut b = [0u8; 28];
        b[..20].copy_from_slice(&packet_bytes()[..20]);
        b[0] = 0x46;
        b[3] = 28;
        b[20..24].copy_from_slice(&[0x94, 0x04, 0, 0]); // router alert
        b[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&b[..24]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(Packet::new_checked(&b[..]).unwrap().verify_checksum());
        b[22] = 1;
        assert!(!Packet::new_checked(&b[..]).unwrap().verify_checksum());
    }

    #[test]
    fn a_corrupted_checksum_is_detected() {
        let mut b = packet_bytes();
        b[11] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap_err(), WireError::Checksum);
    }

    #[test]
    fn malformed_headers_are_rejected_without_panicking() {
        let b = packet_bytes();
        assert_eq!(
            Packet::new_checked(&b[..19]).unwrap_err(),
            WireError::Truncated
        );
        let mut v6 = b;
        v6[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&v6[..]).unwrap_err(),
            WireError::Malformed
        );
        let mut short_ihl = b;
        short_ihl[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&short_ihl[..]).unwrap_err(),
            WireError::Malformed
        );
        let mut long_ihl = b;
        long_ihl[0] = 0x4f; // 60-byte header in a 24-byte packet
        assert!(Packet::new_checked(&long_ihl[..]).is_err());
        let mut long_total = b;
        long_total[3] = 0x40;
        assert_eq!(
            Packet::new_checked(&long_total[..]).unwrap_err(),
            WireError::Truncated
        );
        let mut short_total = b;
        short_total[3] = 0x10;
        assert_eq!(
            Packet::new_checked(&short_total[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn ethernet_padding_after_total_length_is_ignored() {
        let mut padded = [0u8; 46];
        padded[..24].copy_from_slice(&packet_bytes());
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn fragments_are_recognised() {
        let mut b = packet_bytes();
        b[6] = 0x20; // MF
        assert!(Packet::new_checked(&b[..]).unwrap().is_fragment());
        b[6] = 0x00;
        b[7] = 0x01; // offset 8
        assert!(Packet::new_checked(&b[..]).unwrap().is_fragment());
    }
}
