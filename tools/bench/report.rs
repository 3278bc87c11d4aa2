//! Results: one JSON record per scenario and workload (every run, median and min–max of
//! each metric, the comparison with the kernel baseline of the same round, the machine
//! and the settings), a Markdown report with the goals, and the PNG charts.

use crate::{Scenario, Workload, WorkloadKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// CPU use over one measured window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// Length of the measured window.
    pub secs: f64,
    /// Busy fraction of the forwarding CPU (/proc/stat).
    pub fwd_cpu_busy: f64,
    /// Busy fraction of the other CPU (generator, sinks, node B, iperf3).
    pub gen_cpu_busy: f64,
    /// CPU time of node A's forwarding tasks (its NAPI kthreads, podfwd's threads) per
    /// second: unlike fwd_cpu_busy, blind to other load on the machine.
    pub fwd_task_cpu: f64,
    /// Threaded NAPI kthreads pinned (all six veth ends).
    pub napi_kthreads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct UdpRun {
    /// Frames the generator's veth accepted per second.
    pub offered_pps: f64,
    /// Frames the sink received per second: the forwarded rate.
    pub sink_pps: f64,
    /// 1 - received / sent over the window.
    pub loss: f64,
    pub sent: u64,
    pub received: u64,
    /// Frames node A's egress veth refused (the sink's ring full).
    pub fwd_out_tx_dropped: u64,
    pub sink_rx_dropped: u64,
    /// Generator sendmmsg calls refused by veth back-pressure.
    pub gen_retries: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TcpRun {
    pub streams: u32,
    /// Throughput at the receiver (iperf3 sum_received), Gbit/s.
    pub gbps: f64,
    pub sender_gbps: f64,
    pub retransmits: u64,
    pub received_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyRun {
    /// Requests per second asked for (one in flight).
    pub rate: u32,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// What a workload measured.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Measured {
    Udp(UdpRun),
    Tcp(TcpRun),
    Latency(LatencyRun),
}

/// One measured run of one scenario and workload.
#[derive(Debug, Clone, Serialize)]
pub struct RunSample {
    /// Index of the round (scenarios are interleaved within a round).
    pub run: usize,
    #[serde(flatten)]
    pub cpu: CpuUse,
    #[serde(flatten)]
    pub measured: Measured,
    /// Derived per-run metrics (the ones summarised in the record).
    pub metrics: BTreeMap<&'static str, f64>,
    /// podfwd's counters over the window (podfwd scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub podfwd: Option<BTreeMap<String, u64>>,
}

impl RunSample {
    pub fn new(
        run: usize,
        cpu: CpuUse,
        measured: Measured,
        podfwd: Option<BTreeMap<String, u64>>,
    ) -> RunSample {
        let mut m = BTreeMap::new();
        m.insert("fwd_cpu_busy", cpu.fwd_cpu_busy);
        m.insert("fwd_task_cpu", cpu.fwd_task_cpu);
        let busy = cpu.fwd_cpu_busy.max(0.01);
        let task = cpu.fwd_task_cpu.max(0.01);
        match &measured {
            Measured::Udp(u) => {
                m.insert("sink_pps", u.sink_pps);
                m.insert("offered_pps", u.offered_pps);
                m.insert("loss", u.loss);
                m.insert("pps_per_core", u.sink_pps / busy);
                m.insert("pps_per_task_core", u.sink_pps / task);
            }
            Measured::Tcp(t) => {
                m.insert("gbps", t.gbps);
                m.insert("retransmits", t.retransmits as f64);
                m.insert("gbps_per_core", t.gbps / busy);
                m.insert("gbps_per_task_core", t.gbps / task);
            }
            Measured::Latency(l) => {
                m.insert("p50_us", l.p50_us);
                m.insert("p90_us", l.p90_us);
                m.insert("p99_us", l.p99_us);
                m.insert("p999_us", l.p999_us);
                m.insert(
                    "lost",
                    if l.sent > 0 {
                        l.lost as f64 / l.sent as f64
                    } else {
                        f64::NAN
                    },
                );
            }
        }
        if let Some(share) = podfwd.as_ref().and_then(fast_path_share) {
            m.insert("fast_path_share", share);
        }
        RunSample {
            run,
            cpu,
            measured,
            metrics: m,
            podfwd,
        }
    }

    /// One line for the progress log.
    pub fn summary(&self, fwd_cpu: usize) -> String {
        let cpu = format!(
            "CPU{fwd_cpu} busy {:.0}%, forwarding tasks {:.0}%",
            self.cpu.fwd_cpu_busy * 100.0,
            self.cpu.fwd_task_cpu * 100.0
        );
        match &self.measured {
            Measured::Udp(u) => format!(
                "{:.3} Mpps at the sink (offered {:.3}), loss {:.1}%, {cpu}, {:.3} Mpps/busy core",
                u.sink_pps / 1e6,
                u.offered_pps / 1e6,
                u.loss * 100.0,
                self.metrics["pps_per_core"] / 1e6
            ),
            Measured::Tcp(t) => format!(
                "{:.2} Gbit/s at the receiver, {} retransmits, {cpu}",
                t.gbps, t.retransmits
            ),
            Measured::Latency(l) => format!(
                "RTT p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, {} of {} lost, {cpu}",
                l.p50_us, l.p99_us, l.p999_us, l.lost, l.sent
            ),
        }
    }
}

/// The share of node A's frames podfwd kept: its XDP classifier gave them to the workers
/// (afxdp) or the program finished them (xdp); the rest went to the kernel's slow path.
/// From the `xdp_*` counters over a run (`classifier_split`); `None` without them
/// (kernel and TUN scenarios) or without frames.
pub fn fast_path_share(podfwd: &BTreeMap<String, u64>) -> Option<f64> {
    let fast = *podfwd.get("xdp_redirected")?;
    let slow = *podfwd.get("xdp_to_kernel")?;
    (fast + slow > 0).then(|| fast as f64 / (fast + slow) as f64)
}

/// The set-up variant the run used (docs/BENCHMARKS.md, "Limits and set-ups"): what
/// moves the kernel baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setup {
    /// The qdisc variant: pfifo (default) or noqueue on every veth end, or uplink (pfifo
    /// on the underlay veths, noqueue on the pod veths).
    pub qdisc: String,
    /// `rx-udp-gro-forwarding` on node A's two veths.
    pub udp_gro_fwd: bool,
    /// `napi_defer_hard_irqs` of node A's two veths.
    pub defer_hard_irqs: u32,
    /// `gro_flush_timeout` of node A's two veths.
    pub gro_flush_timeout_ns: u64,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            qdisc: "pfifo".into(),
            udp_gro_fwd: false,
            defer_hard_irqs: 0,
            gro_flush_timeout_ns: 0,
        }
    }
}

