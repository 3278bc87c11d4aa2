//! The kernel slow path: podfwd programs the node's kernel exactly as flanneld would,
//! so the kernel forwards what the fast path hands it (and everything, when podfwd is
//! stopped or crashed). See `docs/kernel-slow-path.md`.
//!
//! Three layers:
//! - [`KernelSpec::from_plan`]: pure; what should exist (the VXLAN device, one permanent
//!   neighbour, FDB entry and route per VXLAN peer, one route per host-gw peer).
//!   `Display` prints it as the equivalent `ip`/`bridge` commands.
//! - [`apply`]: idempotent reconciliation over rtnetlink in the calling thread's
//!   network namespace: creates what is missing, adopts what an earlier podfwd left,
//!   corrects what differs, removes podfwd's entries the spec no longer has. Checks for
//!   conflicts with objects podfwd does not own before it changes anything.
//! - [`cleanup`]: removes everything podfwd installed, nothing else.
//!
//! Ownership marks: routes carry the rtnetlink protocol [`RTPROT_PODFWD`]
//! (`ip route show proto 112`); the VXLAN device carries the alias [`DEVICE_ALIAS`]
//! (`IFLA_IFALIAS`). Neighbours, FDB entries and addresses on podfwd's device are
//! podfwd's.

mod apply;
mod spec;

pub use apply::{apply, cleanup, staging_name, ApplyReport, CleanupReport};
pub use spec::KernelSpec;
pub use spec::{FdbEntry, KernelRoute, Neighbour, RouteDev, VxlanDevice, VXLAN_OVERHEAD};

use crate::netlink::NetlinkError;
use ipnet::Ipv4Net;

/// The rtnetlink route protocol (`rtm_protocol`) of every route podfwd installs.
///
/// Unassigned in iproute2's `rt_protos` (0-4 kernel, 8-18 and 42, 99, 186-192 routing
/// daemons) and not used by the CNI data planes we know of (Calico uses 80). To see the
/// name in `ip route`, add `112 podfwd` to `/etc/iproute2/rt_protos.d/podfwd.conf`.
pub const RTPROT_PODFWD: u8 = 112;

/// The alias (`ip link set dev X alias ...`, `IFLA_IFALIAS`) that marks a device podfwd
/// created. A device without it is never changed or deleted.
pub const DEVICE_ALIAS: &str = "podfwd-managed";

/// Why the kernel could not be programmed. Each names the object.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "interface {name:?} exists but podfwd did not create it (kind {}, alias {}); \
         podfwd leaves it alone: remove or rename it, or set vxlan.device to another name",
        kind.as_deref().unwrap_or("unknown"),
        alias.as_deref().map_or("none".to_string(), |a| format!("{a:?}"))
    )]
    ForeignDevice {
        name: String,
        kind: Option<String>,
        alias: Option<String>,
    },
    #[error(
        "route {route} exists with proto {} and podfwd did not install it (its routes \
         have proto {RTPROT_PODFWD}); podfwd does not replace it: remove it, or the peer \
         whose pod_cidr is {prefix}",
        protocol_name(*protocol)
    )]
    ForeignRoute {
        prefix: Ipv4Net,
        route: String,
        protocol: u8,
    },
    #[error("uplink {0:?} does not exist in this network namespace")]
    UplinkNotFound(String),
    #[error("uplink {uplink:?} has MTU {mtu}: too small for a VXLAN device ({VXLAN_OVERHEAD} bytes of headers)")]
    UplinkMtuTooSmall { uplink: String, mtu: u32 },
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: NetlinkError,
    },
}

impl KernelError {
    /// The errno the kernel answered with, if a request was refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink { source, .. } => source.errno(),
            _ => None,
        }
    }
}

/// `what` as the context of a netlink error.
pub(crate) fn ctx(what: impl FnOnce() -> String) -> impl FnOnce(NetlinkError) -> KernelError {
    move |source| KernelError::Netlink {
        what: what(),
        source,
    }
}

/// A route protocol number with its iproute2 name: `static (4)`, `podfwd (112)`, `77`.
pub fn protocol_name(p: u8) -> String {
    let name = match p {
        0 => "unspec",
        1 => "redirect",
        2 => "kernel",
        3 => "boot",
        4 => "static",
        8 => "gated",
        9 => "ra",
        10 => "mrt",
        11 => "zebra",
        12 => "bird",
        13 => "dnrouted",
        14 => "xorp",
        15 => "ntk",
        16 => "dhcp",
        17 => "mrouted",
        18 => "keepalived",
        42 => "babel",
        99 => "openr",
        186 => "bgp",
        187 => "isis",
        188 => "ospf",
        189 => "rip",
        192 => "eigrp",
        RTPROT_PODFWD => "podfwd",
        _ => return p.to_string(),
    };
    format!("{name} ({p})")
}
