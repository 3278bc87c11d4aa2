//! The classifier's map ABI (mirrors `bpf/podfwd_xdp.h`): map names and sizes, the
//! `struct podfwd_config` bytes, route keys, and the Rust types written into them
//! ([`Role`], [`Settings`], [`PortKind`], [`Ownership`]).

use crate::config::Mode;
use crate::plan::{Plan, PortRole};
use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;

/// Entries of the `xsks` XSKMAP: rx queues 0..MAX_QUEUES can have a socket.
pub const MAX_QUEUES: u32 = 64;
/// Entries of the `routes` LPM trie.
pub const MAX_ROUTES: u32 = 16384;

pub(super) const MAP_CONFIG: &str = "config";
pub(super) const MAP_ROUTES: &str = "routes";
pub(super) const MAP_XSKS: &str = "xsks";
pub(super) const MAP_STATS: &str = "stats";
pub(super) const MAP_VTEPS: &str = "vteps";
pub(super) const MAP_PORTS: &str = "ports";
pub(super) const MAP_EPOCH: &str = "epoch";
pub(super) const MAP_FLOW_CACHE: &str = "flow_cache";
/// Slots of the `flow_cache` per-CPU array (`PODFWD_FLOW_CACHE_SLOTS`).
pub const FLOW_CACHE_SLOTS: u32 = 4096;
/// `struct podfwd_flow_slot`.
pub(super) const FLOW_SLOT_SIZE: u32 = 32;
/// Entries of the `vteps` hash (peer node addresses).
pub const MAX_VTEPS: u32 = 16384;
/// Entries of the `ports` hash (interfaces podfwd forwards to).
pub const MAX_PORTS: u32 = 256;

/// `struct podfwd_config`, 48 bytes.
pub(super) const CONFIG_SIZE: usize = 48;
/// `struct podfwd_route_key`: u32 prefix length, then the address in network order.
pub(super) const ROUTE_KEY_SIZE: usize = 8;
/// `PODFWD_ROUTE_OWNED`.
pub(super) const ROUTE_OWNED: u32 = 1;

pub(super) const ROLE_UPLINK: u32 = 1;
pub(super) const ROLE_POD: u32 = 2;

pub(super) const F_VXLAN: u32 = 1 << 0;
pub(super) const F_LOCAL_PODS: u32 = 1 << 1;
pub(super) const F_UPLINK_ROUTES: u32 = 1 << 2;
pub(super) const F_OWN_MAC_ONLY: u32 = 1 << 3;
pub(super) const F_KERNEL_FIB: u32 = 1 << 4;
pub(super) const F_CONNTRACK: u32 = 1 << 5;
pub(super) const F_FLOW_CACHE: u32 = 1 << 6;
pub(super) const F_FLOW_CACHE_CT: u32 = 1 << 7;
pub(super) const F_FORWARD: u32 = 1 << 8;

// ---------------------------------------------------------------------------------------
// Roles and settings
// ---------------------------------------------------------------------------------------

/// What an interface is to podfwd, which decides what the classifier owns on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The underlay: VXLAN to the node, host-gw traffic to the local pods.
    Uplink,
    /// A pod-facing interface: traffic to peer pod subnets (the `routes`).
    Pod,
}

impl Role {
    /// The classifier role of a plan port; `None` for the TUN device (no XDP there).
    pub const fn from_port_role(role: PortRole) -> Option<Role> {
        match role {
            PortRole::Uplink => Some(Role::Uplink),
            PortRole::Pod => Some(Role::Pod),
            PortRole::Tun => None,
        }
    }

    pub(super) const fn code(self) -> u32 {
        match self {
            Role::Uplink => ROLE_UPLINK,
            Role::Pod => ROLE_POD,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Uplink => "uplink",
            Role::Pod => "pod",
        })
    }
}

/// The node's addresses in the classifier's `config` map (the role is per interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The node's underlay address: frames to it go to the kernel, except VXLAN.
    pub node_ip: Ipv4Addr,
    /// VXLAN UDP destination port.
    pub vxlan_port: u16,
    /// The local pod CIDR (host-gw inbound on the uplink). A /0 disables that rule.
    pub pod_cidr: Ipv4Net,
    /// VXLAN network identifier: VXLAN with another VNI is left to the pipeline's drop.
    pub vni: u32,
    /// Own VTEP MAC: the inner destination of VXLAN frames podfwd decapsulates.
    pub vtep_mac: [u8; 6],
    /// ifindex of the kernel's VXLAN device (the slow path's VTEP): decapsulated
    /// packets are looked up in the kernel FIB as arriving there. 0: none (lookups enter
    /// on the uplink).
    pub vtep_ifindex: u32,
}

