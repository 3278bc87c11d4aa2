//! podfwd-bench: the forwarding benchmark over veth, podfwd (AF_XDP, TUN) against the
//! kernel as flannel configures it.
//!
//! `tools/bench.sh [--quick]` runs `podfwd-bench run`. For every scenario and round it
//! builds the lab cluster (`podfwd::lab::Cluster`, namespaces `pfx-bench-...`), runs every
//! workload in it, and removes it. Node A is the node under test:
//!
//! ```text
//!  podA eth0 -- nodeA-pod [node A: kernel | podfwd] nodeA-ul ==== nodeB-ul [node B: kernel] nodeB-pod -- eth0 podB
//!  |------- CPU 0 -------|------------ CPU 1 -----------------|------------------ CPU 0 -------------------|
//! ```
//!
//! - Scenarios: node A forwards with the kernel (flannel host-gw routes, or `flannel.1`),
//!   podfwd on AF_XDP, or podfwd on TUN (`cores = [1]`); node B is always the kernel.
//!   `*-host-gw` and `*-vxlan` measure the direction podA -> podB (node A routes and
//!   rewrites, or encapsulates); `*-vxlan-decap` measure podB -> podA (node A receives
//!   VXLAN and decapsulates it to its local pod).
//! - CPUs: every veth end runs NAPI (GRO on) in threaded mode; node A's two kthreads
//!   (`napi/nodeA-pod-*`, `napi/nodeA-ul-*`) are pinned to CPU 1 with podfwd's worker,
//!   all others, the generator, the sinks, iperf3 and the ping-pong to CPU 0. So all of
//!   node A's forwarding work, and nothing else of the bench, is on CPU 1.
//! - `udp-64B`, `udp-1400B`: `podfwd-bench gen` (AF_PACKET + sendmmsg, 1024 flows,
//!   retrying on veth back-pressure) at what one CPU can offer. Encap direction: from
//!   podA's eth0 (TSO/GSO off) to an XDP_DROP sink on nodeB-ul. Decap direction: the
//!   generator runs in node B and sends frames that are already VXLAN-encapsulated
//!   exactly as node B's `flannel.1` would (outer node B -> node A, port 8472, VNI 1,
//!   inner VTEP B -> VTEP A), from nodeB-ul, so no VTEP on CPU 0 limits the offered
//!   rate; the sink is XDP_DROP on podA's eth0. Rates are the sink veth's rx counters.
//! - `udp-64B-churn` (podfwd scenarios): `udp-64B` while node A's static file alternates
//!   between two sets of 100 other peers, each rewrite followed by SIGHUP and applied
//!   (checked with `podfwd routes`) before the next, paced to 1,000 route changes per
//!   second (issue 10's churn); compared with the same scenario's `udp-64B` of the same
//!   round, in a table of its own. The etcd route source under the same churn is
//!   `netns-tests/route_churn.rs`.
//! - `tcp-1`, `tcp-4`: iperf3 with 1 and 4 streams (TSO/GSO on in the pods, as real
//!   pods have), client and server under `taskset -c 0`, throughput at the receiver;
//!   podA -> podB, or podB -> podA for the decap scenarios.
//! - `latency`: `podfwd-bench ping` in podA against `podfwd-bench echo` in podB, one
//!   request in flight, at most `--latency-rate` per second: the round trip crosses
//!   node A both ways (encapsulation out, decapsulation back), so it is run for the
//!   encap-direction scenarios only.
//! - Limits (issue 12): `afxdp-limit(-rev)` and `xdp-limit(-rev)` run a reference
//!   forwarder on node A instead of podfwd (limit.rs: a bare AF_XDP MAC swapper, a
//!   minimal XDP redirect), UDP workloads only; every podfwd scenario with a `limit` is
//!   also reported as a fraction of it.
//! - Set-up variants (`--qdisc`, `--flows`, `--udp-gro-fwd`, `--defer-hard-irqs`,
//!   `--gro-flush-timeout`) change what the kernel baseline pays; recorded in the results
//!   (docs/BENCHMARKS.md, "Limits and set-ups"). `--setups a,b,...|all` measures named
//!   set-ups (setups.rs) side by side in one run: each round runs every scenario under
//!   every set-up, every record names its set-up, and baselines, limits and ratios are
//!   taken within a set-up and round; the report adds a table per UDP workload with a
//!   column per set-up, and `...-setups.png`.
//! - CPU: CPU 1 busy from /proc/stat, and the CPU time of node A's forwarding tasks (its
//!   NAPI kthreads, podfwd's threads or the reference forwarder) from /proc/<pid>/stat.
//!
//! Results: `results/bench-<unix time>.{json,md}`, `...-{udp,tcp,latency,setups}.png`,
//! and the same as `results/latest.*`.

mod charts;
mod gen;
mod limit;
mod pingpong;
mod report;
mod setups;
mod sink;

use clap::{Parser, Subcommand};
use podfwd::config::{Backend, Mode};
use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};
use podfwd::netns::Netns;
use report::{CpuUse, Measured, RunSample};
use setups::SetupSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "podfwd-bench",
    about = "podfwd vs the kernel, forwarding over veth"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and write results.
    Run(RunArgs),
    /// (internal) the traffic generator, run inside the generator's namespace.
    Gen(GenArgs),
    /// (internal) the latency workload's echo server.
    Echo(EchoArgs),
    /// (internal) the latency workload's client; prints one JSON line.
    Ping(PingArgs),
    /// (internal) the afxdp-limit reference forwarder, run inside node A's namespace.
    #[command(hide = true)]
    LimitAfxdp(LimitArgs),
    /// (internal) the xdp-limit reference forwarder, run inside node A's namespace.
    #[command(hide = true)]
    LimitXdp(LimitArgs),
}

/// The qdisc on every veth end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Qdisc {
    /// `pfifo limit 1000`: veth stops its queue when the peer's ring is full (TCP gets
    /// back-pressure); every kernel-sent frame is enqueued and dequeued.
    Pfifo,
    /// No qdisc (`noqueue`, veth's default): `veth_xmit` straight from
    /// `__dev_queue_xmit`; a full ring drops.
    Noqueue,
    /// pfifo on the underlay veths, noqueue on the pod veths: a real node's NIC has a
    /// qdisc, its pod veths keep veth's default.
    Uplink,
}

impl Qdisc {
    /// The qdisc of `dev` (a veth end of the lab) under this variant.
    fn of(self, dev: &str) -> Qdisc {
        let uplink = SIDES.iter().any(|s| s.ul_if == dev);
        match self {
            Qdisc::Uplink if uplink => Qdisc::Pfifo,
            Qdisc::Uplink => Qdisc::Noqueue,
            q => q,
        }
    }
}

impl std::fmt::Display for Qdisc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Qdisc::Pfifo => "pfifo",
            Qdisc::Noqueue => "noqueue",
            Qdisc::Uplink => "uplink",
        })
    }
}

