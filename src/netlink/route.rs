//! Routes into an interface and link settings, over rtnetlink (what `ip route replace
//! <prefix> dev <if>` and `ip link set dev <if> mtu .. txqueuelen .. up` do).

use super::socket::RtSocket;
use super::Result;
use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

/// `RTM_NEWROUTE`/`RTM_DELROUTE` for `prefix` straight into `ifindex` (scope link, main
/// table, protocol static).
fn route_message(prefix: Ipv4Net, ifindex: u32) -> RouteMessage {
    let prefix = prefix.trunc();
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = prefix.prefix_len();
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Static;
    m.header.scope = RouteScope::Link;
    m.header.kind = RouteType::Unicast;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            prefix.addr(),
        )));
    m.attributes.push(RouteAttribute::Oif(ifindex));
    m
}

/// Adds or replaces the route `prefix dev <ifindex>` in the main table.
pub fn replace_route(prefix: Ipv4Net, ifindex: u32) -> Result<()> {
    let mut sock = RtSocket::open()?;
    sock.request(
        RouteNetlinkMessage::NewRoute(route_message(prefix, ifindex)),
        NLM_F_CREATE | NLM_F_REPLACE,
        &[],
        &|| format!("RTM_NEWROUTE {prefix} dev ifindex {ifindex}"),
        |_| Ok(()),
    )
}

/// Deletes the route `prefix dev <ifindex>`; Ok(false) if there was none.
pub fn delete_route(prefix: Ipv4Net, ifindex: u32) -> Result<bool> {
    let mut sock = RtSocket::open()?;
    match sock.request(
        RouteNetlinkMessage::DelRoute(route_message(prefix, ifindex)),
        0,
        &[],
        &|| format!("RTM_DELROUTE {prefix} dev ifindex {ifindex}"),
        |_| Ok(()),
    ) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.errno(), Some(libc::ESRCH) | Some(libc::ENODEV)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets the MTU and transmit queue length of `ifindex` and brings it up.
pub fn set_link_up(ifindex: u32, mtu: u32, txqueuelen: u32) -> Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::Mtu(mtu));
    m.attributes.push(LinkAttribute::TxQueueLen(txqueuelen));
    let mut sock = RtSocket::open()?;
    sock.request(
        RouteNetlinkMessage::SetLink(m),
        0,
        &[],
        &|| format!("RTM_SETLINK ifindex {ifindex} mtu {mtu} txqueuelen {txqueuelen} up"),
        |_| Ok(()),
    )
}
