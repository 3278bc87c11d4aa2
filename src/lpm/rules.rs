//! The writer's rule set: every prefix and its next hop, one hash map per prefix length.
//!
//! The tables only hold the winning route per address; this set is what lets the writer
//! find the next less specific rule when a prefix is deleted, rebuild a table, and list
//! the routes. It lives on the control path only.

use super::entry;
use crate::nexthop::NextHopId;
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;

#[derive(Debug)]
pub(super) struct Rules {
    /// `by_len[d]` maps the network address of each /d rule to its next hop.
    by_len: [HashMap<u32, NextHopId>; 33],
    /// Rules longer than /24 per /24 (by tbl24 index): a /24's tbl8 group can be given
    /// back when its count drops to zero.
    long_per_24: HashMap<u32, u32>,
    len: usize,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            by_len: std::array::from_fn(|_| HashMap::new()),
            long_per_24: HashMap::new(),
            len: 0,
        }
    }
}

/// The network mask of a prefix of length `depth` (0..=32).
pub(super) fn mask(depth: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(depth.min(32)))
        .unwrap_or(0)
}

impl Rules {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Adds or replaces a rule; returns the replaced next hop. `addr` has no host bits.
    pub(super) fn insert(&mut self, addr: u32, depth: u8, nh: NextHopId) -> Option<NextHopId> {
        let map = self.by_len.get_mut(usize::from(depth))?;
        let old = map.insert(addr, nh);
        if old.is_none() {
            self.len += 1;
            if depth > 24 {
                *self.long_per_24.entry(addr >> 8).or_insert(0) += 1;
            }
        }
        old
    }

    pub(super) fn remove(&mut self, addr: u32, depth: u8) -> Option<NextHopId> {
        let old = self.by_len.get_mut(usize::from(depth))?.remove(&addr)?;
        self.len -= 1;
        if depth > 24 {
            if let Some(n) = self.long_per_24.get_mut(&(addr >> 8)) {
                *n -= 1;
                if *n == 0 {
                    self.long_per_24.remove(&(addr >> 8));
                }
            }
        }
        Some(old)
    }

    /// How many rules longer than /24 lie in the /24 at tbl24 index `index`.
    pub(super) fn long_rules_in(&self, index: u32) -> u32 {
        self.long_per_24.get(&index).copied().unwrap_or(0)
    }

    /// The table entry of the longest rule shorter than `depth` that contains `addr`, or
    /// EMPTY: what a deleted /depth rule's addresses fall back to.
    pub(super) fn covering(&self, addr: u32, depth: u8) -> u32 {
        for d in (0..depth.min(33)).rev() {
            if let Some(&nh) = self.by_len[usize::from(d)].get(&(addr & mask(d))) {
                return entry::route(nh, d);
            }
        }
        entry::EMPTY
    }

    /// All rules as (network address, length, next hop), shortest prefixes first.
    pub(super) fn by_depth(&self) -> impl Iterator<Item = (u32, u8, NextHopId)> + '_ {
        self.by_len
            .iter()
            .zip(0u8..)
            .flat_map(|(map, depth)| map.iter().map(move |(&addr, &nh)| (addr, depth, nh)))
    }

    pub(super) fn routes(&self) -> impl Iterator<Item = (Ipv4Net, NextHopId)> + '_ {
        self.by_depth().filter_map(|(addr, depth, nh)| {
            Some((Ipv4Net::new(Ipv4Addr::from(addr), depth).ok()?, nh))
        })
    }

    /// Approximate heap bytes: hashbrown stores one (key, value) slot plus one control
    /// byte per bucket, with buckets = capacity * 8 / 7.
    pub(super) fn memory_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u32, u32)>() + 1;
        let buckets = |cap: usize| cap.saturating_mul(8) / 7;
        self.by_len
            .iter()
            .map(|m| buckets(m.capacity()) * slot)
            .sum::<usize>()
            + buckets(self.long_per_24.capacity()) * slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_cover_every_length() {
        assert_eq!(mask(0), 0);
        assert_eq!(mask(8), 0xff00_0000);
        assert_eq!(mask(32), u32::MAX);
    }

    #[test]
    fn covering_rule_is_the_longest_shorter_one() {
        let mut r = Rules::default();
        r.insert(0, 0, 1);
        r.insert(0x0a00_0000, 8, 2);
        r.insert(0x0a01_0200, 24, 3);
        assert_eq!(r.covering(0x0a01_0200, 24), entry::route(2, 8));
        assert_eq!(r.covering(0x0a01_0280, 25), entry::route(3, 24));
        assert_eq!(r.covering(0x0a00_0000, 8), entry::route(1, 0));
        assert_eq!(r.covering(0, 0), entry::EMPTY);
    }

    #[test]
    fn long_rules_are_counted_per_slash24() {
        let mut r = Rules::default();
        r.insert(0x0a01_0280, 25, 1);
        r.insert(0x0a01_0201, 32, 2);
        r.insert(0x0a01_0201, 32, 3);
        assert_eq!(r.long_rules_in(0x0a_0102), 2);
        r.remove(0x0a01_0280, 25);
        r.remove(0x0a01_0201, 32);
        assert_eq!(r.long_rules_in(0x0a_0102), 0);
        assert_eq!(r.len(), 0);
    }
}
