//! Interface information: `RTM_GETLINK` for one link, `RTM_GETADDR` for its IPv4
//! addresses. The one interface lookup of podfwd: the control loop, the XDP classifier
//! and `podfwd check` all ask here.

use super::socket::{attrs, c_string, u32_at, RawMsg, RtSocket, RTM_NEWADDR, RTM_NEWLINK};
use super::{NetlinkError, Result};
use crate::wire::MacAddr;
use ipnet::Ipv4Net;
use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::Ipv4Addr;

const IFINFOMSG_LEN: usize = 16;
const IFF_UP: u32 = 1 << 0;
const IFF_LOWER_UP: u32 = 1 << 16;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;

const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// What podfwd needs to know about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    /// The hardware address; [`MacAddr::ZERO`] for devices without a 6-byte one
    /// (TUN, loopback has zeros anyway).
    pub mac: MacAddr,
    /// The ARPHRD link type (`ifi_type`): 1 for Ethernet (veth included), 65534 for TUN.
    pub hw_type: u16,
    pub mtu: u32,
    /// IPv4 addresses with their prefix lengths, in the kernel's order (primary first).
    pub ipv4: Vec<Ipv4Net>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Lower layer up (`IFF_LOWER_UP`): carrier, or for veth, the peer is up.
    pub carrier: bool,
    pub num_rx_queues: u32,
    pub num_tx_queues: u32,
}

/// Looks up an interface by name in the calling thread's network namespace.
pub fn interface(name: &str) -> Result<Interface> {
    if name.is_empty()
        || name.len() > 15
        || name
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(NetlinkError::InvalidInterfaceName(name.to_string()));
    }
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    get_link(
        msg,
        || NetlinkError::NoSuchInterface(name.to_string()),
        &|| format!("RTM_GETLINK {name}"),
    )
}

/// Looks up an interface by index in the calling thread's network namespace.
pub fn interface_by_index(index: u32) -> Result<Interface> {
    if index == 0 {
        return Err(NetlinkError::NoSuchIfindex(0));
    }
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    get_link(msg, || NetlinkError::NoSuchIfindex(index), &|| {
        format!("RTM_GETLINK ifindex {index}")
    })
}

fn get_link(
    msg: LinkMessage,
    not_found: impl Fn() -> NetlinkError,
    what: &dyn Fn() -> String,
) -> Result<Interface> {
    let mut sock = RtSocket::open()?;
    let mut found: Option<Interface> = None;
    let r = sock.request(RouteNetlinkMessage::GetLink(msg), 0, &[], what, |m| {
        if m.ty == RTM_NEWLINK && found.is_none() {
            found = Some(parse_link(m)?);
        }
        Ok(())
    });
    match r {
        Err(e) if e.errno() == Some(libc::ENODEV) => return Err(not_found()),
        other => other?,
    }
    let mut iface = found.ok_or_else(not_found)?;

    iface.ipv4 = ipv4_addresses(&mut sock, iface.index)?;
    Ok(iface)
}

/// Parses an `RTM_NEWLINK` message (addresses are filled in later).
pub(crate) fn parse_link(m: &RawMsg<'_>) -> Result<Interface> {
    let p = m.payload;
    let malformed = |detail: String| NetlinkError::Malformed {
        context: "RTM_NEWLINK",
        detail,
    };
    if p.len() < IFINFOMSG_LEN {
        return Err(malformed(format!(
            "{} bytes, shorter than ifinfomsg",
            p.len()
        )));
    }
    let hw_type = u16::from_ne_bytes([p[2], p[3]]);
    let index = u32_at(p, 4).unwrap_or(0);
    let flags = u32_at(p, 8).unwrap_or(0);
    let mut iface = Interface {
        index,
        name: String::new(),
        mac: MacAddr::ZERO,
        hw_type,
        mtu: 0,
        ipv4: Vec::new(),
        up: flags & IFF_UP != 0,
        carrier: flags & IFF_LOWER_UP != 0,
        num_rx_queues: 1,
        num_tx_queues: 1,
    };
    for (kind, v) in attrs(&p[IFINFOMSG_LEN..]) {
        match kind {
            IFLA_IFNAME => iface.name = c_string(v),
            IFLA_ADDRESS => {
                if let Ok(b) = <[u8; 6]>::try_from(v) {
                    iface.mac = MacAddr(b);
                }
            }
            IFLA_MTU => iface.mtu = u32_at(v, 0).unwrap_or(0),
            IFLA_NUM_TX_QUEUES => iface.num_tx_queues = u32_at(v, 0).unwrap_or(1),
            IFLA_NUM_RX_QUEUES => iface.num_rx_queues = u32_at(v, 0).unwrap_or(1),
            _ => {}
        }
    }
    if index == 0 || iface.name.is_empty() {
        return Err(malformed(format!(
            "link without index or name (index {index}, name {:?})",
            iface.name
        )));
    }
    Ok(iface)
}

/// Parses an `RTM_NEWADDR` message: (ifindex, address/prefix) for IPv4, else None.
pub(crate) fn parse_ipv4_addr(m: &RawMsg<'_>) -> Option<(u32, Ipv4Net)> {
    let p = m.payload;
    if p.len() < IFADDRMSG_LEN || p[0] != libc::AF_INET as u8 {
        return None;
    }
    let prefix_len = p[1];
    let index = u32_at(p, 4)?;
    let mut local = None;
    let mut address = None;
    for (kind, v) in attrs(&p[IFADDRMSG_LEN..]) {
        let Ok(b) = <[u8; 4]>::try_from(v) else {
            continue;
        };
        match kind {
            IFA_LOCAL => local = Some(Ipv4Addr::from(b)),
            IFA_ADDRESS => address = Some(Ipv4Addr::from(b)),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
    // point-to-point links and equal to IFA_LOCAL otherwise.
    let ip = local.or(address)?;
    Some((index, Ipv4Net::new(ip, prefix_len).ok()?))
}

/// The IPv4 addresses of interface `index` (`RTM_GETADDR` dump, filtered).
pub(crate) fn ipv4_addresses(sock: &mut RtSocket, index: u32) -> Result<Vec<Ipv4Net>> {
    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet;
    let mut out = Vec::new();
    sock.request(
        RouteNetlinkMessage::GetAddress(req),
        NLM_F_DUMP,
        &[],
        &|| format!("RTM_GETADDR (IPv4 addresses of ifindex {index})"),
        |m| {
            if m.ty == RTM_NEWADDR {
                if let Some((ifindex, net)) = parse_ipv4_addr(m) {
                    if ifindex == index {
                        out.push(net);
                    }
                }
            }
            Ok(())
        },
    )?;
    Ok(out)
}
