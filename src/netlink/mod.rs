//! Interfaces and IPv4 neighbours over rtnetlink (`NETLINK_ROUTE`).
//!
//! The control thread uses this module to learn what the kernel knows and to make the
//! kernel do the ARP work for it:
//!
//! - [`interface`] / [`interface_by_index`]: index, MAC, MTU, IPv4 addresses, admin state
//!   and queue counts of one interface (`RTM_GETLINK` + `RTM_GETADDR`).
//! - [`NeighbourMonitor`]: follows the kernel's IPv4 neighbour (ARP) table: one dump,
//!   then change notifications from the `RTNLGRP_NEIGH` multicast group. Missed
//!   notifications (`ENOBUFS`) are repaired by re-dumping and diffing.
//! - [`resolve`]: asks the kernel to resolve a next hop (`RTM_NEWNEIGH` with `NTF_USE`),
//!   so the kernel's ARP state machine sends the requests, retries and times out; the
//!   result arrives through the monitor.
//! - [`neighbour`]: one lookup (`RTM_GETNEIGH` for a single entry).
//! - [`KernelChanges`]: tells the control thread when routes, neighbours, links, rules,
//!   netconf or NATed connections change (what the XDP classifier's flow cache depends on).
//! - [`KernelObjects`]: the slow path's objects (VXLAN links, addresses, permanent
//!   neighbours, FDB entries, routes with a protocol), read and written over one socket
//!   for [`crate::kernel`].
//!
//! Everything acts on the network namespace of the calling thread at the time the
//! socket is opened. See `docs/neighbours.md` for the kernel behaviour these rely on.
//!
//! Replies are parsed by hand (fixed headers plus the few attributes used), bounds
//! checked everywhere: a malformed or unexpected message is an error or is skipped,
//! never a panic. Requests are built with `netlink-packet-route`.

mod changes;
#[doc(hidden)]
pub mod fuzzing;
mod kernel_objects;
mod link;
mod neigh;
mod route;
mod socket;

#[cfg(test)]
mod tests;

pub use changes::{Changes, KernelChanges};
pub use kernel_objects::{
    describe_route, FdbRecord, KernelObjects, LinkDetails, NeighbourRecord, NewRoute, NewVxlan,
    RouteRecord, VxlanInfo, RT_TABLE_MAIN,
};
pub use link::{interface, interface_by_index, Interface};
pub use neigh::{
    neighbour, neighbour_entry, remove_neighbour, resolve, resolve_managed, NeighbourEvent,
    NeighbourMonitor,
};
pub use route::{
    delete_lookup_rule, delete_route, ensure_lookup_rule, replace_route, set_link_up,
    TUN_RULE_PRIORITY, TUN_TABLE,
};
pub use socket::wait_any;

use std::io;
use std::time::Duration;

/// Kernel neighbour (NUD) states, as in `<linux/neighbour.h>`. A state is one bit.
pub mod nud {
    /// No state yet (e.g. just created, or an entry reported as deleted).
    pub const NONE: u16 = 0x00;
    /// Resolution in progress: ARP requests are being sent, no MAC yet.
    pub const INCOMPLETE: u16 = 0x01;
    /// Confirmed recently (within `base_reachable_time`).
    pub const REACHABLE: u16 = 0x02;
    /// MAC known but not confirmed recently; still usable.
    pub const STALE: u16 = 0x04;
    /// Used while stale: waiting `delay_first_probe_time` for a confirmation.
    pub const DELAY: u16 = 0x08;
    /// Re-verifying with unicast ARP requests to the known MAC.
    pub const PROBE: u16 = 0x10;
    /// Resolution failed: no MAC.
    pub const FAILED: u16 = 0x20;
    /// The device does not need ARP (e.g. multicast/broadcast addresses, NOARP devices).
    pub const NOARP: u16 = 0x40;
    /// Configured statically (`ip neigh add ... nud permanent`).
    pub const PERMANENT: u16 = 0x80;
    /// States in which the entry's link-layer address is usable (the kernel's
    /// `NUD_VALID`).
    pub const VALID: u16 = PERMANENT | NOARP | REACHABLE | PROBE | STALE | DELAY;

    /// A short name for a state, for logs ("reachable", "stale|probe", "none").
    pub fn name(state: u16) -> String {
        const NAMES: [(u16, &str); 8] = [
            (INCOMPLETE, "incomplete"),
            (REACHABLE, "reachable"),
            (STALE, "stale"),
            (DELAY, "delay"),
            (PROBE, "probe"),
            (FAILED, "failed"),
            (NOARP, "noarp"),
            (PERMANENT, "permanent"),
        ];
        if state == NONE {
            return "none".to_string();
        }
        let mut parts: Vec<String> = NAMES
            .iter()
            .filter(|(bit, _)| state & bit != 0)
            .map(|(_, n)| (*n).to_string())
            .collect();
        let known = NAMES.iter().fold(0, |acc, (bit, _)| acc | bit);
        if state & !known != 0 {
            parts.push(format!("{:#x}", state & !known));
        }
        parts.join("|")
    }
}

/// Errors of the netlink code. Each names what was asked.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("interface {0} not found in this network namespace")]
    NoSuchInterface(String),
    #[error("interface index {0} not found in this network namespace")]
    NoSuchIfindex(u32),
    #[error("{0:?} is not a valid interface name (1 to 15 bytes, no '/', NUL or whitespace)")]
    InvalidInterfaceName(String),
    #[error("netlink socket: {op}: {source}")]
    Socket {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{request}: the kernel refused: {source}{}", extack_suffix(.extack))]
    Kernel {
        request: String,
        /// The kernel's extended-ack message, if it sent one.
        extack: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("{request}: no answer from the kernel within {timeout:?}")]
    Timeout { request: String, timeout: Duration },
    #[error("{context}: malformed netlink message: {detail}")]
    Malformed {
        context: &'static str,
        detail: String,
    },
    #[error("neighbour dump interrupted {0} times in a row (the table keeps changing)")]
    DumpInterrupted(u32),
}

fn extack_suffix(extack: &Option<String>) -> String {
    match extack {
        Some(m) => format!(" ({m})"),
        None => String::new(),
    }
}

impl NetlinkError {
    /// The errno the kernel answered with, if this is a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;
