//! `podfwd::kernel` against a real kernel: what `apply` installs equals what flanneld's
//! commands install, it adopts and corrects, it never touches what is not podfwd's, and
//! `cleanup` removes exactly podfwd's objects. Traffic crosses the installed slow path.
//!
//! Each node is a namespace whose uplink `ul` (10.168.0.x/24) is one end of a veth
//! pair; the other end is in a second namespace (another node, or a bare far end).
//! `apply` and `cleanup` run inside the node's namespace through [`in_netns`].

use podfwd::config::Config;
use podfwd::kernel::{self, ApplyReport, CleanupReport, KernelError, KernelSpec};
use podfwd::plan::Plan;

use crate::harness::{skip_unless_root, veth_pair, Netns};
use crate::neigh::in_netns;

const A_IP: &str = "10.168.0.2";
const B_IP: &str = "10.168.0.3";
const A_VTEP: &str = "0e:00:00:00:00:0a";
const B_VTEP: &str = "0e:00:00:00:00:0b";
const C_VTEP: &str = "0e:00:00:00:00:0c";
const DEV: &str = "podfwd.1";

/// Node A's config: peer B (10.244.1.0/24 at 10.168.0.3, on-link) and, when `with_c`,
/// peer C (10.244.2.0/24 at 10.20.0.4, behind the router 10.168.0.1).
fn config(mode: &str, vni: u32, with_c: bool) -> Config {
    Config::from_toml_str(&config_toml(mode, vni, with_c)).expect("valid config")
}

fn config_toml(mode: &str, vni: u32, with_c: bool) -> String {
    let c = if with_c {
        "[[peers]]\npod_cidr = \"10.244.2.0/24\"\nnode_ip = \"10.20.0.4\"\n\
         vtep_mac = \"0e:00:00:00:00:0c\"\n"
    } else {
        ""
    };
    format!(
        r#"
[node]
ip = "{A_IP}/24"
pod_cidr = "10.244.0.0/24"
uplink = "ul"
pod_interfaces = ["pod"]
gateway = "10.168.0.1"

[dataplane]
mode = "{mode}"

[vxlan]
vni = {vni}
vtep_mac = "{A_VTEP}"

[[peers]]
pod_cidr = "10.244.1.0/24"
node_ip = "{B_IP}"
vtep_mac = "{B_VTEP}"

{c}"#
    )
}

fn spec(mode: &str, vni: u32, with_c: bool) -> KernelSpec {
    let plan = Plan::resolve(&config(mode, vni, with_c), None).expect("plan");
    KernelSpec::from_plan(&plan)
}

fn apply_in(ns: &Netns, spec: &KernelSpec) -> Result<ApplyReport, KernelError> {
    let spec = spec.clone();
    in_netns(ns, move || kernel::apply(&spec))
}

fn cleanup_in(ns: &Netns) -> Result<CleanupReport, KernelError> {
    in_netns(ns, || kernel::cleanup(DEV))
}

/// A node namespace with uplink `ul` (`ip`/24, MTU 1500) whose veth peer lives in a
/// far-end namespace (10.168.0.1/24, the "router").
fn node(tag: &str, ip: &str) -> (Netns, Netns) {
    let ns = Netns::new(tag).expect("node namespace");
    let far = Netns::new(tag).expect("far-end namespace");
    for n in [&ns, &far] {
        n.disable_ipv6().expect("disable IPv6");
    }
    veth_pair(&ns, "ul", &far, "ul").expect("veth");
    ns.add_addr("ul", &format!("{ip}/24")).expect("address");
    far.add_addr("ul", "10.168.0.1/24").expect("far address");
    ns.link_up("ul").expect("up");
    far.link_up("ul").expect("far up");
    (ns, far)
}

