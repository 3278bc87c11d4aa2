//! The 32-bit table entry shared by tbl24 and tbl8.
//!
//! ```text
//!  31     30    29..24   23..0
//! VALID  EXT   depth    next-hop id (route) | tbl8 group index (EXT)
//! ```
//! - A route entry has VALID set, the prefix length of the rule that wrote it in `depth`
//!   (0..=32) and the next-hop id in the payload.
//! - An extended entry (tbl24 only) has EXT set and names the tbl8 group that holds the
//!   256 entries of that /24. Its VALID bit and depth are zero.
//! - The all-zero entry means "no route"; the writer treats its depth as 0 so that any
//!   rule, even a /0, may overwrite it.
//!
//! Readers only look at VALID, EXT and the payload; `depth` is the writer's bookkeeping,
//! the same scheme as DPDK's rte_lpm.

use crate::nexthop::NextHopId;

/// No route.
pub(super) const EMPTY: u32 = 0;
/// The entry holds a route.
pub(super) const VALID: u32 = 1 << 31;
/// The entry names a tbl8 group (tbl24 only).
pub(super) const EXT: u32 = 1 << 30;
const DEPTH_SHIFT: u32 = 24;
const DEPTH_MASK: u32 = 0x3f << DEPTH_SHIFT;
/// Next-hop id or tbl8 group index.
pub(super) const PAYLOAD: u32 = 0x00ff_ffff;

/// A route entry for a rule of length `depth` (0..=32) and a next hop that fits in 24 bits.
#[inline]
pub(super) const fn route(nh: NextHopId, depth: u8) -> u32 {
    VALID | ((depth as u32) << DEPTH_SHIFT) & DEPTH_MASK | (nh & PAYLOAD)
}

/// A tbl24 entry pointing at tbl8 group `group`.
#[inline]
pub(super) const fn extended(group: u32) -> u32 {
    EXT | (group & PAYLOAD)
}

/// The prefix length of the rule that wrote a route entry (0 for [`EMPTY`]).
#[inline]
pub(super) const fn depth(entry: u32) -> u8 {
    ((entry & DEPTH_MASK) >> DEPTH_SHIFT) as u8
}

#[inline]
pub(super) const fn is_extended(entry: u32) -> bool {
    entry & EXT != 0
}

#[inline]
pub(super) const fn payload(entry: u32) -> u32 {
    entry & PAYLOAD
}

/// What a reader makes of a resolved (non-extended) entry.
#[inline(always)]
pub(super) fn next_hop(entry: u32) -> Option<NextHopId> {
    if entry & VALID != 0 {
        Some(entry & PAYLOAD)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_entries_round_trip_depth_and_next_hop() {
        for depth in 0..=32u8 {
            let e = route(0x00ab_cdef, depth);
            assert_eq!(super::depth(e), depth);
            assert_eq!(next_hop(e), Some(0x00ab_cdef));
            assert!(!is_extended(e));
        }
    }

    #[test]
    fn empty_entry_has_depth_zero_and_no_next_hop() {
        assert_eq!(depth(EMPTY), 0);
        assert_eq!(next_hop(EMPTY), None);
    }

    #[test]
    fn extended_entries_carry_the_group_and_no_route() {
        let e = extended(PAYLOAD);
        assert!(is_extended(e));
        assert_eq!(payload(e), PAYLOAD);
        assert_eq!(e & VALID, 0);
    }
}
