//! Layout tests run anywhere; classification tests load the program (root or CAP_BPF,
//! else `SKIP:`) and run frames through it with BPF_PROG_TEST_RUN, which needs no
//! interface. Attaching and real traffic: netns-tests/xdp.rs.
use super::*;
use crate::config::{Config, Mode};
use crate::plan::{Plan, PortRole};
use std::io::Write as _;
use std::os::fd::AsRawFd;

static REJECT_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/reject_unchecked.bpf.o"
)));

const XDP_PASS: u32 = 2;
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 168, 0, 2);
const PEER_NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 168, 0, 3);
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 5);
const PEER_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn settings() -> Settings {
    Settings {
        node_ip: NODE_IP,
        vxlan_port: 8472,
        pod_cidr: "10.244.0.0/24".parse().unwrap(),
        vni: 1,
        vtep_mac: OUR_MAC,
        vtep_ifindex: 0,
    }
}

/// `own` without the kernel FIB and conntrack lookups: BPF_PROG_TEST_RUN runs in the
/// test process's namespace, whose routes are not the test's to know. Those rules
/// are tested in netns-tests/slowpath.rs, in namespaces built for them.
fn offline(own: Ownership) -> Ownership {
    own.without_kernel_checks()
}

fn peer_subnet() -> Ipv4Net {
    "10.244.1.0/24".parse().unwrap()
}

/// Loads a classifier for a made-up interface, or prints `SKIP:` without privileges.
fn classifier(role: Role) -> Option<Classifier> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let _ = writeln!(
            io::stderr(),
            "SKIP: loading BPF programs needs root (CAP_BPF)"
        );
        return None;
    }
    let c = Classifier::open("test0", 1, OUR_MAC, role, &settings(), None).expect("load");
    c.set_ownership(&offline(Ownership::default())).unwrap();
    c.set_routes(&[peer_subnet()]).unwrap();
    c.set_vteps(&[PEER_NODE_IP]).unwrap();
    Some(c)
}

// --- frames ---------------------------------------------------------------------

fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = (20 + l4.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, ttl, proto, 0, 0]); // id 1, DF
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&40000u16.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A UDP datagram in IPv4 in Ethernet to our MAC.
fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, dport: u16) -> Vec<u8> {
    ethernet(
        OUR_MAC,
        0x0800,
        &ipv4(src, dst, ttl, 17, &udp(dport, &[0xab; 18])),
    )
}

fn vxlan_frame(ttl: u8) -> Vec<u8> {
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0]; // I flag, VNI 1
    vx.extend_from_slice(&udp_frame(
        Ipv4Addr::new(10, 244, 1, 5),
        LOCAL_POD,
        64,
        5000,
    ));
    ethernet(
        OUR_MAC,
        0x0800,
        &ipv4(PEER_NODE_IP, NODE_IP, ttl, 17, &udp(8472, &vx)),
    )
}

fn arp(dst: [u8; 6]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&PEER_MAC);
    a.extend_from_slice(&PEER_NODE_IP.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&NODE_IP.octets());
    ethernet(dst, 0x0806, &a)
}

/// Runs one frame; returns the action and the counters it moved.
fn classify(c: &Classifier, frame: &[u8]) -> (u32, Vec<Stat>) {
    let before = c.stats().unwrap();
    let action = c.run_frame(frame);
    let after = c.stats().unwrap();
    let moved = Stat::ALL
        .iter()
        .copied()
        .filter(|&s| after.get(s) != before.get(s))
        .collect();
    (action, moved)
}

fn assert_owned(c: &Classifier, frame: &[u8], why: Stat) {
    assert_eq!(
        classify(c, frame),
        (XDP_PASS, vec![Stat::NoSocket, why]),
        "owned as {why}, falling back to the kernel without a socket"
    );
}

fn assert_passed(c: &Classifier, frame: &[u8], why: Stat) {
    assert_eq!(classify(c, frame), (XDP_PASS, vec![why]), "passed as {why}");
}

// --- layout (no privileges) ------------------------------------------------------

#[test]
fn stats_are_named_uniquely_in_map_order_and_split_into_owned_and_passed() {
    for (i, s) in Stat::ALL.iter().enumerate() {
        assert_eq!(*s as usize, i);
    }
    let names: BTreeSet<_> = Stat::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(names.len(), Stat::COUNT);
    let passes: Vec<_> = Stat::ALL.iter().filter(|s| s.is_pass()).collect();
    assert_eq!(passes.len(), 16);
    assert!(passes.iter().all(|s| s.name().starts_with("pass_")));
}

