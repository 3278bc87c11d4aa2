//! The forwarding information base: routes (in the LPM) and adjacencies (what a next-hop
//! id means on the wire, with its rewrite data precomputed).
//!
//! One [`FibWriter`] (the control thread) owns the routes and the neighbour MACs; workers
//! hold cheap [`Fib`] clones. Readers never lock: the LPM is read under an epoch pin, the
//! adjacency table is an immutable [`FibSnapshot`] swapped atomically (arc-swap) on change.
//!
//! Next-hop ids are stable: one per distinct next hop (a gateway, a VXLAN peer, a local
//! pod), so a MAC change republishes the small adjacency table without touching the LPM.
//! A new adjacency is published before the LPM entry that points at it; a freed id is
//! reused only after an epoch grace period, so no reader can follow a stale LPM entry to
//! a recycled id.

use super::{EncapTemplate, NodeParams};
use crate::lpm::{self, Ipv4Net, LpmConfig, LpmError, LpmReader, LpmWriter};
use crate::nexthop::{NextHop, NextHopId, PortId};
use crate::wire::MacAddr;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

/// What a next-hop id means to the data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjacency {
    /// Rewrite dst/src MAC (`macs` = dst ++ src) and transmit on `port` if the IPv4 packet
    /// fits `mtu`.
    Rewrite {
        port: PortId,
        macs: [u8; 12],
        mtu: u16,
    },
    /// Encapsulate in VXLAN.
    Encap(EncapTemplate),
    /// The next hop's MAC is not known yet.
    Unresolved,
    /// Deliver to the node's own stack.
    Local,
    /// Drop.
    Blackhole,
}

/// An immutable version of the adjacency table and the set of known VTEPs.
#[derive(Debug, Default)]
pub struct FibSnapshot {
    adjacencies: Vec<Adjacency>,
    /// Node IPs of known peers (sorted): decapsulation accepts VXLAN only from these.
    vteps: Vec<u32>,
}

impl FibSnapshot {
    #[inline]
    pub fn adjacency(&self, id: NextHopId) -> Option<&Adjacency> {
        self.adjacencies.get(id as usize)
    }

    #[inline]
    pub fn is_known_vtep(&self, ip: u32) -> bool {
        self.vteps.binary_search(&ip).is_ok()
    }

    /// The adjacency table, indexed by next-hop id (the XDP fast path's copy).
    pub fn adjacencies(&self) -> &[Adjacency] {
        &self.adjacencies
    }

    /// The known VTEPs (peer node addresses), sorted.
    pub fn vteps(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.vteps.iter().map(|ip| Ipv4Addr::from(*ip))
    }
}

/// A worker's read handle on the FIB. Cheap to clone.
#[derive(Clone)]
pub struct Fib {
    pub(super) lpm: LpmReader,
    pub(super) snapshot: Arc<ArcSwap<FibSnapshot>>,
}

impl Fib {
    /// Looks one address up (control path and tests; workers use batches).
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<Adjacency> {
        let id = self.lpm.pin().lookup(u32::from(addr))?;
        self.snapshot.load().adjacency(id).copied()
    }
}

/// A port podfwd serves, as the data path needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    pub mac: MacAddr,
    pub mtu: u16,
}

/// The FIB's fixed parameters.
#[derive(Debug, Clone)]
pub struct FibParams {
    pub node: NodeParams,
    /// The ports, indexed by `PortId`.
    pub ports: Vec<PortInfo>,
    /// The uplink's L2 subnet: VXLAN peers inside it are reached directly, others through
    /// `gateway`. `None`: every peer is taken as on-link.
    pub uplink_subnet: Option<Ipv4Net>,
    /// The underlay router.
    pub gateway: Option<Ipv4Addr>,
    pub lpm: LpmConfig,
}

/// Errors of the control path.
#[derive(Debug, thiserror::Error)]
pub enum FibError {
    #[error(
        "route {prefix} -> {next_hop}: port {port} does not exist (the node has {ports} ports)"
    )]
    NoSuchPort {
        prefix: Ipv4Net,
        next_hop: NextHop,
        port: PortId,
        ports: usize,
    },
    #[error("route {prefix}: {source}")]
    Lpm {
        prefix: Ipv4Net,
        #[source]
        source: LpmError,
    },
    #[error("too many distinct next hops (the limit is {0})")]
    TooManyNextHops(usize),
}

/// What an adjacency id stands for, on the control path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AdjKey {
    /// A configured next hop.
    Route(NextHopKey),
    /// A /32 host route to a resolved neighbour inside a connected subnet.
    Host { port: PortId, ip: Ipv4Addr },
}

/// `NextHop` as a hash key (`MacAddr` and `Ipv4Addr` are Hash; `NextHop` derives Eq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NextHopKey(NextHopKind);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum NextHopKind {
    HostGw(Ipv4Addr, PortId),
    Connected(PortId),
    Vxlan(Ipv4Addr, MacAddr),
    Local,
    Drop,
}

