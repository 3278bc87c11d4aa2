//! The embedded demo cluster: two nodes and two pods in network namespaces.
//!
//! ```text
//!  podA eth0 ---- nodeA-pod [nodeA] nodeA-ul ==== nodeB-ul [nodeB] nodeB-pod ---- eth0 podB
//!  10.244.0.2     10.244.0.1        10.168.0.2    10.168.0.3        10.244.1.1     10.244.1.2
//! ```
//!
//! Each node runs podfwd, or the Linux kernel configured as flanneld configures it (the
//! reference peer for interop tests, and the reference behaviour). Every node runs with
//! `net.ipv4.ip_forward = 1`, as every Kubernetes node does: the kernel is podfwd's slow
//! path, so tests prove that podfwd forwarded through its counters, not by switching the
//! kernel off. `podfwd lab` and the netns tests both build on [`Cluster`]. Everything lives in
//! namespaces named `pfx-<tag>-<pid>-<n>` that are removed when the cluster is dropped.

use crate::config::{Backend, Mode};
use crate::control::{query_stats, StatsReply};
use crate::netns::{self, Netns};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a node forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// podfwd, in the cluster's mode.
    Podfwd,
    /// The kernel with a flannel-style VTEP (`flannel.1`, VNI 1, port 8472).
    KernelVxlan,
    /// The kernel routing pod subnets via the peer node (flannel host-gw).
    KernelHostGw,
    /// The kernel as flanneld's vxlan backend with `DirectRouting` configures it for a
    /// peer on the same L2 subnet: the VTEP `flannel.1` exists (and decapsulates what
    /// arrives for its MAC), but the peer's pod subnet is routed host-gw style. The
    /// kernel reference of podfwd's auto mode.
    KernelDirectRouting,
}

/// What to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSpec {
    pub mode: Mode,
    /// How node A and node B forward.
    pub nodes: [NodeKind; 2],
    /// Queues per veth (and podfwd workers' queues).
    pub queues: u16,
    /// CPUs each node's podfwd workers run on (one worker per entry).
    pub cores: [&'static [usize]; 2],
    /// `tun.offload` of each node's podfwd (TUN backend).
    pub tun_offload: [bool; 2],
    /// MTU of the pods' `eth0` (and of the nodes' pod-side veths). `None`: as flannel's
    /// CNI sets it, 1450 (the VTEP's MTU) when the cluster's mode uses VXLAN, else 1500.
    /// `Some(1500)` in VXLAN mode is the misconfigured-but-real cluster whose frames no
    /// longer fit once encapsulated (the kernel answers "frag needed", PMTU discovery).
    pub pod_mtu: Option<u16>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            mode: Mode::Vxlan,
            nodes: [NodeKind::Podfwd, NodeKind::Podfwd],
            queues: 1,
            cores: if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
                [&[0], &[1]]
            } else {
                [&[0], &[0]]
            },
            tun_offload: [true; 2],
            pod_mtu: None,
        }
    }
}

impl ClusterSpec {
    /// The pods' MTU: [`ClusterSpec::pod_mtu`], or flannel's default for the mode.
    pub fn pod_mtu(&self) -> u16 {
        self.pod_mtu
            .unwrap_or(if self.mode.uses_vxlan() { 1450 } else { 1500 })
    }
}

/// The fixed addresses of one side of the cluster.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    pub node_ip: &'static str,
    pub pod_ip: &'static str,
    pub pod_gw: &'static str,
    pub pod_cidr: &'static str,
    pub node_ul_mac: &'static str,
    pub node_pod_mac: &'static str,
    pub pod_mac: &'static str,
    pub vtep_mac: &'static str,
    pub ul_if: &'static str,
    pub pod_if: &'static str,
}

pub const SIDES: [Side; 2] = [
    Side {
        node_ip: "10.168.0.2",
        pod_ip: "10.244.0.2",
        pod_gw: "10.244.0.1",
        pod_cidr: "10.244.0.0/24",
        node_ul_mac: "02:00:00:00:00:a1",
        node_pod_mac: "02:00:00:00:00:a3",
        pod_mac: "02:00:00:00:00:a2",
        vtep_mac: "0e:00:00:00:00:0a",
        ul_if: "nodeA-ul",
        pod_if: "nodeA-pod",
    },
    Side {
        node_ip: "10.168.0.3",
        pod_ip: "10.244.1.2",
        pod_gw: "10.244.1.1",
        pod_cidr: "10.244.1.0/24",
        node_ul_mac: "02:00:00:00:00:b1",
        node_pod_mac: "02:00:00:00:00:b3",
        pod_mac: "02:00:00:00:00:b2",
        vtep_mac: "0e:00:00:00:00:0b",
        ul_if: "nodeB-ul",
        pod_if: "nodeB-pod",
    },
];

