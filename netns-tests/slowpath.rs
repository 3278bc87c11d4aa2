//! The kernel stays a complete slow path (DESIGN.md, "fast path over a working node";
//! issue 9): what a flannel node does for its pods still works when podfwd forwards.
//!
//! Node A runs podfwd (or, in the kernel reference, the kernel as flanneld configures it);
//! node B is always a kernel node configured exactly as flanneld does. Pods have MTU 1500
//! (in VXLAN mode a misconfigured-but-real cluster: their full-size frames no longer fit
//! once encapsulated), and every node runs with `net.ipv4.ip_forward = 1`.
//!
//! One test per (variant, row): `slowpath::<variant>::<row>`. A row is one small function
//! over a started cluster; [`rows!`] instantiates the table for each variant. The kernel
//! reference variants (`kernel_*`, both nodes kernel) prove the expected outputs against
//! the kernel itself, so every string asserted here is what the kernel prints.
//!
//! | row | what must hold |
//! |---|---|
//! | `ttl_1_is_answered_time_exceeded_by_the_pods_node` | `ping -t 1`: `From 10.244.0.1 icmp_seq=1 Time to live exceeded` |
//! | `df_ping_too_big_for_the_vtep_gets_frag_needed` (vxlan) | `ping -M do -s 1472`: `From 10.244.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1450)` |
//! | `tcp_from_a_1500_mtu_pod_finds_the_path_mtu` (vxlan) | 8 MB TCP pod A -> pod B verified; pod A learnt `mtu 1450` |
//! | `ping_with_record_route_works` | `ping -R`: `RR:` and no loss |
//! | `first_packet_to_an_unresolved_pod_is_queued_and_delivered` | node A forgot pod A's MAC; one ping from pod B is answered |
//! | `node_reaches_a_pod_on_the_other_node` | node A -> pod B: ping and TCP |
//! | `pod_reaches_the_other_nodes_pod_gateway` | pod B -> 10.244.0.1: ping and TCP |
//! | `service_dnat_on_the_node_reaches_a_remote_pod` | iptables DNAT 10.96.0.10:80 -> 10.244.1.2:8080 on node A; TCP from pod A |
//! | `service_reply_on_the_ports_of_a_recent_direct_flow_is_unnated` | UDP pod A:40123 -> pod B:8080 directly, then the same port to a DNATed Service: every Service reply comes from 10.96.0.10:80 (the flow cache forgot the direct flow's answer) |
//! | `vxlan_from_an_on_link_peer_is_accepted` (auto) | node B (VXLAN, no DirectRouting) -> node A (host-gw to B) |
//! | `podfwd_carries_the_bulk_traffic` (podfwd) | podfwd's counters account for >= 99% of 10k UDP datagrams |
//! | `sigkill_and_restart_mid_flood_lose_at_most_5` (podfwd) | ping -i 0.01: SIGKILL, then restart, each loses <= 5 |
//!
//! Rows that do not apply to a mode are not instantiated for it (see each [`rows!`] use).

use crate::harness::{self, skip_unless_root, Netns};
use crate::traffic::{exe, ping_ok, started_cluster, TcpTransfer};
use podfwd::config::{Backend, Mode};
use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};
use std::thread;
use std::time::Duration;

const A: usize = 0;
const B: usize = 1;
/// The bound on packets lost when podfwd dies or comes back during a ping flood.
const MAX_LOST: u64 = 5;

/// What node A runs, and the cluster's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Node A is the kernel as flanneld configures it: the reference behaviour.
    Kernel(Mode),
    /// Node A runs podfwd on this backend.
    Podfwd(Backend, Mode),
}

impl Variant {
    fn mode(self) -> Mode {
        match self {
            Variant::Kernel(m) | Variant::Podfwd(_, m) => m,
        }
    }

    fn is_podfwd(self) -> bool {
        matches!(self, Variant::Podfwd(..))
    }

    fn spec(self) -> ClusterSpec {
        let mode = self.mode();
        // Node B as flanneld configures it. In auto mode it is a VXLAN node without
        // DirectRouting, while node A (auto / DirectRouting) sees it on-link: host-gw.
        let b = match mode {
            Mode::HostGw => NodeKind::KernelHostGw,
            _ => NodeKind::KernelVxlan,
        };
        let a = match (self, mode) {
            (Variant::Podfwd(..), _) => NodeKind::Podfwd,
            (Variant::Kernel(_), Mode::Auto) => NodeKind::KernelDirectRouting,
            (Variant::Kernel(_), _) => b,
        };
        ClusterSpec {
            mode,
            nodes: [a, b],
            pod_mtu: Some(1500),
            ..ClusterSpec::default()
        }
    }