impl Settings {
    /// The settings of a resolved plan (`vtep_ifindex` 0: the caller sets it once the
    /// kernel's VXLAN device exists).
    pub fn from_plan(plan: &Plan) -> Settings {
        Settings {
            node_ip: plan.node.ip,
            vxlan_port: plan.node.vxlan_port,
            pod_cidr: plan.node.pod_cidr,
            vni: plan.node.vni,
            vtep_mac: plan.node.vtep_mac.map_or([0; 6], |m| m.0),
            vtep_ifindex: 0,
        }
    }
}

/// What an interface in the kernel FIB's answer is to podfwd (the `ports` map): the
/// classifier owns a frame only when the kernel would forward it to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// The underlay interface (host-gw next hops).
    Uplink = 1,
    /// A pod-facing interface podfwd serves (local pods).
    Pod = 2,
    /// The kernel's VXLAN device: routes through it are VXLAN peers podfwd encapsulates
    /// itself.
    Vtep = 3,
}

/// Which rules make a frame podfwd's (the `flags` of the `config` map). A pod interface
/// always owns traffic to the `routes`; the rest concerns the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// Uplink: own UDP to `node_ip:vxlan_port` (vxlan and auto mode).
    pub vxlan: bool,
    /// Uplink: own IPv4 to the local pod CIDR (host-gw and auto mode).
    pub local_pods: bool,
    /// Uplink: also own IPv4 to the `routes` (transit through this node). Off in every
    /// flannel mode; a flag for setups that route peers' traffic through the uplink.
    pub routes_on_uplink: bool,
    /// Pass unicast frames not addressed to the interface's own MAC (the kernel drops
    /// them as PACKET_OTHERHOST; podfwd forwarding them would duplicate flooded frames).
    pub own_mac_only: bool,
    /// Own a frame only if the kernel's FIB (`bpf_fib_lookup`) forwards it to one of the
    /// `ports` with its next hop resolved, within the egress MTU and with forwarding on;
    /// everything else is the kernel's (ARP queue, ICMP, fragmentation).
    pub kernel_fib: bool,
    /// Pass TCP/UDP flows that the kernel's conntrack NATs (`bpf_xdp_ct_lookup`), so
    /// kube-proxy's Service translation stays on the kernel path.
    pub conntrack: bool,
    /// Remember the FIB's "yes" per flow (per CPU) until the next epoch bump
    /// ([`Classifier::bump_epoch`](super::Classifier::bump_epoch)). Only for an owner
    /// that bumps the epoch on every route, neighbour, link, rule and netconf change of
    /// the namespace ([`crate::netlink::KernelChanges`]).
    pub flow_cache: bool,
    /// With `flow_cache`: remember conntrack's "not NATed" too. Only for an owner that
    /// also bumps the epoch on every NATed connection the kernel creates.
    pub flow_cache_conntrack: bool,
    /// The in-kernel fast path (backend `xdp`): forward owned frames in the program
    /// itself from the shared forwarding maps ([`super::FastPath`]); what it cannot
    /// finish goes to the queue's AF_XDP socket, else the kernel.
    pub forward: bool,
}

impl Default for Ownership {
    /// What a flannel node in auto mode receives: VXLAN and host-gw inbound.
    fn default() -> Self {
        Ownership {
            vxlan: true,
            local_pods: true,
            routes_on_uplink: false,
            own_mac_only: true,
            kernel_fib: true,
            conntrack: true,
            flow_cache: false,
            flow_cache_conntrack: false,
            forward: false,
        }
    }
}

impl Ownership {
    /// Exactly what a node in `mode` receives from its peers.
    pub fn for_mode(mode: Mode) -> Ownership {
        Ownership {
            vxlan: mode.uses_vxlan(),
            local_pods: mode != Mode::Vxlan,
            ..Ownership::default()
        }
    }

    /// These rules without the kernel FIB and conntrack checks: for running the program
    /// where the namespace's routes and connections are not a node's (tests that run it
    /// with `BPF_PROG_TEST_RUN`, or on a bare veth pair). Never for a running node: the
    /// slow path's exceptions would be taken from the kernel.
    pub fn without_kernel_checks(self) -> Ownership {
        Ownership {
            kernel_fib: false,
            conntrack: false,
            flow_cache: false,
            flow_cache_conntrack: false,
            ..self
        }
    }

