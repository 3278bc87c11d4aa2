//! The XDP classifier: loading `podfwd_xdp` (built from `bpf/podfwd_xdp.bpf.c` at compile
//! time and embedded here), attaching it to an interface, and feeding its maps.
//!
//! One [`Classifier`] per interface. The program redirects to the rx queue's AF_XDP socket
//! only the frames podfwd owns on that interface (see [`Role`], [`Settings`] and
//! [`Ownership`]) and hands
//! everything else to the kernel with `XDP_PASS`; a queue without a registered socket
//! falls back to the kernel too. It is attached through a **bpf_link**: the kernel detaches
//! it when the last reference to the link goes away, which is when the [`Classifier`] is
//! dropped or the process dies in any way, SIGKILL included. A node whose podfwd is gone
//! is left with no program, so the kernel forwards again (fail-open). Nothing is pinned
//! unless [`Classifier::pin_maps`] is asked for (debugging only).
//!
//! The control thread owns the classifiers; map updates take `&self` because the kernel
//! serialises them, but each classifier expects a single writer. Frames and rules:
//! `docs/xdp.md`.

use crate::config::{Mode, XdpMode};
use crate::plan::{Plan, PortRole};
use ipnet::Ipv4Net;
use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapType, Object, ObjectBuilder};
use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::ops::Index;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------
// The embedded object and its layout (mirrors bpf/podfwd_xdp.h)
// ---------------------------------------------------------------------------------------

/// Keeps `include_bytes!` data 8-byte aligned: libelf reads ELF headers in place.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static PODFWD_XDP_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/podfwd_xdp.bpf.o"
)));

/// The program's name in the kernel (`bpftool prog`, `ip link`).
pub const PROGRAM_NAME: &str = "podfwd_xdp";
/// Program names that podfwd (or libxdp on its behalf, through xsk-rs) leaves on an
/// interface, and that [`Classifier::attach`] removes when they were attached the legacy
/// way. libxdp's dispatcher is `xdp_dispatcher`, its default AF_XDP program `xsk_def_prog`.
pub const OWN_PROGRAM_NAMES: &[&str] = &[PROGRAM_NAME, "xdp_dispatcher", "xsk_def_prog"];
/// Entries of the `xsks` XSKMAP: rx queues 0..MAX_QUEUES can have a socket.
pub const MAX_QUEUES: u32 = 64;
/// Entries of the `routes` LPM trie.
pub const MAX_ROUTES: u32 = 16384;

const MAP_CONFIG: &str = "config";
const MAP_ROUTES: &str = "routes";
const MAP_XSKS: &str = "xsks";
const MAP_STATS: &str = "stats";
const MAP_VTEPS: &str = "vteps";
const MAP_PORTS: &str = "ports";
const MAP_EPOCH: &str = "epoch";
const MAP_FLOW_CACHE: &str = "flow_cache";
/// Slots of the `flow_cache` per-CPU array (`PODFWD_FLOW_CACHE_SLOTS`).
pub const FLOW_CACHE_SLOTS: u32 = 4096;
/// `struct podfwd_flow_slot`.
const FLOW_SLOT_SIZE: u32 = 32;
/// Entries of the `vteps` hash (peer node addresses).
pub const MAX_VTEPS: u32 = 16384;
/// Entries of the `ports` hash (interfaces podfwd forwards to).
pub const MAX_PORTS: u32 = 256;

/// `struct podfwd_config`, 48 bytes.
const CONFIG_SIZE: usize = 48;
/// `struct podfwd_route_key`: u32 prefix length, then the address in network order.
const ROUTE_KEY_SIZE: usize = 8;
/// `PODFWD_ROUTE_OWNED`.
const ROUTE_OWNED: u32 = 1;

const ROLE_UPLINK: u32 = 1;
const ROLE_POD: u32 = 2;

const F_VXLAN: u32 = 1 << 0;
const F_LOCAL_PODS: u32 = 1 << 1;
const F_UPLINK_ROUTES: u32 = 1 << 2;
const F_OWN_MAC_ONLY: u32 = 1 << 3;
const F_KERNEL_FIB: u32 = 1 << 4;
const F_CONNTRACK: u32 = 1 << 5;
const F_FLOW_CACHE: u32 = 1 << 6;
const F_FLOW_CACHE_CT: u32 = 1 << 7;

/// Verifier log buffer: plenty for this program's log at level 1.
const VERIFIER_LOG_SIZE: usize = 1 << 20;
/// Lines of the verifier log kept in [`XdpError::VerifierRejected`] (the end says why).
const VERIFIER_LOG_TAIL_LINES: usize = 60;
/// `statfs(2)` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

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

    const fn code(self) -> u32 {
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
    /// Remember the FIB's "yes" per flow (per CPU) until the next
    /// [`Classifier::bump_epoch`]. Only for an owner that bumps the epoch on every route,
    /// neighbour, link, rule and netconf change of the namespace ([`crate::netlink::KernelChanges`]).
    pub flow_cache: bool,
    /// With `flow_cache`: remember conntrack's "not NATed" too. Only for an owner that
    /// also bumps the epoch on every NATed connection the kernel creates.
    pub flow_cache_conntrack: bool,
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

    fn flags(&self) -> u32 {
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
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, f)| acc | f)
    }

    fn from_flags(flags: u32) -> Ownership {
        Ownership {
            vxlan: flags & F_VXLAN != 0,
            local_pods: flags & F_LOCAL_PODS != 0,
            routes_on_uplink: flags & F_UPLINK_ROUTES != 0,
            own_mac_only: flags & F_OWN_MAC_ONLY != 0,
            kernel_fib: flags & F_KERNEL_FIB != 0,
            conntrack: flags & F_CONNTRACK != 0,
            flow_cache: flags & F_FLOW_CACHE != 0,
            flow_cache_conntrack: flags & F_FLOW_CACHE_CT != 0,
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
fn config_bytes(role: Role, s: &Settings, own: &Ownership, mac: [u8; 6]) -> [u8; CONFIG_SIZE] {
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
fn config_from_bytes(b: &[u8; CONFIG_SIZE]) -> (Settings, Ownership) {
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

fn route_key(prefix: Ipv4Net) -> [u8; ROUTE_KEY_SIZE] {
    let mut k = [0u8; ROUTE_KEY_SIZE];
    k[0..4].copy_from_slice(&u32::from(prefix.prefix_len()).to_ne_bytes());
    k[4..8].copy_from_slice(&prefix.network().octets());
    k
}

fn route_from_key(k: &[u8]) -> Option<Ipv4Net> {
    let len = u32::from_ne_bytes(k.get(0..4)?.try_into().ok()?);
    let addr: [u8; 4] = k.get(4..8)?.try_into().ok()?;
    Ipv4Net::new(Ipv4Addr::from(addr), u8::try_from(len).ok()?).ok()
}

// ---------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------

/// What the classifier did with a frame: the indices of its `stats` map. An owned frame
/// counts twice: once for why it is owned, once for where it went (socket or kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Stat {
    /// Owned and handed to the queue's AF_XDP socket.
    Redirected = 0,
    /// Owned, but the queue has no socket: passed to the kernel.
    NoSocket,
    /// Owned: the destination is in `routes` (pod interface, or uplink transit).
    OwnedRoute,
    /// Owned: uplink, destination in the local pod CIDR (host-gw inbound).
    OwnedLocalPods,
    /// Owned: uplink, UDP to the node's VXLAN port.
    OwnedVxlan,
    /// Passed: the interface has no role yet.
    PassUnconfigured,
    /// Passed: truncated or invalid Ethernet/IPv4 (the kernel drops and counts it).
    PassMalformed,
    /// Passed: broadcast or multicast destination MAC (ARP requests, ...).
    PassL2Group,
    /// Passed: unicast to another MAC.
    PassOtherHost,
    /// Passed: VLAN-tagged.
    PassVlan,
    /// Passed: not IPv4 (ARP, IPv6, ...).
    PassNonIpv4,
    /// Passed: IPv4 with options.
    PassIpOptions,
    /// Passed: a fragment (podfwd does not reassemble; the kernel tracks NATed flows).
    PassFragment,
    /// Passed: TTL <= 1, so the kernel answers with ICMP time exceeded.
    PassTtl,
    /// Passed: addressed to the node itself.
    PassLocal,
    /// Passed: IPv4 that matches no ownership rule.
    PassNotOwned,
    /// Passed: the kernel has no usable MAC for the next hop yet (it queues the frame
    /// and resolves it).
    PassNoNeigh,
    /// Passed: too big for the egress MTU (the kernel sends frag needed or fragments).
    PassFragNeeded,
    /// Passed: IP forwarding is off on the ingress interface (`net.ipv4.ip_forward`).
    PassFwdDisabled,
    /// Passed: the kernel routes it somewhere podfwd does not forward to (the node
    /// itself, an unreachable or blackhole route, another device).
    PassKernelRoute,
    /// Passed: a TCP/UDP flow the kernel NATs (a kube-proxy Service connection).
    PassNat,
    /// Owned without asking the kernel: the flow cache held this epoch's answer (also
    /// counted as owned_*, like every owned frame).
    FlowCacheHit,
}

impl Stat {
    pub const COUNT: usize = 22;
    pub const ALL: [Stat; Self::COUNT] = [
        Stat::Redirected,
        Stat::NoSocket,
        Stat::OwnedRoute,
        Stat::OwnedLocalPods,
        Stat::OwnedVxlan,
        Stat::PassUnconfigured,
        Stat::PassMalformed,
        Stat::PassL2Group,
        Stat::PassOtherHost,
        Stat::PassVlan,
        Stat::PassNonIpv4,
        Stat::PassIpOptions,
        Stat::PassFragment,
        Stat::PassTtl,
        Stat::PassLocal,
        Stat::PassNotOwned,
        Stat::PassNoNeigh,
        Stat::PassFragNeeded,
        Stat::PassFwdDisabled,
        Stat::PassKernelRoute,
        Stat::PassNat,
        Stat::FlowCacheHit,
    ];

    /// A stable snake_case name for stats output.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::Redirected => "redirected",
            Stat::NoSocket => "no_socket",
            Stat::OwnedRoute => "owned_route",
            Stat::OwnedLocalPods => "owned_local_pods",
            Stat::OwnedVxlan => "owned_vxlan",
            Stat::PassUnconfigured => "pass_unconfigured",
            Stat::PassMalformed => "pass_malformed",
            Stat::PassL2Group => "pass_l2_group",
            Stat::PassOtherHost => "pass_other_host",
            Stat::PassVlan => "pass_vlan",
            Stat::PassNonIpv4 => "pass_non_ipv4",
            Stat::PassIpOptions => "pass_ip_options",
            Stat::PassFragment => "pass_fragment",
            Stat::PassTtl => "pass_ttl",
            Stat::PassLocal => "pass_local",
            Stat::PassNotOwned => "pass_not_owned",
            Stat::PassNoNeigh => "pass_no_neigh",
            Stat::PassFragNeeded => "pass_frag_needed",
            Stat::PassFwdDisabled => "pass_fwd_disabled",
            Stat::PassKernelRoute => "pass_kernel_route",
            Stat::PassNat => "pass_nat",
            Stat::FlowCacheHit => "flow_cache_hits",
        }
    }

    /// Whether this counts a reason to pass a frame the classifier does not own.
    pub const fn is_pass(self) -> bool {
        (self as u32) >= (Stat::PassUnconfigured as u32) && (self as u32) <= (Stat::PassNat as u32)
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The classifier's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassifierStats {
    counts: [u64; Stat::COUNT],
}

impl ClassifierStats {
    pub fn get(&self, stat: Stat) -> u64 {
        self.counts[stat as usize]
    }

    /// Frames podfwd owns (redirect attempted): `redirected + no_socket`.
    pub fn owned(&self) -> u64 {
        self.get(Stat::Redirected) + self.get(Stat::NoSocket)
    }

    /// Frames that went to the kernel: not owned, or owned without a socket.
    pub fn to_kernel(&self) -> u64 {
        let passed: u64 = Stat::ALL
            .iter()
            .filter(|s| s.is_pass())
            .map(|&s| self.get(s))
            .sum();
        passed + self.get(Stat::NoSocket)
    }

    /// `(name, count)` in map order.
    pub fn iter(&self) -> impl Iterator<Item = (Stat, u64)> + '_ {
        Stat::ALL.iter().map(move |&s| (s, self.get(s)))
    }
}

impl Index<Stat> for ClassifierStats {
    type Output = u64;

    fn index(&self, stat: Stat) -> &u64 {
        &self.counts[stat as usize]
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// How a program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// In the driver (`ip link` shows `xdp`).
    Native,
    /// The generic skb hook (`xdpgeneric`).
    Generic,
    /// Offloaded to the NIC (`xdpoffload`).
    Offload,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
            AttachMode::Offload => "offload",
        })
    }
}

