//! Results: one JSON record per scenario and workload (with every run, the machine and
//! the settings), and a Markdown table.

use crate::{Scenario, Workload};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One measured run of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct RunSample {
    /// Index of the round (scenarios are interleaved within a round).
    pub run: usize,
    /// Length of the measured window.
    pub secs: f64,
    /// Frames the generator's veth accepted per second.
    pub offered_pps: f64,
    /// Frames the sink received per second: the forwarded rate.
    pub sink_pps: f64,
    /// 1 - received / sent over the window.
    pub loss: f64,
    /// Busy fraction of the forwarding CPU (/proc/stat).
    pub fwd_cpu_busy: f64,
    /// Busy fraction of the generator + sink CPU.
    pub gen_cpu_busy: f64,
    /// sink_pps / fwd_cpu_busy.
    pub pps_per_core: f64,
    /// CPU time of node A's forwarding tasks (its ingress NAPI kthread, podfwd's
    /// threads) per second: unlike fwd_cpu_busy, blind to other load on the machine.
    pub fwd_task_cpu: f64,
    /// sink_pps / fwd_task_cpu.
    pub pps_per_task_core: f64,
    pub sent: u64,
    pub received: u64,
    /// Frames node A's underlay veth refused (the sink's ring full).
    pub fwd_ul_tx_dropped: u64,
    pub sink_rx_dropped: u64,
    /// Generator sendmmsg calls refused by veth back-pressure.
    pub gen_retries: u64,
    /// Threaded NAPI kthreads pinned (node A ingress + sink).
    pub napi_kthreads: usize,
    /// podfwd's counters over the window (podfwd scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub podfwd: Option<BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub runs: usize,
    pub secs: f64,
    pub flows: u16,
    pub fwd_cpu: usize,
    pub gen_cpu: usize,
    pub quick: bool,
    pub command: String,
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
        }
    }
}

/// One scenario + workload.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub scenario: String,
    pub workload: String,
    pub frame_len: usize,
    pub sink_pps: Stat,
    pub pps_per_core: Stat,
    pub loss: Stat,
    pub fwd_cpu_busy: Stat,
    pub fwd_task_cpu: Stat,
    pub pps_per_task_core: Stat,
    /// For podfwd scenarios: pps_per_core / the kernel baseline's, per round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_per_core: Option<Stat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_per_task_core: Option<Stat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_pps: Option<Stat>,
    pub runs: Vec<RunSample>,
    pub machine: Machine,
    pub settings: Settings,
    pub method: &'static str,
}

pub const METHOD: &str = "generator: AF_PACKET+sendmmsg in podA (CPU gen_cpu); forwarder: node A \
(kernel, or podfwd with cores=[fwd_cpu]), ingress veth threaded NAPI pinned to fwd_cpu; sink: \
XDP_DROP on node B's underlay veth, threaded NAPI pinned to gen_cpu, counted by its rx_packets; \
pps per core = sink pps / busy fraction of fwd_cpu";

pub fn records(
    scenarios: &[Scenario],
    workloads: &[Workload],
    samples: &[(Scenario, Workload, RunSample)],
    settings: &Settings,
) -> Vec<Record> {
    let machine = Machine::probe();
    let mut out = Vec::new();
    for wl in workloads {
        let runs_of = |name: &str| -> Vec<RunSample> {
            samples
                .iter()
                .filter(|(s, w, _)| s.name == name && w.name == wl.name)
                .map(|(_, _, r)| r.clone())
                .collect()
        };
        for sc in scenarios {
            let runs = runs_of(sc.name);
            let col = |f: fn(&RunSample) -> f64| Stat::of(&runs.iter().map(f).collect::<Vec<_>>());
            let base = sc
                .baseline
                .filter(|b| scenarios.iter().any(|s| s.name == *b))
                .map(runs_of);
            let ratio = |f: fn(&RunSample) -> f64| {
                base.as_ref().map(|base| {
                    let v: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| base.iter().find(|b| b.run == r.run).map(|b| f(r) / f(b)))
                        .collect();
                    Stat::of(&v)
                })
            };
            out.push(Record {
                scenario: sc.name.to_string(),
                workload: wl.name.to_string(),
                frame_len: wl.frame_len,
                sink_pps: col(|r| r.sink_pps),
                pps_per_core: col(|r| r.pps_per_core),
                loss: col(|r| r.loss),
                fwd_cpu_busy: col(|r| r.fwd_cpu_busy),
                fwd_task_cpu: col(|r| r.fwd_task_cpu),
                pps_per_task_core: col(|r| r.pps_per_task_core),
                baseline: base.as_ref().and(sc.baseline.map(str::to_string)),
                ratio_per_core: ratio(|r| r.pps_per_core),
                ratio_per_task_core: ratio(|r| r.pps_per_task_core),
                ratio_pps: ratio(|r| r.sink_pps),
                runs,
                machine: machine.clone(),
                settings: settings.clone(),
                method: METHOD,
            });
        }
    }
    out
}

