//! `podfwd::cluster` against a real etcd (Debian's etcd-server, `/usr/bin/etcd`) running
//! inside a namespace the test created, on that namespace's loopback, with its data in a
//! temporary directory removed when the test ends (also when it fails).
//!
//! The registries ("nodes") run in threads that entered the etcd namespace: a node is a
//! PublicIP and a VTEP MAC in its lease, the registry does not care where it runs. The
//! kernel test adds two real node namespaces programmed from the registry exactly as
//! flanneld would ([`configure_kernel_node`]), which ping each other's pod addresses.
//!
//! Clients reach etcd on 127.0.0.2 while `etcdctl` (the "operator") uses 127.0.0.1, so
//! a test can cut the registry off (`iptables ... REJECT`) while etcd keeps serving.

use podfwd::cluster::{
    self, Lease, LeaseAttrs, LeaseBackend, NetworkConfig, OwnLease, Registry, RegistryEvent, Timing,
};
use podfwd::config::{EtcdNode, EtcdSettings};
use podfwd::kernel::{self, KernelSpec};
use podfwd::plan::Plan;
use podfwd::wire::MacAddr;

use crate::harness::{skip_unless_root, veth_pair, wait_until, Netns};
use crate::neigh::in_netns;

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

pub(crate) const PREFIX: &str = "/coreos.com/network";
pub(crate) const CLIENT_PORT: u16 = 2379;
const VXLAN_NETWORK: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;

/// One etcd member in `ns`. Drop kills it and removes its data directory.
pub(crate) struct Etcd<'a> {
    ns: &'a Netns,
    dir: PathBuf,
    pid: Option<u32>,
    /// Serve https with client certificates (files in `dir`, see [`make_certs`]).
    tls: bool,
    /// Also serve clients on this address of `ns` (a node's underlay address).
    listen_also: Option<String>,
}

impl<'a> Etcd<'a> {
    pub(crate) fn start(ns: &'a Netns) -> Etcd<'a> {
        Etcd::start_with(ns, false)
    }

    fn start_with(ns: &'a Netns, tls: bool) -> Etcd<'a> {
        for bin in ["/usr/bin/etcd", "/usr/bin/etcdctl"] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: install Debian's etcd-server and etcd-client (tools/setup.sh)"
            );
        }
        let dir = std::env::temp_dir().join(format!("podfwd-etcd-{}", ns.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("etcd temp dir");
        let mut etcd = Etcd {
            ns,
            dir,
            pid: None,
            tls,
            listen_also: None,
        };
        if tls {
            make_certs(&etcd.dir);
        }
        etcd.run();
        etcd
    }

    /// A plain member in `ns` that also serves clients on `ip:2379` (reachable from the
    /// other nodes of a lab cluster over the underlay).
    pub(crate) fn start_listening_also(ns: &'a Netns, ip: &str) -> Etcd<'a> {
        let mut etcd = Etcd::start(ns);
        etcd.stop();
        etcd.listen_also = Some(ip.to_string());
        etcd.run();
        etcd
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// Starts the member (again, on the same data) and waits until it answers.
    pub(crate) fn run(&mut self) {
        assert!(self.pid.is_none());
        let data = self.dir.join("data");
        let sch = self.scheme();
        let mut clients =
            format!("{sch}://127.0.0.1:{CLIENT_PORT},{sch}://127.0.0.2:{CLIENT_PORT}");
        if let Some(ip) = &self.listen_also {
            clients += &format!(",{sch}://{ip}:{CLIENT_PORT}");
        }
        let advertise = format!("{sch}://127.0.0.1:{CLIENT_PORT}");
        let (cert, key, ca) = (
            self.file("server.pem"),
            self.file("server.key"),
            self.file("ca.pem"),
        );
        let mut args = vec![
            "/usr/bin/etcd",
            "--name",
            "podfwd-test",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-client-urls",
            &clients,
            "--advertise-client-urls",
            &advertise,
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "podfwd-test=http://127.0.0.1:2380",
            "--initial-cluster-state",
            "new",
        ];
        if self.tls {
            args.extend_from_slice(&[
                "--cert-file",
                &cert,
                "--key-file",
                &key,
                "--trusted-ca-file",
                &ca,
                "--client-cert-auth",
            ]);
        }
        let pid = self
            .ns
            .spawn_logged(&args, &self.dir.join("etcd.log"))
            .expect("start etcd");
        self.pid = Some(pid);
        let healthy = wait_until(Duration::from_secs(15), || {
            self.ctl_unchecked(&["endpoint", "health"]).status.success()
        });
        assert!(
            healthy,
            "etcd did not become healthy; log:\n{}",
            std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
        );
    }

    pub(crate) fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            self.ns.kill(pid);
        }
    }

    /// What a registry is configured with: etcd on 127.0.0.2.
    pub(crate) fn settings(&self, subnet_file: &str) -> EtcdSettings {
        let tls = |name: &str| self.tls.then(|| self.dir.join(name));
        EtcdSettings {
            endpoints: vec![format!("{}://127.0.0.2:{CLIENT_PORT}", self.scheme())],
            prefix: PREFIX.into(),
            subnet_file: self.dir.join(subnet_file),
            ca_file: tls("ca.pem"),
            cert_file: tls("client.pem"),
            key_file: tls("client.key"),
        }
    }

    fn ctl_unchecked(&self, args: &[&str]) -> std::process::Output {
        let endpoint = format!("--endpoints={}://127.0.0.1:{CLIENT_PORT}", self.scheme());
        let mut full = vec![
            "env",
            "ETCDCTL_API=3",
            "etcdctl",
            &endpoint,
            "--dial-timeout=1s",
        ];
        let tls = [
            format!("--cacert={}", self.file("ca.pem")),
            format!("--cert={}", self.file("client.pem")),
            format!("--key={}", self.file("client.key")),
        ];
        if self.tls {
            full.extend(tls.iter().map(String::as_str));
        }
        full.extend_from_slice(args);
        self.ns.exec_unchecked(&full).expect("run etcdctl")
    }

    pub(crate) fn ctl(&self, args: &[&str]) -> String {
        let out = self.ctl_unchecked(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn put(&self, key: &str, value: &str) {
        self.ctl(&["put", key, value]);
    }

    fn subnet_value(&self, subnet: &str) -> String {
        self.ctl(&[
            "get",
            "--print-value-only",
            &format!("{PREFIX}/subnets/{subnet}"),
        ])
        .trim_end()
        .to_string()
    }

    fn revision(&self) -> i64 {
        let out = self.ctl(&["get", "--write-out=json", "/"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
        v["header"]["revision"].as_i64().expect("revision")
    }

    /// Cuts (or restores) the registries' path to etcd; etcdctl keeps working.
    fn block_clients(&self, blocked: bool) {
        self.block_address("127.0.0.2", blocked);
    }

    /// Cuts (or restores) the clients' path to etcd on `ip` of its namespace (resets
    /// every TCP segment to port 2379 there); etcdctl on 127.0.0.1 keeps working.
    pub(crate) fn block_address(&self, ip: &str, blocked: bool) {
        let op = if blocked { "-I" } else { "-D" };
        self.ns
            .exec(&[
                "iptables",
                op,
                "INPUT",
                "-d",
                ip,
                "-p",
                "tcp",
                "--dport",
                "2379",
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ])
            .expect("iptables");
    }
}

impl Drop for Etcd<'_> {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA, a server certificate for 127.0.0.1 and 127.0.0.2 and a client certificate
/// (ECDSA P-256, openssl), written to `dir`.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&[
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=podfwd-test-ca",
    ]);
    run(&ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,IP:127.0.0.2\nextendedKeyUsage=serverAuth,clientAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("{ext}basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"),
        )
        .unwrap();
        let (key, csr, pem, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let mut req = vec!["req"];
        req.extend_from_slice(&ec);
        req.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", "/CN=podfwd-test"]);
        run(&req);
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &extfile,
        ]);
    }
}

pub(crate) fn fast_timing() -> Timing {
    Timing {
        op_timeout: Duration::from_secs(3),
        ..Timing::default()
    }
}

fn vxlan_attrs(ip: [u8; 4], mac_last: u8) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: Ipv4Addr::from(ip),
        backend: LeaseBackend::Vxlan {
            vni: 1,
            vtep_mac: MacAddr([0x0e, 0, 0, 0, 0, mac_last]),
        },
    }
}

