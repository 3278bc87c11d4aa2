//! Following the kernel's neighbour table into the FIB, and making the kernel resolve
//! what the FIB lacks.
//!
//! podfwd's forwarding never confirms a neighbour entry, so next hops the kernel holds
//! STALE are re-probed (a silently changed MAC is found). Destinations the workers
//! dropped for lack of a MAC (local pods nobody has resolved) are resolved on demand,
//! at most once a second each.

use crate::backend::Ports;
use crate::netlink::{self, nud, NeighbourEvent, NeighbourMonitor};
use crate::nexthop::{NextHop, PortId};
use crate::pipeline::{FibError, FibWriter};
use crate::plan::Plan;
use crate::wire::MacAddr;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How often unusable next hops are asked for again.
const RESOLVE_EVERY: Duration = Duration::from_secs(1);

/// The neighbour side of the control plane.
pub struct Neighbours {
    monitor: NeighbourMonitor,
    port_of_ifindex: HashMap<u32, PortId>,
    ifindex_of_port: Vec<u32>,
    /// The kernel sends this backend's VXLAN: its outer next hops get a placeholder MAC.
    kernel_sends_vxlan: bool,
    /// Outer next hops with a placeholder MAC (see [`Ports::kernel_sends_vxlan`]).
    placeholders: HashSet<Ipv4Addr>,
    /// The kernel's NUD state of each neighbour.
    nud: HashMap<(u32, Ipv4Addr), u16>,
    last_resolve: HashMap<Ipv4Addr, Instant>,
    last_sweep: Instant,
    /// Warnings that repeat while a neighbour stays unresolved (by next hop and what
    /// failed).
    warnings: crate::log::RateLimit<(Ipv4Addr, &'static str)>,
}

/// The name of a NUD state as `ip neigh` prints it, lowercase.
fn nud_name(state: u16) -> &'static str {
    match state {
        nud::NONE => "none",
        nud::INCOMPLETE => "incomplete",
        nud::REACHABLE => "reachable",
        nud::STALE => "stale",
        nud::DELAY => "delay",
        nud::PROBE => "probe",
        nud::FAILED => "failed",
        nud::NOARP => "noarp",
        nud::PERMANENT => "permanent",
        _ => "other",
    }
}

impl Neighbours {
    /// Opens the monitor and loads the kernel's current table into `fib`.
    pub fn open(
        ports: &Ports,
        fib: &mut FibWriter,
        plan: &Plan,
    ) -> Result<Neighbours, super::RunError> {
        let mut n = Neighbours {
            monitor: NeighbourMonitor::new()?,
            port_of_ifindex: ports
                .ifindex
                .iter()
                .enumerate()
                .filter(|(_, i)| **i != 0)
                .map(|(p, i)| (*i, p as PortId))
                .collect(),
            ifindex_of_port: ports.ifindex.clone(),
            kernel_sends_vxlan: ports.kernel_sends_vxlan,
            placeholders: HashSet::new(),
            nud: HashMap::new(),
            last_resolve: HashMap::new(),
            last_sweep: Instant::now() - Duration::from_secs(10),
            warnings: crate::log::RateLimit::new(crate::log::WARN_EVERY),
        };
        n.follow_routes(fib, plan)?;
        let dump = n.monitor.dump()?;
        n.apply_events(fib, dump)?;
        Ok(n)
    }

    /// After the routes changed: (TUN) the outer next hops of VXLAN routes get their
    /// placeholder MAC, and those no route uses lose it.
    pub fn follow_routes(&mut self, fib: &mut FibWriter, plan: &Plan) -> Result<(), FibError> {
        if !self.kernel_sends_vxlan {
            return Ok(());
        }
        let wanted: HashSet<Ipv4Addr> = plan
            .routes
            .iter()
            .filter_map(|r| match r.next_hop {
                NextHop::Vxlan { node_ip, .. } => Some(fib.outer_next_hop(node_ip)),
                _ => None,
            })
            .collect();
        let uplink = fib.params().node.uplink;
        for hop in wanted.difference(&self.placeholders) {
            fib.set_neighbour(uplink, *hop, Some(MacAddr::ZERO))?;
        }
        for hop in self.placeholders.difference(&wanted) {
            fib.set_neighbour(uplink, *hop, None)?;
        }
        self.placeholders = wanted;
        Ok(())
    }

