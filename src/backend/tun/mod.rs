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
//! The FIB, neighbours, the control socket and signals are the control plane's
//! ([`crate::control`]); this module owns the device, the sockets, the workers and the
//! kernel routes into the device ([`TunBackend::apply_routes`] keeps them in step with
//! the peers).

pub mod device;
pub mod frame;
pub mod offload;
pub mod sockets;
pub mod worker;

use super::{Backend, BackendError, Ports, Workers};
use crate::config::{Backend as BackendKind, Mode};
use crate::control::StatsReply;
use crate::counters::{Counters, SharedCounters};
use crate::netlink::{self, Interface};
use crate::pipeline::{Fib, NodeParams, Pipeline, PortInfo};
use crate::plan::Plan;
use crate::wire::{vxlan, MacAddr};
use device::TunDevice;
use ipnet::Ipv4Net;
use sockets::PacketSocket;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use worker::{Worker, TUN};

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
}

/// The TUN data path of one node.
pub struct TunBackend {
    ports: Ports,
    uplink: Interface,
    tun: TunDevice,
    tun_mtu: u32,
    cores: Vec<usize>,
    /// Per worker, until [`Backend::start`] moves them into it.
    sockets: Vec<(Option<UdpSocket>, Option<PacketSocket>, bool)>,
    /// The routes into the TUN podfwd installed (`<peer subnet> dev <tun>`).
    installed: BTreeSet<Ipv4Net>,
    workers: Workers,
    /// Where the workers' tracers come from ([`Backend::trace_into`]).
    trace: Option<crate::trace::TraceHub>,
}

