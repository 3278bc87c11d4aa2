//! The node's one control plane, the same for every backend (`podfwd run`).
//!
//! It builds the FIB from the route source ([`source`]) and keeps it: neighbours
//! ([`neighbours`]), the kernel slow path ([`kernel`], for backends that have one), the
//! control socket ([`socket`]: `podfwd stats`, `podfwd routes`), signals (SIGINT/SIGTERM
//! stop, SIGHUP reloads the route source: [`reload`] says what may change live). The
//! backend ([`crate::backend`]) owns the I/O and the workers, which read the FIB the
//! control plane publishes (RCU): a route change never stops a worker.
//!
//! One thread runs [`run`]'s loop: neighbour events (waiting up to 50 ms for them), the
//! uplink's state, resolution, the control socket, the stats line, reloads.

pub mod etcd;
pub mod kernel;
pub mod neighbours;
pub mod reload;
pub mod routes;
pub mod socket;
pub mod source;

pub use socket::{
    classifier_split, query_routes, query_stats, ControlError, ControlServer, RouteRow,
    RoutesReply, StatsReply, WorkerStats,
};

use crate::backend::{self, Backend, BackendError};
use crate::counters::{Counters, DropReason};
use crate::lpm::LpmConfig;
use crate::netlink;
use crate::pipeline::{FibParams, FibWriter, NodeParams};
use crate::plan::{Plan, PortRole};
use crate::wire::MacAddr;
use neighbours::Neighbours;
use routes::{RouteDiff, RouteTable};
use source::RouteSource;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors that stop `podfwd run` before or while it starts.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("podfwd run needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF) to attach XDP programs and open AF_XDP sockets; it runs as uid {uid}")]
    NotRoot { uid: u32 },
    #[error(transparent)]
    Metrics(crate::metrics::MetricsError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error(transparent)]
    Fib(#[from] crate::pipeline::FibError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("programming the kernel slow path: {0}")]
    Kernel(#[from] crate::kernel::KernelError),
    #[error("installing the signal handler: {0}")]
    Signal(std::io::Error),
    #[error("worker on cpu {core} failed: {why}")]
    Worker { core: usize, why: String },
}

/// The longest a remembered kernel answer lives without a change notification (a bound
/// on what a missed one could cost).
const FORGET_TICK: Duration = Duration::from_secs(1);

/// Follows the kernel changes the classifier's flow cache depends on (routes, rules,
/// links, addresses, neighbours, netconf; NATed connections where ctnetlink works).
/// None, with a warning, if it cannot: the classifier then asks the kernel every time.
fn kernel_changes() -> Option<netlink::KernelChanges> {
    match netlink::KernelChanges::open() {
        Ok(c) => {
            if !c.follows_nat() {
                tracing::warn!("no conntrack events (ctnetlink) in this kernel: the classifier asks conntrack about every frame");
            }
            Some(c)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow kernel changes: the classifier asks the kernel about every frame");
            None
        }
    }
}

/// How often the control loop checks that the uplink is up (see the loop).
const LINK_CHECK: Duration = Duration::from_millis(100);

/// Runs the node until SIGINT/SIGTERM; SIGHUP asks `source` for new routes.
pub fn run(
    plan: &Plan,
    mut source: Box<dyn RouteSource>,
    stats_interval: Option<Duration>,
) -> Result<(), RunError> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Err(RunError::NotRoot { uid });
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(RunError::Signal)?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(RunError::Signal)?;

    let mut backend = backend::open(plan)?;

    // The FIB over the backend's ports, with the source's routes.
    let node = NodeParams {
        node_ip: plan.node.ip,
        uplink: 0,
        vni: plan.node.vni,
        vxlan_port: plan.node.vxlan_port,
        vtep_mac: plan.node.vtep_mac.unwrap_or(MacAddr::ZERO),
    };
    let (mut fib, reader) = FibWriter::new(FibParams {
        node,
        ports: backend.ports().info.clone(),
        uplink_subnet: plan.node.subnet.map(|s| s.net),
        gateway: plan.node.gateway,
        lpm: LpmConfig::default(),
    });
    let mut table = RouteTable::default();
    table.upsert(
        &mut fib,
        &plan.routes,
        source.name(),
        &mut RouteDiff::default(),
    )?;
    // Every peer may send VXLAN (auto mode's on-link peers too, as a flannel node
    // without DirectRouting does), as the kernel's VTEP would accept it.
    fib.set_known_vteps(&peer_ips(plan));
    let neighbours = Neighbours::open(backend.ports(), &mut fib, plan)?;

    let mut control = ControlServer::bind(&plan.control.socket)?;
    // `podfwd trace`: every worker gets a tracer of this hub; the control socket hands
    // trace clients to it.
    let trace = crate::trace::TraceHub::new(plan.ports.iter().map(|p| p.name.clone()).collect());
    backend.trace_into(trace.clone());
    control.serve_trace(trace);
    // The backend may remember the kernel's answers (the classifier's flow cache) while
    // this loop follows every change they depend on and makes it forget them.
    let changes = if backend.kernel_slow_path() {
        kernel_changes()
    } else {
        None
    };
    if let Some(c) = &changes {
        backend.remember_kernel_answers(c.follows_nat());
    }
    let mut vtep_ifindex = 0;
    if backend.kernel_slow_path() {
        vtep_ifindex = kernel::program(plan)?;
        // The classifier passes everything podfwd cannot finish to the kernel, which
        // must then route it.
        kernel::warn_if_forwarding_off();
    }
    if let Err(e) = backend
        .start(plan, node, &reader, vtep_ifindex)
        .and_then(|()| backend.fib_changed(&fib))
    {
        let _ = backend.stop();
        return Err(e.into());
    }
    let started = Instant::now();
    // Metrics read the workers' published counters; the loop publishes the rest.
    let metrics = crate::metrics::Metrics::new();
    metrics.set_workers(backend.worker_sources());
    let metrics_server = match crate::metrics::serve(&plan.metrics, &metrics) {
        Ok(s) => s,
        Err(e) => {
            let _ = backend.stop();
            return Err(RunError::Metrics(e));
        }
    };
    tracing::info!(
        interfaces = %plan.ports
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        workers = plan.dataplane.cores.len().max(1),
        backend = %backend.kind(),
        mode = %plan.dataplane.mode,
        routes = plan.routes.len(),
        socket = %control.path().display(),
        "forwarding"
    );

    let wait_fds = changes
        .iter()
        .flat_map(|c| c.fds())
        .chain(std::iter::once(neighbours.fd()))
        .collect();
    let mut node_state = Node {
        plan: plan.clone(),
        fib,
        table,
        neighbours,
        backend,
        vtep_ifindex,
        source_name: source.name(),
        wait_fds,
        changes,
        last_forget: Instant::now(),
        metrics,
        warnings: crate::log::RateLimit::new(crate::log::WARN_EVERY),
    };
    if let Some(m) = &metrics_server {
        tracing::info!(url = %format_args!("http://{}/metrics", m.local_addr()), "serving metrics");
    }
    // systemd (Type=notify): started once the workers run.
    let _ = crate::notify::ready();
    let _ = crate::notify::status(&format!(
        "forwarding: backend {}, mode {}, {} route(s)",
        node_state.backend.kind(),
        plan.dataplane.mode,
        plan.routes.len()
    ));
    let result = node_state.control_loop(
        &stop,
        &hup,
        source.as_mut(),
        &control,
        stats_interval,
        started,
    );
    let _ = crate::notify::stopping();
    drop(control);
    drop(metrics_server);
    let (total, stopped) = node_state.backend.stop();
    tracing::info!(
        uptime_s = %format_args!("{:.1}", started.elapsed().as_secs_f64()),
        rx = total.rx,
        tx = total.tx,
        drops = total.total_drops(),
        "stopped"
    );
    match (result, stopped) {
        // A worker that ended says why itself.
        (Err(RunError::Worker { .. }), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e),
        (Ok(()), stopped) => Ok(stopped?),
    }
}