pub(crate) fn lease_json(ip: &str, mac: &str) -> String {
    format!(
        r#"{{"PublicIP":"{ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{mac}"}}}}"#
    )
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// The next event within `within`, skipping connection events unless asked for.
#[track_caller]
fn next_event(rx: &Receiver<RegistryEvent>, within: Duration) -> RegistryEvent {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(RegistryEvent::Connection { .. }) => continue,
            Ok(e) => return e,
            Err(e) => panic!("no registry event within {within:?}: {e}"),
        }
    }
}

/// Waits for the first snapshot (after the first `Connection { up: true }`).
#[track_caller]
pub(crate) fn snapshot(rx: &Receiver<RegistryEvent>) -> Vec<Lease> {
    match next_event(rx, Duration::from_secs(5)) {
        RegistryEvent::Snapshot(l) => l,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

fn etcd_ns(tag: &str) -> Netns {
    let ns = Netns::new(tag).expect("etcd namespace");
    ns.disable_ipv6().expect("disable IPv6");
    ns
}

#[test]
fn two_nodes_get_distinct_leases_and_a_restart_reuses_its_subnet() {
    skip_unless_root!();
    let ns = etcd_ns("cla");
    let etcd = Etcd::start(&ns);
    etcd.put(&format!("{PREFIX}/config"), VXLAN_NETWORK);
    let sa = etcd.settings("a/subnet.env");
    let sb = etcd.settings("b/subnet.env");
    let (a, b, a_again, reg_state, env) = in_netns(&ns, move || {
        let ra = Registry::connect_with(&sa, fast_timing()).expect("connect a");
        let network = ra.network_config().expect("network config");
        let a = ra
            .acquire_lease(&vxlan_attrs([10, 168, 0, 2], 0x0a), &network)
            .expect("lease a");
        ra.write_subnet_file(&network, 1450, false)
            .expect("subnet.env");
        let rb = Registry::connect_with(&sb, fast_timing()).expect("connect b");
        let b = rb
            .acquire_lease(&vxlan_attrs([10, 168, 0, 3], 0x0b), &network)
            .expect("lease b");
        let state = ra.state();
        drop(ra);
        // Node A restarts (its own subnet.env removed, so only the PublicIP can match).
        let env = std::fs::read_to_string(&sa.subnet_file).unwrap();
        std::fs::remove_file(&sa.subnet_file).unwrap();
        let ra = Registry::connect_with(&sa, fast_timing()).expect("reconnect a");
        let a_again = ra
            .acquire_lease(&vxlan_attrs([10, 168, 0, 2], 0x0c), &network)
            .expect("lease a again");
        (a, b, a_again, state, env)
    });
    let network = NetworkConfig::parse(VXLAN_NETWORK.as_bytes()).unwrap();
    assert_ne!(a.subnet, b.subnet, "two nodes got one subnet");
    for own in [&a, &b] {
        assert!(
            network.is_compatible(own.subnet),
            "{} outside the network",
            own.subnet
        );
        assert!(!own.reused);
        let left = own
            .expires
            .unwrap()
            .duration_since(std::time::SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(23 * 3600), "TTL {left:?}");
    }
    assert_eq!(reg_state.own_subnet, Some(a.subnet));
    // The values are flanneld's, byte for byte.
    assert_eq!(
        etcd.subnet_value(&cluster::subnet_key(b.subnet)),
        lease_json("10.168.0.3", "0e:00:00:00:00:0b")
    );
    // The restart kept the subnet and published the new VTEP MAC.
    assert_eq!(a_again.subnet, a.subnet);
    assert!(a_again.reused);
    assert_eq!(
        etcd.subnet_value(&cluster::subnet_key(a.subnet)),
        lease_json("10.168.0.2", "0e:00:00:00:00:0c")
    );
    let ttl_json = etcd.ctl(&[
        "get",
        "--write-out=json",
        &format!("{PREFIX}/subnets/{}", cluster::subnet_key(a.subnet)),
    ]);
    let v: serde_json::Value = serde_json::from_str(&ttl_json).unwrap();
    let lease_id = v["kvs"][0]["lease"]
        .as_i64()
        .expect("key attached to an etcd lease");
    let ttl = etcd.ctl(&["lease", "timetolive", &format!("{lease_id:x}")]);
    assert!(ttl.contains("granted with TTL(86400s)"), "{ttl}");
    // subnet.env as flanneld writes it.
    let first = Ipv4Addr::from(u32::from(a.subnet.network()) + 1);
    assert_eq!(
        env,
        format!("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET={first}/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
    );
}

#[test]
fn a_node_asks_for_its_previous_subnet_from_subnet_env() {
    skip_unless_root!();
    let ns = etcd_ns("clp");
    let etcd = Etcd::start(&ns);
    etcd.put(&format!("{PREFIX}/config"), VXLAN_NETWORK);
    let s = etcd.settings("p/subnet.env");
    std::fs::create_dir_all(s.subnet_file.parent().unwrap()).unwrap();
    std::fs::write(&s.subnet_file, "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.77.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n").unwrap();
    let own = in_netns(&ns, move || {
        let r = Registry::connect_with(&s, fast_timing()).unwrap();
        let network = r.network_config().unwrap();
        r.acquire_lease(&vxlan_attrs([10, 168, 0, 9], 9), &network)
            .unwrap()
    });
    assert_eq!(own.subnet, net("10.244.77.0/24"));
}

#[test]
fn simultaneous_starts_never_share_a_subnet() {
    skip_unless_root!();
    const ROUNDS: usize = 20;
    let ns = etcd_ns("clr");
    let etcd = Etcd::start(&ns);
    // Three subnets (10.244.1-3.0/24): two nodes picking at random collide one time in
    // three, so the transaction, not luck, keeps them apart.
    etcd.put(
        &format!("{PREFIX}/config"),
        r#"{"Network":"10.244.0.0/22","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#,
    );
    let mut results = Vec::new();
    let mut lost = 0;
    for round in 0..ROUNDS {
        etcd.ctl(&["del", "--prefix", &format!("{PREFIX}/subnets/")]);
        let settings = [
            etcd.settings(&format!("r{round}a.env")),
            etcd.settings(&format!("r{round}b.env")),
        ];
        let pair = in_netns(&ns, move || {
            let barrier = Arc::new(Barrier::new(2));
            let handles: Vec<_> = settings
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        let r = Registry::connect_with(&s, fast_timing()).unwrap();
                        let network = r.network_config().unwrap();
                        barrier.wait();
                        let own = r
                            .acquire_lease(
                                &vxlan_attrs([10, 168, 1, 2 + i as u8], i as u8 + 1),
                                &network,
                            )
                            .unwrap();
                        (own.subnet, own.lost_races)
                    })
                })
                .collect();
            let v: Vec<(Ipv4Net, usize)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            (v[0].0, v[1].0, v[0].1 + v[1].1)
        });
        lost += pair.2;
        let pair = (pair.0, pair.1);
        assert_ne!(pair.0, pair.1, "round {round}: both nodes got {}", pair.0);
        results.push(pair);
    }
    // Exactly two keys in etcd after the last round, one per node.
    let keys = etcd.ctl(&[
        "get",
        "--prefix",
        "--keys-only",
        &format!("{PREFIX}/subnets/"),
    ]);
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 2, "{keys}");
    println!("cluster race: {ROUNDS} rounds, distinct every time, {lost} create transactions lost to the other node and retried: {results:?}");
}

