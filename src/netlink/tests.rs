//! Parser tests on hand-built messages (no kernel needed). The kernel-facing behaviour is
//! tested in `netns-tests/neigh.rs` and `netns-tests/kernel.rs`.

use super::kernel_objects::{parse_fdb, parse_link_details, parse_neighbour, parse_route};
use super::link::{parse_ipv4_addr, parse_link};
use super::neigh::parse_neigh;
use super::nud;
use super::socket::{
    attrs, decode_error, encode_attr, messages, RawMsg, NLMSG_DONE, NLMSG_ERROR, RTM_DELNEIGH,
    RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH,
};
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

fn nlmsg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut v = Vec::new();
    v.extend_from_slice(&(len as u32).to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&77u32.to_ne_bytes());
    v.extend_from_slice(payload);
    v.resize((len + 3) & !3, 0);
    v
}

fn raw(ty: u16, payload: &[u8]) -> RawMsg<'_> {
    RawMsg {
        ty,
        flags: 0,
        seq: 0,
        port: 0,
        payload,
    }
}

/// An ndmsg with NDA_DST and optionally NDA_LLADDR.
fn ndmsg(
    family: u8,
    ifindex: u32,
    state: u16,
    flags: u8,
    dst: &[u8],
    lladdr: Option<&[u8]>,
) -> Vec<u8> {
    let mut v = vec![family, 0, 0, 0];
    v.extend_from_slice(&ifindex.to_ne_bytes());
    v.extend_from_slice(&state.to_ne_bytes());
    v.push(flags);
    v.push(1); // RTN_UNICAST
    v.extend(encode_attr(1, dst));
    if let Some(l) = lladdr {
        v.extend(encode_attr(2, l));
    }
    v.extend(encode_attr(3, &[0; 16])); // NDA_CACHEINFO, ignored
    v
}

const INET: u8 = libc::AF_INET as u8;
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];

#[test]
fn messages_splits_a_datagram_and_stops_at_garbage() {
    let mut d = nlmsg(RTM_NEWNEIGH, 2, 1, &[1, 2, 3]); // padded to 20
    d.extend(nlmsg(NLMSG_DONE, 2, 1, &0u32.to_ne_bytes()));
    let all: Vec<_> = messages(&d).collect();
    assert_eq!(all.len(), 2);
    let first = all[0].as_ref().unwrap();
    assert_eq!(
        (first.ty, first.flags, first.seq, first.port),
        (RTM_NEWNEIGH, 2, 1, 77)
    );
    assert_eq!(first.payload, &[1, 2, 3]);
    assert_eq!(all[1].as_ref().unwrap().ty, NLMSG_DONE);

    // A length beyond the datagram, below the header size, or a short tail.
    let mut bad = nlmsg(RTM_NEWNEIGH, 0, 1, &[]);
    bad[0] = 200;
    let r: Vec<_> = messages(&bad).collect();
    assert_eq!(r.len(), 1);
    assert!(r[0].is_err());
    bad[0] = 8;
    assert!(messages(&bad).next().unwrap().is_err());
    let mut tail = nlmsg(NLMSG_DONE, 0, 1, &[]);
    tail.extend_from_slice(&[1, 2, 3]);
    let r: Vec<_> = messages(&tail).collect();
    assert_eq!(r.len(), 2);
    assert!(r[0].is_ok() && r[1].is_err());
    assert_eq!(messages(&[]).count(), 0);
}

