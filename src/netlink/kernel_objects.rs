//! The kernel objects of a flannel-style slow path, over one rtnetlink socket: VXLAN
//! links, IPv4 addresses, permanent neighbours, VXLAN FDB entries and main-table routes
//! (what `ip link`, `ip addr`, `ip neigh`, `bridge fdb` and `ip route` do).
//!
//! [`KernelObjects`] only reads and writes; deciding what should exist is
//! [`crate::kernel`]'s job. Every write names its object in the error
//! ([`NetlinkError::Kernel`] carries the request text and the kernel's extack).

use super::link::parse_link;
use super::nud;
use super::socket::{attrs, c_string, u16_at, u32_at, RawMsg, RtSocket, RTM_NEWLINK};
use super::{NetlinkError, Result};
use crate::wire::MacAddr;
use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::fmt;
use std::net::Ipv4Addr;

const RTM_NEWROUTE: u16 = 24;
const RTM_NEWNEIGH: u16 = 28;

const IFINFOMSG_LEN: usize = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_LINK: u16 = 3;
const IFLA_VXLAN_LOCAL: u16 = 4;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PORT: u16 = 15;

const NDMSG_LEN: usize = 12;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NTF_SELF: u8 = 0x02;
const NTF_MASTER: u8 = 0x04;

const RTMSG_LEN: usize = 12;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
const RTNH_F_ONLINK: u32 = 4;
/// The main routing table.
pub const RT_TABLE_MAIN: u32 = 254;

/// One link with what the slow path checks: identity, ownership mark, settings, and
/// its VXLAN parameters if it is a VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDetails {
    pub index: u32,
    pub name: String,
    pub mac: MacAddr,
    pub mtu: u32,
    pub up: bool,
    /// `IFLA_IFALIAS` (`ip link set dev X alias ...`).
    pub alias: Option<String>,
    /// `IFLA_INFO_KIND` ("vxlan", "veth", ...); `None` for physical devices.
    pub kind: Option<String>,
    pub vxlan: Option<VxlanInfo>,
}

/// A VXLAN device's parameters as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    pub port: u16,
    pub local: Option<Ipv4Addr>,
    /// The lower device (`dev` of `ip link add ... type vxlan`).
    pub link: Option<u32>,
    pub learning: bool,
}

/// What to create: `ip link add NAME type vxlan id VNI local LOCAL dev LOWER nolearning
/// dstport PORT` plus `address MAC mtu MTU`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVxlan<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub lower: u32,
    pub mac: MacAddr,
    pub mtu: u32,
}

/// One IPv4 neighbour entry on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourRecord {
    pub ip: Ipv4Addr,
    pub mac: Option<MacAddr>,
    /// NUD state bits (see [`super::nud`]).
    pub state: u16,
}

impl NeighbourRecord {
    pub fn is_permanent(&self) -> bool {
        self.state & nud::PERMANENT != 0
    }
}

/// One bridge FDB entry of a device (for VXLAN: one per remote destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbRecord {
    pub mac: MacAddr,
    /// `NDA_DST`: the remote VTEP's address.
    pub dst: Option<Ipv4Addr>,
    pub state: u16,
    /// `NTF_*` flags (`NTF_SELF`: the device's own table).
    pub flags: u8,
}

impl FdbRecord {
    pub fn is_self_permanent(&self) -> bool {
        self.state & nud::PERMANENT != 0 && self.flags & NTF_SELF != 0
    }
}

/// One IPv4 route as the kernel reports it (single next hop; multipath routes have
/// no gateway or oif here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRecord {
    pub prefix: Ipv4Net,
    pub table: u32,
    /// `rtm_protocol`: who installed it.
    pub protocol: u8,
    pub kind: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub metric: u32,
    pub onlink: bool,
}

/// A route to install: `PREFIX via GATEWAY dev OIF [onlink] proto PROTOCOL` in the main
/// table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewRoute {
    pub prefix: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub oif: u32,
    pub onlink: bool,
    pub protocol: u8,
}

impl fmt::Display for NewRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} via {} dev ifindex {}",
            self.prefix, self.gateway, self.oif
        )?;
        if self.onlink {
            f.write_str(" onlink")?;
        }
        write!(f, " proto {}", self.protocol)
    }
}

/// An rtnetlink socket for the slow-path objects, in the namespace of the thread that
/// opened it.
pub struct KernelObjects {
    sock: RtSocket,
}

/// `Ok(true)` on success, `Ok(false)` when the kernel answered one of `errnos`.
pub(super) fn ignore_errno<T>(r: Result<T>, errnos: &[i32]) -> Result<bool> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.errno().is_some_and(|n| errnos.contains(&n)) => Ok(false),
        Err(e) => Err(e),
    }
}

