//! Live route updates without a pause (issue 10): 1,000 route changes per second while
//! UDP flows to a peer that does not change.
//!
//! Node A runs `podfwd run` with `[cluster] source = "etcd"`; node B is a kernel node as
//! flanneld configures it and runs etcd (`cluster::lab_registry`). The paced UDP flow of
//! `churn.rs` (pod A -> pod B, [`RATE`] datagrams per second, each with its sequence
//! number and send time) runs twice on the same cluster for [`SECS`] s: once quiet
//! (the baseline), once while a driver in node B's namespace adds and removes other
//! peers' leases through etcd's API at [`CHURN_RATE`] operations per second, each one a
//! route podfwd adds or removes (FIB, classifier maps, kernel slow path) while its
//! worker forwards. [`POOL`] subnets cycle: the first `POOL` operations add a lease
//! each, the next `POOL` delete them again, and so on; the run ends with none left.
//!
//! Asserted: the churn run loses no more datagrams than the quiet one (none is the
//! expectation on either), its worst one-way latency stays under [`STALL`] (a stalled
//! worker would hold the flow in its rings), podfwd carried the flow itself, the
//! driver kept its rate, podfwd had churn routes in its FIB during the run (sampled) and
//! has none of them a second after the last operation, and it is alive with its one
//! worker. The numbers of both runs are printed side by side.

use crate::churn::{assert_podfwd_alive, carried, mono, spec, Flow, Rec, RATE};
use crate::cluster::{etcd_node_toml, host_gw_lease_json, lab_registry, lease_json, PREFIX};
use crate::harness::{skip_unless_root, wait_until, Netns};
use crate::neigh::in_netns;
use crate::traffic::{exe, ping_ok};
use podfwd::config::{Backend, Mode};
use podfwd::control::query_routes;
use podfwd::lab::{Cluster, SIDES};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Route changes (lease puts and deletes) per second.
const CHURN_RATE: u64 = 1000;
/// Seconds of flow per run.
const SECS: u64 = 8;
/// Subnets the driver cycles through: 10.244.20.0/24 .. 10.244.(20 + POOL - 1).0/24.
const POOL: u64 = 100;
/// The worst one-way latency of the flow that still counts as "no stall".
const STALL: f64 = 0.25;

/// What one run of the flow saw.
struct Run {
    sent: u64,
    errs: u64,
    lost: u64,
    carried: u64,
    /// Worst and median one-way latency (s).
    worst: f64,
    median: f64,
}

fn summarize(sent: u64, errs: u64, recs: &[Rec], carried: u64) -> Run {
    let mut lat: Vec<f64> = recs.iter().map(|r| r.recv - r.sent).collect();
    lat.sort_by(f64::total_cmp);
    Run {
        sent,
        errs,
        lost: sent - recs.len() as u64,
        carried,
        worst: lat.last().copied().unwrap_or(f64::NAN),
        median: lat.get(lat.len() / 2).copied().unwrap_or(f64::NAN),
    }
}

/// The lease key and value of churn subnet `j` in `mode`.
fn churn_lease(j: u64, mode: Mode) -> (String, String) {
    let key = format!("{PREFIX}/subnets/10.244.{}.0-24", 20 + j);
    let ip = format!("10.168.0.{}", 20 + j);
    let value = match mode {
        Mode::HostGw => host_gw_lease_json(&ip),
        _ => lease_json(&ip, &format!("0e:00:00:00:01:{j:02x}")),
    };
    (key, value)
}

/// What the driver did.
struct Driven {
    ops: u64,
    secs: f64,
}

/// Runs `ops` lease operations at [`CHURN_RATE`] per second against etcd on node B's
/// loopback, from a thread in node B's namespace: every 10 ms the operations then due
/// are issued concurrently and awaited. Stops early when `stop` is set.
fn drive(node_b: &Netns, mode: Mode, ops: u64, stop: Arc<AtomicBool>) -> Driven {
    in_netns(node_b, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None)
                .await
                .expect("the churn driver connects to etcd");
            let t0 = Instant::now();
            let mut done = 0u64;
            while done < ops && !stop.load(Ordering::Relaxed) {
                let due = ((t0.elapsed().as_secs_f64() * CHURN_RATE as f64) as u64 + 1).min(ops);
                let mut set = tokio::task::JoinSet::new();
                for k in done..due {
                    let mut kv = client.kv_client();
                    let (key, value) = churn_lease(k % POOL, mode);
                    let add = (k / POOL) % 2 == 0;
                    set.spawn(async move {
                        if add {
                            kv.put(key, value, None).await.map(|_| ())
                        } else {
                            kv.delete(key, None).await.map(|_| ())
                        }
                    });
                }
                while let Some(r) = set.join_next().await {
                    r.expect("churn task").expect("etcd operation");
                }
                done = due;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Driven {
                ops: done,
                secs: t0.elapsed().as_secs_f64(),
            }
        })
    })
}

/// How many churn subnets (10.244.20.0/24 ..) podfwd's FIB holds now.
fn churn_routes(c: &Cluster) -> Option<usize> {
    let r = query_routes(&c.socket_path(0)).ok()?;
    Some(
        r.routes
            .iter()
            .filter(|r| {
                let o = r.prefix.addr().octets();
                o[2] >= 20 && u64::from(o[2]) < 20 + POOL
            })
            .count(),
    )
}