fn peer_ips(plan: &Plan) -> Vec<Ipv4Addr> {
    plan.peers.iter().map(|p| p.node_ip).collect()
}

/// The running node: what the control loop keeps.
struct Node {
    /// The plan in force (the last reload applied).
    plan: Plan,
    fib: FibWriter,
    table: RouteTable,
    neighbours: Neighbours,
    backend: Box<dyn Backend>,
    vtep_ifindex: u32,
    source_name: &'static str,
    /// The kernel changes the backend's remembered answers depend on (None: it
    /// remembers none).
    changes: Option<netlink::KernelChanges>,
    /// What the loop waits on with `changes`: their sockets and the neighbour monitor's.
    wait_fds: Vec<std::os::fd::RawFd>,
    last_forget: Instant,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Warnings of the loop that can repeat every turn.
    warnings: crate::log::RateLimit<&'static str>,
}

impl Node {
    /// Neighbours, uplink, resolution, stats, reloads, until a signal or a worker ends.
    fn control_loop(
        &mut self,
        stop: &AtomicBool,
        hup: &AtomicBool,
        source: &mut dyn RouteSource,
        control: &ControlServer,
        stats_interval: Option<Duration>,
        started: Instant,
    ) -> Result<(), RunError> {
        // An uplink set down loses every route through it (the kernel flushes them,
        // host-gw's `via <peer>` routes included) and nothing puts them back when it comes
        // up: the slow path, and the classifier that asks the kernel's FIB, would stay
        // without a route. So when the uplink is up again the kernel is programmed again
        // (idempotent), and its next hops are resolved again.
        let uplink = self
            .plan
            .ports
            .iter()
            .position(|p| p.role == PortRole::Uplink);
        let mut uplink_up = true;
        let mut last_link_check = Instant::now();
        let mut last_print = (Instant::now(), Counters::default());
        let mut missed = Vec::new();
        let port_names: Vec<String> = self.plan.ports.iter().map(|p| p.name.clone()).collect();
        // Relaxed: the flags are set by the signal handler and only need to be seen
        // eventually.
        while !stop.load(Ordering::Relaxed) {
            self.handle_neighbour_events()?;
            if let Err(e) = self.backend.fib_changed(&self.fib) {
                crate::warn_limited!(self.warnings, "fib", error = %e, "copying the FIB to the backend");
            }
            if let Some(u) = uplink.filter(|_| last_link_check.elapsed() >= LINK_CHECK) {
                last_link_check = Instant::now();
                let index = self.backend.ports().ifindex[u];
                let up = netlink::interface_by_index(index).is_ok_and(|i| i.up && i.carrier);
                if up && !uplink_up {
                    tracing::info!(interface = %port_names[u], "uplink is up again");
                    match self.uplink_came_back(self.plan.ports[u].id) {
                        Ok(()) => uplink_up = true,
                        // Retried a second later (uplink_up stays false).
                        Err(e) => {
                            tracing::warn!(error = %e, "programming the kernel again; retrying in 1 s");
                            last_link_check = Instant::now() + Duration::from_secs(1);
                        }
                    }
                } else {
                    uplink_up = up;
                }
            }
            missed.clear();
            self.backend.drain_misses(&mut missed);
            self.neighbours.resolve(&self.fib, &missed);
            control.serve_pending(
                || self.backend.stats(started.elapsed()),
                || self.table.reply(&port_names),
            );
            if let Some(every) = stats_interval {
                if last_print.0.elapsed() >= every {
                    let mut total = Counters::default();
                    for (_, c) in self.backend.worker_counters() {
                        total.merge(&c);
                    }
                    eprintln!(
                        "{}",
                        rate_line(&last_print.1, &total, last_print.0.elapsed())
                    );
                    last_print = (Instant::now(), total);
                }
            }
            let reload = hup.swap(false, Ordering::Relaxed);
            if reload {
                let _ = crate::notify::reloading();
            }
            if let Some(result) = source.poll(reload) {
                self.reload(result);
            }
            if reload {
                let _ = crate::notify::ready();
            }
            self.metrics
                .publish_every(crate::metrics::PUBLISH_INTERVAL, || {
                    crate::metrics::ControlSnapshot {
                        classifier: self.backend.stats(started.elapsed()).classifier,
                        fib_routes: self.table.len() as u64,
                        peers: self.plan.peers.len() as u64,
                        route_source: source.state(),
                        neighbours: self.neighbours.states(),
                        mode: self.plan.dataplane.mode.to_string(),
                        backend: self.backend.kind().to_string(),
                    }
                });
            if let Some(core) = self.backend.ended_worker() {
                return Err(RunError::Worker {
                    core,
                    why: "stopped unexpectedly".into(),
                });
            }
        }
        Ok(())
    }

