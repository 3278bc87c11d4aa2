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
    /// Its name (`--setups`; "custom" when the single set-up flags match none).
    pub name: String,
    /// UDP flows (source ports) of the generator.
    pub flows: u16,
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
            name: "default".into(),
            flows: 1024,
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
    /// The set-up of this record (the first of the run's in the run's own settings).
    pub setup: Setup,
    /// The set-ups of the run, in order (one unless `--setups` named several).
    pub setups: Vec<String>,
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
    /// The set-up it ran under (`settings.setup` has its details).
    pub setup: String,
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
                setup: settings.setup.name.clone(),
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

/// The set-ups of `records` in the run's order, each with its records.
pub fn by_setup(records: &[Record]) -> Vec<(&Setup, Vec<&Record>)> {
    let mut out: Vec<(&Setup, Vec<&Record>)> = Vec::new();
    for r in records {
        match out.iter_mut().find(|(s, _)| s.name == r.setup) {
            Some((_, v)) => v.push(r),
            None => out.push((&r.settings.setup, vec![r])),
        }
    }
    out
}

/// The report: with one set-up, its tables; with several, the set-ups side by side
/// ([`setups_markdown`]) and then each set-up's own tables.
pub fn markdown(records: &[Record]) -> String {
    let groups = by_setup(records);
    if groups.len() <= 1 {
        return tables(records, false);
    }
    let mut s = String::new();
    if let Some(r) = records.first() {
        s.push_str(&format!(
            "Machine: {} ({} CPUs, {}), kernel {}. {} run(s) x {} s per set-up, scenario \
             and workload; each round runs every set-up's scenarios in turn (set-ups and \
             scenarios interleaved); node A on CPU {}, everything else on CPU {}; load \
             average before {}, after {}. Comparisons are per round and within a set-up: \
             podfwd / the kernel of the same set-up (or podfwd - kernel for latency), \
             podfwd / its limit of the same set-up (the `*-limit*` reference forwarders of \
             the same path and direction; limits themselves are compared with the \
             kernel).\n",
            r.machine.hostname,
            r.machine.cpus,
            r.machine.cpu_model,
            r.machine.kernel,
            r.settings.runs,
            r.settings.secs,
            r.settings.fwd_cpu,
            r.settings.gen_cpu,
            r.settings.load_before,
            r.settings.load_after,
        ));
    }
    s.push_str(&setups_markdown(records));
    for (setup, rs) in &groups {
        let rs: Vec<Record> = rs.iter().map(|r| (*r).clone()).collect();
        s.push_str(&format!(
            "\n### Set-up `{}`: {}, {} UDP flows\n",
            setup.name, setup, setup.flows
        ));
        s.push_str(&tables(&rs, true));
    }
    s
}

/// The set-ups side by side: what each is, then per UDP workload measured under two
/// set-ups or more, a table with a row per scenario and a column per set-up (Mpps per
/// busy core and, per task core, a second one).
pub fn setups_markdown(records: &[Record]) -> String {
    let groups = by_setup(records);
    let mut s = String::from(
        "\n### Set-ups side by side\n\n\
         | set-up | qdisc | UDP flows | UDP GRO forwarding | node A's NAPI defer_hard_irqs / gro_flush_timeout |\n\
         |---|---|---:|---|---|\n",
    );
    for (st, _) in &groups {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} / {} ns |\n",
            st.name,
            match st.qdisc.as_str() {
                "uplink" => "pfifo on the underlay veths, noqueue on the pod veths",
                "noqueue" => "noqueue on every veth end",
                _ => "pfifo on every veth end",
            },
            st.flows,
            if st.udp_gro_fwd { "on" } else { "off" },
            st.defer_hard_irqs,
            st.gro_flush_timeout_ns
        ));
    }
    let first = groups.first().map_or("", |(st, _)| st.name.as_str());
    s.push_str(&format!(
        "\nCells: the median over the rounds; in parentheses, per round and within the \
         set-up, `k` = the ratio to the kernel baseline of the same direction and `lim` = \
         the fraction of the scenario's own limit; for the kernel rows, how the baseline \
         moved against the same kernel scenario under `{first}` in the same round. \
         Min–max, loss and CPU are in each set-up's own tables below.\n",
    ));
    let churned = |r: &Record| r.stat("route_changes_per_s").is_some();
    let mut udp_workloads: Vec<&str> = Vec::new();
    for r in records.iter().filter(|r| r.kind == "udp" && !churned(r)) {
        if !udp_workloads.contains(&r.workload.as_str()) {
            udp_workloads.push(&r.workload);
        }
    }
    for wl in udp_workloads {
        let of_wl: Vec<&Record> = records
            .iter()
            .filter(|r| r.workload == wl && !churned(r))
            .collect();
        let cols: Vec<&str> = groups
            .iter()
            .map(|(st, _)| st.name.as_str())
            .filter(|n| of_wl.iter().any(|r| r.setup == *n))
            .collect();
        if cols.len() < 2 {
            continue;
        }
        let mut rows: Vec<&str> = Vec::new();
        for r in &of_wl {
            if !rows.contains(&r.scenario.as_str()) {
                rows.push(&r.scenario);
            }
        }
        let find = |setup: &str, sc: &str| {
            of_wl
                .iter()
                .find(|r| r.setup == setup && r.scenario == sc)
                .copied()
        };
        for (metric, what) in [
            ("pps_per_core", "Mpps per busy core"),
            ("pps_per_task_core", "Mpps per task core"),
        ] {
            s.push_str(&format!("\n#### {wl}: {what}, per set-up\n\n| scenario |"));
            for c in &cols {
                s.push_str(&format!(" {c} |"));
            }
            s.push_str("\n|---|");
            s.push_str(&"---:|".repeat(cols.len()));
            s.push('\n');
            for sc in &rows {
                s.push_str(&format!("| {sc} |"));
                for c in &cols {
                    let cell = match find(c, sc) {
                        Some(r) => setup_cell(r, find(first, sc), metric),
                        None => "—".into(),
                    };
                    s.push_str(&format!(" {cell} |"));
                }
                s.push('\n');
            }
        }
    }
    s
}