impl std::fmt::Display for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "qdisc {}, UDP GRO forwarding {}, node A's NAPI defer_hard_irqs {} / gro_flush_timeout {} ns",
            match self.qdisc.as_str() {
                "uplink" => "pfifo on the underlay veths, noqueue on the pod veths",
                "noqueue" => "noqueue on every veth end",
                _ => "pfifo on every veth end",
            },
            if self.udp_gro_fwd { "on" } else { "off" },
            self.defer_hard_irqs,
            self.gro_flush_timeout_ns
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub runs: usize,
    pub secs: f64,
    pub flows: u16,
    pub latency_rate: u32,
    pub fwd_cpu: usize,
    pub gen_cpu: usize,
    pub quick: bool,
    /// The set-up variant.
    pub setup: Setup,
    pub command: String,
    /// /proc/loadavg before and after: the machine may be shared.
    pub load_before: String,
    pub load_after: String,
    pub wall_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn of(v: &[f64]) -> Stat {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return Stat {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        s.sort_by(|a, b| a.total_cmp(b));
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Stat {
            median,
            min: s[0],
            max: s[n - 1],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub kernel: String,
    /// `uname -v`.
    pub kernel_version: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        Machine {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            kernel_version: read("/proc/sys/kernel/version").trim().to_string(),
        }
    }
}

/// One scenario + workload.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub scenario: String,
    pub workload: String,
    /// udp | tcp | latency
    pub kind: &'static str,
    /// For UDP: the Ethernet frame length without FCS (the inner frame when decap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<u32>,
    /// What forwarded on node A: kernel, afxdp, tun, afxdp-limit or xdp-limit.
    pub backend: &'static str,
    pub direction: crate::Direction,
    /// Median and min–max over the runs of every metric of `runs[].metrics`.
    pub stats: BTreeMap<&'static str, Stat>,
    /// For podfwd scenarios: the kernel scenario compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Per round, podfwd / kernel (`ratio_*`) or podfwd - kernel (`added_*`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vs_baseline: BTreeMap<String, Stat>,
    /// For podfwd scenarios with a limit scenario of their path and direction: its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Per round, podfwd / its limit (`ratio_*`): the fraction of what its path can do.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vs_limit: BTreeMap<String, Stat>,
    pub runs: Vec<RunSample>,
    pub machine: Machine,
    pub settings: Settings,
    pub method: &'static str,
}