    fn backend(self) -> Backend {
        match self {
            Variant::Podfwd(b, _) => b,
            // No podfwd runs; the backend is not used.
            Variant::Kernel(_) => Backend::AfXdp,
        }
    }

    /// The podfwd counter on node A that counts a pod A -> pod B frame it carried.
    fn carried_a_to_b(self) -> &'static str {
        match self.mode() {
            Mode::Vxlan => "encapsulated",
            // auto: node B is on-link, so host-gw.
            _ => "forwarded",
        }
    }

    /// The podfwd counter on node A that counts a pod B -> pod A frame it carried, if
    /// podfwd carries that direction at all.
    fn carried_b_to_a(self) -> Option<&'static str> {
        match (self.backend(), self.mode()) {
            // Node B sends VXLAN (in auto mode too: it has no DirectRouting).
            (Backend::AfXdp, Mode::Vxlan | Mode::Auto) => Some("decapsulated"),
            (Backend::AfXdp, Mode::HostGw) => Some("forwarded"),
            // TUN: what arrives on the uplink is the kernel's to deliver, VXLAN included
            // (its VTEP decapsulates: docs/tun.md).
            _ => None,
        }
    }
}

/// Builds the variant's cluster, starts podfwd where it runs, runs the row.
fn run(v: Variant, tag: &str, row: fn(&mut Cluster, Variant)) {
    let mut c = started_cluster(tag, v.spec(), v.backend());
    row(&mut c, v);
}

