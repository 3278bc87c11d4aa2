//! The TUN backend (`backend = "tun"`): for nodes without AF_XDP.
//!
//! The kernel routes every peer's pod subnet into a TUN device that podfwd creates (and
//! podfwd removes those routes at exit). One worker thread per configured core, each with
//! its own queue of the (multi-queue) TUN, reads IP packets from it, runs the same
//! [`Pipeline`] as the AF_XDP backend over them (with a synthetic Ethernet header in the
//! headroom), and sends the result; with offloads (`tun.offload`, default on) TCP moves
//! through the TUN and the socket as 64 KB super-packets ([`offload`], docs/tun.md):
//!
//! - vxlan: the VXLAN header and inner frame go out of a UDP socket bound to the node IP
//!   and the VXLAN port (the kernel adds outer IPv4/UDP and routes it). Datagrams
//!   received on that socket get synthetic outer headers and the pipeline validates and
//!   decapsulates them exactly as on the AF_XDP path; inner packets for local pods are
//!   written to the TUN and the kernel delivers them.
//! - host-gw: the rewritten Ethernet frame goes out of an AF_PACKET socket on the uplink.
//!   Reception is the kernel's: the node needs `net.ipv4.ip_forward = 1` (inherent to
//!   the TUN design, which also relies on the kernel to route pods into the TUN).
//!
//! The control thread (this module's [`run`]) mirrors `daemon::run`: the FIB, the
//! neighbour monitor and resolution, the control socket, signals.

pub mod device;
pub mod frame;
pub mod offload;
pub mod worker;

use crate::config::Mode;
use crate::control::{ControlServer, StatsReply};
use crate::counters::{Counters, SharedCounters};
use crate::lpm::LpmConfig;
use crate::netlink::{self, NeighbourMonitor};
use crate::nexthop::NextHop;
use crate::pipeline::{FibParams, FibWriter, NodeParams, Pipeline, PortInfo};
use crate::plan::Plan;
use crate::wire::{vxlan, MacAddr};
use device::{PacketSocket, TunDevice};
use ipnet::Ipv4Net;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::{Worker, TUN, UPLINK};

/// Receive and send buffer of the VXLAN and AF_PACKET sockets.
const SOCKET_BUFFER: usize = 8 << 20;