#[test]
fn attrs_handles_padding_flags_and_truncation() {
    let mut b = encode_attr(1, &[10, 0, 0, 1]);
    b.extend(encode_attr(3, b"va\0")); // 7 bytes, padded to 8
    b.extend(encode_attr(0x8000 | 5, &[])); // NLA_F_NESTED set
    let got: Vec<_> = attrs(&b).collect();
    assert_eq!(
        got,
        vec![(1, &[10u8, 0, 0, 1][..]), (3, &b"va\0"[..]), (5, &[][..])]
    );
    // Declared length beyond the buffer, and a length below the header: stop.
    let mut t = encode_attr(1, &[1, 2, 3, 4]);
    t[0] = 40;
    assert_eq!(attrs(&t).count(), 0);
    let mut t = encode_attr(1, &[1, 2, 3, 4]);
    t[0] = 2;
    assert_eq!(attrs(&t).count(), 0);
    assert_eq!(attrs(&[4, 0]).count(), 0);
    assert_eq!(encode_attr(1, &[9]).len(), 8);
}

#[test]
fn neighbour_states_map_to_usable_macs() {
    let dst = [10, 99, 0, 2];
    for state in [
        nud::REACHABLE,
        nud::STALE,
        nud::DELAY,
        nud::PROBE,
        nud::PERMANENT,
        nud::NOARP,
    ] {
        let p = ndmsg(INET, 3, state, 0, &dst, Some(&MAC));
        let ev = parse_neigh(&raw(RTM_NEWNEIGH, &p)).unwrap();
        assert_eq!(ev.ifindex, 3);
        assert_eq!(ev.ip, Ipv4Addr::new(10, 99, 0, 2));
        assert_eq!(ev.mac, Some(MacAddr(MAC)), "{}", nud::name(state));
        assert_eq!(ev.state, state);
    }
    for state in [nud::INCOMPLETE, nud::FAILED, nud::NONE] {
        // The kernel may still carry the old lladdr on a FAILED entry: not usable.
        let p = ndmsg(INET, 3, state, 0, &dst, Some(&MAC));
        let ev = parse_neigh(&raw(RTM_NEWNEIGH, &p)).unwrap();
        assert_eq!(ev.mac, None, "{}", nud::name(state));
        assert_eq!(ev.state, state);
    }
    // A deletion is "gone", whatever state the entry had.
    let p = ndmsg(INET, 3, nud::REACHABLE, 0, &dst, Some(&MAC));
    let ev = parse_neigh(&raw(RTM_DELNEIGH, &p)).unwrap();
    assert_eq!((ev.mac, ev.state), (None, nud::NONE));
    // A valid state without an lladdr (NOARP devices), or an lladdr that is not a MAC.
    let p = ndmsg(INET, 3, nud::NOARP, 0, &dst, None);
    assert_eq!(parse_neigh(&raw(RTM_NEWNEIGH, &p)).unwrap().mac, None);
    let p = ndmsg(INET, 3, nud::REACHABLE, 0, &dst, Some(&[1, 2, 3, 4]));
    assert_eq!(parse_neigh(&raw(RTM_NEWNEIGH, &p)).unwrap().mac, None);
}

#[test]
fn neighbour_messages_that_are_not_ours_are_skipped() {
    let dst = [10, 99, 0, 2];
    let v6 = ndmsg(
        libc::AF_INET6 as u8,
        3,
        nud::REACHABLE,
        0,
        &[0; 16],
        Some(&MAC),
    );
    assert_eq!(parse_neigh(&raw(RTM_NEWNEIGH, &v6)), None);
    let bridge = ndmsg(libc::AF_BRIDGE as u8, 3, nud::PERMANENT, 0, &[], Some(&MAC));
    assert_eq!(parse_neigh(&raw(RTM_NEWNEIGH, &bridge)), None);
    let proxy = ndmsg(INET, 3, nud::NONE, 0x08, &dst, None);
    assert_eq!(parse_neigh(&raw(RTM_NEWNEIGH, &proxy)), None);
    let bad_dst = ndmsg(INET, 3, nud::REACHABLE, 0, &[10, 99, 0], Some(&MAC));
    assert_eq!(parse_neigh(&raw(RTM_NEWNEIGH, &bad_dst)), None);
    let ok = ndmsg(INET, 3, nud::REACHABLE, 0, &dst, Some(&MAC));
    assert_eq!(parse_neigh(&raw(RTM_NEWLINK, &ok)), None);
    assert_eq!(parse_neigh(&raw(RTM_NEWNEIGH, &ok[..11])), None);
}