impl KernelObjects {
    pub fn open() -> Result<Self> {
        Ok(KernelObjects {
            sock: RtSocket::open()?,
        })
    }

    // --- links ---

    /// The link called `name`; `Ok(None)` if there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<LinkDetails>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let mut found = None;
        let r = self.sock.request(
            RouteNetlinkMessage::GetLink(msg),
            0,
            &[],
            &|| format!("RTM_GETLINK {name}"),
            |m| {
                if m.ty == RTM_NEWLINK && found.is_none() {
                    found = Some(parse_link_details(m)?);
                }
                Ok(())
            },
        );
        match r {
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
            Ok(()) => Ok(found),
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<LinkDetails>> {
        let mut out = Vec::new();
        self.sock.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            &[],
            &|| "RTM_GETLINK dump".to_string(),
            |m| {
                if m.ty == RTM_NEWLINK {
                    out.push(parse_link_details(m)?);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// Creates a VXLAN device (fails with `EEXIST` if the name is taken); returns its
    /// index.
    pub fn create_vxlan(&mut self, v: &NewVxlan<'_>) -> Result<u32> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(v.name.to_string()));
        msg.attributes
            .push(LinkAttribute::Address(v.mac.0.to_vec()));
        msg.attributes.push(LinkAttribute::Mtu(v.mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(v.vni),
                InfoVxlan::Local(v.local),
                InfoVxlan::Link(v.lower),
                InfoVxlan::Learning(false),
                InfoVxlan::Port(v.port),
            ])),
        ]));
        let what = || {
            format!(
                "RTM_NEWLINK {} type vxlan id {} local {} dev ifindex {} nolearning dstport {} \
                 address {} mtu {}",
                v.name, v.vni, v.local, v.lower, v.port, v.mac, v.mtu
            )
        };
        self.sock.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &[],
            &what,
            |_| Ok(()),
        )?;
        match self.link(v.name)? {
            Some(l) => Ok(l.index),
            None => Err(NetlinkError::NoSuchInterface(v.name.to_string())),
        }
    }

    /// `ip link set dev <index> [address MAC] [mtu MTU] [alias ALIAS] [up]`.
    pub fn set_link(
        &mut self,
        index: u32,
        mac: Option<MacAddr>,
        mtu: Option<u32>,
        alias: Option<&str>,
        up: bool,
    ) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if up {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        }
        let mut text = format!("RTM_SETLINK ifindex {index}");
        if let Some(mac) = mac {
            m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
            text += &format!(" address {mac}");
        }
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
            text += &format!(" mtu {mtu}");
        }
        if let Some(alias) = alias {
            m.attributes.push(LinkAttribute::IfAlias(alias.to_string()));
            text += &format!(" alias {alias:?}");
        }
        if up {
            text += " up";
        }
        self.sock.request(
            RouteNetlinkMessage::SetLink(m),
            0,
            &[],
            &|| text.clone(),
            |_| Ok(()),
        )
    }

    /// `ip link set dev <index> name <name>` (the link must be down).
    pub fn rename_link(&mut self, index: u32, name: &str) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.sock.request(
            RouteNetlinkMessage::SetLink(m),
            0,
            &[],
            &|| format!("RTM_SETLINK ifindex {index} name {name}"),
            |_| Ok(()),
        )
    }

    /// Deletes a link; `Ok(false)` if it was already gone.
    pub fn delete_link(&mut self, index: u32, name: &str) -> Result<bool> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        let r = self.sock.request(
            RouteNetlinkMessage::DelLink(m),
            0,
            &[],
            &|| format!("RTM_DELLINK {name} (ifindex {index})"),
            |_| Ok(()),
        );
        ignore_errno(r, &[libc::ENODEV])
    }

    // --- addresses ---

    /// The IPv4 addresses of `index`.
    pub fn ipv4_addresses(&mut self, index: u32) -> Result<Vec<Ipv4Net>> {
        super::link::ipv4_addresses(&mut self.sock, index)
    }

    fn address_message(index: u32, net: Ipv4Net) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = net.prefix_len();
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Local(net.addr().into()));
        m.attributes
            .push(AddressAttribute::Address(net.addr().into()));
        m
    }

    /// `ip addr replace NET dev <index>`.
    pub fn add_address(&mut self, index: u32, net: Ipv4Net) -> Result<()> {
        self.sock.request(
            RouteNetlinkMessage::NewAddress(Self::address_message(index, net)),
            NLM_F_CREATE | NLM_F_REPLACE,
            &[],
            &|| format!("RTM_NEWADDR {net} dev ifindex {index}"),
            |_| Ok(()),
        )
    }

    /// `ip addr del NET dev <index>`; `Ok(false)` if it was not there.
    pub fn delete_address(&mut self, index: u32, net: Ipv4Net) -> Result<bool> {
        let r = self.sock.request(
            RouteNetlinkMessage::DelAddress(Self::address_message(index, net)),
            0,
            &[],
            &|| format!("RTM_DELADDR {net} dev ifindex {index}"),
            |_| Ok(()),
        );
        ignore_errno(r, &[libc::EADDRNOTAVAIL, libc::ENODEV])
    }

    // --- neighbours ---

    /// The IPv4 neighbour entries on `index` (proxy entries left out).
    pub fn neighbours(&mut self, index: u32) -> Result<Vec<NeighbourRecord>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Inet;
        let mut out = Vec::new();
        self.sock.request(
            RouteNetlinkMessage::GetNeighbour(req),
            NLM_F_DUMP,
            &[],
            &|| "RTM_GETNEIGH dump (IPv4)".to_string(),
            |m| {
                if let Some((i, rec)) = parse_neighbour(m) {
                    if i == index {
                        out.push(rec);
                    }
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    fn neighbour_message(index: u32, ip: Ipv4Addr) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.ifindex = index;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        m
    }

    /// `ip neigh replace IP lladdr MAC dev <index> nud permanent`.
    pub fn replace_neighbour(&mut self, index: u32, ip: Ipv4Addr, mac: MacAddr) -> Result<()> {
        let mut m = Self::neighbour_message(index, ip);
        m.header.state = NeighbourState::Permanent;
        m.attributes
            .push(NeighbourAttribute::LinkLocalAddress(mac.0.to_vec()));
        self.sock.request(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_CREATE | NLM_F_REPLACE,
            &[],
            &|| format!("RTM_NEWNEIGH {ip} lladdr {mac} dev ifindex {index} nud permanent"),
            |_| Ok(()),
        )
    }

    /// `ip neigh del IP dev <index>`; `Ok(false)` if there was none.
    pub fn delete_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<bool> {
        let r = self.sock.request(
            RouteNetlinkMessage::DelNeighbour(Self::neighbour_message(index, ip)),
            0,
            &[],
            &|| format!("RTM_DELNEIGH {ip} dev ifindex {index}"),
            |_| Ok(()),
        );
        ignore_errno(r, &[libc::ENOENT, libc::ENODEV])
    }

    // --- bridge FDB (AF_BRIDGE neighbours) ---

    /// The FDB entries of `index` (`bridge fdb show dev`).
    pub fn fdb(&mut self, index: u32) -> Result<Vec<FdbRecord>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let mut out = Vec::new();
        self.sock.request(
            RouteNetlinkMessage::GetNeighbour(req),
            NLM_F_DUMP,
            &[],
            &|| "RTM_GETNEIGH dump (AF_BRIDGE fdb)".to_string(),
            |m| {
                if let Some((i, rec)) = parse_fdb(m) {
                    if i == index {
                        out.push(rec);
                    }
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    fn fdb_message(index: u32, mac: MacAddr, dst: Option<Ipv4Addr>) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.flags = NeighbourFlags::Own;
        m.attributes
            .push(NeighbourAttribute::LinkLocalAddress(mac.0.to_vec()));
        if let Some(dst) = dst {
            m.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
        }
        m
    }

    /// `bridge fdb replace MAC dev <index> dst DST self permanent`. On a VXLAN device
    /// an existing entry for MAC gets DST as its (first) remote.
    pub fn replace_fdb(&mut self, index: u32, mac: MacAddr, dst: Ipv4Addr) -> Result<()> {
        let mut m = Self::fdb_message(index, mac, Some(dst));
        m.header.state = NeighbourState::Permanent;
        self.sock.request(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_CREATE | NLM_F_REPLACE,
            &[],
            &|| format!("RTM_NEWNEIGH (fdb) {mac} dev ifindex {index} dst {dst} self permanent"),
            |_| Ok(()),
        )
    }

    /// `bridge fdb del MAC dev <index> [dst DST] self`: with DST only that remote, else
    /// the whole entry. `Ok(false)` if there was none.
    pub fn delete_fdb(&mut self, index: u32, mac: MacAddr, dst: Option<Ipv4Addr>) -> Result<bool> {
        let r = self.sock.request(
            RouteNetlinkMessage::DelNeighbour(Self::fdb_message(index, mac, dst)),
            0,
            &[],
            &|| match dst {
                Some(d) => format!("RTM_DELNEIGH (fdb) {mac} dev ifindex {index} dst {d} self"),
                None => format!("RTM_DELNEIGH (fdb) {mac} dev ifindex {index} self"),
            },
            |_| Ok(()),
        );
        ignore_errno(r, &[libc::ENOENT, libc::ENODEV])
    }

    // --- routes ---

    /// Every IPv4 route of every table (the caller filters by table and protocol).
    pub fn routes(&mut self) -> Result<Vec<RouteRecord>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let mut out = Vec::new();
        self.sock.request(
            RouteNetlinkMessage::GetRoute(req),
            NLM_F_DUMP,
            &[],
            &|| "RTM_GETROUTE dump (IPv4)".to_string(),
            |m| {
                out.extend(parse_route(m));
                Ok(())
            },
        )?;
        Ok(out)
    }

    fn route_message(r: &NewRoute) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = r.prefix.prefix_len();
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::from(r.protocol);
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        if r.onlink {
            m.header.flags = RouteFlags::Onlink;
        }
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                r.prefix.trunc().addr(),
            )));
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(r.gateway)));
        m.attributes.push(RouteAttribute::Oif(r.oif));
        m
    }

    /// `ip route replace` of `r` in the main table: replaces the route of the same
    /// prefix and metric 0, whoever owns it (check first).
    pub fn replace_route(&mut self, r: &NewRoute) -> Result<()> {
        self.sock.request(
            RouteNetlinkMessage::NewRoute(Self::route_message(r)),
            NLM_F_CREATE | NLM_F_REPLACE,
            &[],
            &|| format!("RTM_NEWROUTE {r}"),
            |_| Ok(()),
        )
    }

    /// Deletes exactly the route `r` describes (table, prefix, metric, protocol);
    /// `Ok(false)` if it was gone.
    pub fn delete_route(&mut self, r: &RouteRecord) -> Result<bool> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = r.prefix.prefix_len();
        m.header.table = u8::try_from(r.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        m.header.protocol = RouteProtocol::from(r.protocol);
        m.header.scope = RouteScope::NoWhere;
        m.header.kind = RouteType::from(r.kind);
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                r.prefix.addr(),
            )));
        m.attributes.push(RouteAttribute::Table(r.table));
        if r.metric != 0 {
            m.attributes.push(RouteAttribute::Priority(r.metric));
        }
        if let Some(gw) = r.gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        if let Some(oif) = r.oif {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        let res = self.sock.request(
            RouteNetlinkMessage::DelRoute(m),
            0,
            &[],
            &|| format!("RTM_DELROUTE {}", describe_route(r)),
            |_| Ok(()),
        );
        ignore_errno(res, &[libc::ESRCH, libc::ENODEV])
    }
}

