//! The kernel changes the XDP classifier's flow cache depends on.
//!
//! The classifier remembers, per flow and CPU, that the kernel's FIB forwards a flow to
//! a device podfwd serves and that conntrack does not NAT it (`bpf/podfwd_xdp.bpf.c`,
//! docs/xdp.md). Those answers hold until the kernel changes something they depend on;
//! [`KernelChanges`] tells the control thread when that happens, and the control thread
//! then bumps every classifier's epoch, which forgets every remembered answer at once.
//!
//! - Routing: one `NETLINK_ROUTE` socket in the groups of links (MTU, state, devices
//!   coming and going), IPv4 addresses (local routes), IPv4 routes, IPv4 policy rules,
//!   IPv4 netconf (`forwarding`), and neighbours (a next hop resolved, failed, changed).
//! - NAT: one `NETLINK_NETFILTER` socket in ctnetlink's `NEW` group: a new conntrack
//!   entry with SNAT or DNAT (a kube-proxy Service connection) may be the reverse of a
//!   flow whose "not NATed" answer is remembered. Entries without NAT are ignored.
//!
//! A lost notification (`ENOBUFS`) counts as a change. Every message is parsed with its
//! lengths checked; a malformed one counts as a change too (forgetting is always safe).

use super::socket::{attrs, messages, wait_any, RtSocket};
use super::{NetlinkError, Result};
use netlink_sys::{Socket, SocketAddr};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// `<linux/rtnetlink.h>` multicast groups.
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV4_RULE: u32 = 8;
const RTNLGRP_IPV4_NETCONF: u32 = 24;
const ROUTE_GROUPS: [(u32, &str); 6] = [
    (RTNLGRP_LINK, "join RTNLGRP_LINK"),
    (RTNLGRP_NEIGH, "join RTNLGRP_NEIGH"),
    (RTNLGRP_IPV4_IFADDR, "join RTNLGRP_IPV4_IFADDR"),
    (RTNLGRP_IPV4_ROUTE, "join RTNLGRP_IPV4_ROUTE"),
    (RTNLGRP_IPV4_RULE, "join RTNLGRP_IPV4_RULE"),
    (RTNLGRP_IPV4_NETCONF, "join RTNLGRP_IPV4_NETCONF"),
];

/// `<linux/netlink.h>`.
const NETLINK_NETFILTER: isize = 12;
/// `<linux/netfilter/nfnetlink.h>`: `NFNLGRP_CONNTRACK_NEW`, `NFNL_SUBSYS_CTNETLINK`.
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `<linux/netfilter/nfnetlink_conntrack.h>`: `IPCTNL_MSG_CT_NEW`, `CTA_STATUS`.
const IPCTNL_MSG_CT_NEW: u16 = 0;
const CTA_STATUS: u16 = 3;
/// `struct nfgenmsg`: family, version, resource id.
const NFGENMSG_LEN: usize = 4;
/// `IPS_SRC_NAT | IPS_DST_NAT` (`<linux/netfilter/nf_conntrack_common.h>`).
const IPS_NAT_MASK: u32 = 0x30;

/// Receive buffer of both sockets: a burst of route changes (a peer set replaced) or of
/// new connections fits; past it the kernel reports `ENOBUFS`, which counts as a change.
const RCVBUF: usize = 4 << 20;

/// What [`KernelChanges::drain`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Link, address, route, rule, netconf or neighbour messages (or lost ones).
    pub routing: u64,
    /// New conntrack entries with NAT (or lost notifications).
    pub nat: u64,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.routing + self.nat > 0
    }
}

/// Follows the kernel changes of the calling thread's network namespace that the flow
/// cache depends on. Non-blocking: [`KernelChanges::drain`] returns at once.
pub struct KernelChanges {
    route: RtSocket,
    conntrack: Option<Socket>,
    buf: Vec<u8>,
}