fn sh(ns: &Netns, args: &[&str]) -> String {
    let out = ns.exec(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(ns: &Netns, args: &[&str]) -> String {
    let mut full = vec!["ip"];
    full.extend_from_slice(args);
    sh(ns, &full)
}

/// flanneld's commands for a VXLAN device `dev` (DESIGN.md), as `Cluster::kernel_vxlan`
/// runs them: own `local`/`pod_net`, then one (pod net, VTEP MAC, node IP) per peer.
fn reference_vxlan(
    ns: &Netns,
    dev: &str,
    vni: &str,
    local: &str,
    own: (&str, &str),
    peers: &[(&str, &str, &str)],
) {
    ns.ip(&[
        "link",
        "add",
        dev,
        "type",
        "vxlan",
        "id",
        vni,
        "local",
        local,
        "dev",
        "ul",
        "nolearning",
        "dstport",
        "8472",
    ])
    .expect("reference vxlan");
    ns.ip(&["link", "set", dev, "address", own.0, "mtu", "1450", "up"])
        .expect("reference link set");
    ns.add_addr(dev, &format!("{}/32", own.1))
        .expect("reference address");
    for (net, mac, node_ip) in peers {
        ns.ip(&[
            "neigh",
            "add",
            net,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])
        .expect("reference neigh");
        ns.exec(&["bridge", "fdb", "add", mac, "dev", dev, "dst", node_ip])
            .expect("reference fdb");
        ns.add_route(&[&format!("{net}/24"), "via", net, "dev", dev, "onlink"])
            .expect("reference route");
    }
}

/// Output without what legitimately differs between two namespaces: interface indices
/// (`12: podfwd.1:`, `if12`), podfwd's alias line and its route protocol.
fn normalize(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("alias "))
        .map(|l| {
            let l = l.replace(" proto 112", "");
            // "12: podfwd.1: <...>" -> "podfwd.1: <...>"
            match l.split_once(": ") {
                Some((idx, rest)) if idx.chars().all(|c| c.is_ascii_digit()) => rest.to_string(),
                _ => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an observer sees of the slow path in `ns`.
fn kernel_view(ns: &Netns, with_device: bool) -> Vec<(String, String)> {
    let mut views = vec![("ip route show".to_string(), ip(ns, &["route", "show"]))];
    if with_device {
        views.extend([
            (
                "ip -d link show".into(),
                ip(ns, &["-d", "link", "show", "dev", DEV]),
            ),
            ("ip addr show".into(), ip(ns, &["addr", "show", "dev", DEV])),
            (
                "ip neigh show".into(),
                ip(ns, &["neigh", "show", "dev", DEV]),
            ),
            (
                "bridge fdb show".into(),
                sh(ns, &["bridge", "fdb", "show", "dev", DEV]),
            ),
        ]);
    }
    views
}

fn assert_same_view(ours: &Netns, reference: &Netns, with_device: bool) {
    for ((what, got), (_, want)) in kernel_view(ours, with_device)
        .into_iter()
        .zip(kernel_view(reference, with_device))
    {
        // Neighbour and FDB entries live in hash tables: their dump order means nothing.
        let unordered = what.starts_with("ip neigh") || what.starts_with("bridge fdb");
        let canonical = |text: &str| {
            let n = normalize(text);
            if !unordered {
                return n;
            }
            let mut lines: Vec<&str> = n.lines().collect();
            lines.sort_unstable();
            lines.join("\n")
        };
        assert_eq!(
            canonical(&got),
            canonical(&want),
            "`{what}` differs\n--- podfwd:\n{got}\n--- flanneld commands:\n{want}"
        );
    }
}

fn proto_routes(ns: &Netns) -> String {
    ip(ns, &["route", "show", "proto", "112"])
}

#[test]
fn vxlan_apply_installs_what_the_flanneld_commands_install() {
    skip_unless_root!();
    let (a, _fa) = node("kvx", A_IP);
    let (r, _fr) = node("kvxref", A_IP);
    let report = apply_in(&a, &spec("vxlan", 1, true)).expect("apply");
    assert!(
        report.adopted.is_empty() && report.corrected.is_empty(),
        "{report}"
    );
    assert_eq!(report.created.len(), 2 + 3 * 2, "{report}");
    reference_vxlan(
        &r,
        DEV,
        "1",
        A_IP,
        (A_VTEP, "10.244.0.0"),
        &[
            ("10.244.1.0", B_VTEP, B_IP),
            ("10.244.2.0", C_VTEP, "10.20.0.4"),
        ],
    );
    assert_same_view(&a, &r, true);
    let link = ip(&a, &["-d", "link", "show", "dev", DEV]);
    assert!(link.contains("alias podfwd-managed"), "{link}");
    assert_eq!(
        proto_routes(&a),
        "10.244.1.0/24 via 10.244.1.0 dev podfwd.1 onlink \n\
         10.244.2.0/24 via 10.244.2.0 dev podfwd.1 onlink \n"
    );
}

#[test]
fn host_gw_apply_installs_the_flanneld_routes() {
    skip_unless_root!();
    let (a, _fa) = node("khg", A_IP);
    let (r, _fr) = node("khgref", A_IP);
    let report = apply_in(&a, &spec("host-gw", 1, true)).expect("apply");
    assert_eq!(report.created.len(), 2, "{report}");
    r.add_route(&["10.244.1.0/24", "via", B_IP, "dev", "ul"])
        .unwrap();
    r.add_route(&["10.244.2.0/24", "via", "10.168.0.1", "dev", "ul"])
        .unwrap();
    assert_same_view(&a, &r, false);
    assert!(
        ip(&a, &["link", "show"]).find(DEV).is_none(),
        "no device in host-gw"
    );
    assert_eq!(proto_routes(&a).lines().count(), 2);
}

#[test]
fn auto_apply_mixes_a_host_gw_route_and_the_vxlan_entries() {
    skip_unless_root!();
    let (a, _fa) = node("kauto", A_IP);
    let (r, _fr) = node("kautoref", A_IP);
    apply_in(&a, &spec("auto", 1, true)).expect("apply");
    reference_vxlan(
        &r,
        DEV,
        "1",
        A_IP,
        (A_VTEP, "10.244.0.0"),
        &[("10.244.2.0", C_VTEP, "10.20.0.4")],
    );
    r.add_route(&["10.244.1.0/24", "via", B_IP, "dev", "ul"])
        .unwrap();
    assert_same_view(&a, &r, true);
}

#[test]
fn apply_twice_is_a_no_op_that_adopts_everything() {
    skip_unless_root!();
    let (a, _fa) = node("ktwice", A_IP);
    let s = spec("auto", 1, true);
    let first = apply_in(&a, &s).expect("first apply");
    let before = kernel_view(&a, true);
    let second = apply_in(&a, &s).expect("second apply");
    assert!(
        !second.changed(),
        "second apply changed the kernel:\n{second}"
    );
    assert_eq!(second.adopted.len(), first.created.len(), "{second}");
    assert_eq!(kernel_view(&a, true), before);
}

#[test]
fn hand_changed_entries_are_corrected() {
    skip_unless_root!();
    let (a, _fa) = node("kfix", A_IP);
    let s = spec("vxlan", 1, true);
    apply_in(&a, &s).expect("apply");
    let before = kernel_view(&a, true);
    a.ip(&[
        "neigh",
        "replace",
        "10.244.1.0",
        "lladdr",
        "0e:00:00:00:00:ee",
        "dev",
        DEV,
        "nud",
        "permanent",
    ])
    .unwrap();
    a.exec(&[
        "bridge",
        "fdb",
        "replace",
        C_VTEP,
        "dev",
        DEV,
        "dst",
        "10.168.0.99",
    ])
    .unwrap();
    a.ip(&["link", "set", DEV, "mtu", "1400"]).unwrap();
    a.ip(&[
        "route",
        "replace",
        "10.244.1.0/24",
        "via",
        B_IP,
        "dev",
        "ul",
        "proto",
        "112",
    ])
    .unwrap();
    a.ip(&[
        "neigh",
        "add",
        "10.244.9.0",
        "lladdr",
        "0e:00:00:00:00:99",
        "dev",
        DEV,
    ])
    .unwrap();

    let report = apply_in(&a, &s).expect("apply");
    let text = report.to_string();
    for expected in [
        "corrected device podfwd.1 (vxlan id 1 local 10.168.0.2 dev ul dstport 8472): mtu 1400 -> 1450",
        "corrected neighbour 10.244.1.0 lladdr 0e:00:00:00:00:0b dev podfwd.1 nud permanent \
         (was lladdr 0e:00:00:00:00:ee nud permanent)",
        "corrected fdb 0e:00:00:00:00:0c dst 10.20.0.4 dev podfwd.1 (was dst 10.168.0.99)",
        "corrected route 10.244.1.0/24 via 10.244.1.0 dev podfwd.1 onlink (was 10.244.1.0/24 via 10.168.0.3 dev ul)",
        "removed neighbour 10.244.9.0 lladdr 0e:00:00:00:00:99 dev podfwd.1",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(report.created.is_empty(), "{report}");
    assert_eq!(kernel_view(&a, true), before);
}

#[test]
fn a_default_destination_added_by_hand_is_removed() {
    skip_unless_root!();
    let (a, _fa) = node("kfdb", A_IP);
    let s = spec("vxlan", 1, false);
    apply_in(&a, &s).expect("apply");
    // An all-zeros entry floods unknown MACs to 10.168.0.77: not flannel's set-up.
    // (The kernel keeps one remote per unicast MAC; only such entries take appends.)
    a.exec(&[
        "bridge",
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dev",
        DEV,
        "dst",
        "10.168.0.77",
    ])
    .unwrap();
    let report = apply_in(&a, &s).expect("apply");
    assert_eq!(
        report.removed,
        ["fdb 00:00:00:00:00:00 dst 10.168.0.77 dev podfwd.1"],
        "{report}"
    );
    let fdb = sh(&a, &["bridge", "fdb", "show", "dev", DEV]);
    assert!(!fdb.contains("10.168.0.77") && fdb.contains(B_IP), "{fdb}");
}

#[test]
fn a_stale_peer_is_removed() {
    skip_unless_root!();
    let (a, _fa) = node("kstale", A_IP);
    apply_in(&a, &spec("vxlan", 1, true)).expect("apply with C");
    let report = apply_in(&a, &spec("vxlan", 1, false)).expect("apply without C");
    let text = report.to_string();
    for expected in [
        "removed neighbour 10.244.2.0 lladdr 0e:00:00:00:00:0c dev podfwd.1",
        "removed fdb 0e:00:00:00:00:0c dst 10.20.0.4 dev podfwd.1",
        "removed route 10.244.2.0/24 via 10.244.2.0 dev podfwd.1 onlink",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert_eq!(report.removed.len(), 3, "{report}");
    assert!(!ip(&a, &["route"]).contains("10.244.2.0"));
    assert!(!sh(&a, &["bridge", "fdb", "show", "dev", DEV]).contains(C_VTEP));
}

#[test]
fn a_device_with_another_vni_is_recreated_and_a_renamed_one_removed() {
    skip_unless_root!();
    let (a, _fa) = node("kvni", A_IP);
    apply_in(&a, &spec("vxlan", 1, false)).expect("apply vni 1");
    let report = apply_in(&a, &spec("vxlan", 2, false)).expect("apply vni 2");
    assert!(
        report.corrected[0].contains("recreated (id 1 -> 2)"),
        "{report}"
    );
    // The device's entries went with it and were installed again.
    assert_eq!(report.created.len(), 4, "{report}");
    assert!(ip(&a, &["-d", "link", "show", DEV]).contains("vxlan id 2 "));
    assert!(ip(&a, &["route"]).contains("10.244.1.0/24 via 10.244.1.0 dev podfwd.1"));

    // vxlan.device renamed: the old podfwd device is removed, the new one created.
    let mut renamed = spec("vxlan", 2, false);
    renamed.device_name = "podfwd.2".into();
    let report = apply_in(&a, &renamed).expect("apply renamed");
    assert!(
        report.removed.contains(&"device podfwd.1".to_string()),
        "{report}"
    );
    let links = ip(&a, &["link", "show"]);
    assert!(
        links.contains("podfwd.2") && !links.contains("podfwd.1"),
        "{links}"
    );
}

#[test]
fn an_unmarked_device_left_by_an_interrupted_creation_is_replaced() {
    skip_unless_root!();
    let (a, _fa) = node("kstage", A_IP);
    // What a crash between creating the device and marking it leaves: an unmarked VXLAN
    // device under the staging name (the configured name stays free).
    assert_eq!(podfwd::kernel::staging_name(DEV), "podfwd.1.new");
    a.ip(&[
        "link",
        "add",
        "podfwd.1.new",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "8472",
        "nolearning",
    ])
    .unwrap();
    let report = apply_in(&a, &spec("vxlan", 1, false)).expect("apply");
    assert!(
        report
            .removed
            .contains(&"device podfwd.1.new (an interrupted creation)".to_string()),
        "{report}"
    );
    assert!(!ip(&a, &["link", "show"]).contains("podfwd.1.new"));
    let dev = ip(&a, &["-d", "link", "show", DEV]);
    assert!(
        dev.contains("alias podfwd-managed") && dev.contains("vxlan id 1 "),
        "{dev}"
    );
    assert!(ip(&a, &["route"]).contains("10.244.1.0/24 via 10.244.1.0 dev podfwd.1"));
    // A long configured name: the staging name stays within IFNAMSIZ.
    assert_eq!(
        podfwd::kernel::staging_name("podfwd.vxlan.42"),
        "podfwd.vxla.new"
    );
}

#[test]
fn a_foreign_route_for_a_peer_prefix_is_an_error_and_stays() {
    skip_unless_root!();
    let (a, _fa) = node("kfroute", A_IP);
    a.add_route(&["10.244.1.0/24", "via", "10.168.0.9", "dev", "ul"])
        .unwrap();
    let before = ip(&a, &["route", "show"]);
    let err = apply_in(&a, &spec("vxlan", 1, false)).expect_err("foreign route");
    let msg = err.to_string();
    assert!(matches!(err, KernelError::ForeignRoute { .. }), "{msg}");
    assert!(
        msg.contains("route 10.244.1.0/24 via 10.168.0.9 dev ul exists with proto boot (3)"),
        "{msg}"
    );
    assert_eq!(ip(&a, &["route", "show"]), before);
    assert!(
        !ip(&a, &["link", "show"]).contains(DEV),
        "nothing installed"
    );
}

#[test]
fn a_foreign_device_with_the_configured_name_is_an_error_and_stays() {
    skip_unless_root!();
    let (a, _fa) = node("kfdev", A_IP);
    a.ip(&["link", "add", DEV, "type", "veth", "peer", "name", "other0"])
        .unwrap();
    let err = apply_in(&a, &spec("vxlan", 1, false)).expect_err("foreign device");
    let msg = err.to_string();
    assert!(matches!(err, KernelError::ForeignDevice { .. }), "{msg}");
    assert!(
        msg.contains(
            "interface \"podfwd.1\" exists but podfwd did not create it (kind veth, alias none)"
        ),
        "{msg}"
    );
    assert!(ip(&a, &["-d", "link", "show", DEV]).contains("veth"));
    assert!(proto_routes(&a).is_empty());
    // Cleanup leaves it alone too, and says so.
    let report = cleanup_in(&a).expect("cleanup");
    assert!(report.removed.is_empty(), "{report}");
    assert_eq!(report.left_alone.as_deref(), Some(DEV));
    assert!(ip(&a, &["link", "show"]).contains(DEV));
}

#[test]
fn cleanup_removes_all_of_podfwds_and_nothing_else() {
    skip_unless_root!();
    let (a, _fa) = node("kclean", A_IP);
    a.add_route(&["10.99.0.0/24", "via", "10.168.0.1", "dev", "ul"])
        .unwrap();
    a.ip(&[
        "link", "add", "other0", "type", "veth", "peer", "name", "other1",
    ])
    .unwrap();
    apply_in(&a, &spec("auto", 1, true)).expect("apply");
    let report = cleanup_in(&a).expect("cleanup");
    let text = report.to_string();
    for expected in [
        "removed device podfwd.1 with 1 neighbours, 1 fdb entries",
        "removed route 10.244.2.0/24 via 10.244.2.0 dev podfwd.1 onlink (with the device)",
        "removed route 10.244.1.0/24 via 10.168.0.3 dev ul",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(proto_routes(&a).is_empty());
    let links = ip(&a, &["link", "show"]);
    assert!(!links.contains(DEV) && links.contains("other0"), "{links}");
    assert!(ip(&a, &["route"]).contains("10.99.0.0/24 via 10.168.0.1 dev ul"));
    let again = cleanup_in(&a).expect("second cleanup");
    assert!(
        again.to_string().starts_with("nothing to remove"),
        "{again}"
    );
}

/// Node A (podfwd's `apply`) and node B (flanneld's commands) on one veth segment.
fn two_nodes(tag: &str) -> (Netns, Netns) {
    let a = Netns::new(tag).expect("node a");
    let b = Netns::new(tag).expect("node b");
    for n in [&a, &b] {
        n.disable_ipv6().expect("disable IPv6");
    }
    veth_pair(&a, "ul", &b, "ul").expect("veth");
    a.add_addr("ul", &format!("{A_IP}/24")).unwrap();
    b.add_addr("ul", &format!("{B_IP}/24")).unwrap();
    a.link_up("ul").unwrap();
    b.link_up("ul").unwrap();
    (a, b)
}

fn ping(ns: &Netns, from: &str, to: &str) -> std::process::Output {
    ns.exec_unchecked(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", from, to])
        .expect("ping runs")
}

fn tx_packets(ns: &Netns, dev: &str) -> u64 {
    let path = format!("/sys/class/net/{dev}/statistics/tx_packets");
    sh(ns, &["cat", &path]).trim().parse().unwrap_or(0)
}

#[test]
fn ping_crosses_the_installed_vxlan_device_to_a_flanneld_node() {
    skip_unless_root!();
    let (a, b) = two_nodes("kping");
    apply_in(&a, &spec("vxlan", 1, false)).expect("apply");
    reference_vxlan(
        &b,
        "flannel.1",
        "1",
        B_IP,
        (B_VTEP, "10.244.1.0"),
        &[("10.244.0.0", A_VTEP, A_IP)],
    );
    let out = ping(&a, "10.244.0.0", "10.244.1.0");
    assert!(
        out.status.success(),
        "ping failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tx_packets(&a, DEV) >= 3,
        "the pings did not leave through {DEV}"
    );
}

#[test]
fn ping_follows_the_installed_host_gw_route_to_a_flanneld_node() {
    skip_unless_root!();
    let (a, b) = two_nodes("kpinghg");
    apply_in(&a, &spec("host-gw", 1, false)).expect("apply");
    b.add_route(&["10.244.0.0/24", "via", A_IP, "dev", "ul"])
        .unwrap();
    // A "pod" address on each node.
    a.add_addr("lo", "10.244.0.1/32").unwrap();
    b.add_addr("lo", "10.244.1.1/32").unwrap();
    let out = ping(&a, "10.244.0.1", "10.244.1.1");
    assert!(
        out.status.success(),
        "ping failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn podfwd_cleanup_command_removes_and_prints_what_podfwd_installed() {
    skip_unless_root!();
    let (a, _fa) = node("kclicl", A_IP);
    apply_in(&a, &spec("auto", 1, true)).expect("apply");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.toml", a.name()));
    std::fs::write(&path, config_toml("auto", 1, true)).unwrap();
    let exe = env!("CARGO_BIN_EXE_podfwd");
    let out = a
        .exec_unchecked(&[exe, "cleanup", "--config", path.to_str().unwrap()])
        .expect("podfwd runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("removed device podfwd.1"), "{stdout}");
    assert!(
        stdout.contains("removed route 10.244.1.0/24 via 10.168.0.3 dev ul"),
        "{stdout}"
    );
    assert!(proto_routes(&a).is_empty());
    assert!(!ip(&a, &["link", "show"]).contains(DEV));
}
