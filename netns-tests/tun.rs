//! End-to-end forwarding through `podfwd run` with `backend = "tun"` in the demo cluster
//! (src/lab.rs): VXLAN and host-gw between two podfwd-tun nodes, VXLAN interop with a
//! flannel-style kernel node, and the routes into the TUN (table 112) removed on SIGTERM
//! over the kernel slow path that stays. On a TUN node the kernel's VTEP decapsulates
//! (docs/tun.md): podfwd's counters prove it carried what it encapsulates or routes. TUN nodes run with `net.ipv4.ip_forward = 1` (the kernel routes
//! pods into the TUN); the counters prove podfwd carried the traffic.

use crate::harness::{self, skip_unless_root};
use crate::traffic::{ping_ok, started_cluster, tcp_ok};
use podfwd::config::{Backend, Mode};
use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};

/// Builds a cluster whose podfwd nodes use the TUN backend, and starts them.
fn cluster(tag: &str, mode: Mode, nodes: [NodeKind; 2]) -> Cluster {
    start(
        tag,
        ClusterSpec {
            mode,
            nodes,
            ..ClusterSpec::default()
        },
    )
}

/// Builds the cluster `spec` with the TUN backend and starts its podfwd nodes.
fn start(tag: &str, spec: ClusterSpec) -> Cluster {
    started_cluster(tag, spec, Backend::Tun)
}

#[test]
fn tun_vxlan_between_two_podfwd_nodes_forwards_ping_and_tcp_both_ways() {
    skip_unless_root!();
    let c = cluster("tunvx", Mode::Vxlan, [NodeKind::Podfwd; 2]);
    for from in 0..2 {
        // 64 at the sender, one hop per node: 62 at the receiver, as with flannel.1.
        assert!(ping_ok(&c, from, 3).iter().all(|ttl| *ttl == 62));
        tcp_ok(&c, from, 4 << 20);
    }
    for i in 0..2 {
        let s = c.stats(i).unwrap();
        assert!(s.total["encapsulated"] > 1000, "node {i}: {:?}", s.total);
        // The kernel's VTEP decapsulates on a TUN node (docs/tun.md).
        assert_eq!(s.total["decapsulated"], 0, "node {i}: {:?}", s.total);
    }
}

#[test]
fn tun_vxlan_interoperates_with_a_flannel_style_kernel_node_both_ways() {
    skip_unless_root!();
    let c = cluster(
        "tuninterop",
        Mode::Vxlan,
        [NodeKind::Podfwd, NodeKind::KernelVxlan],
    );
    for from in 0..2 {
        assert!(ping_ok(&c, from, 3).iter().all(|ttl| *ttl == 62));
        tcp_ok(&c, from, 4 << 20);
    }
    // podfwd encapsulates; what the kernel node sends back, node A's kernel VTEP
    // decapsulates (docs/tun.md).
    let s = c.stats(0).unwrap();
    assert!(
        s.total["encapsulated"] > 1000 && s.total["decapsulated"] == 0,
        "{:?}",
        s.total
    );
}

#[test]
fn tun_host_gw_between_two_podfwd_nodes_forwards_ping_and_tcp_both_ways() {
    skip_unless_root!();
    let c = cluster("tunhg", Mode::HostGw, [NodeKind::Podfwd; 2]);
    for from in 0..2 {
        assert!(ping_ok(&c, from, 3).iter().all(|ttl| *ttl == 62));
        tcp_ok(&c, from, 4 << 20);
    }
    for i in 0..2 {
        let s = c.stats(i).unwrap();
        // Each node forwards what its pod sends; reception is the kernel's.
        assert!(s.total["forwarded"] > 1000, "node {i}: {:?}", s.total);
        assert_eq!(s.total["encapsulated"], 0);
    }
}

#[test]
fn tun_routes_into_the_device_are_removed_on_sigterm() {
    skip_unless_root!();
    let mut c = cluster(
        "tunstop",
        Mode::Vxlan,
        [NodeKind::Podfwd, NodeKind::KernelVxlan],
    );
    let a = &c.nodes[0];
    let peer = SIDES[1].pod_cidr;
    let routes = a
        .ip(&["route", "show", "table", "112", peer])
        .expect("ip route show");
    let text = String::from_utf8_lossy(&routes.stdout).to_string();
    assert!(text.contains("dev podfwd0"), "route into the TUN: {text:?}");
    let rules = a.ip(&["rule", "show"]).expect("ip rule show");
    let rules = String::from_utf8_lossy(&rules.stdout).to_string();
    assert!(rules.contains("30112:\tfrom all lookup 112"), "{rules}");
    // Under it, the kernel slow path as flanneld leaves it (the fallback).
    let main = a.ip(&["route", "show", peer]).expect("ip route show");
    let main = String::from_utf8_lossy(&main.stdout).to_string();
    assert!(main.contains("dev podfwd.1 proto 112 onlink"), "{main}");
    let link = a.ip(&["link", "show", "podfwd0"]).expect("the TUN device");
    let text = String::from_utf8_lossy(&link.stdout).to_string();
    assert!(text.contains("mtu 1450"), "uplink MTU - 50: {text}");

    assert!(c.stop_podfwd(0), "podfwd exits 0 on SIGTERM\n{}", c.logs());
    let a = &c.nodes[0];
    let routes = a
        .ip(&["route", "show", "table", "112", peer])
        .expect("ip route show");
    assert!(
        routes.stdout.is_empty(),
        "route left behind: {}",
        String::from_utf8_lossy(&routes.stdout)
    );
    assert!(
        a.ip(&["link", "show", "podfwd0"]).is_err(),
        "the TUN device is gone"
    );
}

