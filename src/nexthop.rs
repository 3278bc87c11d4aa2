//! Next hops: what a route leads to.
//!
//! [`NextHop`] is the control plane's description (what `podfwd check` prints). The
//! data path works on [`NextHopId`]s, indices into a table of precomputed rewrite data
//! (see [`crate::pipeline::Adjacency`]).

use crate::wire::MacAddr;
use std::fmt;
use std::net::Ipv4Addr;

/// Index of a next hop in the forwarding table; what the LPM table stores.
/// Only the low 24 bits are usable (the LPM packs flags beside it).
pub type NextHopId = u32;

/// Index of an interface podfwd serves (the uplink or a pod-facing interface), assigned
/// at start-up in the order of the plan's port list. Not a kernel ifindex.
pub type PortId = u16;

/// Where packets for a prefix go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// host-gw: a remote node's pod subnet, reached through that node's underlay address
    /// (`10.244.1.0/24 via 10.168.0.3 dev eth0`), or the underlay router.
    HostGw { gateway: Ipv4Addr, port: PortId },
    /// Local pods: the destination itself is on the pod-facing interface.
    Connected { port: PortId },
    /// VXLAN overlay: encapsulate to the remote node's VTEP.
    Vxlan {
        node_ip: Ipv4Addr,
        vtep_mac: MacAddr,
    },
    /// To the node's own network stack.
    Local,
    /// Drop (a blackhole route).
    Drop,
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHop::HostGw { gateway, port } => write!(f, "host-gw via {gateway} port {port}"),
            NextHop::Connected { port } => write!(f, "connected port {port}"),
            NextHop::Vxlan { node_ip, vtep_mac } => {
                write!(f, "vxlan to {node_ip} vtep {vtep_mac}")
            }
            NextHop::Local => write!(f, "local"),
            NextHop::Drop => write!(f, "drop"),
        }
    }
}