    /// How many neighbours of the served ports the kernel has in each NUD state, by the
    /// state's name (`reachable`, `stale`, `failed`, ...): the metrics' neighbour states.
    pub fn states(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for ((ifindex, _), state) in &self.nud {
            if self.port_of_ifindex.contains_key(ifindex) {
                *out.entry(nud_name(*state).to_string()).or_insert(0) += 1;
            }
        }
        out
    }

    /// The neighbour monitor's socket (readable when events are queued).
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.monitor.as_raw_fd()
    }

    /// Waits up to `timeout` for neighbour events and applies them.
    pub fn poll(&mut self, fib: &mut FibWriter, timeout: Duration) -> Result<(), FibError> {
        match self.monitor.poll_events(timeout) {
            Ok(events) => self.apply_events(fib, events),
            Err(e) => {
                crate::warn_limited!(self.warnings, (Ipv4Addr::UNSPECIFIED, "monitor"), error = %e, "neighbour monitor");
                Ok(())
            }
        }
    }

    /// The kernel's neighbour events (or its dump), applied to the FIB: every change of a
    /// neighbour on a served port becomes its MAC (or its absence) in the FIB.
    pub fn apply_events(
        &mut self,
        fib: &mut FibWriter,
        events: Vec<NeighbourEvent>,
    ) -> Result<(), FibError> {
        for ev in events {
            self.nud.insert((ev.ifindex, ev.ip), ev.state);
            if let Some(port) = self.port_of_ifindex.get(&ev.ifindex) {
                let mac = match ev.mac {
                    None if self.placeholders.contains(&ev.ip) => Some(MacAddr::ZERO),
                    m => m,
                };
                fib.set_neighbour(*port, ev.ip, mac)?;
            }
        }
        Ok(())
    }

    /// Makes the kernel resolve what the FIB lacks: next hops that are not usable or
    /// STALE (every second), and `missed` local destinations.
    pub fn resolve(&mut self, fib: &FibWriter, missed: &[Ipv4Addr]) {
        let now = Instant::now();
        let mut want: Vec<(PortId, Ipv4Addr)> = Vec::new();
        if now.duration_since(self.last_sweep) >= RESOLVE_EVERY {
            for (port, ip) in fib.next_hops() {
                let Some(&index) = self.ifindex_of_port.get(usize::from(port)) else {
                    continue;
                };
                if index == 0 || self.placeholders.contains(&ip) {
                    continue;
                }
                let state = self.nud.get(&(index, ip)).copied();
                let usable = state.is_some_and(|s| s & nud::VALID != 0);
                if state == Some(nud::FAILED) {
                    crate::warn_limited!(
                        self.warnings,
                        (ip, "failed"),
                        neighbour = %ip,
                        interface = index,
                        "next hop unresolved (the kernel's ARP failed); asking again"
                    );
                }
                if !usable || state == Some(nud::STALE) {
                    want.push((port, ip));
                }
            }
            self.last_sweep = now;
        }
        for ip in missed {
            if let Some(port) = fib.connected_port(*ip) {
                want.push((port, *ip));
            }
        }
        for (port, ip) in want {
            let due = self
                .last_resolve
                .get(&ip)
                .is_none_or(|t| now.duration_since(*t) >= RESOLVE_EVERY);
            let index = self.ifindex_of_port[usize::from(port)];
            if due && index != 0 {
                self.last_resolve.insert(ip, now);
                tracing::debug!(neighbour = %ip, interface = index, "resolving");
                if let Err(e) = netlink::resolve(index, ip) {
                    crate::warn_limited!(self.warnings, (ip, "resolve"), neighbour = %ip, interface = index, error = %e, "resolving");
                }
            }
        }
    }

    /// The link of `port` came back: its next hops' entries went with it. One resolved
    /// while the link was down sits INCOMPLETE until its next ARP retransmission (up to
    /// retrans_time, 1 s, away) and resolve() leaves it alone: start it over, now.
    pub fn restart_port(&mut self, fib: &FibWriter, port: PortId) {
        let index = self.ifindex_of_port[usize::from(port)];
        for (_, ip) in fib.next_hops().into_iter().filter(|(p, _)| *p == port) {
            let entry = netlink::neighbour_entry(index, ip);
            if entry.is_ok_and(|e| e.is_some_and(|e| e.state & nud::VALID == 0)) {
                let _ = netlink::remove_neighbour(index, ip);
            }
            self.last_resolve.remove(&ip);
        }
        self.last_sweep = Instant::now() - Duration::from_secs(10);
    }
}
