//! The bench harness (`tools/bench.sh`, `podfwd-bench run`) in its quick form for one
//! scenario pair, with a short window: every scenario must have forwarded traffic and the
//! result files must be well-formed. No speed is asserted (CI machines vary).

use crate::harness::skip_unless_root;
use std::path::Path;
use std::process::Command;

#[test]
fn bench_quick_host_gw_pair() {
    skip_unless_root!();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        crate::harness::print_skip("the bench needs 2 CPUs");
        return;
    }
    let out_dir = std::env::temp_dir().join(format!("podfwd-bench-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = Command::new(env!("CARGO_BIN_EXE_podfwd-bench"))
        .args([
            "run",
            "--quick",
            "--secs",
            "1",
            "--scenarios",
            "kernel-host-gw,afxdp-host-gw",
            "--podfwd",
            env!("CARGO_BIN_EXE_podfwd"),
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .expect("run podfwd-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "podfwd-bench failed:\n{stderr}");
    check_results(&out_dir, &["kernel-host-gw", "afxdp-host-gw"], &stderr);
    let _ = std::fs::remove_dir_all(&out_dir);
}

fn check_results(dir: &Path, scenarios: &[&str], log: &str) {
    let json = std::fs::read_to_string(dir.join("latest.json")).expect("latest.json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("latest.json parses");
    let records = v.as_array().expect("an array of records");
    assert_eq!(records.len(), scenarios.len(), "{json}");
    for (r, name) in records.iter().zip(scenarios) {
        assert_eq!(r["scenario"], *name);
        assert_eq!(r["workload"], "udp-64B");
        assert!(r["machine"]["kernel"].is_string());
        assert!(r["settings"]["runs"].as_u64() == Some(1));
        let runs = r["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1);
        let received = runs[0]["received"].as_u64().expect("received");
        assert!(received > 0, "{name} forwarded nothing\n{log}");
        assert!(runs[0]["sink_pps"].as_f64().is_some_and(|p| p > 0.0));
        for k in ["sink_pps", "pps_per_core", "loss", "fwd_cpu_busy"] {
            assert!(r[k]["median"].is_number(), "{name}: {k} missing");
        }
    }
    // The podfwd scenario is compared with its kernel baseline from the same round.
    assert!(records[1]["ratio_per_core"]["median"].is_number(), "{json}");
    let md = std::fs::read_to_string(dir.join("latest.md")).expect("latest.md");
    assert!(md.contains("| scenario |"), "{md}");
    for name in scenarios {
        assert!(
            md.lines().any(|l| l.starts_with(&format!("| {name} |"))),
            "{md}"
        );
    }
    let stamped = std::fs::read_dir(dir)
        .expect("results dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("bench-"))
        .count();
    assert_eq!(stamped, 3, "bench-<time>.json, .md and .svg");
    let svg = std::fs::read_to_string(dir.join("latest.svg")).expect("latest.svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<rect").count(), scenarios.len(), "{svg}");
}