/// `10.244.1.0/24 via 10.168.0.3 dev ifindex 2 metric 5 table 254 proto 4` (for errors).
pub fn describe_route(r: &RouteRecord) -> String {
    let mut s = r.prefix.to_string();
    if let Some(gw) = r.gateway {
        s += &format!(" via {gw}");
    }
    if let Some(oif) = r.oif {
        s += &format!(" dev ifindex {oif}");
    }
    if r.onlink {
        s += " onlink";
    }
    if r.metric != 0 {
        s += &format!(" metric {}", r.metric);
    }
    if r.table != RT_TABLE_MAIN {
        s += &format!(" table {}", r.table);
    }
    s
}

/// Parses an `RTM_NEWLINK` with its link info.
pub(crate) fn parse_link_details(m: &RawMsg<'_>) -> Result<LinkDetails> {
    let iface = parse_link(m)?;
    let mut d = LinkDetails {
        index: iface.index,
        name: iface.name,
        mac: iface.mac,
        mtu: iface.mtu,
        up: iface.up,
        alias: None,
        kind: None,
        vxlan: None,
    };
    // parse_link checked the ifinfomsg length.
    let Some(rest) = m.payload.get(IFINFOMSG_LEN..) else {
        return Ok(d);
    };
    for (kind, v) in attrs(rest) {
        match kind {
            IFLA_IFALIAS => {
                let a = c_string(v);
                d.alias = (!a.is_empty()).then_some(a);
            }
            IFLA_LINKINFO => {
                let mut data = None;
                for (k, v) in attrs(v) {
                    match k {
                        IFLA_INFO_KIND => d.kind = Some(c_string(v)),
                        IFLA_INFO_DATA => data = Some(v),
                        _ => {}
                    }
                }
                if let (Some("vxlan"), Some(data)) = (d.kind.as_deref(), data) {
                    d.vxlan = Some(parse_vxlan_info(data));
                }
            }
            _ => {}
        }
    }
    Ok(d)
}