impl From<XdpMode> for AttachMode {
    fn from(m: XdpMode) -> Self {
        match m {
            XdpMode::Native => AttachMode::Native,
            XdpMode::Generic => AttachMode::Generic,
        }
    }
}

impl AttachMode {
    const fn flag(self) -> u32 {
        match self {
            AttachMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
            AttachMode::Offload => libbpf_sys::XDP_FLAGS_HW_MODE,
        }
    }
}

/// An XDP program found on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedProgram {
    /// Kernel program id (`bpftool prog show id N`).
    pub id: u32,
    /// Program name as the kernel keeps it (at most 15 bytes).
    pub name: String,
    pub mode: AttachMode,
}

impl AttachedProgram {
    /// Whether podfwd (or libxdp on its behalf) put this program there.
    pub fn is_podfwds(&self) -> bool {
        OWN_PROGRAM_NAMES.contains(&self.name.as_str())
    }
}

const PRIVILEGES: &str = "podfwd needs CAP_NET_ADMIN and CAP_BPF (CAP_SYS_ADMIN on kernels \
                          before 5.8): run it as root";

/// Why loading, attaching or configuring the classifier failed.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("interface {iface:?} does not exist in this network namespace")]
    NoSuchInterface { iface: String },
    #[error(
        "interface {iface:?} is not an Ethernet interface (ARPHRD type {hw_type}); \
             the XDP classifier parses Ethernet frames"
    )]
    NotEthernet { iface: String, hw_type: u16 },
    #[error("{action} on {iface:?} is not permitted: {PRIVILEGES}")]
    NoPrivileges { action: String, iface: String },
    #[error(
        "this kernel does not support {what}; podfwd's afxdp backend needs \
             CONFIG_BPF_SYSCALL, CONFIG_XDP_SOCKETS and Linux 5.9 or newer (XDP links); \
             use the tun backend"
    )]
    KernelUnsupported { what: &'static str },
    #[error("the kernel's verifier rejected {program} ({source}); verifier log (end):\n{log}")]
    VerifierRejected {
        program: String,
        source: io::Error,
        log: String,
    },
    #[error(
        "native XDP cannot be attached to {iface:?}: {source}; the driver may lack XDP \
             support or refuse this setup (veth: MTU above about 3500, or fewer rx queues \
             than its peer has tx queues); set dataplane.xdp_mode = \"generic\" to use the \
             slower skb hook"
    )]
    NativeUnsupported { iface: String, source: io::Error },
    #[error("attaching {PROGRAM_NAME} to {iface:?} in {mode} mode failed: {source}")]
    AttachFailed {
        iface: String,
        mode: AttachMode,
        source: io::Error,
    },
    #[error("{PROGRAM_NAME} is already attached to {iface:?} ({mode} mode) by this classifier")]
    AlreadyAttached { iface: String, mode: AttachMode },
    #[error(
        "interface {iface:?} already has XDP program {name:?} (id {id}, {mode} mode), \
             which is not podfwd's; podfwd does not remove it: detach it \
             (`ip link set dev {iface} xdp off`) or serve another interface"
    )]
    ForeignProgram {
        iface: String,
        name: String,
        id: u32,
        mode: AttachMode,
    },
    #[error(
        "{name:?} (id {id}, {mode} mode) on {iface:?} is held by a bpf_link of a running \
             process (another podfwd on this interface?); stop it first"
    )]
    HeldByLink {
        iface: String,
        name: String,
        id: u32,
        mode: AttachMode,
    },
    #[error(
        "{} is not on a bpffs; mount one (`mount -t bpf bpf /sys/fs/bpf`) or leave \
             pinning off: podfwd attaches through bpf_links and needs no pins", path.display()
    )]
    BpfFsMissing { path: PathBuf },
    #[error("rx queue {queue} is out of range: the classifier serves queues 0..{MAX_QUEUES}")]
    QueueOutOfRange { queue: u32 },
    #[error("{count} routes do not fit in the classifier's {MAX_ROUTES}-entry trie")]
    TooManyRoutes { count: usize },
    #[error("{count} entries do not fit in the classifier's {max}-entry {map} map")]
    TooManyEntries {
        map: &'static str,
        count: usize,
        max: u32,
    },
    #[error("the embedded BPF object does not match this build of podfwd: {what}")]
    ObjectMismatch { what: String },
    #[error("{action} on {iface:?} failed: {source}")]
    Os {
        action: String,
        iface: String,
        source: io::Error,
    },
    #[error("{action} on {iface:?} failed: {source:#}")]
    Bpf {
        action: String,
        iface: String,
        source: libbpf_rs::Error,
    },
}

fn os_error(action: impl Into<String>, iface: &str, errno: i32) -> XdpError {
    let action = action.into();
    if errno == libc::EPERM || errno == libc::EACCES {
        return XdpError::NoPrivileges {
            action,
            iface: iface.into(),
        };
    }
    XdpError::Os {
        action,
        iface: iface.into(),
        source: io::Error::from_raw_os_error(errno),
    }
}

fn bpf_error(action: impl Into<String>, iface: &str, e: libbpf_rs::Error) -> XdpError {
    let action = action.into();
    if e.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        return XdpError::NoPrivileges {
            action,
            iface: iface.into(),
        };
    }
    XdpError::Bpf {
        action,
        iface: iface.into(),
        source: e,
    }
}

// ---------------------------------------------------------------------------------------
// The classifier
// ---------------------------------------------------------------------------------------

/// An attachment through a bpf_link: closing the fd detaches the program.
#[derive(Debug)]
struct XdpLink {
    #[allow(dead_code)] // held, never read: closing it detaches the program
    fd: OwnedFd,
    mode: AttachMode,
}

/// `podfwd_xdp` loaded for one interface, with its own maps; attached or not.
#[derive(Debug)]
pub struct Classifier {
    iface: String,
    ifindex: u32,
    role: Role,
    mac: [u8; 6],
    /// Declared before `object`, so the link is closed (program detached) first.
    link: Option<XdpLink>,
    pinned: Vec<PathBuf>,
    removed_stale: Vec<AttachedProgram>,
    object: Object,
}

impl Classifier {
    /// Loads the embedded program for `iface` (which must exist in the calling thread's
    /// network namespace) and writes its role and settings. Does not attach it.
    pub fn load(iface: &str, role: Role, settings: &Settings) -> Result<Classifier, XdpError> {
        let ifindex = interface_index(iface)?;
        let mac = interface_mac(iface)?;
        Classifier::open(iface, ifindex, mac, role, settings)
    }

