//! IPv4 neighbours: follow the kernel's ARP table, trigger resolution, look one up.

use super::nud;
use super::socket::{
    self, decode_error, messages, u16_at, u32_at, RawMsg, RtSocket, NLMSG_DONE, NLMSG_ERROR,
    NLM_F_DUMP_INTR, REQUEST_TIMEOUT, RTM_DELNEIGH, RTM_NEWNEIGH,
};
use super::{NetlinkError, Result};
use crate::wire::MacAddr;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

const NDMSG_LEN: usize = 12;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Extended neighbour flags (u32), kernel 5.16+.
const NDA_FLAGS_EXT: u16 = 15;
/// `NTF_EXT_MANAGED`: the kernel keeps the entry resolved on its own.
const NTF_EXT_MANAGED: u32 = 1 << 0;
const NTF_PROXY: u8 = 0x08;
/// The rtnetlink multicast group of neighbour changes.
const RTNLGRP_NEIGH: u32 = 3;
/// Receive buffer asked for the monitor socket (granted up to `rmem_max` unless the
/// process has CAP_NET_ADMIN).
const MONITOR_RCVBUF: usize = 4 << 20;
/// How often a dump is retried when it was interrupted or notifications were lost.
const DUMP_ATTEMPTS: u32 = 8;

/// One neighbour as the kernel reported it (a dump entry or a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighbourEvent {
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    /// The MAC to use, or `None` when the entry is gone (deleted, or missing after a
    /// re-dump), or is in a state without a usable address (INCOMPLETE, FAILED, NONE).
    pub mac: Option<MacAddr>,
    /// The kernel's NUD state (see [`super::nud`]); [`nud::NONE`] for a deletion.
    pub state: u16,
}

/// Parses an `RTM_NEWNEIGH`/`RTM_DELNEIGH` message into an event. `None` for other
/// families, proxy entries and messages without a usable destination.
pub(crate) fn parse_neigh(m: &RawMsg<'_>) -> Option<NeighbourEvent> {
    if m.ty != RTM_NEWNEIGH && m.ty != RTM_DELNEIGH {
        return None;
    }
    let p = m.payload;
    if p.len() < NDMSG_LEN || p[0] != libc::AF_INET as u8 || p[10] & NTF_PROXY != 0 {
        return None;
    }
    let ifindex = u32_at(p, 4)?;
    let state = u16_at(p, 8)?;
    let mut ip = None;
    let mut lladdr = None;
    for (kind, v) in socket::attrs(&p[NDMSG_LEN..]) {
        match kind {
            NDA_DST => ip = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from),
            NDA_LLADDR => lladdr = <[u8; 6]>::try_from(v).ok().map(MacAddr),
            _ => {}
        }
    }
    let ip = ip?;
    if m.ty == RTM_DELNEIGH {
        return Some(NeighbourEvent {
            ifindex,
            ip,
            mac: None,
            state: nud::NONE,
        });
    }
    let mac = if state & nud::VALID != 0 {
        lladdr
    } else {
        None
    };
    Some(NeighbourEvent {
        ifindex,
        ip,
        mac,
        state,
    })
}

type Table = HashMap<(u32, Ipv4Addr), Option<MacAddr>>;

fn apply(table: &mut Table, ev: &NeighbourEvent, deleted: bool) {
    if deleted {
        table.remove(&(ev.ifindex, ev.ip));
    } else {
        table.insert((ev.ifindex, ev.ip), ev.mac);
    }
}

/// Follows the kernel's IPv4 neighbour table in the namespace it was created in.
///
/// Subscribes to `RTNLGRP_NEIGH` when created, so nothing is missed between
/// [`NeighbourMonitor::new`] and the first [`NeighbourMonitor::dump`]. Then call
/// [`NeighbourMonitor::poll_events`] whenever the socket is readable (the fd is
/// [`AsRawFd`], for mio's `SourceFd`), with a zero timeout from an event loop: it drains
/// everything queued, so it is safe with edge-triggered readiness.
///
/// If the kernel had to drop notifications because the socket buffer was full
/// (`ENOBUFS`), the monitor re-dumps the table and reports the difference: deletions
/// for entries that vanished, then every current entry. A consumer that applies every
/// event in order therefore always converges to the kernel's table.
pub struct NeighbourMonitor {
    sock: RtSocket,
    /// The last reported MAC of every entry (what a resync diffs against).
    table: Table,
    resyncs: u64,
}

