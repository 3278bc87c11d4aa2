//! A three-node flannel cluster on one registry: nodes A and B run `podfwd run` with
//! `[cluster] source = "etcd"`, node C is a kernel node programmed from the same
//! registry exactly as flanneld would (`cluster::configure_kernel_node`). The nodes
//! share one L2 underlay (a bridge in a "switch" namespace, which also runs etcd on
//! 10.168.0.254:2379, as a cluster's etcd sits on the node network).
//!
//! The registry starts with only `<prefix>/config`: A and B are started at the same
//! moment and must take distinct subnets; their pods are addressed from the
//! `subnet.env` each wrote (as flannel's CNI plugin does). Then every pod pings and
//! carries TCP to every other pod, podfwd's workers (not the kernel) carry A's and B's
//! share, and etcd is stopped for 10 s, restarted while the podfwd nodes are still cut
//! off, given a new lease, and reconnected: forwarding never stops, and the lease added
//! while the nodes could not see etcd is routed after.

use crate::cluster::{
    configure_kernel_node, fast_timing, host_gw_lease_json, lease_json, scrape, snapshot, Etcd,
    PREFIX,
};
use crate::harness::{skip_unless_root, wait_until, Netns};
use crate::neigh::in_netns;
use crate::traffic::{exe, TcpTransfer};
use podfwd::cluster::{LeaseAttrs, LeaseBackend, NetworkConfig, Registry};
use podfwd::config::Backend;
use podfwd::control::{query_routes, query_stats};
use podfwd::wire::MacAddr;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// etcd's address on the underlay (the switch namespace's bridge).
const ETCD_IP: &str = "10.168.0.254";

/// One node of the cluster: its namespace, its pod's, and what its lease gave it.
struct Node {
    ns: Netns,
    pod: Netns,
    ip: &'static str,
    vtep_mac: &'static str,
    /// The pod's address and its gateway (the subnet's .2 and .1), once leased.
    pod_ip: String,
    subnet: String,
}

impl Node {
    /// The node's namespace, its underlay port on the switch and its pod (a veth pair,
    /// `eth0` in the pod, `vpod` on the node; addressed once the subnet is known).
    fn new(tag: &str, switch: &Netns, ip: &'static str, vtep_mac: &'static str) -> Node {
        let ns = Netns::new(tag).expect("node namespace");
        let pod = Netns::new(tag).expect("pod namespace");
        for n in [&ns, &pod] {
            n.disable_ipv6().unwrap();
        }
        let port = format!("sw{}", ip.rsplit('.').next().unwrap());
        ns.ip(&[
            "link",
            "add",
            "ul",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            switch.name(),
        ])
        .unwrap();
        switch.ip(&["link", "set", &port, "master", "br0"]).unwrap();
        switch.link_up(&port).unwrap();
        ns.add_addr("ul", &format!("{ip}/24")).unwrap();
        ns.link_up("ul").unwrap();
        ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
        pod.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "vpod",
            "netns",
            ns.name(),
        ])
        .unwrap();
        pod.link_up("eth0").unwrap();
        ns.link_up("vpod").unwrap();
        Node {
            ns,
            pod,
            ip,
            vtep_mac,
            pod_ip: String::new(),
            subnet: String::new(),
        }
    }

    /// Addresses the pod from the node's subnet (`10.244.N.0/24`), as flannel's CNI
    /// plugin would from `subnet.env`: gateway .1 on the node, the pod .2 with the MTU.
    fn address_pod(&mut self, subnet: &str, mtu: u32) {
        let base: Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
        let at = |n: u32| Ipv4Addr::from(u32::from(base) + n).to_string();
        let (gw, pod) = (at(1), at(2));
        self.ns.add_addr("vpod", &format!("{gw}/24")).unwrap();
        let mtu = mtu.to_string();
        for (ns, ifname) in [(&self.ns, "vpod"), (&self.pod, "eth0")] {
            ns.ip(&["link", "set", ifname, "mtu", &mtu]).unwrap();
        }
        self.pod.add_addr("eth0", &format!("{pod}/24")).unwrap();
        self.pod.add_route(&["default", "via", &gw]).unwrap();
        self.pod_ip = pod;
        self.subnet = subnet.to_string();
    }
}

/// A podfwd node's files (config, log, socket, subnet.env) under the test's dir.
struct Files {
    dir: PathBuf,
    name: &'static str,
}

