//! The lock-free IPv4 longest-prefix-match table: prefix -> [`NextHopId`].
//!
//! This module owns the forwarding table the workers consult once per packet. It is a
//! DPDK-style DIR-24-8 table (see docs/LPM.md for the measurements behind the choice):
//!
//! - **tbl24**: 2^24 32-bit entries, one per /24, indexed by the top 24 bits of the
//!   address. An entry holds a next hop, or "no route", or the index of a tbl8 group.
//! - **tbl8 groups**: 256 entries each, one per address of a /24 that holds a rule longer
//!   than /24. The pool reserves address space for [`LpmConfig::max_tbl8_groups`] groups
//!   and commits memory in 2 MiB steps as groups are used.
//!
//! A lookup is one load, or two for addresses in a /24 with longer rules.
//!
//! # Concurrency
//! One [`LpmWriter`] (the control thread) and any number of [`LpmReader`]s (workers).
//! A worker pins once per batch ([`LpmReader::pin`], a crossbeam-epoch guard) and looks up
//! without locks or read-modify-write atomics; every entry load is a plain load on x86-64.
//!
//! - *Single routes* are edited in place. Each store changes one 32-bit entry from its old
//!   route to its new one, so a lookup, which reads one tbl24 entry and perhaps one tbl8
//!   entry, sees the route of that address before or after the edit, never a mix. A new
//!   tbl8 group is filled completely (the /24's old route, then the new rule's entries)
//!   before the tbl24 entry that names it is stored with Release; readers load tbl24 with
//!   Acquire. When the last rule longer than /24 of a /24 is deleted, its group's (now
//!   uniform) entry goes back into tbl24 and the group is *retired*: a crossbeam-epoch
//!   deferred function hands it back to the writer's free list only after every reader
//!   pinned at the time has unpinned, so a group is never refilled under a reader.
//! - *Whole-table replacement* ([`LpmWriter::replace_all`]) builds a new table off to the
//!   side and swaps the epoch-protected pointer (Release; readers load it with Acquire
//!   in `pin`). A view pinned before the swap keeps reading the old table, complete and
//!   unchanged, until it is dropped; the old table is unmapped after the grace period.
//!
//! Deferred functions run on whichever thread drives crossbeam's collector, possibly a
//! worker; they only send an index or a pointer through a channel, so the unmapping of an
//! old table happens on the writer's thread at its next call (or [`LpmWriter::reclaim`]).
//!
//! # Prefixes
//! Prefixes are [`Ipv4Net`]s; host bits are ignored (`10.1.2.3/24` is `10.1.2.0/24`), as
//! the kernel's routing table does with `ip route add`. Addresses are `u32` in host byte
//! order (`u32::from(Ipv4Addr)`).

mod entry;
mod mem;
mod rules;
mod table;
#[cfg(test)]
mod tests;

use crate::nexthop::NextHopId;
use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned, Shared as EpochShared};
use rules::Rules;
use std::marker::PhantomData;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use table::{GroupError, Table, Tbl8Pool};

pub use ipnet::Ipv4Net;

/// The largest next-hop id the table can store (24 bits; the rest of an entry is flags).
pub const MAX_NEXT_HOP: NextHopId = entry::PAYLOAD;

/// Sizing of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LpmConfig {
    /// The most tbl8 groups the table may use: one per /24 that holds a rule longer than
    /// /24, 1 KiB each. Only address space is reserved up front; memory is committed in
    /// 2 MiB steps as groups are used. Values above 2^24 are treated as 2^24.
    /// Default: 2^20 (1 GiB of address space), enough for a million prefixes even if every
    /// one of them is longer than /24 and alone in its /24.
    pub max_tbl8_groups: u32,
    /// Ask for transparent huge pages (`madvise(MADV_HUGEPAGE)`) for tbl24 and the tbl8
    /// pool: a random lookup then needs one TLB entry per 2 MiB instead of per 4 KiB.
    /// Default: true. Without THP support the table works the same, only slower.
    pub huge_pages: bool,
}

impl Default for LpmConfig {
    fn default() -> LpmConfig {
        LpmConfig {
            max_tbl8_groups: 1 << 20,
            huge_pages: true,
        }
    }
}