/// Instantiates rows for a variant: `slowpath::<module>::<row>`. A row may carry
/// attributes (`#[ignore = "..."]`).
macro_rules! rows {
    ($module:ident, $tag:literal, $variant:expr, [$($(#[$attr:meta])* $row:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                $(#[$attr])*
                fn $row() {
                    skip_unless_root!();
                    super::run($variant, $tag, super::$row);
                }
            )*
        }
    };
}

// --- the kernel reference: what every row must look like ------------------------------------------

rows!(
    kernel_vxlan,
    "spkvx",
    Variant::Kernel(Mode::Vxlan),
    [
        ttl_1_is_answered_time_exceeded_by_the_pods_node,
        df_ping_too_big_for_the_vtep_gets_frag_needed,
        tcp_from_a_1500_mtu_pod_finds_the_path_mtu,
        ping_with_record_route_works,
        first_packet_to_an_unresolved_pod_is_queued_and_delivered,
        node_reaches_a_pod_on_the_other_node,
        pod_reaches_the_other_nodes_pod_gateway,
        service_dnat_on_the_node_reaches_a_remote_pod,
        service_reply_on_the_ports_of_a_recent_direct_flow_is_unnated,
        // No podfwd: no counters, nothing to kill.
    ]
);

rows!(
    kernel_host_gw,
    "spkhg",
    Variant::Kernel(Mode::HostGw),
    [
        ttl_1_is_answered_time_exceeded_by_the_pods_node,
        // No encapsulation: a 1500-byte frame fits, no frag needed, no PMTU to find.
        ping_with_record_route_works,
        first_packet_to_an_unresolved_pod_is_queued_and_delivered,
        node_reaches_a_pod_on_the_other_node,
        pod_reaches_the_other_nodes_pod_gateway,
        service_dnat_on_the_node_reaches_a_remote_pod,
        service_reply_on_the_ports_of_a_recent_direct_flow_is_unnated,
    ]
);

rows!(
    kernel_auto,
    "spkau",
    Variant::Kernel(Mode::Auto),
    [
        ttl_1_is_answered_time_exceeded_by_the_pods_node,
        // A -> B is host-gw (on-link): nothing to fragment on node A.
        ping_with_record_route_works,
        first_packet_to_an_unresolved_pod_is_queued_and_delivered,
        node_reaches_a_pod_on_the_other_node,
        pod_reaches_the_other_nodes_pod_gateway,
        service_dnat_on_the_node_reaches_a_remote_pod,
        service_reply_on_the_ports_of_a_recent_direct_flow_is_unnated,
        vxlan_from_an_on_link_peer_is_accepted,
    ]
);

// --- podfwd on AF_XDP -------------------------------------------------------------------------------

rows!(
    afxdp_vxlan,
    "spxvx",
    Variant::Podfwd(Backend::AfXdp, Mode::Vxlan),
    [
        ttl_1_is_answered_time_exceeded_by_the_pods_node,
        df_ping_too_big_for_the_vtep_gets_frag_needed,
        tcp_from_a_1500_mtu_pod_finds_the_path_mtu,
        ping_with_record_route_works,
        first_packet_to_an_unresolved_pod_is_queued_and_delivered,
        node_reaches_a_pod_on_the_other_node,
        pod_reaches_the_other_nodes_pod_gateway,
        service_dnat_on_the_node_reaches_a_remote_pod,
        service_reply_on_the_ports_of_a_recent_direct_flow_is_unnated,
        podfwd_carries_the_bulk_traffic,
        sigkill_and_restart_mid_flood_lose_at_most_5,
    ]
);

rows!(
    afxdp_host_gw,
    "spxhg",
    Variant::Podfwd(Backend::AfXdp, Mode::HostGw),
    [
        ttl_1_is_answered_time_exceeded_by_the_pods_node,
        // vxlan-only rows left out: nothing is encapsulated.
        ping_with_record_route_works,
        first_packet_to_an_unresolved_pod_is_queued_and_delivered,
        node_reaches_a_pod_on_the_other_node,
        pod_reaches_the_other_nodes_pod_gateway,
        service_dnat_on_the_node_reaches_a_remote_pod,
        service_reply_on_the_ports_of_a_recent_direct_flow_is_unnated,
        podfwd_carries_the_bulk_traffic,
        sigkill_and_restart_mid_flood_lose_at_most_5,
    ]
);

rows!(
    afxdp_auto,
    "spxau",
    Variant::Podfwd(Backend::AfXdp, Mode::Auto),
    [
        ttl_1_is_answered_time_exceeded_by_the_pods_node,
        // vxlan-only rows left out: node A reaches node B host-gw (on-link).
        ping_with_record_route_works,
        first_packet_to_an_unresolved_pod_is_queued_and_delivered,
        node_reaches_a_pod_on_the_other_node,
        pod_reaches_the_other_nodes_pod_gateway,
        service_dnat_on_the_node_reaches_a_remote_pod,
        service_reply_on_the_ports_of_a_recent_direct_flow_is_unnated,
        vxlan_from_an_on_link_peer_is_accepted,
        podfwd_carries_the_bulk_traffic,
        sigkill_and_restart_mid_flood_lose_at_most_5,
    ]
);

// --- podfwd on TUN (auto mode is not offered by the TUN backend's tests) ------------------------------

rows!(
    tun_vxlan,
    "sptvx",
    Variant::Podfwd(Backend::Tun, Mode::Vxlan),
    [
        ttl_1_is_answered_time_exceeded_by_the_pods_node,
        df_ping_too_big_for_the_vtep_gets_frag_needed,
        tcp_from_a_1500_mtu_pod_finds_the_path_mtu,
        ping_with_record_route_works,
        first_packet_to_an_unresolved_pod_is_queued_and_delivered,
        node_reaches_a_pod_on_the_other_node,
        pod_reaches_the_other_nodes_pod_gateway,
        service_dnat_on_the_node_reaches_a_remote_pod,
        service_reply_on_the_ports_of_a_recent_direct_flow_is_unnated,
        podfwd_carries_the_bulk_traffic,
        // SIGKILL closes the TUN fd: the kernel deletes podfwd0 and its routes in table
        // 112, and lookups fall through to the flanneld routes in main.
        sigkill_and_restart_mid_flood_lose_at_most_5,
    ]
);

rows!(
    tun_host_gw,
    "spthg",
    Variant::Podfwd(Backend::Tun, Mode::HostGw),
    [
        ttl_1_is_answered_time_exceeded_by_the_pods_node,
        // vxlan-only rows left out: nothing is encapsulated.
        ping_with_record_route_works,
        first_packet_to_an_unresolved_pod_is_queued_and_delivered,
        node_reaches_a_pod_on_the_other_node,
        pod_reaches_the_other_nodes_pod_gateway,
        service_dnat_on_the_node_reaches_a_remote_pod,
        service_reply_on_the_ports_of_a_recent_direct_flow_is_unnated,
        podfwd_carries_the_bulk_traffic,
        // SIGKILL closes the TUN fd: the kernel deletes podfwd0 and its routes in table
        // 112, and lookups fall through to the flanneld routes in main.
        sigkill_and_restart_mid_flood_lose_at_most_5,
    ]
);

// --- helpers ----------------------------------------------------------------------------------------

/// stdout and stderr of `args` run in `ns`, whatever its exit status.
fn output(ns: &Netns, args: &[&str]) -> String {
    let out = ns
        .exec_unchecked(args)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// (transmitted, received) from ping's summary line, if it printed one.
fn ping_summary(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut parts = line.split(',');
    let tx = parts.next()?.split_whitespace().next()?.parse().ok()?;
    let rx = parts.next()?.split_whitespace().next()?.parse().ok()?;
    Some((tx, rx))
}

/// `ping -n -c count -i 0.2 -W 2 [extra] dst` from `ns`: its output.
fn ping(ns: &Netns, dst: &str, count: u32, extra: &[&str]) -> String {
    let count = count.to_string();
    let mut args = vec!["ping", "-n", "-c", &count, "-i", "0.2", "-W", "2"];
    args.extend_from_slice(extra);
    args.push(dst);
    output(ns, &args)
}

/// Pings `dst` from `ns` until one reply comes back (up to 5 s; neighbours resolve),
/// then 3 that must all be answered.
fn assert_reaches(c: &Cluster, ns: &Netns, dst: &str) {
    let mut last = String::new();
    let up = harness::wait_until(Duration::from_secs(5), || {
        last = ping(ns, dst, 1, &[]);
        ping_summary(&last) == Some((1, 1))
    });
    assert!(up, "{dst} never answered:\n{last}\n{}", c.logs());
    let out = ping(ns, dst, 3, &[]);
    assert!(
        out.contains("3 packets transmitted, 3 received, 0% packet loss"),
        "{out}\n{}",
        c.logs()
    );
}

fn tcp(c: &Cluster, t: TcpTransfer) {
    if let Err(e) = t.run() {
        panic!("{e}\n{}", c.logs());
    }
}

/// Node A's podfwd counter `name`.
fn counter(c: &Cluster, name: &str) -> u64 {
    match c.stats(A) {
        Ok(s) => s.total[name],
        Err(e) => panic!("stats of node A: {e}\n{}", c.logs()),
    }
}

/// A counter of the interface `dev` in `ns` (`/sys/class/net/<dev>/statistics/<name>`).
fn if_counter(ns: &Netns, dev: &str, name: &str) -> u64 {
    output(
        ns,
        &["cat", &format!("/sys/class/net/{dev}/statistics/{name}")],
    )
    .trim()
    .parse()
    .unwrap_or_else(|e| panic!("{dev} {name}: {e}"))
}

// --- the rows ----------------------------------------------------------------------------------------

/// `ping -t 1` from pod A: node A answers ICMP time exceeded from its pod gateway address,
/// as any router does (traceroute's first hop).
fn ttl_1_is_answered_time_exceeded_by_the_pods_node(c: &mut Cluster, _: Variant) {
    ping_ok(c, A, 1);
    let out = ping(&c.pods[A], SIDES[B].pod_ip, 1, &["-t", "1"]);
    assert!(
        out.contains("From 10.244.0.1 icmp_seq=1 Time to live exceeded"),
        "{out}\n{}",
        c.logs()
    );
}

/// A 1500-byte packet with DF from a pod with MTU 1500 does not fit the VXLAN path (1450):
/// node A answers "fragmentation needed" with the MTU that fits.
fn df_ping_too_big_for_the_vtep_gets_frag_needed(c: &mut Cluster, _: Variant) {
    ping_ok(c, A, 1);
    let out = ping(&c.pods[A], SIDES[B].pod_ip, 1, &["-M", "do", "-s", "1472"]);
    assert!(
        out.contains("From 10.244.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1450)"),
        "{out}\n{}",
        c.logs()
    );
}

/// TCP from a pod with MTU 1500 across VXLAN: full-size segments do not fit, node A's
/// "frag needed" teaches pod A the path MTU, and the stream arrives (no PMTU black hole).
fn tcp_from_a_1500_mtu_pod_finds_the_path_mtu(c: &mut Cluster, _: Variant) {
    ping_ok(c, A, 1);
    let ip = SIDES[B].pod_ip;
    tcp(
        c,
        TcpTransfer {
            client: &c.pods[A],
            server: &c.pods[B],
            listen: (ip, 5201),
            connect: (ip, 5201),
            bytes: 8 << 20,
        },
    );
    let route = output(&c.pods[A], &["ip", "route", "get", ip]);
    assert!(
        route.contains("mtu 1450"),
        "pod A learnt the path MTU from node A: {route}"
    );
}

/// `ping -R` (the record-route IP option) between the pods works and shows the route.
fn ping_with_record_route_works(c: &mut Cluster, _: Variant) {
    ping_ok(c, A, 1);
    let out = ping(&c.pods[A], SIDES[B].pod_ip, 3, &["-R"]);
    assert!(
        out.contains("RR: \t10.244.0.2\n")
            && out.contains("3 packets transmitted, 3 received, 0% packet loss"),
        "{out}\n{}",
        c.logs()
    );
}

/// Node A forgot pod A's MAC: the first packet from pod B waits in the kernel's ARP queue
/// while node A resolves pod A, and is delivered.
fn first_packet_to_an_unresolved_pod_is_queued_and_delivered(c: &mut Cluster, _: Variant) {
    ping_ok(c, B, 1);
    let (a, pod_a) = (&c.nodes[A], SIDES[A].pod_ip);
    a.ip(&["neigh", "del", pod_a, "dev", SIDES[A].pod_if])
        .unwrap_or_else(|e| panic!("forget pod A's MAC on node A: {e}\n{}", c.logs()));
    // What node A knows of pod A right after (podfwd may start resolving it again at once).
    let entry = output(a, &["ip", "neigh", "show", pod_a]);
    let out = ping(&c.pods[B], pod_a, 1, &["-W", "3"]);
    assert!(
        out.contains("1 packets transmitted, 1 received"),
        "{out}\nnode A's entry for pod A after the delete: {entry:?}, now: {:?}\n{}",
        output(a, &["ip", "neigh", "show", pod_a]),
        c.logs()
    );
}

/// Node A itself (kubelet probes, hostNetwork pods) reaches a pod on node B: ping and TCP.
fn node_reaches_a_pod_on_the_other_node(c: &mut Cluster, _: Variant) {
    let ip = SIDES[B].pod_ip;
    assert_reaches(c, &c.nodes[A], ip);
    tcp(
        c,
        TcpTransfer {
            client: &c.nodes[A],
            server: &c.pods[B],
            listen: (ip, 5201),
            connect: (ip, 5201),
            bytes: 1 << 20,
        },
    );
}

/// A pod on node B reaches node A's pod gateway address (10.244.0.1): ping and TCP.
fn pod_reaches_the_other_nodes_pod_gateway(c: &mut Cluster, _: Variant) {
    let gw = SIDES[A].pod_gw;
    assert_reaches(c, &c.pods[B], gw);
    tcp(
        c,
        TcpTransfer {
            client: &c.pods[B],
            server: &c.nodes[A],
            listen: (gw, 5202),
            connect: (gw, 5202),
            bytes: 1 << 20,
        },
    );
}

/// kube-proxy's rule (iptables mode) on `node`: `proto` to the Service 10.96.0.10:80 is
/// DNATed to `to`.
fn service_dnat(node: &Netns, proto: &str, to: &str) {
    let dnat = [
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-d",
        "10.96.0.10/32",
        "-p",
        proto,
        "--dport",
        "80",
        "-j",
        "DNAT",
        "--to-destination",
        to,
    ];
    if let Err(e) = node.exec(&dnat) {
        panic!("{e} (iptables comes from tools/setup.sh)");
    }
}

/// kube-proxy (iptables mode) on node A: a Service 10.96.0.10:80 DNATed to pod B's port
/// 8080. Pod A's connection goes to its gateway (default route), node A translates it,
/// and the replies from pod B must be translated back by node A's conntrack.
fn service_dnat_on_the_node_reaches_a_remote_pod(c: &mut Cluster, v: Variant) {
    ping_ok(c, A, 1);
    let a = &c.nodes[A];
    service_dnat(a, "tcp", "10.244.1.2:8080");
    tcp(
        c,
        TcpTransfer {
            client: &c.pods[A],
            server: &c.pods[B],
            listen: (SIDES[B].pod_ip, 8080),
            connect: ("10.96.0.10", 80),
            bytes: 1 << 20,
        },
    );
    let nat = output(
        a,
        &["iptables", "-t", "nat", "-L", "PREROUTING", "-v", "-n"],
    );
    let translated = nat.lines().any(|l| {
        l.contains("DNAT")
            && l.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= 1)
    });
    assert!(
        translated,
        "the connection went through node A's DNAT rule:\n{nat}"
    );
    if v.is_podfwd() && v.backend() == Backend::AfXdp {
        // The replies (pod B -> pod A) are what podfwd would take; the classifier's
        // conntrack rule gave them to the kernel, which un-DNATed them.
        assert!(
            classifier_counter(c, "pass_nat") > 0,
            "node A's classifier passed the NATed replies: {:?}",
            c.stats(A).map(|s| s.classifier)
        );
    }
}

/// Pod B's UDP echo server.
const UDP_ECHO: &str = "import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 8080))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(d, a)
";

/// Pod A's client: from one source port, 40 requests straight to pod B, then 5 to the
/// Service; prints where each reply came from.
const UDP_CLIENT: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 40123))
s.settimeout(1.0)
def ask(dst, n):
    got = []
    for i in range(n):
        s.sendto(b'q%d' % i, dst)
        try:
            d, src = s.recvfrom(2048)
            got.append('%s:%d' % src)
        except socket.timeout:
            got.append('timeout')
    return ' '.join(got)
