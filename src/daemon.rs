//! `podfwd run`: the control thread of a running node.
//!
//! It resolves interfaces, builds the FIB, follows the kernel's neighbour table, loads
//! and attaches the XDP classifier on every owned interface, creates the AF_XDP sockets,
//! starts one pinned worker per configured core, serves the control socket, and on
//! SIGINT/SIGTERM stops the workers and detaches everything (the classifier is attached
//! through a bpf_link, so even a SIGKILLed instance leaves the node on the kernel path).

use crate::afxdp::{Misses, QueueBinding, SocketSettings, Worker, WorkerSockets};
use crate::config::XdpMode;
use crate::control::{ControlServer, StatsReply};
use crate::counters::{Counters, DropReason, SharedCounters};
use crate::handoff::Handoff;
use crate::kernel::KernelSpec;
use crate::lpm::LpmConfig;
use crate::netlink::{self, nud, Interface, NeighbourMonitor};
use crate::nexthop::PortId;
use crate::pipeline::{FibParams, FibWriter, NodeParams, Pipeline, PortInfo};
use crate::plan::Plan;
use crate::plan::PortRole;
use crate::wire::MacAddr;
use crate::xdp::{peer_subnets, Classifier, Ownership, PortKind, Role, Settings};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Errors that stop `podfwd run` before or while it starts.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("podfwd run needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF) to attach XDP programs and open AF_XDP sockets; it runs as uid {uid}")]
    NotRoot { uid: u32 },
    #[error("backend {0} is not implemented yet (use backend = \"afxdp\")")]
    Backend(String),
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error("interface {name}: {why}")]
    Interface { name: String, why: String },
    #[error(transparent)]
    Fib(#[from] crate::pipeline::FibError),
    #[error(transparent)]
    Xdp(#[from] crate::xdp::XdpError),
    #[error(transparent)]
    AfXdp(#[from] crate::afxdp::AfXdpError),
    #[error(transparent)]
    Tun(#[from] crate::tun::TunError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error("programming the kernel slow path: {0}")]
    Kernel(#[from] crate::kernel::KernelError),
    #[error("dataplane.cores = {cores:?}: {why}")]
    Cores { cores: Vec<usize>, why: String },
    #[error("installing the signal handler: {0}")]
    Signal(std::io::Error),
    #[error("worker on cpu {core} failed: {why}")]
    Worker { core: usize, why: String },
}

/// A started worker thread.
struct WorkerHandle {
    core: usize,
    shared: Arc<SharedCounters>,
    misses: Arc<Misses>,
    misses_seen: usize,
    thread: JoinHandle<std::io::Result<()>>,
}

/// How often the control loop checks that the uplink is up (see the loop).
const LINK_CHECK: Duration = Duration::from_millis(100);

/// Runs the node until SIGINT/SIGTERM.
pub fn run(plan: &Plan, stats_interval: Option<Duration>) -> Result<(), DaemonError> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Err(DaemonError::NotRoot { uid });
    }
    if plan.dataplane.backend == crate::config::Backend::Tun {
        return Ok(crate::tun::run(plan, stats_interval)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(DaemonError::Signal)?;
    }

    // Interfaces, in port order.
    let mut ifaces: Vec<Interface> = Vec::with_capacity(plan.ports.len());
    for port in &plan.ports {
        let i = netlink::interface(&port.name)?;
        let queues = u32::from(plan.dataplane.queues);
        if i.num_rx_queues < queues {
            return Err(DaemonError::Interface {
                name: port.name.clone(),
                why: format!(
                    "has {} rx queues, dataplane.queues = {queues} (create veths with numrxqueues/numtxqueues, or lower queues)",
                    i.num_rx_queues
                ),
            });
        }
        if !i.up {
            eprintln!("podfwd: warning: interface {} is down", port.name);
        }
        ifaces.push(i);
    }
    let port_of_ifindex: HashMap<u32, PortId> = plan
        .ports
        .iter()
        .zip(&ifaces)
        .map(|(p, i)| (i.index, p.id))
        .collect();

    // The FIB.
    let node = NodeParams {
        node_ip: plan.node.ip,
        uplink: 0,
        vni: plan.node.vni,
        vxlan_port: plan.node.vxlan_port,
        vtep_mac: plan.node.vtep_mac.unwrap_or(MacAddr::ZERO),
    };
    let ports: Vec<PortInfo> = ifaces
        .iter()
        .map(|i| PortInfo {
            mac: i.mac,
            mtu: u16::try_from(i.mtu).unwrap_or(u16::MAX),
        })
        .collect();
    let (mut fib, reader) = FibWriter::new(FibParams {
        node,
        ports,
        uplink_subnet: plan.node.subnet.map(|s| s.net),
        gateway: plan.node.gateway,
        lpm: LpmConfig::default(),
    });
    for r in &plan.routes {
        fib.set_route(r.prefix, r.next_hop)?;
    }
    // Every peer may send VXLAN (auto mode's on-link peers too, as a flannel node
    // without DirectRouting does), as the kernel's VTEP would accept it.
    let peer_ips: Vec<Ipv4Addr> = plan.peers.iter().map(|p| p.node_ip).collect();
    fib.set_known_vteps(&peer_ips);
    let mut monitor = NeighbourMonitor::new()?;
    // The kernel's NUD state of each neighbour: podfwd's forwarding never confirms an
    // entry, so STALE next hops are re-probed (a silently changed MAC is found).
    let mut nud: HashMap<(u32, Ipv4Addr), u16> = HashMap::new();
    for ev in monitor.dump()? {
        nud.insert((ev.ifindex, ev.ip), ev.state);
        if let Some(port) = port_of_ifindex.get(&ev.ifindex) {
            fib.set_neighbour(*port, ev.ip, ev.mac)?;
        }
    }

    let control = ControlServer::bind(&plan.control.socket)?;
    let vtep_ifindex = program_kernel(plan)?;
    eprintln!(
        "podfwd: loading the XDP classifier on {} interfaces",
        plan.ports.len()
    );

    // The kernel's slow path: forwarding must be on (the classifier passes everything
    // podfwd cannot finish to the kernel, which must then route it), and a hand-off
    // device takes what turns out exceptional in a worker.
    warn_if_forwarding_off();
    let handoff = Arc::new(Handoff::open()?);

    // Classifiers (loaded, configured, not yet attached).
    let mut settings = Settings::from_plan(plan);
    settings.vtep_ifindex = vtep_ifindex;
    // The classifiers remember the kernel's answers per flow while nothing they depend on
    // changes; the control loop below forgets them (bump_epoch) on every change.
    let mut changes = match netlink::KernelChanges::open() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("podfwd: warning: cannot follow kernel changes ({e}); the classifier asks the kernel about every frame");
            None
        }
    };
    let mut ownership = Ownership::for_mode(plan.dataplane.mode);
    ownership.flow_cache = changes.is_some();
    ownership.flow_cache_conntrack = changes.as_ref().is_some_and(|c| c.follows_nat());
    if changes.is_some() && !ownership.flow_cache_conntrack {
        eprintln!("podfwd: warning: no conntrack events (ctnetlink) in this kernel: the classifier asks conntrack about every frame");
    }
    let owned_routes = peer_subnets(plan);
    let mut kinds: Vec<(u32, PortKind)> = plan
        .ports
        .iter()
        .zip(&ifaces)
        .map(|(p, i)| {
            let kind = match p.role {
                PortRole::Uplink => PortKind::Uplink,
                _ => PortKind::Pod,
            };
            (i.index, kind)
        })
        .collect();
    if vtep_ifindex != 0 {
        kinds.push((vtep_ifindex, PortKind::Vtep));
    }
    let mut classifiers = Vec::with_capacity(plan.ports.len());
    for port in &plan.ports {
        let role = Role::from_port_role(port.role).ok_or_else(|| DaemonError::Interface {
            name: port.name.clone(),
            why: "a TUN device cannot carry an XDP classifier".into(),
        })?;
        let c = Classifier::load(&port.name, role, &settings)?;
        c.set_ownership(&ownership)?;
        c.set_routes(&owned_routes)?;
        c.set_vteps(&peer_ips)?;
        c.set_ports(&kinds)?;
        classifiers.push(c);
    }

    // Workers: queue q of every interface goes to worker q % workers.
    let cores = plan.dataplane.cores.clone();
    let queues = u32::from(plan.dataplane.queues);
    if cores.len() > queues as usize {
        return Err(DaemonError::Cores {
            cores,
            why: format!("more workers than queues ({queues}): raise dataplane.queues"),
        });
    }
    let available = core_affinity::get_core_ids().unwrap_or_default();
    for c in &cores {
        if !available.iter().any(|id| id.id == *c) {
            return Err(DaemonError::Cores {
                cores: cores.clone(),
                why: format!("cpu {c} is not available to this process"),
            });
        }
    }
    let dp = &plan.dataplane;
    let sock_settings = SocketSettings {
        batch_size: dp.batch_size,
        frame_count: dp.frame_count,
        rx_ring_size: dp.rx_ring_size,
        tx_ring_size: dp.tx_ring_size,
        fill_ring_size: dp.fill_ring_size,
        comp_ring_size: dp.comp_ring_size,
        busy_poll: dp.busy_poll,
    };
    let mut worker_sockets = Vec::with_capacity(cores.len());
    for w in 0..cores.len() {
        let mut bindings = Vec::new();
        for q in (0..queues).filter(|q| *q as usize % cores.len() == w) {
            for port in &plan.ports {
                bindings.push(QueueBinding {
                    port: port.id,
                    ifname: port.name.clone(),
                    queue: q,
                });
            }
        }
        let sockets = WorkerSockets::new(sock_settings, &bindings)?;
        for ((port, fd), b) in sockets.fds().into_iter().zip(&bindings) {
            classifiers[usize::from(port)].register_socket(b.queue, fd)?;
        }
        worker_sockets.push(sockets);
    }

    eprintln!("podfwd: {} AF_XDP worker(s) ready; attaching", cores.len());
    // Attach: from here on podfwd owns the traffic the classifiers select.
    for (c, port) in classifiers.iter_mut().zip(&plan.ports) {
        attach(c, &port.name, dp.xdp_mode)?;
    }

    let started = Instant::now();
    let worker_stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(cores.len());
    for (sockets, core) in worker_sockets.into_iter().zip(cores.iter().copied()) {
        let shared = Arc::new(SharedCounters::default());
        let misses = Arc::new(Misses::default());
        let worker = Worker::new(
            sockets,
            Pipeline::new(node, reader.clone()),
            shared.clone(),
            misses.clone(),
            Some(handoff.clone()),
        );
        let stop = worker_stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("podfwd-w{core}"))
            .spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
                worker.run(&stop)
            })
            .map_err(|e| DaemonError::Worker {
                core,
                why: e.to_string(),
            })?;
        workers.push(WorkerHandle {
            core,
            shared,
            misses,
            misses_seen: 0,
            thread,
        });
    }
    eprintln!(
        "podfwd: forwarding on {} ({} worker{}, mode {}), control socket {}",
        plan.ports
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        workers.len(),
        if workers.len() == 1 { "" } else { "s" },
        dp.mode,
        control.path().display()
    );

    // The control loop: neighbours, resolution, stats, until a signal.
    let mut last_resolve: HashMap<Ipv4Addr, Instant> = HashMap::new();
    // An uplink set down loses every route through it (the kernel flushes them, host-gw's
    // `via <peer>` routes included) and nothing puts them back when it comes up: the
    // slow path, and the classifier that asks the kernel's FIB, would stay without a
    // route. So when the uplink is up again the kernel is programmed again (idempotent).
    let uplink = plan.ports.iter().position(|p| p.role == PortRole::Uplink);
    let mut uplink_up = true;
    let mut last_link_check = Instant::now();
    let mut last_sweep = Instant::now() - Duration::from_secs(10);
    let mut last_print = (Instant::now(), Counters::default());
    let mut missed = Vec::new();
    let mut failure = None;
    let mut last_epoch = Instant::now();
    let mut wait_fds = vec![monitor.as_raw_fd()];
    wait_fds.extend(changes.iter().flat_map(|c| c.fds()));
    // Relaxed: the flag is set by the signal handler and only needs to be seen eventually.
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = netlink::wait_any(&wait_fds, Duration::from_millis(50)) {
            eprintln!("podfwd: warning: waiting for kernel events: {e}");
        }
        forget_kernel_answers(&classifiers, changes.as_mut(), &mut last_epoch);
        match monitor.poll_events(Duration::ZERO) {
            Ok(events) => {
                for ev in events {
                    nud.insert((ev.ifindex, ev.ip), ev.state);
                    if let Some(port) = port_of_ifindex.get(&ev.ifindex) {
                        fib.set_neighbour(*port, ev.ip, ev.mac)?;
                    }
                }
            }
            Err(e) => eprintln!("podfwd: warning: neighbour monitor: {e}"),
        }
        if let Some(u) = uplink.filter(|_| last_link_check.elapsed() >= LINK_CHECK) {
            last_link_check = Instant::now();
            let index = ifaces[u].index;
            let u_id = plan.ports[u].id;
            let up = netlink::interface_by_index(index).is_ok_and(|i| i.up && i.carrier);
            if up && !uplink_up {
                eprintln!("podfwd: uplink {} is up again", ifaces[u].name);
                match program_kernel(plan) {
                    Ok(v) => {
                        if v != settings.vtep_ifindex {
                            // The VXLAN device was recreated: the classifiers look
                            // decapsulated packets up on the new one, and own routes to it.
                            eprintln!(
                                "podfwd: the VXLAN device was recreated (ifindex {v}, was {})",
                                settings.vtep_ifindex
                            );
                            settings.vtep_ifindex = v;
                            kinds.retain(|(_, k)| *k != PortKind::Vtep);
                            if v != 0 {
                                kinds.push((v, PortKind::Vtep));
                            }
                            for c in &classifiers {
                                if let Err(e) = c.set_settings(&settings).and(c.set_ports(&kinds)) {
                                    eprintln!("podfwd: warning: updating the classifier: {e}");
                                }
                            }
                        }
                        // Resolve the next hops now: their entries went with the link. One
                        // resolved while the link was down sits INCOMPLETE until its next ARP
                        // retransmission (up to retrans_time, 1 s, away) and resolve() leaves
                        // it alone: start it over.
                        for (_, ip) in fib.next_hops().into_iter().filter(|(p, _)| *p == u_id) {
                            let entry = netlink::neighbour_entry(index, ip);
                            if entry.is_ok_and(|e| e.is_some_and(|e| e.state & nud::VALID == 0)) {
                                let _ = netlink::remove_neighbour(index, ip);
                            }
                            last_resolve.remove(&ip);
                        }
                        last_sweep = Instant::now() - Duration::from_secs(10);
                        uplink_up = true;
                    }
                    // Retried a second later (uplink_up stays false).
                    Err(e) => {
                        eprintln!("podfwd: warning: programming the kernel again: {e}");
                        last_link_check = Instant::now() + Duration::from_secs(1);
                    }
                }
            } else {
                uplink_up = up;
            }
        }
        // Make the kernel resolve what we lack: next hops (every second) and local pods
        // that traffic was dropped for (at most once a second each).
        let now = Instant::now();
        let mut want: Vec<(PortId, Ipv4Addr)> = Vec::new();
        if now.duration_since(last_sweep) >= Duration::from_secs(1) {
            for (port, ip) in fib.next_hops() {
                let state = nud.get(&(ifaces[usize::from(port)].index, ip)).copied();
                let usable = state.is_some_and(|s| s & netlink::nud::VALID != 0);
                if !usable || state == Some(netlink::nud::STALE) {
                    want.push((port, ip));
                }
            }
            last_sweep = now;
        }
        for w in workers.iter_mut() {
            missed.clear();
            w.misses.drain(&mut w.misses_seen, &mut missed);
            for ip in missed.iter().map(|ip| Ipv4Addr::from(*ip)) {
                if let Some(port) = fib.connected_port(ip) {
                    want.push((port, ip));
                }
            }
        }
        for (port, ip) in want {
            let due = last_resolve
                .get(&ip)
                .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(1));
            if due {
                last_resolve.insert(ip, now);
                if let Err(e) = netlink::resolve(ifaces[usize::from(port)].index, ip) {
                    eprintln!("podfwd: warning: resolving {ip}: {e}");
                }
            }
        }
        let snapshot = || -> Vec<(usize, Counters)> {
            workers
                .iter()
                .map(|w| (w.core, w.shared.snapshot()))
                .collect()
        };
        control.serve_pending(|| {
            let mut reply = StatsReply::new(started.elapsed(), &snapshot());
            for c in &classifiers {
                if let Ok(st) = c.stats() {
                    let named = st.iter().map(|(s, v)| (s.name().to_string(), v));
                    reply = reply.with_classifier(c.iface(), named);
                }
            }
            reply
        });
        if let Some(every) = stats_interval {
            if last_print.0.elapsed() >= every {
                let mut total = Counters::default();
                for (_, c) in snapshot() {
                    total.merge(&c);
                }
                eprintln!(
                    "{}",
                    rate_line(&last_print.1, &total, last_print.0.elapsed())
                );
                last_print = (Instant::now(), total);
            }
        }
        if let Some(w) = workers.iter().find(|w| w.thread.is_finished()) {
            failure = Some(w.core);
            break;
        }
    }

    // Shutdown: stop the workers, then detach (fail-open to the kernel path).
    worker_stop.store(true, Ordering::Relaxed);
    let mut result = Ok(());
    let mut total = Counters::default();
    for w in workers {
        total.merge(&w.shared.snapshot());
        match w.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                result = Err(DaemonError::Worker {
                    core: w.core,
                    why: e.to_string(),
                })
            }
            Err(_) => {
                result = Err(DaemonError::Worker {
                    core: w.core,
                    why: "panicked".into(),
                })
            }
        }
    }
    drop(classifiers);
    drop(control);
    if let (Some(core), Ok(())) = (failure, &result) {
        result = Err(DaemonError::Worker {
            core,
            why: "stopped unexpectedly".into(),
        });
    }
    eprintln!(
        "podfwd: stopped after {:.1} s: rx {} tx {} drops {}",
        started.elapsed().as_secs_f64(),
        total.rx,
        total.tx,
        total.total_drops()
    );
    result
}