    /// Loads the program for an interface already resolved.
    fn open(
        iface: &str,
        ifindex: u32,
        mac: [u8; 6],
        role: Role,
        settings: &Settings,
    ) -> Result<Classifier, XdpError> {
        let object = load_object(&PODFWD_XDP_OBJECT.0, PROGRAM_NAME, iface)?;
        let c = Classifier {
            iface: iface.to_string(),
            ifindex,
            role,
            mac,
            link: None,
            pinned: Vec::new(),
            removed_stale: Vec::new(),
            object,
        };
        c.check_layout()?;
        let config = config_bytes(role, settings, &Ownership::default(), mac);
        c.write_config(&config)?;
        Ok(c)
    }

    /// Checks the loaded maps against the layout this file writes.
    fn check_layout(&self) -> Result<(), XdpError> {
        let expect = [
            (MAP_CONFIG, MapType::Array, 4, CONFIG_SIZE as u32, 1),
            (
                MAP_ROUTES,
                MapType::LpmTrie,
                ROUTE_KEY_SIZE as u32,
                4,
                MAX_ROUTES,
            ),
            (MAP_XSKS, MapType::Xskmap, 4, 4, MAX_QUEUES),
            (MAP_STATS, MapType::PercpuArray, 4, 8, Stat::COUNT as u32),
            (MAP_VTEPS, MapType::Hash, 4, 4, MAX_VTEPS),
            (MAP_PORTS, MapType::Hash, 4, 4, MAX_PORTS),
            (MAP_EPOCH, MapType::Array, 4, 8, 2),
            (
                MAP_FLOW_CACHE,
                MapType::PercpuArray,
                4,
                FLOW_SLOT_SIZE,
                FLOW_CACHE_SLOTS,
            ),
        ];
        for (name, ty, key, value, entries) in expect {
            let m = self.map(name)?;
            let got = (m.map_type(), m.key_size(), m.value_size(), m.max_entries());
            if got != (ty, key, value, entries) {
                return Err(XdpError::ObjectMismatch {
                    what: format!(
                        "map {name:?} is {got:?}, expected {:?}",
                        (ty, key, value, entries)
                    ),
                });
            }
        }
        Ok(())
    }

