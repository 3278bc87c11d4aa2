//! podfwd-bench: forwarding over veth, podfwd (AF_XDP) against the kernel.
//!
//! `tools/bench.sh [--quick]` runs `podfwd-bench run`. For every scenario run it builds the
//! lab cluster (`podfwd::lab::Cluster`, namespaces `pfx-bench-...`) and measures node A,
//! the forwarding node:
//!
//! ```text
//!  generator (CPU 0)        forwarding node A (CPU 1)              sink (CPU 0)
//!  podA eth0 ---> nodeA-pod [kernel or podfwd] nodeA-ul ---> nodeB-ul: XDP_DROP
//! ```
//!
//! - generator: `podfwd-bench gen` in podA, AF_PACKET + sendmmsg, UDP flows that differ
//!   in source port, retrying on veth back-pressure; pinned to CPU 0.
//! - node A: kernel routing (host-gw), kernel VXLAN (flannel.1), or podfwd with
//!   `cores = [1]`. Its ingress veth `nodeA-pod` runs threaded NAPI (GRO on) with the
//!   `napi/nodeA-pod-*` kthread pinned to CPU 1, so all of the forwarding work (the
//!   kernel's, or the XDP redirect + podfwd's worker) is on CPU 1.
//! - sink: node B's underlay veth with an XDP_DROP program, its threaded NAPI kthread
//!   pinned to CPU 0; counted by the veth's rx counters. This measures node A's
//!   forwarding (host-gw rewrite or VXLAN encapsulation) only; node B does not decap.
//!
//! Results: `results/bench-<unix time>.{json,md}` and `results/latest.{json,md}`.

mod gen;
mod report;
mod sink;

use clap::{Parser, Subcommand};
use podfwd::config::Mode;
use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};
use podfwd::netns::Netns;
use report::RunSample;
use std::collections::BTreeSet;
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
    /// (internal) the traffic generator, run inside the generator pod.
    Gen(GenArgs),
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// 1 run x 3 s per scenario (default: 5 runs x 10 s).
    #[arg(long)]
    quick: bool,
    /// Runs per scenario (interleaved A B A B ...).
    #[arg(long)]
    runs: Option<usize>,
    /// Measured seconds per run.
    #[arg(long)]
    secs: Option<f64>,
    /// Comma-separated scenarios (default: all four).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Output directory.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// The podfwd binary (default: next to this one).
    #[arg(long)]
    podfwd: Option<PathBuf>,
    /// Comma-separated workloads: udp-64B (default), udp-1400B.
    #[arg(long, value_delimiter = ',', default_value = "udp-64B")]
    workloads: Vec<String>,
    /// UDP flows (source ports).
    #[arg(long, default_value_t = 1024)]
    flows: u16,
    /// CPU of the forwarding node (podfwd's worker, node A's NAPI kthread).
    #[arg(long, default_value_t = 1)]
    fwd_cpu: usize,
    /// CPU of the generator and the sink.
    #[arg(long, default_value_t = 0)]
    gen_cpu: usize,
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
}

/// A forwarding scenario: how node A (and node B) are built.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub mode: Mode,
    pub nodes: [NodeKind; 2],
    /// The kernel scenario this one is compared with (for podfwd scenarios).
    pub baseline: Option<&'static str>,
}

pub const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "kernel-host-gw",
        mode: Mode::HostGw,
        nodes: [NodeKind::KernelHostGw, NodeKind::KernelHostGw],
        baseline: None,
    },
    Scenario {
        name: "afxdp-host-gw",
        mode: Mode::HostGw,
        nodes: [NodeKind::Podfwd, NodeKind::KernelHostGw],
        baseline: Some("kernel-host-gw"),
    },
    Scenario {
        name: "kernel-vxlan",
        mode: Mode::Vxlan,
        nodes: [NodeKind::KernelVxlan, NodeKind::KernelVxlan],
        baseline: None,
    },
    Scenario {
        name: "afxdp-vxlan",
        mode: Mode::Vxlan,
        nodes: [NodeKind::Podfwd, NodeKind::KernelVxlan],
        baseline: Some("kernel-vxlan"),
    },
];

/// The workload (only the core one so far).
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    /// Ethernet frame without FCS.
    pub frame_len: usize,
}

pub const WORKLOADS: [Workload; 2] = [
    // 64 bytes on a wire with the FCS: 18 bytes of UDP payload.
    Workload {
        name: "udp-64B",
        frame_len: 60,
    },
    // 1400 bytes of UDP payload (IP 1428 bytes: fits the overlay's 1450 pod MTU).
    Workload {
        name: "udp-1400B",
        frame_len: 1442,
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
    let code = match cli.cmd {
        Cmd::Gen(a) => match gen_main(&a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("podfwd-bench gen: {e}");
                1
            }
        },
        Cmd::Run(a) => match run_main(&a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("podfwd-bench: {e}");
                1
            }
        },
    };
    std::process::exit(code);
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
    };
    let rep = gen::run(&spec).map_err(|e| e.to_string())?;
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

