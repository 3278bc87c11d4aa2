//! Pipeline tests: every frame is built from bytes and every output checked byte by byte
//! (cross-checked with etherparse, an independent parser).

use super::*;
use crate::lpm::{Ipv4Net, LpmConfig};
use crate::nexthop::NextHop;
use etherparse::{PacketBuilder, SlicedPacket};
use proptest::prelude::*;
use std::net::Ipv4Addr;

const UPLINK: PortId = 0;
const POD: PortId = 1;
const HEADROOM: usize = 64;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

const NODE_A_UL: &str = "02:00:00:00:00:a1";
const NODE_A_POD: &str = "02:00:00:00:00:a3";
const POD_A: &str = "02:00:00:00:00:a2";
const NODE_B_UL: &str = "02:00:00:00:00:b1";
const VTEP_A: &str = "0e:00:00:00:00:0a";
const VTEP_B: &str = "0e:00:00:00:00:0b";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    HostGw,
    Vxlan,
}

/// Node A of the demo cluster: pod subnet 10.244.0.0/24 behind port 1, peer node B
/// (10.168.0.3, pods 10.244.1.0/24) on the uplink; all neighbours resolved.
fn node_a(mode: Mode) -> (FibWriter, Pipeline) {
    node(
        mode,
        "10.168.0.2",
        VTEP_A,
        NODE_A_UL,
        "10.244.0.0/24",
        "10.168.0.3",
        VTEP_B,
        "10.244.1.0/24",
    )
}

/// Node B, the mirror image of node A.
fn node_b(mode: Mode) -> (FibWriter, Pipeline) {
    node(
        mode,
        "10.168.0.3",
        VTEP_B,
        NODE_B_UL,
        "10.244.1.0/24",
        "10.168.0.2",
        VTEP_A,
        "10.244.0.0/24",
    )
}

#[allow(clippy::too_many_arguments)]
fn node(
    mode: Mode,
    node_ip: &str,
    vtep: &str,
    ul_mac: &str,
    own_cidr: &str,
    peer_ip: &str,
    peer_vtep: &str,
    peer_cidr: &str,
) -> (FibWriter, Pipeline) {
    let node = NodeParams {
        node_ip: ip(node_ip),
        uplink: UPLINK,
        vni: 1,
        vxlan_port: 8472,
        vtep_mac: mac(vtep),
    };
    let params = FibParams {
        node,
        ports: vec![
            PortInfo {
                mac: mac(ul_mac),
                mtu: 1500,
            },
            PortInfo {
                mac: mac(NODE_A_POD),
                mtu: 1500,
            },
        ],
        uplink_subnet: Some(net("10.168.0.0/24")),
        gateway: None,
        lpm: LpmConfig::default(),
    };
    let (mut w, fib) = FibWriter::new(params);
    w.set_route(net(own_cidr), NextHop::Connected { port: POD })
        .unwrap();
    let nh = match mode {
        Mode::HostGw => NextHop::HostGw {
            gateway: ip(peer_ip),
            port: UPLINK,
        },
        Mode::Vxlan => NextHop::Vxlan {
            node_ip: ip(peer_ip),
            vtep_mac: mac(peer_vtep),
        },
    };
    w.set_route(net(peer_cidr), nh).unwrap();
    let peer_ul = if node_ip == "10.168.0.2" {
        NODE_B_UL
    } else {
        NODE_A_UL
    };
    w.set_neighbour(UPLINK, ip(peer_ip), Some(mac(peer_ul)))
        .unwrap();
    let own_pod = if node_ip == "10.168.0.2" {
        "10.244.0.2"
    } else {
        "10.244.1.2"
    };
    w.set_neighbour(POD, ip(own_pod), Some(mac(POD_A))).unwrap();
    (w, Pipeline::new(node, fib))
}

/// A UDP frame src -> dst as a pod sends it.
fn udp_frame(
    src_mac: &str,
    dst_mac: &str,
    src: &str,
    dst: &str,
    sport: u16,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src_mac).0, mac(dst_mac).0)
        .ipv4(ip(src).octets(), ip(dst).octets(), ttl)
        .udp(sport, 5000);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn pod_a_to_pod_b(sport: u16, ttl: u8) -> Vec<u8> {
    udp_frame(
        POD_A,
        NODE_A_POD,
        "10.244.0.2",
        "10.244.1.2",
        sport,
        ttl,
        b"podfwd",
    )
}

