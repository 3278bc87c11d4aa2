//! The lossy bounded ring between one worker and the trace hub: single producer (the
//! worker's [`Producer`], not `Clone`), single consumer (the hub's [`Consumer`]).
//!
//! Slots are allocated once, when the ring is made; a push copies at most
//! [`SNAP_LEN`] bytes into the next free slot and publishes it with one release store.
//! A full ring never makes the worker wait: the frame is not taken and counted in
//! [`Consumer::missed`] (drops and other verdicts apart, so a drops-only client is told
//! only about the drops it missed). Order is kept: the consumer sees frames in push order.

use crate::nexthop::PortId;
use crate::pipeline::Verdict;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The most bytes of a frame a trace keeps (the rest is counted in `orig_len` only):
/// enough for VXLAN's 50 bytes of outer headers and the inner Ethernet/IPv4/TCP.
pub const SNAP_LEN: usize = 256;

/// One traced frame as the worker left it at the verdict point.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Slot {
    /// Wall-clock time of the batch, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The frame's length at the verdict point (may exceed `cap_len`).
    pub orig_len: u32,
    /// The port the frame arrived on.
    pub ingress: PortId,
    /// How many bytes of `data` are the frame's.
    pub cap_len: u16,
    pub verdict: Verdict,
    pub data: [u8; SNAP_LEN],
}

impl Slot {
    const EMPTY: Slot = Slot {
        ts_ns: 0,
        orig_len: 0,
        ingress: 0,
        cap_len: 0,
        verdict: Verdict::ToKernel,
        data: [0; SNAP_LEN],
    };

    /// The captured bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.cap_len)]
    }
}

/// A counter on its own cache line, so producer and consumer indices never share one.
#[repr(align(64))]
struct Padded<T>(T);

struct Ring {
    /// Next slot the producer writes (monotonic; index = head % len). Written by the
    /// producer only.
    head: Padded<AtomicUsize>,
    /// Next slot the consumer reads (monotonic). Written by the consumer only.
    tail: Padded<AtomicUsize>,
    /// Frames the ring could not take, by kind. Written by the producer only.
    missed_drops: Padded<AtomicU64>,
    missed_other: AtomicU64,
    slots: Box<[UnsafeCell<Slot>]>,
}

// SAFETY: a slot is written only by the one `Producer` while it lies outside
// `tail..head` (free) and read only by the one `Consumer` while it lies inside (published);
// the release store of `head` (producer) / `tail` (consumer) and the acquire load on the
// other side order the slot accesses, so no slot is ever accessed by both at once.
unsafe impl Sync for Ring {}
// SAFETY: see `Sync`; the slots are plain data.
unsafe impl Send for Ring {}

/// Makes a ring of `slots` frames (at least 1): the worker's end and the hub's end.
pub fn ring(slots: usize) -> (Producer, Consumer) {
    let slots: Box<[UnsafeCell<Slot>]> = (0..slots.max(1))
        .map(|_| UnsafeCell::new(Slot::EMPTY))
        .collect();
    let ring = Arc::new(Ring {
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
        missed_drops: Padded(AtomicU64::new(0)),
        missed_other: AtomicU64::new(0),
        slots,
    });
    (
        Producer {
            ring: ring.clone(),
            head: 0,
            tail: 0,
            missed_drops: 0,
            missed_other: 0,
        },
        Consumer { ring },
    )
}

/// The worker's end. Not `Clone`: one producer per ring is what makes it safe.
pub struct Producer {
    ring: Arc<Ring>,
    /// Local copies: the producer owns `head`; `tail` is the consumer's as last seen.
    head: usize,
    tail: usize,
    missed_drops: u64,
    missed_other: u64,
}