#[derive(clap::Args)]
struct LimitArgs {
    /// The interface frames of the measured direction arrive on.
    #[arg(long)]
    from: String,
    /// The interface they leave on.
    #[arg(long)]
    to: String,
    /// Destination MAC of frames leaving on --to.
    #[arg(long)]
    dst_mac: String,
    /// Source MAC of frames leaving on --to.
    #[arg(long)]
    src_mac: String,
    /// Destination MAC of frames arriving on --to and leaving on --from.
    #[arg(long)]
    back_dst_mac: String,
    /// Source MAC of frames leaving on --from.
    #[arg(long)]
    back_src_mac: String,
    /// CPU of the AF_XDP forwarder.
    #[arg(long, default_value_t = 1)]
    cpu: usize,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// 1 run x 1 s per scenario and workload, a smoke test (default: 5 runs x 5 s).
    #[arg(long)]
    quick: bool,
    /// Runs per scenario (interleaved A B A B ...).
    #[arg(long)]
    runs: Option<usize>,
    /// Measured seconds per run and workload.
    #[arg(long)]
    secs: Option<f64>,
    /// Comma-separated scenarios (default: all).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Output directory.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// The podfwd binary (default: next to this one).
    #[arg(long)]
    podfwd: Option<PathBuf>,
    /// Comma-separated workloads (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// UDP flows (source ports).
    #[arg(long, default_value_t = 1024)]
    flows: u16,
    /// Requests per second of the latency workload (one in flight).
    #[arg(long, default_value_t = 10_000)]
    latency_rate: u32,
    /// CPU of the forwarding node (podfwd's worker, node A's NAPI kthreads).
    #[arg(long, default_value_t = 1)]
    fwd_cpu: usize,
    /// CPU of everything else (generator, sinks, iperf3, node B).
    #[arg(long, default_value_t = 0)]
    gen_cpu: usize,
    /// TrueType font for the charts' text (default: DejaVu Sans from fonts-dejavu-core).
    #[arg(long)]
    font: Option<PathBuf>,
    /// The qdisc on every veth end (set-up variant, docs/BENCHMARKS.md "Limits and
    /// set-ups").
    #[arg(long, value_enum, default_value_t = Qdisc::Pfifo)]
    qdisc: Qdisc,
    /// UDP GRO for forwarded traffic (`rx-udp-gro-forwarding`) on node A's two veths:
    /// the kernel then merges a flow's UDP frames into one skb before it routes them.
    #[arg(long)]
    udp_gro_fwd: bool,
    /// `napi_defer_hard_irqs` of node A's two veths: empty NAPI polls before the peer's
    /// wakeup is re-armed (needs --gro-flush-timeout).
    #[arg(long, default_value_t = 0)]
    defer_hard_irqs: u32,
    /// `gro_flush_timeout` (ns) of node A's two veths: with --defer-hard-irqs, the
    /// NAPI kthread is re-polled by a timer instead of woken per burst.
    #[arg(long, default_value_t = 0)]
    gro_flush_timeout: u64,
    /// Comma-separated named set-ups to measure side by side, or `all` (default,
    /// uplink, noqueue, uplink-1flow, uplink-1flow-grofwd, uplink-grofwd,
    /// uplink-deferred; docs/BENCHMARKS.md "Limits and set-ups"). Each round runs every
    /// scenario under every set-up; ratios are taken within a set-up and round. Instead
    /// of --qdisc, --flows, --udp-gro-fwd, --defer-hard-irqs, --gro-flush-timeout.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with_all = ["qdisc", "flows", "udp_gro_fwd", "defer_hard_irqs", "gro_flush_timeout"]
    )]
    setups: Vec<String>,
    /// Comma-separated workloads run under the set-ups after the first (default: the
    /// same as --workloads); the first set-up runs all of --workloads. The full run
    /// (tools/bench.sh without arguments) is `--setups all --sweep-workloads udp-64B`.
    #[arg(long, value_delimiter = ',', requires = "setups")]
    sweep_workloads: Vec<String>,
}

#[derive(clap::Args)]
struct GenArgs {
    #[arg(long)]
    ifname: String,
    #[arg(long)]
    src_mac: String,
    #[arg(long)]
    dst_mac: String,
    #[arg(long)]
    src_ip: String,
    #[arg(long)]
    dst_ip: String,
    #[arg(long, default_value_t = 60)]
    frame_len: usize,
    #[arg(long, default_value_t = 1024)]
    flows: u16,
    #[arg(long)]
    secs: f64,
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// Wrap the frames in VXLAN: SRC_MAC,DST_MAC,SRC_IP,DST_IP of the outer headers.
    #[arg(long)]
    vxlan_outer: Option<String>,
}

#[derive(clap::Args)]
struct EchoArgs {
    #[arg(long)]
    bind: std::net::SocketAddr,
    #[arg(long, default_value_t = 0)]
    cpu: usize,
}

#[derive(clap::Args)]
struct PingArgs {
    #[arg(long)]
    to: std::net::SocketAddr,
    #[arg(long, default_value_t = 10_000)]
    rate: u32,
    #[arg(long)]
    secs: f64,
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// Replies to see before measuring.
    #[arg(long, default_value_t = 200)]
    warmup: u32,
    /// A request without a reply after this many milliseconds is lost.
    #[arg(long, default_value_t = 100)]
    timeout_ms: u64,
    /// UDP payload bytes.
    #[arg(long, default_value_t = 32)]
    payload: usize,
}

/// Which way traffic crosses node A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// podA -> podB: node A forwards (host-gw) or encapsulates (VXLAN).
    FromPod,
    /// podB -> podA: node A receives VXLAN and decapsulates to its pod.
    ToPod,
}

/// A reference forwarder that runs on node A instead of podfwd (limit.rs): what a
/// path can do at all on veth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// A bare copy-mode AF_XDP forwarder with podfwd's socket settings: MAC rewrite only.
    AfXdp,
    /// A minimal XDP program: MACs, TTL - 1, bpf_redirect() to the other veth.
    Xdp,
}

/// A forwarding scenario: how node A (and node B) are built.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub mode: Mode,
    pub nodes: [NodeKind; 2],
    /// The backend when node A runs podfwd.
    pub backend: Backend,
    pub direction: Direction,
    /// The kernel scenario this one is compared with (podfwd and limit scenarios).
    pub baseline: Option<&'static str>,
    /// The limit scenario of the same path and direction (podfwd scenarios that have
    /// one): their figures are also shown as a fraction of it.
    pub limit: Option<&'static str>,
    /// Node A runs this reference forwarder instead of podfwd (limit scenarios).
    pub reference: Option<Reference>,
}

impl Scenario {
    /// Whether podfwd forwards on node A.
    pub fn runs_podfwd(&self) -> bool {
        self.nodes[0] == NodeKind::Podfwd && self.reference.is_none()
    }

    /// What forwards on node A: kernel, afxdp, tun, afxdp-limit or xdp-limit.
    pub fn forwarder(&self) -> &'static str {
        match (self.reference, self.nodes[0], self.backend) {
            (Some(Reference::AfXdp), _, _) => "afxdp-limit",
            (Some(Reference::Xdp), _, _) => "xdp-limit",
            // Every backend names itself here, and its scenarios then need their limit
            // (the names test checks it).
            (None, NodeKind::Podfwd, Backend::Tun) => "tun",
            (None, NodeKind::Podfwd, Backend::AfXdp) => "afxdp",
            (None, NodeKind::Podfwd, Backend::Xdp) => "xdp",
            (None, _, _) => "kernel",
        }
    }

    /// This scenario with `limit` as its limit.
    const fn with_limit(mut self, limit: &'static str) -> Scenario {
        self.limit = Some(limit);
        self
    }
}

const fn scenario(
    name: &'static str,
    mode: Mode,
    a: NodeKind,
    backend: Backend,
    direction: Direction,
    baseline: Option<&'static str>,
) -> Scenario {
    let b = match mode {
        Mode::HostGw => NodeKind::KernelHostGw,
        _ => NodeKind::KernelVxlan,
    };
    Scenario {
        name,
        mode,
        nodes: [a, b],
        backend,
        direction,
        baseline,
        limit: None,
        reference: None,
    }
}

/// A limit scenario: the reference forwarder on node A, compared with the kernel
/// baseline of its direction. The cluster is host-gw (pod MTU 1500) either way: the
/// reverse limit moves the generator's VXLAN frames (inner frame + 50 bytes) to the pod
/// unchanged but for the MACs, and a 1450-byte pod MTU would drop the 1400-byte ones.
const fn limit_scenario(
    name: &'static str,
    reference: Reference,
    direction: Direction,
    baseline: &'static str,
) -> Scenario {
    let mut s = scenario(
        name,
        Mode::HostGw,
        Podfwd,
        Backend::AfXdp,
        direction,
        Some(baseline),
    );
    s.reference = Some(reference);
    s
}

use Direction::{FromPod, ToPod};
use NodeKind::{KernelHostGw, KernelVxlan, Podfwd};