/// `0.573 (0.63x k, 0.87x lim)`: the record's median of `metric` (Mpps), its ratio to
/// the kernel and to its limit; for a kernel record, to `first` (the same scenario under
/// the first set-up) when it is another set-up's.
fn setup_cell(r: &Record, first: Option<&Record>, metric: &str) -> String {
    let v = r
        .stat(metric)
        .filter(|s| s.median.is_finite())
        .map_or("—".into(), |s| format!("{:.3}", s.median * 1e-6));
    let key = format!("ratio_{metric}");
    let med = |s: Option<&Stat>| s.map(|s| s.median).filter(|m| m.is_finite());
    let mut notes = Vec::new();
    if r.backend == "kernel" {
        if let Some(f) = first.filter(|f| f.setup != r.setup) {
            let per_round: Vec<f64> = r
                .runs
                .iter()
                .filter_map(|x| {
                    let y = f.runs.iter().find(|y| y.run == x.run)?;
                    Some(x.metrics.get(metric)? / y.metrics.get(metric)?)
                })
                .collect();
            if let Some(m) = med(Some(&Stat::of(&per_round))) {
                notes.push(format!("{m:.2}x {}", f.setup));
            }
        }
    } else {
        if let Some(m) = med(r.vs_baseline.get(&key)) {
            notes.push(format!("{m:.2}x k"));
        }
        if let Some(m) = med(r.vs_limit.get(&key)) {
            notes.push(format!("{m:.2}x lim"));
        }
    }
    if notes.is_empty() {
        v
    } else {
        format!("{v} ({})", notes.join(", "))
    }
}