print('direct', ask((sys.argv[1], 8080), 40))
print('service', ask(('10.96.0.10', 80), 5))
";

/// kube-proxy's Service again, on a connection whose reply direction (pod B:8080 -> pod
/// A:40123) is exactly a flow that podfwd carried a moment before, when pod A talked to
/// pod B directly from the same port (Linux reuses ephemeral ports across destinations).
/// Node A's conntrack never saw that direct flow (podfwd carried it), so it NATs the
/// Service connection without changing the port, and the replies must still be
/// un-NATed by node A: podfwd must not take them on a remembered "not NATed" answer.
fn service_reply_on_the_ports_of_a_recent_direct_flow_is_unnated(c: &mut Cluster, v: Variant) {
    ping_ok(c, A, 1);
    let echo = c.pods[B]
        .spawn(&["python3", "-c", UDP_ECHO])
        .unwrap_or_else(|e| panic!("udp echo on pod B: {e}"));
    service_dnat(&c.nodes[A], "udp", &format!("{}:8080", SIDES[B].pod_ip));
    // The echo server needs a moment to bind; the client's first requests may time out.
    thread::sleep(Duration::from_millis(300));
    let out = output(&c.pods[A], &["python3", "-c", UDP_CLIENT, SIDES[B].pod_ip]);
    c.pods[B].kill(echo);
    let replies = |label: &str| -> Vec<String> {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} line in the client's output:\n{out}"))
            .split_whitespace()
            .filter(|r| *r != "timeout")
            .map(str::to_string)
            .collect()
    };
    let direct = replies("direct ");
    let service = replies("service ");
    let pod_b = format!("{}:8080", SIDES[B].pod_ip);
    assert!(
        direct.len() >= 30 && direct.iter().all(|r| *r == pod_b),
        "direct replies come from pod B:\n{out}\n{}",
        c.logs()
    );
    assert!(
        service.len() >= 4 && service.iter().all(|r| r == "10.96.0.10:80"),
        "every Service reply comes from the Service address (un-NATed by node A):\n{out}\n{}",
        c.logs()
    );
    if v.is_podfwd() && v.backend() == Backend::AfXdp {
        assert!(
            classifier_counter(c, "flow_cache_hits") > 0,
            "the direct flow was answered from node A's flow cache (else this row tests nothing): {:?}",
            c.stats(A).map(|s| s.classifier)
        );
        assert!(
            classifier_counter(c, "pass_nat") > 0,
            "node A's classifier passed the NATed replies: {:?}",
            c.stats(A).map(|s| s.classifier)
        );
    }
}