#[test]
fn parsers_never_panic_on_arbitrary_bytes() {
    // Deterministic xorshift: many short messages of random bytes, and truncations of
    // a valid one.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if b.len() > 12 && next() % 2 == 0 {
            b[0] = INET;
        }
        for ty in [
            RTM_NEWNEIGH,
            RTM_DELNEIGH,
            RTM_NEWLINK,
            RTM_NEWADDR,
            NLMSG_ERROR,
        ] {
            let m = RawMsg {
                ty,
                flags: next() as u16,
                seq: 0,
                port: 0,
                payload: &b,
            };
            let _ = parse_neigh(&m);
            let _ = parse_neighbour(&m);
            let _ = parse_fdb(&m);
            let _ = parse_route(&m);
            let _ = parse_route(&RawMsg {
                ty: RTM_NEWROUTE,
                ..m
            });
            let _ = parse_link(&m);
            let _ = parse_link_details(&m);
            let _ = parse_ipv4_addr(&m);
            let _ = decode_error(&m);
        }
        for m in messages(&b).flatten() {
            let _ = attrs(m.payload).count();
        }
    }
    let full = ndmsg(INET, 3, nud::REACHABLE, 0, &[10, 99, 0, 2], Some(&MAC));
    for cut in 0..full.len() {
        let _ = parse_neigh(&raw(RTM_NEWNEIGH, &full[..cut]));
    }
    let route = rtmsg(24, 254, 112, 4, &[10, 244, 1, 0], Some(&[10, 244, 1, 0]), 7);
    for cut in 0..route.len() {
        let _ = parse_route(&raw(RTM_NEWROUTE, &route[..cut]));
    }
    let link = vxlan_link();
    for cut in 0..link.len() {
        let _ = parse_link_details(&raw(RTM_NEWLINK, &link[..cut]));
    }
}

const RTM_NEWROUTE: u16 = 24;

/// An rtmsg (IPv4, unicast) with RTA_DST, RTA_GATEWAY and RTA_OIF.
fn rtmsg(
    dst_len: u8,
    table: u8,
    protocol: u8,
    flags: u32,
    dst: &[u8],
    gateway: Option<&[u8]>,
    oif: u32,
) -> Vec<u8> {
    let mut v = vec![INET, dst_len, 0, 0, table, protocol, 0, 1];
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend(encode_attr(15, &u32::from(table).to_ne_bytes())); // RTA_TABLE
    v.extend(encode_attr(1, dst));
    if let Some(g) = gateway {
        v.extend(encode_attr(5, g));
    }
    v.extend(encode_attr(4, &oif.to_ne_bytes()));
    v
}

/// An ifinfomsg of a VXLAN link (index 9, "podfwd.1", up) with its alias and link info.
fn vxlan_link() -> Vec<u8> {
    let mut v = vec![0, 0, 1, 0];
    v.extend_from_slice(&9u32.to_ne_bytes());
    v.extend_from_slice(&1u32.to_ne_bytes()); // IFF_UP
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend(encode_attr(3, b"podfwd.1\0"));
    v.extend(encode_attr(4, &1450u32.to_ne_bytes()));
    v.extend(encode_attr(1, &MAC));
    v.extend(encode_attr(20, b"podfwd-managed\0"));
    let mut data = Vec::new();
    data.extend(encode_attr(1, &42u32.to_ne_bytes())); // IFLA_VXLAN_ID
    data.extend(encode_attr(3, &2u32.to_ne_bytes())); // IFLA_VXLAN_LINK
    data.extend(encode_attr(4, &[10, 168, 0, 2])); // IFLA_VXLAN_LOCAL
    data.extend(encode_attr(7, &[0])); // IFLA_VXLAN_LEARNING
    data.extend(encode_attr(15, &8472u16.to_be_bytes())); // IFLA_VXLAN_PORT
    let mut info = encode_attr(1, b"vxlan\0");
    info.extend(encode_attr(2, &data));
    v.extend(encode_attr(18, &info)); // IFLA_LINKINFO
    v
}

