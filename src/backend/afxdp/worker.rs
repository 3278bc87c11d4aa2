//! The AF_XDP per-core worker loop (and the misses ring it reports unresolved local
//! destinations through).
//!
//! completions -> refill fill rings -> rx batch -> pipeline -> tx batches per port ->
//! kick tx (need_wakeup) -> publish counters; idle: poll() or busy-spin.
//!
//! Nothing is allocated, locked or formatted per packet; the syscalls are the tx kick
//! (once per batch per port, only when the ring asks for it) and poll() when idle.

use super::sockets::{WorkerSockets, FRAME_SIZE};
use crate::counters::{Counters, DropReason, SharedCounters};
use crate::handoff::Handoff;
use crate::pipeline::{Packet, Pipeline, Verdict};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use xsk_rs::{FrameDesc, TxQueue};
/// Destinations a worker could not forward because their MAC is unknown (local pods
/// nobody has resolved yet), for the control thread to resolve. A lossy single-producer
/// ring: the worker overwrites the oldest entry, the control thread reads what is new.
#[derive(Debug)]
#[repr(align(64))]
pub struct Misses {
    slots: [AtomicU32; MISS_SLOTS],
    head: AtomicUsize,
}

const MISS_SLOTS: usize = 64;

impl Default for Misses {
    fn default() -> Self {
        Misses {
            slots: std::array::from_fn(|_| AtomicU32::new(0)),
            head: AtomicUsize::new(0),
        }
    }
}

impl Misses {
    /// Records a destination (worker side).
    #[inline]
    pub fn push(&self, ip: u32) {
        // Relaxed loads/stores on the slot, Release on head: a reader that sees the new
        // head (Acquire) sees the slot written before it.
        let h = self.head.load(Ordering::Relaxed);
        self.slots[h % MISS_SLOTS].store(ip, Ordering::Relaxed);
        self.head.store(h.wrapping_add(1), Ordering::Release);
    }

    /// Reads the destinations recorded since `*seen` (control side); older ones that were
    /// overwritten are lost, which only delays their resolution.
    pub fn drain(&self, seen: &mut usize, out: &mut Vec<u32>) {
        // Acquire: pairs with the Release in `push`.
        let h = self.head.load(Ordering::Acquire);
        let from = (*seen).max(h.saturating_sub(MISS_SLOTS));
        for i in from..h {
            out.push(self.slots[i % MISS_SLOTS].load(Ordering::Relaxed));
        }
        *seen = h;
    }
}

/// A pinned worker: its sockets, its pipeline, its counters.
///
/// Frames whose start moved in the pipeline (VXLAN encap writes 50 bytes in front of
/// the frame, decap skips 50) are moved back to the descriptor's address before
/// transmission: xsk-rs 0.11's `FrameDesc` does not let a descriptor's address change,
/// so the tx ring always sends from where the frame was received. This costs one memmove
/// of the frame per encap/decap (about 5 ns for 64-byte frames); see docs/afxdp.md.
pub struct Worker {
    sockets: WorkerSockets,
    pipeline: Pipeline,
    counters: Counters,
    shared: Arc<SharedCounters>,
    misses: Arc<Misses>,
    /// Where frames the pipeline cannot finish go: the kernel's slow path. `None` only
    /// in tests that run a worker without it (such frames are then dropped, counted).
    handoff: Option<Arc<Handoff>>,
    /// Copies batches at the verdict point while a `podfwd trace` client is attached.
    tracer: Option<crate::trace::Tracer>,
}