// No tun-vxlan-decap: on a TUN node the kernel's VTEP decapsulates (docs/tun.md), which
// kernel-vxlan-decap measures already. Each podfwd scenario names its limit of the same
// path and direction (`with_limit`); the in-kernel backend's `xdp-*` scenarios take
// `xdp-limit` / `xdp-limit-rev`. TUN has no limit scenario yet.
pub const SCENARIOS: [Scenario; 15] = [
    scenario(
        "kernel-host-gw",
        Mode::HostGw,
        KernelHostGw,
        Backend::AfXdp,
        FromPod,
        None,
    ),
    scenario(
        "afxdp-host-gw",
        Mode::HostGw,
        Podfwd,
        Backend::AfXdp,
        FromPod,
        Some("kernel-host-gw"),
    )
    .with_limit("afxdp-limit"),
    scenario(
        "tun-host-gw",
        Mode::HostGw,
        Podfwd,
        Backend::Tun,
        FromPod,
        Some("kernel-host-gw"),
    ),
    scenario(
        "kernel-vxlan",
        Mode::Vxlan,
        KernelVxlan,
        Backend::AfXdp,
        FromPod,
        None,
    ),
    scenario(
        "afxdp-vxlan",
        Mode::Vxlan,
        Podfwd,
        Backend::AfXdp,
        FromPod,
        Some("kernel-vxlan"),
    )
    .with_limit("afxdp-limit"),
    scenario(
        "tun-vxlan",
        Mode::Vxlan,
        Podfwd,
        Backend::Tun,
        FromPod,
        Some("kernel-vxlan"),
    ),
    scenario(
        "kernel-vxlan-decap",
        Mode::Vxlan,
        KernelVxlan,
        Backend::AfXdp,
        ToPod,
        None,
    ),
    scenario(
        "afxdp-vxlan-decap",
        Mode::Vxlan,
        Podfwd,
        Backend::AfXdp,
        ToPod,
        Some("kernel-vxlan-decap"),
    )
    .with_limit("afxdp-limit-rev"),
    scenario(
        "xdp-host-gw",
        Mode::HostGw,
        Podfwd,
        Backend::Xdp,
        FromPod,
        Some("kernel-host-gw"),
    )
    .with_limit("xdp-limit"),
    scenario(
        "xdp-vxlan",
        Mode::Vxlan,
        Podfwd,
        Backend::Xdp,
        FromPod,
        Some("kernel-vxlan"),
    )
    .with_limit("xdp-limit"),
    scenario(
        "xdp-vxlan-decap",
        Mode::Vxlan,
        Podfwd,
        Backend::Xdp,
        ToPod,
        Some("kernel-vxlan-decap"),
    )
    .with_limit("xdp-limit-rev"),
    limit_scenario("afxdp-limit", Reference::AfXdp, FromPod, "kernel-host-gw"),
    limit_scenario(
        "afxdp-limit-rev",
        Reference::AfXdp,
        ToPod,
        "kernel-vxlan-decap",
    ),
    limit_scenario("xdp-limit", Reference::Xdp, FromPod, "kernel-host-gw"),
    limit_scenario("xdp-limit-rev", Reference::Xdp, ToPod, "kernel-vxlan-decap"),
];

/// What a workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// UDP at the generator's maximum; `frame_len` = Ethernet frame without FCS (the
    /// inner frame for decap scenarios).
    Udp { frame_len: usize },
    /// iperf3 with this many parallel streams.
    Tcp { streams: u32 },
    /// UDP ping-pong, one request in flight.
    Latency,
}

#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    pub kind: WorkloadKind,
    /// Route churn alongside (podfwd scenarios only): [`CHURN_ROUTES`] peers replaced
    /// by as many others through SIGHUP reloads of the static file, as fast as podfwd
    /// applies them up to [`CHURN_RATE`] route changes per second; compared with the
    /// workload named here, run on the same cluster in the same round without churn.
    pub churn_of: Option<&'static str>,
}

impl Workload {
    /// Whether it is run for `sc` (the latency round trip covers both directions; route
    /// churn is podfwd's control plane).
    /// The limit scenarios measure UDP only: their forwarders rewrite MACs but route
    /// nothing, so the reverse one cannot carry a TCP or ping-pong conversation.
    pub fn applies_to(&self, sc: &Scenario) -> bool {
        let udp = matches!(self.kind, WorkloadKind::Udp { .. });
        !(self.kind == WorkloadKind::Latency && sc.direction == ToPod)
            && (self.churn_of.is_none() || sc.runs_podfwd())
            && (sc.reference.is_none() || (udp && self.churn_of.is_none()))
    }
}

/// Route changes per second the churn workloads aim at (issue 10's 1,000).
pub const CHURN_RATE: f64 = 1000.0;
/// Peers per churn set: each reload replaces one set by the other (2 x this many route
/// changes).
pub const CHURN_ROUTES: usize = 100;

