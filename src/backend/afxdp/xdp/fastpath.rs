//! The in-kernel fast path's maps (backend `xdp`; mirrors `bpf/podfwd_xdp.h`): one set
//! per podfwd instance, shared by the programs of all its interfaces, filled by the one
//! control plane from the same FIB the pipeline reads.
//!
//! | map | type | key | value |
//! |-----|------|-----|-------|
//! | `fib` | LPM_TRIE | `{u32 prefixlen; be32 addr}` | `u32` adjacency (next-hop) id |
//! | `adjacencies` | ARRAY | `u32` id | `struct podfwd_adjacency`, 80 bytes |
//! | `tx_ports` | DEVMAP | `u32` FIB port id | `u32` ifindex |
//! | `fwd_stats` | PERCPU_ARRAY | `u32` drop reason / fast-path count | `u64` |
//!
//! [`FastPath::sync`] copies the FIB in the pipeline's publish order: adjacencies first,
//! then new and changed LPM entries, then stale entries removed, then unused adjacencies
//! cleared, so a program run never follows a route to an adjacency not yet written.

use super::maps::ROUTE_KEY_SIZE;
use super::XdpError;
use crate::counters::DropReason;
use crate::lpm::Ipv4Net;
use crate::nexthop::{NextHopId, PortId};
use crate::pipeline::{Adjacency, FibWriter};
use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use std::collections::BTreeMap;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Mutex;

pub(super) const MAP_FIB: &str = "fib";
pub(super) const MAP_ADJACENCIES: &str = "adjacencies";
pub(super) const MAP_TX_PORTS: &str = "tx_ports";
pub(super) const MAP_FWD_STATS: &str = "fwd_stats";

/// `PODFWD_MAX_FIB_ROUTES`.
pub const MAX_FIB_ROUTES: u32 = 65536;
/// `PODFWD_MAX_ADJACENCIES`.
pub const MAX_ADJACENCIES: u32 = 16384;
/// `PODFWD_MAX_TX_PORTS`.
pub const MAX_TX_PORTS: u32 = 256;
/// `struct podfwd_adjacency`.
pub const ADJACENCY_SIZE: usize = 80;

const ADJ_REWRITE: u32 = 1;
const ADJ_ENCAP: u32 = 2;
const ADJ_UNRESOLVED: u32 = 3;
const ADJ_LOCAL: u32 = 4;
const ADJ_BLACKHOLE: u32 = 5;

/// What the fast path counts besides the drop reasons (`enum podfwd_fwd_stat`), after
/// the drop reasons' slots 0..16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwdStat {
    Forwarded = 16,
    Encapsulated,
    Decapsulated,
    ForwardedBytes,
    EncapsulatedBytes,
    DecapsulatedBytes,
    /// Owned, not finished here: to the queue's AF_XDP socket, else the kernel.
    Fallback,
    /// Dropped with one of the pipeline's reasons.
    Dropped,
    /// A partial TCP/UDP checksum (a veth sender's offload) completed by the program.
    ChecksumsCompleted,
}

impl FwdStat {
    pub const ALL: [FwdStat; 9] = [
        FwdStat::Forwarded,
        FwdStat::Encapsulated,
        FwdStat::Decapsulated,
        FwdStat::ForwardedBytes,
        FwdStat::EncapsulatedBytes,
        FwdStat::DecapsulatedBytes,
        FwdStat::Fallback,
        FwdStat::Dropped,
        FwdStat::ChecksumsCompleted,
    ];
    /// Entries of `fwd_stats` (`PODFWD_FWD__MAX`).
    pub const SLOTS: u32 = 25;

    pub const fn name(self) -> &'static str {
        match self {
            FwdStat::Forwarded => "forwarded",
            FwdStat::Encapsulated => "encapsulated",
            FwdStat::Decapsulated => "decapsulated",
            FwdStat::ForwardedBytes => "forwarded_bytes",
            FwdStat::EncapsulatedBytes => "encapsulated_bytes",
            FwdStat::DecapsulatedBytes => "decapsulated_bytes",
            FwdStat::Fallback => "fallback",
            FwdStat::Dropped => "dropped",
            FwdStat::ChecksumsCompleted => "checksums_completed",
        }
    }
}

/// The fast path's counters, summed over CPUs (`per_cpu` keeps each CPU's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastPathStats {
    /// `fwd_stats` slots, summed over CPUs.
    pub total: Vec<u64>,
    /// `fwd_stats` slots per CPU.
    pub per_cpu: Vec<Vec<u64>>,
}

impl FastPathStats {
    pub fn get(&self, s: FwdStat) -> u64 {
        self.total.get(s as usize).copied().unwrap_or(0)
    }

    pub fn dropped(&self, r: DropReason) -> u64 {
        self.total.get(r as usize).copied().unwrap_or(0)
    }
}