#[test]
fn stats_sum_owned_and_kernel_bound_frames() {
    let mut s = ClassifierStats::default();
    s.counts[Stat::Redirected as usize] = 5;
    s.counts[Stat::NoSocket as usize] = 2;
    s.counts[Stat::OwnedRoute as usize] = 7;
    s.counts[Stat::PassLocal as usize] = 3;
    s.counts[Stat::PassTtl as usize] = 1;
    assert_eq!(s.owned(), 7);
    assert_eq!(s.to_kernel(), 6);
    assert_eq!(s[Stat::PassLocal], 3);
    assert_eq!(s.iter().count(), Stat::COUNT);
}

#[test]
fn config_bytes_follow_the_c_layout_in_network_order() {
    let own = Ownership {
        vxlan: true,
        local_pods: false,
        routes_on_uplink: true,
        own_mac_only: true,
        kernel_fib: false,
        conntrack: true,
        flow_cache: false,
        flow_cache_conntrack: false,
        forward: false,
    };
    let mut set = settings();
    set.vni = 0x12_3456;
    set.vtep_ifindex = 7;
    set.vtep_mac = PEER_MAC;
    let b = config_bytes(Role::Pod, &set, &own, OUR_MAC);
    assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), ROLE_POD);
    assert_eq!(
        u32::from_ne_bytes(b[4..8].try_into().unwrap()),
        F_VXLAN | F_UPLINK_ROUTES | F_OWN_MAC_ONLY | F_CONNTRACK
    );
    assert_eq!(b[8..12], [10, 168, 0, 2]);
    assert_eq!(b[12..16], [10, 244, 0, 0]);
    assert_eq!(b[16..20], [255, 255, 255, 0]);
    assert_eq!(b[20..22], [0x21, 0x18], "8472 big-endian");
    assert_eq!(b[22..28], OUR_MAC);
    assert_eq!(u32::from_ne_bytes(b[28..32].try_into().unwrap()), 0x12_3456);
    assert_eq!(u32::from_ne_bytes(b[32..36].try_into().unwrap()), 7);
    assert_eq!(b[36..42], PEER_MAC);
    assert_eq!(b[42..48], [0; 6]);
    assert_eq!(config_from_bytes(&b), (set, own));
}

#[test]
fn host_bits_of_the_pod_cidr_are_dropped() {
    let mut s = settings();
    s.pod_cidr = "10.244.0.7/24".parse().unwrap();
    let b = config_bytes(Role::Uplink, &s, &Ownership::default(), OUR_MAC);
    assert_eq!(b[12..16], [10, 244, 0, 0]);
}

#[test]
fn route_keys_round_trip_and_carry_the_prefix_length_first() {
    let p: Ipv4Net = "10.244.1.0/24".parse().unwrap();
    let k = route_key(p);
    assert_eq!(u32::from_ne_bytes(k[0..4].try_into().unwrap()), 24);
    assert_eq!(k[4..8], [10, 244, 1, 0]);
    assert_eq!(route_from_key(&k), Some(p));
    assert_eq!(route_from_key(&k[..5]), None);
}

#[test]
fn ownership_follows_the_mode() {
    let v = Ownership::for_mode(Mode::Vxlan);
    assert!(v.vxlan && !v.local_pods);
    let h = Ownership::for_mode(Mode::HostGw);
    assert!(!h.vxlan && h.local_pods);
    let a = Ownership::for_mode(Mode::Auto);
    assert!(a.vxlan && a.local_pods);
    for o in [v, h, a, Ownership::default()] {
        assert!(o.own_mac_only && !o.routes_on_uplink);
        assert!(
            o.kernel_fib && o.conntrack,
            "the slow-path checks are on in every mode"
        );
        assert_eq!(Ownership::from_flags(o.flags()), o);
    }
}

#[test]
fn settings_and_peer_subnets_come_from_the_plan() {
    let c = Config::from_toml_str(include_str!("../../../../podfwd.example.toml")).unwrap();
    let plan = Plan::resolve(&c, None).unwrap();
    let s = Settings::from_plan(&plan);
    assert_eq!(
        (s.node_ip, s.vxlan_port, s.pod_cidr),
        (plan.node.ip, plan.node.vxlan_port, plan.node.pod_cidr)
    );
    let peers = peer_subnets(&plan);
    assert!(!peers.is_empty());
    assert!(!peers.contains(&plan.node.pod_cidr));
    assert_eq!(Role::from_port_role(PortRole::Tun), None);
    assert_eq!(Role::from_port_role(PortRole::Uplink), Some(Role::Uplink));
}

