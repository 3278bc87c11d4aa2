//! `podfwd routes` and SIGHUP reloads against running instances, on both backends.
//!
//! Node A runs podfwd in host-gw mode; node B is a flannel-style kernel host-gw node that
//! also serves a second pod subnet, 10.244.2.0/24 (pod B carries 10.244.2.5), behind a
//! second underlay address 10.168.0.4: "peer C" (host-gw: a VXLAN peer C would need a
//! VTEP of its own, and one kernel node has one per VNI). Node A starts with peer B only; the test rewrites its
//! config file and sends SIGHUP: peer C added (reachable), peer C removed (route gone),
//! an invalid file (refused with `podfwd check`'s message, B keeps its route), a change
//! that cannot be applied live (refused naming the key). A ping flow to pod B runs across
//! all of it and must lose nothing; the process and its workers never restart.

use crate::harness::{self, skip_unless_root};
use crate::traffic::{exe, ping_ok, started_cluster};
use podfwd::config::{Backend, Mode};
use podfwd::control::{query_routes, RoutesReply};
use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};
use std::time::{Duration, SystemTime};

const C_POD_IP: &str = "10.244.2.5";
const C_POD_CIDR: &str = "10.244.2.0/24";
const C_NODE_IP: &str = "10.168.0.4";

fn cluster(tag: &str, backend: Backend, mode: Mode) -> Cluster {
    let b = match mode {
        Mode::HostGw => NodeKind::KernelHostGw,
        _ => NodeKind::KernelVxlan,
    };
    let spec = ClusterSpec {
        mode,
        nodes: [NodeKind::Podfwd, b],
        ..ClusterSpec::default()
    };
    let c = started_cluster(tag, spec, backend);
    // Peer C lives on node B: a second underlay address, a second pod address.
    let (b, pod_b) = (&c.nodes[1], &c.pods[1]);
    b.add_addr(SIDES[1].ul_if, &format!("{C_NODE_IP}/24"))
        .expect("second underlay address");
    pod_b
        .add_addr("eth0", &format!("{C_POD_IP}/24"))
        .expect("second pod address");
    b.add_route(&[C_POD_CIDR, "via", SIDES[1].pod_ip, "dev", SIDES[1].pod_if])
        .expect("route to pod C");
    c
}

fn routes(c: &Cluster) -> RoutesReply {
    query_routes(&c.socket_path(0)).unwrap_or_else(|e| panic!("{e}\n{}", c.logs()))
}

fn has_route(c: &Cluster, prefix: &str) -> bool {
    routes(c)
        .routes
        .iter()
        .any(|r| r.prefix.to_string() == prefix)
}

fn with_peer_c(c: &Cluster) -> String {
    format!(
        "{}\n[[peers]]\npod_cidr = \"{C_POD_CIDR}\"\nnode_ip = \"{C_NODE_IP}\"\n",
        c.config_toml(0),
    )
}

/// Writes node A's config and sends SIGHUP; waits until the log says it was handled.
fn reload(c: &Cluster, toml: &str, expect_in_log: &str) {
    let before = std::fs::read_to_string(c.log_path(0)).unwrap_or_default();
    let seen = before.matches(expect_in_log).count();
    std::fs::write(c.config_path(0), toml).expect("write the config");
    let pid = c.podfwd_pid(0).expect("podfwd runs") as i32;
    // SAFETY: kill(2) with a valid signal number; the pid is our child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let handled = harness::wait_until(Duration::from_secs(5), || {
        let log = std::fs::read_to_string(c.log_path(0)).unwrap_or_default();
        log.matches(expect_in_log).count() > seen
    });
    assert!(handled, "no {expect_in_log:?} after SIGHUP\n{}", c.logs());
}

fn ping_c_ok(c: &Cluster) -> bool {
    c.pods[0]
        .exec(&["ping", "-c", "1", "-W", "1", C_POD_IP])
        .is_ok()
}