pub const WORKLOADS: [Workload; 6] = [
    // 64 bytes on a wire with the FCS: 18 bytes of UDP payload.
    Workload {
        name: "udp-64B",
        kind: WorkloadKind::Udp { frame_len: 60 },
        churn_of: None,
    },
    // 1400 bytes of UDP payload (IP 1428 bytes: fits the overlay's 1450 pod MTU).
    Workload {
        name: "udp-1400B",
        kind: WorkloadKind::Udp { frame_len: 1442 },
        churn_of: None,
    },
    Workload {
        name: "tcp-1",
        kind: WorkloadKind::Tcp { streams: 1 },
        churn_of: None,
    },
    Workload {
        name: "tcp-4",
        kind: WorkloadKind::Tcp { streams: 4 },
        churn_of: None,
    },
    Workload {
        name: "latency",
        kind: WorkloadKind::Latency,
        churn_of: None,
    },
    Workload {
        name: "udp-64B-churn",
        kind: WorkloadKind::Udp { frame_len: 60 },
        churn_of: Some("udp-64B"),
    },
];

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error(transparent)]
    Lab(#[from] podfwd::lab::LabError),
    #[error(transparent)]
    Netns(#[from] podfwd::netns::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Msg(String),
    #[error("interrupted")]
    Interrupted,
}

type Result<T> = std::result::Result<T, BenchError>;

fn main() {
    let cli = Cli::parse();
    let (what, res) = match cli.cmd {
        Cmd::Gen(a) => ("gen", gen_main(&a)),
        Cmd::Echo(a) => (
            "echo",
            pingpong::echo(a.bind, a.cpu).map_err(|e| format!("{}: {e}", a.bind)),
        ),
        Cmd::Ping(a) => ("ping", ping_main(&a)),
        Cmd::Run(a) => ("run", run_main(&a).map_err(|e| e.to_string())),
        Cmd::LimitAfxdp(a) => ("limit-afxdp", limit_main(&a, Reference::AfXdp)),
        Cmd::LimitXdp(a) => ("limit-xdp", limit_main(&a, Reference::Xdp)),
    };
    if let Err(e) = res {
        eprintln!("podfwd-bench {what}: {e}");
        std::process::exit(1);
    }
}

fn gen_main(a: &GenArgs) -> std::result::Result<(), String> {
    let spec = gen::GenSpec {
        ifname: a.ifname.clone(),
        src_mac: gen::parse_mac(&a.src_mac)?,
        dst_mac: gen::parse_mac(&a.dst_mac)?,
        src_ip: gen::parse_ip(&a.src_ip)?,
        dst_ip: gen::parse_ip(&a.dst_ip)?,
        frame_len: a.frame_len,
        flows: a.flows,
        secs: a.secs,
        cpu: a.cpu,
        vxlan: a
            .vxlan_outer
            .as_deref()
            .map(gen::VxlanOuter::parse)
            .transpose()?,
    };
    if spec.frame_len + spec.vxlan.map_or(0, |_| gen::VXLAN_OVERHEAD) > 1514 {
        return Err(format!(
            "--frame-len {} does not fit a 1500-byte MTU{}",
            spec.frame_len,
            if spec.vxlan.is_some() {
                " once encapsulated"
            } else {
                ""
            }
        ));
    }
    let rep = gen::run(&spec).map_err(|e| format!("{}: {e}", spec.ifname))?;
    println!(
        "{}",
        serde_json::to_string(&rep).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Runs a reference forwarder until SIGINT/SIGTERM.
fn limit_main(a: &LimitArgs, kind: Reference) -> std::result::Result<(), String> {
    let mac = |s: &str| gen::parse_mac(s);
    let spec = limit::LimitSpec {
        ifaces: [a.from.clone(), a.to.clone()],
        macs: [
            limit::MacPair {
                dst: mac(&a.dst_mac)?,
                src: mac(&a.src_mac)?,
            },
            limit::MacPair {
                dst: mac(&a.back_dst_mac)?,
                src: mac(&a.back_src_mac)?,
            },
        ],
        cpu: a.cpu,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    match kind {
        Reference::AfXdp => {
            let t = limit::run_afxdp(&spec, &stop)?;
            println!("{}", serde_json::to_string(&t).map_err(|e| e.to_string())?);
        }
        Reference::Xdp => limit::run_xdp(&spec, &stop)?,
    }
    Ok(())
}

fn ping_main(a: &PingArgs) -> std::result::Result<(), String> {
    let rep = pingpong::ping(&pingpong::PingSpec {
        to: a.to,
        rate: a.rate,
        secs: a.secs,
        cpu: a.cpu,
        warmup: a.warmup,
        timeout: Duration::from_millis(a.timeout_ms),
        payload: a.payload,
    })
    .map_err(|e| format!("{}: {e}", a.to))?;
    println!(
        "{}",
        serde_json::to_string(&rep).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Everything a run needs besides the scenario.
struct Ctx {
    args: RunArgs,
    secs: f64,
    podfwd: PathBuf,
    me: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Ctx {
    fn check(&self) -> Result<()> {
        // Relaxed: a flag polled between steps.
        if self.stop.load(Ordering::Relaxed) {
            Err(BenchError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Sleeps, waking early (with an error) on SIGINT/SIGTERM.
    fn sleep(&self, d: Duration) -> Result<()> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.check()?;
            std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
        }
        self.check()
    }
}

/// Looks names up in a table; unknown names are an error that lists the known ones.
fn pick<T: Copy>(
    names: &[String],
    table: &[T],
    name_of: fn(&T) -> &'static str,
    what: &str,
) -> Result<Vec<T>> {
    if names.is_empty() {
        return Ok(table.to_vec());
    }
    names
        .iter()
        .map(|n| {
            table
                .iter()
                .find(|t| name_of(t) == n)
                .copied()
                .ok_or_else(|| {
                    BenchError::Msg(format!(
                        "unknown {what} {n:?}; known: {}",
                        table.iter().map(name_of).collect::<Vec<_>>().join(", ")
                    ))
                })
        })
        .collect()
}

fn run_main(a: &RunArgs) -> Result<()> {
    let (runs, secs) = if a.quick { (1, 1.0) } else { (5, 5.0) };
    let runs = a.runs.unwrap_or(runs);
    let secs = a.secs.unwrap_or(secs);
    if runs == 0 || !(secs > 0.0 && secs <= 3600.0) {
        return Err(BenchError::Msg(format!(
            "--runs must be at least 1 and --secs in (0, 3600] (got {runs} and {secs})"
        )));
    }
    let scenarios = pick(&a.scenarios, &SCENARIOS, |s| s.name, "scenario")?;
    let workloads = pick(&a.workloads, &WORKLOADS, |w| w.name, "workload")?;
    let plan = plan(a, &workloads)?;
    // Before anything is measured: the charts need a font.
    charts::load_font(a.font.as_deref()).map_err(BenchError::Msg)?;
    podfwd::netns::require_root().map_err(BenchError::Msg)?;
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.fwd_cpu >= ncpu || a.gen_cpu >= ncpu || a.fwd_cpu == a.gen_cpu {
        return Err(BenchError::Msg(format!(
            "needs two distinct CPUs {} and {} (this machine has {ncpu})",
            a.gen_cpu, a.fwd_cpu
        )));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let me = std::env::current_exe()?;
    let podfwd = match &a.podfwd {
        Some(p) => p.clone(),
        None => me.with_file_name("podfwd"),
    };
    if !podfwd.exists() {
        return Err(BenchError::Msg(format!(
            "podfwd binary not found at {} (cargo build --release, or --podfwd)",
            podfwd.display()
        )));
    }
    let load_before = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    let ctx = Ctx {
        args: a.clone(),
        secs,
        podfwd,
        me,
        stop,
    };
    let started = Instant::now();
    eprintln!(
        "podfwd-bench: {} round(s) x {} set-up(s) x {} scenario(s), about {:.0} min",
        runs,
        plan.len(),
        scenarios.len(),
        estimate_secs(&plan, &scenarios, runs, secs) / 60.0
    );
    // (set-up index in the plan, scenario, workload, run)
    let mut samples: Vec<(usize, Scenario, Workload, RunSample)> = Vec::new();
    // A failed scenario or workload is reported and the bench goes on; the results of
    // what did run are written either way, and the exit status says something failed.
    let mut failures: Vec<String> = Vec::new();
    let mut interrupted = false;
    // Rounds interleave set-ups and scenarios (set-up 1: A B C, set-up 2: A B C, ...,
    // then again), so slow drifts of the shared machine hit all of them, and a podfwd
    // scenario runs next to its kernel baseline and limit of the same set-up.
    let sweep = plan.len() > 1;
    'rounds: for r in 0..runs {
        for (si, (setup, wls)) in plan.iter().enumerate() {
            for sc in &scenarios {
                if !wls.iter().any(|w| w.applies_to(sc)) {
                    continue;
                }
                let what = if sweep {
                    format!("[{}] {}", setup.name, sc.name)
                } else {
                    sc.name.to_string()
                };
                eprintln!("podfwd-bench: run {}/{runs} {what}", r + 1);
                let b = match Bench::prepare(&ctx, sc, setup) {
                    Ok(b) => b,
                    Err(BenchError::Interrupted) => {
                        interrupted = true;
                        break 'rounds;
                    }
                    Err(e) => {
                        eprintln!("  FAILED to build the scenario: {e}");
                        failures.push(format!("run {} {what}: {e}", r + 1));
                        continue;
                    }
                };
                for wl in wls.iter().filter(|w| w.applies_to(sc)) {
                    match ctx.check().and_then(|()| b.run(&ctx, sc, wl, r)) {
                        Ok(s) => {
                            eprintln!("  {:<9} {}", wl.name, s.summary(a.fwd_cpu));
                            samples.push((si, *sc, *wl, s));
                        }
                        Err(BenchError::Interrupted) => {
                            interrupted = true;
                            break 'rounds;
                        }
                        Err(e) => {
                            eprintln!("  {:<9} FAILED: {e}", wl.name);
                            failures.push(format!("run {} {what} {}: {e}", r + 1, wl.name));
                        }
                    }
                }
            }
        }
    }
    if samples.is_empty() {
        return Err(if interrupted {
            BenchError::Interrupted
        } else {
            BenchError::Msg(format!("nothing was measured:\n{}", failures.join("\n")))
        });
    }
    let settings = report::Settings {
        runs,
        secs,
        flows: plan[0].0.flows,
        latency_rate: a.latency_rate,
        fwd_cpu: a.fwd_cpu,
        gen_cpu: a.gen_cpu,
        quick: a.quick,
        setup: plan[0].0.to_report(),
        setups: plan.iter().map(|(s, _)| s.name.to_string()).collect(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        load_before,
        load_after: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
        wall_secs: started.elapsed().as_secs_f64(),
    };
    // Records per set-up: baselines, limits and ratios only within it (and per round).
    let mut records = Vec::new();
    for (si, (setup, wls)) in plan.iter().enumerate() {
        let mine: Vec<(Scenario, Workload, RunSample)> = samples
            .iter()
            .filter(|(i, ..)| *i == si)
            .map(|(_, sc, wl, r)| (*sc, *wl, r.clone()))
            .collect();
        let settings = report::Settings {
            flows: setup.flows,
            setup: setup.to_report(),
            ..settings.clone()
        };
        records.extend(report::records(&scenarios, wls, &mine, &settings));
    }
    let paths = report::write(&a.out, &records)?;
    for p in paths {
        eprintln!("podfwd-bench: wrote {}", p.display());
    }
    print!("{}", report::markdown(&records));
    if interrupted {
        return Err(BenchError::Msg(
            "interrupted; the results above are partial".into(),
        ));
    }
    if !failures.is_empty() {
        return Err(BenchError::Msg(format!(
            "{} scenario run(s) or workload(s) failed (their runs are missing above):\n{}",
            failures.len(),
            failures.join("\n")
        )));
    }
    Ok(())
}

/// The set-ups to measure, each with its workloads: `--setups` (the first with
/// `--workloads`, the others with `--sweep-workloads` if given), or the one set-up of
/// the single set-up flags.
fn plan(a: &RunArgs, workloads: &[Workload]) -> Result<Vec<(SetupSpec, Vec<Workload>)>> {
    if a.setups.is_empty() {
        let s = SetupSpec::from_flags(
            a.qdisc,
            a.flows,
            a.udp_gro_fwd,
            a.defer_hard_irqs,
            a.gro_flush_timeout,
        );
        return Ok(vec![(s, workloads.to_vec())]);
    }
    let setups = setups::parse(&a.setups).map_err(BenchError::Msg)?;
    let sweep_workloads = if a.sweep_workloads.is_empty() {
        workloads.to_vec()
    } else {
        pick(&a.sweep_workloads, &WORKLOADS, |w| w.name, "workload")?
    };
    Ok(setups
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let w = if i == 0 { workloads } else { &sweep_workloads };
            (s, w.to_vec())
        })
        .collect())
}

/// Rough wall time of a run (seconds): per scenario, a cluster; per workload its window
/// and what surrounds it (UDP: 1 s of warm-up and 1 s of the generator's tail).
fn estimate_secs(
    plan: &[(SetupSpec, Vec<Workload>)],
    scenarios: &[Scenario],
    runs: usize,
    secs: f64,
) -> f64 {
    let mut t = 0.0;
    for (_, wls) in plan {
        for sc in scenarios {
            let mine: Vec<&Workload> = wls.iter().filter(|w| w.applies_to(sc)).collect();
            if mine.is_empty() {
                continue;
            }
            t += 0.8;
            for w in mine {
                t += match w.kind {
                    WorkloadKind::Udp { .. } => secs + 2.6,
                    WorkloadKind::Tcp { .. } => secs.ceil().max(1.0) + 0.8,
                    WorkloadKind::Latency => secs + 0.6,
                };
            }
        }
    }
    t * runs as f64
}

/// Pids of the threaded-NAPI kernel threads (`napi/<dev>-<id>`, name truncated).
fn napi_threads() -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                if comm.starts_with("napi/") {
                    out.insert(pid);
                }
            }
        }
    }
    out
}

/// Turns on threaded NAPI for `dev` in `ns` and pins its new kthreads to `cpu`; returns
/// their pids. The device must already run NAPI (GRO on, or XDP attached).
fn threaded_napi(ns: &Netns, dev: &str, cpu: usize) -> Result<Vec<i32>> {
    let before = napi_threads();
    ns.exec(&[
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{dev}/threaded"),
    ])?;
    let mut new = Vec::new();
    podfwd::netns::wait_until(Duration::from_secs(2), || {
        new = napi_threads().difference(&before).copied().collect();
        !new.is_empty()
    });
    if new.is_empty() {
        return Err(BenchError::Msg(format!(
            "no napi/{dev} kthread appeared after enabling threaded NAPI"
        )));
    }
    for &pid in &new {
        gen::pin_pid(pid, cpu)?;
    }
    Ok(new)
}

/// Interface counters as /proc/<pid>/net/dev shows them in that pid's namespace.
#[derive(Debug, Default, Clone, Copy)]
struct DevCounters {
    rx_packets: u64,
    rx_dropped: u64,
    tx_packets: u64,
    tx_dropped: u64,
}

fn dev_counters(pid: u32, dev: &str) -> Result<DevCounters> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() != dev {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        if v.len() >= 16 {
            return Ok(DevCounters {
                rx_packets: v[1],
                rx_dropped: v[3],
                tx_packets: v[9],
                tx_dropped: v[11],
            });
        }
    }
    Err(BenchError::Msg(format!("{dev} not in /proc/{pid}/net/dev")))
}

/// (busy, total) jiffies of one CPU from /proc/stat.
fn cpu_jiffies(cpu: usize) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat")?;
    let key = format!("cpu{cpu}");
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some(key.as_str()) {
            continue;
        }
        let v: Vec<u64> = it.filter_map(|s| s.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest is inside user)
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        return Ok((total - idle, total));
    }
    Err(BenchError::Msg(format!("{key} not in /proc/stat")))
}

