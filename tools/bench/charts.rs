//! PNG bar charts of a run (plotters, bitmap backend): one bar per scenario with the
//! median, a min–max whisker and the median's value; kernel bars blue, podfwd AF_XDP red,
//! podfwd TUN green, the limits grey (AF_XDP) and purple (XDP).
//!
//! - `udp`: per UDP workload, Mpps at the sink, Mpps per forwarding-task core, and each
//!   podfwd scenario's and limit's per-task-core rate as a ratio to the kernel and to its
//!   own limit.
//! - `tcp`: per TCP workload, Gbit/s at the receiver and Gbit/s per busy forwarding core.
//! - `latency`: round-trip p50, p99 and p99.9 in microseconds.
//! - `setups` (runs with several set-ups, `--setups`): per UDP workload, bars grouped by
//!   set-up, one per scenario: the kernel baselines' Mpps, every other scenario's ratio
//!   to the kernel of the same set-up, and podfwd's fraction of its limit of the same
//!   set-up, per busy core and per task core. The three charts above then show the
//!   first set-up.
//!
//! Text is drawn with ab_glyph from a TrueType file loaded at start ([`load_font`]), so
//! the build needs no fontconfig/freetype; the font comes from Debian's
//! `fonts-dejavu-core` (tools/setup.sh) or `--font`.

use crate::report::{Record, Stat};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// The family name the font is registered under.
const FAMILY: &str = "sans-serif";

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Loads and registers the charts' font: `path`, or the first of the usual places.
pub fn load_font(path: Option<&Path>) -> Result<(), String> {
    let candidates: Vec<&Path> = match path {
        Some(p) => vec![p],
        None => FONT_CANDIDATES.iter().map(Path::new).collect(),
    };
    for p in &candidates {
        let Ok(bytes) = std::fs::read(p) else {
            continue;
        };
        // plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        return plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a TrueType/OpenType font", p.display()));
    }
    Err(format!(
        "no font for the charts: none of {} is readable (apt-get install fonts-dejavu-core, \
         or pass --font FILE.ttf)",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

type ChartFn = fn(&Path, &[Record]) -> Result<bool, String>;

/// The charts: file name suffix, and a function that writes it (false: nothing to draw).
pub const CHARTS: [(&str, ChartFn); 4] = [
    ("udp", udp),
    ("tcp", tcp),
    ("latency", latency),
    ("setups", setups),
];

/// One bar.
struct Bar {
    label: String,
    stat: Stat,
    color: RGBColor,
}

struct Panel {
    title: String,
    y_desc: &'static str,
    bars: Vec<Bar>,
    decimals: usize,
}

fn color(r: &Record) -> RGBColor {
    match r.backend {
        "afxdp" => RGBColor(214, 39, 40),
        "xdp" => RGBColor(255, 127, 14),
        "tun" => RGBColor(44, 160, 44),
        "afxdp-limit" => RGBColor(127, 127, 127),
        "xdp-limit" => RGBColor(148, 103, 189),
        _ => RGBColor(31, 119, 180),
    }
}

fn bars(records: &[&Record], key: &str, scale: f64) -> Vec<Bar> {
    bars_of(records, |r| r.stats.get(key), scale)
}

/// One bar per record that has the value `of` picks.
fn bars_of(records: &[&Record], of: impl Fn(&Record) -> Option<&Stat>, scale: f64) -> Vec<Bar> {
    records
        .iter()
        .filter_map(|r| {
            let s = of(r)?;
            Some(Bar {
                label: r.scenario.clone(),
                stat: Stat {
                    median: s.median * scale,
                    min: s.min * scale,
                    max: s.max * scale,
                },
                color: color(r),
            })
        })
        .collect()
}

/// The distinct workloads of `kind`, in record order, of the first set-up.
fn workloads<'a>(records: &'a [Record], kind: &str) -> Vec<Vec<&'a Record>> {
    let first = records.first().map(|r| r.setup.as_str());
    let mut out: Vec<Vec<&Record>> = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.kind == kind && Some(r.setup.as_str()) == first)
    {
        match out.iter_mut().find(|g| g[0].workload == r.workload) {
            Some(g) => g.push(r),
            None => out.push(vec![r]),
        }
    }
    out
}

/// `wl`, and its set-up when the run had several.
fn name(records: &[Record], g: &[&Record]) -> String {
    if records.iter().any(|r| r.setup != g[0].setup) {
        format!("{} (set-up {})", g[0].workload, g[0].setup)
    } else {
        g[0].workload.clone()
    }
}

