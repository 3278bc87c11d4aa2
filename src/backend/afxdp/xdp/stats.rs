//! The classifier's counters: the indices of its per-CPU `stats` map ([`Stat`]) and their
//! sums ([`ClassifierStats`]).

use super::maps::MAP_STATS;
use super::{bpf_error, Classifier, XdpError};
use libbpf_rs::{MapCore, MapFlags};
use std::fmt;
use std::ops::Index;

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
    pub(super) counts: [u64; Stat::COUNT],
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

impl Classifier {
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
}