impl Worker {
    /// Records every batch at the verdict point into `tracer` while it is active.
    pub fn with_tracer(mut self, tracer: crate::trace::Tracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    pub fn new(
        sockets: WorkerSockets,
        pipeline: Pipeline,
        shared: Arc<SharedCounters>,
        misses: Arc<Misses>,
        handoff: Option<Arc<Handoff>>,
    ) -> Self {
        Worker {
            sockets,
            pipeline,
            counters: Counters::default(),
            shared,
            misses,
            handoff,
            tracer: None,
        }
    }

    /// Runs until `stop` is set (checked at least every 100 ms when idle).
    pub fn run(mut self, stop: &AtomicBool) -> io::Result<()> {
        let batch = self.sockets.settings.batch_size;
        let mut descs = vec![FrameDesc::default(); batch];
        let mut verdicts = vec![Verdict::ToKernel; batch];
        let mut pkts: Vec<Packet<'static>> = Vec::with_capacity(batch);
        let mut pollfds: Vec<libc::pollfd> = self
            .sockets
            .queues
            .iter()
            .map(|q| libc::pollfd {
                fd: q.fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        for q in 0..self.sockets.queues.len() {
            self.refill(q);
        }
        // Relaxed: the flag carries no data; the worker only needs to see it eventually.
        while !stop.load(Ordering::Relaxed) {
            let mut work = 0;
            for q in 0..self.sockets.queues.len() {
                self.complete(q, &mut descs);
                self.refill(q);
                work += self.rx_batch(q, &mut descs, &mut verdicts, &mut pkts)?;
            }
            if work > 0 {
                self.shared.publish(&self.counters);
                continue;
            }
            if self.sockets.settings.busy_poll {
                std::hint::spin_loop();
                continue;
            }
            wait_idle(&mut pollfds)?;
        }
        self.shared.publish(&self.counters);
        Ok(())
    }

    /// Returns completed tx frames of queue `q` to the free pool.
    fn complete(&mut self, q: usize, descs: &mut [FrameDesc]) {
        let s = &mut self.sockets;
        loop {
            // SAFETY: the completion ring belongs to this worker's UMEM.
            let n = unsafe { s.queues[q].cq.consume(descs) };
            s.free.extend_from_slice(&descs[..n]);
            if n < descs.len() {
                break;
            }
        }
    }

    /// Tops the fill ring of queue `q` up to its target from the free pool.
    fn refill(&mut self, q: usize) {
        let s = &mut self.sockets;
        let pq = &mut s.queues[q];
        let ring = s.settings.fill_ring_size;
        let free_slots = pq.fq.nb_free(ring) as usize;
        let in_ring = ring as usize - free_slots.min(ring as usize);
        let want = s
            .fill_target
            .saturating_sub(in_ring)
            .min(free_slots)
            .min(s.free.len());
        if want == 0 {
            return;
        }
        let from = s.free.len() - want;
        // SAFETY: the frames come from this UMEM's free pool: nobody else uses them.
        let n = unsafe { pq.fq.produce(&s.free[from..]) };
        if n > 0 {
            s.free.truncate(from);
        }
    }

    /// Receives and forwards one batch from queue `q`; returns the frames received.
    fn rx_batch(
        &mut self,
        q: usize,
        descs: &mut [FrameDesc],
        verdicts: &mut [Verdict],
        pkts: &mut Vec<Packet<'static>>,
    ) -> io::Result<usize> {
        let s = &mut self.sockets;
        // SAFETY: the rx ring belongs to this worker's UMEM.
        let n = unsafe { s.queues[q].rx.consume(descs) };
        if n == 0 {
            return Ok(0);
        }
        let ingress = s.queues[q].port;
        pkts.clear();
        for d in descs[..n].iter_mut() {
            let addr = d.addr();
            let data_off = addr % FRAME_SIZE as usize;
            let len = d.lengths().data();
            // SAFETY: `d` was just consumed from the rx ring, so the kernel no longer
            // writes its frame and no other descriptor refers to it until we hand it to
            // a tx or fill ring (after `pkts` is cleared). The slice covers exactly this
            // frame (aligned mode: frames are FRAME_SIZE apart) inside the UMEM mapping,
            // which outlives `pkts`: the worker owns the UMEM and clears `pkts` before
            // returning.
            let buf: &'static mut [u8] = unsafe {
                let data = self.sockets.umem.data_mut(d).contents_mut().as_mut_ptr();
                std::slice::from_raw_parts_mut(data.sub(data_off), FRAME_SIZE as usize)
            };
            pkts.push(Packet {
                buf,
                offset: data_off,
                len,
                ingress,
            });
        }
        let s = &mut self.sockets;
        self.pipeline
            .process(&mut pkts[..], &mut verdicts[..n], &mut self.counters);
        if let Some(t) = self.tracer.as_mut().and_then(|t| t.active()) {
            t.record_batch(pkts, &verdicts[..n], std::time::SystemTime::now());
        }
        for ((pkt, v), d) in pkts.iter_mut().zip(verdicts.iter()).zip(descs.iter_mut()) {
            let data_off = d.addr() % FRAME_SIZE as usize;
            match *v {
                Verdict::Tx(port) => {
                    // Complete checksums a veth sender left partial (the inner frame of
                    // an encapsulated one); see `partial_csum`.
                    let inner = if pkt.offset < data_off {
                        pkt.offset + crate::wire::vxlan::ENCAP_OVERHEAD
                    } else {
                        pkt.offset
                    };
                    let end = pkt.offset + pkt.len;
                    if crate::partial_csum::complete(&mut pkt.buf[inner..end]) {
                        self.counters.checksums_completed += 1;
                    }
                    if pkt.offset != data_off {
                        pkt.buf
                            .copy_within(pkt.offset..pkt.offset + pkt.len, data_off);
                    }
                    // SAFETY: as above, this worker owns the frame.
                    unsafe { s.umem.data_mut(d).cursor().set_pos(pkt.len) };
                    match s.queues.iter_mut().find(|pq| pq.port == port) {
                        Some(pq) => pq.stage.push(*d),
                        None => {
                            // The pipeline chose a port this worker has no socket on
                            // (a route to an interface not served): count and recycle.
                            self.counters.drop(DropReason::NoRoute);
                            s.free.push(*d);
                        }
                    }
                }
                // The classifier passes the kernel's traffic before it reaches us; what
                // still turns out to be the kernel's here (TTL expired after decap, a
                // Local route, a next hop gone unresolved, too big, a route podfwd's
                // FIB does not have yet) is handed to it, never lost: the kernel queues
                // it for ARP, answers ICMP, fragments, or routes it.
                Verdict::ToKernel => {
                    let handed = hand_off(self.handoff.as_deref(), pkt, &mut self.counters);
                    if !handed {
                        self.counters.drop(DropReason::HandoffFailed);
                    }
                    s.free.push(*d)
                }
                Verdict::Drop(
                    r @ (DropReason::NeighbourUnresolved
                    | DropReason::Mtu
                    | DropReason::NoRoute
                    | DropReason::Fragment),
                ) => {
                    if r == DropReason::NeighbourUnresolved {
                        // The pipeline leaves `offset` at the (inner) Ethernet header.
                        let ip = pkt.offset + 30;
                        if let Some(b) = pkt.buf.get(ip..ip + 4) {
                            self.misses
                                .push(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        }
                    }
                    if hand_off(self.handoff.as_deref(), pkt, &mut self.counters) {
                        self.counters.undrop(r);
                    }
                    s.free.push(*d)
                }
                Verdict::Drop(_) => s.free.push(*d),
            }
        }
        pkts.clear();
        for pq in s.queues.iter_mut() {
            if pq.stage.is_empty() {
                continue;
            }
            let room = pq.tx.nb_free(pq.stage.len() as u32) as usize;
            let k = room.min(pq.stage.len());
            // SAFETY: the staged frames belong to this UMEM and are owned by us.
            let sent = if k > 0 {
                unsafe { pq.tx.produce(&pq.stage[..k]) }
            } else {
                0
            };
            self.counters.tx += sent as u64;
            if sent < pq.stage.len() {
                // veth pushes back when the peer's ring is full: drop and count.
                self.counters.ring_full += 1;
                s.free.extend_from_slice(&pq.stage[sent..]);
            }
            pq.stage.clear();
            if sent > 0 {
                self.counters.wakeups += kick_tx(&mut pq.tx, s.settings.tx_ring_size)?;
            }
        }
        Ok(n)
    }
}

/// Sleeps in `poll()` on the sockets `pollfds` until one is readable, or 100 ms pass (so
/// the caller sees its stop flag), when a loop over the rings found no work. An
/// interrupted `poll` is not an error. Public for the bench's bare forwarder
/// (tools/bench/limit.rs), which must wait as the worker does.
pub fn wait_idle(pollfds: &mut [libc::pollfd]) -> io::Result<()> {
    for p in pollfds.iter_mut() {
        p.revents = 0;
    }
    // SAFETY: `pollfds` is a valid array of `len` pollfd structs for the call.
    let r = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, 100) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Kicks the kernel to send what the tx ring `tx` (of `ring_size` slots) holds; returns
/// the kicks (`sendto`) made. In copy mode one kick sends at most 32 frames (the kernel's
/// TX_BATCH_SIZE in __xsk_generic_xmit): it kicks until the ring is drained, or the kernel
/// stops taking frames (veth back-pressure), or 16 kicks. Public for the bench's bare
/// forwarder (tools/bench/limit.rs), which must kick as the worker does.
// Always inlined: the worker's per-batch tx path stays as it was, inside its loop.
#[inline(always)]
pub fn kick_tx(tx: &mut TxQueue, ring_size: u32) -> io::Result<u64> {
    let mut kicks = 0;
    while tx.needs_wakeup() && kicks < 16 {
        let before = tx.nb_free_exact();
        tx.wakeup()?;
        kicks += 1;
        let after = tx.nb_free_exact();
        if after >= ring_size || after == before {
            break;
        }
    }
    Ok(kicks)
}

/// Hands the IPv4 packet of `pkt` (an Ethernet frame; the inner one after decap) to
/// the kernel; true if the kernel took it (counted as `handoff`).
#[cold]
#[inline(never)]
fn hand_off(handoff: Option<&Handoff>, pkt: &mut Packet<'_>, ctrs: &mut Counters) -> bool {
    let Some(h) = handoff else {
        return false;
    };
    let Some(end) = pkt.offset.checked_add(pkt.len) else {
        return false;
    };
    let Some(frame) = pkt.buf.get_mut(pkt.offset..end) else {
        return false;
    };
    if frame.len() <= crate::wire::ethernet::HEADER_LEN {
        return false;
    }
    // A veth sender may have left the TCP/UDP checksum partial; the kernel (conntrack,
    // local delivery) must see a complete one.
    if crate::partial_csum::complete(frame) {
        ctrs.checksums_completed += 1;
    }
    match h.send(&frame[crate::wire::ethernet::HEADER_LEN..]) {
        Ok(()) => {
            ctrs.handoff += 1;
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_are_read_once_and_overflow_keeps_the_newest() {
        let m = Misses::default();
        let mut seen = 0;
        let mut out = Vec::new();
        m.push(1);
        m.push(2);
        m.drain(&mut seen, &mut out);
        assert_eq!(out, vec![1, 2]);
        out.clear();
        m.drain(&mut seen, &mut out);
        assert!(out.is_empty());
        for i in 0..(MISS_SLOTS as u32 + 10) {
            m.push(100 + i);
        }
        m.drain(&mut seen, &mut out);
        assert_eq!(out.len(), MISS_SLOTS);
        assert_eq!(out[0], 110);
        assert_eq!(*out.last().unwrap(), 100 + MISS_SLOTS as u32 + 9);
    }
}