#[test]
fn watch_sees_puts_changes_deletions_within_a_second_and_skips_bad_values() {
    skip_unless_root!();
    let ns = etcd_ns("clw");
    let etcd = Etcd::start(&ns);
    etcd.put(&format!("{PREFIX}/config"), VXLAN_NETWORK);
    etcd.put(
        &format!("{PREFIX}/subnets/10.244.5.0-24"),
        &lease_json("10.168.0.5", "0e:00:00:00:00:05"),
    );
    etcd.put(&format!("{PREFIX}/subnets/10.244.6.0-24"), "{broken");
    let s = etcd.settings("w.env");
    let wakeups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = wakeups.clone();
    let (registry, rx, own) = in_netns(&ns, move || {
        let r = Registry::connect_with(&s, fast_timing()).unwrap();
        let network = r.network_config().unwrap();
        let own = r
            .acquire_lease(&vxlan_attrs([10, 168, 0, 2], 2), &network)
            .unwrap();
        let rx = r.watch_notify(move || {
            w.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        (r, rx, own)
    });
    let snap = snapshot(&rx);
    assert_eq!(
        snap.len(),
        1,
        "own lease and the broken value are not peers: {snap:?}"
    );
    assert_eq!(snap[0].subnet, net("10.244.5.0/24"));
    assert!(registry.state().connected);

    let timed = |what: &str, f: &dyn Fn(), want: &dyn Fn(&RegistryEvent) -> bool| {
        let t = Instant::now();
        f();
        let e = next_event(&rx, Duration::from_secs(1));
        assert!(want(&e), "{what}: unexpected {e:?}");
        println!("cluster watch: {what} seen after {:?}", t.elapsed());
    };
    timed(
        "added",
        &|| {
            etcd.put(
                &format!("{PREFIX}/subnets/10.244.7.0-24"),
                &lease_json("10.168.0.7", "0e:00:00:00:00:07"),
            )
        },
        &|e| matches!(e, RegistryEvent::Added(l) if l.subnet == net("10.244.7.0/24") && l.attrs.public_ip == Ipv4Addr::new(10, 168, 0, 7)),
    );
    timed(
        "changed VtepMAC",
        &|| {
            etcd.put(
                &format!("{PREFIX}/subnets/10.244.7.0-24"),
                &lease_json("10.168.0.7", "0e:00:00:00:00:77"),
            )
        },
        &|e| matches!(e, RegistryEvent::Changed(l) if l.attrs.backend == LeaseBackend::Vxlan { vni: 1, vtep_mac: MacAddr([0x0e, 0, 0, 0, 0, 0x77]) }),
    );
    // A malformed value is skipped; the next valid one still arrives.
    etcd.put(
        &format!("{PREFIX}/subnets/10.244.8.0-24"),
        r#"{"PublicIP":"10.168.0.8","BackendType":"vxlan"}"#,
    );
    timed(
        "added after a malformed value",
        &|| {
            etcd.put(
                &format!("{PREFIX}/subnets/10.244.9.0-24"),
                &lease_json("10.168.0.9", "0e:00:00:00:00:09"),
            )
        },
        &|e| matches!(e, RegistryEvent::Added(l) if l.subnet == net("10.244.9.0/24")),
    );
    timed(
        "removed",
        &|| {
            etcd.ctl(&["del", &format!("{PREFIX}/subnets/10.244.5.0-24")]);
        },
        &|e| *e == RegistryEvent::Removed(net("10.244.5.0/24")),
    );
    // Re-putting identical attributes (a renewal) is not an event; deleting our own
    // lease is reported as such.
    etcd.put(
        &format!("{PREFIX}/subnets/10.244.9.0-24"),
        &lease_json("10.168.0.9", "0e:00:00:00:00:09"),
    );
    timed(
        "own lease removed",
        &|| {
            etcd.ctl(&[
                "del",
                &format!("{PREFIX}/subnets/{}", cluster::subnet_key(own.subnet)),
            ]);
        },
        &|e| *e == RegistryEvent::OwnLeaseRemoved(own.subnet),
    );
    assert!(registry.state().last_revision >= etcd.revision());
    // One wake-up per queued event: up, snapshot, 3 added/changed, removed, own removed.
    assert_eq!(wakeups.load(std::sync::atomic::Ordering::Relaxed), 7);
}

#[test]
fn watch_reports_an_etcd_restart_and_catches_up() {
    skip_unless_root!();
    let ns = etcd_ns("cls");
    let mut etcd = Etcd::start(&ns);
    etcd.put(&format!("{PREFIX}/config"), VXLAN_NETWORK);
    let s = etcd.settings("s.env");
    let (registry, rx) = in_netns(&ns, move || {
        let r = Registry::connect_with(&s, fast_timing()).unwrap();
        let rx = r.watch();
        (r, rx)
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        RegistryEvent::Connection { up: true }
    );
    assert!(snapshot(&rx).is_empty());

    etcd.stop();
    let t = Instant::now();
    let down = rx.recv_timeout(Duration::from_secs(8)).expect("down event");
    assert_eq!(down, RegistryEvent::Connection { up: false });
    println!("cluster restart: down reported after {:?}", t.elapsed());
    assert!(!registry.state().connected);
    std::thread::sleep(Duration::from_secs(10).saturating_sub(t.elapsed()));

    etcd.run();
    // Written as soon as etcd is back, before the watcher's next retry (it backs off up
    // to 5 s): it must come from the resumed watch.
    etcd.put(
        &format!("{PREFIX}/subnets/10.244.3.0-24"),
        &lease_json("10.168.0.3", "0e:00:00:00:00:03"),
    );
    let mut saw_up = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(RegistryEvent::Connection { up: true }) => saw_up = true,
            Ok(RegistryEvent::Added(l)) => {
                assert!(saw_up, "event before the watcher said it is up");
                assert_eq!(l.subnet, net("10.244.3.0/24"));
                break;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("lease written after the restart did not arrive: {e}"),
        }
    }
    let st = registry.state();
    assert!(
        st.connected && st.disconnects >= 1 && st.snapshots == 1,
        "{st:?}"
    );
}

#[test]
fn lease_added_while_cut_off_arrives_and_compaction_leads_to_a_snapshot() {
    skip_unless_root!();
    let ns = etcd_ns("clc");
    let etcd = Etcd::start(&ns);
    etcd.put(&format!("{PREFIX}/config"), VXLAN_NETWORK);
    etcd.put(
        &format!("{PREFIX}/subnets/10.244.1.0-24"),
        &lease_json("10.168.0.11", "0e:00:00:00:00:11"),
    );
    let s = etcd.settings("c.env");
    let (registry, rx) = in_netns(&ns, move || {
        let r = Registry::connect_with(&s, fast_timing()).unwrap();
        let rx = r.watch();
        (r, rx)
    });
    assert_eq!(snapshot(&rx).len(), 1);

    // 1. Cut off; a lease added meanwhile arrives from the resumed watch.
    etcd.block_clients(true);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(8)).unwrap(),
        RegistryEvent::Connection { up: false }
    );
    etcd.put(
        &format!("{PREFIX}/subnets/10.244.2.0-24"),
        &lease_json("10.168.0.12", "0e:00:00:00:00:12"),
    );
    etcd.block_clients(false);
    match next_event(&rx, Duration::from_secs(10)) {
        RegistryEvent::Added(l) => assert_eq!(l.subnet, net("10.244.2.0/24")),
        other => panic!("expected the lease added while cut off, got {other:?}"),
    }
    assert_eq!(registry.state().snapshots, 1, "resumed, not re-listed");

    // 2. Cut off again; changes, then a compaction past the watcher's revision.
    etcd.block_clients(true);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(8)).unwrap(),
        RegistryEvent::Connection { up: false }
    );
    etcd.ctl(&["del", &format!("{PREFIX}/subnets/10.244.1.0-24")]);
    etcd.put(
        &format!("{PREFIX}/subnets/10.244.4.0-24"),
        &lease_json("10.168.0.14", "0e:00:00:00:00:14"),
    );
    let rev = etcd.revision();
    etcd.ctl(&["compact", &rev.to_string()]);
    etcd.block_clients(false);
    match next_event(&rx, Duration::from_secs(10)) {
        RegistryEvent::Snapshot(mut leases) => {
            leases.sort_by_key(|l| l.subnet);
            let subnets: Vec<Ipv4Net> = leases.iter().map(|l| l.subnet).collect();
            assert_eq!(subnets, vec![net("10.244.2.0/24"), net("10.244.4.0/24")]);
        }
        other => panic!("expected a re-list snapshot after compaction, got {other:?}"),
    }
    let st = registry.state();
    assert!(
        st.snapshots == 2 && st.connected && st.last_revision >= rev,
        "{st:?}"
    );
}