impl From<NextHop> for NextHopKey {
    fn from(n: NextHop) -> Self {
        NextHopKey(match n {
            NextHop::HostGw { gateway, port } => NextHopKind::HostGw(gateway, port),
            NextHop::Connected { port } => NextHopKind::Connected(port),
            NextHop::Vxlan { node_ip, vtep_mac } => NextHopKind::Vxlan(node_ip, vtep_mac),
            NextHop::Local => NextHopKind::Local,
            NextHop::Drop => NextHopKind::Drop,
        })
    }
}

/// The largest next-hop id the LPM can store (24 bits).
const MAX_NEXT_HOPS: usize = 1 << 24;

/// The single writer of the FIB.
pub struct FibWriter {
    params: FibParams,
    lpm: LpmWriter,
    snapshot: Arc<ArcSwap<FibSnapshot>>,
    routes: BTreeMap<Ipv4Net, NextHop>,
    /// Known neighbour MACs by (port, IP).
    neighbours: HashMap<(PortId, Ipv4Addr), MacAddr>,
    /// Id of each live adjacency key, with the number of LPM entries using it.
    ids: HashMap<AdjKey, (NextHopId, usize)>,
    /// Key of each id (None: free or in its grace period).
    keys: Vec<Option<AdjKey>>,
    /// Ids whose grace period has passed.
    free: Arc<Mutex<Vec<NextHopId>>>,
    /// Node addresses accepted as VXLAN sources besides the VXLAN next hops: every
    /// peer's, whatever its egress mode (auto sends host-gw to on-link peers, which may
    /// still send VXLAN, as a node without DirectRouting does).
    extra_vteps: Vec<u32>,
    /// Counts publications: a copy of the FIB (the XDP fast path's maps) is current
    /// while it has seen this number.
    generation: u64,
}

impl FibWriter {
    /// Creates an empty FIB and its first reader.
    pub fn new(params: FibParams) -> (FibWriter, Fib) {
        let (lpm, reader) = lpm::new(params.lpm);
        let snapshot = Arc::new(ArcSwap::from_pointee(FibSnapshot::default()));
        let fib = Fib {
            lpm: reader,
            snapshot: snapshot.clone(),
        };
        let w = FibWriter {
            params,
            lpm,
            snapshot,
            routes: BTreeMap::new(),
            neighbours: HashMap::new(),
            ids: HashMap::new(),
            keys: Vec::new(),
            free: Arc::new(Mutex::new(Vec::new())),
            extra_vteps: Vec::new(),
            generation: 0,
        };
        (w, fib)
    }

    pub fn params(&self) -> &FibParams {
        &self.params
    }

    /// The number of publications so far: changes with every change of the routes,
    /// adjacencies or known VTEPs.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The adjacency table and known VTEPs as last published.
    pub fn snapshot(&self) -> Arc<FibSnapshot> {
        self.snapshot.load_full()
    }

    /// Every LPM entry with its next-hop id: the configured routes and the /32 host
    /// routes of resolved neighbours in connected subnets (the XDP fast path's copy).
    pub fn lpm_entries(&self) -> Vec<(Ipv4Net, NextHopId)> {
        let mut out: Vec<(Ipv4Net, NextHopId)> = self
            .routes
            .iter()
            .filter_map(|(p, nh)| {
                self.ids
                    .get(&AdjKey::Route((*nh).into()))
                    .map(|(id, _)| (*p, *id))
            })
            .collect();
        out.extend(self.ids.iter().filter_map(|(k, (id, _))| match *k {
            AdjKey::Host { ip, .. } => Some((Ipv4Net::new(ip, 32).expect("/32 is valid"), *id)),
            AdjKey::Route(_) => None,
        }));
        out.sort();
        out
    }

    /// The configured routes.
    pub fn routes(&self) -> impl Iterator<Item = (&Ipv4Net, &NextHop)> {
        self.routes.iter()
    }

    /// Adds or replaces a route.
    pub fn set_route(&mut self, prefix: Ipv4Net, next_hop: NextHop) -> Result<(), FibError> {
        let prefix = prefix.trunc();
        if let NextHop::HostGw { port, .. } | NextHop::Connected { port } = next_hop {
            if usize::from(port) >= self.params.ports.len() {
                return Err(FibError::NoSuchPort {
                    prefix,
                    next_hop,
                    port,
                    ports: self.params.ports.len(),
                });
            }
        }
        let id = self.acquire(AdjKey::Route(next_hop.into()))?;
        // Publish the adjacency before the LPM entry that leads to it.
        self.publish();
        match self.lpm.insert(prefix, id) {
            Ok(_) => {}
            Err(source) => {
                self.release(AdjKey::Route(next_hop.into()));
                self.publish();
                return Err(FibError::Lpm { prefix, source });
            }
        }
        if let Some(old) = self.routes.insert(prefix, next_hop) {
            self.release(AdjKey::Route(old.into()));
        }
        if let NextHop::Connected { port } = next_hop {
            self.sync_hosts_of(prefix, port)?;
        }
        self.publish();
        Ok(())
    }

