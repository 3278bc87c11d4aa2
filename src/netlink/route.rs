//! Routes into an interface and link settings, over rtnetlink (what `ip route replace
//! <prefix> dev <if>` and `ip link set dev <if> mtu .. txqueuelen .. up` do).

use super::kernel_objects::ignore_errno;
use super::socket::RtSocket;
use super::Result;
use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

/// The routing table the TUN backend's routes live in (`ip route show table 112`), and
/// the priority of the rule that looks it up before `main` (`ip rule`: `30112: from all
/// lookup 112`). 112 is also the rtnetlink protocol podfwd marks its kernel routes with.
pub const TUN_TABLE: u32 = 112;
pub const TUN_RULE_PRIORITY: u32 = 30112;

/// `RTM_NEWROUTE`/`RTM_DELROUTE` for `prefix` straight into `ifindex` (scope link,
/// protocol static) in `table`.
fn route_message(prefix: Ipv4Net, ifindex: u32, table: u32) -> RouteMessage {
    let prefix = prefix.trunc();
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = prefix.prefix_len();
    m.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    m.header.protocol = RouteProtocol::Static;
    m.header.scope = RouteScope::Link;
    m.header.kind = RouteType::Unicast;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            prefix.addr(),
        )));
    m.attributes.push(RouteAttribute::Table(table));
    m.attributes.push(RouteAttribute::Oif(ifindex));
    m
}

/// Adds or replaces the route `prefix dev <ifindex>` in `table`.
pub fn replace_route(prefix: Ipv4Net, ifindex: u32, table: u32) -> Result<()> {
    let mut sock = RtSocket::open()?;
    sock.request(
        RouteNetlinkMessage::NewRoute(route_message(prefix, ifindex, table)),
        NLM_F_CREATE | NLM_F_REPLACE,
        &[],
        &|| format!("RTM_NEWROUTE {prefix} dev ifindex {ifindex} table {table}"),
        |_| Ok(()),
    )
}

/// Deletes the route `prefix dev <ifindex>` from `table`; Ok(false) if there was none.
pub fn delete_route(prefix: Ipv4Net, ifindex: u32, table: u32) -> Result<bool> {
    let mut sock = RtSocket::open()?;
    let res = sock.request(
        RouteNetlinkMessage::DelRoute(route_message(prefix, ifindex, table)),
        0,
        &[],
        &|| format!("RTM_DELROUTE {prefix} dev ifindex {ifindex} table {table}"),
        |_| Ok(()),
    );
    ignore_errno(res, &[libc::ESRCH, libc::ENODEV])
}

/// The IPv4 rule `priority: from all lookup <table>` (protocol 112), added unless an
/// identical one exists (`NLM_F_EXCL`: the kernel answers EEXIST instead of adding a
/// duplicate). Ok(true) if it was added.
pub fn ensure_lookup_rule(priority: u32, table: u32) -> Result<bool> {
    let mut sock = RtSocket::open()?;
    let res = sock.request(
        RouteNetlinkMessage::NewRule(lookup_rule(priority, table)),
        NLM_F_CREATE | NLM_F_EXCL,
        &[],
        &|| format!("RTM_NEWRULE {priority}: lookup {table}"),
        |_| Ok(()),
    );
    ignore_errno(res, &[libc::EEXIST])
}

/// Removes the rule [`ensure_lookup_rule`] adds; Ok(false) if there was none.
pub fn delete_lookup_rule(priority: u32, table: u32) -> Result<bool> {
    let mut sock = RtSocket::open()?;
    let res = sock.request(
        RouteNetlinkMessage::DelRule(lookup_rule(priority, table)),
        0,
        &[],
        &|| format!("RTM_DELRULE {priority}: lookup {table}"),
        |_| Ok(()),
    );
    ignore_errno(res, &[libc::ENOENT, libc::ESRCH])
}

/// `priority: from all lookup <table>`, protocol 112 (podfwd's mark).
fn lookup_rule(priority: u32, table: u32) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.table = u8::try_from(table).unwrap_or(0);
    m.header.action = RuleAction::ToTable;
    m.attributes.push(RuleAttribute::Priority(priority));
    m.attributes.push(RuleAttribute::Table(table));
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::Other(
            crate::kernel::RTPROT_PODFWD,
        )));
    m
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