#[test]
fn own_lease_is_renewed_before_it_expires() {
    skip_unless_root!();
    let ns = etcd_ns("cln");
    let etcd = Etcd::start(&ns);
    etcd.put(&format!("{PREFIX}/config"), VXLAN_NETWORK);
    let s = etcd.settings("n.env");
    let timing = Timing {
        lease_ttl: Duration::from_secs(4),
        renew_margin: Duration::from_secs(2),
        ..fast_timing()
    };
    let (registry, own) = in_netns(&ns, move || {
        let r = Registry::connect_with(&s, timing).unwrap();
        let network = r.network_config().unwrap();
        let own = r
            .acquire_lease(&vxlan_attrs([10, 168, 0, 2], 2), &network)
            .unwrap();
        (r, own)
    });
    // Three TTLs later the key still exists, re-attached to newer etcd leases.
    std::thread::sleep(Duration::from_secs(12));
    let key = cluster::subnet_key(own.subnet);
    assert_eq!(
        etcd.subnet_value(&key),
        lease_json("10.168.0.2", "0e:00:00:00:00:02")
    );
    let st = registry.state();
    assert!(st.renewals >= 3 && st.renew_failures == 0, "{st:?}");
    assert_ne!(registry.own_lease().unwrap().etcd_lease, own.etcd_lease);
    // Without renewal (the registry dropped) etcd expires it.
    drop(registry);
    assert!(wait_until(Duration::from_secs(8), || etcd
        .subnet_value(&key)
        .is_empty()));
}