/// CPU time (clock ticks, user + system) of the given tasks and, for each process
/// pid in `procs`, all of its threads.
fn task_ticks(tasks: &[i32], procs: &[u32]) -> u64 {
    let stat_ticks = |path: &str| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                // Fields after the comm: state is [0]; utime and stime are fields 14, 15.
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0)
    };
    let mut t: u64 = tasks
        .iter()
        .map(|p| stat_ticks(&format!("/proc/{p}/stat")))
        .sum();
    for p in procs {
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for e in rd.flatten() {
                t += stat_ticks(&format!("{}/stat", e.path().display()));
            }
        }
    }
    t
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// What node A's CPU and podfwd had done at one instant.
struct CpuSnap {
    at: Instant,
    fwd_tasks: u64,
    fwd_cpu: (u64, u64),
    gen_cpu: (u64, u64),
    podfwd: Option<BTreeMap<String, u64>>,
}

/// Route churn on node A's podfwd: its static file alternates between two sets of
/// [`CHURN_ROUTES`] extra peers (10.244.20.0/24 .. and 10.244.(20 + CHURN_ROUTES).0/24 ..,
/// node IPs on the underlay that answer no ARP), each rewrite followed by SIGHUP. The next
/// rewrite waits until `podfwd routes` shows the set applied and until the pace of
/// [`CHURN_RATE`] allows it, so the rate reported is of route changes podfwd applied.
struct Churner {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<std::result::Result<f64, String>>,
}

impl Churner {
    fn start(c: &Cluster, mode: Mode) -> Churner {
        let stop = Arc::new(AtomicBool::new(false));
        let (path, sock, base) = (c.config_path(0), c.socket_path(0), c.config_toml(0));
        let pid = c.podfwd_pid(0);
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || -> std::result::Result<f64, String> {
            let pid = pid.ok_or("route churn: podfwd is not running on node A")?;
            let set = |which: usize| -> (String, Vec<String>) {
                let mut toml = base.clone();
                let mut prefixes = Vec::new();
                for j in 0..CHURN_ROUTES {
                    let n = 20 + which * CHURN_ROUTES + j;
                    let prefix = format!("10.244.{n}.0/24");
                    toml += &format!(
                        "\n[[peers]]\npod_cidr = \"{prefix}\"\nnode_ip = \"10.168.0.{}\"\n",
                        10 + (n % 200)
                    );
                    if mode != Mode::HostGw {
                        toml += &format!("vtep_mac = \"0e:00:00:00:02:{:02x}\"\n", n % 256);
                    }
                    prefixes.push(prefix);
                }
                (toml, prefixes)
            };
            let sets = [set(0), set(1)];
            let t0 = Instant::now();
            let mut changes = 0usize;
            let mut round = 0usize;
            while !stop2.load(Ordering::Relaxed) {
                let (toml, prefixes) = &sets[round % 2];
                std::fs::write(&path, toml).map_err(|e| format!("route churn: {e}"))?;
                // SAFETY: kill(2) with a pid of a process we started; no memory involved.
                if unsafe { libc::kill(pid as i32, libc::SIGHUP) } != 0 {
                    return Err(format!(
                        "route churn: SIGHUP: {}",
                        std::io::Error::last_os_error()
                    ));
                }
                let applied = podfwd::netns::wait_until(Duration::from_secs(5), || {
                    podfwd::control::query_routes(&sock).is_ok_and(|r| {
                        let have: BTreeSet<String> =
                            r.routes.iter().map(|r| r.prefix.to_string()).collect();
                        prefixes.iter().all(|p| have.contains(p))
                    })
                });
                if !applied {
                    return Err("route churn: a reload was not applied within 5 s".into());
                }
                // The first round only adds a set; every later one replaces one.
                changes += if round == 0 {
                    CHURN_ROUTES
                } else {
                    2 * CHURN_ROUTES
                };
                round += 1;
                let due = Duration::from_secs_f64(changes as f64 / CHURN_RATE);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let rate = changes as f64 / t0.elapsed().as_secs_f64();
            // Back to the lab's own peers before the next workload starts.
            std::fs::write(&path, &base).map_err(|e| format!("route churn: {e}"))?;
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGHUP) };
            let gone = podfwd::netns::wait_until(Duration::from_secs(5), || {
                podfwd::control::query_routes(&sock).is_ok_and(|r| {
                    r.routes.iter().all(|r| {
                        let p = r.prefix.to_string();
                        !sets.iter().any(|(_, set)| set.contains(&p))
                    })
                })
            });
            if !gone {
                return Err("route churn: the lab's peers were not restored within 5 s".into());
            }
            Ok(rate)
        });
        Churner { stop, thread }
    }

    /// Stops the churn; the route changes per second applied.
    fn stop(self) -> Result<f64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| BenchError::Msg("route churn: the thread panicked".into()))?
            .map_err(BenchError::Msg)
    }
}

/// A scenario's cluster, ready for workloads.
struct Bench {
    // Declared first, dropped first: processes killed, then the namespaces removed.
    c: Cluster,
    /// Node A's NAPI kthreads (pinned to the forwarding CPU).
    napi_fwd: Vec<i32>,
    /// Every other veth end's NAPI kthread (pinned to the generator CPU).
    napi_other: Vec<i32>,
    /// A process in podA, node A and node B, to read /proc/<pid>/net/dev through.
    probe: [u32; 3],
    /// The reference forwarder on node A (limit scenarios).
    reference: Option<u32>,
    /// The set-up it was built with.
    setup: SetupSpec,
}