/// Runs one frame through the pipeline with `HEADROOM` bytes in front of it.
fn run(p: &Pipeline, frame: &[u8], ingress: PortId) -> (Verdict, Vec<u8>, Counters) {
    let mut buf = vec![0u8; HEADROOM + frame.len()];
    buf[HEADROOM..].copy_from_slice(frame);
    let mut c = Counters::default();
    let mut v = [Verdict::ToKernel];
    let (offset, len) = {
        let mut pkts = [Packet {
            buf: &mut buf,
            offset: HEADROOM,
            len: frame.len(),
            ingress,
        }];
        p.process(&mut pkts, &mut v, &mut c);
        (pkts[0].offset, pkts[0].len)
    };
    (v[0], buf[offset..offset + len].to_vec(), c)
}

/// Rewrites a frame the way a router must: new MACs, TTL-1, checksum recomputed from
/// scratch with etherparse (independent of the incremental update under test).
fn routed(frame: &[u8], dst_mac: &str, src_mac: &str) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[..6].copy_from_slice(&mac(dst_mac).0);
    out[6..12].copy_from_slice(&mac(src_mac).0);
    out[22] -= 1;
    let (mut h, _) = etherparse::Ipv4Header::from_slice(&out[14..]).unwrap();
    h.header_checksum = h.calc_header_checksum();
    out[24..26].copy_from_slice(&h.header_checksum.to_be_bytes());
    out
}

#[test]
fn host_gw_rewrites_macs_and_decrements_ttl() {
    let (_w, p) = node_a(Mode::HostGw);
    let frame = pod_a_to_pod_b(40000, 64);
    let (v, out, c) = run(&p, &frame, POD);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(out, routed(&frame, NODE_B_UL, NODE_A_UL));
    assert_eq!(out[22], 63);
    assert_eq!((c.rx, c.forwarded, c.total_drops()), (1, 1, 0));
    let len = frame.len() as u64;
    assert_eq!(
        (c.rx_bytes, c.forwarded_bytes, c.encapsulated_bytes),
        (len, len, 0)
    );
}

#[test]
fn host_gw_delivers_from_the_uplink_to_a_local_pod() {
    let (_w, p) = node_a(Mode::HostGw);
    let frame = udp_frame(
        NODE_B_UL,
        NODE_A_UL,
        "10.244.1.2",
        "10.244.0.2",
        7,
        63,
        b"back",
    );
    let (v, out, _) = run(&p, &frame, UPLINK);
    assert_eq!(v, Verdict::Tx(POD));
    assert_eq!(out, routed(&frame, POD_A, NODE_A_POD));
}

#[test]
fn ethernet_padding_is_not_forwarded() {
    let (_w, p) = node_a(Mode::HostGw);
    let mut frame = udp_frame(POD_A, NODE_A_POD, "10.244.0.2", "10.244.1.2", 1, 64, b"x");
    let unpadded = frame.len();
    frame.resize(60, 0);
    let (v, out, c) = run(&p, &frame, POD);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(out.len(), unpadded);
    // Received with the padding, forwarded without.
    assert_eq!((c.rx_bytes, c.forwarded_bytes), (60, unpadded as u64));
}

/// The outer headers podfwd must emit for node A -> node B (flannel's wire format).
fn check_vxlan_frame(out: &[u8], inner_sent: &[u8]) -> u16 {
    // Outer Ethernet.
    assert_eq!(&out[0..6], &mac(NODE_B_UL).0, "outer dst MAC = peer node");
    assert_eq!(&out[6..12], &mac(NODE_A_UL).0, "outer src MAC = uplink");
    assert_eq!(&out[12..14], &[0x08, 0x00]);
    // Outer IPv4.
    let (iph, _) = etherparse::Ipv4Header::from_slice(&out[14..]).unwrap();
    assert_eq!(iph.source, [10, 168, 0, 2]);
    assert_eq!(iph.destination, [10, 168, 0, 3]);
    assert_eq!(iph.protocol, etherparse::IpNumber::UDP);
    assert_eq!(iph.time_to_live, 64);
    assert!(iph.dont_fragment);
    assert_eq!(usize::from(iph.total_len), out.len() - 14);
    assert_eq!(iph.header_checksum, iph.calc_header_checksum());
    // Outer UDP.
    let sport = u16::from_be_bytes([out[34], out[35]]);
    assert!((SRC_PORT_MIN..SRC_PORT_MAX).contains(&sport));
    assert_eq!(&out[36..38], &8472u16.to_be_bytes());
    assert_eq!(
        usize::from(u16::from_be_bytes([out[38], out[39]])),
        out.len() - 34
    );
    assert_eq!(&out[40..42], &[0, 0], "UDP checksum 0");
    // VXLAN: I flag, VNI 1.
    assert_eq!(&out[42..50], &[0x08, 0, 0, 0, 0, 0, 1, 0]);
    // Inner frame: VTEP MACs, TTL-1, the rest as sent.
    assert_eq!(&out[50..], &routed(inner_sent, VTEP_B, VTEP_A)[..]);
    sport
}