// ---------------------------------------------------------------------------------------
// Kernel nodes programmed from the registry
// ---------------------------------------------------------------------------------------

/// Programs `node`'s kernel from the registry exactly as flanneld would: for vxlan the
/// device `flannel.<VNI>` (nolearning, the network's port, the node's VTEP MAC, the pod
/// network's .0/32), one neighbour, FDB entry and onlink route per peer; for host-gw one
/// route per peer via its PublicIP. `node_toml` is the node's podfwd file without the
/// registry's keys; `peers` is the current lease set (a watch snapshot).
pub(crate) fn configure_kernel_node(
    node: &Netns,
    node_toml: &str,
    network: &NetworkConfig,
    own: &OwnLease,
    peers: &[Lease],
) -> KernelSpec {
    let etcd_node = EtcdNode::from_toml_str(node_toml).expect("node config");
    let mut config = cluster::node_config(&etcd_node, network, own, peers)
        .expect("config completed from the registry");
    // flanneld's device name; podfwd's own default is podfwd.<VNI>.
    config.vxlan.device = format!("flannel.{}", network.vni());
    let plan = Plan::resolve(&config, None).expect("plan");
    let spec = KernelSpec::from_plan(&plan);
    let s = spec.clone();
    in_netns(node, move || kernel::apply(&s)).expect("apply the kernel spec");
    spec
}