/// Makes the classifiers forget the kernel's answers they remember (the flow cache) when
/// the kernel changed something they depend on, and once a second in any case (a bound
/// on how long a missed notification could matter).
fn forget_kernel_answers(
    classifiers: &[Classifier],
    changes: Option<&mut netlink::KernelChanges>,
    last: &mut Instant,
) {
    let Some(changes) = changes else { return };
    if changes.drain().any() || last.elapsed() >= EPOCH_TICK {
        *last = Instant::now();
        for c in classifiers {
            if let Err(e) = c.bump_epoch() {
                eprintln!(
                    "podfwd: warning: {}: resetting the flow cache: {e}",
                    c.iface()
                );
            }
        }
    }
}

/// The longest a remembered kernel answer lives without a change notification.
const EPOCH_TICK: Duration = Duration::from_secs(1);

/// Programs the node's kernel as flanneld would (the slow path under podfwd: VXLAN
/// device, neighbours, FDB entries, routes; adopted from an earlier instance and kept
/// when podfwd stops); returns the ifindex of the kernel's VXLAN device, 0 when there is
/// none.
fn program_kernel(plan: &Plan) -> Result<u32, DaemonError> {
    let spec = KernelSpec::from_plan(plan);
    let report = crate::kernel::apply(&spec)?;
    eprintln!("podfwd: {}", report.summary());
    for line in report.to_string().lines() {
        if !line.starts_with("adopted") {
            eprintln!("podfwd: kernel: {line}");
        }
    }
    match &spec.vxlan {
        Some(_) => Ok(netlink::interface(&spec.device_name)?.index),
        None => Ok(0),
    }
}

