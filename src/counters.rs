//! Per-worker counters: what happened to every frame, and why frames were dropped.
//!
//! Each worker owns one [`Counters`] and increments plain integers (no atomics, no
//! sharing on the hot path); the control thread aggregates snapshots.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the data path dropped a frame. `Copy`, counted per worker, never formatted on the
/// hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Ethernet or IPv4 header truncated or invalid (version, IHL, total length).
    Malformed = 0,
    /// IPv4 header checksum does not verify.
    BadChecksum,
    /// EtherType is not IPv4.
    NotIpv4,
    /// No route for the destination.
    NoRoute,
    /// The route's next hop has no known MAC address yet.
    NeighbourUnresolved,
    /// The frame (after encapsulation) exceeds the egress MTU.
    Mtu,
    /// The route is a blackhole.
    Blackhole,
    /// VXLAN to our port with an invalid outer UDP or VXLAN header (no I flag, short).
    BadVxlan,
    /// VXLAN with a VNI that is not ours.
    BadVni,
    /// VXLAN from a source address that is no known peer's node IP.
    UnknownVtep,
    /// VXLAN whose inner frame is not addressed to our VTEP MAC (the kernel drops these too).
    WrongInnerMac,
    /// A fragmented VXLAN packet (podfwd does not reassemble).
    Fragment,
    /// The backend lent a frame without enough headroom to encapsulate.
    NoHeadroom,
    /// A frame for the kernel's slow path could not be handed to it (the hand-off
    /// device refused the write).
    HandoffFailed,
}

impl DropReason {
    pub const COUNT: usize = 14;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::NotIpv4,
        DropReason::NoRoute,
        DropReason::NeighbourUnresolved,
        DropReason::Mtu,
        DropReason::Blackhole,
        DropReason::BadVxlan,
        DropReason::BadVni,
        DropReason::UnknownVtep,
        DropReason::WrongInnerMac,
        DropReason::Fragment,
        DropReason::NoHeadroom,
        DropReason::HandoffFailed,
    ];

    /// A stable snake_case name for stats output.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::NoRoute => "no_route",
            DropReason::NeighbourUnresolved => "neighbour_unresolved",
            DropReason::Mtu => "mtu",
            DropReason::Blackhole => "blackhole",
            DropReason::BadVxlan => "bad_vxlan",
            DropReason::BadVni => "bad_vni",
            DropReason::UnknownVtep => "unknown_vtep",
            DropReason::WrongInnerMac => "wrong_inner_mac",
            DropReason::Fragment => "fragment",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::HandoffFailed => "handoff_failed",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters of one worker. Cache-line aligned so workers never share a line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[repr(align(64))]
pub struct Counters {
    /// Frames handed to the pipeline.
    pub rx: u64,
    /// Frames forwarded with a MAC rewrite (host-gw or to a local pod), not counting encap.
    pub forwarded: u64,
    /// Frames encapsulated in VXLAN.
    pub encapsulated: u64,
    /// Frames decapsulated from VXLAN (and then forwarded).
    pub decapsulated: u64,
    /// Frames handed to the kernel (TTL expired, local destination).
    pub to_kernel: u64,
    /// Frames sent by the backend.
    pub tx: u64,
    /// Batches processed.
    pub batches: u64,
    /// Times the backend found an egress ring full.
    pub ring_full: u64,
    /// TUN backend: TCP super-packets read from the TUN (TSO) and cut into segments.
    pub tso_in: u64,
    /// TUN backend: super-packets of merged TCP segments written to the TUN (GRO).
    pub gro_out: u64,
    /// AF_XDP backend: frames handed back to the kernel's slow path (the pipeline's
    /// `to_kernel` frames, and frames it could not finish: next hop unresolved, too big,
    /// no route in podfwd's FIB); see `crate::handoff`.
    pub handoff: u64,
    /// AF_XDP backend: kicks of the kernel to send (`sendto` on a TX ring that needs
    /// a wakeup), counted per batch.
    pub wakeups: u64,
    /// Bytes of the frames handed to the pipeline (Ethernet header on), summed per batch.
    pub rx_bytes: u64,
    /// Bytes of the `forwarded` frames as they leave (Ethernet padding dropped).
    pub forwarded_bytes: u64,
    /// Bytes of the `encapsulated` frames as they leave (outer headers included).
    pub encapsulated_bytes: u64,
    /// Bytes of the inner frames of the `decapsulated` ones.
    pub decapsulated_bytes: u64,
    /// Frames whose TCP/UDP checksum a veth sender left partial (tx checksum offload)
    /// and podfwd completed before sending them on; see `crate::partial_csum`.
    pub checksums_completed: u64,
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
}

impl Counters {
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }

    /// Takes back a drop the pipeline counted for a frame the backend then handed to
    /// the kernel instead.
    #[inline]
    pub fn undrop(&mut self, r: DropReason) {
        self.drops[r as usize] = self.drops[r as usize].saturating_sub(1);
    }

    pub fn drops_of(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another worker's counters into these.
    pub fn merge(&mut self, o: &Counters) {
        self.rx += o.rx;
        self.forwarded += o.forwarded;
        self.encapsulated += o.encapsulated;
        self.decapsulated += o.decapsulated;
        self.to_kernel += o.to_kernel;
        self.tx += o.tx;
        self.batches += o.batches;
        self.ring_full += o.ring_full;
        self.tso_in += o.tso_in;
        self.gro_out += o.gro_out;
        self.handoff += o.handoff;
        self.wakeups += o.wakeups;
        self.rx_bytes += o.rx_bytes;
        self.forwarded_bytes += o.forwarded_bytes;
        self.encapsulated_bytes += o.encapsulated_bytes;
        self.decapsulated_bytes += o.decapsulated_bytes;
        self.checksums_completed += o.checksums_completed;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }
}