fn kernel_nodes_ping_each_other(tag: &str, network_json: &str) {
    let etcd_ns = etcd_ns(tag);
    let etcd = Etcd::start(&etcd_ns);
    etcd.put(&format!("{PREFIX}/config"), network_json);
    let network = NetworkConfig::parse(network_json.as_bytes()).unwrap();

    let a = Netns::new(tag).expect("node a");
    let b = Netns::new(tag).expect("node b");
    for n in [&a, &b] {
        n.disable_ipv6().unwrap();
    }
    veth_pair(&a, "ul", &b, "ul").expect("underlay");
    let nodes = [(&a, "10.168.0.2", 0x0au8), (&b, "10.168.0.3", 0x0b)];
    let mut owns = Vec::new();
    for (i, (n, ip, mac)) in nodes.iter().enumerate() {
        n.add_addr("ul", &format!("{ip}/24")).unwrap();
        n.link_up("ul").unwrap();
        let s = etcd.settings(&format!("k{i}.env"));
        let attrs = LeaseAttrs {
            public_ip: ip.parse().unwrap(),
            backend: match network.backend {
                cluster::BackendConfig::Vxlan(_) => LeaseBackend::Vxlan {
                    vni: network.vni(),
                    vtep_mac: MacAddr([0x0e, 0, 0, 0, 0, *mac]),
                },
                cluster::BackendConfig::HostGw => LeaseBackend::HostGw,
            },
        };
        let net2 = network.clone();
        // The registry lives in the etcd namespace; only its answers reach the node.
        let (registry, own) = in_netns(&etcd_ns, move || {
            let r = Registry::connect_with(&s, fast_timing()).unwrap();
            let own = r.acquire_lease(&attrs, &net2).unwrap();
            (r, own)
        });
        owns.push((registry, own));
    }
    for (i, (n, ip, mac)) in nodes.iter().enumerate() {
        let (registry, own) = &owns[i];
        let rx = registry.watch();
        let peers = snapshot(&rx);
        assert_eq!(peers.len(), 1, "node {ip} sees the other node: {peers:?}");
        let toml = format!(
            "[node]\nip = \"{ip}/24\"\nuplink = \"ul\"\npod_interfaces = [\"cni0\"]\n\
             [vxlan]\nvtep_mac = \"0e:00:00:00:00:{mac:02x}\"\n\
             [cluster]\nsource = \"etcd\"\netcd_endpoints = [\"http://127.0.0.2:2379\"]\n"
        );
        configure_kernel_node(n, &toml, &network, own, &peers);
        // The pod side: flannel's CNI bridge holds the subnet's .1.
        n.ip(&["link", "add", "cni0", "type", "bridge"]).unwrap();
        let first = Ipv4Addr::from(u32::from(own.subnet.network()) + 1);
        n.add_addr("cni0", &format!("{first}/{}", own.subnet.prefix_len()))
            .unwrap();
        n.link_up("cni0").unwrap();
    }
    let pod = |i: usize| Ipv4Addr::from(u32::from(owns[i].1.subnet.network()) + 1).to_string();
    for (from, to) in [(0, 1), (1, 0)] {
        let out = nodes[from]
            .0
            .exec_unchecked(&[
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "2",
                "-I",
                &pod(from),
                &pod(to),
            ])
            .unwrap();
        assert!(
            out.status.success(),
            "ping {} -> {} failed:\n{}\nroutes:\n{}",
            pod(from),
            pod(to),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&nodes[from].0.ip(&["route"]).unwrap().stdout)
        );
    }
    if let cluster::BackendConfig::Vxlan(_) = network.backend {
        let link = a.ip(&["-d", "link", "show", "flannel.1"]).unwrap();
        let link = String::from_utf8_lossy(&link.stdout);
        assert!(
            link.contains("vxlan id 1")
                && link.contains("dstport 8472")
                && link.contains("nolearning"),
            "{link}"
        );
    }
}

#[test]
fn kernel_vxlan_nodes_configured_from_the_registry_ping_each_other() {
    skip_unless_root!();
    kernel_nodes_ping_each_other("clk", VXLAN_NETWORK);
}

#[test]
fn kernel_host_gw_nodes_configured_from_the_registry_ping_each_other() {
    skip_unless_root!();
    kernel_nodes_ping_each_other(
        "clh",
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#,
    );
}

