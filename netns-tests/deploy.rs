//! `podfwd run` confined as `deploy/podfwd.service` confines it, without systemd (PID 1
//! here is not systemd): the same capability bounding set (read from the unit file),
//! no new privileges, and `LimitMEMLOCK`, applied with setpriv(1) and `ulimit -l`.
//!
//! With exactly the unit's capabilities podfwd forwards pod traffic over AF_XDP in the
//! two-node lab cluster; with any one of them removed it fails to start. So the unit's
//! set is sufficient and none of it is superfluous.
//!
//! `LimitMEMLOCK=infinity`: without CAP_IPC_LOCK the kernel charges AF_XDP UMEM pages to
//! RLIMIT_MEMLOCK (per user). Where the test cannot raise the limit (a sandbox without
//! CAP_SYS_RESOURCE, hard limit 8 MiB) it first shows that the default UMEM (16 MiB) then
//! fails, which is why the unit sets the limit, and runs the rest with a 2 MiB UMEM.
//! The DaemonSet's set (the unit's plus IPC_LOCK, as Kubernetes cannot raise rlimits)
//! starts with the default UMEM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use podfwd::config::Mode;
use podfwd::control::query_stats;
use podfwd::lab::{Cluster, ClusterSpec, NodeKind};

use crate::harness::{skip_unless_root, wait_until};

/// UMEM and rings that fit twice (two nodes, one user) in an 8 MiB RLIMIT_MEMLOCK.
const SMALL_UMEM: &str = "frame_count = 512\nrx_ring_size = 256\ntx_ring_size = 256\n\
                          fill_ring_size = 256\ncomp_ring_size = 256\n";

const UNIT: &str = include_str!("../deploy/podfwd.service");

/// The value of `key=` in the unit (the last assignment wins, as in systemd).
fn unit_value(key: &str) -> String {
    UNIT.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("deploy/podfwd.service has no {key}="))
        .trim()
        .to_string()
}

/// `CapabilityBoundingSet=` as setpriv names them (`net_admin`, ...).
fn unit_capabilities() -> Vec<String> {
    unit_value("CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| {
            c.strip_prefix("CAP_")
                .unwrap_or_else(|| panic!("{c} is not a capability name"))
                .to_lowercase()
        })
        .collect()
}