/// Why the table refused a change. The table is unchanged after every error.
#[derive(Debug, thiserror::Error)]
pub enum LpmError {
    /// The next-hop id does not fit in the 24 bits of a table entry.
    #[error("next-hop id {0} does not fit in the LPM table's 24-bit next-hop field (at most {MAX_NEXT_HOP})")]
    NextHopTooLarge(NextHopId),
    /// The prefix is longer than /24 and needs a tbl8 group, but none is left.
    #[error(
        "no tbl8 group left for {prefix}: all {groups} are in use (every /24 holding a route \
         longer than /24 needs one; raise LpmConfig::max_tbl8_groups)"
    )]
    TableFull {
        /// The prefix that could not be added.
        prefix: Ipv4Net,
        /// How many groups the table has (LpmConfig::max_tbl8_groups, capped at 2^24;
        /// 0 if the address space for the pool could not be reserved).
        groups: u32,
    },
    /// The operating system refused memory for the table.
    #[error("cannot allocate {bytes} bytes for the LPM {what}: {source}")]
    OutOfMemory {
        /// Which part of the table ("tbl24", "tbl8 pool").
        what: &'static str,
        /// How much was asked for.
        bytes: usize,
        /// The error of mmap or mprotect.
        #[source]
        source: std::io::Error,
    },
}

/// Creates an empty table: the single writer and a reader handle to clone for each worker.
///
/// Maps 64 MiB of address space for tbl24 (memory is committed as routes touch it). If even
/// that mapping fails, this aborts like any failed allocation; use [`try_new`] to get
/// the error instead.
pub fn new(config: LpmConfig) -> (LpmWriter, LpmReader) {
    match try_new(config) {
        Ok(pair) => pair,
        Err(_) => {
            std::alloc::handle_alloc_error(std::alloc::Layout::new::<[u32; table::TBL24_ENTRIES]>())
        }
    }
}

/// Like [`new`], but returns [`LpmError::OutOfMemory`] when tbl24 cannot be mapped.
pub fn try_new(config: LpmConfig) -> Result<(LpmWriter, LpmReader), LpmError> {
    let table = Table::new(config.max_tbl8_groups, config.huge_pages)?;
    let shared = Arc::new(SharedTable {
        current: Atomic::from(Owned::new(table)),
    });
    let (reclaim_tx, reclaim_rx) = mpsc::channel();
    let writer = LpmWriter {
        shared: Arc::clone(&shared),
        rules: Rules::default(),
        pool: Tbl8Pool::default(),
        config,
        generation: 0,
        reclaim_tx,
        reclaim_rx,
    };
    Ok((writer, LpmReader { shared }))
}

/// The pointer to the current table, shared by the writer and all readers.
struct SharedTable {
    /// Never null. Swapped only by the writer (`replace_all`).
    current: Atomic<Table>,
}

impl Drop for SharedTable {
    fn drop(&mut self) {
        // SAFETY: `&mut self` means the last LpmReader/LpmWriter is gone, and views borrow
        // a reader, so nothing can reach the current table any more.
        unsafe {
            let guard = epoch::unprotected();
            // Relaxed: exclusive access.
            let current = self.current.load(Ordering::Relaxed, guard);
            if !current.is_null() {
                drop(current.into_owned());
            }
        }
    }
}

/// A worker's handle on the table. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct LpmReader {
    shared: Arc<SharedTable>,
}

impl std::fmt::Debug for LpmReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LpmReader").finish_non_exhaustive()
    }
}

impl LpmReader {
    /// Pins the current table for a batch of lookups. Costs one epoch pin (a SeqCst fence
    /// when the thread was not pinned yet); drop the view at the end of the batch so that
    /// retired memory can be reclaimed.
    #[inline]
    pub fn pin(&self) -> LpmView<'_> {
        let guard = epoch::pin();
        // Acquire: pairs with the Release swap in `replace_all`, so a new table is seen
        // completely built.
        let current = self.shared.current.load(Ordering::Acquire, &guard);
        // SAFETY: the table is not freed while `guard` is pinned (tables are retired with
        // `defer`); the pointer is never null after `try_new`, but a null would be handled.
        let table = unsafe { current.as_ref() };
        let (tbl24, tbl8) = match table {
            Some(table) => (table.tbl24_ptr(), table.tbl8_ptr()),
            None => (std::ptr::null(), std::ptr::null()),
        };
        LpmView {
            tbl24,
            tbl8,
            _guard: guard,
            _reader: PhantomData,
        }
    }
}

