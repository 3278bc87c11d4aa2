//! VXLAN headers (RFC 7348): 8 bytes, the I flag and a 24-bit VNI.

use super::WireError;

pub const HEADER_LEN: usize = 8;
/// The "VNI is valid" flag in the first byte.
pub const FLAG_I: u8 = 0x08;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// Outer Ethernet + IPv4 (no options) + UDP + VXLAN: what encapsulation adds.
pub const ENCAP_OVERHEAD: usize =
    super::ethernet::HEADER_LEN + super::ipv4::HEADER_LEN + super::udp::HEADER_LEN + HEADER_LEN;

/// A view over a VXLAN header and the inner frame behind it.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Checks the length and that the I flag is set (a frame without it carries no VNI
    /// and the receiver must drop it, RFC 7348 section 5).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if p.flags() & FLAG_I == 0 {
            return Err(WireError::Malformed);
        }
        Ok(p)
    }

    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    #[inline]
    pub fn vni(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// An owned VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub vni: u32,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr { vni: p.vni() }
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes flags = I, reserved bytes zero, and the VNI (masked to 24 bits).
    pub fn emit(&self, buf: &mut [u8]) {
        let v = (self.vni & MAX_VNI).to_be_bytes();
        buf[..HEADER_LEN].copy_from_slice(&[FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static HEADER_BYTES: [u8; 8] = [0x08, 0, 0, 0, 0x00, 0x00, 0x01, 0];

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&HEADER_BYTES[..]).unwrap();
        assert_eq!(p.vni(), 1);
        assert_eq!(Repr::parse(&p), Repr { vni: 1 });
    }

    #[test]
    fn test_emit() {
        let mut b = [0xffu8; 8];
        Repr { vni: 1 }.emit(&mut b);
        assert_eq!(b, HEADER_BYTES);
        Repr { vni: 0x123456 }.emit(&mut b);
        assert_eq!(b, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    }

    #[test]
    fn a_header_without_the_i_flag_is_malformed() {
        let mut b = HEADER_BYTES;
        b[0] = 0;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Malformed
        );
        assert_eq!(
            Packet::new_checked(&b[..7]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn overhead_is_fifty_bytes() {
        assert_eq!(ENCAP_OVERHEAD, 50);
    }
}