#[test]
fn loading_for_a_missing_interface_names_it() {
    let err = Classifier::load("pfx-nosuch0", Role::Pod, &settings()).unwrap_err();
    assert!(
        matches!(&err, XdpError::NoSuchInterface { iface } if iface == "pfx-nosuch0"),
        "{err}"
    );
    assert!(err.to_string().contains("\"pfx-nosuch0\""), "{err}");
    let err = Classifier::load("a-name-longer-than-15", Role::Pod, &settings()).unwrap_err();
    assert!(matches!(err, XdpError::NoSuchInterface { .. }), "{err}");
}

#[test]
fn privilege_errors_say_which_capabilities_are_needed() {
    let e = os_error("attaching", "eth0", libc::EPERM);
    let msg = e.to_string();
    assert!(
        msg.contains("CAP_NET_ADMIN") && msg.contains("CAP_BPF"),
        "{msg}"
    );
    assert!(msg.contains("\"eth0\""), "{msg}");
}

#[test]
fn loading_without_privileges_says_which_capabilities_are_needed() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let _ = writeln!(io::stderr(), "SKIP: runs only without root");
        return;
    }
    let err = Classifier::open("test0", 1, OUR_MAC, Role::Pod, &settings(), None).unwrap_err();
    assert!(matches!(err, XdpError::NoPrivileges { .. }), "{err}");
    assert!(err.to_string().contains("CAP_BPF"), "{err}");
}

// --- the loaded program (root) ----------------------------------------------------

#[test]
fn embedded_object_loads_with_its_six_maps() {
    let Some(c) = classifier(Role::Pod) else {
        return;
    };
    let types: Vec<_> = [
        MAP_CONFIG, MAP_ROUTES, MAP_XSKS, MAP_STATS, MAP_VTEPS, MAP_PORTS,
    ]
    .iter()
    .map(|n| c.map(n).unwrap().map_type())
    .collect();
    assert_eq!(
        types,
        [
            MapType::Array,
            MapType::LpmTrie,
            MapType::Xskmap,
            MapType::PercpuArray,
            MapType::Hash,
            MapType::Hash
        ]
    );
    assert!(c.program_id().unwrap() > 0);
    assert_eq!(c.attached_mode(), None);
    assert_eq!(c.stats().unwrap(), ClassifierStats::default());
    assert_eq!(
        c.config().unwrap(),
        (settings(), offline(Ownership::default()))
    );
}

#[test]
fn a_program_the_verifier_rejects_comes_back_with_the_verifier_log() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let _ = writeln!(io::stderr(), "SKIP: loading BPF programs needs root");
        return;
    }
    let err = load_object(&REJECT_OBJECT.0, "unchecked_read", "test0", &[]).unwrap_err();
    let XdpError::VerifierRejected { log, program, .. } = &err else {
        panic!("expected a verifier rejection, got {err}");
    };
    assert_eq!(program, "unchecked_read");
    assert!(log.contains("invalid access to packet"), "{log}");
    assert!(err.to_string().contains("verifier log"), "{err}");
}

#[test]
fn pod_interface_owns_traffic_to_peer_subnets_only() {
    let Some(c) = classifier(Role::Pod) else {
        return;
    };
    assert_owned(
        &c,
        &udp_frame(LOCAL_POD, PEER_POD, 64, 53),
        Stat::OwnedRoute,
    );
    assert_passed(&c, &udp_frame(LOCAL_POD, NODE_IP, 64, 53), Stat::PassLocal);
    assert_passed(
        &c,
        &udp_frame(LOCAL_POD, Ipv4Addr::new(10, 244, 0, 9), 64, 53),
        Stat::PassNotOwned,
    );
    assert_passed(
        &c,
        &udp_frame(LOCAL_POD, ELSEWHERE, 64, 53),
        Stat::PassNotOwned,
    );
    // The uplink rules do not apply on a pod interface.
    assert_passed(&c, &vxlan_frame(64), Stat::PassLocal);
}

#[test]
fn ttl_of_one_goes_to_the_kernel_for_its_time_exceeded() {
    let Some(c) = classifier(Role::Pod) else {
        return;
    };
    assert_passed(&c, &udp_frame(LOCAL_POD, PEER_POD, 1, 53), Stat::PassTtl);
    assert_passed(&c, &udp_frame(LOCAL_POD, PEER_POD, 0, 53), Stat::PassTtl);
    assert_owned(&c, &udp_frame(LOCAL_POD, PEER_POD, 2, 53), Stat::OwnedRoute);
}