impl Files {
    fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.path("log")).unwrap_or_default()
    }
}

/// `subnet.env`'s FLANNEL_SUBNET (as the subnet, `10.244.N.0/24`) and FLANNEL_MTU.
fn read_subnet_env(text: &str) -> Option<(String, u32)> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(str::to_string))
    };
    let subnet: ipnet::Ipv4Net = get("FLANNEL_SUBNET=")?.parse().ok()?;
    let mtu = get("FLANNEL_MTU=")?.parse().ok()?;
    Some((subnet.trunc().to_string(), mtu))
}

/// The value of `podfwd_route_source_connected` on node `ns`'s /metrics, if it answers.
fn route_source_connected(ns: &Netns) -> Option<f64> {
    let text = scrape(ns, &["podfwd_route_source_connected"]).ok()?;
    text.split_whitespace().last()?.parse().ok()
}

/// Pings `to` from `from` until a reply comes (neighbours resolve on the first
/// packets), then 3 more that must all be answered.
fn ping_ok(from: &Node, to: &Node, logs: &dyn Fn() -> String) {
    let warm = wait_until(Duration::from_secs(5), || {
        from.pod
            .exec(&["ping", "-c", "1", "-W", "1", &to.pod_ip])
            .is_ok()
    });
    let out = from
        .pod
        .exec_unchecked(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &to.pod_ip])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        warm && text.contains("3 packets transmitted, 3 received"),
        "ping pod {} (node {}) -> pod {} (node {}): {text}\n{}",
        from.pod_ip,
        from.ip,
        to.pod_ip,
        to.ip,
        logs()
    );
}

/// Frames podfwd's workers forwarded, encapsulated or decapsulated on the node.
fn carried(sock: &std::path::Path) -> u64 {
    let s = query_stats(sock).expect("stats");
    ["forwarded", "encapsulated", "decapsulated"]
        .iter()
        .map(|k| s.total.get(*k).copied().unwrap_or(0))
        .sum()
}