#[test]
fn route_records_carry_prefix_gateway_device_protocol_and_onlink() {
    let p = rtmsg(24, 254, 112, 4, &[10, 244, 1, 0], Some(&[10, 244, 1, 0]), 7);
    let r = parse_route(&raw(RTM_NEWROUTE, &p)).expect("route");
    assert_eq!(r.prefix, "10.244.1.0/24".parse().unwrap());
    assert_eq!(r.gateway, Some(Ipv4Addr::new(10, 244, 1, 0)));
    assert_eq!(
        (r.oif, r.table, r.protocol, r.metric),
        (Some(7), 254, 112, 0)
    );
    assert!(r.onlink);
    // A default route has no RTA_DST.
    let mut p = vec![INET, 0, 0, 0, 254, 3, 0, 1];
    p.extend_from_slice(&0u32.to_ne_bytes());
    let r = parse_route(&raw(RTM_NEWROUTE, &p)).expect("default route");
    assert_eq!(r.prefix, "0.0.0.0/0".parse().unwrap());
    assert!(!r.onlink && r.gateway.is_none());
}

#[test]
fn vxlan_links_report_alias_kind_and_parameters() {
    let l = parse_link_details(&raw(RTM_NEWLINK, &vxlan_link())).expect("link");
    assert_eq!(
        (l.index, l.name.as_str(), l.mtu, l.up),
        (9, "podfwd.1", 1450, true)
    );
    assert_eq!(l.alias.as_deref(), Some("podfwd-managed"));
    assert_eq!(l.kind.as_deref(), Some("vxlan"));
    let v = l.vxlan.expect("vxlan info");
    assert_eq!((v.vni, v.port, v.link), (42, 8472, Some(2)));
    assert_eq!(v.local, Some(Ipv4Addr::new(10, 168, 0, 2)));
    assert!(!v.learning);
}

#[test]
fn fdb_entries_parse_with_their_destination_and_skip_bridge_masters() {
    let bridge = libc::AF_BRIDGE as u8;
    let mut p = vec![bridge, 0, 0, 0];
    p.extend_from_slice(&9u32.to_ne_bytes());
    p.extend_from_slice(&nud::PERMANENT.to_ne_bytes());
    p.push(0x02); // NTF_SELF
    p.push(0);
    p.extend(encode_attr(2, &MAC));
    p.extend(encode_attr(1, &[10, 168, 0, 3]));
    let (index, e) = parse_fdb(&raw(RTM_NEWNEIGH, &p)).expect("fdb entry");
    assert_eq!(index, 9);
    assert_eq!(e.mac, MacAddr(MAC));
    assert_eq!(e.dst, Some(Ipv4Addr::new(10, 168, 0, 3)));
    assert!(e.is_self_permanent());
    p[10] = 0x04; // NTF_MASTER: a bridge's own table, not a device's
    assert!(parse_fdb(&raw(RTM_NEWNEIGH, &p)).is_none());
    // An IPv4 neighbour is not an FDB entry, and the other way round.
    assert!(parse_neighbour(&raw(RTM_NEWNEIGH, &p)).is_none());
    let n = ndmsg(INET, 3, nud::PERMANENT, 0, &[10, 244, 1, 0], Some(&MAC));
    assert!(parse_fdb(&raw(RTM_NEWNEIGH, &n)).is_none());
    let (i, rec) = parse_neighbour(&raw(RTM_NEWNEIGH, &n)).expect("neighbour");
    assert_eq!(
        (i, rec.ip, rec.mac),
        (3, Ipv4Addr::new(10, 244, 1, 0), Some(MacAddr(MAC)))
    );
    assert!(rec.is_permanent());
}