/// A classifier counter of node A's podfwd, summed over its interfaces.
fn classifier_counter(c: &Cluster, name: &str) -> u64 {
    match c.stats(A) {
        Ok(s) => s.classifier.values().filter_map(|m| m.get(name)).sum(),
        Err(e) => panic!("stats of node A: {e}\n{}", c.logs()),
    }
}

/// auto mode: node A treats node B as on-link (host-gw), node B (no DirectRouting) sends
/// VXLAN to node A. Node A accepts it: pod B reaches pod A, ping and TCP.
fn vxlan_from_an_on_link_peer_is_accepted(c: &mut Cluster, v: Variant) {
    let route = output(&c.nodes[B], &["ip", "route", "get", SIDES[A].pod_ip]);
    assert!(
        route.contains("dev flannel.1"),
        "node B reaches pod A over VXLAN: {route}"
    );
    if v.is_podfwd() {
        let cfg = std::env::temp_dir().join(format!("{}-auto.toml", c.nodes[A].name()));
        std::fs::write(&cfg, c.config_toml(A)).unwrap();
        let plan = output(
            &c.nodes[A],
            &[
                &exe().display().to_string(),
                "check",
                "--config",
                &cfg.display().to_string(),
            ],
        );
        let _ = std::fs::remove_file(&cfg);
        assert!(
            plan.contains("host-gw via 10.168.0.3"),
            "node A sees node B on-link: {plan}"
        );
    } else {
        let route = output(&c.nodes[A], &["ip", "route", "get", SIDES[B].pod_ip]);
        assert!(
            route.contains("via 10.168.0.3 dev nodeA-ul"),
            "node A routes to node B directly: {route}"
        );
    }
    ping_ok(c, B, 3);
    let ip = SIDES[A].pod_ip;
    tcp(
        c,
        TcpTransfer {
            client: &c.pods[B],
            server: &c.pods[A],
            listen: (ip, 5201),
            connect: (ip, 5201),
            bytes: 1 << 20,
        },
    );
}