fn three_node_cluster(tag: &str, backend: Backend, network_json: &str) {
    let network = NetworkConfig::parse(network_json.as_bytes()).unwrap();
    let vxlan = matches!(network.backend, podfwd::cluster::BackendConfig::Vxlan(_));
    let switch = Netns::new(tag).expect("switch namespace");
    switch.disable_ipv6().unwrap();
    switch
        .ip(&["link", "add", "br0", "type", "bridge"])
        .unwrap();
    switch.add_addr("br0", &format!("{ETCD_IP}/24")).unwrap();
    switch.link_up("br0").unwrap();
    let mut etcd = Etcd::start_listening_also(&switch, ETCD_IP);
    etcd.put(&format!("{PREFIX}/config"), network_json);

    let mut a = Node::new(tag, &switch, "10.168.0.2", "0e:00:00:00:00:0a");
    let mut b = Node::new(tag, &switch, "10.168.0.3", "0e:00:00:00:00:0b");
    let mut c = Node::new(tag, &switch, "10.168.0.4", "0e:00:00:00:00:0c");

    // A and B: podfwd on the registry, started at the same moment on an empty registry.
    let dir = std::env::temp_dir().join(format!("{}-files", a.ns.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        Files {
            dir: dir.clone(),
            name: "a",
        },
        Files {
            dir: dir.clone(),
            name: "b",
        },
    ];
    let cores = if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        [0, 1]
    } else {
        [0, 0]
    };
    for (i, node) in [&a, &b].into_iter().enumerate() {
        let f = &files[i];
        let toml = format!(
            "[node]\nip = \"{ip}/24\"\nuplink = \"ul\"\npod_interfaces = [\"vpod\"]\n\
             [dataplane]\nbackend = \"{backend}\"\ncores = [{core}]\nqueues = 1\n\
             [vxlan]\nvtep_mac = \"{vtep}\"\n\
             [control]\nsocket = \"{sock}\"\nbpf_pin_dir = \"/sys/fs/bpf/{nsname}\"\n\
             [metrics]\nlisten = \"127.0.0.1:9472\"\n[tun]\nname = \"podfwd0\"\n\
             [cluster]\nsource = \"etcd\"\netcd_endpoints = [\"http://{ETCD_IP}:2379\"]\n\
             subnet_file = \"{env}\"\n",
            ip = node.ip,
            core = cores[i],
            vtep = node.vtep_mac,
            sock = f.path("sock").display(),
            nsname = node.ns.name(),
            env = f.path("env").display(),
        );
        std::fs::write(f.path("toml"), toml).unwrap();
    }
    // Started back to back (the registry-level test starts 2 at one instant, 20 times).
    for (i, node) in [&a, &b].into_iter().enumerate() {
        let f = &files[i];
        node.ns
            .spawn_logged(
                &[
                    exe().to_str().unwrap(),
                    "run",
                    "--config",
                    f.path("toml").to_str().unwrap(),
                ],
                &f.path("log"),
            )
            .expect("podfwd run");
    }
    let logs = || {
        format!(
            "--- node A ---\n{}\n--- node B ---\n{}",
            files[0].log(),
            files[1].log()
        )
    };
    let mut leased = Vec::new();
    for f in &files {
        let up = wait_until(Duration::from_secs(30), || {
            query_routes(&f.path("sock")).is_ok()
        });
        assert!(up, "podfwd {} did not come up\n{}", f.name, logs());
        let env = std::fs::read_to_string(f.path("env")).expect("subnet.env written");
        leased.push(read_subnet_env(&env).unwrap_or_else(|| panic!("subnet.env: {env}")));
    }
    assert_ne!(
        leased[0].0,
        leased[1].0,
        "A and B took one subnet\n{}",
        logs()
    );
    let expected_mtu = if vxlan { 1450 } else { 1500 };
    for (node, (subnet, mtu)) in [&mut a, &mut b].into_iter().zip(&leased) {
        assert_eq!(*mtu, expected_mtu, "FLANNEL_MTU");
        node.address_pod(subnet, *mtu);
    }

    // C: a kernel node. Its lease is taken in the switch namespace (where the registry
    // client reaches etcd on 127.0.0.2); its kernel is programmed from the lease set.
    let settings = etcd.settings("c.env");
    let attrs = LeaseAttrs {
        public_ip: c.ip.parse().unwrap(),
        backend: if vxlan {
            LeaseBackend::Vxlan {
                vni: network.vni(),
                vtep_mac: MacAddr([0x0e, 0, 0, 0, 0, 0x0c]),
            }
        } else {
            LeaseBackend::HostGw
        },
    };
    let net2 = network.clone();
    let (registry_c, own_c) = in_netns(&switch, move || {
        let r = Registry::connect_with(&settings, fast_timing()).expect("registry for C");
        let own = r.acquire_lease(&attrs, &net2).expect("C's lease");
        (r, own)
    });
    let peers_of_c = snapshot(&registry_c.watch());
    assert_eq!(peers_of_c.len(), 2, "C sees A and B: {peers_of_c:?}");
    let c_toml = format!(
        "[node]\nip = \"{}/24\"\nuplink = \"ul\"\npod_interfaces = [\"vpod\"]\n\
         [vxlan]\nvtep_mac = \"{}\"\n\
         [cluster]\nsource = \"etcd\"\netcd_endpoints = [\"http://{ETCD_IP}:2379\"]\n",
        c.ip, c.vtep_mac
    );
    configure_kernel_node(&c.ns, &c_toml, &network, &own_c, &peers_of_c);
    c.address_pod(&own_c.subnet.to_string(), expected_mtu);

    // A and B follow C's lease within a second of it being written.
    for f in &files {
        let routed = wait_until(Duration::from_secs(1), || {
            query_routes(&f.path("sock")).is_ok_and(|r| {
                r.routes
                    .iter()
                    .any(|r| r.prefix.to_string() == c.subnet && r.source == "etcd")
            })
        });
        assert!(
            routed,
            "{} has no route to C's {}\n{}",
            f.name,
            c.subnet,
            logs()
        );
    }

    // Every pod reaches every other pod, by ping and by TCP.
    let nodes = [&a, &b, &c];
    for from in nodes {
        for to in nodes {
            if from.ip != to.ip {
                ping_ok(from, to, &logs);
            }
        }
    }
    for (from, to) in [(&a, &b), (&b, &a), (&a, &c), (&c, &a), (&b, &c), (&c, &b)] {
        let t = TcpTransfer {
            client: &from.pod,
            server: &to.pod,
            listen: (&to.pod_ip, 5201),
            connect: (&to.pod_ip, 5201),
            bytes: 2 << 20,
        };
        if let Err(e) = t.run() {
            panic!(
                "TCP pod {} -> pod {}: {e}\n{}",
                from.pod_ip,
                to.pod_ip,
                logs()
            );
        }
    }
    // The transfers went through podfwd's workers on A and B, not only the kernel: each
    // podfwd node sent 4 MiB to the other two (about 2,900 MSS-sized frames), and the
    // AF_XDP ones decapsulated 4 MiB more (TUN nodes leave that to the kernel's VTEP).
    let least = if backend == Backend::Tun { 2000 } else { 4000 };
    for f in &files {
        let n = carried(&f.path("sock"));
        assert!(
            n >= least,
            "podfwd {} carried only {n} frames\n{}",
            f.name,
            logs()
        );
    }

    // etcd stops for 10 s while pod A pings pod C at 50 per second through podfwd.
    let ping_log = dir.join("outage-ping.log");
    let ping = a
        .pod
        .spawn_logged(
            &["ping", "-c", "750", "-i", "0.02", "-W", "1", &c.pod_ip],
            &ping_log,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    etcd.stop();
    drop(registry_c);
    let seen_down = wait_until(Duration::from_secs(9), || {
        route_source_connected(&a.ns) == Some(0.0)
    });
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
    // Restarted, but the podfwd nodes are still cut off when a new lease is written.
    etcd.block_address(ETCD_IP, true);
    etcd.run();
    let new_subnet = "10.244.200.0/24";
    let value = if vxlan {
        lease_json("10.168.0.9", "0e:00:00:00:00:09")
    } else {
        host_gw_lease_json("10.168.0.9")
    };
    etcd.put(&format!("{PREFIX}/subnets/10.244.200.0-24"), &value);
    std::thread::sleep(Duration::from_secs(1));
    for f in &files {
        let r = query_routes(&f.path("sock")).expect("routes while cut off");
        assert!(
            r.routes.iter().all(|r| r.prefix.to_string() != new_subnet),
            "{} routed a lease it cannot have seen",
            f.name
        );
    }
    etcd.block_address(ETCD_IP, false);
    let reconnected = Instant::now();
    // The watcher's backoff is at most 5 s (flanneld's).
    for f in &files {
        let routed = wait_until(Duration::from_secs(8), || {
            query_routes(&f.path("sock"))
                .is_ok_and(|r| r.routes.iter().any(|r| r.prefix.to_string() == new_subnet))
        });
        assert!(
            routed,
            "{} did not pick up the lease added while it was cut off\n{}",
            f.name,
            logs()
        );
    }
    let picked_up = reconnected.elapsed();
    // ping prints its summary when it ends (the child stays a zombie until the
    // namespace's drop reaps it).
    let ended = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&ping_log).is_ok_and(|t| t.contains("packets transmitted"))
    });
    a.pod.kill(ping);
    let text = std::fs::read_to_string(&ping_log).unwrap_or_default();
    assert!(ended, "the outage ping did not end: {text}");
    assert!(
        text.contains("750 packets transmitted, 750 received"),
        "forwarding stopped while etcd was away: {text}\n{}",
        logs()
    );
    assert!(
        seen_down,
        "node A's metrics never showed etcd disconnected\n{}",
        logs()
    );
    assert!(
        wait_until(Duration::from_secs(3), || route_source_connected(&a.ns)
            == Some(1.0)),
        "node A's metrics do not show etcd connected again"
    );
    eprintln!(
        "etcd cluster ({tag}): outage 10 s, 750/750 pings answered; lease picked up {} ms \
         after the cut-off ended",
        picked_up.as_millis()
    );
    // Both podfwd instances are still running.
    for f in &files {
        assert!(
            query_stats(&f.path("sock")).is_ok(),
            "{} died\n{}",
            f.name,
            logs()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const VXLAN: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;
const HOST_GW: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#;

#[test]
fn afxdp_nodes_and_a_kernel_node_share_a_vxlan_registry_and_survive_an_etcd_outage() {
    skip_unless_root!();
    three_node_cluster("e3x", Backend::AfXdp, VXLAN);
}

#[test]
fn afxdp_nodes_and_a_kernel_node_share_a_host_gw_registry_and_survive_an_etcd_outage() {
    skip_unless_root!();
    three_node_cluster("e3h", Backend::AfXdp, HOST_GW);
}

#[test]
fn tun_nodes_and_a_kernel_node_share_a_vxlan_registry_and_survive_an_etcd_outage() {
    skip_unless_root!();
    three_node_cluster("e3t", Backend::Tun, VXLAN);
}
