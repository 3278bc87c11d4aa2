//! The bench harness (`tools/bench.sh --quick`, `podfwd-bench run --quick`: one run, a
//! one-second window): every scenario (kernel, AF_XDP and TUN; host-gw, VXLAN encap and
//! decap) and every workload (UDP 64 and 1400 bytes, iperf3 with 1 and 4 streams, the
//! UDP ping-pong) must have moved traffic, podfwd's counters must show that podfwd carried
//! it, and the JSON, Markdown and PNG files must be well-formed. The limit scenarios (the
//! reference forwarders, UDP only) must have forwarded too, and every AF_XDP figure must
//! come as a fraction of its limit. No speed is asserted (CI machines vary). About 2.5
//! minutes on 2 CPUs. A second test runs a tiny set-up sweep (`--setups default,uplink`,
//! kernel-host-gw, afxdp-host-gw and afxdp-limit, udp-64B; about 25 s): every record
//! names its set-up, ratios are taken within it, and the report and chart show the
//! set-ups side by side.

use crate::harness::skip_unless_root;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// The bench tests build the same `pfx-bench-*` namespaces and pin the same CPUs: one at
/// a time, also when the test harness runs tests in parallel.
static ONE_BENCH: Mutex<()> = Mutex::new(());

const SCENARIOS: [&str; 15] = [
    "kernel-host-gw",
    "afxdp-host-gw",
    "tun-host-gw",
    "kernel-vxlan",
    "afxdp-vxlan",
    "tun-vxlan",
    "kernel-vxlan-decap",
    "afxdp-vxlan-decap",
    "xdp-host-gw",
    "xdp-vxlan",
    "xdp-vxlan-decap",
    "afxdp-limit",
    "afxdp-limit-rev",
    "xdp-limit",
    "xdp-limit-rev",
];
const WORKLOADS: [&str; 6] = [
    "udp-64B",
    "udp-1400B",
    "tcp-1",
    "tcp-4",
    "latency",
    "udp-64B-churn",
];

/// Whether the machine has the bench's two CPUs (prints why the test skips if not).
fn two_cpus() -> bool {
    let ok = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    if !ok {
        crate::harness::print_skip("the bench needs 2 CPUs");
    }
    ok
}

/// `podfwd-bench run --quick <args>` into a fresh `out_dir`; asserts it succeeded and
/// returns its log (stderr).
fn run_quick(args: &[&str], out_dir: &Path) -> String {
    let _ = std::fs::remove_dir_all(out_dir);
    let out = Command::new(bench_exe())
        .args(["run", "--quick"])
        .args(args)
        .args(["--podfwd", env!("CARGO_BIN_EXE_podfwd"), "--out"])
        .arg(out_dir)
        .output()
        .expect("run podfwd-bench");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "podfwd-bench failed:\n{log}");
    log
}