impl Bench {
    fn prepare(ctx: &Ctx, sc: &Scenario, setup: &SetupSpec) -> Result<Bench> {
        let a = &ctx.args;
        ctx.check()?;
        let fwd_cores: &'static [usize] = Box::leak(vec![a.fwd_cpu].into_boxed_slice());
        let gen_cores: &'static [usize] = Box::leak(vec![a.gen_cpu].into_boxed_slice());
        let spec = ClusterSpec {
            mode: sc.mode,
            nodes: sc.nodes,
            queues: 1,
            cores: [fwd_cores, gen_cores],
            // tun.offload as configured by default (on).
            ..ClusterSpec::default()
        };
        // Dropped on every way out (error, Ctrl-C): processes killed, namespaces removed.
        let mut c = Cluster::build_with_backend("bench", spec, sc.backend)?;
        let (sa, sb) = (&SIDES[0], &SIDES[1]);
        // The UDP sinks answer no ARP: node A gets static entries for node B and podA,
        // podA one for its gateway.
        c.nodes[0].neigh_permanent(sb.node_ip, sb.node_ul_mac, sa.ul_if)?;
        c.nodes[0].neigh_permanent(sa.pod_ip, sa.pod_mac, sa.pod_if)?;
        c.pods[0].neigh_permanent(sa.pod_gw, sa.node_pod_mac, "eth0")?;
        // GRO on: veth runs NAPI (threaded below). TSO off: veth hands a frame to the
        // receiver's NAPI only if the sending device has no TSO (veth_skb_is_eligible_for_gro);
        // otherwise the receiver's work runs in the sender's context, on the sender's CPU.
        // GSO stays on, so a TCP sender's stack still segments super-packets, as a NIC does.
        for (i, (ns, dev)) in Self::ends(&c).into_iter().enumerate() {
            ns.exec(&["ethtool", "-K", dev, "gro", "on", "tso", "off"])?;
            // A qdisc (the default set-up): veth stops its queue when the peer's ring is
            // full, so TCP gets back-pressure instead of drops (with noqueue: 10^5
            // retransmits per second). `--qdisc noqueue`: veth's own default.
            match setup.qdisc.of(dev) {
                Qdisc::Pfifo => ns.exec(&[
                    "tc", "qdisc", "replace", "dev", dev, "root", "pfifo", "limit", "1000",
                ])?,
                _ => ns.exec(&["tc", "qdisc", "replace", "dev", dev, "root", "noqueue"])?,
            };
            // ends() lists node A's two devices first: the set-up variants are node A's.
            if i < 2 {
                if setup.udp_gro_fwd {
                    ns.exec(&["ethtool", "-K", dev, "rx-udp-gro-forwarding", "on"])?;
                }
                let sysfs = format!("/sys/class/net/{dev}");
                ns.exec(&[
                    "sh",
                    "-c",
                    &format!(
                        "echo {} > {sysfs}/napi_defer_hard_irqs && echo {} > {sysfs}/gro_flush_timeout",
                        setup.defer_hard_irqs, setup.gro_flush_timeout
                    ),
                ])?;
            }
        }
        let mut reference = None;
        match sc.reference {
            Some(r) => reference = Some(Self::start_reference(ctx, &c, sc, r)?),
            None if sc.nodes[0] == NodeKind::Podfwd => {
                c.start_podfwd(0, &ctx.podfwd)?;
            }
            None => {}
        }
        let mut napi_fwd = Vec::new();
        let mut napi_other = Vec::new();
        for (i, (ns, dev)) in Self::ends(&c).into_iter().enumerate() {
            // ends() lists node A's two devices first.
            if i < 2 {
                napi_fwd.extend(threaded_napi(ns, dev, a.fwd_cpu)?);
            } else {
                napi_other.extend(threaded_napi(ns, dev, a.gen_cpu)?);
            }
        }
        let probe = |ns: &Netns| ns.spawn(&["sleep", "3600"]);
        let probe = [probe(&c.pods[0])?, probe(&c.nodes[0])?, probe(&c.nodes[1])?];
        Ok(Bench {
            c,
            napi_fwd,
            napi_other,
            probe,
            reference,
            setup: *setup,
        })
    }

    /// Starts `podfwd-bench limit-afxdp|limit-xdp` in node A and waits until it has
    /// attached; returns its pid (killed with the namespace).
    fn start_reference(ctx: &Ctx, c: &Cluster, sc: &Scenario, r: Reference) -> Result<u32> {
        let (sa, sb) = (&SIDES[0], &SIDES[1]);
        // Toward podB: node B's underlay MAC from node A's; toward podA: podA's MAC from
        // node A's pod-side veth. The measured direction's ingress goes first.
        let to_b = [sb.node_ul_mac, sa.node_ul_mac];
        let to_a = [sa.pod_mac, sa.node_pod_mac];
        let (from, to, fwd, back) = match sc.direction {
            FromPod => (sa.pod_if, sa.ul_if, to_b, to_a),
            ToPod => (sa.ul_if, sa.pod_if, to_a, to_b),
        };
        let me = ctx.me.display().to_string();
        let cmd = match r {
            Reference::AfXdp => "limit-afxdp",
            Reference::Xdp => "limit-xdp",
        };
        let cpu = ctx.args.fwd_cpu.to_string();
        let log = std::env::temp_dir().join(format!("{}-limit.log", c.nodes[0].name()));
        let _ = std::fs::remove_file(&log);
        let pid = c.nodes[0].spawn_logged(
            &[
                &me,
                cmd,
                "--from",
                from,
                "--to",
                to,
                "--dst-mac",
                fwd[0],
                "--src-mac",
                fwd[1],
                "--back-dst-mac",
                back[0],
                "--back-src-mac",
                back[1],
                "--cpu",
                &cpu,
            ],
            &log,
        )?;
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        let up = podfwd::netns::wait_until(Duration::from_secs(10), || {
            read().lines().any(|l| l == "ready")
                || !podfwd::netns::pid_alive(pid as i32)
                || is_zombie(pid)
        });
        if !up || !read().lines().any(|l| l == "ready") {
            c.nodes[0].kill(pid);
            return Err(BenchError::Msg(format!(
                "{cmd} on node A did not come up:\n{}",
                read()
            )));
        }
        Ok(pid)
    }