#[test]
fn vxlan_encap_writes_flannel_wire_format_into_headroom() {
    let (_w, p) = node_a(Mode::Vxlan);
    let frame = pod_a_to_pod_b(40000, 64);
    let (v, out, c) = run(&p, &frame, POD);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(out.len(), frame.len() + 50);
    check_vxlan_frame(&out, &frame);
    assert_eq!((c.encapsulated, c.forwarded), (1, 0));
    assert_eq!(
        (c.encapsulated_bytes, c.forwarded_bytes),
        (frame.len() as u64 + 50, 0)
    );
    // etherparse agrees it is UDP in IPv4 with an 8-byte VXLAN header then Ethernet.
    let s = SlicedPacket::from_ethernet(&out).unwrap();
    assert!(matches!(
        s.transport,
        Some(etherparse::TransportSlice::Udp(_))
    ));
}

#[test]
fn vxlan_source_port_is_stable_per_flow_and_varies_across_flows() {
    let (_w, p) = node_a(Mode::Vxlan);
    let port_of = |sport| {
        let f = pod_a_to_pod_b(sport, 64);
        let (_, out, _) = run(&p, &f, POD);
        check_vxlan_frame(&out, &f)
    };
    assert_eq!(port_of(1000), port_of(1000));
    let ports: std::collections::HashSet<u16> = (1000..1032).map(port_of).collect();
    assert!(
        ports.len() >= 28,
        "32 flows spread over only {} ports",
        ports.len()
    );
}

#[test]
fn vxlan_decap_delivers_the_inner_packet_to_the_local_pod() {
    let (_wa, a) = node_a(Mode::Vxlan);
    let (_wb, b) = node_b(Mode::Vxlan);
    let frame = pod_a_to_pod_b(40000, 64);
    let (_, wire, _) = run(&a, &frame, POD);
    let (v, out, c) = run(&b, &wire, UPLINK);
    assert_eq!(v, Verdict::Tx(POD));
    // Node B's pod port MAC is NODE_A_POD in this fixture; its pod has POD_A's MAC.
    let mut expected = routed(&frame, POD_A, NODE_A_POD);
    expected[22] -= 1; // one hop per node
    let (mut h, _) = etherparse::Ipv4Header::from_slice(&expected[14..]).unwrap();
    h.header_checksum = h.calc_header_checksum();
    expected[24..26].copy_from_slice(&h.header_checksum.to_be_bytes());
    assert_eq!(out, expected);
    assert_eq!((c.decapsulated, c.forwarded, c.total_drops()), (1, 1, 0));
    assert_eq!(
        (c.rx_bytes, c.decapsulated_bytes, c.forwarded_bytes),
        (wire.len() as u64, out.len() as u64, out.len() as u64)
    );
}

/// An encapsulated frame from node B to node A (for decap tests on node A).
fn vxlan_from_b(patch: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let (_wb, b) = node_b(Mode::Vxlan);
    let frame = udp_frame(
        POD_A,
        NODE_A_POD,
        "10.244.1.2",
        "10.244.0.2",
        99,
        64,
        b"hello",
    );
    let (v, mut wire, _) = run(&b, &frame, POD);
    assert_eq!(v, Verdict::Tx(UPLINK));
    patch(&mut wire);
    wire
}

fn fix_outer_ip_checksum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let c = crate::wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

fn drop_reason(p: &Pipeline, frame: &[u8], ingress: PortId) -> Verdict {
    let (v, _, c) = run(p, frame, ingress);
    if let Verdict::Drop(r) = v {
        assert_eq!(c.drops_of(r), 1, "{r} counted once");
        assert_eq!(c.total_drops(), 1);
    }
    v
}

#[test]
fn vxlan_with_a_foreign_vni_is_dropped() {
    let (_w, a) = node_a(Mode::Vxlan);
    let f = vxlan_from_b(|f| f[48] = 2);
    assert_eq!(
        drop_reason(&a, &f, UPLINK),
        Verdict::Drop(DropReason::BadVni)
    );
}