/// A wrapper that runs podfwd as the unit would: `LimitMEMLOCK`, the bounding set
/// `caps`, no inheritable or ambient capabilities, no new privileges. Still uid 0 (as
/// `User=root`), so after exec podfwd holds exactly the bounding set. `timeout`: a
/// podfwd that does not fail keeps running: `limit` stops it then (negative cases).
fn confined(dir: &Path, name: &str, caps: &[String], limit: Option<u32>) -> PathBuf {
    let memlock = match unit_value("LimitMEMLOCK").as_str() {
        "infinity" => "unlimited".to_string(),
        other => other.to_string(),
    };
    let bounding: String = caps.iter().map(|c| format!(",+{c}")).collect();
    let script = format!(
        "#!/bin/sh\nulimit -l {memlock} 2>/dev/null || echo \"cannot raise RLIMIT_MEMLOCK to {memlock} here\" >&2\n\
         exec {timeout}setpriv --inh-caps=-all --ambient-caps=-all \
         --bounding-set=-all{bounding} --no-new-privs -- {} \"$@\"\n",
        env!("CARGO_BIN_EXE_podfwd"),
        timeout = limit.map(|s| format!("timeout -s TERM {s} ")).unwrap_or_default(),
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Whether this process may raise RLIMIT_MEMLOCK as far as the unit does.
fn memlock_can_be_raised() -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    let caps = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_RESOURCE: u32 = 24;
    lim.rlim_max == libc::RLIM_INFINITY || eff & (1 << CAP_SYS_RESOURCE) != 0
}

/// Runs `exe run --config config` in node `i` and waits for its control socket.
fn start(c: &Cluster, i: usize, exe: &Path, config: &Path, log: &Path) -> u32 {
    let pid = c.nodes[i]
        .spawn_logged(
            &[
                exe.to_str().unwrap(),
                "run",
                "--config",
                config.to_str().unwrap(),
            ],
            log,
        )
        .unwrap();
    let up = wait_until(Duration::from_secs(20), || {
        query_stats(&c.socket_path(i)).is_ok()
    });
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(up, "podfwd on node {i} did not come up:\n{log_text}");
    pid
}

/// Runs a confined podfwd to its end (it must fail by itself); returns its stderr.
#[track_caller]
fn run_to_failure(c: &Cluster, exe: &Path, config: &Path, what: &str) -> String {
    let out = c.nodes[0]
        .exec_unchecked(&[
            exe.to_str().unwrap(),
            "run",
            "--config",
            config.to_str().unwrap(),
        ])
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(
        out.status.code(),
        Some(124),
        "podfwd kept running {what}: the unit need not provide it\n{stderr}"
    );
    assert!(!out.status.success(), "{what}: {stderr}");
    assert!(stderr.contains("podfwd: error:"), "{what}: {stderr}");
    stderr
}

fn scratch(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_unit_s_capabilities_suffice_and_each_is_needed() {
    skip_unless_root!();
    let caps = unit_capabilities();
    assert!(caps.contains(&"net_admin".to_string()), "{caps:?}");
    let dir = scratch("caps");
    let spec = ClusterSpec {
        mode: Mode::Vxlan,
        nodes: [NodeKind::Podfwd, NodeKind::Podfwd],
        ..ClusterSpec::default()
    };
    let c = Cluster::build("dpcaps", spec).unwrap_or_else(|e| panic!("cluster: {e}"));

    let configs: Vec<PathBuf> = (0..2)
        .map(|i| {
            let mut text = c.config_toml(i);
            if !memlock_can_be_raised() {
                text = text.replacen("[dataplane]\n", &format!("[dataplane]\n{SMALL_UMEM}"), 1);
            }
            let path = dir.join(format!("node{i}.toml"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let exe = confined(&dir, "podfwd-unit-caps", &caps, None);
    let default_config = dir.join("node0-default-umem.toml");
    std::fs::write(&default_config, c.config_toml(0)).unwrap();

    if !memlock_can_be_raised() {
        eprintln!("RLIMIT_MEMLOCK cannot be raised here: showing the default UMEM fails");
        let limited = confined(&dir, "podfwd-unit-caps-limited", &caps, Some(15));
        let stderr = run_to_failure(&c, &limited, &default_config, "with 8 MiB of memlock");
        assert!(stderr.contains("UMEM"), "{stderr}");
    }

    // The DaemonSet (deploy/kubernetes/podfwd.yaml) cannot set rlimits and adds
    // IPC_LOCK instead: with it the default UMEM starts under any RLIMIT_MEMLOCK.
    let mut with_ipc_lock = caps.clone();
    with_ipc_lock.push("ipc_lock".to_string());
    let exe_k8s = confined(&dir, "podfwd-daemonset-caps", &with_ipc_lock, None);
    let pid = start(&c, 0, &exe_k8s, &default_config, &dir.join("k8s.log"));
    assert!(c.nodes[0].terminate(pid, Duration::from_secs(5)));

    // Exactly the unit's set: both nodes forward, and the frames went through podfwd's
    // workers (the kernel slow path alone would also answer the ping).
    let pids: Vec<u32> = (0..2)
        .map(|i| start(&c, i, &exe, &configs[i], &dir.join(format!("node{i}.log"))))
        .collect();
    let mut last = String::new();
    let answered = wait_until(Duration::from_secs(10), || {
        last = c.ping(0, 3).unwrap_or_else(|e| e.to_string());
        last.contains(" 0% packet loss")
    });
    assert!(answered, "pods do not reach each other:\n{last}");
    let stats = query_stats(&c.socket_path(0)).unwrap();
    let encapsulated = stats.total.get("encapsulated").copied().unwrap_or(0);
    assert!(
        encapsulated > 0,
        "nothing went through podfwd: {:?}",
        stats.total
    );
    for (i, pid) in pids.into_iter().enumerate() {
        assert!(
            c.nodes[i].terminate(pid, Duration::from_secs(5)),
            "podfwd on node {i} did not exit cleanly on SIGTERM"
        );
    }

    // One capability fewer: podfwd must fail on its own (not be stopped by timeout).
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let exe = confined(&dir, &format!("podfwd-without-{missing}"), &fewer, Some(15));
        let what = format!("without CAP_{}", missing.to_uppercase());
        let stderr = run_to_failure(&c, &exe, &configs[0], &what);
        let error = stderr.lines().find(|l| l.contains("podfwd: error:"));
        eprintln!("{what}: {}", error.unwrap_or(""));
    }
}