    /// Every veth end of the cluster: node A's two first.
    fn ends(c: &Cluster) -> [(&Netns, &'static str); 6] {
        let (sa, sb) = (&SIDES[0], &SIDES[1]);
        [
            (&c.nodes[0], sa.pod_if),
            (&c.nodes[0], sa.ul_if),
            (&c.pods[0], "eth0"),
            (&c.nodes[1], sb.ul_if),
            (&c.nodes[1], sb.pod_if),
            (&c.pods[1], "eth0"),
        ]
    }

    fn snap(&self, ctx: &Ctx) -> Result<CpuSnap> {
        let procs: Vec<u32> = self
            .c
            .podfwd_pid(0)
            .into_iter()
            .chain(self.reference)
            .collect();
        Ok(CpuSnap {
            at: Instant::now(),
            fwd_tasks: task_ticks(&self.napi_fwd, &procs),
            fwd_cpu: cpu_jiffies(ctx.args.fwd_cpu)?,
            gen_cpu: cpu_jiffies(ctx.args.gen_cpu)?,
            podfwd: self
                .c
                .podfwd_pid(0)
                .and_then(|_| self.c.stats(0).ok())
                .map(|s| {
                    // The classifier's split over node A's interfaces: frames podfwd kept
                    // (to the workers, or finished by the xdp program) and frames to the
                    // kernel.
                    let mut total = s.total;
                    if !s.classifier.is_empty() {
                        let (mut fast, mut slow) = (0, 0);
                        for c in s.classifier.values() {
                            let (f, k) = podfwd::control::classifier_split(c);
                            fast += f;
                            slow += k;
                        }
                        total.insert("xdp_redirected".into(), fast);
                        total.insert("xdp_to_kernel".into(), slow);
                    }
                    total
                }),
        })
    }

    fn run(&self, ctx: &Ctx, sc: &Scenario, wl: &Workload, run: usize) -> Result<RunSample> {
        let churn = wl.churn_of.map(|_| Churner::start(&self.c, sc.mode));
        let measured = match wl.kind {
            WorkloadKind::Udp { frame_len } => self.udp(ctx, sc, frame_len),
            WorkloadKind::Tcp { streams } => self.tcp(ctx, sc, streams),
            WorkloadKind::Latency => self.latency(ctx),
        };
        let churned = churn.map(Churner::stop).transpose()?;
        let (s0, s1, measured) = measured?;
        let dt = s1.at.duration_since(s0.at).as_secs_f64();
        let busy = |x: (u64, u64), y: (u64, u64)| {
            let t = (y.1 - x.1).max(1) as f64;
            (y.0 - x.0) as f64 / t
        };
        let cpu = CpuUse {
            secs: dt,
            fwd_cpu_busy: busy(s0.fwd_cpu, s1.fwd_cpu),
            gen_cpu_busy: busy(s0.gen_cpu, s1.gen_cpu),
            fwd_task_cpu: (s1.fwd_tasks - s0.fwd_tasks) as f64 / clock_ticks_per_sec() / dt,
            napi_kthreads: self.napi_fwd.len() + self.napi_other.len(),
        };
        let podfwd = match (&s0.podfwd, &s1.podfwd) {
            (Some(x), Some(y)) => Some(
                y.iter()
                    .map(|(k, v)| (k.clone(), v - x.get(k).copied().unwrap_or(0)))
                    .filter(|(k, v)| *v > 0 || !k.starts_with("drop_"))
                    .collect(),
            ),
            _ => None,
        };
        let mut sample = RunSample::new(run, cpu, measured, podfwd);
        if let Some(rate) = churned {
            sample.metrics.insert("route_changes_per_s", rate);
        }
        Ok(sample)
    }

    /// UDP at the generator's maximum into an XDP_DROP sink.
    fn udp(
        &self,
        ctx: &Ctx,
        sc: &Scenario,
        frame_len: usize,
    ) -> Result<(CpuSnap, CpuSnap, Measured)> {
        let a = &ctx.args;
        let c = &self.c;
        let (sa, sb) = (&SIDES[0], &SIDES[1]);
        let [p_pod, p_a, p_b] = self.probe;
        let outer;
        // (generator namespace, its device, its probe; sink ditto; node A's egress)
        let (gen_ns, gen_if, gen_probe, sink_ns, sink_if, sink_probe, out_if, mut args) =
            match sc.direction {
                FromPod => (
                    &c.pods[0],
                    "eth0",
                    p_pod,
                    &c.nodes[1],
                    sb.ul_if,
                    p_b,
                    sa.ul_if,
                    vec![
                        "--src-mac",
                        sa.pod_mac,
                        "--dst-mac",
                        sa.node_pod_mac,
                        "--src-ip",
                        sa.pod_ip,
                        "--dst-ip",
                        sb.pod_ip,
                    ],
                ),
                ToPod => {
                    outer = format!(
                        "{},{},{},{}",
                        sb.node_ul_mac, sa.node_ul_mac, sb.node_ip, sa.node_ip
                    );
                    (
                        &c.nodes[1],
                        sb.ul_if,
                        p_b,
                        &c.pods[0],
                        "eth0",
                        p_pod,
                        sa.pod_if,
                        vec![
                            "--src-mac",
                            sb.vtep_mac,
                            "--dst-mac",
                            sa.vtep_mac,
                            "--src-ip",
                            sb.pod_ip,
                            "--dst-ip",
                            sa.pod_ip,
                            "--vxlan-outer",
                            &outer,
                        ],
                    )
                }
            };
        let _sink = sink::XdpDrop::attach(sink_ns.name(), sink_if)?;
        let warmup = 1.0;
        let gen_secs = warmup + ctx.secs + 1.0;
        let log = std::env::temp_dir().join(format!("{}-gen.log", gen_ns.name()));
        let _ = std::fs::remove_file(&log);
        let me = ctx.me.display().to_string();
        let (frame_len, flows, gen_secs, cpu) = (
            frame_len.to_string(),
            self.setup.flows.to_string(),
            gen_secs.to_string(),
            a.gen_cpu.to_string(),
        );
        args.extend_from_slice(&[
            "--frame-len",
            &frame_len,
            "--flows",
            &flows,
            "--secs",
            &gen_secs,
            "--cpu",
            &cpu,
        ]);
        let mut cmd = vec![me.as_str(), "gen", "--ifname", gen_if];
        cmd.extend_from_slice(&args);
        let gen_pid = gen_ns.spawn_logged(&cmd, &log)?;
        ctx.sleep(Duration::from_secs_f64(warmup))?;
        let counters = || -> Result<_> {
            Ok((
                dev_counters(gen_probe, gen_if)?,
                dev_counters(sink_probe, sink_if)?,
                dev_counters(p_a, out_if)?,
            ))
        };
        let (g0, k0, o0) = counters()?;
        let s0 = self.snap(ctx)?;
        ctx.sleep(Duration::from_secs_f64(ctx.secs))?;
        let (g1, k1, o1) = counters()?;
        let s1 = self.snap(ctx)?;
        // The generator ends by itself a second after the window.
        let gen_alive = || podfwd::netns::pid_alive(gen_pid as i32) && !is_zombie(gen_pid);
        podfwd::netns::wait_until(Duration::from_secs(10), || !gen_alive());
        gen_ns.kill(gen_pid);
        let gen_out = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let gen_rep: gen::GenReport = gen_out
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| BenchError::Msg(format!("generator failed:\n{gen_out}")))?;
        let dt = s1.at.duration_since(s0.at).as_secs_f64();
        let sent = g1.tx_packets - g0.tx_packets;
        let received = k1.rx_packets - k0.rx_packets;
        Ok((
            s0,
            s1,
            Measured::Udp(report::UdpRun {
                offered_pps: sent as f64 / dt,
                sink_pps: received as f64 / dt,
                loss: if sent > 0 {
                    1.0 - (received as f64 / sent as f64).min(1.0)
                } else {
                    0.0
                },
                sent,
                received,
                fwd_out_tx_dropped: o1.tx_dropped - o0.tx_dropped,
                sink_rx_dropped: k1.rx_dropped - k0.rx_dropped,
                gen_retries: gen_rep.retries,
            }),
        ))
    }

    /// iperf3 between the pods, `streams` parallel streams, through node A.
    fn tcp(&self, ctx: &Ctx, sc: &Scenario, streams: u32) -> Result<(CpuSnap, CpuSnap, Measured)> {
        let c = &self.c;
        let (client, server, server_ip) = match sc.direction {
            FromPod => (&c.pods[0], &c.pods[1], SIDES[1].pod_ip),
            ToPod => (&c.pods[1], &c.pods[0], SIDES[0].pod_ip),
        };
        let cpu = ctx.args.gen_cpu.to_string();
        let secs = (ctx.secs.ceil() as u64).max(1).to_string();
        let streams_s = streams.to_string();
        let log = std::env::temp_dir().join(format!("{}-iperf3.log", server.name()));
        let _ = std::fs::remove_file(&log);
        let srv = server.spawn_logged(
            &["taskset", "-c", &cpu, "iperf3", "-s", "-1", "-B", server_ip],
            &log,
        )?;
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            ctx.sleep(Duration::from_millis(300))?;
            let s0 = self.snap(ctx)?;
            let out = client.exec_unchecked(&[
                "taskset", "-c", &cpu, "iperf3", "-c", server_ip, "-t", &secs, "-P", &streams_s,
                "-J",
            ])?;
            let s1 = self.snap(ctx)?;
            let text = String::from_utf8_lossy(&out.stdout);
            match parse_iperf3(&text) {
                Ok(m) => break Ok((s0, s1, m)),
                // The server may not listen yet.
                Err(e) if attempt < 5 && text.contains("refused") => {
                    let _ = e;
                    continue;
                }
                Err(e) => {
                    break Err(BenchError::Msg(format!(
                        "iperf3 -c {server_ip} -P {streams}: {e}\n{}server log:\n{}",
                        String::from_utf8_lossy(&out.stderr),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )))
                }
            }
        };
        server.kill(srv);
        let _ = std::fs::remove_file(&log);
        let (s0, s1, mut m) = result?;
        if let Measured::Tcp(t) = &mut m {
            t.streams = streams;
        }
        Ok((s0, s1, m))
    }

    /// UDP ping-pong podA -> podB and back, one request in flight.
    fn latency(&self, ctx: &Ctx) -> Result<(CpuSnap, CpuSnap, Measured)> {
        let c = &self.c;
        let to = format!("{}:7777", SIDES[1].pod_ip);
        let me = ctx.me.display().to_string();
        let cpu = ctx.args.gen_cpu.to_string();
        let log = std::env::temp_dir().join(format!("{}-echo.log", c.pods[1].name()));
        let _ = std::fs::remove_file(&log);
        let srv = c.pods[1].spawn_logged(&[&me, "echo", "--bind", &to, "--cpu", &cpu], &log)?;
        ctx.sleep(Duration::from_millis(200))?;
        let s0 = self.snap(ctx)?;
        let out = c.pods[0].exec_unchecked(&[
            &me,
            "ping",
            "--to",
            &to,
            "--rate",
            &ctx.args.latency_rate.to_string(),
            "--secs",
            &ctx.secs.to_string(),
            "--cpu",
            &cpu,
        ])?;
        let s1 = self.snap(ctx)?;
        c.pods[1].kill(srv);
        let text = String::from_utf8_lossy(&out.stdout);
        let rep: pingpong::PingReport = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| {
                BenchError::Msg(format!(
                    "ping-pong client failed: {}{}\necho server log:\n{}",
                    text,
                    String::from_utf8_lossy(&out.stderr),
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))
            })?;
        let _ = std::fs::remove_file(&log);
        Ok((
            s0,
            s1,
            Measured::Latency(report::LatencyRun {
                rate: ctx.args.latency_rate,
                sent: rep.sent,
                received: rep.received,
                lost: rep.lost,
                p50_us: rep.p50_us,
                p90_us: rep.p90_us,
                p99_us: rep.p99_us,
                p999_us: rep.p999_us,
                max_us: rep.max_us,
            }),
        ))
    }
}