    /// Removes a route; true if it existed.
    /// Sets the node addresses accepted as VXLAN sources in addition to the VXLAN next
    /// hops' (all peers', in practice), and publishes.
    pub fn set_known_vteps(&mut self, vteps: &[Ipv4Addr]) {
        self.extra_vteps = vteps.iter().map(|ip| u32::from(*ip)).collect();
        self.publish();
    }

    pub fn remove_route(&mut self, prefix: Ipv4Net) -> bool {
        let prefix = prefix.trunc();
        let Some(old) = self.routes.remove(&prefix) else {
            return false;
        };
        self.lpm.remove(prefix);
        self.release(AdjKey::Route(old.into()));
        if let NextHop::Connected { port } = old {
            let hosts: Vec<Ipv4Addr> = self
                .ids
                .keys()
                .filter_map(|k| match *k {
                    AdjKey::Host { port: p, ip } if p == port && prefix.contains(&ip) => Some(ip),
                    _ => None,
                })
                .collect();
            for ip in hosts {
                self.remove_host(port, ip);
            }
        }
        self.publish();
        true
    }

    /// Records (or, with `None`, forgets) the MAC of `ip` on `port`: next hops through it
    /// become resolved, and a neighbour inside a connected subnet gets a /32 host route.
    pub fn set_neighbour(
        &mut self,
        port: PortId,
        ip: Ipv4Addr,
        mac: Option<MacAddr>,
    ) -> Result<(), FibError> {
        match mac {
            Some(m) => {
                self.neighbours.insert((port, ip), m);
            }
            None => {
                self.neighbours.remove(&(port, ip));
            }
        }
        if self.connected_port(ip) == Some(port) {
            if mac.is_some() {
                self.add_host(port, ip)?;
            } else {
                self.remove_host(port, ip);
            }
        }
        self.publish();
        Ok(())
    }

    /// Where VXLAN to `node_ip` is sent first: the node itself when on-link, else the
    /// underlay gateway.
    pub fn outer_next_hop(&self, node_ip: Ipv4Addr) -> Ipv4Addr {
        match (self.params.uplink_subnet, self.params.gateway) {
            (Some(net), Some(gw)) if !net.contains(&node_ip) => gw,
            _ => node_ip,
        }
    }

    /// The port of the connected subnet (local pods) that holds `ip`, if any.
    pub fn connected_port(&self, ip: Ipv4Addr) -> Option<PortId> {
        self.routes.iter().find_map(|(p, nh)| match nh {
            NextHop::Connected { port } if p.contains(&ip) => Some(*port),
            _ => None,
        })
    }

    /// The next hops whose MAC is unknown (what the neighbour code must resolve).
    pub fn unresolved(&self) -> Vec<(PortId, Ipv4Addr)> {
        let mut out = self.next_hops();
        out.retain(|w| !self.neighbours.contains_key(w));
        out
    }