impl NeighbourMonitor {
    /// Opens the monitor in the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        Self::with_receive_buffer(MONITOR_RCVBUF)
    }

    /// Like [`NeighbourMonitor::new`] with an explicit socket receive buffer (the
    /// kernel doubles it; tests use a tiny one to provoke `ENOBUFS`).
    pub fn with_receive_buffer(bytes: usize) -> Result<Self> {
        let sock = RtSocket::open()?;
        socket::set_receive_buffer(sock.socket().as_raw_fd(), bytes).map_err(|source| {
            NetlinkError::Socket {
                op: "set SO_RCVBUF",
                source,
            }
        })?;
        sock.socket()
            .add_membership(RTNLGRP_NEIGH)
            .map_err(|source| NetlinkError::Socket {
                op: "join RTNLGRP_NEIGH",
                source,
            })?;
        Ok(NeighbourMonitor {
            sock,
            table: HashMap::new(),
            resyncs: 0,
        })
    }

    /// Dumps the IPv4 neighbour table: deletions for entries reported before that no
    /// longer exist, then one event per current entry, then any changes that arrived
    /// during the dump.
    pub fn dump(&mut self) -> Result<Vec<NeighbourEvent>> {
        let mut out = Vec::new();
        self.resync(&mut out)?;
        Ok(out)
    }

    /// Returns the changes that arrived, waiting at most `timeout` for the first one.
    /// Drains everything queued before returning. An empty vector means none arrived.
    pub fn poll_events(&mut self, timeout: Duration) -> Result<Vec<NeighbourEvent>> {
        let mut out = Vec::new();
        let mut waited = false;
        loop {
            let own = self.sock.port();
            match self.sock.try_recv() {
                Ok(Some(data)) => {
                    for m in messages(data) {
                        // A malformed datagram: skip its rest, keep the socket.
                        let Ok(m) = m else { break };
                        // Leftovers of an aborted dump of ours are not changes.
                        if m.port == own {
                            continue;
                        }
                        if let Some(ev) = parse_neigh(&m) {
                            apply(&mut self.table, &ev, m.ty == RTM_DELNEIGH);
                            out.push(ev);
                        }
                    }
                }
                Ok(None) => {
                    if !out.is_empty() || waited || timeout.is_zero() {
                        return Ok(out);
                    }
                    self.sock
                        .wait(timeout)
                        .map_err(|source| NetlinkError::Socket { op: "poll", source })?;
                    waited = true;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.resyncs += 1;
                    self.resync(&mut out)?;
                }
                Err(source) => return Err(NetlinkError::Socket { op: "recv", source }),
            }
        }
    }

    /// How many times notifications were lost (`ENOBUFS`) and the table was re-dumped.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// The MAC last reported for `ip` on `ifindex` (None: unknown or unusable).
    pub fn current(&self, ifindex: u32, ip: Ipv4Addr) -> Option<MacAddr> {
        self.table.get(&(ifindex, ip)).copied().flatten()
    }

    /// Dumps the table and appends the difference to what was reported before.
    fn resync(&mut self, out: &mut Vec<NeighbourEvent>) -> Result<()> {
        for _ in 0..DUMP_ATTEMPTS {
            let Dump {
                snapshot,
                changes,
                clean,
            } = self.dump_once()?;
            if !clean {
                continue;
            }
            let mut fresh: Table = HashMap::with_capacity(snapshot.len());
            for ev in &snapshot {
                fresh.insert((ev.ifindex, ev.ip), ev.mac);
            }
            // Deletions first, in a stable order.
            let gone: BTreeMap<(u32, Ipv4Addr), ()> = self
                .table
                .keys()
                .filter(|k| !fresh.contains_key(k))
                .map(|k| (*k, ()))
                .collect();
            for (ifindex, ip) in gone.into_keys() {
                out.push(NeighbourEvent {
                    ifindex,
                    ip,
                    mac: None,
                    state: nud::NONE,
                });
            }
            out.extend_from_slice(&snapshot);
            self.table = fresh;
            for (ev, deleted) in changes {
                apply(&mut self.table, &ev, deleted);
                out.push(ev);
            }
            return Ok(());
        }
        Err(NetlinkError::DumpInterrupted(DUMP_ATTEMPTS))
    }

    /// One dump, with the notifications that arrived meanwhile.
    fn dump_once(&mut self) -> Result<Dump> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Inet;
        let seq = self
            .sock
            .send(RouteNetlinkMessage::GetNeighbour(req), NLM_F_DUMP, &[])?;
        let mut snapshot = Vec::new();
        let mut changes = Vec::new();
        let mut clean = true;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let own = self.sock.port();
            let data = match self.sock.try_recv() {
                Ok(Some(d)) => d,
                Ok(None) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(NetlinkError::Timeout {
                            request: "RTM_GETNEIGH dump (IPv4)".into(),
                            timeout: REQUEST_TIMEOUT,
                        });
                    }
                    self.sock
                        .wait(left)
                        .map_err(|source| NetlinkError::Socket { op: "poll", source })?;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // Notifications were dropped; the dump itself continues.
                    clean = false;
                    continue;
                }
                Err(source) => return Err(NetlinkError::Socket { op: "recv", source }),
            };
            let mut done = false;
            for m in messages(data) {
                let m = m.map_err(|detail| NetlinkError::Malformed {
                    context: "neighbour dump",
                    detail,
                })?;
                if m.port == own && m.seq == seq {
                    if m.flags & NLM_F_DUMP_INTR != 0 {
                        clean = false;
                    }
                    match m.ty {
                        NLMSG_DONE => done = true,
                        NLMSG_ERROR => {
                            decode_error(&m).map_err(|(source, extack)| NetlinkError::Kernel {
                                request: "RTM_GETNEIGH dump (IPv4)".into(),
                                extack,
                                source,
                            })?;
                            done = true;
                        }
                        _ => snapshot.extend(parse_neigh(&m)),
                    }
                } else if m.port != own {
                    if let Some(ev) = parse_neigh(&m) {
                        changes.push((ev, m.ty == RTM_DELNEIGH));
                    }
                }
            }
            if done {
                return Ok(Dump {
                    snapshot,
                    changes,
                    clean,
                });
            }
        }
    }
}