#[test]
fn vxlan_from_an_unknown_vtep_is_dropped() {
    let (_w, a) = node_a(Mode::Vxlan);
    let f = vxlan_from_b(|f| {
        f[29] = 99; // outer source 10.168.0.99
        fix_outer_ip_checksum(f);
    });
    assert_eq!(
        drop_reason(&a, &f, UPLINK),
        Verdict::Drop(DropReason::UnknownVtep)
    );
}

#[test]
fn vxlan_from_a_peer_known_only_as_a_vtep_is_accepted() {
    // auto mode sends host-gw to an on-link peer that may still send VXLAN (a node
    // without DirectRouting): the daemon lists every peer as a known VTEP.
    let (mut w, a) = node_a(Mode::Vxlan);
    let f = vxlan_from_b(|f| {
        f[29] = 99; // outer source 10.168.0.99
        fix_outer_ip_checksum(f);
    });
    w.set_known_vteps(&[ip("10.168.0.99")]);
    assert_ne!(
        drop_reason(&a, &f, UPLINK),
        Verdict::Drop(DropReason::UnknownVtep)
    );
    w.set_known_vteps(&[]);
    assert_eq!(
        drop_reason(&a, &f, UPLINK),
        Verdict::Drop(DropReason::UnknownVtep)
    );
}

#[test]
fn vxlan_without_the_i_flag_is_dropped() {
    let (_w, a) = node_a(Mode::Vxlan);
    let f = vxlan_from_b(|f| f[42] = 0);
    assert_eq!(
        drop_reason(&a, &f, UPLINK),
        Verdict::Drop(DropReason::BadVxlan)
    );
}

#[test]
fn vxlan_whose_inner_frame_is_not_for_our_vtep_is_dropped() {
    let (_w, a) = node_a(Mode::Vxlan);
    let f = vxlan_from_b(|f| f[55] = 0x0c);
    assert_eq!(
        drop_reason(&a, &f, UPLINK),
        Verdict::Drop(DropReason::WrongInnerMac)
    );
}

#[test]
fn truncated_vxlan_is_dropped_at_every_length() {
    let (_w, a) = node_a(Mode::Vxlan);
    let full = vxlan_from_b(|_| {});
    for cut in 0..full.len() {
        let mut f = full[..cut].to_vec();
        // Keep outer lengths consistent so the cut is seen at the layer it falls in.
        if cut >= 34 {
            let ip_len = (cut - 14) as u16;
            f[16..18].copy_from_slice(&ip_len.to_be_bytes());
            fix_outer_ip_checksum(&mut f);
        }
        if cut >= 42 {
            f[38..40].copy_from_slice(&((cut - 34) as u16).to_be_bytes());
        }
        let v = drop_reason(&a, &f, UPLINK);
        assert!(matches!(v, Verdict::Drop(_)), "cut at {cut}: {v:?}");
    }
}

#[test]
fn fragmented_vxlan_is_dropped() {
    let (_w, a) = node_a(Mode::Vxlan);
    let f = vxlan_from_b(|f| {
        f[20] |= 0x20; // MF
        fix_outer_ip_checksum(f);
    });
    assert_eq!(
        drop_reason(&a, &f, UPLINK),
        Verdict::Drop(DropReason::Fragment)
    );
}

#[test]
fn vxlan_arriving_on_a_pod_port_is_the_kernels() {
    let (_w, a) = node_a(Mode::Vxlan);
    let f = vxlan_from_b(|_| {});
    assert_eq!(run(&a, &f, POD).0, Verdict::ToKernel);
}

#[test]
fn traffic_for_the_node_itself_goes_to_the_kernel() {
    let (_w, a) = node_a(Mode::Vxlan);
    let f = udp_frame(
        NODE_B_UL,
        NODE_A_UL,
        "10.168.0.3",
        "10.168.0.2",
        1,
        64,
        b"hi",
    );
    let (v, _, c) = run(&a, &f, UPLINK);
    assert_eq!(v, Verdict::ToKernel);
    assert_eq!(c.to_kernel, 1);
}

#[test]
fn ttl_one_is_not_forwarded() {
    let (_w, p) = node_a(Mode::HostGw);
    assert_eq!(run(&p, &pod_a_to_pod_b(1, 1), POD).0, Verdict::ToKernel);
    let (_w, p) = node_a(Mode::Vxlan);
    assert_eq!(run(&p, &pod_a_to_pod_b(1, 1), POD).0, Verdict::ToKernel);
}