impl Producer {
    /// Copies one frame in (at most [`SNAP_LEN`] bytes of `frame`, whose full length is
    /// `orig_len`); false if the ring was full (the frame is counted as missed). Never
    /// blocks, never allocates.
    #[inline]
    pub fn push(
        &mut self,
        ts_ns: u64,
        ingress: PortId,
        verdict: Verdict,
        frame: &[u8],
        orig_len: usize,
    ) -> bool {
        let cap = self.ring.slots.len();
        if self.head - self.tail == cap {
            // Acquire: the consumer's reads of the slots it freed happen before we reuse them.
            self.tail = self.ring.tail.0.load(Ordering::Acquire);
            if self.head - self.tail == cap {
                self.miss(verdict);
                return false;
            }
        }
        let n = frame.len().min(SNAP_LEN);
        // SAFETY: `head` is outside `tail..head` as the consumer sees it (it has not been
        // published), so only this producer touches the slot until the store below.
        let slot = unsafe { &mut *self.ring.slots[self.head % cap].get() };
        slot.ts_ns = ts_ns;
        slot.orig_len = orig_len.min(u32::MAX as usize) as u32;
        slot.ingress = ingress;
        slot.cap_len = n as u16;
        slot.verdict = verdict;
        slot.data[..n].copy_from_slice(&frame[..n]);
        self.head += 1;
        // Release: the slot's contents are visible before the consumer sees the new head.
        self.ring.head.0.store(self.head, Ordering::Release);
        true
    }

    #[cold]
    fn miss(&mut self, verdict: Verdict) {
        // Relaxed: a statistics counter; this producer is its only writer.
        if matches!(verdict, Verdict::Drop(_)) {
            self.missed_drops += 1;
            self.ring
                .missed_drops
                .0
                .store(self.missed_drops, Ordering::Relaxed);
        } else {
            self.missed_other += 1;
            self.ring
                .missed_other
                .store(self.missed_other, Ordering::Relaxed);
        }
    }
}

/// Frames a ring could not take since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missed {
    pub drops: u64,
    pub other: u64,
}

/// The hub's end. Not `Clone`.
pub struct Consumer {
    ring: Arc<Ring>,
}

impl Consumer {
    /// Hands every published frame to `f`, oldest first, then frees their slots; returns
    /// how many. Never waits for the producer.
    pub fn drain(&mut self, mut f: impl FnMut(&Slot)) -> usize {
        let cap = self.ring.slots.len();
        // Relaxed: only this consumer writes `tail`.
        let tail = self.ring.tail.0.load(Ordering::Relaxed);
        // Acquire: pairs with the producer's release store of `head`.
        let head = self.ring.head.0.load(Ordering::Acquire);
        for i in tail..head {
            // SAFETY: `i` lies in `tail..head`: published and not yet freed, so the
            // producer does not write it until the store of `tail` below.
            f(unsafe { &*self.ring.slots[i % cap].get() });
        }
        // Release: our reads of those slots happen before the producer reuses them.
        self.ring.tail.0.store(head, Ordering::Release);
        head - tail
    }

    /// Frees every published frame unread (stale frames from before a client attached).
    pub fn discard(&mut self) {
        let head = self.ring.head.0.load(Ordering::Acquire);
        self.ring.tail.0.store(head, Ordering::Release);
    }

    /// Frames the ring could not take so far.
    pub fn missed(&self) -> Missed {
        // Relaxed: statistics; a late value is only reported a little later.
        Missed {
            drops: self.ring.missed_drops.0.load(Ordering::Relaxed),
            other: self.ring.missed_other.load(Ordering::Relaxed),
        }
    }