impl KernelChanges {
    /// Opens both sockets. The routing one must open; conntrack events are optional
    /// (a kernel without ctnetlink): see [`KernelChanges::follows_nat`].
    pub fn open() -> Result<KernelChanges> {
        let route = RtSocket::open()?;
        let fd = route.socket().as_raw_fd();
        let _ = super::socket::set_receive_buffer(fd, RCVBUF);
        for (group, op) in ROUTE_GROUPS {
            route
                .socket()
                .add_membership(group)
                .map_err(|source| NetlinkError::Socket { op, source })?;
        }
        Ok(KernelChanges {
            route,
            conntrack: open_conntrack().ok(),
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Whether new NATed conntrack entries are reported (ctnetlink events work here).
    /// Without them the classifier must ask conntrack about every frame.
    pub fn follows_nat(&self) -> bool {
        self.conntrack.is_some()
    }

    /// The descriptors to wait on (readable when a change may be queued).
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.route.socket().as_raw_fd()];
        fds.extend(self.conntrack.as_ref().map(|s| s.as_raw_fd()));
        fds
    }

    /// Reads everything queued; what was seen.
    pub fn drain(&mut self) -> Changes {
        let mut changes = Changes::default();
        loop {
            match self.route.try_recv() {
                Ok(Some(data)) => changes.routing += messages(data).count().max(1) as u64,
                Ok(None) => break,
                // ENOBUFS (lost notifications) or anything else: assume a change.
                Err(_) => {
                    changes.routing += 1;
                    break;
                }
            }
        }
        if let Some(sock) = &self.conntrack {
            loop {
                self.buf.clear();
                match sock.recv(&mut self.buf, 0) {
                    Ok(_) => changes.nat += nat_entries(&self.buf),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        changes.nat += 1;
                        break;
                    }
                }
            }
        }
        changes
    }

    /// Waits at most `timeout` for any of the sockets to become readable.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        wait_any(&self.fds(), timeout)
    }
}

fn open_conntrack() -> io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind(&SocketAddr::new(0, 0))?;
    sock.add_membership(NFNLGRP_CONNTRACK_NEW)?;
    sock.set_non_blocking(true)?;
    let _ = super::socket::set_receive_buffer(sock.as_raw_fd(), RCVBUF);
    Ok(sock)
}

/// How many messages of a ctnetlink datagram announce a NATed entry. A message that
/// cannot be read counts as one (forgetting is safe, missing a NAT is not).
pub(crate) fn nat_entries(datagram: &[u8]) -> u64 {
    let mut n = 0;
    for m in messages(datagram) {
        let Ok(m) = m else {
            return n + 1;
        };
        if m.ty >> 8 != NFNL_SUBSYS_CTNETLINK || m.ty & 0xff != IPCTNL_MSG_CT_NEW {
            continue;
        }
        let Some(body) = m.payload.get(NFGENMSG_LEN..) else {
            n += 1;
            continue;
        };
        let status = attrs(body)
            .find(|(kind, _)| *kind == CTA_STATUS)
            .and_then(|(_, v)| v.get(..4))
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        match status {
            Some(s) if s & IPS_NAT_MASK == 0 => {}
            _ => n += 1,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One ctnetlink message: nlmsghdr, nfgenmsg, then a CTA_STATUS attribute.
    fn ct_new(status: Option<u32>) -> Vec<u8> {
        let mut body = vec![2, 0, 0, 0]; // AF_INET, version 0, res_id 0
        if let Some(s) = status {
            body.extend_from_slice(&8u16.to_ne_bytes());
            body.extend_from_slice(&CTA_STATUS.to_ne_bytes());
            body.extend_from_slice(&s.to_be_bytes());
        }
        let len = 16 + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn a_new_entry_with_dnat_or_snat_counts_and_one_without_nat_does_not() {
        assert_eq!(nat_entries(&ct_new(Some(0x0e))), 0); // seen reply, assured, confirmed
        assert_eq!(nat_entries(&ct_new(Some(0x20 | 0x08))), 1); // DNAT
        assert_eq!(nat_entries(&ct_new(Some(0x10 | 0x08))), 1); // SNAT
        let mut two = ct_new(Some(0x20));
        two.extend(ct_new(Some(0x08)));
        two.extend(ct_new(Some(0x10)));
        assert_eq!(nat_entries(&two), 2);
    }

    #[test]
    fn an_entry_whose_status_cannot_be_read_counts_as_nat() {
        assert_eq!(nat_entries(&ct_new(None)), 1);
        let mut cut = ct_new(Some(0));
        cut.truncate(18); // the header says more than there is
        assert_eq!(nat_entries(&cut), 1);
    }
}