#[test]
fn malformed_frames_are_dropped_by_reason() {
    let (_w, p) = node_a(Mode::HostGw);
    let good = pod_a_to_pod_b(1, 64);
    let case = |f: Vec<u8>| drop_reason(&p, &f, POD);
    assert_eq!(
        case(good[..13].to_vec()),
        Verdict::Drop(DropReason::Malformed)
    );
    assert_eq!(
        case(good[..30].to_vec()),
        Verdict::Drop(DropReason::Malformed)
    );
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(case(arp), Verdict::Drop(DropReason::NotIpv4));
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    assert_eq!(case(ihl), Verdict::Drop(DropReason::Malformed));
    let mut v6 = good.clone();
    v6[14] = 0x65;
    assert_eq!(case(v6), Verdict::Drop(DropReason::Malformed));
    let mut csum = good.clone();
    csum[24] ^= 0xff;
    assert_eq!(case(csum), Verdict::Drop(DropReason::BadChecksum));
    let mut long = good.clone();
    long[16..18].copy_from_slice(&1000u16.to_be_bytes());
    assert_eq!(case(long), Verdict::Drop(DropReason::Malformed));
}

#[test]
fn destinations_without_a_route_are_dropped() {
    let (_w, p) = node_a(Mode::HostGw);
    let f = udp_frame(POD_A, NODE_A_POD, "10.244.0.2", "192.0.2.1", 1, 64, b"");
    assert_eq!(drop_reason(&p, &f, POD), Verdict::Drop(DropReason::NoRoute));
}

#[test]
fn next_hops_without_a_mac_are_dropped_until_resolved() {
    let (mut w, p) = node_a(Mode::HostGw);
    w.set_neighbour(UPLINK, ip("10.168.0.3"), None).unwrap();
    let f = pod_a_to_pod_b(1, 64);
    assert_eq!(
        drop_reason(&p, &f, POD),
        Verdict::Drop(DropReason::NeighbourUnresolved)
    );
    assert_eq!(w.unresolved(), vec![(UPLINK, ip("10.168.0.3"))]);
    // A changed MAC is used by the very next batch.
    w.set_neighbour(UPLINK, ip("10.168.0.3"), Some(mac("02:00:00:00:00:cc")))
        .unwrap();
    let (v, out, _) = run(&p, &f, POD);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(&out[..6], &mac("02:00:00:00:00:cc").0);
}

#[test]
fn local_pods_without_a_neighbour_entry_are_unresolved() {
    let (_w, p) = node_a(Mode::HostGw);
    let f = udp_frame(
        NODE_B_UL,
        NODE_A_UL,
        "10.244.1.2",
        "10.244.0.77",
        7,
        63,
        b"",
    );
    assert_eq!(
        drop_reason(&p, &f, UPLINK),
        Verdict::Drop(DropReason::NeighbourUnresolved)
    );
}

#[test]
fn host_gw_frames_larger_than_the_egress_mtu_are_dropped() {
    let (_w, p) = node_a(Mode::HostGw);
    let fits = udp_frame(
        POD_A,
        NODE_A_POD,
        "10.244.0.2",
        "10.244.1.2",
        1,
        64,
        &[0; 1472],
    );
    assert_eq!(run(&p, &fits, POD).0, Verdict::Tx(UPLINK));
    let big = udp_frame(
        POD_A,
        NODE_A_POD,
        "10.244.0.2",
        "10.244.1.2",
        1,
        64,
        &[0; 1473],
    );
    assert_eq!(drop_reason(&p, &big, POD), Verdict::Drop(DropReason::Mtu));
}

#[test]
fn vxlan_frames_larger_than_the_uplink_mtu_after_encap_are_dropped() {
    let (_w, p) = node_a(Mode::Vxlan);
    // Uplink MTU 1500 leaves 1450 for the inner IP packet (flannel.1's MTU).
    let fits = udp_frame(
        POD_A,
        NODE_A_POD,
        "10.244.0.2",
        "10.244.1.2",
        1,
        64,
        &[0; 1422],
    );
    let (v, out, _) = run(&p, &fits, POD);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(out.len(), 1514);
    let big = udp_frame(
        POD_A,
        NODE_A_POD,
        "10.244.0.2",
        "10.244.1.2",
        1,
        64,
        &[0; 1423],
    );
    assert_eq!(drop_reason(&p, &big, POD), Verdict::Drop(DropReason::Mtu));
}