/// Sends `count` UDP datagrams of 1000 bytes from `from` to `to_ip:5300` (paced: 100 per
/// millisecond at most) to a counting sink in `to`; returns how many arrived.
fn udp_bulk(from: &Netns, to: &Netns, to_ip: &str, count: u32) -> u64 {
    let out = std::env::temp_dir().join(format!("{}-udp.txt", to.name()));
    let out_s = out.display().to_string();
    let _ = std::fs::remove_file(&out);
    let sink = format!(
        "import os, socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)\n\
         s.bind(('{to_ip}', 5300)); open('{out_s}.ready', 'w').close(); s.settimeout(10); n = 0\n\
         try:\n    while True:\n        s.recv(2048); n += 1; s.settimeout(1)\n\
         except socket.timeout:\n    pass\n\
         f = open('{out_s}.tmp', 'w'); f.write(str(n)); f.close(); os.rename('{out_s}.tmp', '{out_s}')\n"
    );
    let pid = to
        .spawn(&["python3", "-c", &sink])
        .expect("start the UDP sink");
    let ready = std::path::PathBuf::from(format!("{out_s}.ready"));
    assert!(
        harness::wait_until(Duration::from_secs(15), || ready.exists()),
        "the UDP sink did not start"
    );
    let _ = std::fs::remove_file(&ready);
    let send = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         d = bytes(1000)\n\
         for i in range({count}):\n    s.sendto(d, ('{to_ip}', 5300))\n    \
         if i % 100 == 99: time.sleep(0.001)\n"
    );
    from.exec(&["python3", "-c", &send]).expect("send UDP");
    // The sink renames its count into place: the file never exists half-written.
    let done = harness::wait_until(Duration::from_secs(15), || out.exists());
    to.kill(pid);
    assert!(done, "the UDP sink did not finish");
    let n = std::fs::read_to_string(&out)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::fs::remove_file(&out);
    n
}