impl Record {
    pub fn stat(&self, k: &str) -> Option<&Stat> {
        self.stats.get(k)
    }
}

pub const METHOD: &str = "node A forwards on fwd_cpu (its two veths' threaded NAPI kthreads \
and podfwd with cores=[fwd_cpu]); every other veth end's NAPI kthread, the generator, sinks, \
iperf3 and the ping-pong run on gen_cpu. UDP: AF_PACKET+sendmmsg generator (pre-encapsulated \
VXLAN from node B's underlay for decap scenarios) into an XDP_DROP sink counted by its veth's \
rx_packets. TCP: iperf3, receiver throughput. Latency: UDP ping-pong podA->podB, one request \
in flight. per core = value / busy fraction of fwd_cpu (/proc/stat); per task core = value / \
CPU time of node A's forwarding tasks";

/// Per round (matched by `run`), `runs` against `base` for every metric of `kind`:
/// `ratio_<metric>` = run / base, or `added_<metric>` = run - base.
fn per_round(
    runs: &[RunSample],
    base: &[RunSample],
    kind: &WorkloadKind,
) -> BTreeMap<String, Stat> {
    let mut out = BTreeMap::new();
    for (k, is_ratio) in compared(kind) {
        let v: Vec<f64> = runs
            .iter()
            .filter_map(|r| {
                let b = base.iter().find(|b| b.run == r.run)?;
                let (x, y) = (*r.metrics.get(k)?, *b.metrics.get(k)?);
                Some(if *is_ratio { x / y } else { x - y })
            })
            .collect();
        let name = if *is_ratio {
            format!("ratio_{k}")
        } else {
            format!("added_{k}")
        };
        out.insert(name, Stat::of(&v));
    }
    out
}

/// Metrics compared with the baseline: (metric, ratio or difference).
fn compared(kind: &WorkloadKind) -> &'static [(&'static str, bool)] {
    match kind {
        WorkloadKind::Udp { .. } => &[
            ("pps_per_core", true),
            ("pps_per_task_core", true),
            ("sink_pps", true),
        ],
        WorkloadKind::Tcp { .. } => &[("gbps", true), ("gbps_per_core", true)],
        WorkloadKind::Latency => &[("p50_us", false), ("p99_us", false), ("p999_us", false)],
    }
}

pub fn records(
    scenarios: &[Scenario],
    workloads: &[Workload],
    samples: &[(Scenario, Workload, RunSample)],
    settings: &Settings,
) -> Vec<Record> {
    let machine = Machine::probe();
    let mut out = Vec::new();
    for wl in workloads {
        let runs_of = |name: &str, workload: &str| -> Vec<RunSample> {
            samples
                .iter()
                .filter(|(s, w, _)| s.name == name && w.name == workload)
                .map(|(_, _, r)| r.clone())
                .collect()
        };
        for sc in scenarios.iter().filter(|s| wl.applies_to(s)) {
            let runs = runs_of(sc.name, wl.name);
            let mut stats = BTreeMap::new();
            if let Some(first) = runs.first() {
                for k in first.metrics.keys() {
                    let v: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| r.metrics.get(k))
                        .copied()
                        .collect();
                    stats.insert(*k, Stat::of(&v));
                }
            }
            // A churn workload is compared with the same scenario's quiet workload (in
            // the same rounds), every other podfwd one with its kernel scenario.
            let base_name = match wl.churn_of {
                Some(quiet) => workloads
                    .iter()
                    .any(|w| w.name == quiet)
                    .then(|| format!("{} {quiet}", sc.name)),
                None => sc
                    .baseline
                    .filter(|b| scenarios.iter().any(|s| s.name == *b))
                    .map(str::to_string),
            };
            let base = base_name.as_ref().map(|_| match wl.churn_of {
                Some(quiet) => runs_of(sc.name, quiet),
                None => runs_of(sc.baseline.unwrap_or_default(), wl.name),
            });
            let vs_baseline = base
                .as_ref()
                .map(|base| per_round(&runs, base, &wl.kind))
                .unwrap_or_default();
            // The limit of the same path and direction, when it ran (not for churn: that
            // is compared with its own quiet run).
            let limit = sc.limit.filter(|l| {
                wl.churn_of.is_none() && scenarios.iter().any(|s| s.name == *l && wl.applies_to(s))
            });
            let vs_limit = limit
                .map(|l| per_round(&runs, &runs_of(l, wl.name), &wl.kind))
                .unwrap_or_default();
            let (kind, frame_len, streams) = match wl.kind {
                WorkloadKind::Udp { frame_len } => ("udp", Some(frame_len), None),
                WorkloadKind::Tcp { streams } => ("tcp", None, Some(streams)),
                WorkloadKind::Latency => ("latency", None, None),
            };
            out.push(Record {
                scenario: sc.name.to_string(),
                workload: wl.name.to_string(),
                kind,
                frame_len,
                streams,
                backend: sc.forwarder(),
                direction: sc.direction,
                stats,
                baseline: base_name,
                vs_baseline,
                limit: limit.map(str::to_string),
                vs_limit,
                runs,
                machine: machine.clone(),
                settings: settings.clone(),
                method: METHOD,
            });
        }
    }
    out
}