/// `struct podfwd_adjacency` for an adjacency of the pipeline's FIB.
pub fn adjacency_bytes(a: &Adjacency) -> [u8; ADJACENCY_SIZE] {
    let mut b = [0u8; ADJACENCY_SIZE];
    let (kind, port, ip_sum, mtu) = match a {
        Adjacency::Rewrite { port, macs, mtu } => {
            b[14..26].copy_from_slice(macs);
            (ADJ_REWRITE, u32::from(*port), 0, *mtu)
        }
        Adjacency::Encap(e) => {
            b[14..26].copy_from_slice(&e.inner_macs);
            b[26..76].copy_from_slice(&e.outer);
            (ADJ_ENCAP, u32::from(e.port), e.ip_sum, e.mtu)
        }
        Adjacency::Unresolved => (ADJ_UNRESOLVED, 0, 0, 0),
        Adjacency::Local => (ADJ_LOCAL, 0, 0, 0),
        Adjacency::Blackhole => (ADJ_BLACKHOLE, 0, 0, 0),
    };
    b[0..4].copy_from_slice(&kind.to_ne_bytes());
    b[4..8].copy_from_slice(&port.to_ne_bytes());
    b[8..12].copy_from_slice(&ip_sum.to_ne_bytes());
    b[12..14].copy_from_slice(&mtu.to_ne_bytes());
    b
}

fn fib_key(p: Ipv4Net) -> [u8; ROUTE_KEY_SIZE] {
    let mut k = [0u8; ROUTE_KEY_SIZE];
    k[..4].copy_from_slice(&u32::from(p.prefix_len()).to_ne_bytes());
    k[4..].copy_from_slice(&p.network().octets());
    k
}

fn map_error(action: String, e: libbpf_rs::Error) -> XdpError {
    if e.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        return XdpError::NoPrivileges {
            action,
            iface: String::new(),
        };
    }
    XdpError::Bpf {
        action,
        iface: String::new(),
        source: e,
    }
}

/// What the maps hold, to update only what changed.
#[derive(Default)]
struct Written {
    routes: BTreeMap<[u8; ROUTE_KEY_SIZE], NextHopId>,
    adjacencies: Vec<[u8; ADJACENCY_SIZE]>,
}

/// The shared forwarding maps of one podfwd instance.
pub struct FastPath {
    fib: MapHandle,
    adjacencies: MapHandle,
    tx_ports: MapHandle,
    stats: MapHandle,
    written: Mutex<Written>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath").finish_non_exhaustive()
    }
}

impl FastPath {
    /// Creates the maps (empty: every owned frame falls back until [`FastPath::sync`]).
    pub fn create() -> Result<FastPath, XdpError> {
        let create = |ty, name: &str, key, value, entries, flags| {
            let opts = libbpf_sys::bpf_map_create_opts {
                sz: mem::size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
                map_flags: flags,
                ..Default::default()
            };
            MapHandle::create(ty, Some(name), key, value, entries, &opts)
                .map_err(|e| map_error(format!("creating the fast path's map {name:?}"), e))
        };
        Ok(FastPath {
            fib: create(
                MapType::LpmTrie,
                MAP_FIB,
                ROUTE_KEY_SIZE as u32,
                4,
                MAX_FIB_ROUTES,
                libbpf_sys::BPF_F_NO_PREALLOC,
            )?,
            adjacencies: create(
                MapType::Array,
                MAP_ADJACENCIES,
                4,
                ADJACENCY_SIZE as u32,
                MAX_ADJACENCIES,
                0,
            )?,
            tx_ports: create(MapType::Devmap, MAP_TX_PORTS, 4, 4, MAX_TX_PORTS, 0)?,
            stats: create(MapType::PercpuArray, MAP_FWD_STATS, 4, 8, FwdStat::SLOTS, 0)?,
            written: Mutex::new(Written::default()),
        })
    }