fn udp(path: &Path, records: &[Record]) -> Result<bool, String> {
    let mut panels = Vec::new();
    for g in workloads(records, "udp") {
        let wl = &name(records, &g);
        panels.push(Panel {
            title: format!("{wl}: forwarded Mpps at the sink"),
            y_desc: "Mpps",
            bars: bars(&g, "sink_pps", 1e-6),
            decimals: 3,
        });
        panels.push(Panel {
            title: format!("{wl}: Mpps per core of node A's forwarding tasks"),
            y_desc: "Mpps / core",
            bars: bars(&g, "pps_per_task_core", 1e-6),
            decimals: 3,
        });
        panels.push(Panel {
            title: format!("{wl}: per task core, x the kernel (same direction)"),
            y_desc: "x kernel",
            // A churn workload's comparison is with its own quiet run, not the kernel.
            bars: bars_of(
                &g,
                |r| {
                    if r.stats.contains_key("route_changes_per_s") {
                        None
                    } else {
                        r.vs_baseline.get("ratio_pps_per_task_core")
                    }
                },
                1.0,
            ),
            decimals: 2,
        });
        panels.push(Panel {
            title: format!("{wl}: per task core, fraction of its own path's limit"),
            y_desc: "x limit",
            bars: bars_of(&g, |r| r.vs_limit.get("ratio_pps_per_task_core"), 1.0),
            decimals: 2,
        });
    }
    draw(path, &panels)
}

fn tcp(path: &Path, records: &[Record]) -> Result<bool, String> {
    let mut panels = Vec::new();
    for g in workloads(records, "tcp") {
        let wl = &name(records, &g);
        panels.push(Panel {
            title: format!("{wl}: iperf3 Gbit/s at the receiver"),
            y_desc: "Gbit/s",
            bars: bars(&g, "gbps", 1.0),
            decimals: 2,
        });
        // Both iperf3 ends share CPU 0 with node B: Gbit/s alone mostly shows CPU 0.
        panels.push(Panel {
            title: format!("{wl}: Gbit/s per busy core of the forwarding CPU"),
            y_desc: "Gbit/s / core",
            bars: bars(&g, "gbps_per_core", 1.0),
            decimals: 2,
        });
    }
    draw(path, &panels)
}

fn latency(path: &Path, records: &[Record]) -> Result<bool, String> {
    let mut panels = Vec::new();
    for g in workloads(records, "latency") {
        let wl = name(records, &g);
        for (key, name) in [("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")] {
            panels.push(Panel {
                title: format!("{wl}: UDP ping-pong round trip, {name} (us)"),
                y_desc: "us",
                bars: bars(&g, key, 1.0),
                decimals: 1,
            });
        }
    }
    draw(path, &panels)
}

/// Bars grouped by set-up, one bar per scenario (series) in each group.
struct Grouped {
    title: String,
    y_desc: &'static str,
    /// The set-ups, in the run's order.
    groups: Vec<String>,
    /// The scenarios: name, colour, and per group its value (if measured).
    series: Vec<(String, RGBColor, Vec<Option<Stat>>)>,
    decimals: usize,
    /// A horizontal line at this value (1.0 for ratios).
    reference: Option<f64>,
}

/// A scenario's colour: its forwarder's hue, lighter for VXLAN encapsulation, darker
/// for the decap direction (`-decap`, `-rev`).
fn series_color(r: &Record) -> RGBColor {
    let RGBColor(cr, cg, cb) = color(r);
    let sc = r.scenario.as_str();
    let f = |c: u8, t: f64| -> u8 {
        if t >= 0.0 {
            (c as f64 + (255.0 - c as f64) * t) as u8
        } else {
            (c as f64 * (1.0 + t)) as u8
        }
    };
    let t = if sc.ends_with("-decap") || sc.ends_with("-rev") {
        -0.45
    } else if sc.contains("-vxlan") {
        0.45
    } else {
        0.0
    };
    RGBColor(f(cr, t), f(cg, t), f(cb, t))
}