fn run_main(a: &RunArgs) -> Result<()> {
    podfwd::netns::require_root().map_err(BenchError::Msg)?;
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.fwd_cpu >= ncpu || a.gen_cpu >= ncpu {
        return Err(BenchError::Msg(format!(
            "needs CPUs {} and {} (this machine has {ncpu})",
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
    let (runs, secs) = if a.quick { (1, 3.0) } else { (5, 10.0) };
    let runs = a.runs.unwrap_or(runs);
    let secs = a.secs.unwrap_or(secs);
    let scenarios: Vec<Scenario> = if a.scenarios.is_empty() {
        SCENARIOS.to_vec()
    } else {
        a.scenarios
            .iter()
            .map(|n| {
                SCENARIOS
                    .iter()
                    .find(|s| s.name == n)
                    .copied()
                    .ok_or_else(|| {
                        BenchError::Msg(format!(
                            "unknown scenario {n}; known: {}",
                            SCENARIOS.map(|s| s.name).join(", ")
                        ))
                    })
            })
            .collect::<Result<_>>()?
    };
    let workloads: Vec<Workload> = a
        .workloads
        .iter()
        .map(|n| {
            WORKLOADS
                .iter()
                .find(|w| w.name == n)
                .copied()
                .ok_or_else(|| {
                    BenchError::Msg(format!(
                        "unknown workload {n}; known: {}",
                        WORKLOADS.map(|w| w.name).join(", ")
                    ))
                })
        })
        .collect::<Result<_>>()?;
    let ctx = Ctx {
        args: a.clone(),
        secs,
        podfwd,
        me,
        stop,
    };
    let mut samples: Vec<(Scenario, Workload, RunSample)> = Vec::new();
    for r in 0..runs {
        for (wl, sc) in workloads
            .iter()
            .flat_map(|w| scenarios.iter().map(move |s| (w, s)))
        {
            eprintln!(
                "podfwd-bench: run {}/{runs} {} {} ({secs} s)",
                r + 1,
                sc.name,
                wl.name
            );
            let s = run_one(&ctx, sc, wl, r)?;
            eprintln!(
                "  {:.3} Mpps at the sink (offered {:.3}), loss {:.1}%, CPU{} busy {:.0}%, \
                 forwarding tasks {:.0}% of a CPU, {:.3} Mpps/busy core",
                s.sink_pps / 1e6,
                s.offered_pps / 1e6,
                s.loss * 100.0,
                a.fwd_cpu,
                s.fwd_cpu_busy * 100.0,
                s.fwd_task_cpu * 100.0,
                s.pps_per_core / 1e6
            );
            if let Some(p) = &s.podfwd {
                eprintln!("  podfwd: {p:?}");
            }
            samples.push((*sc, *wl, s));
        }
    }
    let settings = report::Settings {
        runs,
        secs,
        flows: a.flows,
        fwd_cpu: a.fwd_cpu,
        gen_cpu: a.gen_cpu,
        quick: a.quick,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let records = report::records(&scenarios, &workloads, &samples, &settings);
    let paths = report::write(&a.out, &records)?;
    for p in paths {
        eprintln!("podfwd-bench: wrote {}", p.display());
    }
    print!("{}", report::markdown(&records));
    Ok(())
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

struct Snapshot {
    at: Instant,
    fwd_tasks: u64,
    gen: DevCounters,
    fwd_ul: DevCounters,
    sink: DevCounters,
    fwd_cpu: (u64, u64),
    gen_cpu: (u64, u64),
    podfwd: Option<std::collections::BTreeMap<String, u64>>,
}

fn run_one(ctx: &Ctx, sc: &Scenario, wl: &Workload, run: usize) -> Result<RunSample> {
    let a = &ctx.args;
    ctx.check()?;
    let fwd_cores: &'static [usize] = Box::leak(vec![a.fwd_cpu].into_boxed_slice());
    let gen_cores: &'static [usize] = Box::leak(vec![a.gen_cpu].into_boxed_slice());
    let spec = ClusterSpec {
        mode: sc.mode,
        nodes: sc.nodes,
        queues: 1,
        cores: [fwd_cores, gen_cores],
        ..ClusterSpec::default()
    };
    // Dropped on every way out of this function (error, Ctrl-C): processes killed,
    // namespaces removed. The sink's XDP link is declared later, so it is dropped first.
    let mut c = Cluster::build("bench", spec)?;
    let (sa, sb) = (&SIDES[0], &SIDES[1]);
    // Node B's underlay only sinks: it never answers ARP, so node A gets a static entry.
    c.nodes[0].neigh_permanent(sb.node_ip, sb.node_ul_mac, sa.ul_if)?;
    c.pods[0].neigh_permanent(sa.pod_gw, sa.node_pod_mac, "eth0")?;
    c.pods[0].exec(&["ethtool", "-K", "eth0", "tso", "off", "gso", "off"])?;
    c.nodes[0].exec(&["ethtool", "-K", sa.pod_if, "gro", "on"])?;
    let _sink = sink::XdpDrop::attach(c.nodes[1].name(), sb.ul_if)?;
    if sc.nodes[0] == NodeKind::Podfwd {
        c.start_podfwd(0, &ctx.podfwd)?;
    }
    let napi_fwd = threaded_napi(&c.nodes[0], sa.pod_if, a.fwd_cpu)?;
    let napi_sink = threaded_napi(&c.nodes[1], sb.ul_if, a.gen_cpu)?;
    // Something to read /proc/<pid>/net/dev through in each namespace.
    let probe = |ns: &Netns| ns.spawn(&["sleep", "3600"]);
    let (p_pod, p_a, p_b) = (probe(&c.pods[0])?, probe(&c.nodes[0])?, probe(&c.nodes[1])?);
    let warmup = 1.0;
    let gen_secs = warmup + ctx.secs + 1.0;
    let log = std::env::temp_dir().join(format!("{}-gen.log", c.pods[0].name()));
    let _ = std::fs::remove_file(&log);
    let me = ctx.me.display().to_string();
    let args = [
        me.as_str(),
        "gen",
        "--ifname",
        "eth0",
        "--src-mac",
        sa.pod_mac,
        "--dst-mac",
        sa.node_pod_mac,
        "--src-ip",
        sa.pod_ip,
        "--dst-ip",
        sb.pod_ip,
        "--frame-len",
        &wl.frame_len.to_string(),
        "--flows",
        &a.flows.to_string(),
        "--secs",
        &gen_secs.to_string(),
        "--cpu",
        &a.gen_cpu.to_string(),
    ];
    let gen_pid = c.pods[0].spawn_logged(&args, &log)?;
    // What node A's forwarding runs in: its ingress NAPI kthread, and podfwd's threads.
    let fwd_procs: Vec<u32> = c.podfwd_pid(0).into_iter().collect();
    ctx.sleep(Duration::from_secs_f64(warmup))?;
    let snap = |c: &Cluster| -> Result<Snapshot> {
        Ok(Snapshot {
            at: Instant::now(),
            fwd_tasks: task_ticks(&napi_fwd, &fwd_procs),
            gen: dev_counters(p_pod, "eth0")?,
            fwd_ul: dev_counters(p_a, sa.ul_if)?,
            sink: dev_counters(p_b, sb.ul_if)?,
            fwd_cpu: cpu_jiffies(a.fwd_cpu)?,
            gen_cpu: cpu_jiffies(a.gen_cpu)?,
            podfwd: c
                .podfwd_pid(0)
                .and_then(|_| c.stats(0).ok())
                .map(|s| s.total),
        })
    };
    let s0 = snap(&c)?;
    ctx.sleep(Duration::from_secs_f64(ctx.secs))?;
    let s1 = snap(&c)?;
    // The generator ends by itself a second after the window.
    let gen_alive = || podfwd::netns::pid_alive(gen_pid as i32) && !is_zombie(gen_pid);
    podfwd::netns::wait_until(Duration::from_secs(10), || !gen_alive());
    c.pods[0].kill(gen_pid);
    let gen_out = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let gen_rep: gen::GenReport = gen_out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| BenchError::Msg(format!("generator failed:\n{gen_out}")))?;
    let dt = s1.at.duration_since(s0.at).as_secs_f64();
    let sent = s1.gen.tx_packets - s0.gen.tx_packets;
    let received = s1.sink.rx_packets - s0.sink.rx_packets;
    let busy = |x: (u64, u64), y: (u64, u64)| {
        let t = (y.1 - x.1).max(1) as f64;
        (y.0 - x.0) as f64 / t
    };
    let fwd_busy = busy(s0.fwd_cpu, s1.fwd_cpu);
    let sink_pps = received as f64 / dt;
    let fwd_task_cpu = (s1.fwd_tasks - s0.fwd_tasks) as f64 / clock_ticks_per_sec() / dt;
    let podfwd_delta = match (&s0.podfwd, &s1.podfwd) {
        (Some(x), Some(y)) => Some(
            y.iter()
                .map(|(k, v)| (k.clone(), v - x.get(k).copied().unwrap_or(0)))
                .filter(|(k, v)| *v > 0 || !k.starts_with("drop_"))
                .collect(),
        ),
        _ => None,
    };
    let sample = RunSample {
        run,
        secs: dt,
        offered_pps: sent as f64 / dt,
        sink_pps,
        loss: if sent > 0 {
            1.0 - (received as f64 / sent as f64).min(1.0)
        } else {
            0.0
        },
        fwd_cpu_busy: fwd_busy,
        gen_cpu_busy: busy(s0.gen_cpu, s1.gen_cpu),
        pps_per_core: sink_pps / fwd_busy.max(0.01),
        fwd_task_cpu,
        pps_per_task_core: sink_pps / fwd_task_cpu.max(0.01),
        sent,
        received,
        fwd_ul_tx_dropped: s1.fwd_ul.tx_dropped - s0.fwd_ul.tx_dropped,
        sink_rx_dropped: s1.sink.rx_dropped - s0.sink.rx_dropped,
        gen_retries: gen_rep.retries,
        napi_kthreads: napi_fwd.len() + napi_sink.len(),
        podfwd: podfwd_delta,
    };
    drop(_sink);
    drop(c);
    Ok(sample)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