/// Bulk traffic goes through podfwd, not the kernel: after 10k UDP datagrams each way,
/// node A's counters account for at least 99% of those that arrived.
fn podfwd_carries_the_bulk_traffic(c: &mut Cluster, v: Variant) {
    const N: u32 = 10_000;
    ping_ok(c, A, 1);
    ping_ok(c, B, 1);
    let dirs = [
        (A, Some(v.carried_a_to_b())),
        // Where podfwd does not carry this direction, it is left out.
        (B, v.carried_b_to_a()),
    ];
    for (from, ctr) in dirs {
        let Some(ctr) = ctr else { continue };
        let before = counter(c, ctr);
        let got = udp_bulk(&c.pods[from], &c.pods[1 - from], SIDES[1 - from].pod_ip, N);
        let carried = counter(c, ctr) - before;
        assert!(
            got * 100 >= u64::from(N) * 99,
            "pod {from} -> pod {}: {got} of {N} datagrams arrived\n{}",
            1 - from,
            c.logs()
        );
        assert!(
            carried * 100 >= got * 99,
            "pod {from} -> pod {}: podfwd counted {carried} {ctr} for {got} datagrams \
             delivered: the rest went through the kernel\n{:?}",
            1 - from,
            c.stats(A).map(|s| s.total)
        );
    }
}

