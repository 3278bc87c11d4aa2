//! auto mode (flannel's DirectRouting): host-gw to a peer on the uplink's subnet, VXLAN
//! through the underlay router to a peer that is not.
//!
//! ```text
//!  podA -- [nodeA podfwd, auto] --+-- sw (bridge) --+-- [nodeB kernel host-gw] -- podB
//!          10.168.0.2             |                 |   10.168.0.3
//!                                 +-- [router] 10.168.0.1 / 10.168.1.1
//!                                          |
//!                                 [nodeC kernel VXLAN] 10.168.1.3 -- podC
//! ```

use crate::harness::{self, skip_unless_root, Netns};
use std::path::Path;
use std::time::Duration;

fn ns(tag: &str) -> Netns {
    let n = Netns::new(tag).expect("namespace");
    n.disable_ipv6().expect("ipv6 off");
    n
}

/// A veth pair `a_if` (in `a`) <-> `b_if` (in `b`), both up (offloads as the kernel
/// sets them: senders leave checksums partial, podfwd completes them).
fn link(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    harness::veth_pair(a, a_if, b, b_if).expect("veth");
    for (n, i) in [(a, a_if), (b, b_if)] {
        n.link_up(i).expect("up");
    }
}

fn pod(node: &Netns, node_if: &str, gw: &str, pod_ip: &str, mtu: &str) -> Netns {
    let p = ns("auto");
    link(&p, "eth0", node, node_if);
    p.ip(&["link", "set", "eth0", "mtu", mtu]).unwrap();
    node.ip(&["link", "set", node_if, "mtu", mtu]).unwrap();
    p.add_addr("eth0", &format!("{pod_ip}/24")).unwrap();
    node.add_addr(node_if, &format!("{gw}/24")).unwrap();
    p.add_route(&["default", "via", gw]).unwrap();
    p
}

fn ping(from: &Netns, to: &str) -> bool {
    harness::wait_until(Duration::from_secs(5), || {
        from.exec(&["ping", "-c", "1", "-W", "1", to]).is_ok()
    }) && from
        .exec(&["ping", "-c", "3", "-i", "0.1", "-W", "1", to])
        .is_ok()
}

