//! The XDP classifier's kernel lookups on a node's real kernel state, run with
//! `BPF_PROG_TEST_RUN`: what each lookup costs per frame, and that the per-CPU cache of
//! FIB answers follows route, neighbour, link and forwarding changes.
//!
//! One DUT namespace with a pod-facing veth `pod0` and an uplink veth `up0` (their peers
//! in two other namespaces), programmed as a host-gw node: `10.244.1.0/24 via 10.168.0.3
//! dev up0` with a permanent neighbour, forwarding on. The classifier is loaded on `pod0`
//! (not attached: test runs need no attachment) and fed as the daemon feeds it.

use std::net::Ipv4Addr;
use std::time::Duration;

use podfwd::backend::afxdp::xdp::{Classifier, Ownership, PortKind, Role, Settings, Stat};
use podfwd::config::Mode;
use podfwd::netlink;

use crate::harness::{skip_unless_root, veth_pair, Netns};
use crate::xdp::{ethernet, in_ns, ipv4_udp};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 168, 0, 2);
const PEER_NODE: &str = "10.168.0.3";
const PEER_MAC: &str = "02:00:00:00:0c:03";
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 5);
const PEER_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const XDP_PASS: u32 = 2;

struct Node {
    dut: Netns,
    _pods: Netns,
    _peer: Netns,
}

fn host_gw_node(tag: &str) -> Node {
    let dut = Netns::new(tag).expect("DUT namespace");
    let pods = Netns::new(tag).expect("pod namespace");
    let peer = Netns::new(tag).expect("peer namespace");
    for ns in [&dut, &pods, &peer] {
        ns.disable_ipv6().unwrap();
    }
    veth_pair(&dut, "pod0", &pods, "gen0").unwrap();
    veth_pair(&dut, "up0", &peer, "peer0").unwrap();
    dut.add_addr("pod0", "10.244.0.1/24").unwrap();
    dut.add_addr("up0", &format!("{NODE_IP}/24")).unwrap();
    for (ns, i) in [
        (&dut, "pod0"),
        (&dut, "up0"),
        (&pods, "gen0"),
        (&peer, "peer0"),
    ] {
        ns.link_up(i).unwrap();
    }
    dut.sysctl("net.ipv4.ip_forward", "1").unwrap();
    dut.neigh_permanent(PEER_NODE, PEER_MAC, "up0").unwrap();
    dut.add_route(&["10.244.1.0/24", "via", PEER_NODE, "dev", "up0"])
        .unwrap();
    Node {
        dut,
        _pods: pods,
        _peer: peer,
    }
}

/// Loads the classifier on pod0 as the daemon would for a host-gw node, with `own`.
fn classifier(own: &Ownership) -> (Classifier, u32, [u8; 6]) {
    let pod0 = netlink::interface("pod0").unwrap();
    let up0 = netlink::interface("up0").unwrap();
    let settings = Settings {
        node_ip: NODE_IP,
        vxlan_port: 8472,
        pod_cidr: "10.244.0.0/24".parse().unwrap(),
        vni: 1,
        vtep_mac: [0x0e, 0, 0, 0, 0, 0x0a],
        vtep_ifindex: 0,
    };
    let c = Classifier::load("pod0", Role::Pod, &settings).unwrap();
    c.set_ownership(own).unwrap();
    c.set_routes(&["10.244.1.0/24".parse().unwrap()]).unwrap();
    c.set_vteps(&[PEER_NODE.parse().unwrap()]).unwrap();
    c.set_ports(&[(up0.index, PortKind::Uplink), (pod0.index, PortKind::Pod)])
        .unwrap();
    (c, pod0.index, pod0.mac.octets())
}

fn pod_frame(dut_mac: [u8; 6], sport_seed: u8) -> Vec<u8> {
    let payload = [sport_seed; 18]; // a 64-byte frame
    ethernet(
        dut_mac,
        [0x02, 0, 0, 0, 0x0c, 0x05],
        &ipv4_udp(LOCAL_POD, PEER_POD, 64, 5201, &payload),
    )
}