#[test]
fn errors_and_extended_acks_decode() {
    let ack = 0i32.to_ne_bytes();
    assert!(decode_error(&raw(NLMSG_ERROR, &ack)).is_ok());

    // -ENODEV with NLM_F_CAPPED | NLM_F_ACK_TLVS: code, the request's header, TLVs.
    let mut p = (-libc::ENODEV).to_ne_bytes().to_vec();
    p.extend(nlmsg(18, 5, 9, &[]));
    p.extend(encode_attr(1, b"Invalid NTF_* flag combination\0"));
    let m = RawMsg {
        ty: NLMSG_ERROR,
        flags: 0x100 | 0x200,
        seq: 9,
        port: 0,
        payload: &p,
    };
    let (err, extack) = decode_error(&m).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
    assert_eq!(extack.as_deref(), Some("Invalid NTF_* flag combination"));

    // Not capped: the whole request (with its payload) precedes the TLVs.
    let mut p = (-libc::EINVAL).to_ne_bytes().to_vec();
    p.extend(nlmsg(28, 5, 9, &[1, 2, 3, 4, 5]));
    p.extend(encode_attr(1, b"bad\0"));
    let m = RawMsg {
        ty: NLMSG_ERROR,
        flags: 0x200,
        seq: 9,
        port: 0,
        payload: &p,
    };
    let (err, extack) = decode_error(&m).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(extack.as_deref(), Some("bad"));
    assert!(decode_error(&raw(NLMSG_ERROR, &[1, 2])).is_err());
}

#[test]
fn link_and_address_messages_parse() {
    let mut p = vec![0u8, 0, 1, 0]; // AF_UNSPEC, ARPHRD_ETHER
    p.extend_from_slice(&7u32.to_ne_bytes());
    p.extend_from_slice(&(1u32 | 1 << 16).to_ne_bytes()); // IFF_UP | IFF_LOWER_UP
    p.extend_from_slice(&0u32.to_ne_bytes());
    p.extend(encode_attr(3, b"va\0"));
    p.extend(encode_attr(1, &MAC));
    p.extend(encode_attr(4, &1400u32.to_ne_bytes()));
    p.extend(encode_attr(31, &3u32.to_ne_bytes()));
    p.extend(encode_attr(32, &2u32.to_ne_bytes()));
    let l = parse_link(&raw(RTM_NEWLINK, &p)).unwrap();
    assert_eq!(
        (l.index, l.name.as_str(), l.mac, l.mtu),
        (7, "va", MacAddr(MAC), 1400)
    );
    assert!(l.up && l.carrier);
    assert_eq!((l.num_rx_queues, l.num_tx_queues), (2, 3));
    assert!(parse_link(&raw(RTM_NEWLINK, &p[..10])).is_err());

    let mut a = vec![INET, 24, 0, 0];
    a.extend_from_slice(&7u32.to_ne_bytes());
    a.extend(encode_attr(1, &[10, 99, 0, 9])); // IFA_ADDRESS (peer on ptp links)
    a.extend(encode_attr(2, &[10, 99, 0, 1])); // IFA_LOCAL wins
    assert_eq!(
        parse_ipv4_addr(&raw(RTM_NEWADDR, &a)),
        Some((7, "10.99.0.1/24".parse().unwrap()))
    );
    a[1] = 40; // prefix length out of range
    assert_eq!(parse_ipv4_addr(&raw(RTM_NEWADDR, &a)), None);
}

#[test]
fn state_names() {
    assert_eq!(nud::name(nud::NONE), "none");
    assert_eq!(nud::name(nud::REACHABLE), "reachable");
    assert_eq!(nud::name(nud::STALE | nud::PROBE), "stale|probe");
    assert_eq!(nud::name(0x100), "0x100");
    assert_eq!(nud::VALID, 0xde);
}