    /// Every (port, IP) whose MAC some route needs: host-gw gateways and the first
    /// underlay hop of VXLAN peers. Sorted, without duplicates.
    pub fn next_hops(&self) -> Vec<(PortId, Ipv4Addr)> {
        let mut out: Vec<(PortId, Ipv4Addr)> = self
            .ids
            .keys()
            .filter_map(|key| match *key {
                AdjKey::Route(NextHopKey(NextHopKind::HostGw(gw, port))) => Some((port, gw)),
                AdjKey::Route(NextHopKey(NextHopKind::Vxlan(ip, _))) => {
                    Some((self.params.node.uplink, self.outer_next_hop(ip)))
                }
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn add_host(&mut self, port: PortId, ip: Ipv4Addr) -> Result<(), FibError> {
        let key = AdjKey::Host { port, ip };
        if self.ids.contains_key(&key) {
            return Ok(()); // the MAC change is picked up by publish()
        }
        let id = self.acquire(key)?;
        self.publish();
        let prefix = Ipv4Net::new(ip, 32).expect("/32 is valid");
        if let Err(source) = self.lpm.insert(prefix, id) {
            self.release(key);
            return Err(FibError::Lpm { prefix, source });
        }
        Ok(())
    }

    fn remove_host(&mut self, port: PortId, ip: Ipv4Addr) {
        let key = AdjKey::Host { port, ip };
        if self.ids.contains_key(&key) {
            let prefix = Ipv4Net::new(ip, 32).expect("/32 is valid");
            self.lpm.remove(prefix);
            self.release(key);
        }
    }

    /// Adds host routes for neighbours already known inside a new connected subnet.
    fn sync_hosts_of(&mut self, prefix: Ipv4Net, port: PortId) -> Result<(), FibError> {
        let ips: Vec<Ipv4Addr> = self
            .neighbours
            .keys()
            .filter(|(p, ip)| *p == port && prefix.contains(ip))
            .map(|(_, ip)| *ip)
            .collect();
        for ip in ips {
            self.add_host(port, ip)?;
        }
        Ok(())
    }

    /// Returns the id for `key`, allocating one on first use, and counts one more user.
    fn acquire(&mut self, key: AdjKey) -> Result<NextHopId, FibError> {
        if let Some((id, users)) = self.ids.get_mut(&key) {
            *users += 1;
            return Ok(*id);
        }
        let recycled = self.free.lock().map(|mut f| f.pop()).unwrap_or(None);
        let id = match recycled {
            Some(id) => id,
            None => {
                if self.keys.len() >= MAX_NEXT_HOPS {
                    return Err(FibError::TooManyNextHops(MAX_NEXT_HOPS));
                }
                self.keys.push(None);
                (self.keys.len() - 1) as NextHopId
            }
        };
        self.keys[id as usize] = Some(key);
        self.ids.insert(key, (id, 1));
        Ok(id)
    }

    /// Counts one user less; the last one frees the id after an epoch grace period.
    fn release(&mut self, key: AdjKey) {
        let Some((id, users)) = self.ids.get_mut(&key) else {
            return;
        };
        *users -= 1;
        if *users > 0 {
            return;
        }
        let id = *id;
        self.ids.remove(&key);
        self.keys[id as usize] = None;
        // Workers read LPM entries under an epoch pin: once every thread pinned now has
        // unpinned, no batch can still hold an LPM result naming this id.
        let free = self.free.clone();
        let guard = crossbeam_epoch::pin();
        guard.defer(move || {
            if let Ok(mut f) = free.lock() {
                f.push(id);
            }
        });
        guard.flush();
    }

    /// Rebuilds the adjacency table from the keys and neighbours and publishes it.
    fn publish(&mut self) {
        let adjacencies = self
            .keys
            .iter()
            .map(|k| match k {
                Some(k) => self.adjacency_of(*k),
                None => Adjacency::Blackhole,
            })
            .collect();
        let mut vteps: Vec<u32> = self
            .routes
            .values()
            .filter_map(|nh| match nh {
                NextHop::Vxlan { node_ip, .. } => Some(u32::from(*node_ip)),
                _ => None,
            })
            .chain(self.extra_vteps.iter().copied())
            .collect();
        vteps.sort_unstable();
        vteps.dedup();
        self.snapshot
            .store(Arc::new(FibSnapshot { adjacencies, vteps }));
        self.generation += 1;
    }

    fn port(&self, p: PortId) -> PortInfo {
        self.params.ports[usize::from(p)]
    }

    fn rewrite(&self, port: PortId, dst: MacAddr) -> Adjacency {
        let info = self.port(port);
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&dst.0);
        macs[6..].copy_from_slice(&info.mac.0);
        Adjacency::Rewrite {
            port,
            macs,
            mtu: info.mtu,
        }
    }

    fn adjacency_of(&self, key: AdjKey) -> Adjacency {
        let node = &self.params.node;
        match key {
            AdjKey::Host { port, ip } => match self.neighbours.get(&(port, ip)) {
                Some(mac) => self.rewrite(port, *mac),
                None => Adjacency::Unresolved,
            },
            AdjKey::Route(NextHopKey(kind)) => match kind {
                NextHopKind::HostGw(gw, port) => match self.neighbours.get(&(port, gw)) {
                    Some(mac) => self.rewrite(port, *mac),
                    None => Adjacency::Unresolved,
                },
                // Hosts in a connected subnet have their own /32; the subnet route itself
                // means "a pod we have not resolved yet".
                NextHopKind::Connected(_) => Adjacency::Unresolved,
                NextHopKind::Vxlan(node_ip, vtep_mac) => {
                    let hop = self.outer_next_hop(node_ip);
                    match self.neighbours.get(&(node.uplink, hop)) {
                        Some(mac) => {
                            let up = self.port(node.uplink);
                            Adjacency::Encap(EncapTemplate::new(
                                node.uplink,
                                up.mtu,
                                up.mac,
                                *mac,
                                node.node_ip,
                                node_ip,
                                node.vxlan_port,
                                node.vni,
                                node.vtep_mac,
                                vtep_mac,
                            ))
                        }
                        None => Adjacency::Unresolved,
                    }
                }
                NextHopKind::Local => Adjacency::Local,
                NextHopKind::Drop => Adjacency::Blackhole,
            },
        }
    }
}