/// The result of one neighbour dump.
struct Dump {
    /// The entries dumped.
    snapshot: Vec<NeighbourEvent>,
    /// Notifications that arrived during the dump, with "is a deletion".
    changes: Vec<(NeighbourEvent, bool)>,
    /// Not interrupted (`NLM_F_DUMP_INTR`) and no notification lost (`ENOBUFS`).
    clean: bool,
}

impl AsRawFd for NeighbourMonitor {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.socket().as_raw_fd()
    }
}

impl AsFd for NeighbourMonitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.socket().as_fd()
    }
}

fn neigh_request(ifindex: u32, ip: Ipv4Addr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = ifindex;
    msg.attributes
        .push(NeighbourAttribute::Destination(ip.into()));
    msg
}

fn map_ifindex(e: NetlinkError, ifindex: u32) -> NetlinkError {
    if e.errno() == Some(libc::ENODEV) {
        NetlinkError::NoSuchIfindex(ifindex)
    } else {
        e
    }
}

/// True when an entry exists and is static (PERMANENT or NOARP): resolving must not
/// touch it (on 6.18 an `NTF_USE` or managed request drops a permanent entry's lladdr
/// and turns it into an ARP-resolved one).
fn is_static(sock: &mut RtSocket, ifindex: u32, ip: Ipv4Addr) -> Result<bool> {
    Ok(lookup(sock, ifindex, ip)?.is_some_and(|e| e.state & (nud::PERMANENT | nud::NOARP) != 0))
}