/// A ping flood (`ping -i 0.01`, nominally 100 per second) from pod A to pod B, its output
/// written to a file.
struct Flood {
    log: std::path::PathBuf,
    pid: u32,
}

impl Flood {
    fn start(c: &Cluster, count: u32) -> Flood {
        let log = std::env::temp_dir().join(format!("{}-flood.txt", c.pods[A].name()));
        let _ = std::fs::remove_file(&log);
        let pid = c.pods[A]
            .spawn_logged(
                &[
                    "ping",
                    "-n",
                    "-q",
                    "-i",
                    "0.01",
                    "-W",
                    "1",
                    "-c",
                    &count.to_string(),
                    SIDES[B].pod_ip,
                ],
                &log,
            )
            .expect("start the ping flood");
        Flood { log, pid }
    }

    /// Waits for the flood to end: (transmitted, received, ping's output).
    fn finish(self, c: &Cluster) -> (u64, u64, String) {
        let mut text = String::new();
        let done = harness::wait_until(Duration::from_secs(60), || {
            text = std::fs::read_to_string(&self.log).unwrap_or_default();
            ping_summary(&text).is_some()
        });
        c.pods[A].kill(self.pid);
        let _ = std::fs::remove_file(&self.log);
        assert!(done, "the ping flood did not finish: {text}");
        let (tx, rx) = ping_summary(&text).unwrap();
        (tx, rx, text)
    }
}

/// SIGKILL of node A's podfwd during a ping flood: the kernel takes the flow over with at
/// most 5 packets lost; a restarted podfwd takes it back, again losing at most 5, and
/// forwards again.
fn sigkill_and_restart_mid_flood_lose_at_most_5(c: &mut Cluster, v: Variant) {
    let ctr = v.carried_a_to_b();
    ping_ok(c, A, 3);
    // 1. SIGKILL once podfwd carries the flood.
    let before = counter(c, ctr);
    let flood = Flood::start(c, 500);
    let carrying = harness::wait_until(Duration::from_secs(5), || counter(c, ctr) >= before + 100);
    assert!(carrying, "podfwd carries the flood\n{}", c.logs());
    c.kill_podfwd(A).expect("podfwd runs on node A");
    let (tx, rx, text) = flood.finish(c);
    assert!(
        tx - rx <= MAX_LOST,
        "SIGKILL: {} of {tx} lost (at most {MAX_LOST}):\n{text}\n\
         node A's routes to pod B after the kill: {}\n{}",
        tx - rx,
        output(&c.nodes[A], &["ip", "route", "show", SIDES[B].pod_cidr]),
        c.logs()
    );

    // 2. Restart once the flood runs on the kernel path.
    let pod_tx = |c: &Cluster| if_counter(&c.pods[A], "eth0", "tx_packets");
    let t0 = pod_tx(c);
    let flood = Flood::start(c, 800);
    let flooding = harness::wait_until(Duration::from_secs(5), || pod_tx(c) >= t0 + 100);
    assert!(flooding, "the second flood started");
    c.start_podfwd(A, exe())
        .unwrap_or_else(|e| panic!("restart podfwd: {e}"));
    let back = harness::wait_until(Duration::from_secs(10), || counter(c, ctr) >= 100);
    let (tx, rx, text) = flood.finish(c);
    assert!(
        back,
        "the restarted podfwd carries the flood: {:?}\n{}",
        c.stats(A).map(|s| s.total),
        c.logs()
    );
    assert!(
        tx - rx <= MAX_LOST,
        "restart: {} of {tx} lost (at most {MAX_LOST}):\n{text}\n{}",
        tx - rx,
        c.logs()
    );
}