#[test]
fn registry_speaks_tls_with_client_certificates() {
    skip_unless_root!();
    let ns = etcd_ns("clt");
    let etcd = Etcd::start_with(&ns, true);
    etcd.put(&format!("{PREFIX}/config"), VXLAN_NETWORK);
    let s = etcd.settings("t.env");
    let mut no_cert = s.clone();
    no_cert.cert_file = None;
    no_cert.key_file = None;
    let (own, refused) = in_netns(&ns, move || {
        let r = Registry::connect_with(&s, fast_timing()).expect("connect over TLS");
        let network = r.network_config().expect("network config over TLS");
        let own = r
            .acquire_lease(&vxlan_attrs([10, 168, 0, 2], 2), &network)
            .expect("lease over TLS");
        // Without a client certificate etcd (--client-cert-auth) refuses the handshake.
        let refused =
            Registry::connect_with(&no_cert, fast_timing()).and_then(|r| r.network_config());
        (own, refused.is_err())
    });
    assert!(refused, "etcd accepted a client without a certificate");
    assert_eq!(
        etcd.subnet_value(&cluster::subnet_key(own.subnet)),
        lease_json("10.168.0.2", "0e:00:00:00:00:02")
    );
}

// --- podfwd run with source = "etcd" ---------------------------------------------------

/// A lab cluster whose node A runs `podfwd run` with `[cluster] source = "etcd"` and
/// node B is a flanneld-style kernel VXLAN node; etcd runs in node B's namespace and
/// serves node A over the underlay (10.168.0.3:2379). Both nodes' leases are written
/// first (flanneld reservations), so node A reuses the subnet its lab pod lives in.
#[test]
fn podfwd_takes_its_subnet_and_peers_from_etcd_and_follows_lease_changes() {
    use podfwd::config::Backend;
    use podfwd::control::query_routes;
    use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};
    skip_unless_root!();
    let spec = ClusterSpec {
        mode: podfwd::config::Mode::Vxlan,
        nodes: [NodeKind::Podfwd, NodeKind::KernelVxlan],
        ..ClusterSpec::default()
    };
    let c = Cluster::build_with_backend("clrun", spec, Backend::AfXdp).expect("lab cluster");
    let etcd = lab_registry(&c);
    let subnet_env = c.config_path(0).with_file_name("subnet.env");
    let toml = etcd_node_toml(&c, &subnet_env);
    std::fs::write(c.config_path(0), &toml).unwrap();
    let exe = crate::traffic::exe();
    let log = c.log_path(0);
    let check = std::process::Command::new(exe)
        .args(["check", "--config"])
        .arg(c.config_path(0))
        .output()
        .unwrap();
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && check_out.contains("come from the registry"),
        "podfwd check on an etcd node: {check_out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    c.nodes[0]
        .spawn_logged(
            &[
                exe.to_str().unwrap(),
                "run",
                "--config",
                c.config_path(0).to_str().unwrap(),
            ],
            &log,
        )
        .expect("podfwd run");
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let sock = c.socket_path(0);
    assert!(
        wait_until(Duration::from_secs(20), || query_routes(&sock).is_ok()),
        "podfwd did not come up:\n{}",
        logs()
    );
    // flanneld's subnet.env for the CNI plugin: this node's reserved subnet.
    let env = std::fs::read_to_string(&subnet_env).expect("subnet.env written");
    assert!(
        env.contains("FLANNEL_NETWORK=10.244.0.0/16\n")
            && env.contains("FLANNEL_SUBNET=10.244.0.1/24\n")
            && env.contains("FLANNEL_MTU=1450\n"),
        "{env}"
    );
    let route = |prefix: &str| {
        query_routes(&sock).ok().and_then(|r| {
            r.routes
                .into_iter()
                .find(|r| r.prefix.to_string() == prefix)
        })
    };
    let b = route(SIDES[1].pod_cidr).unwrap_or_else(|| panic!("no route to pod B\n{}", logs()));
    assert_eq!(b.source, "etcd");
    // Pod A and pod B (on the kernel node) reach each other through podfwd.
    for (from, to) in [(0usize, 1usize), (1, 0)] {
        let out = c.pods[from]
            .exec_unchecked(&["ping", "-c", "3", "-i", "0.2", "-W", "2", SIDES[to].pod_ip])
            .unwrap();
        assert!(
            out.status.success(),
            "ping {} -> {}: {}\n{}",
            SIDES[from].pod_ip,
            SIDES[to].pod_ip,
            String::from_utf8_lossy(&out.stdout),
            logs()
        );
    }
    // A fourth lease written by hand is routed within 1 s, a changed VtepMAC followed
    // within 1 s, a deletion removed within 1 s.
    let key = format!("{PREFIX}/subnets/10.244.7.0-24");
    etcd.put(&key, &lease_json("10.168.0.9", "0e:00:00:00:00:09"));
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(1), || route("10.244.7.0/24").is_some()),
        "the new lease is not routed after 1 s\n{}",
        logs()
    );
    let added = t.elapsed();
    etcd.put(&key, &lease_json("10.168.0.9", "0e:00:00:00:00:19"));
    assert!(
        wait_until(Duration::from_secs(1), || {
            route("10.244.7.0/24")
                .and_then(|r| r.vtep_mac)
                .is_some_and(|m| m == "0e:00:00:00:00:19")
        }),
        "the changed VtepMAC is not followed after 1 s: {:?}\n{}",
        route("10.244.7.0/24"),
        logs()
    );
    etcd.ctl(&["del", &key]);
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(1), || route("10.244.7.0/24").is_none()),
        "the deleted lease is still routed after 1 s\n{}",
        logs()
    );
    eprintln!(
        "cluster: lease routed after {} ms, deletion after {} ms",
        added.as_millis(),
        t.elapsed().as_millis()
    );
    // Pod B's route never went away.
    assert!(route(SIDES[1].pod_cidr).is_some());
    // /metrics: the route source is etcd, connected, at a revision, with a lease.
    thread_sleep_publish();
    let text = scrape(&c.nodes[0], &["podfwd_route_source", "podfwd_lease"])
        .unwrap_or_else(|e| panic!("scraping /metrics: {e}\n{}", logs()));
    assert!(
        text.lines()
            .any(|l| l.starts_with("podfwd_route_source_connected etcd 1")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("podfwd_route_source_revision etcd") && !l.ends_with(" 0.0")),
        "{text}"
    );
}