#[test]
fn tun_host_gw_interoperates_with_a_kernel_routing_node_both_ways() {
    skip_unless_root!();
    let c = cluster(
        "tunhgk",
        Mode::HostGw,
        [NodeKind::Podfwd, NodeKind::KernelHostGw],
    );
    for from in 0..2 {
        assert!(ping_ok(&c, from, 3).iter().all(|ttl| *ttl == 62));
        tcp_ok(&c, from, 4 << 20);
    }
    let s = c.stats(0).unwrap();
    assert!(s.total["forwarded"] > 1000, "{:?}", s.total);
}

/// The check that offloads change nothing but speed: the same 8 MB stream each
/// way arrives with the same SHA-256 whether the nodes cut and merge TCP super-packets
/// (`tun.offload = true`, the default) or move MTU-sized packets (`false`), and with a
/// mix of the two; and with offloads forced off against a kernel VTEP (whose GSO
/// super-packets podfwd then cuts in software). The counters prove which path ran.
#[test]
fn tun_offloads_on_and_forced_off_deliver_the_same_bytes() {
    skip_unless_root!();
    let cases = [
        ("tunoffon", [NodeKind::Podfwd; 2], [true, true]),
        ("tunoffoff", [NodeKind::Podfwd; 2], [false, false]),
        ("tunoffmix", [NodeKind::Podfwd; 2], [true, false]),
        (
            "tunoffk",
            [NodeKind::Podfwd, NodeKind::KernelVxlan],
            [false, true],
        ),
    ];
    for (tag, nodes, offload) in cases {
        let c = start(
            tag,
            ClusterSpec {
                mode: Mode::Vxlan,
                nodes,
                tun_offload: offload,
                ..ClusterSpec::default()
            },
        );
        for from in 0..2 {
            tcp_ok(&c, from, 8 << 20);
        }
        for i in (0..2).filter(|i| nodes[*i] == NodeKind::Podfwd) {
            let t = c.stats(i).unwrap().total;
            let log = std::fs::read_to_string(c.log_path(i)).unwrap_or_default();
            if offload[i] {
                // The pod's TCP hands the node 64 KB super-packets (veth TSO): read whole.
                assert!(t["tso_in"] > 0, "{tag} node {i}: {t:?}\n{log}");
                assert!(log.contains("tso_from_tun=true"), "{tag} node {i}: {log}");
            } else {
                assert_eq!((t["tso_in"], t["gro_out"]), (0, 0), "{tag} node {i}: {t:?}");
                assert!(log.contains("tun_offload=false"), "{tag} node {i}: {log}");
            }
            assert_eq!(t["ring_full"], 0, "{tag} node {i}: {t:?}");
        }
    }
}

/// `cores = [0, 1]`: a two-queue TUN (IFF_MULTI_QUEUE) and two VXLAN sockets in an
/// SO_REUSEPORT group, one pinned worker each; four TCP flows each way spread over both.
#[test]
fn tun_multi_queue_serves_one_queue_per_core() {
    skip_unless_root!();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        harness::print_skip("needs 2 CPUs");
        return;
    }
    let c = start(
        "tunmq",
        ClusterSpec {
            mode: Mode::Vxlan,
            nodes: [NodeKind::Podfwd; 2],
            cores: [&[0, 1], &[0, 1]],
            ..ClusterSpec::default()
        },
    );
    let a = &c.nodes[0];
    let out = a
        .exec(&["ip", "-d", "link", "show", "podfwd0"])
        .expect("ip link show");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("multi_queue"), "a multi-queue TUN: {text}");
    for from in 0..2 {
        assert!(ping_ok(&c, from, 2).iter().all(|ttl| *ttl == 62));
        // Every transfer is a new flow (source port) into the sender's TUN queues: with
        // the kernel's VTEP decapsulating, these alone must spread over both queues.
        for _ in 0..8 {
            tcp_ok(&c, from, 1 << 20);
        }
    }
    for i in 0..2 {
        let s = c.stats(i).unwrap();
        assert_eq!(s.workers.len(), 2, "node {i}: {:?}", s.workers);
        let cores: Vec<usize> = s.workers.iter().map(|w| w.core).collect();
        assert_eq!(cores, vec![0, 1]);
        // 16 flows (8 each way: data one way, ACKs the other) hash over both TUN queues
        // (all on one: p < 0.0001).
        for w in &s.workers {
            assert!(
                w.counters["rx"] > 0,
                "node {i} cpu {}: {:?}",
                w.core,
                s.workers
            );
        }
        assert!(s.total["encapsulated"] > 1000, "node {i}: {:?}", s.total);
    }
}