fn mpps(s: &Stat) -> String {
    if s.min == s.max {
        format!("{:.3}", s.median / 1e6)
    } else {
        format!(
            "{:.3} ({:.3}–{:.3})",
            s.median / 1e6,
            s.min / 1e6,
            s.max / 1e6
        )
    }
}

fn pct(s: &Stat) -> String {
    format!("{:.0}%", s.median * 100.0)
}

fn ratio(s: &Option<Stat>) -> String {
    match s {
        Some(s) if s.min == s.max => format!("{:.2}x", s.median),
        Some(s) => format!("{:.2}x ({:.2}–{:.2})", s.median, s.min, s.max),
        None => "—".into(),
    }
}

pub fn markdown(records: &[Record]) -> String {
    let mut s = String::new();
    if let Some(r) = records.first() {
        s.push_str(&format!(
            "Machine: {} ({} CPUs, {}), kernel {}. {} run(s) x {} s per scenario, \
             interleaved; {} UDP flows; forwarding on CPU {}, generator + sink on CPU {}. \
             Median (min–max).\n\n",
            r.machine.hostname,
            r.machine.cpus,
            r.machine.cpu_model,
            r.machine.kernel,
            r.settings.runs,
            r.settings.secs,
            r.settings.flows,
            r.settings.fwd_cpu,
            r.settings.gen_cpu,
        ));
    }
    s.push_str(
        "| scenario | workload | Mpps at sink | loss | fwd CPU busy | fwd tasks CPU | Mpps per busy core | Mpps per task core | vs kernel (per busy core) | vs kernel (per task core) | vs kernel (pps) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in records {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.workload,
            mpps(&r.sink_pps),
            pct(&r.loss),
            pct(&r.fwd_cpu_busy),
            pct(&r.fwd_task_cpu),
            mpps(&r.pps_per_core),
            mpps(&r.pps_per_task_core),
            ratio(&r.ratio_per_core),
            ratio(&r.ratio_per_task_core),
            ratio(&r.ratio_pps),
        ));
    }
    s
}

/// Writes `bench-<unix time>.{json,md,svg}` and `latest.{json,md,svg}` into `dir`.
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
        let c = dir.join(format!("{stem}.svg"));
        std::fs::write(&c, svg(records))?;
        out.push(c);
    }
    Ok(out)
}

/// A bar chart of pps per forwarding-task core (median, with a min–max whisker), one bar
/// per scenario and workload, as SVG (no plotting dependency; PNG via plotters is left).
pub fn svg(records: &[Record]) -> String {
    let (w, bar, top, h) = (120.0, 60.0, 40.0, 300.0);
    let width = 80.0 + records.len() as f64 * w;
    let max = records
        .iter()
        .map(|r| r.pps_per_task_core.max)
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let y = |v: f64| top + h - v / max * h;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <text x=\"10\" y=\"20\" font-size=\"13\">Mpps per forwarding-task core \
         (median, min-max)</text>\n\
         <line x1=\"60\" y1=\"{}\" x2=\"{width}\" y2=\"{}\" stroke=\"black\"/>\n",
        top + h + 60.0,
        top + h,
        top + h
    );
    for (i, r) in records.iter().enumerate() {
        let x = 70.0 + i as f64 * w;
        let m = r.pps_per_task_core.median;
        if !m.is_finite() {
            continue;
        }
        let color = if r.scenario.starts_with("afxdp") {
            "#d62728"
        } else {
            "#1f77b4"
        };
        s.push_str(&format!(
            "<rect x=\"{x}\" y=\"{:.1}\" width=\"{bar}\" height=\"{:.1}\" fill=\"{color}\"/>\n\
             <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
             <text x=\"{x}\" y=\"{:.1}\">{:.3}</text>\n\
             <text x=\"{x}\" y=\"{:.1}\">{}</text>\n<text x=\"{x}\" y=\"{:.1}\">{}</text>\n",
            y(m),
            top + h - y(m),
            x + bar / 2.0,
            y(r.pps_per_task_core.min),
            x + bar / 2.0,
            y(r.pps_per_task_core.max),
            y(r.pps_per_task_core.max) - 4.0,
            m / 1e6,
            top + h + 15.0,
            r.scenario,
            top + h + 30.0,
            r.workload,
        ));
    }
    s.push_str("</svg>\n");
    s
}