#[test]
fn encap_without_headroom_is_dropped_not_overwritten() {
    let (_w, p) = node_a(Mode::Vxlan);
    let frame = pod_a_to_pod_b(1, 64);
    let mut buf = frame.clone();
    let mut c = Counters::default();
    let mut v = [Verdict::ToKernel];
    let mut pkts = [Packet {
        buf: &mut buf,
        offset: 0,
        len: frame.len(),
        ingress: POD,
    }];
    p.process(&mut pkts, &mut v, &mut c);
    assert_eq!(v[0], Verdict::Drop(DropReason::NoHeadroom));
    assert_eq!(buf, frame);
}

#[test]
fn a_packet_whose_length_exceeds_its_buffer_is_malformed() {
    let (_w, p) = node_a(Mode::Vxlan);
    let mut buf = pod_a_to_pod_b(1, 64);
    let mut c = Counters::default();
    let mut v = [Verdict::ToKernel];
    let len = buf.len() + 1;
    let mut pkts = [Packet {
        buf: &mut buf,
        offset: 0,
        len,
        ingress: POD,
    }];
    p.process(&mut pkts, &mut v, &mut c);
    assert_eq!(v[0], Verdict::Drop(DropReason::Malformed));
}

#[test]
fn lengths_past_the_buffer_are_dropped_and_count_only_the_bytes_held() {
    // Found by the pipeline fuzzer: two lengths near usize::MAX overflowed rx_bytes.
    let (_w, p) = node_a(Mode::Vxlan);
    let mut a = pod_a_to_pod_b(1, 64);
    let mut b = pod_a_to_pod_b(2, 64);
    let held = (a.len() + b.len() - 4) as u64;
    let mut c = Counters::default();
    let mut v = [Verdict::ToKernel; 2];
    let mut pkts = [
        Packet {
            buf: &mut a,
            offset: 2,
            len: usize::MAX,
            ingress: POD,
        },
        Packet {
            buf: &mut b,
            offset: 2,
            len: usize::MAX - 1,
            ingress: POD,
        },
    ];
    p.process(&mut pkts, &mut v, &mut c);
    assert_eq!(v, [Verdict::Drop(DropReason::Malformed); 2]);
    assert_eq!((c.rx, c.rx_bytes), (2, held));
}

#[test]
fn a_batch_larger_than_max_batch_gets_every_verdict() {
    let (_w, p) = node_a(Mode::HostGw);
    let frame = pod_a_to_pod_b(1, 64);
    let mut bufs: Vec<Vec<u8>> = (0..MAX_BATCH * 2 + 3).map(|_| frame.clone()).collect();
    let mut pkts: Vec<Packet> = bufs
        .iter_mut()
        .map(|b| Packet {
            len: b.len(),
            buf: b,
            offset: 0,
            ingress: POD,
        })
        .collect();
    let mut v = vec![Verdict::ToKernel; pkts.len()];
    let mut c = Counters::default();
    p.process(&mut pkts, &mut v, &mut c);
    assert!(v.iter().all(|v| *v == Verdict::Tx(UPLINK)));
    assert_eq!(c.forwarded, pkts.len() as u64);
    assert_eq!(c.batches, 3);
}

#[test]
fn route_and_neighbour_changes_are_seen_by_readers() {
    let (mut w, p) = node_a(Mode::HostGw);
    let f = pod_a_to_pod_b(1, 64);
    assert!(w.remove_route(net("10.244.1.0/24")));
    assert_eq!(run(&p, &f, POD).0, Verdict::Drop(DropReason::NoRoute));
    w.set_route(net("10.244.1.0/24"), NextHop::Drop).unwrap();
    assert_eq!(run(&p, &f, POD).0, Verdict::Drop(DropReason::Blackhole));
    w.set_route(net("10.244.1.0/24"), NextHop::Local).unwrap();
    assert_eq!(run(&p, &f, POD).0, Verdict::ToKernel);
    w.set_route(
        net("10.244.1.0/24"),
        NextHop::HostGw {
            gateway: ip("10.168.0.3"),
            port: UPLINK,
        },
    )
    .unwrap();
    assert_eq!(run(&p, &f, POD).0, Verdict::Tx(UPLINK));
}

#[test]
fn a_route_to_a_port_that_does_not_exist_is_refused() {
    let (mut w, _p) = node_a(Mode::HostGw);
    let e = w
        .set_route(net("10.9.0.0/16"), NextHop::Connected { port: 7 })
        .unwrap_err();
    assert!(e.to_string().contains("port 7"), "{e}");
}