/// A pinned snapshot of the table pointer, for one batch of lookups on one thread.
///
/// In-place edits of single routes become visible to a live view as they happen; after
/// a `replace_all` a live view keeps answering from the previous table.
pub struct LpmView<'r> {
    /// Base of tbl24 (2^24 entries), or null if there is no table (cannot happen).
    tbl24: *const AtomicU32,
    /// Base of the tbl8 pool.
    tbl8: *const AtomicU32,
    /// Keeps the table and every tbl8 group reachable from it alive.
    _guard: Guard,
    _reader: PhantomData<&'r LpmReader>,
}

impl LpmView<'_> {
    /// Loads the tbl24 entry of `addr`.
    #[inline(always)]
    fn tbl24_entry(&self, addr: u32) -> u32 {
        if self.tbl24.is_null() {
            return entry::EMPTY;
        }
        // SAFETY: `addr >> 8 < 2^24`, the length of tbl24, which the pinned guard keeps
        // mapped.
        let slot = unsafe { &*self.tbl24.add((addr >> 8) as usize) };
        // Acquire: pairs with the writer's Release store of an extended entry, so the tbl8
        // group it names is seen completely filled. (A plain load on x86-64.)
        slot.load(Ordering::Acquire)
    }

    /// Loads the tbl8 entry of `addr` in the group named by the extended entry `ext`.
    #[inline(always)]
    fn tbl8_entry(&self, ext: u32, addr: u32) -> u32 {
        let index = tbl8_index(ext, addr);
        // SAFETY: extended entries only name groups whose memory is committed (committed
        // memory is never released while the table lives), and `index` lies in that group;
        // the group is not reused while the guard is pinned (retired groups wait for a
        // grace period).
        let slot = unsafe { &*self.tbl8.add(index) };
        // Relaxed: a tbl8 entry is a plain value; the Acquire load of `ext` already
        // ordered the group's initial fill before this load.
        slot.load(Ordering::Relaxed)
    }

    /// The next hop of the longest prefix containing `addr` (host byte order).
    #[inline(always)]
    pub fn lookup(&self, addr: u32) -> Option<NextHopId> {
        let mut e = self.tbl24_entry(addr);
        if entry::is_extended(e) {
            e = self.tbl8_entry(e, addr);
        }
        entry::next_hop(e)
    }

    /// Looks up `addrs[i]` into `out[i]`, for `i < min(addrs.len(), out.len())`.
    ///
    /// Works in windows of 64 addresses: first asks for the tbl24 cache line of every
    /// address of the window (a prefetch into L2, which can have more misses in flight than
    /// L1's fill buffers), then looks each address up. The DRAM latency of a window's
    /// misses then overlaps (see docs/LPM.md for the measurements).
    #[inline]
    pub fn lookup_batch(&self, addrs: &[u32], out: &mut [Option<NextHopId>]) {
        const WINDOW: usize = 64;
        let n = addrs.len().min(out.len());
        let (addrs, out) = (&addrs[..n], &mut out[..n]);
        for (a, o) in addrs.chunks(WINDOW).zip(out.chunks_mut(WINDOW)) {
            for &addr in a {
                prefetch(self.tbl24.wrapping_add((addr >> 8) as usize));
            }
            for (r, &addr) in o.iter_mut().zip(a) {
                *r = self.lookup(addr);
            }
        }
    }
}

/// Index into the tbl8 pool of `addr` in the group named by the extended entry `ext`.
#[inline(always)]
fn tbl8_index(ext: u32, addr: u32) -> usize {
    ((entry::payload(ext) as usize) << 8) | (addr & 0xff) as usize
}

/// Asks for the cache line of `p` without waiting for it (no-op where unsupported).
/// `p` may be any address: a prefetch never faults.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHh is a hint; it has no architectural effect and never faults,
    // whatever the address. SSE is part of the x86-64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// What a deferred function hands back to the writer after a grace period.
enum Reclaim {
    /// A tbl8 group of the table of this generation.
    Group { generation: u64, group: u32 },
    /// A replaced table, to unmap.
    Table(Box<Table>),
}

/// A retired table's pointer, moved into the deferred function that frees it.
struct RetiredTable(*const Table);

// SAFETY: the pointer is only turned back into an owned table after the grace period, by
// the one deferred function that holds it; Table itself is Send.
unsafe impl Send for RetiredTable {}

impl RetiredTable {
    /// # Safety
    /// Only after the epoch grace period of the table's retirement, once.
    unsafe fn into_box(self) -> Box<Table> {
        // SAFETY: the pointer came from an `Owned<Table>` stored in the Atomic, and the
        // caller guarantees no reader can reach it any more.
        unsafe { EpochShared::from(self.0).into_owned().into_box() }
    }
}