/// `median (min–max)` of `s` scaled by `k`, with `d` decimals.
fn fmt_stat(s: Option<&Stat>, k: f64, d: usize) -> String {
    match s {
        None => "—".into(),
        Some(s) if !s.median.is_finite() => "—".into(),
        Some(s) if s.min == s.max => format!("{:.d$}", s.median * k),
        Some(s) => format!("{:.d$} ({:.d$}–{:.d$})", s.median * k, s.min * k, s.max * k),
    }
}

fn pct(s: Option<&Stat>) -> String {
    s.filter(|s| s.median.is_finite())
        .map_or("—".into(), |s| format!("{:.0}%", s.median * 100.0))
}

/// A share near 1 with two decimals of a percent (99.87%): the goal is at least 99%.
fn share(s: Option<&Stat>) -> String {
    s.filter(|s| s.median.is_finite()).map_or("—".into(), |s| {
        format!("{:.2}% (min {:.2}%)", s.median * 100.0, s.min * 100.0)
    })
}

fn ratio(s: Option<&Stat>) -> String {
    match s {
        Some(s) if s.median.is_finite() && s.min == s.max => format!("{:.2}x", s.median),
        Some(s) if s.median.is_finite() => {
            format!("{:.2}x ({:.2}–{:.2})", s.median, s.min, s.max)
        }
        _ => "—".into(),
    }
}

/// podfwd / its limit with the limit's name, `—` without one.
fn limit_ratio(r: &Record, key: &str) -> String {
    match (&r.limit, r.vs_limit.get(key)) {
        (Some(l), Some(s)) if s.median.is_finite() => format!("{} of {l}", ratio(Some(s))),
        _ => "—".into(),
    }
}

/// A goal of issue 5 and how this run did against it.
#[derive(Debug, Clone)]
pub struct Goal {
    pub text: &'static str,
    pub measured: String,
    /// None: not measured in this run.
    pub met: Option<bool>,
}

