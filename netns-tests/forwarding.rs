//! End-to-end forwarding through real `podfwd run` processes in the demo cluster
//! (src/lab.rs): host-gw and VXLAN between two podfwd nodes, interop with a node that
//! runs the kernel's own VXLAN (configured as flanneld does) or routing, and
//! multi-queue. Nodes run with `net.ipv4.ip_forward = 1`, as Kubernetes nodes do, so the
//! kernel could forward too: podfwd's counters prove it carried the traffic.

use crate::harness::{self, skip_unless_root, Netns};
use crate::traffic::{ping_ok, started_cluster, tcp_ok};
use podfwd::config::{Backend, Mode};
use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};
use std::time::Duration;

/// Builds a cluster and starts podfwd (AF_XDP) on the nodes that run it.
fn cluster(tag: &str, spec: ClusterSpec) -> Cluster {
    started_cluster(tag, spec, Backend::AfXdp)
}

fn spec(mode: Mode, nodes: [NodeKind; 2]) -> ClusterSpec {
    ClusterSpec {
        mode,
        nodes,
        ..ClusterSpec::default()
    }
}

#[test]
fn host_gw_between_two_podfwd_nodes_forwards_ping_and_tcp_both_ways() {
    skip_unless_root!();
    let c = cluster("fwdhg", spec(Mode::HostGw, [NodeKind::Podfwd; 2]));
    for from in 0..2 {
        // 64 at the sender, one hop per node: 62 at the receiver of the reply.
        assert!(ping_ok(&c, from, 3).iter().all(|ttl| *ttl == 62));
        tcp_ok(&c, from, 4 << 20);
    }
    for i in 0..2 {
        let s = c.stats(i).unwrap();
        assert!(s.total["forwarded"] > 1000, "node {i}: {:?}", s.total);
        assert_eq!(s.total["encapsulated"], 0);
    }
}

#[test]
fn vxlan_between_two_podfwd_nodes_forwards_ping_and_tcp_both_ways() {
    skip_unless_root!();
    let c = cluster("fwdvx", spec(Mode::Vxlan, [NodeKind::Podfwd; 2]));
    for from in 0..2 {
        assert!(ping_ok(&c, from, 3).iter().all(|ttl| *ttl == 62));
        tcp_ok(&c, from, 4 << 20);
    }
    for i in 0..2 {
        let s = c.stats(i).unwrap();
        assert!(s.total["encapsulated"] > 1000, "node {i}: {:?}", s.total);
        assert!(s.total["decapsulated"] > 1000, "node {i}: {:?}", s.total);
    }
}

#[test]
fn vxlan_interoperates_with_a_flannel_style_kernel_node_both_ways() {
    skip_unless_root!();
    let c = cluster(
        "interopvx",
        spec(Mode::Vxlan, [NodeKind::Podfwd, NodeKind::KernelVxlan]),
    );
    for from in 0..2 {
        assert!(ping_ok(&c, from, 3).iter().all(|ttl| *ttl == 62));
        tcp_ok(&c, from, 4 << 20);
    }
    let s = c.stats(0).unwrap();
    assert!(s.total["encapsulated"] > 1000 && s.total["decapsulated"] > 1000);
}

#[test]
fn host_gw_interoperates_with_a_kernel_routing_node_both_ways() {
    skip_unless_root!();
    let c = cluster(
        "interophg",
        spec(Mode::HostGw, [NodeKind::Podfwd, NodeKind::KernelHostGw]),
    );
    for from in 0..2 {
        assert!(ping_ok(&c, from, 3).iter().all(|ttl| *ttl == 62));
        tcp_ok(&c, from, 4 << 20);
    }
    let s = c.stats(0).unwrap();
    assert!(s.total["forwarded"] > 1000, "{:?}", s.total);
    assert_eq!(s.total["encapsulated"], 0);
}

/// Sends one UDP datagram per source port from `ns` to `dst:5000`.
fn udp_flows(ns: &Netns, dst: &str, sports: std::ops::Range<u16>) {
    let script = format!(
        "import socket\nfor p in range({}, {}):\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    s.bind(('', p))\n    s.sendto(b'podfwd-flow', ('{dst}', 5000))\n    s.close()\n",
        sports.start, sports.end
    );
    ns.exec(&["python3", "-c", &script])
        .expect("send UDP flows");
}

/// The frames of a classic pcap file (no headers).
fn pcap_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    assert!(bytes.len() >= 24, "pcap too short");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16;
        if at + incl > bytes.len() {
            break;
        }
        out.push(bytes[at..at + incl].to_vec());
        at += incl;
    }
    out
}