fn setups(path: &Path, records: &[Record]) -> Result<bool, String> {
    let groups: Vec<String> = crate::report::by_setup(records)
        .iter()
        .map(|(s, _)| s.name.clone())
        .collect();
    if groups.len() < 2 {
        return Ok(false);
    }
    let churned = |r: &Record| r.stats.contains_key("route_changes_per_s");
    let mut wls: Vec<&str> = Vec::new();
    for r in records.iter().filter(|r| r.kind == "udp" && !churned(r)) {
        if !wls.contains(&r.workload.as_str()) {
            wls.push(&r.workload);
        }
    }
    let mut panels = Vec::new();
    for wl in wls {
        let of_wl: Vec<&Record> = records
            .iter()
            .filter(|r| r.workload == wl && !churned(r))
            .collect();
        if groups
            .iter()
            .filter(|g| of_wl.iter().any(|r| &r.setup == *g))
            .count()
            < 2
        {
            continue;
        }
        // One series per scenario that has the value under at least one set-up.
        let series = |of: &dyn Fn(&Record) -> Option<&Stat>, scale: f64| {
            let mut out: Vec<(String, RGBColor, Vec<Option<Stat>>)> = Vec::new();
            for r in &of_wl {
                if out.iter().any(|(n, ..)| *n == r.scenario) {
                    continue;
                }
                let vals: Vec<Option<Stat>> = groups
                    .iter()
                    .map(|g| {
                        let x = of_wl
                            .iter()
                            .find(|x| &x.setup == g && x.scenario == r.scenario)?;
                        let s = of(x).filter(|s| s.median.is_finite())?;
                        Some(Stat {
                            median: s.median * scale,
                            min: s.min * scale,
                            max: s.max * scale,
                        })
                    })
                    .collect();
                if vals.iter().any(Option::is_some) {
                    out.push((r.scenario.clone(), series_color(r), vals));
                }
            }
            out
        };
        // Per busy core (the metric) and per task core (blind to other load on
        // the forwarding CPU, the one to compare across set-ups on a shared machine).
        for (metric, per) in [
            ("pps_per_core", "per busy core"),
            ("pps_per_task_core", "per task core"),
        ] {
            let ratio = format!("ratio_{metric}");
            panels.push(Grouped {
                title: format!("{wl}: the kernel's Mpps {per}, per set-up"),
                y_desc: "Mpps / core",
                groups: groups.clone(),
                series: series(
                    &|r| {
                        (r.backend == "kernel")
                            .then(|| r.stats.get(metric))
                            .flatten()
                    },
                    1e-6,
                ),
                decimals: 3,
                reference: None,
            });
            panels.push(Grouped {
                title: format!("{wl}: {per}, ratio to the kernel of the same set-up"),
                y_desc: "x kernel",
                groups: groups.clone(),
                series: series(&|r| r.vs_baseline.get(&ratio), 1.0),
                decimals: 2,
                reference: Some(1.0),
            });
            panels.push(Grouped {
                title: format!("{wl}: {per}, fraction of its own limit in the same set-up"),
                y_desc: "x limit",
                groups: groups.clone(),
                series: series(&|r| r.vs_limit.get(&ratio), 1.0),
                decimals: 2,
                reference: Some(1.0),
            });
        }
    }
    let panels: Vec<&Grouped> = panels.iter().filter(|p| !p.series.is_empty()).collect();
    if panels.is_empty() {
        return Ok(false);
    }
    const SLOT: u32 = 30;
    const LEGEND: u32 = 230;
    let slots = |p: &Grouped| (p.groups.len() * (p.series.len() + 1)) as u32;
    let width = (LEGEND + 100 + SLOT * panels.iter().map(|p| slots(p)).max().unwrap_or(1)).max(900);
    let height = 380 * panels.len() as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    for (area, p) in root.split_evenly((panels.len(), 1)).iter().zip(&panels) {
        let (plot, legend) = area.split_horizontally(width - LEGEND);
        grouped_panel(&plot, p).map_err(|e| err(&e))?;
        for (i, (n, c, _)) in p.series.iter().enumerate() {
            let y = 46 + 20 * i as i32;
            legend
                .draw(&Rectangle::new([(6, y), (20, y + 14)], c.filled()))
                .map_err(|e| err(&e))?;
            legend
                .draw(&Text::new(n.clone(), (26, y), (FAMILY, 14)))
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(true)
}

fn grouped_panel(area: &Area<'_>, p: &Grouped) -> DrawResult<()> {
    let per = p.series.len() + 1;
    // Slots: the series of group 0, a gap, the series of group 1, ...
    let n = p.groups.len() * per - 1;
    let slot = |g: usize, i: usize| g * per + i;
    let bars: Vec<SlotBar> = p
        .series
        .iter()
        .enumerate()
        .flat_map(|(i, (_, c, v))| {
            v.iter()
                .enumerate()
                .filter_map(move |(g, s)| Some((slot(g, i), *c, s.clone()?)))
        })
        .collect();
    let top = top_of(&bars, p.reference);
    let (groups, mid) = (p.groups.clone(), p.series.len() / 2);
    let fmt_x = move |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if i % per == mid => {
            groups.get(i / per).cloned().unwrap_or_default()
        }
        _ => String::new(),
    };
    let look = Look {
        x_label_size: 14,
        bar_margin: 3,
        whisker_width: 1,
        value_size: 10,
        decimals: p.decimals,
    };
    let mut chart = axes(area, &p.title, p.y_desc, n, top, &fmt_x, &look)?;
    draw_bars(&mut chart, &bars, top, &look)?;
    if let Some(y) = p.reference {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(SegmentValue::Exact(0), y), (SegmentValue::Exact(n), y)],
            BLACK.mix(0.6).stroke_width(1),
        )))?;
    }
    Ok(())
}