    /// The kernel's neighbour events since the last turn (waiting up to 50 ms for the
    /// first, or for any other kernel change the backend's answers depend on), applied
    /// to the FIB; the backend forgets its remembered answers when the kernel changed.
    fn handle_neighbour_events(&mut self) -> Result<(), RunError> {
        let Some(changes) = self.changes.as_mut() else {
            self.neighbours
                .poll(&mut self.fib, Duration::from_millis(50))?;
            return Ok(());
        };
        if let Err(e) = netlink::wait_any(&self.wait_fds, Duration::from_millis(50)) {
            crate::warn_limited!(self.warnings, "wait", error = %e, "waiting for kernel events");
        }
        // Forget before the FIB follows: the kernel is asked again from here on.
        if changes.drain().any() || self.last_forget.elapsed() >= FORGET_TICK {
            self.last_forget = Instant::now();
            self.backend.forget_kernel_answers();
        }
        self.neighbours.poll(&mut self.fib, Duration::ZERO)?;
        Ok(())
    }

    /// The uplink is up again: the kernel is programmed again (its routes went with the
    /// link), the VXLAN device followed if it was recreated, the next hops resolved again.
    fn uplink_came_back(&mut self, uplink: crate::nexthop::PortId) -> Result<(), RunError> {
        if self.backend.kernel_slow_path() {
            let v = kernel::program(&self.plan)?;
            self.follow_vtep(v);
        }
        self.neighbours.restart_port(&self.fib, uplink);
        Ok(())
    }