#[test]
fn vxlan_frames_on_the_underlay_match_flannels_wire_format() {
    skip_unless_root!();
    // Node B runs the kernel, so its underlay veth has no XDP program and tcpdump there
    // sees exactly what podfwd on node A sent.
    let c = cluster(
        "wirevx",
        spec(Mode::Vxlan, [NodeKind::Podfwd, NodeKind::KernelVxlan]),
    );
    ping_ok(&c, 0, 1);
    let pcap = std::env::temp_dir().join(format!("{}-wire.pcap", c.nodes[1].name()));
    let pcap_s = pcap.display().to_string();
    let dump = c.nodes[1]
        .spawn(&[
            "tcpdump",
            "-i",
            SIDES[1].ul_if,
            "-U",
            "-w",
            &pcap_s,
            "-c",
            "16",
            "udp dst port 8472 and src host 10.168.0.2 and greater 100",
        ])
        .expect("start tcpdump");
    // Give tcpdump time to attach its filter before sending.
    let attached = harness::wait_until(Duration::from_secs(5), || {
        std::fs::metadata(&pcap).is_ok_and(|m| m.len() >= 24)
    });
    assert!(attached, "tcpdump did not start");
    std::thread::sleep(Duration::from_millis(200));
    udp_flows(&c.pods[0], SIDES[1].pod_ip, 40000..40016);
    let done = harness::wait_until(Duration::from_secs(5), || {
        std::fs::read(&pcap).is_ok_and(|b| pcap_frames(&b).len() >= 16)
    });
    c.nodes[1].kill(dump);
    let frames = pcap_frames(&std::fs::read(&pcap).unwrap());
    let _ = std::fs::remove_file(&pcap);
    assert!(done, "captured {} of 16 frames", frames.len());
    let mut sports = std::collections::HashSet::new();
    for f in &frames {
        assert_eq!(
            &f[0..6],
            &[2, 0, 0, 0, 0, 0xb1],
            "outer dst = node B's underlay MAC"
        );
        assert_eq!(
            &f[6..12],
            &[2, 0, 0, 0, 0, 0xa1],
            "outer src = node A's uplink MAC"
        );
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14], 0x45);
        assert_eq!(&f[20..22], &[0x40, 0x00], "DF");
        assert_eq!(f[22], 64, "outer TTL");
        assert_eq!(f[23], 17, "UDP");
        assert_eq!(&f[26..30], &[10, 168, 0, 2]);
        assert_eq!(&f[30..34], &[10, 168, 0, 3]);
        let (h, _) = etherparse::Ipv4Header::from_slice(&f[14..]).unwrap();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(usize::from(h.total_len), f.len() - 14);
        sports.insert(u16::from_be_bytes([f[34], f[35]]));
        assert_eq!(&f[36..38], &8472u16.to_be_bytes());
        assert_eq!(
            usize::from(u16::from_be_bytes([f[38], f[39]])),
            f.len() - 34
        );
        assert_eq!(
            &f[42..50],
            &[0x08, 0, 0, 0, 0, 0, 1, 0],
            "VXLAN I flag, VNI 1"
        );
        assert_eq!(
            &f[50..56],
            &[0x0e, 0, 0, 0, 0, 0x0b],
            "inner dst = node B's VTEP"
        );
        assert_eq!(
            &f[56..62],
            &[0x0e, 0, 0, 0, 0, 0x0a],
            "inner src = node A's VTEP"
        );
        assert_eq!(f[72], 63, "inner TTL decremented once");
        assert_eq!(&f[76..80], &[10, 244, 0, 2]);
        assert_eq!(&f[80..84], &[10, 244, 1, 2]);
        assert_eq!(&f[92..], b"podfwd-flow");
    }
    assert!(
        sports.len() >= 12,
        "16 flows used only {} outer source ports",
        sports.len()
    );
}

#[test]
fn two_queues_and_two_workers_share_the_flows() {
    skip_unless_root!();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        harness::print_skip("needs 2 CPUs");
        return;
    }
    let c = cluster(
        "mq",
        ClusterSpec {
            mode: Mode::Vxlan,
            nodes: [NodeKind::Podfwd; 2],
            queues: 2,
            cores: [&[0, 1], &[0, 1]],
            ..ClusterSpec::default()
        },
    );
    ping_ok(&c, 0, 1);
    // Many flows: the pod's veth spreads them over its two tx queues, which are node A's
    // two rx queues.
    let (client, server) = (&c.pods[0], &c.pods[1]);
    let ip = SIDES[1].pod_ip;
    let pid = server.spawn(&["iperf3", "-s", "-1", "-B", ip]).unwrap();
    let ok = harness::wait_until(Duration::from_secs(10), || {
        client
            .exec_unchecked(&["iperf3", "-c", ip, "-P", "8", "-n", "8M", "-J"])
            .is_ok_and(|o| {
                o.status.success()
                    && serde_json::from_slice::<serde_json::Value>(&o.stdout)
                        .is_ok_and(|v| v.get("error").is_none())
            })
    });
    server.kill(pid);
    assert!(ok, "iperf3 with 8 streams failed\n{}", c.logs());
    let s = c.stats(0).unwrap();
    assert_eq!(s.workers.len(), 2);
    for w in &s.workers {
        assert!(
            w.counters["rx"] > 100,
            "worker on cpu {} received only {} frames: {:?}",
            w.core,
            w.counters["rx"],
            s.workers
        );
    }
}