/// etcd in node B's namespace of a lab cluster, also serving its underlay address, with
/// the network config of the cluster's mode and both nodes' leases written first
/// (flanneld reservations), so node A reuses the subnet its lab pod lives in.
pub(crate) fn lab_registry(c: &podfwd::lab::Cluster) -> Etcd<'_> {
    use podfwd::lab::SIDES;
    let etcd = Etcd::start_listening_also(&c.nodes[1], SIDES[1].node_ip);
    let host_gw = c.spec.mode == podfwd::config::Mode::HostGw;
    // The lab's pod A lives in 10.244.0.0/24, below flannel's default SubnetMin (the
    // network's second subnet): lower it, as an operator may.
    etcd.put(
        &format!("{PREFIX}/config"),
        &format!(
            r#"{{"Network":"10.244.0.0/16","SubnetMin":"10.244.0.0","Backend":{{"Type":"{}"}}}}"#,
            if host_gw { "host-gw" } else { "vxlan" }
        ),
    );
    for side in &SIDES {
        let key = side.pod_cidr.replace('/', "-");
        let value = if host_gw {
            host_gw_lease_json(side.node_ip)
        } else {
            lease_json(side.node_ip, side.vtep_mac)
        };
        etcd.put(&format!("{PREFIX}/subnets/{key}"), &value);
    }
    etcd
}

/// A host-gw lease as flanneld writes it (no BackendData).
pub(crate) fn host_gw_lease_json(ip: &str) -> String {
    format!(r#"{{"PublicIP":"{ip}","PublicIPv6":null,"BackendType":"host-gw"}}"#)
}

/// Node A's podfwd file in a lab cluster whose node B serves etcd on its underlay
/// address: no pod_cidr, no peers, `[cluster] source = "etcd"`; `subnet.env` at
/// `subnet_env`.
pub(crate) fn etcd_node_toml(c: &podfwd::lab::Cluster, subnet_env: &std::path::Path) -> String {
    use podfwd::lab::SIDES;
    format!(
        "[node]\nip = \"{ip}/24\"\nuplink = \"{ul}\"\npod_interfaces = [\"{pod}\"]\n\
         [dataplane]\nbackend = \"{backend}\"\ncores = [1]\nqueues = 1\n\
         [vxlan]\nvtep_mac = \"{vtep}\"\n\
         [control]\nsocket = \"{sock}\"\nbpf_pin_dir = \"/sys/fs/bpf/{nsname}\"\n\
         [metrics]\nlisten = \"127.0.0.1:9472\"\n[tun]\nname = \"podfwd0\"\n\
         [cluster]\nsource = \"etcd\"\netcd_endpoints = [\"http://{etcd}:{CLIENT_PORT}\"]\n\
         subnet_file = \"{env}\"\n",
        ip = SIDES[0].node_ip,
        ul = SIDES[0].ul_if,
        pod = SIDES[0].pod_if,
        backend = c.backend,
        vtep = SIDES[0].vtep_mac,
        sock = c.socket_path(0).display(),
        nsname = c.nodes[0].name(),
        etcd = SIDES[1].node_ip,
        env = subnet_env.display(),
    )
}

/// The samples of node `ns`'s /metrics (127.0.0.1:9472 there) whose names start with one
/// of `prefixes`, parsed by Prometheus' own Python parser: one `name source value` line
/// each (`source` is the label's value, empty without one).
pub(crate) fn scrape(ns: &Netns, prefixes: &[&str]) -> Result<String, String> {
    let prefixes: Vec<String> = prefixes.iter().map(|p| format!("'{p}'")).collect();
    let script = format!(
        "import urllib.request\n\
         from prometheus_client.parser import text_string_to_metric_families\n\
         t = urllib.request.urlopen('http://127.0.0.1:9472/metrics', timeout=5).read().decode()\n\
         for f in text_string_to_metric_families(t):\n\
         \x20   for s in f.samples:\n\
         \x20       if s.name.startswith(({},)):\n\
         \x20           print(s.name, s.labels.get('source', ''), s.value)\n",
        prefixes.join(", ")
    );
    let out = ns
        .exec(&["/usr/bin/python3", "-c", &script])
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The control loop publishes the metrics snapshot once a second.
fn thread_sleep_publish() {
    std::thread::sleep(Duration::from_millis(1100));
}