/// The receiver's throughput and the sender's retransmits from `iperf3 -c ... -J`.
fn parse_iperf3(text: &str) -> std::result::Result<Measured, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("no JSON from iperf3 ({e}): {text}"))?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return Err(format!("iperf3: {err}"));
    }
    let end = &v["end"];
    let num = |p: &str| {
        end.pointer(p)
            .and_then(|x| x.as_f64())
            .ok_or_else(|| format!("iperf3 JSON lacks end{p}"))
    };
    Ok(Measured::Tcp(report::TcpRun {
        streams: 0,
        gbps: num("/sum_received/bits_per_second")? / 1e9,
        sender_gbps: num("/sum_sent/bits_per_second")? / 1e9,
        retransmits: num("/sum_sent/retransmits").unwrap_or(0.0) as u64,
        received_bytes: num("/sum_received/bytes")? as u64,
    }))
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf3_json_gives_receiver_throughput_and_retransmits() {
        let j = r#"{"start":{},"end":{"sum_sent":{"bytes":1000,"bits_per_second":2.5e9,"retransmits":7},
            "sum_received":{"bytes":990,"bits_per_second":2.4e9}}}"#;
        let Ok(Measured::Tcp(t)) = parse_iperf3(j) else {
            panic!("parses");
        };
        assert_eq!(t.gbps, 2.4);
        assert_eq!(t.retransmits, 7);
        assert_eq!(t.received_bytes, 990);
        let e = parse_iperf3(
            r#"{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}"#,
        );
        assert!(e.unwrap_err().contains("refused"));
        assert!(parse_iperf3("iperf3: error").is_err());
        assert!(parse_iperf3(r#"{"end":{}}"#)
            .unwrap_err()
            .contains("sum_received"));
    }

    #[test]
    fn every_podfwd_scenario_has_a_kernel_baseline_in_the_same_direction() {
        for s in SCENARIOS {
            match s.baseline {
                Some(b) => {
                    let base = SCENARIOS
                        .iter()
                        .find(|x| x.name == b)
                        .expect("baseline exists");
                    assert_eq!(base.direction, s.direction, "{}", s.name);
                    // A limit forwards in a host-gw cluster whatever its kernel baseline.
                    if s.runs_podfwd() {
                        assert_eq!(base.mode, s.mode, "{}", s.name);
                    }
                    assert_eq!(base.forwarder(), "kernel", "{}", s.name);
                    assert_eq!(s.nodes[0], NodeKind::Podfwd);
                }
                None => assert_eq!(s.forwarder(), "kernel", "{}", s.name),
            }
        }
    }

    #[test]
    fn every_afxdp_scenario_has_a_limit_of_its_path_and_direction() {
        let find = |n: &str| SCENARIOS.iter().find(|x| x.name == n).copied();
        for s in SCENARIOS {
            let limit = s.limit.map(|l| find(l).expect("limit exists"));
            match s.forwarder() {
                "afxdp" => {
                    let l = limit.unwrap_or_else(|| panic!("{} has no limit", s.name));
                    assert_eq!(l.reference, Some(Reference::AfXdp), "{}", s.name);
                    assert_eq!(l.direction, s.direction, "{}", s.name);
                }
                // The in-kernel backend's scenarios take the XDP limits.
                "xdp" => {
                    let l = limit.unwrap_or_else(|| panic!("{} has no limit", s.name));
                    assert_eq!(l.reference, Some(Reference::Xdp), "{}", s.name);
                    assert_eq!(l.direction, s.direction, "{}", s.name);
                }
                _ => {}
            }
            if let Some(l) = limit {
                assert!(s.runs_podfwd(), "{}: only podfwd has a limit", s.name);
                assert!(l.limit.is_none() && !l.runs_podfwd(), "{}", l.name);
            }
        }
        // Both directions of both paths are measured.
        for (r, d) in [
            (Reference::AfXdp, FromPod),
            (Reference::AfXdp, ToPod),
            (Reference::Xdp, FromPod),
            (Reference::Xdp, ToPod),
        ] {
            assert!(
                SCENARIOS
                    .iter()
                    .any(|s| s.reference == Some(r) && s.direction == d),
                "{r:?} {d:?}"
            );
        }
    }

    #[test]
    fn the_uplink_qdisc_variant_queues_on_the_underlay_only() {
        for s in SIDES {
            assert_eq!(Qdisc::Uplink.of(s.ul_if), Qdisc::Pfifo);
            assert_eq!(Qdisc::Uplink.of(s.pod_if), Qdisc::Noqueue);
        }
        assert_eq!(Qdisc::Uplink.of("eth0"), Qdisc::Noqueue);
        assert_eq!(Qdisc::Noqueue.of(SIDES[0].ul_if), Qdisc::Noqueue);
        assert_eq!(Qdisc::Pfifo.of("eth0"), Qdisc::Pfifo);
    }

    #[test]
    fn limit_scenarios_run_the_udp_workloads_only() {
        let l = SCENARIOS.iter().find(|s| s.name == "afxdp-limit").unwrap();
        let names: Vec<&str> = WORKLOADS
            .iter()
            .filter(|w| w.applies_to(l))
            .map(|w| w.name)
            .collect();
        assert_eq!(names, ["udp-64B", "udp-1400B"]);
    }

    fn run_args(args: &[&str]) -> std::result::Result<RunArgs, clap::Error> {
        let argv = ["podfwd-bench", "run"].iter().chain(args);
        match Cli::try_parse_from(argv)?.cmd {
            Cmd::Run(a) => Ok(a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn setups_are_refused_with_the_single_setup_flags() {
        for flag in [
            &["--qdisc", "uplink"][..],
            &["--flows", "1"],
            &["--udp-gro-fwd"],
            &["--defer-hard-irqs", "2"],
            &["--gro-flush-timeout", "20000"],
        ] {
            let mut args = vec!["--setups", "default,uplink"];
            args.extend_from_slice(flag);
            let e = run_args(&args).err().unwrap_or_else(|| panic!("{flag:?}"));
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{flag:?}"
            );
            assert!(e.to_string().contains("--setups"), "{e}");
        }
        // --sweep-workloads only with --setups.
        let e = run_args(&["--sweep-workloads", "udp-64B"]).err().unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(run_args(&["--setups", "all", "--runs", "2"]).is_ok());
    }

    #[test]
    fn the_plan_runs_every_setup_and_the_sweep_workloads_after_the_first() {
        let names = |p: &[(SetupSpec, Vec<Workload>)]| -> Vec<(&str, Vec<&str>)> {
            p.iter()
                .map(|(s, w)| (s.name, w.iter().map(|w| w.name).collect()))
                .collect()
        };
        let wls = |a: &RunArgs| pick(&a.workloads, &WORKLOADS, |w| w.name, "workload").unwrap();
        let a = run_args(&["--setups", "all", "--sweep-workloads", "udp-64B"]).unwrap();
        let p = plan(&a, &wls(&a)).unwrap();
        assert_eq!(p.len(), 7);
        assert_eq!(p[0].1.len(), WORKLOADS.len(), "the first: every workload");
        assert!(p[1..]
            .iter()
            .all(|(_, w)| w.len() == 1 && w[0].name == "udp-64B"));
        let a = run_args(&[
            "--setups",
            "noqueue,uplink-1flow",
            "--workloads",
            "udp-64B,udp-1400B",
        ])
        .unwrap();
        assert_eq!(
            names(&plan(&a, &wls(&a)).unwrap()),
            [
                ("noqueue", vec!["udp-64B", "udp-1400B"]),
                ("uplink-1flow", vec!["udp-64B", "udp-1400B"])
            ]
        );
        // Without --setups: the flags' one set-up, named if it is one of the table's.
        let a = run_args(&["--qdisc", "uplink", "--flows", "1"]).unwrap();
        let p = plan(&a, &wls(&a)).unwrap();
        assert_eq!((p.len(), p[0].0.name, p[0].0.flows), (1, "uplink-1flow", 1));
        let a = run_args(&["--setups", "uplink,bogus"]).unwrap();
        let e = plan(&a, &wls(&a)).unwrap_err().to_string();
        assert!(
            e.contains("unknown set-up \"bogus\"; valid: default, uplink"),
            "{e}"
        );
        // The estimate counts a cluster per set-up and scenario, and each UDP window.
        let one = [(setups::SETUPS[0], vec![WORKLOADS[0]])];
        let t = estimate_secs(&one, &SCENARIOS[..2], 3, 3.0);
        assert!((t - 3.0 * 2.0 * (0.8 + 5.6)).abs() < 1e-9, "{t}");
    }

    #[test]
    fn unknown_names_are_an_error_listing_the_known_ones() {
        let e = pick(&["nope".to_string()], &WORKLOADS, |w| w.name, "workload").unwrap_err();
        assert!(
            e.to_string()
                .contains("udp-64B, udp-1400B, tcp-1, tcp-4, latency"),
            "{e}"
        );
        assert_eq!(
            pick(&[], &SCENARIOS, |s| s.name, "scenario").unwrap().len(),
            15
        );
    }
}
