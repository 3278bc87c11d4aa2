//! One DIR-24-8 table: tbl24 plus the tbl8 group pool, as readers see it, and the
//! writer's in-place edits of it.
//!
//! Only the single writer calls the `write_*`, `clear_*` and `collapse` methods; readers
//! only load entries (see `LpmView::lookup`). Every edit is a sequence of single-entry
//! atomic stores, each of which takes one address (or one aligned range of addresses
//! inside one entry) from its old next hop straight to its new one.

use super::entry::{self, EMPTY};
use super::mem::{Mapping, HUGE_PAGE};
use super::LpmError;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

/// tbl24 has one entry per /24.
pub(super) const TBL24_ENTRIES: usize = 1 << 24;
/// A tbl8 group has one entry per address of a /24.
pub(super) const GROUP_ENTRIES: usize = 256;
pub(super) const TBL24_BYTES: usize = TBL24_ENTRIES * 4;
pub(super) const GROUP_BYTES: usize = GROUP_ENTRIES * 4;
/// Group indices are 24-bit payloads of a tbl24 entry.
pub(super) const MAX_GROUPS: u32 = 1 << 24;
/// The pool commits memory in huge-page steps (2048 groups).
const COMMIT_GROUPS: u32 = (HUGE_PAGE / GROUP_BYTES) as u32;
pub(super) const COMMIT_BYTES: usize = HUGE_PAGE;

pub(super) struct Table {
    /// 2^24 entries, indexed by the top 24 bits of the address.
    tbl24: Mapping,
    /// Address space for `reserved_groups` groups of 256 entries; the first
    /// `committed_groups` are readable.
    tbl8: Mapping,
    reserved_groups: u32,
    /// Groups whose memory is committed. Only the writer reads or changes it (Relaxed);
    /// it is atomic only because the table is shared with readers.
    committed_groups: AtomicU32,
}

/// The writer's bookkeeping of a table's tbl8 groups.
#[derive(Debug, Default)]
pub(super) struct Tbl8Pool {
    /// Groups whose grace period has passed, ready for reuse.
    pub(super) free: Vec<u32>,
    /// Groups below this index have been handed out at least once.
    next_fresh: u32,
    /// Groups a tbl24 entry points at.
    pub(super) in_use: u32,
    /// Retired groups still in their grace period.
    pub(super) awaiting: u32,
}

/// Why a group could not be allocated.
pub(super) enum GroupError {
    Full,
    Commit(io::Error),
}

impl Table {
    /// An empty table. Fails only when the 64 MiB tbl24 cannot be mapped; if the tbl8
    /// reservation fails the table works without tbl8 groups (routes longer than /24 are
    /// then refused with `TableFull`).
    pub(super) fn new(max_groups: u32, huge_pages: bool) -> Result<Table, LpmError> {
        let tbl24 =
            Mapping::zeroed(TBL24_BYTES, huge_pages).map_err(|source| LpmError::OutOfMemory {
                what: "tbl24",
                bytes: TBL24_BYTES,
                source,
            })?;
        let wanted = max_groups.min(MAX_GROUPS);
        let (tbl8, reserved_groups) =
            match Mapping::reserve(wanted as usize * GROUP_BYTES, huge_pages) {
                Ok(m) => (m, wanted),
                Err(_) => (Mapping::empty(), 0),
            };
        Ok(Table {
            tbl24,
            tbl8,
            reserved_groups,
            committed_groups: AtomicU32::new(0),
        })
    }

    /// Base of tbl24: 2^24 entries, valid while the table lives.
    #[inline(always)]
    pub(super) fn tbl24_ptr(&self) -> *const AtomicU32 {
        self.tbl24.as_ptr().cast()
    }

    /// Base of the tbl8 pool: entry `g * 256 + i` of every committed group `g`.
    #[inline(always)]
    pub(super) fn tbl8_ptr(&self) -> *const AtomicU32 {
        self.tbl8.as_ptr().cast()
    }