    fn map(&self, name: &str) -> Result<libbpf_rs::Map<'_>, XdpError> {
        self.object
            .maps()
            .find(|m| m.name() == name)
            .ok_or_else(|| XdpError::ObjectMismatch {
                what: format!("map {name:?} is missing"),
            })
    }

    fn program(&self) -> Result<libbpf_rs::Program<'_>, XdpError> {
        self.object
            .progs()
            .find(|p| p.name() == PROGRAM_NAME)
            .ok_or_else(|| XdpError::ObjectMismatch {
                what: format!("program {PROGRAM_NAME:?} is missing"),
            })
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The interface index as resolved at load, or at the last attach.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The interface's MAC as read at load (frames to other unicast MACs are passed).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The program's kernel id.
    pub fn program_id(&self) -> Result<u32, XdpError> {
        let prog = self.program()?;
        libbpf_rs::Program::id_from_fd(prog.as_fd())
            .map_err(|e| bpf_error("reading the program id", &self.iface, e))
    }

    /// The mode this classifier is attached in, if it is.
    pub fn attached_mode(&self) -> Option<AttachMode> {
        self.link.as_ref().map(|l| l.mode)
    }

    /// Stale podfwd programs the last [`Classifier::attach`] removed from the interface.
    pub fn removed_stale(&self) -> &[AttachedProgram] {
        &self.removed_stale
    }

    /// Attaches the program through a bpf_link in the given mode. Removes podfwd programs
    /// a previous run attached the legacy way (netlink), refuses when another program is
    /// there. Native mode is requested explicitly: a driver without native XDP is an
    /// error ([`XdpError::NativeUnsupported`]), not a silent fall back to generic; the
    /// caller decides on the fallback.
    pub fn attach(&mut self, mode: XdpMode) -> Result<(), XdpError> {
        let mode = AttachMode::from(mode);
        if let Some(l) = &self.link {
            return Err(XdpError::AlreadyAttached {
                iface: self.iface.clone(),
                mode: l.mode,
            });
        }
        // The interface may have been re-created since load.
        self.ifindex = interface_index(&self.iface)?;
        self.removed_stale = self.remove_stale()?;

        let prog_fd = self.program()?.as_fd().as_raw_fd();
        let opts = libbpf_sys::bpf_link_create_opts {
            sz: mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
            flags: mode.flag(),
            ..Default::default()
        };
        // SAFETY: `prog_fd` is the loaded program's fd, alive while `self.object` is;
        // `opts` is a fully initialised options struct whose `sz` is its own size, and
        // libbpf only reads it during the call.
        let ret = unsafe {
            libbpf_sys::bpf_link_create(prog_fd, self.ifindex as i32, libbpf_sys::BPF_XDP, &opts)
        };
        if ret < 0 {
            return Err(self.attach_error(mode, -ret));
        }
        // SAFETY: bpf_link_create returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(ret) };
        self.link = Some(XdpLink { fd, mode });
        Ok(())
    }

    fn attach_error(&self, mode: AttachMode, errno: i32) -> XdpError {
        let iface = self.iface.clone();
        if errno == libc::EPERM || errno == libc::EACCES {
            return XdpError::NoPrivileges {
                action: format!("attaching {PROGRAM_NAME}"),
                iface,
            };
        }
        // The kernel answers EINVAL for an ifindex that went away meanwhile.
        if errno == libc::EINVAL && interface_index(&self.iface).is_err() {
            return XdpError::NoSuchInterface { iface };
        }
        if errno == libc::EBUSY {
            // Somebody attached between our check and the link: name them.
            if let Ok(progs) = query_programs(&self.iface, self.ifindex) {
                if let Some(p) = progs.into_iter().next() {
                    let (name, id, mode) = (p.name.clone(), p.id, p.mode);
                    return if p.is_podfwds() {
                        XdpError::HeldByLink {
                            iface,
                            name,
                            id,
                            mode,
                        }
                    } else {
                        XdpError::ForeignProgram {
                            iface,
                            name,
                            id,
                            mode,
                        }
                    };
                }
            }
        }
        let source = io::Error::from_raw_os_error(errno);
        if mode == AttachMode::Native && errno != libc::EBUSY {
            return XdpError::NativeUnsupported { iface, source };
        }
        if !xdp_supported() {
            return XdpError::KernelUnsupported {
                what: "XDP programs",
            };
        }
        XdpError::AttachFailed {
            iface,
            mode,
            source,
        }
    }

    /// Detaches the program if attached (dropping the classifier does the same).
    pub fn detach(&mut self) {
        self.link = None;
    }

    /// Removes podfwd's own legacy-attached leftovers; errors on anything else.
    fn remove_stale(&self) -> Result<Vec<AttachedProgram>, XdpError> {
        let mut removed = Vec::new();
        for p in query_programs(&self.iface, self.ifindex)? {
            if !p.is_podfwds() {
                return Err(XdpError::ForeignProgram {
                    iface: self.iface.clone(),
                    name: p.name,
                    id: p.id,
                    mode: p.mode,
                });
            }
            match detach_legacy(self.ifindex, &p) {
                Ok(()) => {
                    eprintln!(
                        "podfwd: removed stale XDP program {:?} (id {}, {} mode) from {:?}, \
                         left attached by an earlier run",
                        p.name, p.id, p.mode, self.iface
                    );
                    removed.push(p);
                }
                // A link owns it: a live process holds it (legacy detach cannot touch it).
                Err(libc::EBUSY) => {
                    return Err(XdpError::HeldByLink {
                        iface: self.iface.clone(),
                        name: p.name,
                        id: p.id,
                        mode: p.mode,
                    })
                }
                // Gone or replaced meanwhile: nothing of ours to remove.
                Err(libc::ENOENT) | Err(libc::EEXIST) => {}
                Err(errno) => {
                    return Err(os_error(
                        format!("removing stale XDP program {:?} (id {})", p.name, p.id),
                        &self.iface,
                        errno,
                    ))
                }
            }
        }
        Ok(removed)
    }

    /// The node's addresses and the ownership rules now in the `config` map.
    pub fn config(&self) -> Result<(Settings, Ownership), XdpError> {
        let value = self
            .map(MAP_CONFIG)?
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| bpf_error("reading the classifier config", &self.iface, e))?;
        let bytes: [u8; CONFIG_SIZE] = value
            .as_deref()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| XdpError::ObjectMismatch {
                what: "the config map has no entry of the expected size".into(),
            })?;
        Ok(config_from_bytes(&bytes))
    }

    /// Replaces the node's addresses; the ownership rules stay.
    pub fn set_settings(&self, settings: &Settings) -> Result<(), XdpError> {
        let (_, own) = self.config()?;
        self.write_config(&config_bytes(self.role, settings, &own, self.mac))
    }

    /// Replaces the ownership rules ([`Ownership::default`] after load); the addresses stay.
    pub fn set_ownership(&self, own: &Ownership) -> Result<(), XdpError> {
        let (settings, _) = self.config()?;
        self.write_config(&config_bytes(self.role, &settings, own, self.mac))
    }

    /// Re-reads the interface's MAC (after `ip link set ... address`) into the config.
    pub fn refresh_mac(&mut self) -> Result<(), XdpError> {
        let mac = interface_mac(&self.iface)?;
        let (settings, own) = self.config()?;
        self.mac = mac;
        self.write_config(&config_bytes(self.role, &settings, &own, mac))
    }

    fn write_config(&self, bytes: &[u8; CONFIG_SIZE]) -> Result<(), XdpError> {
        self.map(MAP_CONFIG)?
            .update(&0u32.to_ne_bytes(), bytes, MapFlags::ANY)
            .map_err(|e| bpf_error("writing the classifier config", &self.iface, e))?;
        self.bump_epoch()
    }

    /// Forgets every answer in the flow cache (on every CPU): the next frame of each flow
    /// asks the kernel again. The owner calls it on every kernel change the answers
    /// depend on; every map update of this classifier calls it too.
    ///
    /// A program run that read the old epoch before this call may still store an answer
    /// under it, which no later run reads: the epoch is read before the kernel is asked.
    /// This writes entry 0 of the `epoch` map only; the program counts the connections
    /// it hands to the kernel in entry 1 itself.
    ///
    /// The `epoch` map is one for every classifier of the process ([`shared_epoch`]), so
    /// this forgets the answers of all of them, and a new connection that one program
    /// hands to the kernel (on the pod side) forgets those of the others (the uplink's,
    /// which would carry the connection's replies).
    pub fn bump_epoch(&self) -> Result<(), XdpError> {
        let shared = shared_epoch().map_err(|why| XdpError::ObjectMismatch {
            what: format!("the shared epoch map: {why}"),
        })?;
        // The lock keeps the written values increasing: two writers must not publish
        // out of order (an older epoch coming back would revive stale answers).
        let mut control = shared
            .control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let next = control.wrapping_add(1).max(1);
        shared
            .map
            .update(&0u32.to_ne_bytes(), &next.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| bpf_error("writing the flow cache epoch", &self.iface, e))?;
        *control = next;
        Ok(())
    }

    /// Replaces the `routes` trie with `prefixes` (host bits ignored): new entries are
    /// added before stale ones are removed, so a route kept across the call never
    /// disappears in between.
    pub fn set_routes(&self, prefixes: &[Ipv4Net]) -> Result<(), XdpError> {
        let wanted: BTreeSet<[u8; ROUTE_KEY_SIZE]> =
            prefixes.iter().map(|p| route_key(p.trunc())).collect();
        if wanted.len() > MAX_ROUTES as usize {
            return Err(XdpError::TooManyRoutes {
                count: wanted.len(),
            });
        }
        let routes = self.map(MAP_ROUTES)?;
        for key in &wanted {
            routes
                .update(key, &ROUTE_OWNED.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| {
                    let prefix = route_from_key(key)
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    bpf_error(format!("adding route {prefix}"), &self.iface, e)
                })?;
        }
        let stale: Vec<Vec<u8>> = routes
            .keys()
            .filter(|k| !wanted.contains(k.as_slice()))
            .collect();
        for key in stale {
            match routes.delete(&key) {
                Ok(()) => {}
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => return Err(bpf_error("removing a stale route", &self.iface, e)),
            }
        }
        self.bump_epoch()
    }

    /// The prefixes currently in the `routes` trie, sorted.
    pub fn routes(&self) -> Result<Vec<Ipv4Net>, XdpError> {
        let routes = self.map(MAP_ROUTES)?;
        let mut out: Vec<Ipv4Net> = routes.keys().filter_map(|k| route_from_key(&k)).collect();
        out.sort();
        Ok(out)
    }

    /// Replaces the known VTEPs (peer node addresses whose VXLAN is decapsulated here):
    /// new entries first, then stale ones removed.
    pub fn set_vteps(&self, vteps: &[Ipv4Addr]) -> Result<(), XdpError> {
        let keys: BTreeSet<[u8; 4]> = vteps.iter().map(|ip| ip.octets()).collect();
        if keys.len() > MAX_VTEPS as usize {
            return Err(XdpError::TooManyEntries {
                map: MAP_VTEPS,
                count: keys.len(),
                max: MAX_VTEPS,
            });
        }
        self.replace_hash(MAP_VTEPS, keys.iter().map(|k| (*k, 1u32)), "known VTEP")
    }

    /// Replaces the interfaces podfwd forwards to (`(ifindex, kind)`).
    pub fn set_ports(&self, ports: &[(u32, PortKind)]) -> Result<(), XdpError> {
        if ports.len() > MAX_PORTS as usize {
            return Err(XdpError::TooManyEntries {
                map: MAP_PORTS,
                count: ports.len(),
                max: MAX_PORTS,
            });
        }
        self.replace_hash(
            MAP_PORTS,
            ports.iter().map(|(i, k)| (i.to_ne_bytes(), *k as u32)),
            "port",
        )
    }

    /// Writes `entries` into the 4-byte-keyed hash `name`, then deletes the keys not
    /// among them: an entry kept across the call never disappears in between.
    fn replace_hash(
        &self,
        name: &str,
        entries: impl Iterator<Item = ([u8; 4], u32)>,
        what: &str,
    ) -> Result<(), XdpError> {
        let map = self.map(name)?;
        let mut wanted = BTreeSet::new();
        for (key, value) in entries {
            map.update(&key, &value.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| bpf_error(format!("adding {what} {key:?}"), &self.iface, e))?;
            wanted.insert(key);
        }
        let stale: Vec<Vec<u8>> = map
            .keys()
            .filter(|k| !wanted.iter().any(|w| w[..] == k[..]))
            .collect();
        for key in stale {
            match map.delete(&key) {
                Ok(()) => {}
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(bpf_error(
                        format!("removing a stale {what}"),
                        &self.iface,
                        e,
                    ))
                }
            }
        }
        self.bump_epoch()
    }

    /// Registers the AF_XDP socket bound to rx queue `queue` of this interface. The
    /// kernel takes its own reference to the socket, and drops the entry by itself when
    /// the socket is closed.
    pub fn register_socket(&self, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::QueueOutOfRange { queue });
        }
        let fd = u32::try_from(fd).map_err(|_| XdpError::Os {
            action: format!("registering the AF_XDP socket of queue {queue}"),
            iface: self.iface.clone(),
            source: io::Error::from_raw_os_error(libc::EBADF),
        })?;
        self.map(MAP_XSKS)?
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| {
                bpf_error(
                    format!(
                        "registering fd {fd} as the AF_XDP socket of queue {queue} \
                         (it must be an AF_XDP socket bound to this interface and queue)"
                    ),
                    &self.iface,
                    e,
                )
            })
    }

    /// Removes queue `queue`'s socket: its frames fall back to the kernel.
    pub fn unregister_socket(&self, queue: u32) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::QueueOutOfRange { queue });
        }
        match self.map(MAP_XSKS)?.delete(&queue.to_ne_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(bpf_error(
                format!("unregistering the AF_XDP socket of queue {queue}"),
                &self.iface,
                e,
            )),
        }
    }

    /// The counters, summed over CPUs.
    pub fn stats(&self) -> Result<ClassifierStats, XdpError> {
        let map = self.map(MAP_STATS)?;
        let mut stats = ClassifierStats::default();
        for s in Stat::ALL {
            let per_cpu = map
                .lookup_percpu(&(s as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| bpf_error("reading the classifier stats", &self.iface, e))?
                .unwrap_or_default();
            stats.counts[s as usize] = per_cpu
                .iter()
                .filter_map(|v| v.get(..8)?.try_into().ok().map(u64::from_ne_bytes))
                .sum();
        }
        Ok(stats)
    }

    /// Pins the four maps under `dir/<iface>/` for `bpftool map dump pinned ...`.
    /// Debugging only: the data path needs no pins. The pins are removed on drop, but a
    /// killed process leaves them behind (harmless: no program is attached through them).
    pub fn pin_maps(&mut self, dir: &Path) -> Result<(), XdpError> {
        let on_bpffs = |p: &Path| statfs_type(p).map(|t| t == BPF_FS_MAGIC);
        let existing = dir
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        match on_bpffs(existing) {
            Ok(true) => {}
            Ok(false) => {
                return Err(XdpError::BpfFsMissing {
                    path: dir.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(XdpError::Os {
                    action: format!("checking that {} is on bpffs", dir.display()),
                    iface: self.iface.clone(),
                    source: e,
                })
            }
        }
        let sub = dir.join(&self.iface);
        std::fs::create_dir_all(&sub).map_err(|e| XdpError::Os {
            action: format!("creating {}", sub.display()),
            iface: self.iface.clone(),
            source: e,
        })?;
        for name in [MAP_CONFIG, MAP_ROUTES, MAP_XSKS, MAP_STATS] {
            let path = sub.join(name);
            let mut map = self
                .object
                .maps_mut()
                .find(|m| m.name() == name)
                .ok_or_else(|| XdpError::ObjectMismatch {
                    what: format!("map {name:?} is missing"),
                })?;
            map.pin(&path)
                .map_err(|e| bpf_error(format!("pinning {}", path.display()), &self.iface, e))?;
            self.pinned.push(path);
        }
        Ok(())
    }

    /// Runs the program once over `frame` (BPF_PROG_TEST_RUN); returns the XDP action.
    #[cfg(test)]
    fn run_frame(&self, frame: &[u8]) -> u32 {
        self.test_run(frame, 0, 1)
            .expect("BPF_PROG_TEST_RUN")
            .action
    }

    /// Runs the program `repeat` times over `frame` with `BPF_PROG_TEST_RUN`, as if it
    /// had arrived on the device `ingress_ifindex` (0: none; the kernel FIB and conntrack
    /// lookups need a device of this namespace), rx queue 0. Nothing is sent: an
    /// `XDP_REDIRECT` is only returned. The program's counters and caches are updated as
    /// for real traffic. For byte-level tests and for measuring the per-frame cost.
    pub fn test_run(
        &self,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<TestRun, XdpError> {
        // struct xdp_md: data (metadata length: 0), data_end (must be the frame's length),
        // data_meta (must be 0), ingress_ifindex, rx_queue_index, egress_ifindex.
        let mut ctx = [0u8; 24];
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        ctx[4..8].copy_from_slice(&len.to_ne_bytes());
        ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
        let input = libbpf_rs::ProgramInput {
            data_in: Some(frame),
            context_in: (ingress_ifindex != 0).then_some(&mut ctx[..]),
            repeat,
            ..Default::default()
        };
        let out = self
            .object
            .progs_mut()
            .find(|p| p.name() == PROGRAM_NAME)
            .ok_or_else(|| XdpError::ObjectMismatch {
                what: format!("program {PROGRAM_NAME:?} is missing"),
            })?
            .test_run(input)
            .map_err(|e| bpf_error("BPF_PROG_TEST_RUN".to_string(), &self.iface, e))?;
        Ok(TestRun {
            action: out.return_value,
            per_run: out.duration,
        })
    }
}

/// What [`Classifier::test_run`] measured.
#[derive(Debug, Clone, Copy)]
pub struct TestRun {
    /// The XDP action the program returned (`XDP_PASS` = 2, `XDP_REDIRECT` = 4, ...).
    pub action: u32,
    /// The kernel's average time per run.
    pub per_run: std::time::Duration,
}

impl Drop for Classifier {
    fn drop(&mut self) {
        for p in self.pinned.drain(..) {
            let _ = std::fs::remove_file(&p);
            if let Some(dir) = p.parent() {
                let _ = std::fs::remove_dir(dir); // only once empty
            }
        }
        // `link` then `object` drop after this: detach, then unload.
    }
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

/// Opens and loads a BPF object from memory, capturing the verifier log on failure.
/// The `epoch` map every classifier of this process shares (see `bpf/podfwd_xdp.bpf.c`),
/// with the control epoch last written to it.
pub(crate) struct SharedEpoch {
    map: libbpf_rs::MapHandle,
    control: std::sync::Mutex<u64>,
}

/// The process's shared `epoch` map, created on first use. BPF maps belong to no
/// network namespace, so classifiers in several namespaces (tests, `podfwd lab`) share
/// it too, which only makes them forget answers a little more often.
pub(crate) fn shared_epoch() -> Result<&'static SharedEpoch, String> {
    static SHARED: std::sync::OnceLock<Result<SharedEpoch, String>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            let opts = libbpf_sys::bpf_map_create_opts {
                sz: mem::size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
                ..Default::default()
            };
            libbpf_rs::MapHandle::create(MapType::Array, Some(MAP_EPOCH), 4, 8, 2, &opts)
                .map(|map| SharedEpoch {
                    map,
                    control: std::sync::Mutex::new(0),
                })
                .map_err(|e| format!("creating it: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn load_object(bytes: &[u8], program: &str, iface: &str) -> Result<Object, XdpError> {
    let open =
        ObjectBuilder::default()
            .open_memory(bytes)
            .map_err(|e| XdpError::ObjectMismatch {
                what: format!("libbpf cannot open the embedded object: {e:#}"),
            })?;
    let mut log = vec![0u8; VERIFIER_LOG_SIZE];
    let obj_ptr = open.take_ptr();
    // The classifier's `epoch` map is the process's shared one (test fixtures have none).
    // libbpf renames a reused map after the map it reuses: both are called `epoch`.
    let epoch_name = CString::new(MAP_EPOCH).expect("no NUL in a map name");
    // SAFETY: `obj_ptr` is a valid open object we own; the name is NUL-terminated.
    let epoch_map =
        unsafe { libbpf_sys::bpf_object__find_map_by_name(obj_ptr.as_ptr(), epoch_name.as_ptr()) };
    if !epoch_map.is_null() {
        let shared = shared_epoch().map_err(|why| XdpError::ObjectMismatch {
            what: format!("the shared epoch map: {why}"),
        })?;
        // SAFETY: `epoch_map` belongs to the open object; libbpf dups the fd, which stays
        // valid for the process (the map handle is in a static).
        let rc =
            unsafe { libbpf_sys::bpf_map__reuse_fd(epoch_map, shared.map.as_fd().as_raw_fd()) };
        if rc != 0 {
            // SAFETY: ownership goes back to libbpf-rs, which closes the object on drop.
            drop(unsafe { Object::from_ptr(obj_ptr) });
            return Err(XdpError::Os {
                action: "sharing the epoch map".into(),
                iface: iface.to_string(),
                source: io::Error::from_raw_os_error(-rc),
            });
        }
    }
    // SAFETY: `obj_ptr` is a valid open object that we own; programs are iterated with
    // libbpf's own iterator. Each program keeps a pointer to `log`, which outlives the
    // load below (it is declared before `object` and dropped after it) and is only read
    // after the load returned.
    unsafe {
        let mut prog = libbpf_sys::bpf_object__next_program(obj_ptr.as_ptr(), std::ptr::null_mut());
        while !prog.is_null() {
            libbpf_sys::bpf_program__set_log_buf(prog, log.as_mut_ptr().cast(), log.len() as _);
            prog = libbpf_sys::bpf_object__next_program(obj_ptr.as_ptr(), prog);
        }
    }
    // SAFETY: `obj_ptr` is the open, not yet loaded object we own.
    let ret = unsafe { libbpf_sys::bpf_object__load(obj_ptr.as_ptr()) };
    // SAFETY: ownership of the object goes back to libbpf-rs, which closes it on drop;
    // nothing else uses `obj_ptr` from here on.
    let object = unsafe { Object::from_ptr(obj_ptr) };
    if ret == 0 {
        return Ok(object);
    }
    drop(object);
    let errno = -ret;
    let text = verifier_log_tail(&log);
    if !text.is_empty() {
        return Err(XdpError::VerifierRejected {
            program: program.to_string(),
            source: io::Error::from_raw_os_error(errno),
            log: text,
        });
    }
    if errno == libc::EPERM || errno == libc::EACCES {
        return Err(XdpError::NoPrivileges {
            action: format!("loading {program}"),
            iface: iface.to_string(),
        });
    }
    if !xdp_supported() {
        return Err(XdpError::KernelUnsupported {
            what: "XDP programs",
        });
    }
    if !xskmap_supported() {
        return Err(XdpError::KernelUnsupported {
            what: "AF_XDP socket maps (XSKMAP)",
        });
    }
    Err(XdpError::Os {
        action: format!("loading {program}"),
        iface: iface.to_string(),
        source: io::Error::from_raw_os_error(errno),
    })
}

/// The last lines of a NUL-terminated verifier log.
fn verifier_log_tail(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(VERIFIER_LOG_TAIL_LINES);
    lines[skip..].join("\n")
}

fn xdp_supported() -> bool {
    // SAFETY: a probe with no options (NULL is allowed) that only makes bpf syscalls.
    unsafe {
        libbpf_sys::libbpf_probe_bpf_prog_type(libbpf_sys::BPF_PROG_TYPE_XDP, std::ptr::null()) == 1
    }
}

fn xskmap_supported() -> bool {
    // SAFETY: as in `xdp_supported`.
    unsafe {
        libbpf_sys::libbpf_probe_bpf_map_type(libbpf_sys::BPF_MAP_TYPE_XSKMAP, std::ptr::null())
            == 1
    }
}

// ---------------------------------------------------------------------------------------
// Interfaces and what is attached to them
// ---------------------------------------------------------------------------------------

fn interface_cname(iface: &str) -> Result<CString, XdpError> {
    if iface.is_empty() || iface.len() > crate::config::MAX_IFNAME_LEN {
        return Err(XdpError::NoSuchInterface {
            iface: iface.into(),
        });
    }
    CString::new(iface).map_err(|_| XdpError::NoSuchInterface {
        iface: iface.into(),
    })
}

/// The interface's index in the calling thread's network namespace.
fn interface_index(iface: &str) -> Result<u32, XdpError> {
    let name = interface_cname(iface)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index != 0 {
        return Ok(index);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) => Err(XdpError::NoSuchInterface {
            iface: iface.into(),
        }),
        _ => Err(XdpError::Os {
            action: "looking up the interface index".into(),
            iface: iface.into(),
            source: e,
        }),
    }
}

/// The interface's Ethernet address (SIOCGIFHWADDR).
fn interface_mac(iface: &str) -> Result<[u8; 6], XdpError> {
    let name = interface_cname(iface)?;
    let os = |action: &str, source| XdpError::Os {
        action: action.into(),
        iface: iface.into(),
        source,
    };
    // Any socket will do for SIOCGIFHWADDR; it is asked in the socket's namespace.
    let sock = UnixDatagram::unbound().map_err(|e| os("opening a socket", e))?;
    // SAFETY: `ifreq` is a plain C struct (a name and a union of plain members) for
    // which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads `ifr_name` (NUL-terminated: the name is at most 15
    // bytes in a 16-byte zeroed array) and writes `ifr_hwaddr` inside `req`, which we own.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut req) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODEV) => Err(XdpError::NoSuchInterface {
                iface: iface.into(),
            }),
            _ => Err(os("reading the MAC address", e)),
        };
    }
    // SAFETY: the ioctl succeeded, so the kernel filled the `ifru_hwaddr` member.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    if sa.sa_family != libc::ARPHRD_ETHER {
        return Err(XdpError::NotEthernet {
            iface: iface.into(),
            hw_type: sa.sa_family,
        });
    }
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = src as u8;
    }
    Ok(mac)
}