/// The goals, judged on the medians of the per-round comparisons.
pub fn goals(records: &[Record]) -> Vec<Goal> {
    let find = |sc: &str, wl: &str| {
        records
            .iter()
            .find(|r| r.scenario == sc && r.workload == wl)
    };
    let ratio_goal = |text, sc: &str, wl: &str, key: &str, min: f64| {
        let s = find(sc, wl).and_then(|r| r.vs_baseline.get(key));
        Goal {
            text,
            measured: ratio(s),
            met: s.filter(|s| s.median.is_finite()).map(|s| s.median >= min),
        }
    };
    let mut g = vec![
        ratio_goal(
            "afxdp-host-gw >= 1.5x kernel-host-gw (udp-64B pps per busy core)",
            "afxdp-host-gw",
            "udp-64B",
            "ratio_pps_per_core",
            1.5,
        ),
        ratio_goal(
            "afxdp-vxlan >= 2x kernel-vxlan (udp-64B pps per busy core)",
            "afxdp-vxlan",
            "udp-64B",
            "ratio_pps_per_core",
            2.0,
        ),
        ratio_goal(
            "tun-vxlan TCP >= 1.0x kernel-vxlan (tcp-1, Gbit/s)",
            "tun-vxlan",
            "tcp-1",
            "ratio_gbps",
            1.0,
        ),
        ratio_goal(
            "tun-vxlan TCP >= 1.0x kernel-vxlan (tcp-4, Gbit/s)",
            "tun-vxlan",
            "tcp-4",
            "ratio_gbps",
            1.0,
        ),
    ];
    for (text, sc) in [
        (
            "afxdp-host-gw p99 <= kernel-host-gw p99 + 10 us",
            "afxdp-host-gw",
        ),
        ("afxdp-vxlan p99 <= kernel-vxlan p99 + 10 us", "afxdp-vxlan"),
        (
            "tun-host-gw p99 <= kernel-host-gw p99 + 10 us",
            "tun-host-gw",
        ),
        ("tun-vxlan p99 <= kernel-vxlan p99 + 10 us", "tun-vxlan"),
    ] {
        let s = find(sc, "latency").and_then(|r| r.vs_baseline.get("added_p99_us"));
        g.push(Goal {
            text,
            measured: s.filter(|s| s.median.is_finite()).map_or("—".into(), |s| {
                format!("{} us", fmt_stat(Some(s), 1.0, 1))
            }),
            met: s.filter(|s| s.median.is_finite()).map(|s| s.median <= 10.0),
        });
    }
    g
}

pub fn markdown(records: &[Record]) -> String {
    let mut s = String::new();
    if let Some(r) = records.first() {
        s.push_str(&format!(
            "Machine: {} ({} CPUs, {}), kernel {}. {} run(s) x {} s per scenario and \
             workload, scenarios interleaved; {} UDP flows; node A on CPU {}, everything \
             else on CPU {}; set-up: {}; load average before {}, after {}. Median \
             (min–max) over the runs; comparisons are per round, podfwd / kernel (or \
             podfwd - kernel for latency), and podfwd / its limit (the `*-limit*` \
             reference forwarders of the same path and direction; limits themselves are \
             compared with the kernel).\n",
            r.machine.hostname,
            r.machine.cpus,
            r.machine.cpu_model,
            r.machine.kernel,
            r.settings.runs,
            r.settings.secs,
            r.settings.flows,
            r.settings.fwd_cpu,
            r.settings.gen_cpu,
            r.settings.setup,
            r.settings.load_before,
            r.settings.load_after,
        ));
    }
    let churned = |r: &&Record| r.stat("route_changes_per_s").is_some();
    let of = move |kind: &'static str| {
        records
            .iter()
            .filter(move |r| r.kind == kind && !churned(r))
    };
    if of("udp").next().is_some() {
        s.push_str(
            "\n#### UDP, offered at the generator's maximum\n\n\
             | scenario | workload | Mpps at sink | loss | CPU1 busy | fwd tasks CPU | Mpps per busy core | Mpps per task core | vs kernel (per busy core) | vs kernel (per task core) | of its limit (per busy core) | of its limit (per task core) | fast path |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in of("udp") {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.scenario,
                r.workload,
                fmt_stat(r.stat("sink_pps"), 1e-6, 3),
                pct(r.stat("loss")),
                pct(r.stat("fwd_cpu_busy")),
                pct(r.stat("fwd_task_cpu")),
                fmt_stat(r.stat("pps_per_core"), 1e-6, 3),
                fmt_stat(r.stat("pps_per_task_core"), 1e-6, 3),
                ratio(r.vs_baseline.get("ratio_pps_per_core")),
                ratio(r.vs_baseline.get("ratio_pps_per_task_core")),
                limit_ratio(r, "ratio_pps_per_core"),
                limit_ratio(r, "ratio_pps_per_task_core"),
                share(r.stat("fast_path_share")),
            ));
        }
    }
    if records.iter().any(|r| churned(&r)) {
        s.push_str(
            "\n#### UDP under route churn (SIGHUP reloads replacing 100 peers by 100 others), against the same scenario's workload without churn in the same rounds\n\n\
             | scenario | workload | route changes/s applied | Mpps at sink | loss | Mpps per busy core | vs without churn (Mpps at sink) | vs without churn (per busy core) | fast path |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for r in records.iter().filter(churned) {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.scenario,
                r.workload,
                fmt_stat(r.stat("route_changes_per_s"), 1.0, 0),
                fmt_stat(r.stat("sink_pps"), 1e-6, 3),
                pct(r.stat("loss")),
                fmt_stat(r.stat("pps_per_core"), 1e-6, 3),
                ratio(r.vs_baseline.get("ratio_sink_pps")),
                ratio(r.vs_baseline.get("ratio_pps_per_core")),
                share(r.stat("fast_path_share")),
            ));
        }
    }
    if of("tcp").next().is_some() {
        s.push_str(
            "\n#### TCP (iperf3), throughput at the receiver\n\n\
             | scenario | workload | Gbit/s | retransmits | CPU1 busy | fwd tasks CPU | Gbit/s per busy core | vs kernel (Gbit/s) | vs kernel (per busy core) | fast path |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in of("tcp") {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.scenario,
                r.workload,
                fmt_stat(r.stat("gbps"), 1.0, 2),
                fmt_stat(r.stat("retransmits"), 1.0, 0),
                pct(r.stat("fwd_cpu_busy")),
                pct(r.stat("fwd_task_cpu")),
                fmt_stat(r.stat("gbps_per_core"), 1.0, 2),
                ratio(r.vs_baseline.get("ratio_gbps")),
                ratio(r.vs_baseline.get("ratio_gbps_per_core")),
                share(r.stat("fast_path_share")),
            ));
        }
    }
    if of("latency").next().is_some() {
        let rate = records.first().map_or(0, |r| r.settings.latency_rate);
        s.push_str(&format!(
            "\n#### Latency: UDP ping-pong podA -> podB -> podA, one in flight, at most {rate}/s (round trip, us)\n\n\
             | scenario | p50 | p90 | p99 | p99.9 | lost | added p50 vs kernel | added p99 vs kernel | added p99.9 vs kernel |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        ));
        for r in of("latency") {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.scenario,
                fmt_stat(r.stat("p50_us"), 1.0, 1),
                fmt_stat(r.stat("p90_us"), 1.0, 1),
                fmt_stat(r.stat("p99_us"), 1.0, 1),
                fmt_stat(r.stat("p999_us"), 1.0, 1),
                pct(r.stat("lost")),
                fmt_stat(r.vs_baseline.get("added_p50_us"), 1.0, 1),
                fmt_stat(r.vs_baseline.get("added_p99_us"), 1.0, 1),
                fmt_stat(r.vs_baseline.get("added_p999_us"), 1.0, 1),
            ));
        }
    }
    s.push_str(
        "\n#### Goals (issue 5)\n\n| goal | measured (median, min–max) | |\n|---|---|---|\n",
    );
    for g in goals(records) {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            g.text,
            g.measured,
            match g.met {
                Some(true) => "met",
                Some(false) => "missed",
                None => "not measured",
            }
        ));
    }
    s
}