    pub(super) fn reserved_groups(&self) -> u32 {
        self.reserved_groups
    }

    /// Bytes of memory committed for this table (tbl24 plus committed tbl8 groups).
    pub(super) fn committed_bytes(&self) -> usize {
        // Relaxed: only the writer changes it, and only the writer asks.
        TBL24_BYTES + self.committed_groups.load(Ordering::Relaxed) as usize * GROUP_BYTES
    }

    fn tbl24(&self) -> &[AtomicU32] {
        // SAFETY: the mapping is 2 MiB aligned, at least TBL24_BYTES long, read-write and
        // zero-initialised, and zero is a valid AtomicU32; it lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.tbl24_ptr(), TBL24_ENTRIES) }
    }

    /// The 256 entries of a committed group.
    fn group(&self, group: u32) -> Option<&[AtomicU32]> {
        // Relaxed: writer-only counter.
        if group >= self.committed_groups.load(Ordering::Relaxed) {
            return None;
        }
        // SAFETY: committed groups lie inside the read-write part of the tbl8 mapping,
        // which is aligned and holds zero or entries the writer stored, all valid
        // AtomicU32s; the mapping lives as long as `self`.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.tbl8_ptr().add(group as usize * GROUP_ENTRIES),
                GROUP_ENTRIES,
            )
        })
    }

    /// Writes `new` over the entries a rule of length `depth` <= 24 covers, starting at
    /// tbl24 index `first`, wherever the entry's own rule is not more specific. Used to
    /// add a rule (`new` = its route) and to delete one (`new` = the covering rule's route
    /// or EMPTY: exactly the deleted rule's entries have its depth).
    pub(super) fn write_range(&self, first: u32, depth: u8, new: u32) {
        let count = 1usize << (24 - depth.min(24));
        let start = first as usize;
        let Some(slots) = self.tbl24().get(start..start + count) else {
            return;
        };
        for slot in slots {
            // Relaxed: only this thread stores tbl24 entries, so it reads its own latest.
            let old = slot.load(Ordering::Relaxed);
            if entry::is_extended(old) {
                if let Some(group) = self.group(entry::payload(old)) {
                    overwrite_shallower(group, depth, new);
                }
            } else if entry::depth(old) <= depth && old != new {
                // Release: not needed for a route entry itself (it points at nothing), but
                // it keeps every tbl24 store ordered after the writer's earlier edits, so
                // the grace-period argument in mod.rs needs no case analysis.
                slot.store(new, Ordering::Release);
            }
        }
    }

    /// Adds a route entry for a rule of length `depth` > 24 at `addr`, first giving the /24
    /// a tbl8 group if it has none. On error nothing has changed.
    pub(super) fn write_long(
        &self,
        pool: &mut Tbl8Pool,
        addr: u32,
        depth: u8,
        new: u32,
    ) -> Result<(), GroupError> {
        let Some(slot) = self.tbl24().get((addr >> 8) as usize) else {
            return Ok(());
        };
        // Relaxed: own store (single writer).
        let old = slot.load(Ordering::Relaxed);
        if entry::is_extended(old) {
            if let Some(group) = self.group(entry::payload(old)) {
                overwrite_long(group, addr, depth, new);
            }
            return Ok(());
        }
        let g = pool.alloc(self)?;
        let Some(group) = self.group(g) else {
            return Err(GroupError::Full);
        };
        for e in group {
            // Relaxed: no reader can reach this group until the Release store below
            // publishes it (a reused group's grace period has passed).
            e.store(old, Ordering::Relaxed);
        }
        overwrite_long(group, addr, depth, new);
        // Release: pairs with the reader's Acquire load of this tbl24 entry, so a reader
        // that follows the pointer sees the group completely filled.
        slot.store(entry::extended(g), Ordering::Release);
        Ok(())
    }

    /// Deletes the entries of a rule of length `depth` > 24 at `addr`, writing `cover`
    /// (the next less specific rule's route, or EMPTY) in their place.
    pub(super) fn clear_long(&self, addr: u32, depth: u8, cover: u32) {
        let Some(slot) = self.tbl24().get((addr >> 8) as usize) else {
            return;
        };
        // Relaxed: own store.
        let old = slot.load(Ordering::Relaxed);
        if entry::is_extended(old) {
            if let Some(group) = self.group(entry::payload(old)) {
                overwrite_long(group, addr, depth, cover);
            }
        }
    }

    /// Once no rule longer than /24 is left in the /24 at tbl24 index `index`, all entries
    /// of its group are equal: puts that entry back into tbl24 and returns the group, which
    /// the caller must retire (readers may still be reading it).
    pub(super) fn collapse(&self, index: u32) -> Option<u32> {
        let slot = self.tbl24().get(index as usize)?;
        // Relaxed: own store.
        let old = slot.load(Ordering::Relaxed);
        if !entry::is_extended(old) {
            return None;
        }
        let g = entry::payload(old);
        let group = self.group(g)?;
        // Relaxed: own store.
        let value = group[0].load(Ordering::Relaxed);
        // Release: orders the unlink before the retirement (crossbeam's defer seals the
        // garbage with a SeqCst fence after this store).
        slot.store(value, Ordering::Release);
        Some(g)
    }

    /// Commits the next step of the tbl8 reservation.
    fn grow(&self) -> Result<(), GroupError> {
        // Relaxed: writer-only counter.
        let committed = self.committed_groups.load(Ordering::Relaxed);
        let step = COMMIT_GROUPS.min(self.reserved_groups - committed);
        if step == 0 {
            return Err(GroupError::Full);
        }
        self.tbl8
            .commit(
                committed as usize * GROUP_BYTES,
                step as usize * GROUP_BYTES,
            )
            .map_err(GroupError::Commit)?;
        // Relaxed: writer-only counter; readers learn of new groups only through the
        // Release store of a tbl24 entry.
        self.committed_groups
            .store(committed + step, Ordering::Relaxed);
        Ok(())
    }
}