/// Errors building or driving the cluster.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("podfwd on {node} did not come up within {secs} s; its log:\n{log}")]
    NotUp {
        node: String,
        secs: u64,
        log: String,
    },
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error("podfwd lab needs root to create network namespaces: {0}")]
    NotRoot(String),
    #[error("the {0} backend is not available in the lab yet (use --backend afxdp)")]
    Backend(Backend),
    #[error("interrupted")]
    Interrupted,
    #[error("{what} failed:\n{output}")]
    Step { what: String, output: String },
}

/// A running demo cluster; dropping it stops everything and removes the namespaces.
pub struct Cluster {
    pub spec: ClusterSpec,
    /// podA, podB.
    pub pods: [Netns; 2],
    /// nodeA, nodeB.
    pub nodes: [Netns; 2],
    /// The backend podfwd nodes run with.
    pub backend: Backend,
    dir: PathBuf,
    /// node i's podfwd pid, 0 when none runs (atomic, so a test can start podfwd
    /// while something else borrows the cluster, e.g. an etcd in node B).
    podfwd: [AtomicU32; 2],
}

impl Cluster {
    /// Builds the namespaces, links and addresses, and configures kernel nodes. podfwd
    /// is not started yet (see [`Cluster::start_podfwd`]).
    pub fn build(tag: &str, spec: ClusterSpec) -> Result<Cluster, LabError> {
        Self::build_with_backend(tag, spec, Backend::AfXdp)
    }

    /// [`Cluster::build`] with podfwd nodes on `backend`. Every node has kernel IP
    /// forwarding on: AF_XDP nodes hand the kernel what podfwd does not forward; TUN
    /// nodes need it to route pods into the TUN device and, in host-gw mode, to deliver
    /// what arrives on the uplink.
    pub fn build_with_backend(
        tag: &str,
        spec: ClusterSpec,
        backend: Backend,
    ) -> Result<Cluster, LabError> {
        let pods = [Netns::new(tag)?, Netns::new(tag)?];
        let nodes = [Netns::new(tag)?, Netns::new(tag)?];
        let dir = std::env::temp_dir().join(format!("{}-files", nodes[0].name()));
        std::fs::create_dir_all(&dir)?;
        let c = Cluster {
            spec,
            pods,
            nodes,
            backend,
            dir,
            podfwd: [AtomicU32::new(0), AtomicU32::new(0)],
        };
        let q = spec.queues.to_string();
        let queues = ["numrxqueues", q.as_str(), "numtxqueues", q.as_str()];
        for (i, s) in SIDES.iter().enumerate() {
            for ns in [&c.pods[i], &c.nodes[i]] {
                ns.disable_ipv6()?;
            }
            // pod eth0 <-> node pod-side veth
            let mut args = vec!["link", "add", "eth0"];
            args.extend_from_slice(&queues);
            args.extend_from_slice(&["type", "veth", "peer", "name", s.pod_if]);
            args.extend_from_slice(&queues);
            args.extend_from_slice(&["netns", c.nodes[i].name()]);
            c.pods[i].ip(&args)?;
            c.pods[i].set_mac("eth0", s.pod_mac)?;
            c.nodes[i].set_mac(s.pod_if, s.node_pod_mac)?;
            c.pods[i].add_addr("eth0", &format!("{}/24", s.pod_ip))?;
            c.nodes[i].add_addr(s.pod_if, &format!("{}/24", s.pod_gw))?;
            // As flannel's CNI does: in an overlay, pods get the VTEP's MTU (uplink - 50)
            // so their frames still fit the uplink once encapsulated (unless the spec says
            // otherwise).
            let mtu = spec.pod_mtu().to_string();
            if mtu != "1500" {
                c.pods[i].ip(&["link", "set", "eth0", "mtu", &mtu])?;
                c.nodes[i].ip(&["link", "set", s.pod_if, "mtu", &mtu])?;
            }
            c.pods[i].link_up("eth0")?;
            c.nodes[i].link_up(s.pod_if)?;
            c.pods[i].add_route(&["default", "via", s.pod_gw])?;
        }
        // The underlay link between the nodes.
        let mut args = vec!["link", "add", SIDES[0].ul_if];
        args.extend_from_slice(&queues);
        args.extend_from_slice(&["type", "veth", "peer", "name", SIDES[1].ul_if]);
        args.extend_from_slice(&queues);
        args.extend_from_slice(&["netns", c.nodes[1].name()]);
        c.nodes[0].ip(&args)?;
        for (i, s) in SIDES.iter().enumerate() {
            c.nodes[i].set_mac(s.ul_if, s.node_ul_mac)?;
            c.nodes[i].add_addr(s.ul_if, &format!("{}/24", s.node_ip))?;
            c.nodes[i].link_up(s.ul_if)?;
        }
        // The in-kernel fast path redirects native XDP frames into veths, which take
        // them only when the receiving end runs NAPI (an XDP program, or GRO on): the
        // pods' ends and the uplinks (a kernel node has no program there). Checksum
        // offload stays on: frames whose checksum a sender left partial go to the
        // kernel, which completes them (docs/xdp-fastpath.md).
        if backend == Backend::Xdp {
            for (i, side) in SIDES.iter().enumerate() {
                c.pods[i].exec(&["ethtool", "-K", "eth0", "gro", "on"])?;
                c.nodes[i].exec(&["ethtool", "-K", side.ul_if, "gro", "on"])?;
            }
        }
        // Checksum offload stays on, as on real pods: senders leave TCP/UDP checksums
        // partial and podfwd completes them (src/partial_csum.rs).
        for i in 0..2 {
            match spec.nodes[i] {
                NodeKind::Podfwd => c.nodes[i].sysctl("net.ipv4.ip_forward", "1")?,
                NodeKind::KernelVxlan => c.kernel_vxlan(i)?,
                NodeKind::KernelHostGw => c.kernel_host_gw(i)?,
                NodeKind::KernelDirectRouting => c.kernel_direct_routing(i)?,
            }
        }
        Ok(c)
    }