/// Writes `bench-<unix time>.{json,md}`, `bench-<unix time>-{udp,tcp,latency}.png` and the
/// same as `latest.*` into `dir` (a chart only when its workloads ran).
pub fn write(dir: &Path, records: &[Record]) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let json = serde_json::to_string_pretty(records).map_err(std::io::Error::other)?;
    let md = markdown(records);
    let mut out = Vec::new();
    for stem in [format!("bench-{ts}"), "latest".to_string()] {
        let j = dir.join(format!("{stem}.json"));
        std::fs::write(&j, &json)?;
        let m = dir.join(format!("{stem}.md"));
        std::fs::write(&m, &md)?;
        out.push(j);
        out.push(m);
        for (name, chart) in crate::charts::CHARTS {
            let p = dir.join(format!("{stem}-{name}.png"));
            if chart(&p, records).map_err(std::io::Error::other)? {
                out.push(p);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SCENARIOS, WORKLOADS};

    fn cpu(busy: f64) -> CpuUse {
        CpuUse {
            secs: 1.0,
            fwd_cpu_busy: busy,
            gen_cpu_busy: 1.0,
            fwd_task_cpu: busy,
            napi_kthreads: 6,
        }
    }

    fn udp(pps: f64) -> Measured {
        Measured::Udp(UdpRun {
            offered_pps: 2.0 * pps,
            sink_pps: pps,
            loss: 0.5,
            sent: (2.0 * pps) as u64,
            received: pps as u64,
            fwd_out_tx_dropped: 0,
            sink_rx_dropped: 0,
            gen_retries: 0,
        })
    }

    fn latency(p99: f64) -> Measured {
        Measured::Latency(LatencyRun {
            rate: 10_000,
            sent: 1000,
            received: 1000,
            lost: 0,
            p50_us: p99 / 2.0,
            p90_us: p99 * 0.8,
            p99_us: p99,
            p999_us: p99 * 2.0,
            max_us: p99 * 3.0,
        })
    }

    fn settings() -> Settings {
        Settings {
            runs: 2,
            secs: 1.0,
            flows: 1024,
            latency_rate: 10_000,
            fwd_cpu: 1,
            gen_cpu: 0,
            quick: false,
            setup: Setup::default(),
            command: "test".into(),
            load_before: String::new(),
            load_after: String::new(),
            wall_secs: 1.0,
        }
    }

    /// kernel-host-gw and afxdp-host-gw, udp-64B and latency, two rounds.
    fn sample_records() -> Vec<Record> {
        let (k, x) = (SCENARIOS[0], SCENARIOS[1]);
        let (u, l) = (WORKLOADS[0], WORKLOADS[4]);
        let s = |run, m| RunSample::new(run, cpu(0.5), m, None);
        let samples = vec![
            (k, u, s(0, udp(400_000.0))),
            (x, u, s(0, udp(600_000.0))),
            (k, l, s(0, latency(60.0))),
            (x, l, s(0, latency(75.0))),
            // Round 1: a slower machine; the ratio is per round.
            (k, u, s(1, udp(200_000.0))),
            (x, u, s(1, udp(400_000.0))),
            (k, l, s(1, latency(60.0))),
            (x, l, s(1, latency(65.0))),
        ];
        records(&[k, x], &[u, l], &samples, &settings())
    }

    #[test]
    fn route_churn_is_compared_with_the_same_scenario_without_churn_and_shown_apart() {
        let (k, x) = (SCENARIOS[0], SCENARIOS[1]);
        let (u, c) = (WORKLOADS[0], WORKLOADS[5]);
        assert_eq!(c.churn_of, Some(u.name));
        assert!(
            !c.applies_to(&k) && c.applies_to(&x),
            "churn is podfwd's only"
        );
        let s = |run, m, churn: Option<f64>| {
            let mut r = RunSample::new(run, cpu(0.5), m, None);
            if let Some(v) = churn {
                r.metrics.insert("route_changes_per_s", v);
            }
            r
        };
        let samples = vec![
            (k, u, s(0, udp(400_000.0), None)),
            (x, u, s(0, udp(600_000.0), None)),
            (x, c, s(0, udp(540_000.0), Some(998.0))),
            (k, u, s(1, udp(400_000.0), None)),
            (x, u, s(1, udp(500_000.0), None)),
            (x, c, s(1, udp(500_000.0), Some(1000.0))),
        ];
        let r = records(&[k, x], &[u, c], &samples, &settings());
        assert_eq!(r.len(), 3, "no kernel record for the churn workload");
        let churn = &r[2];
        assert_eq!(churn.baseline.as_deref(), Some("afxdp-host-gw udp-64B"));
        let v = &churn.vs_baseline["ratio_sink_pps"];
        assert_eq!((v.min, v.max), (0.9, 1.0));
        let md = markdown(&r);
        let (quiet, churned) = md.split_once("under route churn").expect("churn table");
        assert!(!quiet.contains("udp-64B-churn"), "{md}");
        assert!(
            churned.contains("| afxdp-host-gw | udp-64B-churn | 999 (998–1000) |"),
            "{md}"
        );
    }

    #[test]
    fn podfwd_is_also_a_fraction_of_its_limit_and_the_limit_is_against_the_kernel() {
        let by = |n: &str| *SCENARIOS.iter().find(|s| s.name == n).unwrap();
        let (k, x, l) = (by("kernel-host-gw"), by("afxdp-host-gw"), by("afxdp-limit"));
        let u = WORKLOADS[0];
        let s = |run, pps| RunSample::new(run, cpu(0.5), udp(pps), None);
        let samples = vec![
            (k, u, s(0, 400_000.0)),
            (x, u, s(0, 300_000.0)),
            (l, u, s(0, 600_000.0)),
            (k, u, s(1, 200_000.0)),
            (x, u, s(1, 200_000.0)),
            (l, u, s(1, 250_000.0)),
        ];
        let r = records(&[k, x, l], &[u], &samples, &settings());
        let (afxdp, limit) = (&r[1], &r[2]);
        assert_eq!(afxdp.limit.as_deref(), Some("afxdp-limit"));
        let v = &afxdp.vs_limit["ratio_pps_per_task_core"];
        assert_eq!((v.min, v.max), (0.5, 0.8), "300/600 and 200/250");
        assert_eq!(limit.backend, "afxdp-limit");
        assert_eq!(limit.baseline.as_deref(), Some("kernel-host-gw"));
        assert!(limit.limit.is_none() && limit.vs_limit.is_empty());
        let v = &limit.vs_baseline["ratio_pps_per_task_core"];
        assert_eq!((v.min, v.max), (1.25, 1.5));
        let md = markdown(&r);
        assert!(md.contains("| 0.65x (0.50–0.80) of afxdp-limit |"), "{md}");
        // Without the limit in the run, no fraction.
        let r = records(&[k, x], &[u], &samples, &settings());
        assert!(r[1].limit.is_none() && r[1].vs_limit.is_empty());
    }

    #[test]
    fn fast_path_share_is_the_classifiers_split_and_absent_without_it() {
        let mut c = BTreeMap::new();
        assert_eq!(fast_path_share(&c), None);
        c.insert("xdp_redirected".to_string(), 990);
        c.insert("xdp_to_kernel".to_string(), 10);
        assert_eq!(fast_path_share(&c), Some(0.99));
        c.insert("xdp_redirected".to_string(), 0);
        c.insert("xdp_to_kernel".to_string(), 0);
        assert_eq!(fast_path_share(&c), None);
    }

    #[test]
    fn podfwd_is_compared_with_its_kernel_baseline_round_by_round() {
        let r = sample_records();
        assert_eq!(r.len(), 4);
        let afxdp_udp = &r[1];
        assert_eq!(
            (afxdp_udp.scenario.as_str(), afxdp_udp.kind),
            ("afxdp-host-gw", "udp")
        );
        // 600k/400k = 1.5 and 400k/200k = 2.0; pps per busy core = pps / 0.5.
        let ratio = &afxdp_udp.vs_baseline["ratio_pps_per_core"];
        assert_eq!((ratio.min, ratio.median, ratio.max), (1.5, 1.75, 2.0));
        assert_eq!(afxdp_udp.stats["pps_per_core"].median, 1_000_000.0);
        let added = &r[3].vs_baseline["added_p99_us"];
        assert_eq!((added.min, added.median, added.max), (5.0, 10.0, 15.0));
        assert!(r[0].vs_baseline.is_empty() && r[0].baseline.is_none());
        let goals = goals(&r);
        assert_eq!(goals[0].met, Some(true), "1.75x >= 1.5x");
        assert_eq!(goals[1].met, None, "no VXLAN in this run");
        assert_eq!(goals[4].met, Some(true), "+10 us <= +10 us");
        let md = markdown(&r);
        assert!(
            md.contains("| afxdp-host-gw | udp-64B | 0.500 (0.400–0.600) |"),
            "{md}"
        );
        assert!(md.contains("| 1.75x (1.50–2.00) | met |"), "{md}");
        assert!(md.contains("not measured"), "{md}");
    }

    #[test]
    fn charts_are_png_files_with_content_and_absent_when_nothing_to_draw() {
        crate::charts::load_font(None).expect("a font (tools/setup.sh installs fonts-dejavu-core)");
        let dir = std::env::temp_dir().join(format!("podfwd-bench-charts-{}", std::process::id()));
        let paths = write(&dir, &sample_records()).expect("write results");
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("latest"))
            .collect();
        // No TCP workload ran: no TCP chart.
        assert_eq!(
            names,
            [
                "latest.json",
                "latest.md",
                "latest-udp.png",
                "latest-latency.png"
            ]
        );
        for chart in ["latest-udp.png", "latest-latency.png"] {
            let b = std::fs::read(dir.join(chart)).unwrap();
            assert!(b.starts_with(b"\x89PNG\r\n\x1a\n"), "{chart}");
            assert!(b.len() > 10_000, "{chart}: {} bytes", b.len());
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("latest.json")).unwrap())
                .unwrap();
        assert_eq!(json[1]["vs_baseline"]["ratio_pps_per_core"]["median"], 1.75);
        assert_eq!(json[1]["runs"][0]["kind"], "udp");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