/// Warns when IPv4 forwarding is off in this namespace: the kernel then forwards
/// nothing podfwd passes to it (ICMP errors, first packets, NAT), and the classifier
/// passes everything (its FIB lookups answer "forwarding disabled").
fn warn_if_forwarding_off() {
    match std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward") {
        Ok(v) if v.trim() == "1" => {}
        Ok(_) => eprintln!(
            "podfwd: warning: net.ipv4.ip_forward = 0: the kernel slow path cannot forward,              and the classifier hands every frame to it, so nothing is forwarded; set              `sysctl -w net.ipv4.ip_forward=1` (every Kubernetes node has it)"
        ),
        Err(e) => eprintln!("podfwd: warning: reading net.ipv4.ip_forward: {e}"),
    }
}

/// Attaches a classifier, falling back from native to generic XDP with a warning.
fn attach(c: &mut Classifier, name: &str, mode: XdpMode) -> Result<(), DaemonError> {
    match (mode, c.attach(mode)) {
        (_, Ok(())) => Ok(()),
        (XdpMode::Native, Err(e)) => {
            eprintln!(
                "podfwd: warning: native XDP on {name} failed ({e}); using generic XDP (slower)"
            );
            c.attach(XdpMode::Generic)?;
            Ok(())
        }
        (_, Err(e)) => Err(e.into()),
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