#[test]
fn uplink_owns_vxlan_to_the_node_whatever_the_outer_ttl() {
    let Some(c) = classifier(Role::Uplink) else {
        return;
    };
    assert_owned(&c, &vxlan_frame(64), Stat::OwnedVxlan);
    assert_owned(&c, &vxlan_frame(1), Stat::OwnedVxlan);
    // UDP to another port of the node, and the node's own traffic, are the kernel's.
    assert_passed(
        &c,
        &udp_frame(PEER_NODE_IP, NODE_IP, 64, 4789),
        Stat::PassLocal,
    );
    let icmp = ethernet(
        OUR_MAC,
        0x0800,
        &ipv4(PEER_NODE_IP, NODE_IP, 64, 1, &[8, 0, 0, 0, 0, 1, 0, 1]),
    );
    assert_passed(&c, &icmp, Stat::PassLocal);
}

/// A VXLAN frame whose inner IPv4 header is `inner` (Ethernet to `inner_mac`), VNI `vni`.
fn vxlan_frame_with(src: Ipv4Addr, vni: u32, inner_mac: [u8; 6], inner: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let mut vx = vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0];
    let mut ieth = inner_mac.to_vec();
    ieth.extend_from_slice(&PEER_MAC);
    ieth.extend_from_slice(&0x0800u16.to_be_bytes());
    ieth.extend_from_slice(inner);
    vx.extend_from_slice(&ieth);
    ethernet(
        OUR_MAC,
        0x0800,
        &ipv4(src, NODE_IP, 64, 17, &udp(8472, &vx)),
    )
}

#[test]
fn vxlan_the_kernel_vtep_must_handle_is_passed_and_vxlan_to_drop_is_owned() {
    let Some(c) = classifier(Role::Uplink) else {
        return;
    };
    let inner = |ttl: u8| ipv4(PEER_POD, LOCAL_POD, ttl, 17, &udp(53, &[1; 8]));
    let good = vxlan_frame_with(PEER_NODE_IP, 1, OUR_MAC, &inner(64));
    assert_owned(&c, &good, Stat::OwnedVxlan);
    // Exceptions the kernel's VXLAN device decapsulates and handles.
    let expiring = vxlan_frame_with(PEER_NODE_IP, 1, OUR_MAC, &inner(1));
    assert_passed(&c, &expiring, Stat::PassTtl);
    let mut opts = inner(64);
    opts[0] = 0x46; // IHL 6: one option word (the bytes after are its content)
    assert_passed(
        &c,
        &vxlan_frame_with(PEER_NODE_IP, 1, OUR_MAC, &opts),
        Stat::PassIpOptions,
    );
    let mut frag = inner(64);
    frag[6] = 0x20; // MF
    assert_passed(
        &c,
        &vxlan_frame_with(PEER_NODE_IP, 1, OUR_MAC, &frag),
        Stat::PassFragment,
    );
    let to_node = ipv4(PEER_POD, NODE_IP, 64, 17, &udp(53, &[1; 8]));
    assert_passed(
        &c,
        &vxlan_frame_with(PEER_NODE_IP, 1, OUR_MAC, &to_node),
        Stat::PassLocal,
    );
    // What the pipeline drops with a reason stays podfwd's (and the kernel's VTEP
    // would drop it too): unknown VTEP, another VNI, another inner MAC.
    let unknown = vxlan_frame_with(ELSEWHERE, 1, OUR_MAC, &inner(64));
    assert_owned(&c, &unknown, Stat::OwnedVxlan);
    let other_vni = vxlan_frame_with(PEER_NODE_IP, 2, OUR_MAC, &inner(64));
    assert_owned(&c, &other_vni, Stat::OwnedVxlan);
    let other_mac = vxlan_frame_with(PEER_NODE_IP, 1, PEER_MAC, &inner(1));
    assert_owned(&c, &other_mac, Stat::OwnedVxlan);
    // Once known, a VTEP's exceptions go to the kernel like any peer's (the daemon
    // lists every peer, whatever its egress mode: auto's on-link peers too).
    let from_new = vxlan_frame_with(ELSEWHERE, 1, OUR_MAC, &inner(1));
    assert_owned(&c, &from_new, Stat::OwnedVxlan);
    c.set_vteps(&[PEER_NODE_IP, ELSEWHERE]).unwrap();
    assert_passed(&c, &from_new, Stat::PassTtl);
}