/// The single writer: owns the rule set and edits the table readers see.
/// `Send`, not `Sync`: use it from one thread at a time.
pub struct LpmWriter {
    shared: Arc<SharedTable>,
    rules: Rules,
    pool: Tbl8Pool,
    config: LpmConfig,
    /// Bumped by every `replace_all`; tells stale group retirements apart.
    generation: u64,
    reclaim_tx: Sender<Reclaim>,
    reclaim_rx: Receiver<Reclaim>,
}

impl std::fmt::Debug for LpmWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LpmWriter")
            .field("routes", &self.rules.len())
            .field("tbl8_groups", &self.pool.in_use)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The writer's view of the current table.
fn current(shared: &SharedTable) -> &Table {
    // SAFETY: only the writer swaps or retires the current table, and the writer holds
    // `shared`, so the table outlives this borrow (which borrows the writer); the pointer
    // is never null after `try_new`. Relaxed: the writer reads its own store.
    unsafe {
        let guard = epoch::unprotected();
        shared
            .current
            .load(Ordering::Relaxed, guard)
            .as_ref()
            .unwrap_unchecked()
    }
}

impl LpmWriter {
    /// Adds `prefix -> nh` or changes the next hop of `prefix`; returns the next hop it
    /// replaced. Host bits of `prefix` are ignored.
    pub fn insert(
        &mut self,
        prefix: Ipv4Net,
        nh: NextHopId,
    ) -> Result<Option<NextHopId>, LpmError> {
        if nh > MAX_NEXT_HOP {
            return Err(LpmError::NextHopTooLarge(nh));
        }
        self.reclaim();
        let prefix = prefix.trunc();
        let (addr, depth) = (u32::from(prefix.network()), prefix.prefix_len());
        let route = entry::route(nh, depth);
        let table = current(&self.shared);
        if depth <= 24 {
            table.write_range(addr >> 8, depth, route);
        } else {
            if self.pending_groups() && !self.pool.can_allocate_without_growing(table) {
                // Reuse retired groups rather than commit more memory: otherwise a churn of
                // long routes would walk through the whole reservation.
                self.collect_garbage();
            }
            let table = current(&self.shared);
            let mut result = table.write_long(&mut self.pool, addr, depth, route);
            if matches!(result, Err(GroupError::Full)) && self.pending_groups() {
                // Groups are waiting for their grace period: give the readers a chance.
                self.collect_garbage();
                result = current(&self.shared).write_long(&mut self.pool, addr, depth, route);
            }
            result.map_err(|e| group_error(e, prefix, current(&self.shared)))?;
        }
        Ok(self.rules.insert(addr, depth, nh))
    }

    /// Deletes `prefix` (host bits ignored); its addresses fall back to the next less
    /// specific rule. Returns its next hop, or `None` if there was no such rule.
    pub fn remove(&mut self, prefix: Ipv4Net) -> Option<NextHopId> {
        self.reclaim();
        let prefix = prefix.trunc();
        let (addr, depth) = (u32::from(prefix.network()), prefix.prefix_len());
        let old = self.rules.remove(addr, depth)?;
        let cover = self.rules.covering(addr, depth);
        let table = current(&self.shared);
        if depth <= 24 {
            table.write_range(addr >> 8, depth, cover);
        } else {
            table.clear_long(addr, depth, cover);
            if self.rules.long_rules_in(addr >> 8) == 0 {
                if let Some(group) = table.collapse(addr >> 8) {
                    self.retire_group(group);
                }
            }
        }
        Some(old)
    }