#[test]
fn bench_quick_runs_every_scenario_and_workload_and_writes_well_formed_results() {
    skip_unless_root!();
    if !two_cpus() {
        return;
    }
    let _one = ONE_BENCH.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = std::env::temp_dir().join(format!("podfwd-bench-test-{}", std::process::id()));
    let stderr = run_quick(&[], &out_dir);
    check_json(&out_dir, &stderr);
    check_markdown(&out_dir);
    for chart in ["udp", "tcp", "latency"] {
        check_png(&out_dir.join(format!("latest-{chart}.png")));
    }
    let stamped = std::fs::read_dir(&out_dir)
        .expect("results dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("bench-"))
        .count();
    assert_eq!(stamped, 5, "bench-<time>.json, .md and three .png");
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn bench_setup_sweep_shows_the_setups_side_by_side_with_ratios_within_each() {
    skip_unless_root!();
    if !two_cpus() {
        return;
    }
    let _one = ONE_BENCH.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir =
        std::env::temp_dir().join(format!("podfwd-bench-sweep-test-{}", std::process::id()));
    let (setups, scenarios) = (
        ["default", "uplink"],
        ["kernel-host-gw", "afxdp-host-gw", "afxdp-limit"],
    );
    let (setup_list, scenario_list) = (setups.join(","), scenarios.join(","));
    let log = run_quick(
        &[
            "--setups",
            &setup_list,
            "--scenarios",
            &scenario_list,
            "--workloads",
            "udp-64B",
        ],
        &out_dir,
    );
    let json = std::fs::read_to_string(out_dir.join("latest.json")).expect("latest.json");
    let v: Value = serde_json::from_str(&json).expect("latest.json parses");
    let records = v.as_array().expect("an array of records");
    let got: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["setup"].as_str().unwrap(),
                r["scenario"].as_str().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(&str, &str)> = setups
        .iter()
        .flat_map(|s| scenarios.iter().map(move |c| (*s, *c)))
        .collect();
    assert_eq!(
        got, expected,
        "one record per set-up and scenario, set-up first"
    );
    for r in records {
        let (st, sc) = (
            r["setup"].as_str().unwrap(),
            r["scenario"].as_str().unwrap(),
        );
        let what = format!("{st} {sc}");
        assert_eq!(r["settings"]["setup"]["name"].as_str(), Some(st), "{what}");
        assert_eq!(
            r["settings"]["setup"]["qdisc"].as_str(),
            Some(if st == "uplink" { "uplink" } else { "pfifo" }),
            "{what}"
        );
        assert_eq!(r["settings"]["setups"], serde_json::json!(setups), "{what}");
        let run = &r["runs"][0];
        assert!(
            run["received"].as_f64().is_some_and(|x| x > 0.0),
            "{what} forwarded nothing\n{log}"
        );
        if sc.starts_with("kernel-") {
            assert!(r.get("baseline").is_none(), "{what}");
            continue;
        }
        assert_eq!(r["baseline"].as_str(), Some("kernel-host-gw"), "{what}");
        assert!(
            r["vs_baseline"]["ratio_pps_per_core"]["median"].is_number(),
            "{what}"
        );
        if sc == "afxdp-host-gw" {
            assert_eq!(r["limit"].as_str(), Some("afxdp-limit"), "{what}");
            assert!(r["vs_limit"]["ratio_pps_per_core"]["median"].is_number());
            assert!(
                run["podfwd"]["forwarded"].as_u64().is_some_and(|x| x > 0),
                "{what}: podfwd forwarded nothing"
            );
        }
    }
    let md = std::fs::read_to_string(out_dir.join("latest.md")).expect("latest.md");
    assert!(md.contains("### Set-ups side by side"), "{md}");
    assert!(
        md.contains(
            "#### udp-64B: Mpps per busy core, per set-up\n\n| scenario | default | uplink |"
        ),
        "{md}"
    );
    let row = |sc: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {sc} | ")) && l.matches(" | ").count() == 2)
            .unwrap_or_else(|| panic!("no set-ups row for {sc}:\n{md}"))
            .to_string()
    };
    assert!(row("kernel-host-gw").ends_with("x default) |"), "{md}");
    assert_eq!(row("afxdp-host-gw").matches("x k, ").count(), 2, "{md}");
    assert_eq!(row("afxdp-host-gw").matches("x lim)").count(), 2, "{md}");
    for st in setups {
        assert!(md.contains(&format!("### Set-up `{st}`")), "{md}");
    }
    check_png(&out_dir.join("latest-setups.png"));
    check_png(&out_dir.join("latest-udp.png"));
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// Whether `wl` runs for `sc` (the latency round trip is measured in the encap direction;
/// route churn is podfwd's control plane; the limits measure UDP only).
fn applies(sc: &str, wl: &str) -> bool {
    let latency_of_decap = wl == "latency" && sc.ends_with("-decap");
    let churn_of_kernel = wl.ends_with("-churn") && (is_kernel(sc) || is_limit(sc));
    let not_udp_of_limit = is_limit(sc) && !wl.starts_with("udp");
    !latency_of_decap && !churn_of_kernel && !not_udp_of_limit
}

fn is_limit(sc: &str) -> bool {
    sc.contains("-limit")
}

/// The limit of an AF_XDP or XDP scenario: same path, same direction.
fn limit_of(sc: &str) -> Option<&'static str> {
    match sc {
        "afxdp-host-gw" | "afxdp-vxlan" => Some("afxdp-limit"),
        "afxdp-vxlan-decap" => Some("afxdp-limit-rev"),
        "xdp-host-gw" | "xdp-vxlan" => Some("xdp-limit"),
        "xdp-vxlan-decap" => Some("xdp-limit-rev"),
        _ => None,
    }
}

fn is_kernel(sc: &str) -> bool {
    sc.starts_with("kernel-")
}

fn check_json(dir: &Path, log: &str) {
    let json = std::fs::read_to_string(dir.join("latest.json")).expect("latest.json");
    let v: Value = serde_json::from_str(&json).expect("latest.json parses");
    let records = v.as_array().expect("an array of records");
    let expected: Vec<(&str, &str)> = WORKLOADS
        .iter()
        .flat_map(|w| SCENARIOS.iter().map(move |s| (*s, *w)))
        .filter(|(s, w)| applies(s, w))
        .collect();
    let got: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["scenario"].as_str().expect("scenario"),
                r["workload"].as_str().expect("workload"),
            )
        })
        .collect();
    assert_eq!(got, expected, "one record per scenario and workload");
    for r in records {
        let (sc, wl) = (
            r["scenario"].as_str().unwrap(),
            r["workload"].as_str().unwrap(),
        );
        let what = format!("{sc} {wl}");
        assert!(
            r["machine"]["kernel"]
                .as_str()
                .is_some_and(|k| !k.is_empty()),
            "{what}"
        );
        assert!(r["machine"]["cpu_model"].is_string(), "{what}");
        assert_eq!(r["settings"]["runs"].as_u64(), Some(1), "{what}");
        assert_eq!(r["settings"]["quick"].as_bool(), Some(true), "{what}");
        let runs = r["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1, "{what}");
        let run = &runs[0];
        let positive = |k: &str| run[k].as_f64().is_some_and(|x| x > 0.0);
        match r["kind"].as_str().expect("kind") {
            "udp" => {
                assert!(positive("received"), "{what} forwarded nothing\n{log}");
                assert!(positive("sink_pps"), "{what}");
                assert!(r["stats"]["pps_per_core"]["median"].is_number(), "{what}");
            }
            "tcp" => {
                assert!(positive("received_bytes"), "{what} moved no bytes\n{log}");
                assert!(positive("gbps"), "{what}");
            }
            "latency" => {
                assert!(positive("received"), "{what}: no replies\n{log}");
                let (p50, p99) = (run["p50_us"].as_f64(), run["p99_us"].as_f64());
                assert!(
                    p50.is_some_and(|p| p > 0.0) && p50 <= p99,
                    "{what}: {p50:?} {p99:?}"
                );
            }
            k => panic!("{what}: unknown kind {k}"),
        }
        assert!(run["fwd_cpu_busy"].is_number(), "{what}");
        if sc.starts_with("kernel-") {
            assert!(r.get("baseline").is_none(), "{what}");
            assert!(run.get("podfwd").is_none(), "{what}");
            continue;
        }
        if is_limit(sc) {
            // A reference forwarder: against the kernel of its direction, no limit of
            // its own, no podfwd.
            assert_eq!(r["backend"].as_str(), sc.split("-rev").next(), "{what}");
            assert!(r["baseline"].as_str().is_some_and(is_kernel), "{what}");
            assert!(r["vs_baseline"]["ratio_pps_per_task_core"]["median"].is_number());
            assert!(
                r.get("limit").is_none() && run.get("podfwd").is_none(),
                "{what}"
            );
            continue;
        }
        // AF_XDP figures are also a fraction of their own path's limit (not under churn,
        // which is compared with its quiet run).
        if let (Some(limit), false) = (limit_of(sc), wl.ends_with("-churn")) {
            if r["kind"] == "udp" {
                assert_eq!(r["limit"].as_str(), Some(limit), "{what}");
                assert!(
                    r["vs_limit"]["ratio_pps_per_task_core"]["median"].is_number(),
                    "{what}"
                );
            }
        }
        // podfwd on node A: compared with its kernel baseline of the same round (under
        // route churn: with its own run without churn), and its own counters prove it
        // carried the traffic.
        let baseline = r["baseline"].as_str();
        if wl.ends_with("-churn") {
            assert_eq!(baseline, Some(format!("{sc} udp-64B").as_str()), "{what}");
            assert!(
                run["metrics"]["route_changes_per_s"]
                    .as_f64()
                    .is_some_and(|x| x > 0.0),
                "{what}: no route churn"
            );
        } else {
            assert!(baseline.is_some_and(is_kernel), "{what}");
        }
        let cmp = r["vs_baseline"].as_object().expect("vs_baseline");
        assert!(
            !cmp.is_empty() && cmp.values().all(|s| s["median"].is_number()),
            "{what}"
        );
        let counters = &run["podfwd"];
        let counter = |k: &str| counters[k].as_u64().unwrap_or(0);
        let work = if sc.ends_with("-decap") {
            "decapsulated"
        } else if sc.ends_with("-vxlan") {
            "encapsulated"
        } else {
            "forwarded"
        };
        if sc.starts_with("xdp-") && (r["kind"] == "tcp" || r["kind"] == "latency") {
            // iperf3's and the ping-pong's sockets send from veths with checksum offload,
            // so their checksums are partial: the in-kernel fast path completes them
            // (docs/xdp-fastpath.md) and forwards the frames itself.
            assert!(
                counter("checksums_completed") > 0,
                "{what}: no partial checksum completed: {counters}"
            );
        }
        assert!(
            counter(work) > 0,
            "{what}: podfwd {work} nothing: {counters}"
        );
    }
}