/// The number of `u64` fields in [`Counters`], in the order of [`Counters::fields`].
const FIELDS: usize = SCALARS + DropReason::COUNT;
/// The fields of [`Counters`] before its drops.
const SCALARS: usize = 17;

impl Counters {
    fn fields(&self) -> [u64; FIELDS] {
        let mut f = [0u64; FIELDS];
        f[..SCALARS].copy_from_slice(&[
            self.rx,
            self.forwarded,
            self.encapsulated,
            self.decapsulated,
            self.to_kernel,
            self.tx,
            self.batches,
            self.ring_full,
            self.tso_in,
            self.gro_out,
            self.handoff,
            self.wakeups,
            self.rx_bytes,
            self.forwarded_bytes,
            self.encapsulated_bytes,
            self.decapsulated_bytes,
            self.checksums_completed,
        ]);
        f[SCALARS..].copy_from_slice(&self.drops);
        f
    }

    fn from_fields(f: &[u64; FIELDS]) -> Counters {
        let mut drops = [0u64; DropReason::COUNT];
        drops.copy_from_slice(&f[SCALARS..]);
        Counters {
            rx: f[0],
            forwarded: f[1],
            encapsulated: f[2],
            decapsulated: f[3],
            to_kernel: f[4],
            tx: f[5],
            batches: f[6],
            ring_full: f[7],
            tso_in: f[8],
            gro_out: f[9],
            handoff: f[10],
            wakeups: f[11],
            rx_bytes: f[12],
            forwarded_bytes: f[13],
            encapsulated_bytes: f[14],
            decapsulated_bytes: f[15],
            checksums_completed: f[16],
            drops,
        }
    }

    /// The counters as (name, value) pairs, drops as `drop_<reason>`, for stats output.
    pub fn named(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = [
            ("rx", self.rx),
            ("forwarded", self.forwarded),
            ("encapsulated", self.encapsulated),
            ("decapsulated", self.decapsulated),
            ("to_kernel", self.to_kernel),
            ("tx", self.tx),
            ("batches", self.batches),
            ("ring_full", self.ring_full),
            ("tso_in", self.tso_in),
            ("gro_out", self.gro_out),
            ("handoff", self.handoff),
            ("wakeups", self.wakeups),
            ("rx_bytes", self.rx_bytes),
            ("forwarded_bytes", self.forwarded_bytes),
            ("encapsulated_bytes", self.encapsulated_bytes),
            ("decapsulated_bytes", self.decapsulated_bytes),
            ("checksums_completed", self.checksums_completed),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
        for r in DropReason::ALL {
            out.push((format!("drop_{}", r.name()), self.drops_of(r)));
        }
        out
    }
}

/// A worker's counters as the control thread sees them. The worker owns the only writer
/// and publishes its plain [`Counters`] with relaxed stores (plain moves on x86, no
/// read-modify-write), at most once per batch; readers get a recent, per-field
/// consistent snapshot. Exactness across fields is not needed for rates and totals.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct SharedCounters {
    fields: [AtomicU64; FIELDS],
}

impl SharedCounters {
    /// Publishes the worker's current totals (called by the owning worker only).
    pub fn publish(&self, c: &Counters) {
        for (a, v) in self.fields.iter().zip(c.fields()) {
            // Relaxed: a statistics mirror; no other memory is published through it.
            a.store(v, Ordering::Relaxed);
        }
    }

    /// A snapshot of the last published totals.
    pub fn snapshot(&self) -> Counters {
        let mut f = [0u64; FIELDS];
        for (v, a) in f.iter_mut().zip(self.fields.iter()) {
            // Relaxed: see `publish`.
            *v = a.load(Ordering::Relaxed);
        }
        Counters::from_fields(&f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_in_index_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn shared_counters_round_trip_every_field() {
        let mut c = Counters::default();
        for (i, v) in [
            &mut c.rx,
            &mut c.forwarded,
            &mut c.encapsulated,
            &mut c.decapsulated,
            &mut c.to_kernel,
            &mut c.tx,
            &mut c.batches,
            &mut c.ring_full,
            &mut c.tso_in,
            &mut c.gro_out,
            &mut c.handoff,
            &mut c.wakeups,
            &mut c.rx_bytes,
            &mut c.forwarded_bytes,
            &mut c.encapsulated_bytes,
            &mut c.decapsulated_bytes,
            &mut c.checksums_completed,
        ]
        .into_iter()
        .enumerate()
        {
            *v = i as u64 + 1;
        }
        for (i, r) in DropReason::ALL.iter().enumerate() {
            c.drops[*r as usize] = 100 + i as u64;
        }
        let s = SharedCounters::default();
        s.publish(&c);
        assert_eq!(s.snapshot(), c);
        let named = c.named();
        assert_eq!(named[0], ("rx".to_string(), 1));
        assert_eq!(
            named.last().unwrap(),
            &("drop_handoff_failed".to_string(), 113)
        );
    }

    #[test]
    fn merge_adds_every_field() {
        let mut a = Counters {
            rx: 1,
            tx: 2,
            ..Default::default()
        };
        a.drop(DropReason::Mtu);
        let mut b = a.clone();
        b.drop(DropReason::NoRoute);
        a.merge(&b);
        assert_eq!(a.rx, 2);
        assert_eq!(a.tx, 4);
        assert_eq!(a.drops_of(DropReason::Mtu), 2);
        assert_eq!(a.drops_of(DropReason::NoRoute), 1);
        assert_eq!(a.total_drops(), 3);
    }
}
