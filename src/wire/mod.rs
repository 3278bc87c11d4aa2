//! Zero-copy views over the headers podfwd reads and writes, in the style of smoltcp:
//! a `Packet<T: AsRef<[u8]>>` view per header with `new_checked`, getters over `AsRef`
//! and setters over `AsMut`. Once `new_checked` has passed, no accessor panics.
//!
//! These are hand-written rather than taken from etherparse because the hot path rewrites
//! headers in place (TTL, MACs, checksums) and builds VXLAN headers into headroom; the
//! tests cross-check them against etherparse.

pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod udp;
pub mod vxlan;

pub use ethernet::MacAddr;

/// Why a header view could not be made over a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer is shorter than the header (or the length the header declares).
    Truncated,
    /// A field holds a value the header does not allow (version, IHL, flags).
    Malformed,
    /// The header checksum does not verify.
    Checksum,
}