    /// Node `i` as flanneld configures a kernel VXLAN node (DESIGN.md). Public so a test
    /// can turn a podfwd node into a kernel node after podfwd stopped.
    pub fn kernel_vxlan(&self, i: usize) -> Result<(), LabError> {
        self.kernel_vtep(i)?;
        let peer = &SIDES[1 - i];
        let ns = &self.nodes[i];
        let peer_net = peer.pod_cidr.trim_end_matches("/24");
        ns.ip(&[
            "neigh",
            "add",
            peer_net,
            "lladdr",
            peer.vtep_mac,
            "dev",
            "flannel.1",
            "nud",
            "permanent",
        ])?;
        ns.exec(&[
            "bridge",
            "fdb",
            "add",
            peer.vtep_mac,
            "dev",
            "flannel.1",
            "dst",
            peer.node_ip,
        ])?;
        ns.add_route(&[peer.pod_cidr, "via", peer_net, "dev", "flannel.1", "onlink"])?;
        Ok(())
    }

    /// Node `i` as flanneld's vxlan backend with `DirectRouting` configures it for an
    /// on-link peer: the VTEP, but no neighbour or FDB entry for the peer, and a direct
    /// route to its pod subnet (flannel's vxlan_network.go, `directRoutingOK`).
    fn kernel_direct_routing(&self, i: usize) -> Result<(), LabError> {
        self.kernel_vtep(i)?;
        self.kernel_host_gw(i)
    }

    /// The VTEP flanneld creates on a VXLAN node: `flannel.1`, VNI 1, port 8472, the
    /// node's VTEP MAC, MTU 1450, the node's pod network address /32; forwarding on.
    fn kernel_vtep(&self, i: usize) -> Result<(), LabError> {
        let me = &SIDES[i];
        let ns = &self.nodes[i];
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        ns.ip(&[
            "link",
            "add",
            "flannel.1",
            "type",
            "vxlan",
            "id",
            "1",
            "local",
            me.node_ip,
            "dev",
            me.ul_if,
            "nolearning",
            "dstport",
            "8472",
        ])?;
        ns.ip(&[
            "link",
            "set",
            "flannel.1",
            "address",
            me.vtep_mac,
            "mtu",
            "1450",
        ])?;
        let own_net = me.pod_cidr.replace("/24", "/32");
        ns.add_addr("flannel.1", &own_net)?;
        ns.link_up("flannel.1")?;
        Ok(())
    }

    /// Node `i` as a flannel host-gw node: one route per remote node.
    fn kernel_host_gw(&self, i: usize) -> Result<(), LabError> {
        let (me, peer) = (&SIDES[i], &SIDES[1 - i]);
        let ns = &self.nodes[i];
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        ns.add_route(&[peer.pod_cidr, "via", peer.node_ip, "dev", me.ul_if])?;
        Ok(())
    }