/// The XDP programs attached to `iface` (in the calling thread's network namespace), in
/// any mode, with their names.
pub fn attached_programs(iface: &str) -> Result<Vec<AttachedProgram>, XdpError> {
    let ifindex = interface_index(iface)?;
    query_programs(iface, ifindex)
}

fn query_programs(iface: &str, ifindex: u32) -> Result<Vec<AttachedProgram>, XdpError> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: `opts` is initialised with its own size; libbpf writes only inside it.
    let ret = unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if ret < 0 {
        return Err(os_error("querying attached XDP programs", iface, -ret));
    }
    let mut out = Vec::new();
    for (id, mode) in [
        (opts.drv_prog_id, AttachMode::Native),
        (opts.skb_prog_id, AttachMode::Generic),
        (opts.hw_prog_id, AttachMode::Offload),
    ] {
        if id == 0 {
            continue;
        }
        let name = match program_name(id) {
            Ok(n) => n,
            // Detached and freed since the query.
            Err(libc::ENOENT) => continue,
            Err(errno) => {
                return Err(os_error(
                    format!("reading the name of XDP program id {id}"),
                    iface,
                    errno,
                ))
            }
        };
        out.push(AttachedProgram { id, name, mode });
    }
    Ok(out)
}

fn program_fd(id: u32) -> Result<OwnedFd, i32> {
    // SAFETY: plain syscall wrapper; returns a new fd or a negative errno.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: `fd` is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn program_name(id: u32) -> Result<String, i32> {
    let fd = program_fd(id)?;
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a zeroed bpf_prog_info and `len` its size, so the kernel writes
    // within it; no pointer members are set, so it writes nothing elsewhere.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret < 0 {
        return Err(-ret);
    }
    let bytes: Vec<u8> = info.name.iter().map(|&c| c as u8).collect();
    let name = CStr::from_bytes_until_nul(&bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
    Ok(name)
}