/// ns per run of 7 rounds of 1 M test runs of `frame`.
fn rounds_ns(c: &Classifier, frame: &[u8], ifindex: u32) -> Vec<f64> {
    (0..7)
        .map(|_| {
            let r = c.test_run(frame, ifindex, 1_000_000).unwrap();
            r.per_run.as_secs_f64() * 1e9
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Not a pass/fail test (these machines are shared and noisy): prints the per-frame cost
/// of each kernel lookup, medians of 7 rounds of 1 M runs each. Run by hand:
/// `cargo test --release --test netns classifier_cost -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: run by hand with --ignored --nocapture"]
fn classifier_cost_per_frame_of_each_kernel_lookup() {
    skip_unless_root!();
    let node = host_gw_node("cost");
    in_ns(&node.dut, || {
        let full = Ownership::for_mode(Mode::HostGw);
        let variants = [
            ("no kernel lookups", full.without_kernel_checks()),
            (
                "FIB only",
                Ownership {
                    conntrack: false,
                    ..full
                },
            ),
            (
                "conntrack only",
                Ownership {
                    kernel_fib: false,
                    ..full
                },
            ),
            ("FIB + conntrack", full),
            (
                "flow cache hit",
                Ownership {
                    flow_cache: true,
                    flow_cache_conntrack: true,
                    ..full
                },
            ),
        ];
        let (c, ifindex, mac) = classifier(&full);
        let frame = pod_frame(mac, 1);
        let mut rows = Vec::new();
        for (name, own) in variants {
            c.set_ownership(&own).unwrap();
            let before = c.stats().unwrap().get(Stat::OwnedRoute);
            let r = c.test_run(&frame, ifindex, 1000).unwrap();
            assert_eq!(
                r.action, XDP_PASS,
                "no socket registered: the owned frame falls back"
            );
            let after = c.stats().unwrap().get(Stat::OwnedRoute);
            let all = c.stats().unwrap();
            let nonzero: Vec<_> = all.iter().filter(|(_, v)| *v > 0).collect();
            assert_eq!(
                after - before,
                1000,
                "{name}: the frame must be owned: {nonzero:?}"
            );
            let ns = rounds_ns(&c, &frame, ifindex);
            rows.push((name, median(ns.clone()), ns));
        }
        for (name, med, all) in rows {
            println!("classifier cost: {name:<20} {med:7.1} ns/frame (rounds: {all:.1?})");
        }
    });
}

/// VXLAN from the peer node to a local pod, as it arrives on the uplink.
fn vxlan_frame(up_mac: [u8; 6], sport_seed: u8) -> Vec<u8> {
    let inner = ethernet(
        [0x0e, 0, 0, 0, 0, 0x0a],
        [0x0e, 0, 0, 0, 0, 0x0b],
        &ipv4_udp(PEER_POD, LOCAL_POD, 64, 5201, &[sport_seed; 18]),
    );
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    vx.extend_from_slice(&inner);
    let mut outer = ipv4_udp(PEER_NODE.parse().unwrap(), NODE_IP, 64, 8472, &vx);
    // ipv4_udp's source port is fixed; VXLAN's is any.
    outer[20..22].copy_from_slice(&49152u16.to_be_bytes());
    ethernet(up_mac, [0x02, 0, 0, 0, 0x0c, 0x03], &outer)
}

/// Not a pass/fail test: the same as [`classifier_cost_per_frame_of_each_kernel_lookup`]
/// for VXLAN decapsulated on the uplink (the inner packet to a local pod).
#[test]
#[ignore = "measurement: run by hand with --ignored --nocapture"]
fn classifier_cost_per_vxlan_frame_of_each_kernel_lookup() {
    skip_unless_root!();
    let node = host_gw_node("costvx");
    node.dut
        .neigh_permanent("10.244.0.5", "02:00:00:00:0c:05", "pod0")
        .unwrap();
    in_ns(&node.dut, || {
        pin_to_cpu0();
        let full = Ownership::for_mode(Mode::Vxlan);
        let up0 = netlink::interface("up0").unwrap();
        let pod0 = netlink::interface("pod0").unwrap();
        let c = Classifier::load("up0", Role::Uplink, &cost_settings()).unwrap();
        c.set_vteps(&[PEER_NODE.parse().unwrap()]).unwrap();
        c.set_ports(&[(up0.index, PortKind::Uplink), (pod0.index, PortKind::Pod)])
            .unwrap();
        let frame = vxlan_frame(up0.mac.octets(), 1);
        for (name, own) in [
            ("no kernel lookups", full.without_kernel_checks()),
            ("FIB + conntrack", full),
            (
                "flow cache hit",
                Ownership {
                    flow_cache: true,
                    flow_cache_conntrack: true,
                    ..full
                },
            ),
        ] {
            c.set_ownership(&own).unwrap();
            let moved = run(&c, &frame, up0.index, 1000);
            assert!(
                moved.contains(&(Stat::OwnedVxlan, 1000)),
                "{name}: the frame must be owned: {moved:?}"
            );
            let ns = rounds_ns(&c, &frame, up0.index);
            println!(
                "classifier cost (vxlan): {name:<20} {:7.1} ns/frame",
                median(ns)
            );
        }
    });
}

fn cost_settings() -> Settings {
    Settings {
        node_ip: NODE_IP,
        vxlan_port: 8472,
        pod_cidr: "10.244.0.0/24".parse().unwrap(),
        vni: 1,
        vtep_mac: [0x0e, 0, 0, 0, 0, 0x0a],
        vtep_ifindex: 0,
    }
}

/// Pins the calling thread to CPU 0: the flow cache is per CPU, and test runs execute
/// on the caller's CPU.
fn pin_to_cpu0() {
    assert!(
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 }),
        "pinning the test thread to cpu 0"
    );
}

fn cached() -> Ownership {
    Ownership {
        flow_cache: true,
        flow_cache_conntrack: true,
        ..Ownership::for_mode(Mode::HostGw)
    }
}

/// Runs `frame` `n` times; the stats that moved.
fn run(c: &Classifier, frame: &[u8], ifindex: u32, n: u32) -> Vec<(Stat, u64)> {
    let before = c.stats().unwrap();
    c.test_run(frame, ifindex, n).unwrap();
    let after = c.stats().unwrap();
    Stat::ALL
        .iter()
        .map(|&s| (s, after.get(s) - before.get(s)))
        .filter(|(_, d)| *d > 0)
        .collect()
}

#[test]
fn remembered_answers_own_a_flow_without_asking_the_kernel_until_the_epoch_moves() {
    skip_unless_root!();
    let node = host_gw_node("fcache");
    in_ns(&node.dut, || {
        pin_to_cpu0();
        let (c, ifindex, mac) = classifier(&cached());
        let frame = pod_frame(mac, 1);
        // The first frame asks the kernel, the next 99 are answered from the cache.
        assert_eq!(
            run(&c, &frame, ifindex, 100),
            vec![
                (Stat::NoSocket, 100),
                (Stat::OwnedRoute, 100),
                (Stat::FlowCacheHit, 99)
            ]
        );
        // The kernel loses the route; until the epoch moves the cache still says yes
        // (which is why the control thread follows every route change) ...
        node.dut.ip(&["route", "del", "10.244.1.0/24"]).unwrap();
        assert_eq!(
            run(&c, &frame, ifindex, 1),
            vec![
                (Stat::NoSocket, 1),
                (Stat::OwnedRoute, 1),
                (Stat::FlowCacheHit, 1)
            ]
        );
        // ... and once it moved, the kernel is asked and keeps the frame.
        c.bump_epoch().unwrap();
        assert_eq!(
            run(&c, &frame, ifindex, 3),
            vec![(Stat::PassKernelRoute, 3)]
        );
        // Answers that keep a frame for the kernel are never remembered.
        node.dut
            .add_route(&["10.244.1.0/24", "via", PEER_NODE, "dev", "up0"])
            .unwrap();
        c.bump_epoch().unwrap();
        assert_eq!(
            run(&c, &frame, ifindex, 2),
            vec![
                (Stat::NoSocket, 2),
                (Stat::OwnedRoute, 2),
                (Stat::FlowCacheHit, 1)
            ]
        );
    });
}

#[test]
fn a_new_connection_handed_to_the_kernel_forgets_every_remembered_answer() {
    skip_unless_root!();
    let node = host_gw_node("fcconn");
    in_ns(&node.dut, || {
        pin_to_cpu0();
        let (c, ifindex, mac) = classifier(&cached());
        let flow = pod_frame(mac, 1);
        assert_eq!(run(&c, &flow, ifindex, 2)[2], (Stat::FlowCacheHit, 1));
        // The pod opens a connection to a Service address: not podfwd's, the kernel
        // may DNAT it, and its replies could be a remembered flow.
        let service = ethernet(
            mac,
            [0x02, 0, 0, 0, 0x0c, 0x05],
            &ipv4_udp(LOCAL_POD, Ipv4Addr::new(10, 96, 0, 10), 64, 53, b"query"),
        );
        assert_eq!(run(&c, &service, ifindex, 1), vec![(Stat::PassNotOwned, 1)]);
        // So the remembered answer is gone: the kernel is asked again, then remembered.
        assert_eq!(
            run(&c, &flow, ifindex, 2),
            vec![
                (Stat::NoSocket, 2),
                (Stat::OwnedRoute, 2),
                (Stat::FlowCacheHit, 1)
            ]
        );
        // Without the conntrack part of the cache, such frames change nothing.
        c.set_ownership(&Ownership {
            flow_cache_conntrack: false,
            ..cached()
        })
        .unwrap();
        assert_eq!(
            run(&c, &flow, ifindex, 1).len(),
            2,
            "first frame after set_ownership"
        );
        run(&c, &service, ifindex, 1);
        assert_eq!(run(&c, &flow, ifindex, 1)[2], (Stat::FlowCacheHit, 1));
    });
}

#[test]
fn a_remembered_flow_that_grows_past_the_egress_mtu_goes_to_the_kernel() {
    skip_unless_root!();
    let node = host_gw_node("fcmtu");
    node.dut.ip(&["link", "set", "up0", "mtu", "1000"]).unwrap();
    in_ns(&node.dut, || {
        pin_to_cpu0();
        let (c, ifindex, mac) = classifier(&cached());
        let small = pod_frame(mac, 1);
        assert_eq!(
            run(&c, &small, ifindex, 2),
            vec![
                (Stat::NoSocket, 2),
                (Stat::OwnedRoute, 2),
                (Stat::FlowCacheHit, 1)
            ]
        );
        // Same flow, 1200 bytes: larger than any size the cache vouched for, so the
        // kernel is asked, and it answers frag needed (its ICMP error follows).
        let big = ethernet(
            mac,
            [0x02, 0, 0, 0, 0x0c, 0x05],
            &ipv4_udp(LOCAL_POD, PEER_POD, 64, 5201, &[1u8; 1172]),
        );
        assert_eq!(run(&c, &big, ifindex, 2), vec![(Stat::PassFragNeeded, 2)]);
        assert_eq!(
            run(&c, &small, ifindex, 1),
            vec![
                (Stat::NoSocket, 1),
                (Stat::OwnedRoute, 1),
                (Stat::FlowCacheHit, 1)
            ]
        );
    });
}

#[test]
fn kernel_changes_reports_routing_changes_and_only_nated_connections() {
    skip_unless_root!();
    let node = host_gw_node("kchg");
    let dut = &node.dut;
    // A kube-proxy-like DNAT for locally sent UDP; the nat table also makes conntrack
    // track this namespace's flows (so unNATed ones create entries too).
    dut.exec(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "-d",
        "10.96.0.10",
        "--dport",
        "53",
        "-j",
        "DNAT",
        "--to-destination",
        "10.244.1.5:53",
    ])
    .unwrap_or_else(|e| panic!("{e} (iptables comes from tools/setup.sh)"));
    // Locally sent packets are routed before OUTPUT's DNAT: the Service range needs a
    // route (a node's default route).
    dut.add_route(&["10.96.0.0/12", "via", PEER_NODE]).unwrap();
    in_ns(dut, || {
        let mut k = netlink::KernelChanges::open().unwrap();
        assert!(
            k.follows_nat(),
            "ctnetlink events must be available on this kernel"
        );
        let drained = |k: &mut netlink::KernelChanges| {
            // Notifications are queued synchronously by the change; a short wait covers
            // the conntrack confirmation of a sent datagram.
            std::thread::sleep(Duration::from_millis(50));
            k.drain()
        };
        assert!(!drained(&mut k).any(), "quiet namespace");
        let steps: [&[&str]; 5] = [
            &["ip", "route", "add", "10.244.7.0/24", "via", PEER_NODE],
            &["ip", "route", "del", "10.244.7.0/24"],
            &[
                "ip",
                "neigh",
                "replace",
                PEER_NODE,
                "lladdr",
                "02:00:00:00:0c:09",
                "dev",
                "up0",
                "nud",
                "permanent",
            ],
            &["ip", "link", "set", "up0", "mtu", "1400"],
            &["sysctl", "-qw", "net.ipv4.conf.up0.forwarding=0"],
        ];
        for step in steps {
            let st = std::process::Command::new(step[0])
                .args(&step[1..])
                .status()
                .unwrap();
            assert!(st.success(), "{step:?}");
            let c = drained(&mut k);
            assert!(c.routing > 0 && c.nat == 0, "{step:?}: {c:?}");
        }
        let send = |dst: &str| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            if let Err(e) = s.send_to(b"q", dst) {
                let routes = std::process::Command::new("ip")
                    .args(["route"])
                    .output()
                    .unwrap();
                panic!(
                    "send to {dst}: {e}; routes: {}",
                    String::from_utf8_lossy(&routes.stdout)
                );
            }
        };
        send("10.244.1.6:53");
        assert_eq!(
            drained(&mut k).nat,
            0,
            "a connection without NAT is not a NAT change"
        );
        send("10.96.0.10:53");
        assert_eq!(drained(&mut k).nat, 1, "the DNATed connection is reported");
    });
}