#[test]
fn fragmented_vxlan_goes_to_the_kernel() {
    let Some(c) = classifier(Role::Uplink) else {
        return;
    };
    let mut first = vxlan_frame(64);
    first[14 + 6] = 0x20; // MF, offset 0
    assert_passed(&c, &first, Stat::PassFragment);
    let mut later = vxlan_frame(64);
    later[14 + 6..14 + 8].copy_from_slice(&[0x00, 0xb9]); // offset 185 * 8
    assert_passed(&c, &later, Stat::PassFragment);
}

#[test]
fn uplink_ownership_follows_the_mode() {
    let Some(c) = classifier(Role::Uplink) else {
        return;
    };
    let inbound = udp_frame(PEER_POD, LOCAL_POD, 63, 53);
    let transit = udp_frame(ELSEWHERE, PEER_POD, 63, 53);

    c.set_ownership(&offline(Ownership::for_mode(Mode::HostGw)))
        .unwrap();
    assert_owned(&c, &inbound, Stat::OwnedLocalPods);
    assert_passed(&c, &vxlan_frame(64), Stat::PassLocal);
    assert_passed(&c, &transit, Stat::PassNotOwned);

    c.set_ownership(&offline(Ownership::for_mode(Mode::Vxlan)))
        .unwrap();
    assert_owned(&c, &vxlan_frame(64), Stat::OwnedVxlan);
    assert_passed(&c, &inbound, Stat::PassNotOwned);

    c.set_ownership(&offline(Ownership {
        routes_on_uplink: true,
        ..Ownership::for_mode(Mode::Vxlan)
    }))
    .unwrap();
    assert_owned(&c, &transit, Stat::OwnedRoute);
}