impl Tbl8Pool {
    /// Whether a group can be handed out from the free list or already committed memory.
    pub(super) fn can_allocate_without_growing(&self, table: &Table) -> bool {
        // Relaxed: writer-only counter.
        !self.free.is_empty() || self.next_fresh < table.committed_groups.load(Ordering::Relaxed)
    }

    fn alloc(&mut self, table: &Table) -> Result<u32, GroupError> {
        let g = match self.free.pop() {
            Some(g) => g,
            None => {
                let g = self.next_fresh;
                if g >= table.reserved_groups {
                    return Err(GroupError::Full);
                }
                // Relaxed: writer-only counter.
                if g >= table.committed_groups.load(Ordering::Relaxed) {
                    table.grow()?;
                }
                self.next_fresh = g + 1;
                g
            }
        };
        self.in_use += 1;
        Ok(g)
    }
}

/// Within one group, the entries of the rule of length `depth` (25..=32) at `addr`.
fn overwrite_long(group: &[AtomicU32], addr: u32, depth: u8, new: u32) {
    let first = (addr & 0xff) as usize;
    let count = 1usize << (32 - depth.clamp(25, 32));
    if let Some(range) = group.get(first..first + count) {
        overwrite_shallower(range, depth, new);
    }
}

/// Stores `new` in every entry whose rule is no more specific than `depth`.
fn overwrite_shallower(entries: &[AtomicU32], depth: u8, new: u32) {
    for e in entries {
        // Relaxed: own store (single writer).
        let old = e.load(Ordering::Relaxed);
        if entry::depth(old) <= depth && old != new {
            // Relaxed: a tbl8 entry is a plain value (no pointer), so readers need only
            // atomicity: they see the old or the new route.
            e.store(new, Ordering::Relaxed);
        }
    }
}

/// EMPTY is also what a fresh group is filled with when its /24 has no route.
const _: () = assert!(EMPTY == 0);