/// Errors of the TUN backend.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    #[error("creating TUN device {name} (needs CAP_NET_ADMIN and /dev/net/tun): {source}")]
    Create {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("binding the VXLAN socket to {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error(transparent)]
    Fib(#[from] crate::pipeline::FibError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error("installing the signal handler: {0}")]
    Signal(std::io::Error),
    #[error("the TUN worker failed: {0}")]
    Worker(String),
}

/// Runs the node with the TUN backend until SIGINT/SIGTERM.
pub fn run(plan: &Plan, stats_interval: Option<Duration>) -> Result<(), TunError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(TunError::Signal)?;
    }
    let mode = plan.dataplane.mode;
    let uplink = netlink::interface(&plan.node.uplink)?;
    if !uplink.up {
        eprintln!("podfwd: warning: interface {} is down", uplink.name);
    }
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "0") {
        eprintln!(
            "podfwd: warning: net.ipv4.ip_forward = 0: the TUN backend needs the kernel to \
             route pods into the TUN device (and, in host-gw mode, to deliver received packets)"
        );
    }
    let overhead = if mode.uses_vxlan() {
        vxlan::ENCAP_OVERHEAD as u32
    } else {
        0
    };
    let tun_mtu = uplink.mtu.saturating_sub(overhead).max(576);
    let tun_name = plan
        .ports
        .get(usize::from(TUN))
        .map_or("podfwd0", |p| p.name.as_str());
    // One TUN queue, VXLAN socket and worker per configured core.
    let cores: Vec<usize> = if plan.dataplane.cores.is_empty() {
        vec![0]
    } else {
        plan.dataplane.cores.clone()
    };
    let tun = TunDevice::create(tun_name, tun_mtu, cores.len(), plan.tun.offload)?;

    // The FIB: port 0 the uplink, port 1 the TUN (which has no MAC).
    let node = NodeParams {
        node_ip: plan.node.ip,
        uplink: UPLINK,
        vni: plan.node.vni,
        vxlan_port: plan.node.vxlan_port,
        vtep_mac: plan.node.vtep_mac.unwrap_or(MacAddr::ZERO),
    };
    let ports = vec![
        PortInfo {
            mac: uplink.mac,
            mtu: u16::try_from(uplink.mtu).unwrap_or(u16::MAX),
        },
        PortInfo {
            mac: MacAddr::ZERO,
            mtu: u16::try_from(tun_mtu).unwrap_or(u16::MAX),
        },
    ];
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
    let peer_ips: Vec<_> = plan.peers.iter().map(|p| p.node_ip).collect();
    fib.set_known_vteps(&peer_ips);
    // The kernel's UDP socket finds the outer next hop itself: VXLAN adjacencies only
    // need *a* MAC for the outer Ethernet header the TUN path never sends.
    let vxlan_hops: HashSet<Ipv4Addr> = plan
        .routes
        .iter()
        .filter(|r| matches!(r.next_hop, NextHop::Vxlan { .. }))
        .map(|r| match r.next_hop {
            NextHop::Vxlan { node_ip, .. } => fib.outer_next_hop(node_ip),
            _ => unreachable!("filtered"),
        })
        .collect();
    for hop in &vxlan_hops {
        fib.set_neighbour(UPLINK, *hop, Some(MacAddr::ZERO))?;
    }
    let mut apply = |fib: &mut FibWriter, ip: Ipv4Addr, mac: Option<MacAddr>| {
        let mac = match mac {
            None if vxlan_hops.contains(&ip) => Some(MacAddr::ZERO),
            m => m,
        };
        fib.set_neighbour(UPLINK, ip, mac)
    };
    let mut monitor = NeighbourMonitor::new()?;
    for ev in monitor.dump()? {
        if ev.ifindex == uplink.index {
            apply(&mut fib, ev.ip, ev.mac)?;
        }
    }

    // Sockets: per worker one VXLAN socket (an SO_REUSEPORT group when there are
    // several: the kernel spreads peers' flows over them) and one AF_PACKET socket.
    let mut udps = Vec::new();
    let mut packets = Vec::new();
    let mut gro: Vec<bool> = Vec::new();
    for _ in &cores {
        if mode.uses_vxlan() {
            let addr = SocketAddrV4::new(plan.node.ip, plan.node.vxlan_port);
            let s = device::bind_udp(addr, cores.len() > 1)
                .map_err(|source| TunError::Bind { addr, source })?;
            // Bursts of a whole TCP window arrive faster than one batch loop drains them.
            if let Err(e) = device::set_socket_buffers(s.as_raw_fd(), SOCKET_BUFFER) {
                eprintln!("podfwd: warning: VXLAN socket {addr} buffers: {e}");
            }
            // Per socket: each worker must read its own socket the way it was set up.
            let mut on = false;
            if plan.tun.offload {
                match device::set_udp_gro(s.as_raw_fd()) {
                    Ok(()) => on = true,
                    Err(e) => eprintln!(
                        "podfwd: warning: UDP_GRO refused on the VXLAN socket ({e}); \
                         receiving one datagram at a time"
                    ),
                }
            }
            gro.push(on);
            udps.push(Some(s));
        } else {
            gro.push(false);
            udps.push(None);
        }
        if mode != Mode::Vxlan {
            let p = PacketSocket::bind(&uplink.name, uplink.index)?;
            if let Err(e) = device::set_socket_buffers(p.fd(), SOCKET_BUFFER) {
                eprintln!("podfwd: warning: AF_PACKET socket buffers: {e}");
            }
            packets.push(Some(p));
        } else {
            packets.push(None);
        }
    }
    let offload = |q: usize| worker::Offload {
        vnet_hdr: tun.offloads().vnet_hdr,
        udp_gro: gro[q],
        udp_gso: plan.tun.offload,
    };
    let control = ControlServer::bind(&plan.control.socket)?;

    // Routes into the TUN: every peer's pod subnet.
    let mut installed: Vec<Ipv4Net> = Vec::new();
    let mut result = install_routes(plan, tun.index(), &mut installed);

    let worker_stop = Arc::new(AtomicBool::new(false));
    // VXLAN datagrams from a kernel VTEP behind a veth can be whole GSO super-packets.
    let max_packet = if mode.uses_vxlan() {
        usize::from(u16::MAX)
    } else {
        uplink.mtu.max(1500) as usize + 64
    };
    let mut workers: Vec<(usize, Arc<SharedCounters>)> = Vec::new();
    let mut threads = Vec::new();
    for (q, (udp, packet)) in udps.into_iter().zip(packets).enumerate() {
        if result.is_err() {
            break;
        }
        let core = cores[q];
        let shared = Arc::new(SharedCounters::default());
        let w = Worker::new(
            tun.fd(q),
            udp,
            packet,
            Pipeline::new(node, reader.clone()),
            shared.clone(),
            max_packet,
            tun_mtu as usize,
            offload(q),
        );
        let stop = worker_stop.clone();
        match std::thread::Builder::new()
            .name(format!("podfwd-tun{core}"))
            .spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
                w.run(&stop)
            }) {
            Ok(t) => {
                threads.push(t);
                workers.push((core, shared));
            }
            Err(e) => result = Err(TunError::Worker(e.to_string())),
        }
    }
    let started = Instant::now();
    if result.is_ok() {
        let on = |b: bool| if b { "on" } else { "off" };
        eprintln!(
            "podfwd: forwarding through TUN {} (mtu {tun_mtu}, {} queue(s)) and uplink {} \
             (mode {mode}, cpus {cores:?}), control socket {}",
            tun.name(),
            tun.queues(),
            uplink.name,
            control.path().display()
        );
        eprintln!(
            "podfwd: offloads: tso from the TUN {}, udp gso {}, udp gro {}{}",
            on(tun.offloads().tso),
            on(plan.tun.offload && mode.uses_vxlan()),
            on(!gro.is_empty() && gro.iter().all(|g| *g)),
            if plan.tun.offload {
                ""
            } else {
                " (tun.offload = false)"
            }
        );
        result = control_loop(
            &stop,
            &mut fib,
            &mut monitor,
            &mut apply,
            uplink.index,
            &control,
            &workers,
            stats_interval,
            &threads,
            started,
        );
    }
    worker_stop.store(true, Ordering::Relaxed);
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(TunError::Worker(e.to_string())),
            Err(_) => result = Err(TunError::Worker("panicked".into())),
        }
    }

    // Remove the routes (the kernel would with the device, but say what we did).
    for prefix in installed.iter().rev() {
        match netlink::delete_route(*prefix, tun.index()) {
            Ok(_) => {}
            Err(e) => eprintln!(
                "podfwd: warning: removing the route {prefix} dev {}: {e}",
                tun.name()
            ),
        }
    }
    drop(tun);
    drop(control);
    let mut total = Counters::default();
    for (_, w) in &workers {
        total.merge(&w.snapshot());
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

/// Routes every peer's pod subnet into the TUN (`<subnet> dev <tun>`, replacing what was
/// there); records each.
fn install_routes(
    plan: &Plan,
    tun_index: u32,
    installed: &mut Vec<Ipv4Net>,
) -> Result<(), TunError> {
    for r in plan.routes.iter().filter(|r| r.peer.is_some()) {
        let prefix = r.prefix.trunc();
        netlink::replace_route(prefix, tun_index)?;
        installed.push(prefix);
    }
    Ok(())
}

/// Neighbours, resolution, stats, until a signal or the worker ends.
#[allow(clippy::too_many_arguments)]
fn control_loop(
    stop: &AtomicBool,
    fib: &mut FibWriter,
    monitor: &mut NeighbourMonitor,
    apply: &mut impl FnMut(
        &mut FibWriter,
        Ipv4Addr,
        Option<MacAddr>,
    ) -> Result<(), crate::pipeline::FibError>,
    uplink_index: u32,
    control: &ControlServer,
    workers: &[(usize, Arc<SharedCounters>)],
    stats_interval: Option<Duration>,
    threads: &[std::thread::JoinHandle<std::io::Result<()>>],
    started: Instant,
) -> Result<(), TunError> {
    let mut last_resolve: HashMap<Ipv4Addr, Instant> = HashMap::new();
    let mut last_sweep = Instant::now() - Duration::from_secs(10);
    let mut last_print = (Instant::now(), Counters::default());
    // Relaxed: set by the signal handler, only needs to be seen eventually.
    while !stop.load(Ordering::Relaxed) {
        match monitor.poll_events(Duration::from_millis(50)) {
            Ok(events) => {
                for ev in events.into_iter().filter(|e| e.ifindex == uplink_index) {
                    apply(fib, ev.ip, ev.mac)?;
                }
            }
            Err(e) => eprintln!("podfwd: warning: neighbour monitor: {e}"),
        }
        let now = Instant::now();
        if now.duration_since(last_sweep) >= Duration::from_secs(1) {
            last_sweep = now;
            for (port, ip) in fib.unresolved() {
                let due = last_resolve
                    .get(&ip)
                    .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(1));
                if port == UPLINK && due {
                    last_resolve.insert(ip, now);
                    if let Err(e) = netlink::resolve(uplink_index, ip) {
                        eprintln!("podfwd: warning: resolving {ip}: {e}");
                    }
                }
            }
        }
        let snapshot = || -> Vec<(usize, Counters)> {
            workers.iter().map(|(c, w)| (*c, w.snapshot())).collect()
        };
        control.serve_pending(|| StatsReply::new(started.elapsed(), &snapshot()));
        if let Some(every) = stats_interval {
            if last_print.0.elapsed() >= every {
                let mut total = Counters::default();
                for (_, c) in snapshot() {
                    total.merge(&c);
                }
                eprintln!(
                    "{}",
                    crate::daemon::rate_line(&last_print.1, &total, last_print.0.elapsed())
                );
                last_print = (Instant::now(), total);
            }
        }
        if threads.iter().any(|t| t.is_finished()) {
            return Err(TunError::Worker("stopped unexpectedly".into()));
        }
    }
    Ok(())
}