#[test]
fn frames_podfwd_never_owns_are_passed_with_their_reason() {
    let Some(c) = classifier(Role::Pod) else {
        return;
    };
    let owned = udp_frame(LOCAL_POD, PEER_POD, 64, 53);
    assert_passed(&c, &arp([0xff; 6]), Stat::PassL2Group);
    assert_passed(&c, &arp(OUR_MAC), Stat::PassNonIpv4);
    let ipv6 = ethernet(OUR_MAC, 0x86dd, &[0x60; 40]);
    assert_passed(&c, &ipv6, Stat::PassNonIpv4);

    let mut multicast = owned.clone();
    multicast[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
    assert_passed(&c, &multicast, Stat::PassL2Group);
    let mut other_host = owned.clone();
    other_host[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    assert_passed(&c, &other_host, Stat::PassOtherHost);

    let mut vlan = owned[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    vlan.extend_from_slice(&owned[12..]);
    assert_passed(&c, &vlan, Stat::PassVlan);

    // IHL 6: one word of options (NOPs), total length grown to match.
    let ip = ipv4(LOCAL_POD, PEER_POD, 64, 17, &udp(53, &[0; 8]));
    let mut opt = ip[..20].to_vec();
    opt[0] = 0x46;
    let total = u16::from_be_bytes([opt[2], opt[3]]) + 4;
    opt[2..4].copy_from_slice(&total.to_be_bytes());
    opt.extend_from_slice(&[1, 1, 1, 0]);
    opt.extend_from_slice(&ip[20..]);
    assert_passed(&c, &ethernet(OUR_MAC, 0x0800, &opt), Stat::PassIpOptions);

    let truncated = owned[..14 + 12].to_vec();
    assert_passed(&c, &truncated, Stat::PassMalformed);
    let mut too_long = owned.clone();
    too_long[14 + 2..14 + 4].copy_from_slice(&1500u16.to_be_bytes());
    assert_passed(&c, &too_long, Stat::PassMalformed);
    let mut bad_ihl = owned.clone();
    bad_ihl[14] = 0x44;
    assert_passed(&c, &bad_ihl, Stat::PassMalformed);
    let mut not_v4 = owned.clone();
    not_v4[14] = 0x65;
    assert_passed(&c, &not_v4, Stat::PassMalformed);

    // Ethernet padding after the IP packet is fine.
    let mut padded = owned.clone();
    padded.extend_from_slice(&[0; 10]);
    assert_owned(&c, &padded, Stat::OwnedRoute);
}

#[test]
fn other_hosts_frames_are_owned_when_the_mac_check_is_off() {
    let Some(c) = classifier(Role::Pod) else {
        return;
    };
    let mut f = udp_frame(LOCAL_POD, PEER_POD, 64, 53);
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    c.set_ownership(&offline(Ownership {
        own_mac_only: false,
        ..Ownership::default()
    }))
    .unwrap();
    assert_owned(&c, &f, Stat::OwnedRoute);
}

#[test]
fn set_routes_replaces_the_trie_and_longest_match_decides() {
    let Some(c) = classifier(Role::Pod) else {
        return;
    };
    let a: Ipv4Net = "10.244.1.0/24".parse().unwrap();
    let b: Ipv4Net = "10.244.2.0/24".parse().unwrap();
    let wide: Ipv4Net = "10.0.0.0/8".parse().unwrap();
    c.set_routes(&[a, b]).unwrap();
    assert_eq!(c.routes().unwrap(), [a, b]);
    c.set_routes(&[b, "10.244.3.9/24".parse().unwrap()])
        .unwrap();
    assert_eq!(c.routes().unwrap(), [b, "10.244.3.0/24".parse().unwrap()]);
    assert_passed(
        &c,
        &udp_frame(LOCAL_POD, PEER_POD, 64, 53),
        Stat::PassNotOwned,
    );

    c.set_routes(&[wide]).unwrap();
    assert_owned(
        &c,
        &udp_frame(LOCAL_POD, PEER_POD, 64, 53),
        Stat::OwnedRoute,
    );
    // An entry whose value is 0 carves the kernel's part out of an owned prefix.
    let carve = route_key("10.244.1.0/24".parse().unwrap());
    c.map(MAP_ROUTES)
        .unwrap()
        .update(&carve, &0u32.to_ne_bytes(), MapFlags::ANY)
        .unwrap();
    assert_passed(
        &c,
        &udp_frame(LOCAL_POD, PEER_POD, 64, 53),
        Stat::PassNotOwned,
    );

    c.set_routes(&[]).unwrap();
    assert_eq!(c.routes().unwrap(), []);
}

#[test]
fn settings_and_ownership_are_replaced_independently() {
    let Some(c) = classifier(Role::Uplink) else {
        return;
    };
    let own = offline(Ownership::for_mode(Mode::HostGw));
    c.set_ownership(&own).unwrap();
    let moved = Settings {
        node_ip: Ipv4Addr::new(10, 168, 0, 20),
        vxlan_port: 4789,
        pod_cidr: "10.244.9.0/24".parse().unwrap(),
        vni: 7,
        vtep_mac: PEER_MAC,
        vtep_ifindex: 3,
    };
    c.set_settings(&moved).unwrap();
    assert_eq!(c.config().unwrap(), (moved, own));
    assert_passed(
        &c,
        &udp_frame(PEER_POD, LOCAL_POD, 64, 53),
        Stat::PassNotOwned,
    );
}

#[test]
fn sockets_are_refused_outside_the_queue_range_or_when_not_af_xdp() {
    let Some(c) = classifier(Role::Pod) else {
        return;
    };
    let err = c.register_socket(MAX_QUEUES, 0).unwrap_err();
    assert!(
        matches!(err, XdpError::QueueOutOfRange { queue: 64 }),
        "{err}"
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = c.register_socket(0, udp.as_raw_fd()).unwrap_err();
    assert!(err.to_string().contains("AF_XDP socket"), "{err}");
    c.unregister_socket(0).unwrap();
    assert!(c.unregister_socket(MAX_QUEUES).is_err());
}

#[test]
fn pinning_outside_bpffs_is_refused() {
    let Some(mut c) = classifier(Role::Pod) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("pfx-xdp-pins-{}", std::process::id()));
    let err = c.pin_maps(&dir).unwrap_err();
    assert!(matches!(err, XdpError::BpfFsMissing { .. }), "{err}");
    assert!(err.to_string().contains("mount -t bpf"), "{err}");
    assert!(!dir.exists());
}

#[test]
fn maps_pinned_on_bpffs_are_removed_on_drop() {
    let Some(mut c) = classifier(Role::Pod) else {
        return;
    };
    let root = Path::new("/sys/fs/bpf");
    if statfs_type(root).ok() != Some(BPF_FS_MAGIC) {
        let _ = writeln!(io::stderr(), "SKIP: no bpffs at /sys/fs/bpf");
        return;
    }
    let dir = root.join(format!("pfx-xdp-{}", std::process::id()));
    c.pin_maps(&dir).unwrap();
    assert!(dir.join("test0").join("stats").exists());
    drop(c);
    assert!(!dir.join("test0").exists());
    let _ = std::fs::remove_dir(&dir);
}