#[test]
fn vxlan_to_an_off_link_peer_goes_to_the_underlay_gateway() {
    let node = NodeParams {
        node_ip: ip("10.168.0.2"),
        uplink: UPLINK,
        vni: 1,
        vxlan_port: 8472,
        vtep_mac: mac(VTEP_A),
    };
    let (mut w, fib) = FibWriter::new(FibParams {
        node,
        ports: vec![PortInfo {
            mac: mac(NODE_A_UL),
            mtu: 1500,
        }],
        uplink_subnet: Some(net("10.168.0.0/24")),
        gateway: Some(ip("10.168.0.1")),
        lpm: LpmConfig::default(),
    });
    w.set_route(
        net("10.244.9.0/24"),
        NextHop::Vxlan {
            node_ip: ip("10.99.0.9"),
            vtep_mac: mac(VTEP_B),
        },
    )
    .unwrap();
    assert_eq!(w.unresolved(), vec![(UPLINK, ip("10.168.0.1"))]);
    w.set_neighbour(UPLINK, ip("10.168.0.1"), Some(mac("02:00:00:00:00:01")))
        .unwrap();
    let p = Pipeline::new(node, fib);
    let f = udp_frame(POD_A, NODE_A_POD, "10.244.0.2", "10.244.9.9", 1, 64, b"");
    let (v, out, _) = run(&p, &f, 1);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(&out[..6], &mac("02:00:00:00:00:01").0);
    assert_eq!(&out[30..34], &[10, 99, 0, 9]);
}

#[test]
fn ecn_is_copied_to_the_outer_header_and_ce_becomes_ect0() {
    let (_w, p) = node_a(Mode::Vxlan);
    for (inner, outer) in [(0u8, 0u8), (1, 1), (2, 2), (3, 2)] {
        let mut f = pod_a_to_pod_b(1, 64);
        f[15] = inner;
        let (mut h, _) = etherparse::Ipv4Header::from_slice(&f[14..]).unwrap();
        h.header_checksum = h.calc_header_checksum();
        f[24..26].copy_from_slice(&h.header_checksum.to_be_bytes());
        let (_, out, _) = run(&p, &f, POD);
        assert_eq!(out[15], outer, "inner ECN {inner}");
        let (oh, _) = etherparse::Ipv4Header::from_slice(&out[14..]).unwrap();
        assert_eq!(oh.header_checksum, oh.calc_header_checksum());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes from either port never panic, and every frame is accounted for.
    #[test]
    fn arbitrary_frames_never_panic_and_are_all_accounted_for(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..40),
        uplink in any::<bool>(),
    ) {
        let (_w, p) = node_a(Mode::Vxlan);
        let mut bufs: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| { let mut b = vec![0u8; HEADROOM]; b.extend_from_slice(f); b })
            .collect();
        let mut pkts: Vec<Packet> = bufs
            .iter_mut()
            .map(|b| Packet { len: b.len() - HEADROOM, buf: b, offset: HEADROOM, ingress: if uplink { UPLINK } else { POD } })
            .collect();
        let mut v = vec![Verdict::ToKernel; pkts.len()];
        let mut c = Counters::default();
        p.process(&mut pkts, &mut v, &mut c);
        let tx = v.iter().filter(|v| matches!(v, Verdict::Tx(_))).count() as u64;
        prop_assert_eq!(c.rx, pkts.len() as u64);
        prop_assert_eq!(c.forwarded + c.encapsulated + c.to_kernel + c.total_drops(), c.rx);
        prop_assert_eq!(c.forwarded + c.encapsulated, tx);
    }

    /// Valid UDP packets of any size, TTL and addresses inside node B's subnet survive
    /// encap on node A and decap on node B with only the TTL and MACs changed.
    #[test]
    fn encap_then_decap_preserves_the_inner_packet(
        payload in proptest::collection::vec(any::<u8>(), 0..1400),
        ttl in 3u8..=255,
        host in 1u8..=254,
        sport in any::<u16>(),
    ) {
        let (_wa, a) = node_a(Mode::Vxlan);
        let (mut wb, b) = node_b(Mode::Vxlan);
        let dst = format!("10.244.1.{host}");
        wb.set_neighbour(POD, ip(&dst), Some(mac(POD_A))).unwrap();
        let frame = udp_frame(POD_A, NODE_A_POD, "10.244.0.2", &dst, sport, ttl, &payload);
        let (v, wire, _) = run(&a, &frame, POD);
        prop_assert_eq!(v, Verdict::Tx(UPLINK));
        let (v, out, _) = run(&b, &wire, UPLINK);
        prop_assert_eq!(v, Verdict::Tx(POD));
        prop_assert_eq!(out.len(), frame.len());
        prop_assert_eq!(&out[14..22], &frame[14..22]);
        prop_assert_eq!(out[22], ttl - 2);
        prop_assert_eq!(&out[26..], &frame[26..]);
        let (h, _) = etherparse::Ipv4Header::from_slice(&out[14..]).unwrap();
        prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
    }
}