    /// The maps a program loaded for the fast path reuses (`load_object`).
    pub(super) fn shared_fds(&self) -> [(&'static str, RawFd); 4] {
        [
            (MAP_FIB, self.fib.as_fd().as_raw_fd()),
            (MAP_ADJACENCIES, self.adjacencies.as_fd().as_raw_fd()),
            (MAP_TX_PORTS, self.tx_ports.as_fd().as_raw_fd()),
            (MAP_FWD_STATS, self.stats.as_fd().as_raw_fd()),
        ]
    }

    /// Copies the FIB (routes, host routes, adjacencies) into the maps, live: see the
    /// module documentation for the order. Known VTEPs are each classifier's `vteps`
    /// ([`super::Classifier::set_vteps`] with [`crate::pipeline::FibSnapshot::vteps`]).
    pub fn sync(&self, fib: &FibWriter) -> Result<(), XdpError> {
        let snap = fib.snapshot();
        let entries = fib.lpm_entries();
        let adjs: Vec<[u8; ADJACENCY_SIZE]> =
            snap.adjacencies().iter().map(adjacency_bytes).collect();
        if adjs.len() > MAX_ADJACENCIES as usize {
            return Err(XdpError::TooManyEntries {
                map: MAP_ADJACENCIES,
                count: adjs.len(),
                max: MAX_ADJACENCIES,
            });
        }
        if entries.len() > MAX_FIB_ROUTES as usize {
            return Err(XdpError::TooManyEntries {
                map: MAP_FIB,
                count: entries.len(),
                max: MAX_FIB_ROUTES,
            });
        }
        let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
        for (id, bytes) in adjs.iter().enumerate() {
            if w.adjacencies.get(id) == Some(bytes) {
                continue;
            }
            self.adjacencies
                .update(&(id as u32).to_ne_bytes(), bytes, MapFlags::ANY)
                .map_err(|e| map_error(format!("writing adjacency {id}"), e))?;
        }
        let wanted: BTreeMap<[u8; ROUTE_KEY_SIZE], NextHopId> =
            entries.iter().map(|(p, id)| (fib_key(*p), *id)).collect();
        for (key, id) in &wanted {
            if w.routes.get(key) == Some(id) {
                continue;
            }
            self.fib
                .update(key, &id.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| {
                    let prefix = entries
                        .iter()
                        .find(|(p, _)| fib_key(*p) == *key)
                        .map(|(p, _)| p.to_string())
                        .unwrap_or_default();
                    map_error(format!("adding fast-path route {prefix} -> {id}"), e)
                })?;
        }
        for key in w.routes.keys().filter(|k| !wanted.contains_key(*k)) {
            match self.fib.delete(key) {
                Ok(()) => {}
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => return Err(map_error("removing a stale fast-path route".into(), e)),
            }
        }
        let none = [0u8; ADJACENCY_SIZE];
        for id in adjs.len()..w.adjacencies.len() {
            self.adjacencies
                .update(&(id as u32).to_ne_bytes(), &none, MapFlags::ANY)
                .map_err(|e| map_error(format!("clearing adjacency {id}"), e))?;
        }
        w.adjacencies = adjs;
        w.routes = wanted;
        Ok(())
    }

    /// Registers the egress interfaces: FIB port id -> ifindex (a port without an entry
    /// falls back to the kernel). The interfaces must exist in the calling thread's
    /// network namespace.
    pub fn set_ports(&self, ports: &[(PortId, u32)]) -> Result<(), XdpError> {
        for (port, ifindex) in ports {
            if u32::from(*port) >= MAX_TX_PORTS {
                return Err(XdpError::TooManyEntries {
                    map: MAP_TX_PORTS,
                    count: usize::from(*port) + 1,
                    max: MAX_TX_PORTS,
                });
            }
            self.tx_ports
                .update(
                    &u32::from(*port).to_ne_bytes(),
                    &ifindex.to_ne_bytes(),
                    MapFlags::ANY,
                )
                .map_err(|e| {
                    map_error(
                        format!("registering ifindex {ifindex} as egress port {port}"),
                        e,
                    )
                })?;
        }
        Ok(())
    }

    /// The adjacency id the `fib` map holds for `addr` (longest match), for tests and
    /// `podfwd routes`-style checks.
    pub fn lookup(&self, addr: Ipv4Addr) -> Result<Option<NextHopId>, XdpError> {
        let key = fib_key(Ipv4Net::new(addr, 32).expect("/32 is valid"));
        let v = self
            .fib
            .lookup(&key, MapFlags::ANY)
            .map_err(|e| map_error(format!("looking up {addr}"), e))?;
        Ok(v.and_then(|b| {
            b.get(..4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        }))
    }

    /// Reads the per-CPU counters.
    pub fn stats(&self) -> Result<FastPathStats, XdpError> {
        let mut out = FastPathStats {
            total: vec![0; FwdStat::SLOTS as usize],
            per_cpu: Vec::new(),
        };
        for slot in 0..FwdStat::SLOTS {
            let values = self
                .stats
                .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| map_error("reading the fast path's counters".into(), e))?
                .unwrap_or_default();
            if out.per_cpu.len() < values.len() {
                out.per_cpu
                    .resize(values.len(), vec![0; FwdStat::SLOTS as usize]);
            }
            for (cpu, v) in values.iter().enumerate() {
                let n = v
                    .get(..8)
                    .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
                    .unwrap_or(0);
                out.per_cpu[cpu][slot as usize] = n;
                out.total[slot as usize] += n;
            }
        }
        Ok(out)
    }
}