fn parse_vxlan_info(data: &[u8]) -> VxlanInfo {
    let mut info = VxlanInfo {
        vni: 0,
        port: 0,
        local: None,
        link: None,
        // The kernel's default when the attribute is absent.
        learning: true,
    };
    for (k, v) in attrs(data) {
        match k {
            IFLA_VXLAN_ID => info.vni = u32_at(v, 0).unwrap_or(0),
            IFLA_VXLAN_LINK => info.link = u32_at(v, 0).filter(|i| *i != 0),
            IFLA_VXLAN_LOCAL => {
                info.local = <[u8; 4]>::try_from(v)
                    .ok()
                    .map(Ipv4Addr::from)
                    .filter(|a| !a.is_unspecified())
            }
            IFLA_VXLAN_LEARNING => info.learning = v.first().is_some_and(|b| *b != 0),
            // Network byte order.
            IFLA_VXLAN_PORT => {
                info.port = v.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
            }
            _ => {}
        }
    }
    info
}

/// Parses an IPv4 `RTM_NEWNEIGH` into (ifindex, entry); `None` for other families,
/// proxy entries and entries without an address.
pub(crate) fn parse_neighbour(m: &RawMsg<'_>) -> Option<(u32, NeighbourRecord)> {
    if m.ty != RTM_NEWNEIGH {
        return None;
    }
    let p = m.payload;
    if p.len() < NDMSG_LEN || p[0] != libc::AF_INET as u8 || p[10] & 0x08 != 0 {
        return None;
    }
    let index = u32_at(p, 4)?;
    let state = u16_at(p, 8)?;
    let mut ip = None;
    let mut mac = None;
    for (kind, v) in attrs(&p[NDMSG_LEN..]) {
        match kind {
            NDA_DST => ip = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from),
            NDA_LLADDR => mac = <[u8; 6]>::try_from(v).ok().map(MacAddr),
            _ => {}
        }
    }
    Some((
        index,
        NeighbourRecord {
            ip: ip?,
            mac,
            state,
        },
    ))
}