/// One set-up's tables: the header (unless `in_sweep`: the sweep's header says it), UDP,
/// route churn, TCP, latency and the goals (in a sweep only those it measured).
fn tables(records: &[Record], in_sweep: bool) -> String {
    let mut s = String::new();
    if let Some(r) = records.first().filter(|_| !in_sweep) {
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
    let goals: Vec<Goal> = goals(records)
        .into_iter()
        .filter(|g| !in_sweep || g.met.is_some())
        .collect();
    if goals.is_empty() {
        return s;
    }
    s.push_str(
        "\n#### Goals (issue 5)\n\n| goal | measured (median, min–max) | |\n|---|---|---|\n",
    );
    for g in goals {
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

/// Writes `bench-<unix time>.{json,md}`, `bench-<unix time>-{udp,tcp,latency,setups}.png`
/// and the same as `latest.*` into `dir` (a chart only when its workloads ran; `setups`
/// only with several set-ups).
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
            setups: vec!["default".into()],
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

    /// kernel-host-gw, afxdp-host-gw and afxdp-limit, udp-64B, two rounds, under the
    /// set-ups `default` and `uplink`, recorded as run_main does: per set-up.
    fn sweep_records() -> Vec<Record> {
        let by = |n: &str| *SCENARIOS.iter().find(|s| s.name == n).unwrap();
        let (k, x, l) = (by("kernel-host-gw"), by("afxdp-host-gw"), by("afxdp-limit"));
        let u = WORKLOADS[0];
        let s = |run, pps| RunSample::new(run, cpu(0.5), udp(pps), None);
        let mut out = Vec::new();
        for (setup, pps) in [
            // (kernel, afxdp, limit) in rounds 0 and 1
            ("default", [[400e3, 300e3, 600e3], [200e3, 210e3, 300e3]]),
            ("uplink", [[480e3, 300e3, 400e3], [300e3, 240e3, 320e3]]),
        ] {
            let samples: Vec<_> = (0..2)
                .flat_map(|run| {
                    let [pk, px, pl] = pps[run];
                    [(k, u, s(run, pk)), (x, u, s(run, px)), (l, u, s(run, pl))]
                })
                .collect();
            let settings = Settings {
                setup: Setup {
                    name: setup.into(),
                    qdisc: if setup == "uplink" { "uplink" } else { "pfifo" }.into(),
                    ..Setup::default()
                },
                setups: vec!["default".into(), "uplink".into()],
                ..settings()
            };
            out.extend(records(&[k, x, l], &[u], &samples, &settings));
        }
        out
    }

    #[test]
    fn in_a_sweep_ratios_are_taken_within_each_setup_and_round() {
        let r = sweep_records();
        let got: Vec<(&str, &str)> = r
            .iter()
            .map(|r| (r.setup.as_str(), r.scenario.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("default", "kernel-host-gw"),
                ("default", "afxdp-host-gw"),
                ("default", "afxdp-limit"),
                ("uplink", "kernel-host-gw"),
                ("uplink", "afxdp-host-gw"),
                ("uplink", "afxdp-limit"),
            ]
        );
        let med = |cmp: &BTreeMap<String, Stat>| {
            let s = &cmp["ratio_pps_per_core"];
            (s.min, s.max)
        };
        // default: afxdp 300/400 and 210/200 of the kernel, 300/600 and 210/300 of its
        // limit; uplink: 300/480 and 240/300, and 300/400 and 240/320.
        assert_eq!(med(&r[1].vs_baseline), (0.75, 1.05));
        assert_eq!(med(&r[1].vs_limit), (0.5, 0.7));
        assert_eq!(med(&r[4].vs_baseline), (0.625, 0.8));
        assert_eq!(med(&r[4].vs_limit), (0.75, 0.75));
        // The limit against the kernel of its own set-up.
        assert_eq!(med(&r[2].vs_baseline), (1.5, 1.5));
        assert_eq!(r[4].settings.setup.qdisc, "uplink");
        assert_eq!(r[1].settings.setup.name, "default");
        let groups = by_setup(&r);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (groups[1].0.name.as_str(), groups[1].1.len()),
            ("uplink", 3)
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json[4]["setup"], "uplink");
        assert_eq!(json[4]["settings"]["setup"]["qdisc"], "uplink");
        assert_eq!(json[4]["settings"]["setups"][1], "uplink");
    }

    #[test]
    fn the_setups_table_has_a_column_per_setup_and_the_ratios_of_each() {
        let md = markdown(&sweep_records());
        let side = md
            .split("### Set-ups side by side")
            .nth(1)
            .expect("a set-ups section")
            .split("\n### Set-up `default`")
            .next()
            .unwrap();
        assert!(
            side.contains(
                "| `uplink` | pfifo on the underlay veths, noqueue on the pod veths | 1024 | off | 0 / 0 ns |"
            ),
            "{side}"
        );
        let busy = side
            .split("#### udp-64B: Mpps per busy core, per set-up")
            .nth(1)
            .expect("the per busy core table")
            .split("####")
            .next()
            .unwrap();
        let rows: Vec<&str> = busy.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(
            rows,
            [
                "| scenario | default | uplink |",
                "|---|---:|---:|",
                // The kernel: 0.8 and 0.4 Mpps per core; under uplink 0.96 and 0.6, that
                // is 1.2x and 1.5x of default's in the same rounds.
                "| kernel-host-gw | 0.600 | 0.780 (1.35x default) |",
                "| afxdp-host-gw | 0.510 (0.90x k, 0.60x lim) | 0.540 (0.71x k, 0.75x lim) |",
                "| afxdp-limit | 0.900 (1.50x k) | 0.720 (0.95x k) |",
            ],
            "{md}"
        );
        assert!(
            side.contains("#### udp-64B: Mpps per task core, per set-up"),
            "{side}"
        );
        // Then each set-up's own tables, without a goals table of nothing measured.
        let uplink = md.split("\n### Set-up `uplink`").nth(1).expect("{md}");
        assert!(
            uplink.contains("| afxdp-host-gw | udp-64B | 0.270 (0.240–0.300) |"),
            "{uplink}"
        );
        assert!(!md.contains("not measured"), "{md}");
        // A single set-up's report has no set-ups section.
        let one: Vec<Record> = sweep_records().into_iter().take(3).collect();
        assert!(!markdown(&one).contains("Set-ups side by side"));
        assert!(markdown(&one).starts_with("Machine:"));
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
        // Several set-ups: the set-ups chart too.
        let paths = write(&dir, &sweep_records()).expect("write results");
        let setups = dir.join("latest-setups.png");
        assert!(paths.contains(&setups), "{paths:?}");
        let b = std::fs::read(&setups).unwrap();
        assert!(b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 20_000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