    /// Replaces every route at once: builds a new table from `routes` (for a prefix given
    /// twice, the last next hop wins) and publishes it atomically. Readers see either the
    /// old table or the new one. On error the old table stays, unchanged.
    pub fn replace_all<I: IntoIterator<Item = (Ipv4Net, NextHopId)>>(
        &mut self,
        routes: I,
    ) -> Result<(), LpmError> {
        self.reclaim();
        let mut rules = Rules::default();
        for (prefix, nh) in routes {
            if nh > MAX_NEXT_HOP {
                return Err(LpmError::NextHopTooLarge(nh));
            }
            let prefix = prefix.trunc();
            rules.insert(u32::from(prefix.network()), prefix.prefix_len(), nh);
        }
        let generation = self.generation.wrapping_add(1);
        let table = Table::new(self.config.max_tbl8_groups, self.config.huge_pages)?;
        let mut pool = Tbl8Pool::default();
        // Shortest first, so every rule overwrites what it covers without comparisons
        // failing (the depth checks would make any order correct).
        for (addr, depth, nh) in rules.by_depth() {
            let route = entry::route(nh, depth);
            if depth <= 24 {
                table.write_range(addr >> 8, depth, route);
            } else {
                table
                    .write_long(&mut pool, addr, depth, route)
                    .map_err(|e| {
                        let prefix = Ipv4Net::new(Ipv4Addr::from(addr), depth).unwrap_or_default();
                        group_error(e, prefix, &table)
                    })?;
            }
        }
        let guard = epoch::pin();
        // Release: pairs with the Acquire load in `LpmReader::pin`, so readers see the new
        // table completely built.
        let old = self
            .shared
            .current
            .swap(Owned::new(table), Ordering::Release, &guard);
        self.rules = rules;
        self.pool = pool;
        self.generation = generation;
        if !old.is_null() {
            let retired = RetiredTable(old.as_raw());
            let tx = self.reclaim_tx.clone();
            guard.defer(move || {
                // SAFETY: deferred functions run after the grace period, exactly once.
                let table = unsafe { retired.into_box() };
                // If the writer is gone the table comes back in the error and is dropped here.
                drop(tx.send(Reclaim::Table(table)));
            });
        }
        guard.flush();
        drop(guard);
        self.collect_garbage();
        Ok(())
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.len() == 0
    }

    /// Every route (prefix with host bits cleared, next hop), in no particular order.
    pub fn routes(&self) -> impl Iterator<Item = (Ipv4Net, NextHopId)> + '_ {
        self.rules.routes()
    }

    /// Memory held for the current table and the rule set, in bytes: tbl24 (64 MiB), the
    /// committed part of the tbl8 pool, and an estimate of the rule set's hash maps.
    /// Tables replaced but still waiting for their grace period are not counted.
    pub fn memory_bytes(&self) -> usize {
        current(&self.shared).committed_bytes()
            + self.rules.memory_bytes()
            + self.pool.free.capacity() * std::mem::size_of::<u32>()
    }

    /// tbl8 groups in use (one per /24 holding a rule longer than /24).
    pub fn tbl8_groups(&self) -> u32 {
        self.pool.in_use
    }

    /// Takes back whatever has passed its grace period: retired tbl8 groups go to the free
    /// list, replaced tables are unmapped. Every mutating call does this first; call it
    /// when the writer is otherwise idle after a `replace_all` to release the old table.
    pub fn reclaim(&mut self) {
        while let Ok(item) = self.reclaim_rx.try_recv() {
            match item {
                Reclaim::Group { generation, group } if generation == self.generation => {
                    self.pool.awaiting = self.pool.awaiting.saturating_sub(1);
                    self.pool.free.push(group);
                }
                // A group of a table that has been replaced since.
                Reclaim::Group { .. } => {}
                Reclaim::Table(table) => drop(table),
            }
        }
    }

    /// Retires a tbl8 group that no tbl24 entry names any more: it returns to the free list
    /// once every reader that might still be reading it has unpinned.
    fn retire_group(&mut self, group: u32) {
        self.pool.in_use = self.pool.in_use.saturating_sub(1);
        self.pool.awaiting += 1;
        let generation = self.generation;
        let tx = self.reclaim_tx.clone();
        let guard = epoch::pin();
        guard.defer(move || drop(tx.send(Reclaim::Group { generation, group })));
        // Hand the garbage to the global queue now so other threads' pins can free it.
        guard.flush();
    }

    /// Whether retired groups of the current table are still in their grace period.
    fn pending_groups(&self) -> bool {
        self.pool.awaiting > 0
    }

    /// Nudges crossbeam-epoch forward a few times (a grace period needs two epoch
    /// advances, each needing every pinned thread to have caught up) and takes back what
    /// has been released. Never waits for a reader.
    fn collect_garbage(&mut self) {
        for _ in 0..4 {
            epoch::pin().flush();
        }
        self.reclaim();
    }
}

impl Drop for LpmWriter {
    fn drop(&mut self) {
        self.reclaim();
    }
}

fn group_error(e: GroupError, prefix: Ipv4Net, table: &Table) -> LpmError {
    match e {
        GroupError::Full => LpmError::TableFull {
            prefix,
            groups: table.reserved_groups(),
        },
        GroupError::Commit(source) => LpmError::OutOfMemory {
            what: "tbl8 pool",
            bytes: table::COMMIT_BYTES,
            source,
        },
    }
}