    /// The control socket of node `i`'s podfwd.
    pub fn socket_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}.sock"))
    }

    /// The log file of node `i`'s podfwd.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}.log"))
    }

    /// Where node `i`'s config file is written when podfwd starts (a test may rewrite
    /// it and send SIGHUP).
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}.toml"))
    }

    /// The podfwd configuration of node `i`.
    pub fn config_toml(&self, i: usize) -> String {
        let (me, peer) = (&SIDES[i], &SIDES[1 - i]);
        let cores: Vec<String> = self.spec.cores[i].iter().map(|c| c.to_string()).collect();
        format!(
            r#"# podfwd lab: node {name}
[node]
ip = "{ip}/24"
pod_cidr = "{pod_cidr}"
uplink = "{ul}"
pod_interfaces = ["{pod_if}"]

[dataplane]
backend = "{backend}"
mode = "{mode}"
cores = [{cores}]
queues = {queues}

[vxlan]
vni = 1
port = 8472
vtep_mac = "{vtep}"

[control]
socket = "{socket}"
bpf_pin_dir = "/sys/fs/bpf/{nsname}"

[metrics]
listen = "127.0.0.1:9472"  # inside the node's namespace: one per node, no clash

[tun]
name = "podfwd0"
offload = {offload}

[[peers]]
pod_cidr = "{peer_cidr}"
node_ip = "{peer_ip}"
vtep_mac = "{peer_vtep}"
"#,
            name = ["A", "B"][i],
            ip = me.node_ip,
            pod_cidr = me.pod_cidr,
            ul = me.ul_if,
            pod_if = me.pod_if,
            mode = self.spec.mode,
            backend = self.backend,
            cores = cores.join(", "),
            queues = self.spec.queues,
            vtep = me.vtep_mac,
            socket = self.socket_path(i).display(),
            nsname = self.nodes[i].name(),
            peer_cidr = peer.pod_cidr,
            peer_ip = peer.node_ip,
            peer_vtep = peer.vtep_mac,
            offload = self.spec.tun_offload[i],
        )
    }

    /// Starts `podfwd run` (the binary at `exe`) in node `i` and waits until its control
    /// socket answers.
    pub fn start_podfwd(&mut self, i: usize, exe: &Path) -> Result<u32, LabError> {
        let toml = self.config_toml(i);
        self.start_podfwd_with(i, exe, &toml)
    }

    /// [`Cluster::start_podfwd`] with the config file `toml` (e.g. a node on an etcd
    /// registry instead of the lab's static peers).
    pub fn start_podfwd_with(&self, i: usize, exe: &Path, toml: &str) -> Result<u32, LabError> {
        let cfg = self.config_path(i);
        std::fs::write(&cfg, toml)?;
        let exe = exe.display().to_string();
        let cfg = cfg.display().to_string();
        let log = self.log_path(i);
        let pid = self.nodes[i].spawn_logged(&[&exe, "run", "--config", &cfg], &log)?;
        self.podfwd[i].store(pid, Ordering::Relaxed);
        let sock = self.socket_path(i);
        let up = netns::wait_until(Duration::from_secs(20), || query_stats(&sock).is_ok());
        if !up {
            return Err(LabError::NotUp {
                node: self.nodes[i].name().to_string(),
                secs: 20,
                log: std::fs::read_to_string(&log).unwrap_or_default(),
            });
        }
        Ok(pid)
    }

    /// Stops node `i`'s podfwd with SIGTERM and waits for it (up to 5 s, then SIGKILL);
    /// returns whether it exited by itself with status 0.
    pub fn stop_podfwd(&mut self, i: usize) -> bool {
        let pid = self.podfwd[i].swap(0, Ordering::Relaxed);
        if pid == 0 {
            return false;
        }
        self.nodes[i].terminate(pid, Duration::from_secs(5))
    }

    /// Kills node `i`'s podfwd with SIGKILL (no clean-up of its own) and reaps it; returns
    /// its pid.
    pub fn kill_podfwd(&mut self, i: usize) -> Option<u32> {
        let pid = Some(self.podfwd[i].swap(0, Ordering::Relaxed)).filter(|p| *p != 0)?;
        // Netns::kill sends SIGKILL (Child::kill) and waits for the process.
        self.nodes[i].kill(pid);
        Some(pid)
    }

    /// PID of node `i`'s podfwd, if running.
    pub fn podfwd_pid(&self, i: usize) -> Option<u32> {
        Some(self.podfwd[i].load(Ordering::Relaxed)).filter(|p| *p != 0)
    }

    /// Counters of node `i`'s podfwd.
    pub fn stats(&self, i: usize) -> Result<StatsReply, LabError> {
        Ok(query_stats(&self.socket_path(i))?)
    }

    /// `ping -c count` from pod `from` to the other pod; the output, or the error.
    pub fn ping(&self, from: usize, count: u32) -> Result<String, LabError> {
        let to = SIDES[1 - from].pod_ip;
        let out = self.pods[from].exec(&[
            "ping",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            to,
        ])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..2 {
            self.stop_podfwd(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // The namespaces are removed by their own Drop.
    }
}

/// `podfwd lab`: builds the demo cluster, runs podfwd on both nodes, shows ping and a TCP
/// transfer between the pods and the counters, and tears everything down (also on
/// Ctrl-C or failure: the cluster is dropped on every path out of this function).
pub fn run_demo(mode: Mode, backend: Backend) -> Result<(), LabError> {
    netns::require_root().map_err(LabError::NotRoot)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // Relaxed: a flag checked between steps.
    let check = || {
        if stop.load(Ordering::Relaxed) {
            Err(LabError::Interrupted)
        } else {
            Ok(())
        }
    };
    let spec = ClusterSpec {
        mode,
        ..ClusterSpec::default()
    };
    println!("podfwd lab: building a two-node cluster in network namespaces (mode {mode})");
    let mut c = Cluster::build_with_backend("lab", spec, backend)?;
    println!(
        "  podA {} -- [nodeA {}] ==== [nodeB {}] -- podB {}",
        SIDES[0].pod_ip, SIDES[0].node_ip, SIDES[1].node_ip, SIDES[1].pod_ip
    );
    println!(
        "  namespaces: {}",
        [&c.pods[0], &c.nodes[0], &c.nodes[1], &c.pods[1]]
            .iter()
            .map(|n| n.name())
            .collect::<Vec<_>>()
            .join(" ")
    );
    if backend == Backend::Tun {
        println!("  backend tun: the kernel routes pods into podfwd0 (ip_forward = 1)");
    } else {
        println!(
            "  ip_forward = 1 as on every Kubernetes node; the counters show what podfwd carried"
        );
    }
    let exe = std::env::current_exe()?;
    for i in 0..2 {
        check()?;
        let pid = c.start_podfwd(i, &exe)?;
        println!(
            "  podfwd running on node {} (pid {pid}, cpu {:?})",
            ["A", "B"][i],
            spec.cores[i]
        );
    }
    check()?;
    println!("\n$ ping podA -> podB");
    let out =
        c.pods[0].exec_unchecked(&["ping", "-c", "3", "-i", "0.3", "-W", "2", SIDES[1].pod_ip])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        return Err(LabError::Step {
            what: "ping".into(),
            output: c.logs(),
        });
    }
    check()?;
    println!("\n$ iperf3 podA -> podB (TCP, 2 s)");
    let server = c.pods[1].spawn(&["iperf3", "-s", "-1", "-B", SIDES[1].pod_ip])?;
    std::thread::sleep(Duration::from_millis(300));
    let out = c.pods[0].exec_unchecked(&["iperf3", "-c", SIDES[1].pod_ip, "-t", "2", "-f", "m"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text
        .lines()
        .filter(|l| l.contains("sender") || l.contains("receiver"))
    {
        println!("{line}");
    }
    c.pods[1].kill(server);
    let received = text
        .lines()
        .any(|l| l.contains("receiver") && !l.contains(" 0.00 Bytes"));
    if !out.status.success() || !received {
        return Err(LabError::Step {
            what: "iperf3".into(),
            output: format!("{text}{}{}", String::from_utf8_lossy(&out.stderr), c.logs()),
        });
    }
    for i in 0..2 {
        println!("\n$ podfwd stats (node {})", ["A", "B"][i]);
        print!("{}", c.stats(i)?.to_text());
    }
    println!("\npodfwd lab: done; removing the namespaces");
    Ok(())
}

impl Cluster {
    /// Both nodes' podfwd logs, for error messages.
    pub fn logs(&self) -> String {
        (0..2)
            .map(|i| {
                format!(
                    "--- podfwd log, node {} ---\n{}",
                    ["A", "B"][i],
                    std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
                )
            })
            .collect()
    }
}