#[test]
fn auto_mode_routes_on_link_peers_directly_and_off_link_peers_over_vxlan() {
    skip_unless_root!();
    let (a, b, c, r, sw) = (ns("auto"), ns("auto"), ns("auto"), ns("auto"), ns("auto"));
    // The underlay: a bridge in `sw` joins nodeA, nodeB and the router; the router links
    // to nodeC's subnet.
    sw.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    sw.link_up("br0").unwrap();
    for (n, n_if, sw_if) in [
        (&a, "a-ul", "sw-a"),
        (&b, "b-ul", "sw-b"),
        (&r, "r-ul0", "sw-r"),
    ] {
        link(n, n_if, &sw, sw_if);
        sw.ip(&["link", "set", sw_if, "master", "br0"]).unwrap();
    }
    link(&r, "r-ul1", &c, "c-ul");
    a.add_addr("a-ul", "10.168.0.2/24").unwrap();
    b.add_addr("b-ul", "10.168.0.3/24").unwrap();
    r.add_addr("r-ul0", "10.168.0.1/24").unwrap();
    r.add_addr("r-ul1", "10.168.1.1/24").unwrap();
    c.add_addr("c-ul", "10.168.1.3/24").unwrap();
    r.sysctl("net.ipv4.ip_forward", "1").unwrap();
    // The nodes' underlay routes, as a real network would have them.
    a.add_route(&["10.168.1.0/24", "via", "10.168.0.1"])
        .unwrap();
    c.add_route(&["10.168.0.0/24", "via", "10.168.1.1"])
        .unwrap();

    let pod_a = pod(&a, "a-pod", "10.244.0.1", "10.244.0.2", "1450");
    let pod_b = pod(&b, "b-pod", "10.244.1.1", "10.244.1.2", "1450");
    let pod_c = pod(&c, "c-pod", "10.244.2.1", "10.244.2.2", "1450");

    // nodeB: flannel host-gw (on-link with nodeA).
    b.sysctl("net.ipv4.ip_forward", "1").unwrap();
    b.add_route(&["10.244.0.0/24", "via", "10.168.0.2"])
        .unwrap();
    // nodeC: flannel VXLAN (off-link: its VXLAN to nodeA crosses the router).
    c.sysctl("net.ipv4.ip_forward", "1").unwrap();
    for cmd in [
        "link add flannel.1 type vxlan id 1 local 10.168.1.3 dev c-ul nolearning dstport 8472",
        "link set flannel.1 address 0e:00:00:00:00:0c mtu 1450 up",
        "addr add 10.244.2.0/32 dev flannel.1",
        "neigh add 10.244.0.0 lladdr 0e:00:00:00:00:0a dev flannel.1 nud permanent",
        "route add 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink",
    ] {
        c.ip(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
    }
    c.exec(&[
        "bridge",
        "fdb",
        "add",
        "0e:00:00:00:00:0a",
        "dev",
        "flannel.1",
        "dst",
        "10.168.0.2",
    ])
    .unwrap();

    // nodeA: podfwd in auto mode; forwarding on, as on every Kubernetes node (the
    // counters below prove podfwd carried the pings).
    a.sysctl("net.ipv4.ip_forward", "1").unwrap();
    let dir = std::env::temp_dir().join(format!("{}-auto", a.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("podfwd.sock");
    let cfg = dir.join("podfwd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[node]
ip = "10.168.0.2/24"
gateway = "10.168.0.1"
pod_cidr = "10.244.0.0/24"
uplink = "a-ul"
pod_interfaces = ["a-pod"]
[dataplane]
mode = "auto"
cores = [0]
[vxlan]
vtep_mac = "0e:00:00:00:00:0a"
[control]
socket = "{}"
[[peers]]
pod_cidr = "10.244.1.0/24"
node_ip = "10.168.0.3"
vtep_mac = "0e:00:00:00:00:0b"
[[peers]]
pod_cidr = "10.244.2.0/24"
node_ip = "10.168.1.3"
vtep_mac = "0e:00:00:00:00:0c"
"#,
            sock.display()
        ),
    )
    .unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_podfwd"));
    let check = a
        .exec(&[
            &exe.display().to_string(),
            "check",
            "--config",
            &cfg.display().to_string(),
        ])
        .expect("podfwd check");
    let plan = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(
        plan.contains("10.244.1.0/24") && plan.contains("host-gw via 10.168.0.3"),
        "{plan}"
    );
    assert!(plan.contains("vxlan to 10.168.1.3"), "{plan}");
    let log = dir.join("podfwd.log");
    a.spawn_logged(
        &[
            &exe.display().to_string(),
            "run",
            "--config",
            &cfg.display().to_string(),
        ],
        &log,
    )
    .unwrap();
    let up = harness::wait_until(Duration::from_secs(10), || {
        podfwd::control::query_stats(&sock).is_ok()
    });
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(up, "podfwd did not start:\n{}", logs());

    assert!(
        ping(&pod_a, "10.244.1.2"),
        "podA -> podB (host-gw)\n{}",
        logs()
    );
    assert!(
        ping(&pod_b, "10.244.0.2"),
        "podB -> podA (host-gw)\n{}",
        logs()
    );
    let before = podfwd::control::query_stats(&sock).unwrap().total;
    assert!(
        ping(&pod_a, "10.244.2.2"),
        "podA -> podC (vxlan via router)\n{}",
        logs()
    );
    assert!(
        ping(&pod_c, "10.244.0.2"),
        "podC -> podA (vxlan via router)\n{}",
        logs()
    );
    let after = podfwd::control::query_stats(&sock).unwrap().total;
    assert!(
        before["forwarded"] >= 6,
        "host-gw frames forwarded: {before:?}"
    );
    assert!(
        after["encapsulated"] >= before["encapsulated"] + 6,
        "VXLAN to the off-link peer: {before:?} -> {after:?}"
    );
    assert!(
        after["decapsulated"] >= before["decapsulated"] + 6,
        "VXLAN from the off-link peer: {before:?} -> {after:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