    /// The kernel's VXLAN device now has ifindex `v` (it was recreated when it differs).
    fn follow_vtep(&mut self, v: u32) {
        if v != self.vtep_ifindex {
            tracing::info!(
                ifindex = v,
                was = self.vtep_ifindex,
                "the VXLAN device was recreated"
            );
            self.vtep_ifindex = v;
            self.backend.vtep_changed(v);
        }
    }

    /// Applies what the route source yielded: a new plan whose peers differ (anything
    /// else is refused, nothing changes), or the reason its new state was refused (the
    /// running routes stay).
    fn reload(&mut self, result: Result<Plan, String>) {
        let new = match result {
            Ok(new) => new,
            Err(why) => {
                tracing::warn!(reason = %why, "reload refused; the running routes stay");
                return;
            }
        };
        if let Err(e) = reload::check_live(&self.plan, &new) {
            tracing::warn!(reason = %e, "reload refused; the running routes stay");
            return;
        }
        match self.apply_routes(&new) {
            Ok(diff) => {
                for (what, prefixes) in [
                    ("added", &diff.added),
                    ("changed", &diff.changed),
                    ("removed", &diff.removed),
                ] {
                    for prefix in prefixes {
                        tracing::debug!(%prefix, source = self.source_name, "route {what}");
                    }
                }
                tracing::info!(
                    source = self.source_name,
                    added = diff.added.len(),
                    changed = diff.changed.len(),
                    removed = diff.removed.len(),
                    "reloaded"
                )
            }
            // The route table knows what reached the FIB: the next reload diffs from there.
            Err(e) => {
                tracing::warn!(error = %e, "applying the reloaded routes");
                return;
            }
        }
        self.plan = new;
    }

    /// Moves the node to `new`'s routes without stopping a worker. Order: the kernel
    /// slow path (its routes for new peers exist before the classifier owns their
    /// traffic), new and changed FIB routes, the backend (classifier routes and VTEPs:
    /// added before removed; TUN device routes), then the FIB routes of removed peers.
    fn apply_routes(&mut self, new: &Plan) -> Result<RouteDiff, RunError> {
        let mut diff = RouteDiff::default();
        if self.backend.kernel_slow_path() {
            let v = kernel::program(new)?;
            self.follow_vtep(v);
        }
        self.table
            .upsert(&mut self.fib, &new.routes, self.source_name, &mut diff)?;
        self.fib.set_known_vteps(&peer_ips(new));
        self.neighbours.follow_routes(&mut self.fib, new)?;
        self.backend.apply_routes(new)?;
        self.table
            .remove_absent(&mut self.fib, &new.routes, &mut diff);
        self.neighbours.follow_routes(&mut self.fib, new)?;
        self.backend.fib_changed(&self.fib)?;
        Ok(diff)
    }
}

/// One line of rates since the last line, xdp-bench style.
pub fn rate_line(prev: &Counters, now: &Counters, dt: Duration) -> String {
    let secs = dt.as_secs_f64().max(1e-9);
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / secs;
    let mut line = format!(
        "rx {:>10.0} pps  tx {:>10.0} pps  ring_full {:>6.0}/s",
        rate(prev.rx, now.rx),
        rate(prev.tx, now.tx),
        rate(prev.ring_full, now.ring_full)
    );
    let mut drops = Vec::new();
    for r in DropReason::ALL {
        let d = rate(prev.drops_of(r), now.drops_of(r));
        if d > 0.0 {
            drops.push(format!("{}={:.0}/s", r.name(), d));
        }
    }
    if drops.is_empty() {
        line.push_str("  drops 0");
    } else {
        line.push_str("  drops ");
        line.push_str(&drops.join(" "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_line_shows_rates_and_only_nonzero_drops() {
        let prev = Counters::default();
        let mut now = Counters {
            rx: 2000,
            tx: 1000,
            ..Default::default()
        };
        now.drops[DropReason::BadVni as usize] = 20;
        let l = rate_line(&prev, &now, Duration::from_secs(2));
        assert!(l.contains("rx       1000 pps"), "{l}");
        assert!(l.contains("tx        500 pps"), "{l}");
        assert!(l.contains("bad_vni=10/s"), "{l}");
        assert!(!l.contains("no_route"), "{l}");
    }
}
