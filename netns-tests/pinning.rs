//! A worker that cannot be pinned to its core fails `podfwd run` cleanly, naming the core.

use crate::harness::skip_unless_root;
use crate::traffic::exe;
use podfwd::config::{Backend, Mode};
use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};

#[test]
fn tun_worker_on_a_missing_cpu_fails_the_start_and_leaves_nothing_behind() {
    skip_unless_root!();
    let spec = ClusterSpec {
        mode: Mode::Vxlan,
        nodes: [NodeKind::Podfwd, NodeKind::KernelVxlan],
        ..ClusterSpec::default()
    };
    let c = Cluster::build_with_backend("pin", spec, Backend::Tun).expect("cluster");
    // The first worker pins (CPU 0), the second cannot: CPU 1000 exists nowhere.
    let toml = c
        .config_toml(0)
        .replace("cores = [0]", "cores = [0, 1000]")
        .replace("cores = [1]", "cores = [0, 1000]");
    assert!(toml.contains("cores = [0, 1000]"), "{toml}");
    let cfg = c.config_path(0);
    std::fs::write(&cfg, toml).unwrap();
    let out = c.nodes[0]
        .exec_unchecked(&[
            &exe().display().to_string(),
            "run",
            "--config",
            &cfg.display().to_string(),
        ])
        .expect("run podfwd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "podfwd: error: worker on cpu 1000 failed: could not pin the worker thread to cpu 1000"
        ),
        "{stderr}"
    );
    // Nothing left: no route into the TUN (table 112), no TUN device, no control socket.
    // What the kernel slow path got stays, as flanneld's state would.
    let routes = c.nodes[0]
        .ip(&["route", "show", "table", "112", SIDES[1].pod_cidr])
        .unwrap();
    assert!(
        routes.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&routes.stdout)
    );
    assert!(c.nodes[0].ip(&["link", "show", "podfwd0"]).is_err());
    assert!(!c.socket_path(0).exists());
}