/// Draws the panels one above the other; false (and no file) if there are none.
fn draw(path: &Path, panels: &[Panel]) -> Result<bool, String> {
    let panels: Vec<&Panel> = panels.iter().filter(|p| !p.bars.is_empty()).collect();
    if panels.is_empty() {
        return Ok(false);
    }
    let width =
        (200 + 130 * panels.iter().map(|p| p.bars.len()).max().unwrap_or(1) as u32).max(640);
    let height = 340 * panels.len() as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    for (area, p) in root.split_evenly((panels.len(), 1)).iter().zip(&panels) {
        panel(area, p).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(true)
}

fn panel(area: &Area<'_>, p: &Panel) -> DrawResult<()> {
    let n = p.bars.len();
    let bars: Vec<SlotBar> = p
        .bars
        .iter()
        .enumerate()
        .filter(|(_, b)| b.stat.median.is_finite())
        .map(|(i, b)| (i, b.color, b.stat.clone()))
        .collect();
    let top = top_of(&bars, None);
    let labels: Vec<String> = p.bars.iter().map(|b| b.label.clone()).collect();
    let fmt_x = move |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let look = Look {
        x_label_size: 13,
        bar_margin: 22,
        whisker_width: 2,
        value_size: 14,
        decimals: p.decimals,
    };
    let mut chart = axes(area, &p.title, p.y_desc, n, top, &fmt_x, &look)?;
    draw_bars(&mut chart, &bars, top, &look)
}

type Area<'b> = DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>;
type DrawResult<T> =
    Result<T, DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;
type Axes<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<
        plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize>,
        plotters::coord::types::RangedCoordf64,
    >,
>;
/// A bar in its slot: slot, colour, median with min–max.
type SlotBar = (usize, RGBColor, Stat);

/// What differs between the charts' panels.
struct Look {
    x_label_size: u32,
    /// Pixels between a bar and its slot's edges.
    bar_margin: u32,
    whisker_width: u32,
    /// Font size of the value above each bar.
    value_size: u32,
    decimals: usize,
}

/// The y axis' top: the highest median or maximum (or reference line), plus room for the
/// values written above the bars.
fn top_of(bars: &[SlotBar], reference: Option<f64>) -> f64 {
    let top = bars
        .iter()
        .flat_map(|(_, _, s)| [s.max, s.median])
        .chain(reference)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    if top > 0.0 {
        top * 1.18
    } else {
        1.0
    }
}

/// A panel's axes: `n` bar slots labelled by `fmt_x`, y from 0 to `top`.
fn axes<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
    y_desc: &str,
    n: usize,
    top: f64,
    fmt_x: &dyn Fn(&SegmentValue<usize>) -> String,
    look: &Look,
) -> DrawResult<Axes<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        // A range 0..m segments into m + 1 slots: one per bar.
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(fmt_x)
        .x_label_style((FAMILY, look.x_label_size))
        .y_label_style((FAMILY, 13))
        .y_desc(y_desc)
        .draw()?;
    Ok(chart)
}

/// Bars of the medians, min–max whiskers, and each median written above its bar.
fn draw_bars(chart: &mut Axes<'_, '_>, bars: &[SlotBar], top: f64, look: &Look) -> DrawResult<()> {
    chart.draw_series(bars.iter().map(|(x, c, s)| {
        let mut r = Rectangle::new(
            [
                (SegmentValue::Exact(*x), 0.0),
                (SegmentValue::Exact(*x + 1), s.median),
            ],
            c.filled(),
        );
        r.set_margin(0, 0, look.bar_margin, look.bar_margin);
        r
    }))?;
    chart.draw_series(
        bars.iter()
            .filter(|(_, _, s)| s.min < s.max)
            .map(|(x, _, s)| {
                PathElement::new(
                    vec![
                        (SegmentValue::CenterOf(*x), s.min),
                        (SegmentValue::CenterOf(*x), s.max),
                    ],
                    BLACK.stroke_width(look.whisker_width),
                )
            }),
    )?;
    let label_style = TextStyle::from((FAMILY, look.value_size).into_font())
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(bars.iter().map(|(x, _, s)| {
        Text::new(
            format!("{:.*}", look.decimals, s.median),
            (SegmentValue::CenterOf(*x), s.max.max(s.median) + top * 0.01),
            label_style.clone(),
        )
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_font_file_is_a_clear_error() {
        let e = load_font(Some(Path::new("/nonexistent/font.ttf"))).unwrap_err();
        assert!(
            e.contains("/nonexistent/font.ttf") && e.contains("--font"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_font_is_refused() {
        let p = std::env::temp_dir().join(format!("podfwd-bench-notafont-{}", std::process::id()));
        std::fs::write(&p, b"not a font").unwrap();
        let e = load_font(Some(&p)).unwrap_err();
        let _ = std::fs::remove_file(&p);
        assert!(e.contains("not a TrueType"), "{e}");
    }
}