    /// The ring's size in frames.
    pub fn capacity(&self) -> usize {
        self.ring.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::DropReason;
    use proptest::prelude::*;

    fn frame(i: u32) -> Vec<u8> {
        // Lengths vary around SNAP_LEN so truncation is exercised too.
        let len = 60 + (i as usize * 37) % 400;
        (0..len).map(|b| (b as u32 ^ i) as u8).collect()
    }

    fn collect(c: &mut Consumer) -> Vec<(u64, Vec<u8>, u32)> {
        let mut out = Vec::new();
        c.drain(|s| out.push((s.ts_ns, s.bytes().to_vec(), s.orig_len)));
        out
    }

    #[test]
    fn a_full_ring_counts_misses_by_kind_and_keeps_the_oldest_frames_in_order() {
        let (mut p, mut c) = ring(4);
        for i in 0..4u32 {
            assert!(p.push(u64::from(i), 0, Verdict::Tx(1), &frame(i), frame(i).len()));
        }
        assert!(!p.push(
            9,
            0,
            Verdict::Drop(DropReason::NoRoute),
            &frame(9),
            frame(9).len()
        ));
        assert!(!p.push(
            9,
            0,
            Verdict::Drop(DropReason::Mtu),
            &frame(9),
            frame(9).len()
        ));
        assert!(!p.push(9, 0, Verdict::ToKernel, &frame(9), frame(9).len()));
        assert_eq!(c.missed(), Missed { drops: 2, other: 1 });
        let got = collect(&mut c);
        assert_eq!(got.len(), 4);
        for (i, (ts, bytes, orig)) in got.iter().enumerate() {
            let f = frame(i as u32);
            assert_eq!(*ts, i as u64);
            assert_eq!(*orig as usize, f.len());
            assert_eq!(bytes[..], f[..f.len().min(SNAP_LEN)]);
        }
        // Space again after the drain.
        assert!(p.push(5, 3, Verdict::Drop(DropReason::Malformed), &[1, 2, 3], 3));
        let mut v = Vec::new();
        c.drain(|s| v.push((s.ingress, s.verdict, s.bytes().to_vec())));
        assert_eq!(
            v,
            [(3, Verdict::Drop(DropReason::Malformed), vec![1, 2, 3])]
        );
    }

    #[test]
    fn discard_frees_stale_frames_unread() {
        let (mut p, mut c) = ring(2);
        p.push(1, 0, Verdict::ToKernel, &[1], 1);
        p.push(2, 0, Verdict::ToKernel, &[2], 1);
        c.discard();
        assert_eq!(c.drain(|_| panic!("discarded frames are not read")), 0);
        assert!(p.push(3, 0, Verdict::ToKernel, &[3], 1));
        assert_eq!(collect(&mut c)[0].0, 3);
    }

    #[test]
    fn a_producer_thread_never_blocks_on_a_slow_consumer_and_every_frame_is_seen_or_missed() {
        const N: u32 = 200_000;
        let (mut p, mut c) = ring(64);
        let producer = std::thread::spawn(move || {
            let mut taken = 0u64;
            for i in 0..N {
                let b = i.to_be_bytes();
                taken += u64::from(p.push(u64::from(i), 0, Verdict::Tx(0), &b, b.len()));
            }
            taken
        });
        let mut seen = Vec::new();
        while !producer.is_finished() {
            c.drain(|s| seen.push(s.ts_ns));
            std::thread::yield_now();
        }
        let taken = producer.join().unwrap();
        c.drain(|s| seen.push(s.ts_ns));
        assert_eq!(seen.len() as u64, taken);
        assert_eq!(taken + c.missed().other, u64::from(N));
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "order kept");
    }

    proptest! {
        /// Any interleaving of pushes and drains: the consumer sees exactly the frames
        /// the producer reported taken, in order, with their bytes; the rest are missed.
        #[test]
        fn interleavings_keep_order_and_account_for_every_frame(
            cap in 1usize..8,
            ops in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            let (mut p, mut c) = ring(cap);
            let mut taken = Vec::new();
            let mut seen = Vec::new();
            let mut next = 0u32;
            for push in ops {
                if push {
                    if p.push(u64::from(next), 0, Verdict::ToKernel, &frame(next), frame(next).len()) {
                        taken.push(next);
                    }
                    next += 1;
                } else {
                    c.drain(|s| seen.push((s.ts_ns as u32, s.bytes().to_vec())));
                }
            }
            c.drain(|s| seen.push((s.ts_ns as u32, s.bytes().to_vec())));
            prop_assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), taken.clone());
            for (i, bytes) in &seen {
                let f = frame(*i);
                prop_assert_eq!(&bytes[..], &f[..f.len().min(SNAP_LEN)]);
            }
            prop_assert_eq!(taken.len() as u64 + c.missed().other, u64::from(next));
        }
    }
}