/// Parses an `AF_BRIDGE` `RTM_NEWNEIGH` into (ifindex, entry); `None` for other
/// families, entries of a bridge master and entries without a MAC.
pub(crate) fn parse_fdb(m: &RawMsg<'_>) -> Option<(u32, FdbRecord)> {
    if m.ty != RTM_NEWNEIGH {
        return None;
    }
    let p = m.payload;
    if p.len() < NDMSG_LEN || p[0] != libc::AF_BRIDGE as u8 || p[10] & NTF_MASTER != 0 {
        return None;
    }
    let index = u32_at(p, 4)?;
    let state = u16_at(p, 8)?;
    let flags = p[10];
    let mut dst = None;
    let mut mac = None;
    for (kind, v) in attrs(&p[NDMSG_LEN..]) {
        match kind {
            NDA_DST => dst = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from),
            NDA_LLADDR => mac = <[u8; 6]>::try_from(v).ok().map(MacAddr),
            _ => {}
        }
    }
    Some((
        index,
        FdbRecord {
            mac: mac?,
            dst,
            state,
            flags,
        },
    ))
}

/// Parses an IPv4 `RTM_NEWROUTE`; `None` for other families and malformed messages.
pub(crate) fn parse_route(m: &RawMsg<'_>) -> Option<RouteRecord> {
    if m.ty != RTM_NEWROUTE {
        return None;
    }
    let p = m.payload;
    if p.len() < RTMSG_LEN || p[0] != libc::AF_INET as u8 {
        return None;
    }
    let dst_len = p[1];
    let mut table = u32::from(p[4]);
    let protocol = p[5];
    let kind = p[7];
    let flags = u32_at(p, 8)?;
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = 0;
    for (k, v) in attrs(&p[RTMSG_LEN..]) {
        match k {
            RTA_DST => dst = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from)?,
            RTA_GATEWAY => gateway = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from),
            RTA_OIF => oif = u32_at(v, 0),
            RTA_PRIORITY => metric = u32_at(v, 0).unwrap_or(0),
            RTA_TABLE => table = u32_at(v, 0).unwrap_or(table),
            _ => {}
        }
    }
    Some(RouteRecord {
        prefix: Ipv4Net::new(dst, dst_len).ok()?,
        table,
        protocol,
        kind,
        gateway,
        oif,
        metric,
        onlink: flags & RTNH_F_ONLINK != 0,
    })
}