/// Makes the kernel resolve `ip` on `ifindex`, as if a packet were sent to it
/// (`RTM_NEWNEIGH` with `NTF_USE`, entry created if missing):
///
/// - no entry, or FAILED: the entry becomes INCOMPLETE (not notified) and the kernel
///   broadcasts ARP requests (`mcast_solicit`, `retrans_time_ms` apart); then
///   REACHABLE with the MAC, or FAILED (both notified);
/// - STALE: DELAY, then after `delay_first_probe_time` PROBE (unicast ARP to the known
///   MAC), then REACHABLE or FAILED;
/// - REACHABLE, DELAY, PROBE, INCOMPLETE: nothing to do;
/// - PERMANENT or NOARP: left alone (checked first: the kernel would replace them).
///
/// Returns once the kernel accepted the request; the outcome arrives through the
/// [`NeighbourMonitor`].
pub fn resolve(ifindex: u32, ip: Ipv4Addr) -> Result<()> {
    let mut sock = RtSocket::open()?;
    if is_static(&mut sock, ifindex, ip).map_err(|e| map_ifindex(e, ifindex))? {
        return Ok(());
    }
    let mut msg = neigh_request(ifindex, ip);
    msg.header.state = NeighbourState::None;
    msg.header.flags = NeighbourFlags::Use;
    sock.request(
        RouteNetlinkMessage::NewNeighbour(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
        &[],
        &|| format!("RTM_NEWNEIGH {ip} on ifindex {ifindex} (NTF_USE)"),
        |_| Ok(()),
    )
    .map_err(|e| map_ifindex(e, ifindex))
}

/// Makes `ip` on `ifindex` a kernel-managed neighbour (`NTF_EXT_MANAGED`, kernel
/// 5.16+): the kernel resolves it now, keeps re-verifying it on its own and never
/// garbage-collects it, also after podfwd exits. Remove it with [`remove_neighbour`]
/// when the next hop goes away. A static (PERMANENT or NOARP) entry is left alone.
/// Kernels before 5.16 ignore the flag and create a plain entry that nobody resolves:
/// use [`resolve`] there.
pub fn resolve_managed(ifindex: u32, ip: Ipv4Addr) -> Result<()> {
    let mut sock = RtSocket::open()?;
    if is_static(&mut sock, ifindex, ip).map_err(|e| map_ifindex(e, ifindex))? {
        return Ok(());
    }
    let mut msg = neigh_request(ifindex, ip);
    msg.header.state = NeighbourState::None;
    sock.request(
        RouteNetlinkMessage::NewNeighbour(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
        &socket::encode_attr(NDA_FLAGS_EXT, &NTF_EXT_MANAGED.to_ne_bytes()),
        &|| format!("RTM_NEWNEIGH {ip} on ifindex {ifindex} (managed)"),
        |_| Ok(()),
    )
    .map_err(|e| map_ifindex(e, ifindex))
}

/// Deletes the neighbour entry of `ip` on `ifindex`; Ok(false) if there was none.
pub fn remove_neighbour(ifindex: u32, ip: Ipv4Addr) -> Result<bool> {
    let msg = neigh_request(ifindex, ip);
    let mut sock = RtSocket::open()?;
    match sock.request(
        RouteNetlinkMessage::DelNeighbour(msg),
        0,
        &[],
        &|| format!("RTM_DELNEIGH {ip} on ifindex {ifindex}"),
        |_| Ok(()),
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(map_ifindex(e, ifindex)),
    }
}

/// Looks up one neighbour entry (`RTM_GETNEIGH` for a single entry, kernel 5.0+).
/// `Ok(None)` when there is no entry or it has no usable MAC.
pub fn neighbour(ifindex: u32, ip: Ipv4Addr) -> Result<Option<MacAddr>> {
    Ok(neighbour_entry(ifindex, ip)?.and_then(|e| e.mac))
}

/// Like [`neighbour`], with the entry's state.
pub fn neighbour_entry(ifindex: u32, ip: Ipv4Addr) -> Result<Option<NeighbourEvent>> {
    let mut sock = RtSocket::open()?;
    lookup(&mut sock, ifindex, ip).map_err(|e| map_ifindex(e, ifindex))
}

fn lookup(sock: &mut RtSocket, ifindex: u32, ip: Ipv4Addr) -> Result<Option<NeighbourEvent>> {
    let msg = neigh_request(ifindex, ip);
    let mut found = None;
    let r = sock.request(
        RouteNetlinkMessage::GetNeighbour(msg),
        0,
        &[],
        &|| format!("RTM_GETNEIGH {ip} on ifindex {ifindex}"),
        |m| {
            if let Some(ev) = parse_neigh(m) {
                if ev.ip == ip && ev.ifindex == ifindex {
                    found = Some(ev);
                }
            }
            Ok(())
        },
    );
    match r {
        Ok(()) => Ok(found),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}