impl TunBackend {
    /// Creates the TUN device (one queue per configured core) and each worker's
    /// sockets: a VXLAN socket (an SO_REUSEPORT group when there are several: the kernel
    /// spreads peers' flows over them) and an AF_PACKET socket on the uplink.
    pub fn open(plan: &Plan) -> Result<TunBackend, BackendError> {
        let mode = plan.dataplane.mode;
        let uplink = netlink::interface(&plan.node.uplink)?;
        if !uplink.up {
            tracing::warn!(interface = %uplink.name, "interface is down");
        }
        if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "0") {
            tracing::warn!(
                sysctl = "net.ipv4.ip_forward",
                value = 0,
                "IPv4 forwarding is off: the TUN backend needs the kernel to route pods into \
                 the TUN device (and, in host-gw mode, to deliver received packets)"
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
        let cores: Vec<usize> = if plan.dataplane.cores.is_empty() {
            vec![0]
        } else {
            plan.dataplane.cores.clone()
        };
        let tun = TunDevice::create(tun_name, tun_mtu, cores.len(), plan.tun.offload)?;

        let mut sockets = Vec::new();
        for _ in &cores {
            let mut udp = None;
            let mut gro = false;
            if mode.uses_vxlan() {
                // Send only, from a port of its own: the kernel's VXLAN device (the slow
                // path, programmed as flanneld would) owns the VXLAN port and
                // decapsulates what peers send.
                let addr = SocketAddrV4::new(plan.node.ip, 0);
                let s = sockets::bind_udp(addr, false)
                    .map_err(|source| TunError::Bind { addr, source })?;
                // Bursts of a whole TCP window arrive faster than one batch loop drains them.
                if let Err(e) = sockets::set_socket_buffers(s.as_raw_fd(), SOCKET_BUFFER) {
                    tracing::warn!(socket = %addr, error = %e, "cannot size the VXLAN socket's buffers");
                }
                // Per socket: each worker must read its own socket the way it was set up.
                if plan.tun.offload {
                    match sockets::set_udp_gro(s.as_raw_fd()) {
                        Ok(()) => gro = true,
                        Err(e) => tracing::warn!(
                            socket = %addr,
                            error = %e,
                            "UDP_GRO refused on the VXLAN socket; receiving one datagram at a time"
                        ),
                    }
                }
                udp = Some(s);
            }
            let mut packet = None;
            if mode != Mode::Vxlan {
                let p = PacketSocket::bind(&uplink.name, uplink.index)?;
                if let Err(e) = sockets::set_socket_buffers(p.fd(), SOCKET_BUFFER) {
                    tracing::warn!(interface = %uplink.name, error = %e, "cannot size the AF_PACKET socket's buffers");
                }
                packet = Some(p);
            }
            sockets.push((udp, packet, gro));
        }

        // Port 0 the uplink, port 1 the TUN (which has no MAC and no neighbours).
        let ports = Ports {
            info: vec![
                PortInfo {
                    mac: uplink.mac,
                    mtu: u16::try_from(uplink.mtu).unwrap_or(u16::MAX),
                },
                PortInfo {
                    mac: MacAddr::ZERO,
                    mtu: u16::try_from(tun_mtu).unwrap_or(u16::MAX),
                },
            ],
            ifindex: vec![uplink.index, 0],
            // The kernel's UDP socket finds the outer next hop itself: VXLAN adjacencies
            // only need *a* MAC for the outer Ethernet header the TUN path never sends.
            kernel_sends_vxlan: true,
        };
        Ok(TunBackend {
            ports,
            uplink,
            tun,
            tun_mtu,
            cores,
            sockets,
            installed: BTreeSet::new(),
            workers: Workers::default(),
            trace: None,
        })
    }

    /// Routes every peer's pod subnet of `plan` into the TUN (`<subnet> dev <tun>`,
    /// replacing what was there) and removes the ones podfwd installed for peers that are
    /// gone. New routes first, so a kept subnet never loses its route.
    fn sync_routes(&mut self, plan: &Plan) -> Result<(), TunError> {
        let wanted: BTreeSet<Ipv4Net> = plan
            .routes
            .iter()
            .filter(|r| r.peer.is_some())
            .map(|r| r.prefix.trunc())
            .collect();
        for prefix in &wanted {
            if !self.installed.contains(prefix) {
                netlink::replace_route(*prefix, self.tun.index(), netlink::TUN_TABLE)?;
                self.installed.insert(*prefix);
            }
        }
        let gone: Vec<Ipv4Net> = self.installed.difference(&wanted).copied().collect();
        for prefix in gone {
            self.installed.remove(&prefix);
            netlink::delete_route(prefix, self.tun.index(), netlink::TUN_TABLE)?;
        }
        Ok(())
    }
}

impl Backend for TunBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tun
    }

    fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The kernel is programmed as flanneld would under TUN too: the TUN device's routes
    /// live in table 112, looked up before `main`, so when the device goes (podfwd
    /// killed) the flanneld routes in `main` carry the traffic (docs/tun.md).
    fn kernel_slow_path(&self) -> bool {
        true
    }

    fn start(
        &mut self,
        plan: &Plan,
        node: NodeParams,
        fib: &Fib,
        _vtep_ifindex: u32,
    ) -> Result<(), BackendError> {
        let mode = plan.dataplane.mode;
        // The rule stays when podfwd stops (harmless with the table empty: lookups go on
        // to `main`), so a restart finds it.
        if netlink::ensure_lookup_rule(netlink::TUN_RULE_PRIORITY, netlink::TUN_TABLE)? {
            tracing::info!(
                priority = netlink::TUN_RULE_PRIORITY,
                table = netlink::TUN_TABLE,
                "rule added: the TUN device's routes are looked up before main"
            );
        }
        self.sync_routes(plan)?;
        // VXLAN datagrams from a kernel VTEP behind a veth can be whole GSO super-packets.
        let max_packet = if mode.uses_vxlan() {
            usize::from(u16::MAX)
        } else {
            self.uplink.mtu.max(1500) as usize + 64
        };
        let gro: Vec<bool> = self.sockets.iter().map(|s| s.2).collect();
        for (q, (udp, packet, udp_gro)) in std::mem::take(&mut self.sockets).into_iter().enumerate()
        {
            let core = self.cores[q];
            let shared = Arc::new(SharedCounters::default());
            let mut w = Worker::new(
                self.tun.fd(q),
                udp,
                packet,
                Pipeline::new(node, fib.clone()),
                shared.clone(),
                max_packet,
                self.tun_mtu as usize,
                worker::Offload {
                    vnet_hdr: self.tun.offloads().vnet_hdr,
                    udp_gro,
                    udp_gso: plan.tun.offload,
                },
            );
            if let Some(hub) = &self.trace {
                w = w.with_tracer(hub.tracer(u16::try_from(core).unwrap_or(u16::MAX)));
            }
            self.workers.spawn(
                format!("podfwd-tun{core}"),
                core,
                plan.dataplane.worker_priority,
                shared,
                move |stop| w.run(stop),
            )?;
        }
        tracing::info!(
            tun = %self.tun.name(),
            mtu = self.tun_mtu,
            queues = self.tun.queues(),
            uplink = %self.uplink.name,
            %mode,
            cores = ?self.cores,
            "workers started"
        );
        tracing::info!(
            tso_from_tun = self.tun.offloads().tso,
            udp_gso = plan.tun.offload && mode.uses_vxlan(),
            udp_gro = !gro.is_empty() && gro.iter().all(|g| *g),
            tun_offload = plan.tun.offload,
            "offloads"
        );
        Ok(())
    }

    fn apply_routes(&mut self, plan: &Plan) -> Result<(), BackendError> {
        Ok(self.sync_routes(plan)?)
    }

    fn vtep_changed(&mut self, _vtep_ifindex: u32) {}

    fn drain_misses(&mut self, _out: &mut Vec<Ipv4Addr>) {}

    fn stats(&self, uptime: Duration) -> StatsReply {
        StatsReply::new(uptime, &self.workers.counters())
    }

    fn worker_counters(&self) -> Vec<(usize, Counters)> {
        self.workers.counters()
    }

    fn trace_into(&mut self, hub: crate::trace::TraceHub) {
        self.trace = Some(hub);
    }

    fn worker_sources(&self) -> Vec<crate::metrics::WorkerSource> {
        self.workers.sources()
    }

    fn ended_worker(&self) -> Option<usize> {
        self.workers.ended()
    }

    fn stop(self: Box<Self>) -> (Counters, Result<(), BackendError>) {
        let this = *self;
        let out = this.workers.stop();
        // Remove the routes (the kernel would with the device, but say what we did).
        for prefix in this.installed.iter().rev() {
            if let Err(e) = netlink::delete_route(*prefix, this.tun.index(), netlink::TUN_TABLE) {
                tracing::warn!(
                    %prefix,
                    interface = %this.tun.name(),
                    error = %e,
                    "removing the route"
                );
            }
        }
        drop(this.tun);
        out
    }
}