/// Detaches a legacy (netlink) attachment of exactly `prog`; EBUSY when a link holds it.
fn detach_legacy(ifindex: u32, prog: &AttachedProgram) -> Result<(), i32> {
    let fd = program_fd(prog.id)?;
    let opts = libbpf_sys::bpf_xdp_attach_opts {
        sz: mem::size_of::<libbpf_sys::bpf_xdp_attach_opts>() as _,
        // Expected program: the kernel refuses (EEXIST) if another one is there by now.
        old_prog_fd: fd.as_raw_fd(),
        ..Default::default()
    };
    // SAFETY: `opts` is initialised with its own size and `fd` stays open for the call.
    let ret = unsafe { libbpf_sys::bpf_xdp_detach(ifindex as i32, prog.mode.flag(), &opts) };
    if ret < 0 {
        return Err(-ret);
    }
    Ok(())
}

fn statfs_type(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `statfs` is a plain C struct; all-zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is ours; statfs writes only into it.
    let ret = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64 but not everywhere
    Ok(st.f_type as i64)
}

#[cfg(test)]
mod tests {
    //! Layout tests run anywhere; classification tests load the program (root or CAP_BPF,
    //! else `SKIP:`) and run frames through it with BPF_PROG_TEST_RUN, which needs no
    //! interface. Attaching and real traffic: netns-tests/xdp.rs.
    use super::*;
    use crate::config::Config;
    use std::io::Write as _;