#[test]
fn a_peer_nodes_new_mac_is_used_within_a_second() {
    skip_unless_root!();
    // Node B "reboots" with a new NIC MAC and announces it (arp_notify), as a real node
    // does when its interface comes up; flannel users otherwise suffer stale entries.
    let c = cluster(
        "newmac",
        spec(Mode::HostGw, [NodeKind::Podfwd, NodeKind::KernelHostGw]),
    );
    ping_ok(&c, 0, 2);
    let forwarded = c.stats(0).unwrap().total["forwarded"];
    let b = &c.nodes[1];
    b.sysctl("net.ipv4.conf.all.arp_notify", "1").unwrap();
    b.sysctl(&format!("net.ipv4.conf.{}.arp_notify", SIDES[1].ul_if), "1")
        .unwrap();
    b.ip(&[
        "link",
        "set",
        SIDES[1].ul_if,
        "address",
        "02:00:00:00:00:bb",
    ])
    .unwrap();
    let changed = std::time::Instant::now();
    // Every reply crosses node A, so one answered ping means A now sends to the new MAC.
    let ok = harness::wait_until(Duration::from_secs(1), || {
        c.pods[0]
            .exec(&["ping", "-c", "1", "-W", "1", SIDES[1].pod_ip])
            .is_ok()
    });
    assert!(
        ok,
        "no reply within 1 s of the MAC change ({:?})\n{}",
        changed.elapsed(),
        c.logs()
    );
    let neigh = c.nodes[0]
        .exec(&["ip", "neigh", "show", "10.168.0.3"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&neigh.stdout).contains("02:00:00:00:00:bb"),
        "{}",
        String::from_utf8_lossy(&neigh.stdout)
    );
    // podfwd, not the kernel, carried the answered ping.
    let s = c.stats(0).unwrap();
    assert!(s.total["forwarded"] > forwarded, "{:?}", s.total);
}

// ---- backend = "xdp": the in-kernel fast path against kernel flannel nodes -------------

/// A podfwd node on the in-kernel fast path and a kernel node; the program's counters
/// (`podfwd stats`, per CPU) prove it forwarded.
fn xdp_cluster(tag: &str, mode: Mode, kernel: NodeKind) -> Cluster {
    started_cluster(tag, spec(mode, [NodeKind::Podfwd, kernel]), Backend::Xdp)
}

/// 500 pings from pod `from` to the other pod, 2 ms apart: ICMP carries complete
/// checksums, so the program forwards all of it (echo and reply cross node A).
fn ping_burst(c: &Cluster, from: usize) {
    let to = SIDES[1 - from].pod_ip;
    let out = c.pods[from]
        .exec(&["ping", "-q", "-c", "500", "-i", "0.002", "-W", "1", to])
        .unwrap_or_else(|e| panic!("ping burst from pod {from}: {e}\n{}", c.logs()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0% packet loss"), "{text}");
}

/// The TCP transfers' segments carry partial checksums (veth offload on, as on real
/// pods): the program completes them and forwards the segments itself (4 MB each way is
/// about 2,900 data segments per direction, plus the ACKs); the kernel gets at most the
/// odd frame (the first ones, before the neighbours are known).
fn assert_tcp_took_the_fast_path(c: &Cluster, total: &std::collections::BTreeMap<String, u64>) {
    assert!(
        total["checksums_completed"] > 4000,
        "{total:?}\n{}",
        c.logs()
    );
    assert!(
        total["to_kernel"] * 20 < total["checksums_completed"],
        "{total:?}"
    );
    assert_eq!(total["drop_bad_checksum"], 0, "{total:?}");
}

#[test]
fn xdp_backend_vxlan_interoperates_with_a_flannel_style_kernel_node_both_ways() {
    skip_unless_root!();
    let c = xdp_cluster("xdpvx", Mode::Vxlan, NodeKind::KernelVxlan);
    for from in 0..2 {
        assert!(ping_ok(&c, from, 3).iter().all(|ttl| *ttl == 62));
        tcp_ok(&c, from, 4 << 20);
        ping_burst(&c, from);
    }
    let s = c.stats(0).unwrap();
    for key in ["encapsulated", "decapsulated"] {
        assert!(s.total[key] >= 1000, "{key}: {:?}\n{}", s.total, c.logs());
    }
    assert_tcp_took_the_fast_path(&c, &s.total);
}

#[test]
fn xdp_backend_host_gw_interoperates_with_a_kernel_routing_node_both_ways() {
    skip_unless_root!();
    let c = xdp_cluster("xdphg", Mode::HostGw, NodeKind::KernelHostGw);
    for from in 0..2 {
        assert!(ping_ok(&c, from, 3).iter().all(|ttl| *ttl == 62));
        tcp_ok(&c, from, 4 << 20);
        ping_burst(&c, from);
    }
    let s = c.stats(0).unwrap();
    assert!(s.total["forwarded"] >= 2000, "{:?}\n{}", s.total, c.logs());
    assert_eq!(s.total["encapsulated"], 0);
    assert_tcp_took_the_fast_path(&c, &s.total);
}