fn reloads_apply_peer_changes_live(tag: &str, backend: Backend) {
    let c = cluster(tag, backend, Mode::HostGw);
    ping_ok(&c, 0, 2);
    assert!(
        !ping_c_ok(&c),
        "pod C is not reachable before peer C exists"
    );
    assert!(!has_route(&c, C_POD_CIDR));
    let pid = c.podfwd_pid(0);
    let rx_before = c.stats(0).unwrap().total["rx"];

    // A flow to pod B across every reload: 300 pings, 20 ms apart.
    let flow = std::thread::scope(|s| {
        let flow = s.spawn(|| {
            let out = c.pods[0]
                .exec_unchecked(&[
                    "ping",
                    "-c",
                    "300",
                    "-i",
                    "0.02",
                    "-W",
                    "1",
                    SIDES[1].pod_ip,
                ])
                .expect("ping");
            String::from_utf8_lossy(&out.stdout).into_owned()
        });
        std::thread::sleep(Duration::from_millis(500));

        // Add peer C.
        reload(&c, &with_peer_c(&c), "reloaded source=");
        assert!(has_route(&c, C_POD_CIDR), "{:?}", routes(&c));
        let reachable = harness::wait_until(Duration::from_secs(5), || ping_c_ok(&c));
        assert!(
            reachable,
            "pod C unreachable after the reload\n{}",
            c.logs()
        );

        // Remove it again.
        reload(&c, &c.config_toml(0), "reloaded source=");
        assert!(!has_route(&c, C_POD_CIDR), "{:?}", routes(&c));
        assert!(
            !ping_c_ok(&c),
            "pod C is still reachable after its peer was removed"
        );

        // An invalid file: refused with the message `podfwd check` gives.
        let bad = c.config_toml(0).replace(SIDES[1].node_ip, "10.168.0.300");
        reload(&c, &bad, "reload refused");
        let check = std::process::Command::new(exe())
            .args(["check", "--config"])
            .arg(c.config_path(0))
            .output()
            .expect("podfwd check");
        let message = String::from_utf8_lossy(&check.stderr);
        let message = message.trim().trim_start_matches("podfwd: error: ");
        assert!(!message.is_empty());
        let log = std::fs::read_to_string(c.log_path(0)).unwrap();
        assert!(log.contains(message), "{message:?} not in the log\n{log}");
        assert!(has_route(&c, SIDES[1].pod_cidr));

        // A change that cannot be applied live: refused naming the key.
        let other_cores = c.config_toml(0).replace("queues = 1", "queues = 2");
        reload(&c, &other_cores, "reload refused");
        let log = std::fs::read_to_string(c.log_path(0)).unwrap();
        assert!(log.contains("dataplane.queues changed"), "{log}");

        assert!(!flow.is_finished(), "the flow must span every reload");
        flow.join().unwrap()
    });
    assert!(
        flow.contains("300 packets transmitted, 300 received"),
        "the flow to pod B lost packets across the reloads:\n{flow}\n{}",
        c.logs()
    );
    ping_ok(&c, 0, 2);
    assert_eq!(c.podfwd_pid(0), pid);
    let st = c.stats(0).unwrap();
    assert!(
        st.total["rx"] > rx_before,
        "the workers kept counting: {:?}",
        st.total
    );

    // Peer C once more, with no other traffic: podfwd itself carries it (not only the
    // kernel slow path, which has the route too on an AF_XDP node).
    reload(&c, &with_peer_c(&c), "reloaded source=");
    assert!(harness::wait_until(Duration::from_secs(5), || ping_c_ok(
        &c
    )));
    let forwarded = c.stats(0).unwrap().total["forwarded"];
    let out = c.pods[0]
        .exec(&["ping", "-c", "5", "-i", "0.1", "-W", "1", C_POD_IP])
        .expect("ping pod C");
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 received"));
    let carried = c.stats(0).unwrap().total["forwarded"] - forwarded;
    assert!(
        carried >= 5,
        "podfwd forwarded {carried} of pod C's pings\n{}",
        c.logs()
    );
    let log = std::fs::read_to_string(c.log_path(0)).unwrap();
    assert!(!log.contains("podfwd::control: stopped "), "{log}");
}

#[test]
fn afxdp_sighup_adds_and_removes_peers_live_and_refuses_bad_files() {
    skip_unless_root!();
    reloads_apply_peer_changes_live("rlafx", Backend::AfXdp);
}

#[test]
fn tun_sighup_adds_and_removes_peers_live_and_refuses_bad_files() {
    skip_unless_root!();
    reloads_apply_peer_changes_live("rltun", Backend::Tun);
}

#[test]
fn routes_shows_the_live_fib_as_a_table_and_as_json() {
    skip_unless_root!();
    let c = cluster("rlrts", Backend::AfXdp, Mode::Vxlan);
    let sock = c.socket_path(0).display().to_string();
    let out = std::process::Command::new(exe())
        .args(["routes", "--json", "--socket", &sock])
        .output()
        .expect("podfwd routes --json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = json["routes"].as_array().expect("routes");
    assert_eq!(rows.len(), 2, "{json}");
    let own = &rows[0];
    assert_eq!(own["prefix"], SIDES[0].pod_cidr);
    assert_eq!(own["mode"], "connected");
    assert_eq!(own["dev"], SIDES[0].pod_if);
    let peer = &rows[1];
    assert_eq!(peer["prefix"], SIDES[1].pod_cidr);
    assert_eq!(peer["mode"], "vxlan");
    assert_eq!(peer["next_hop"], SIDES[1].node_ip);
    assert_eq!(peer["vtep_mac"], SIDES[1].vtep_mac);
    assert_eq!(peer["source"], "static");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let since = peer["since_unix"].as_u64().expect("since_unix");
    assert!(
        since <= now && now - since < 120,
        "since {since}, now {now}"
    );

    let out = std::process::Command::new(exe())
        .args(["routes", "--socket", &sock])
        .output()
        .expect("podfwd routes");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("PREFIX"), "{text}");
    assert!(
        lines[2].starts_with(SIDES[1].pod_cidr)
            && lines[2].contains(SIDES[1].node_ip)
            && lines[2].contains("vxlan")
            && lines[2].contains("static"),
        "{text}"
    );
}