// ---- Fixtures captured from the Linux kernel (tools/capture-kernel-vxlan.sh, see
// docs/kernel-vxlan.md): the same topology, MACs and addresses as `node_a`/`node_b`.

static POD_UDP: &[u8] = include_bytes!("../wire/testdata/pod_udp.bin");
static KERNEL_VXLAN_UDP: &[u8] = include_bytes!("../wire/testdata/kernel_vxlan_udp.bin");
static POD_ICMP: &[u8] = include_bytes!("../wire/testdata/pod_icmp.bin");
static KERNEL_VXLAN_ICMP: &[u8] = include_bytes!("../wire/testdata/kernel_vxlan_icmp.bin");
static POD_HOSTGW_UDP: &[u8] = include_bytes!("../wire/testdata/pod_hostgw_udp.bin");
static KERNEL_HOSTGW_UDP: &[u8] = include_bytes!("../wire/testdata/kernel_hostgw_udp.bin");

#[test]
fn host_gw_output_is_byte_identical_to_the_kernels() {
    let (_w, a) = node_a(Mode::HostGw);
    let (v, out, _) = run(&a, POD_HOSTGW_UDP, POD);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(out, KERNEL_HOSTGW_UDP);
}

/// Compares podfwd's VXLAN frame with the kernel's. Masked: outer IP ID and checksum
/// (per-packet in the kernel), flags (the kernel leaves DF clear, podfwd sets it as
/// specified; both interoperate), UDP source port (the kernel's flow hash is keyed per
/// boot) and UDP checksum (the kernel computes it, podfwd sends 0, which receivers
/// accept: docs/kernel-vxlan.md E9). Everything else must be equal.
fn assert_matches_kernel_vxlan(ours: &[u8], kernel: &[u8]) {
    assert_eq!(ours.len(), kernel.len());
    let masked = |f: &[u8]| {
        let mut f = f.to_vec();
        for r in [18..20, 20..22, 24..26, 34..36, 40..42] {
            f[r].fill(0);
        }
        f
    };
    assert_eq!(masked(ours), masked(kernel));
    assert_eq!(&ours[20..22], &[0x40, 0x00], "podfwd sets DF");
    assert_eq!(&kernel[20..22], &[0x00, 0x00], "the kernel does not");
    let (h, _) = etherparse::Ipv4Header::from_slice(&ours[14..]).unwrap();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
}

#[test]
fn vxlan_encap_matches_the_kernels_udp_frame() {
    let (_w, a) = node_a(Mode::Vxlan);
    let (v, out, _) = run(&a, POD_UDP, POD);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_matches_kernel_vxlan(&out, KERNEL_VXLAN_UDP);
}

#[test]
fn vxlan_encap_matches_the_kernels_icmp_frame() {
    let (_w, a) = node_a(Mode::Vxlan);
    let (v, out, _) = run(&a, POD_ICMP, POD);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_matches_kernel_vxlan(&out, KERNEL_VXLAN_ICMP);
}

#[test]
fn vxlan_from_a_kernel_vtep_is_decapsulated_to_the_pod() {
    let (mut wb, b) = node_b(Mode::Vxlan);
    wb.set_neighbour(POD, ip("10.244.1.2"), Some(mac("02:00:00:00:00:b2")))
        .unwrap();
    for (kernel, pod) in [(KERNEL_VXLAN_UDP, POD_UDP), (KERNEL_VXLAN_ICMP, POD_ICMP)] {
        let (v, out, c) = run(&b, kernel, UPLINK);
        assert_eq!(v, Verdict::Tx(POD));
        assert_eq!(c.decapsulated, 1);
        // The inner packet as the pod sent it, two hops later, to podB's MAC.
        let mut expected = routed(pod, "02:00:00:00:00:b2", NODE_A_POD);
        expected[22] -= 1;
        let (mut h, _) = etherparse::Ipv4Header::from_slice(&expected[14..]).unwrap();
        h.header_checksum = h.calc_header_checksum();
        expected[24..26].copy_from_slice(&h.header_checksum.to_be_bytes());
        assert_eq!(out, expected);
    }
}