/// One flow of [`SECS`] s; `churn` (if any) runs alongside, started 1 s in.
fn flow_run(c: &Cluster, mode: Mode, churn: bool) -> (Run, Option<Driven>, usize) {
    let ctr = carried(mode);
    let before = c.stats(0).unwrap().total[ctr];
    let flow = Flow::start(c);
    std::thread::sleep(Duration::from_secs(1));
    let mut driven = None;
    let mut peak = 0;
    if churn {
        let ops = CHURN_RATE * (SECS - 2);
        let ops = ops - ops % (2 * POOL);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        std::thread::scope(|s| {
            let (stop2, done2) = (stop.clone(), done.clone());
            let node_b = &c.nodes[1];
            let h = s.spawn(move || {
                let d = drive(node_b, mode, ops, stop2);
                done2.store(true, Ordering::Relaxed);
                d
            });
            let limit = Instant::now() + Duration::from_secs(SECS * 3);
            while !done.load(Ordering::Relaxed) {
                if Instant::now() > limit {
                    stop.store(true, Ordering::Relaxed);
                }
                peak = peak.max(churn_routes(c).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(50));
            }
            driven = Some(h.join().unwrap());
        });
        let t = mono();
        assert!(
            wait_until(Duration::from_secs(1), || churn_routes(c) == Some(0)),
            "{:?} churn routes still in the FIB 1 s after the last operation\n{}",
            churn_routes(c),
            c.logs()
        );
        eprintln!(
            "route churn: FIB back to the unchanged peers {:.0} ms after the last operation",
            (mono() - t) * 1000.0
        );
    } else {
        std::thread::sleep(Duration::from_secs(SECS - 2));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (sent, errs, recs) = flow.stop(c);
    let s = assert_podfwd_alive(c);
    (
        summarize(sent, errs, &recs, s.total[ctr] - before),
        driven,
        peak,
    )
}

fn route_churn(tag: &str, mode: Mode, backend: Backend) {
    let c = Cluster::build_with_backend(tag, spec(mode), backend).expect("lab cluster");
    let _etcd = lab_registry(&c);
    let subnet_env = c.config_path(0).with_file_name("subnet.env");
    let toml = etcd_node_toml(&c, &subnet_env);
    c.start_podfwd_with(0, exe(), &toml)
        .unwrap_or_else(|e| panic!("podfwd run: {e}\n{}", c.logs()));
    assert!(
        wait_until(Duration::from_secs(20), || query_routes(&c.socket_path(0))
            .is_ok_and(|r| r
                .routes
                .iter()
                .any(|r| r.prefix.to_string() == SIDES[1].pod_cidr))),
        "podfwd did not come up with a route to pod B\n{}",
        c.logs()
    );
    ping_ok(&c, 0, 1);
    let (quiet, _, _) = flow_run(&c, mode, false);
    let (busy, driven, peak) = flow_run(&c, mode, true);
    let driven = driven.unwrap();
    let rate = driven.ops as f64 / driven.secs;
    let row = |name: &str, r: &Run| {
        format!(
            "  {name:<6} sent {} ({} send errors), lost {}, podfwd carried {}, latency median {:.2} ms, worst {:.2} ms\n",
            r.sent,
            r.errs,
            r.lost,
            r.carried,
            r.median * 1e3,
            r.worst * 1e3
        )
    };
    let report = format!(
        "route churn, {mode}/{backend}: {} lease operations in {:.2} s ({rate:.0}/s), up to {peak} churn routes at once\n{}{}",
        driven.ops,
        driven.secs,
        row("quiet", &quiet),
        row("churn", &busy)
    );
    eprintln!("{report}");
    let mut failures = Vec::new();
    if driven.ops < CHURN_RATE * (SECS - 2) - 2 * POOL || rate < 0.9 * CHURN_RATE as f64 {
        failures.push(format!("the driver did not keep {CHURN_RATE}/s"));
    }
    if peak < (POOL / 2) as usize {
        failures.push(format!(
            "podfwd's FIB never held many churn routes ({peak})"
        ));
    }
    if busy.lost > quiet.lost {
        failures.push("the churn run lost datagrams the quiet run did not".into());
    }
    if busy.worst > STALL {
        failures.push(format!(
            "a datagram took {:.0} ms during the churn (a stalled worker?)",
            busy.worst * 1e3
        ));
    }
    for r in [&quiet, &busy] {
        if r.carried * 100 < (r.sent - r.lost) * 90 || r.sent < u64::from(RATE) * (SECS - 1) {
            failures.push("podfwd did not carry the flow".into());
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n{report}\n{}",
        failures.join("\n"),
        c.logs()
    );
}

#[test]
fn vxlan_routes_change_1000_per_second_without_loss_to_an_unchanged_peer() {
    skip_unless_root!();
    route_churn("rcx", Mode::Vxlan, Backend::AfXdp);
}

#[test]
fn host_gw_routes_change_1000_per_second_without_loss_to_an_unchanged_peer() {
    skip_unless_root!();
    route_churn("rch", Mode::HostGw, Backend::AfXdp);
}

#[test]
fn tun_routes_change_1000_per_second_without_loss_to_an_unchanged_peer() {
    skip_unless_root!();
    route_churn("rct", Mode::Vxlan, Backend::Tun);
}