    pub(super) fn flags(&self) -> u32 {
        [
            (self.vxlan, F_VXLAN),
            (self.local_pods, F_LOCAL_PODS),
            (self.routes_on_uplink, F_UPLINK_ROUTES),
            (self.own_mac_only, F_OWN_MAC_ONLY),
            (self.kernel_fib, F_KERNEL_FIB),
            (self.conntrack, F_CONNTRACK),
            (self.flow_cache, F_FLOW_CACHE),
            (
                self.flow_cache && self.flow_cache_conntrack,
                F_FLOW_CACHE_CT,
            ),
            (self.forward, F_FORWARD),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, f)| acc | f)
    }

    pub(super) fn from_flags(flags: u32) -> Ownership {
        Ownership {
            vxlan: flags & F_VXLAN != 0,
            local_pods: flags & F_LOCAL_PODS != 0,
            routes_on_uplink: flags & F_UPLINK_ROUTES != 0,
            own_mac_only: flags & F_OWN_MAC_ONLY != 0,
            kernel_fib: flags & F_KERNEL_FIB != 0,
            conntrack: flags & F_CONNTRACK != 0,
            flow_cache: flags & F_FLOW_CACHE != 0,
            flow_cache_conntrack: flags & F_FLOW_CACHE_CT != 0,
            forward: flags & F_FORWARD != 0,
        }
    }
}

/// The peer pod subnets of a plan: what a pod interface owns (the `routes`).
pub fn peer_subnets(plan: &Plan) -> Vec<Ipv4Net> {
    plan.routes
        .iter()
        .filter(|r| r.peer.is_some())
        .map(|r| r.prefix)
        .collect()
}

/// The bytes of `struct podfwd_config`.
pub(super) fn config_bytes(
    role: Role,
    s: &Settings,
    own: &Ownership,
    mac: [u8; 6],
) -> [u8; CONFIG_SIZE] {
    let net = s.pod_cidr.trunc();
    let mut b = [0u8; CONFIG_SIZE];
    b[0..4].copy_from_slice(&role.code().to_ne_bytes());
    b[4..8].copy_from_slice(&own.flags().to_ne_bytes());
    // Octets in memory order are network order, as the program compares them.
    b[8..12].copy_from_slice(&s.node_ip.octets());
    b[12..16].copy_from_slice(&net.network().octets());
    b[16..20].copy_from_slice(&net.netmask().octets());
    b[20..22].copy_from_slice(&s.vxlan_port.to_be_bytes());
    b[22..28].copy_from_slice(&mac);
    b[28..32].copy_from_slice(&s.vni.to_ne_bytes());
    b[32..36].copy_from_slice(&s.vtep_ifindex.to_ne_bytes());
    b[36..42].copy_from_slice(&s.vtep_mac);
    b
}

/// Settings and ownership back from `struct podfwd_config` bytes.
pub(super) fn config_from_bytes(b: &[u8; CONFIG_SIZE]) -> (Settings, Ownership) {
    let addr = |r: std::ops::Range<usize>| {
        let o: [u8; 4] = b[r].try_into().expect("4 bytes");
        Ipv4Addr::from(o)
    };
    let flags = u32::from_ne_bytes(b[4..8].try_into().expect("4 bytes"));
    let mask = addr(16..20);
    let prefix = u32::from(mask).leading_ones() as u8;
    let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let settings = Settings {
        node_ip: addr(8..12),
        vxlan_port: u16::from_be_bytes([b[20], b[21]]),
        pod_cidr: Ipv4Net::new(addr(12..16), prefix).expect("prefix <= 32"),
        vni: u32_at(28),
        vtep_ifindex: u32_at(32),
        vtep_mac: b[36..42].try_into().expect("6 bytes"),
    };
    (settings, Ownership::from_flags(flags))
}

pub(super) fn route_key(prefix: Ipv4Net) -> [u8; ROUTE_KEY_SIZE] {
    let mut k = [0u8; ROUTE_KEY_SIZE];
    k[0..4].copy_from_slice(&u32::from(prefix.prefix_len()).to_ne_bytes());
    k[4..8].copy_from_slice(&prefix.network().octets());
    k
}

pub(super) fn route_from_key(k: &[u8]) -> Option<Ipv4Net> {
    let len = u32::from_ne_bytes(k.get(0..4)?.try_into().ok()?);
    let addr: [u8; 4] = k.get(4..8)?.try_into().ok()?;
    Ipv4Net::new(Ipv4Addr::from(addr), u8::try_from(len).ok()?).ok()
}