fn check_markdown(dir: &Path) {
    let md = std::fs::read_to_string(dir.join("latest.md")).expect("latest.md");
    for header in ["#### UDP", "#### TCP", "#### Latency", "#### Goals"] {
        assert!(md.contains(header), "{header} missing:\n{md}");
    }
    for sc in SCENARIOS {
        for wl in WORKLOADS
            .iter()
            .filter(|w| w.starts_with("udp") || w.starts_with("tcp"))
            .filter(|w| applies(sc, w))
        {
            assert!(
                md.lines()
                    .any(|l| l.starts_with(&format!("| {sc} | {wl} |"))),
                "no row for {sc} {wl}:\n{md}"
            );
        }
    }
    for sc in SCENARIOS.iter().filter(|s| limit_of(s).is_some()) {
        let limit = limit_of(sc).unwrap();
        assert!(
            md.lines()
                .any(|l| l.starts_with(&format!("| {sc} | udp-64B |"))
                    && l.contains(&format!("of {limit} |"))),
            "{sc}: no fraction of {limit}:\n{md}"
        );
    }
    // Every goal is judged (met or missed) when every scenario ran.
    let goals = md.split("#### Goals").nth(1).unwrap_or_default();
    assert_eq!(
        goals.matches("| met |").count() + goals.matches("| missed |").count(),
        8,
        "{goals}"
    );
}

/// A PNG: signature, IHDR first with a plausible size, IEND last, and not a blank image.
fn check_png(path: &Path) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        b.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{}: no PNG signature",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR", "{}", path.display());
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    assert!(w >= 300 && h >= 300, "{}: {w}x{h}", path.display());
    assert!(
        b.ends_with(b"IEND\xae\x42\x60\x82"),
        "{}: truncated",
        path.display()
    );
    // A blank chart compresses to a few KB; bars, axes and text do not.
    assert!(
        b.len() > 20_000,
        "{}: only {} bytes",
        path.display(),
        b.len()
    );
}

/// The podfwd-bench binary: a workspace member of its own (tools/bench), built beside
/// podfwd by `cargo build --release --workspace` (or `-p podfwd-bench`).
fn bench_exe() -> std::path::PathBuf {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_podfwd")).with_file_name("podfwd-bench");
    assert!(
        exe.exists(),
        "{} is missing: build it first with `cargo build --release -p podfwd-bench`",
        exe.display()
    );
    exe
}