    static REJECT_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
        env!("OUT_DIR"),
        "/reject_unchecked.bpf.o"
    )));

    const XDP_PASS: u32 = 2;
    const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 168, 0, 2);
    const PEER_NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 168, 0, 3);
    const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 5);
    const PEER_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
    const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn settings() -> Settings {
        Settings {
            node_ip: NODE_IP,
            vxlan_port: 8472,
            pod_cidr: "10.244.0.0/24".parse().unwrap(),
            vni: 1,
            vtep_mac: OUR_MAC,
            vtep_ifindex: 0,
        }
    }

    /// `own` without the kernel FIB and conntrack lookups: BPF_PROG_TEST_RUN runs in the
    /// test process's namespace, whose routes are not the test's to know. Those rules
    /// are tested in netns-tests/slowpath.rs, in namespaces built for them.
    fn offline(own: Ownership) -> Ownership {
        own.without_kernel_checks()
    }

    fn peer_subnet() -> Ipv4Net {
        "10.244.1.0/24".parse().unwrap()
    }

    /// Loads a classifier for a made-up interface, or prints `SKIP:` without privileges.
    fn classifier(role: Role) -> Option<Classifier> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            let _ = writeln!(
                io::stderr(),
                "SKIP: loading BPF programs needs root (CAP_BPF)"
            );
            return None;
        }
        let c = Classifier::open("test0", 1, OUR_MAC, role, &settings()).expect("load");
        c.set_ownership(&offline(Ownership::default())).unwrap();
        c.set_routes(&[peer_subnet()]).unwrap();
        c.set_vteps(&[PEER_NODE_IP]).unwrap();
        Some(c)
    }

    // --- frames ---------------------------------------------------------------------

    fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(14 + payload.len());
        f.extend_from_slice(&dst);
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, proto: u8, l4: &[u8]) -> Vec<u8> {
        let total = (20 + l4.len()) as u16;
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 1, 0x40, 0, ttl, proto, 0, 0]); // id 1, DF
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        let sum = checksum(&h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        h.extend_from_slice(l4);
        h
    }

    fn checksum(b: &[u8]) -> u16 {
        let mut sum: u32 = b
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&40000u16.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    /// A UDP datagram in IPv4 in Ethernet to our MAC.
    fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, dport: u16) -> Vec<u8> {
        ethernet(
            OUR_MAC,
            0x0800,
            &ipv4(src, dst, ttl, 17, &udp(dport, &[0xab; 18])),
        )
    }

    fn vxlan_frame(ttl: u8) -> Vec<u8> {
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0]; // I flag, VNI 1
        vx.extend_from_slice(&udp_frame(
            Ipv4Addr::new(10, 244, 1, 5),
            LOCAL_POD,
            64,
            5000,
        ));
        ethernet(
            OUR_MAC,
            0x0800,
            &ipv4(PEER_NODE_IP, NODE_IP, ttl, 17, &udp(8472, &vx)),
        )
    }

    fn arp(dst: [u8; 6]) -> Vec<u8> {
        let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
        a.extend_from_slice(&PEER_MAC);
        a.extend_from_slice(&PEER_NODE_IP.octets());
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&NODE_IP.octets());
        ethernet(dst, 0x0806, &a)
    }

    /// Runs one frame; returns the action and the counters it moved.
    fn classify(c: &Classifier, frame: &[u8]) -> (u32, Vec<Stat>) {
        let before = c.stats().unwrap();
        let action = c.run_frame(frame);
        let after = c.stats().unwrap();
        let moved = Stat::ALL
            .iter()
            .copied()
            .filter(|&s| after.get(s) != before.get(s))
            .collect();
        (action, moved)
    }

    fn assert_owned(c: &Classifier, frame: &[u8], why: Stat) {
        assert_eq!(
            classify(c, frame),
            (XDP_PASS, vec![Stat::NoSocket, why]),
            "owned as {why}, falling back to the kernel without a socket"
        );
    }

    fn assert_passed(c: &Classifier, frame: &[u8], why: Stat) {
        assert_eq!(classify(c, frame), (XDP_PASS, vec![why]), "passed as {why}");
    }

    // --- layout (no privileges) ------------------------------------------------------

    #[test]
    fn stats_are_named_uniquely_in_map_order_and_split_into_owned_and_passed() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
        let names: BTreeSet<_> = Stat::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), Stat::COUNT);
        let passes: Vec<_> = Stat::ALL.iter().filter(|s| s.is_pass()).collect();
        assert_eq!(passes.len(), 16);
        assert!(passes.iter().all(|s| s.name().starts_with("pass_")));
    }

    #[test]
    fn stats_sum_owned_and_kernel_bound_frames() {
        let mut s = ClassifierStats::default();
        s.counts[Stat::Redirected as usize] = 5;
        s.counts[Stat::NoSocket as usize] = 2;
        s.counts[Stat::OwnedRoute as usize] = 7;
        s.counts[Stat::PassLocal as usize] = 3;
        s.counts[Stat::PassTtl as usize] = 1;
        assert_eq!(s.owned(), 7);
        assert_eq!(s.to_kernel(), 6);
        assert_eq!(s[Stat::PassLocal], 3);
        assert_eq!(s.iter().count(), Stat::COUNT);
    }

    #[test]
    fn config_bytes_follow_the_c_layout_in_network_order() {
        let own = Ownership {
            vxlan: true,
            local_pods: false,
            routes_on_uplink: true,
            own_mac_only: true,
            kernel_fib: false,
            conntrack: true,
            flow_cache: false,
            flow_cache_conntrack: false,
        };
        let mut set = settings();
        set.vni = 0x12_3456;
        set.vtep_ifindex = 7;
        set.vtep_mac = PEER_MAC;
        let b = config_bytes(Role::Pod, &set, &own, OUR_MAC);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), ROLE_POD);
        assert_eq!(
            u32::from_ne_bytes(b[4..8].try_into().unwrap()),
            F_VXLAN | F_UPLINK_ROUTES | F_OWN_MAC_ONLY | F_CONNTRACK
        );
        assert_eq!(b[8..12], [10, 168, 0, 2]);
        assert_eq!(b[12..16], [10, 244, 0, 0]);
        assert_eq!(b[16..20], [255, 255, 255, 0]);
        assert_eq!(b[20..22], [0x21, 0x18], "8472 big-endian");
        assert_eq!(b[22..28], OUR_MAC);
        assert_eq!(u32::from_ne_bytes(b[28..32].try_into().unwrap()), 0x12_3456);
        assert_eq!(u32::from_ne_bytes(b[32..36].try_into().unwrap()), 7);
        assert_eq!(b[36..42], PEER_MAC);
        assert_eq!(b[42..48], [0; 6]);
        assert_eq!(config_from_bytes(&b), (set, own));
    }

    #[test]
    fn host_bits_of_the_pod_cidr_are_dropped() {
        let mut s = settings();
        s.pod_cidr = "10.244.0.7/24".parse().unwrap();
        let b = config_bytes(Role::Uplink, &s, &Ownership::default(), OUR_MAC);
        assert_eq!(b[12..16], [10, 244, 0, 0]);
    }

    #[test]
    fn route_keys_round_trip_and_carry_the_prefix_length_first() {
        let p: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        let k = route_key(p);
        assert_eq!(u32::from_ne_bytes(k[0..4].try_into().unwrap()), 24);
        assert_eq!(k[4..8], [10, 244, 1, 0]);
        assert_eq!(route_from_key(&k), Some(p));
        assert_eq!(route_from_key(&k[..5]), None);
    }

    #[test]
    fn ownership_follows_the_mode() {
        let v = Ownership::for_mode(Mode::Vxlan);
        assert!(v.vxlan && !v.local_pods);
        let h = Ownership::for_mode(Mode::HostGw);
        assert!(!h.vxlan && h.local_pods);
        let a = Ownership::for_mode(Mode::Auto);
        assert!(a.vxlan && a.local_pods);
        for o in [v, h, a, Ownership::default()] {
            assert!(o.own_mac_only && !o.routes_on_uplink);
            assert!(
                o.kernel_fib && o.conntrack,
                "the slow-path checks are on in every mode"
            );
            assert_eq!(Ownership::from_flags(o.flags()), o);
        }
    }

    #[test]
    fn settings_and_peer_subnets_come_from_the_plan() {
        let c = Config::from_toml_str(include_str!("../podfwd.example.toml")).unwrap();
        let plan = Plan::resolve(&c, None).unwrap();
        let s = Settings::from_plan(&plan);
        assert_eq!(
            (s.node_ip, s.vxlan_port, s.pod_cidr),
            (plan.node.ip, plan.node.vxlan_port, plan.node.pod_cidr)
        );
        let peers = peer_subnets(&plan);
        assert!(!peers.is_empty());
        assert!(!peers.contains(&plan.node.pod_cidr));
        assert_eq!(Role::from_port_role(PortRole::Tun), None);
        assert_eq!(Role::from_port_role(PortRole::Uplink), Some(Role::Uplink));
    }

    #[test]
    fn loading_for_a_missing_interface_names_it() {
        let err = Classifier::load("pfx-nosuch0", Role::Pod, &settings()).unwrap_err();
        assert!(
            matches!(&err, XdpError::NoSuchInterface { iface } if iface == "pfx-nosuch0"),
            "{err}"
        );
        assert!(err.to_string().contains("\"pfx-nosuch0\""), "{err}");
        let err = Classifier::load("a-name-longer-than-15", Role::Pod, &settings()).unwrap_err();
        assert!(matches!(err, XdpError::NoSuchInterface { .. }), "{err}");
    }

    #[test]
    fn privilege_errors_say_which_capabilities_are_needed() {
        let e = os_error("attaching", "eth0", libc::EPERM);
        let msg = e.to_string();
        assert!(
            msg.contains("CAP_NET_ADMIN") && msg.contains("CAP_BPF"),
            "{msg}"
        );
        assert!(msg.contains("\"eth0\""), "{msg}");
    }

    #[test]
    fn loading_without_privileges_says_which_capabilities_are_needed() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let _ = writeln!(io::stderr(), "SKIP: runs only without root");
            return;
        }
        let err = Classifier::open("test0", 1, OUR_MAC, Role::Pod, &settings()).unwrap_err();
        assert!(matches!(err, XdpError::NoPrivileges { .. }), "{err}");
        assert!(err.to_string().contains("CAP_BPF"), "{err}");
    }

    // --- the loaded program (root) ----------------------------------------------------

    #[test]
    fn embedded_object_loads_with_its_six_maps() {
        let Some(c) = classifier(Role::Pod) else {
            return;
        };
        let types: Vec<_> = [
            MAP_CONFIG, MAP_ROUTES, MAP_XSKS, MAP_STATS, MAP_VTEPS, MAP_PORTS,
        ]
        .iter()
        .map(|n| c.map(n).unwrap().map_type())
        .collect();
        assert_eq!(
            types,
            [
                MapType::Array,
                MapType::LpmTrie,
                MapType::Xskmap,
                MapType::PercpuArray,
                MapType::Hash,
                MapType::Hash
            ]
        );
        assert!(c.program_id().unwrap() > 0);
        assert_eq!(c.attached_mode(), None);
        assert_eq!(c.stats().unwrap(), ClassifierStats::default());
        assert_eq!(
            c.config().unwrap(),
            (settings(), offline(Ownership::default()))
        );
    }

    #[test]
    fn a_program_the_verifier_rejects_comes_back_with_the_verifier_log() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            let _ = writeln!(io::stderr(), "SKIP: loading BPF programs needs root");
            return;
        }
        let err = load_object(&REJECT_OBJECT.0, "unchecked_read", "test0").unwrap_err();
        let XdpError::VerifierRejected { log, program, .. } = &err else {
            panic!("expected a verifier rejection, got {err}");
        };
        assert_eq!(program, "unchecked_read");
        assert!(log.contains("invalid access to packet"), "{log}");
        assert!(err.to_string().contains("verifier log"), "{err}");
    }

    #[test]
    fn pod_interface_owns_traffic_to_peer_subnets_only() {
        let Some(c) = classifier(Role::Pod) else {
            return;
        };
        assert_owned(
            &c,
            &udp_frame(LOCAL_POD, PEER_POD, 64, 53),
            Stat::OwnedRoute,
        );
        assert_passed(&c, &udp_frame(LOCAL_POD, NODE_IP, 64, 53), Stat::PassLocal);
        assert_passed(
            &c,
            &udp_frame(LOCAL_POD, Ipv4Addr::new(10, 244, 0, 9), 64, 53),
            Stat::PassNotOwned,
        );
        assert_passed(
            &c,
            &udp_frame(LOCAL_POD, ELSEWHERE, 64, 53),
            Stat::PassNotOwned,
        );
        // The uplink rules do not apply on a pod interface.
        assert_passed(&c, &vxlan_frame(64), Stat::PassLocal);
    }

    #[test]
    fn ttl_of_one_goes_to_the_kernel_for_its_time_exceeded() {
        let Some(c) = classifier(Role::Pod) else {
            return;
        };
        assert_passed(&c, &udp_frame(LOCAL_POD, PEER_POD, 1, 53), Stat::PassTtl);
        assert_passed(&c, &udp_frame(LOCAL_POD, PEER_POD, 0, 53), Stat::PassTtl);
        assert_owned(&c, &udp_frame(LOCAL_POD, PEER_POD, 2, 53), Stat::OwnedRoute);
    }

    #[test]
    fn uplink_owns_vxlan_to_the_node_whatever_the_outer_ttl() {
        let Some(c) = classifier(Role::Uplink) else {
            return;
        };
        assert_owned(&c, &vxlan_frame(64), Stat::OwnedVxlan);
        assert_owned(&c, &vxlan_frame(1), Stat::OwnedVxlan);
        // UDP to another port of the node, and the node's own traffic, are the kernel's.
        assert_passed(
            &c,
            &udp_frame(PEER_NODE_IP, NODE_IP, 64, 4789),
            Stat::PassLocal,
        );
        let icmp = ethernet(
            OUR_MAC,
            0x0800,
            &ipv4(PEER_NODE_IP, NODE_IP, 64, 1, &[8, 0, 0, 0, 0, 1, 0, 1]),
        );
        assert_passed(&c, &icmp, Stat::PassLocal);
    }

    /// A VXLAN frame whose inner IPv4 header is `inner` (Ethernet to `inner_mac`), VNI `vni`.
    fn vxlan_frame_with(src: Ipv4Addr, vni: u32, inner_mac: [u8; 6], inner: &[u8]) -> Vec<u8> {
        let v = vni.to_be_bytes();
        let mut vx = vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0];
        let mut ieth = inner_mac.to_vec();
        ieth.extend_from_slice(&PEER_MAC);
        ieth.extend_from_slice(&0x0800u16.to_be_bytes());
        ieth.extend_from_slice(inner);
        vx.extend_from_slice(&ieth);
        ethernet(
            OUR_MAC,
            0x0800,
            &ipv4(src, NODE_IP, 64, 17, &udp(8472, &vx)),
        )
    }

    #[test]
    fn vxlan_the_kernel_vtep_must_handle_is_passed_and_vxlan_to_drop_is_owned() {
        let Some(c) = classifier(Role::Uplink) else {
            return;
        };
        let inner = |ttl: u8| ipv4(PEER_POD, LOCAL_POD, ttl, 17, &udp(53, &[1; 8]));
        let good = vxlan_frame_with(PEER_NODE_IP, 1, OUR_MAC, &inner(64));
        assert_owned(&c, &good, Stat::OwnedVxlan);
        // Exceptions the kernel's VXLAN device decapsulates and handles.
        let expiring = vxlan_frame_with(PEER_NODE_IP, 1, OUR_MAC, &inner(1));
        assert_passed(&c, &expiring, Stat::PassTtl);
        let mut opts = inner(64);
        opts[0] = 0x46; // IHL 6: one option word (the bytes after are its content)
        assert_passed(
            &c,
            &vxlan_frame_with(PEER_NODE_IP, 1, OUR_MAC, &opts),
            Stat::PassIpOptions,
        );
        let mut frag = inner(64);
        frag[6] = 0x20; // MF
        assert_passed(
            &c,
            &vxlan_frame_with(PEER_NODE_IP, 1, OUR_MAC, &frag),
            Stat::PassFragment,
        );
        let to_node = ipv4(PEER_POD, NODE_IP, 64, 17, &udp(53, &[1; 8]));
        assert_passed(
            &c,
            &vxlan_frame_with(PEER_NODE_IP, 1, OUR_MAC, &to_node),
            Stat::PassLocal,
        );
        // What the pipeline drops with a reason stays podfwd's (and the kernel's VTEP
        // would drop it too): unknown VTEP, another VNI, another inner MAC.
        let unknown = vxlan_frame_with(ELSEWHERE, 1, OUR_MAC, &inner(64));
        assert_owned(&c, &unknown, Stat::OwnedVxlan);
        let other_vni = vxlan_frame_with(PEER_NODE_IP, 2, OUR_MAC, &inner(64));
        assert_owned(&c, &other_vni, Stat::OwnedVxlan);
        let other_mac = vxlan_frame_with(PEER_NODE_IP, 1, PEER_MAC, &inner(1));
        assert_owned(&c, &other_mac, Stat::OwnedVxlan);
        // Once known, a VTEP's exceptions go to the kernel like any peer's (the daemon
        // lists every peer, whatever its egress mode: auto's on-link peers too).
        let from_new = vxlan_frame_with(ELSEWHERE, 1, OUR_MAC, &inner(1));
        assert_owned(&c, &from_new, Stat::OwnedVxlan);
        c.set_vteps(&[PEER_NODE_IP, ELSEWHERE]).unwrap();
        assert_passed(&c, &from_new, Stat::PassTtl);
    }

    #[test]
    fn fragmented_vxlan_goes_to_the_kernel() {
        let Some(c) = classifier(Role::Uplink) else {
            return;
        };
        let mut first = vxlan_frame(64);
        first[14 + 6] = 0x20; // MF, offset 0
        assert_passed(&c, &first, Stat::PassFragment);
        let mut later = vxlan_frame(64);
        later[14 + 6..14 + 8].copy_from_slice(&[0x00, 0xb9]); // offset 185 * 8
        assert_passed(&c, &later, Stat::PassFragment);
    }

    #[test]
    fn uplink_ownership_follows_the_mode() {
        let Some(c) = classifier(Role::Uplink) else {
            return;
        };
        let inbound = udp_frame(PEER_POD, LOCAL_POD, 63, 53);
        let transit = udp_frame(ELSEWHERE, PEER_POD, 63, 53);

        c.set_ownership(&offline(Ownership::for_mode(Mode::HostGw)))
            .unwrap();
        assert_owned(&c, &inbound, Stat::OwnedLocalPods);
        assert_passed(&c, &vxlan_frame(64), Stat::PassLocal);
        assert_passed(&c, &transit, Stat::PassNotOwned);

        c.set_ownership(&offline(Ownership::for_mode(Mode::Vxlan)))
            .unwrap();
        assert_owned(&c, &vxlan_frame(64), Stat::OwnedVxlan);
        assert_passed(&c, &inbound, Stat::PassNotOwned);

        c.set_ownership(&offline(Ownership {
            routes_on_uplink: true,
            ..Ownership::for_mode(Mode::Vxlan)
        }))
        .unwrap();
        assert_owned(&c, &transit, Stat::OwnedRoute);
    }

    #[test]
    fn frames_podfwd_never_owns_are_passed_with_their_reason() {
        let Some(c) = classifier(Role::Pod) else {
            return;
        };
        let owned = udp_frame(LOCAL_POD, PEER_POD, 64, 53);
        assert_passed(&c, &arp([0xff; 6]), Stat::PassL2Group);
        assert_passed(&c, &arp(OUR_MAC), Stat::PassNonIpv4);
        let ipv6 = ethernet(OUR_MAC, 0x86dd, &[0x60; 40]);
        assert_passed(&c, &ipv6, Stat::PassNonIpv4);

        let mut multicast = owned.clone();
        multicast[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
        assert_passed(&c, &multicast, Stat::PassL2Group);
        let mut other_host = owned.clone();
        other_host[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
        assert_passed(&c, &other_host, Stat::PassOtherHost);

        let mut vlan = owned[..12].to_vec();
        vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        vlan.extend_from_slice(&owned[12..]);
        assert_passed(&c, &vlan, Stat::PassVlan);

        // IHL 6: one word of options (NOPs), total length grown to match.
        let ip = ipv4(LOCAL_POD, PEER_POD, 64, 17, &udp(53, &[0; 8]));
        let mut opt = ip[..20].to_vec();
        opt[0] = 0x46;
        let total = u16::from_be_bytes([opt[2], opt[3]]) + 4;
        opt[2..4].copy_from_slice(&total.to_be_bytes());
        opt.extend_from_slice(&[1, 1, 1, 0]);
        opt.extend_from_slice(&ip[20..]);
        assert_passed(&c, &ethernet(OUR_MAC, 0x0800, &opt), Stat::PassIpOptions);

        let truncated = owned[..14 + 12].to_vec();
        assert_passed(&c, &truncated, Stat::PassMalformed);
        let mut too_long = owned.clone();
        too_long[14 + 2..14 + 4].copy_from_slice(&1500u16.to_be_bytes());
        assert_passed(&c, &too_long, Stat::PassMalformed);
        let mut bad_ihl = owned.clone();
        bad_ihl[14] = 0x44;
        assert_passed(&c, &bad_ihl, Stat::PassMalformed);
        let mut not_v4 = owned.clone();
        not_v4[14] = 0x65;
        assert_passed(&c, &not_v4, Stat::PassMalformed);

        // Ethernet padding after the IP packet is fine.
        let mut padded = owned.clone();
        padded.extend_from_slice(&[0; 10]);
        assert_owned(&c, &padded, Stat::OwnedRoute);
    }

    #[test]
    fn other_hosts_frames_are_owned_when_the_mac_check_is_off() {
        let Some(c) = classifier(Role::Pod) else {
            return;
        };
        let mut f = udp_frame(LOCAL_POD, PEER_POD, 64, 53);
        f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
        c.set_ownership(&offline(Ownership {
            own_mac_only: false,
            ..Ownership::default()
        }))
        .unwrap();
        assert_owned(&c, &f, Stat::OwnedRoute);
    }

    #[test]
    fn set_routes_replaces_the_trie_and_longest_match_decides() {
        let Some(c) = classifier(Role::Pod) else {
            return;
        };
        let a: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        let b: Ipv4Net = "10.244.2.0/24".parse().unwrap();
        let wide: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        c.set_routes(&[a, b]).unwrap();
        assert_eq!(c.routes().unwrap(), [a, b]);
        c.set_routes(&[b, "10.244.3.9/24".parse().unwrap()])
            .unwrap();
        assert_eq!(c.routes().unwrap(), [b, "10.244.3.0/24".parse().unwrap()]);
        assert_passed(
            &c,
            &udp_frame(LOCAL_POD, PEER_POD, 64, 53),
            Stat::PassNotOwned,
        );

        c.set_routes(&[wide]).unwrap();
        assert_owned(
            &c,
            &udp_frame(LOCAL_POD, PEER_POD, 64, 53),
            Stat::OwnedRoute,
        );
        // An entry whose value is 0 carves the kernel's part out of an owned prefix.
        let carve = route_key("10.244.1.0/24".parse().unwrap());
        c.map(MAP_ROUTES)
            .unwrap()
            .update(&carve, &0u32.to_ne_bytes(), MapFlags::ANY)
            .unwrap();
        assert_passed(
            &c,
            &udp_frame(LOCAL_POD, PEER_POD, 64, 53),
            Stat::PassNotOwned,
        );

        c.set_routes(&[]).unwrap();
        assert_eq!(c.routes().unwrap(), []);
    }

    #[test]
    fn settings_and_ownership_are_replaced_independently() {
        let Some(c) = classifier(Role::Uplink) else {
            return;
        };
        let own = offline(Ownership::for_mode(Mode::HostGw));
        c.set_ownership(&own).unwrap();
        let moved = Settings {
            node_ip: Ipv4Addr::new(10, 168, 0, 20),
            vxlan_port: 4789,
            pod_cidr: "10.244.9.0/24".parse().unwrap(),
            vni: 7,
            vtep_mac: PEER_MAC,
            vtep_ifindex: 3,
        };
        c.set_settings(&moved).unwrap();
        assert_eq!(c.config().unwrap(), (moved, own));
        assert_passed(
            &c,
            &udp_frame(PEER_POD, LOCAL_POD, 64, 53),
            Stat::PassNotOwned,
        );
    }

    #[test]
    fn sockets_are_refused_outside_the_queue_range_or_when_not_af_xdp() {
        let Some(c) = classifier(Role::Pod) else {
            return;
        };
        let err = c.register_socket(MAX_QUEUES, 0).unwrap_err();
        assert!(
            matches!(err, XdpError::QueueOutOfRange { queue: 64 }),
            "{err}"
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = c.register_socket(0, udp.as_raw_fd()).unwrap_err();
        assert!(err.to_string().contains("AF_XDP socket"), "{err}");
        c.unregister_socket(0).unwrap();
        assert!(c.unregister_socket(MAX_QUEUES).is_err());
    }

    #[test]
    fn pinning_outside_bpffs_is_refused() {
        let Some(mut c) = classifier(Role::Pod) else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("pfx-xdp-pins-{}", std::process::id()));
        let err = c.pin_maps(&dir).unwrap_err();
        assert!(matches!(err, XdpError::BpfFsMissing { .. }), "{err}");
        assert!(err.to_string().contains("mount -t bpf"), "{err}");
        assert!(!dir.exists());
    }

    #[test]
    fn maps_pinned_on_bpffs_are_removed_on_drop() {
        let Some(mut c) = classifier(Role::Pod) else {
            return;
        };
        let root = Path::new("/sys/fs/bpf");
        if statfs_type(root).ok() != Some(BPF_FS_MAGIC) {
            let _ = writeln!(io::stderr(), "SKIP: no bpffs at /sys/fs/bpf");
            return;
        }
        let dir = root.join(format!("pfx-xdp-{}", std::process::id()));
        c.pin_maps(&dir).unwrap();
        assert!(dir.join("test0").join("stats").exists());
        drop(c);
        assert!(!dir.join("test0").exists());
        let _ = std::fs::remove_dir(&dir);
    }
}
