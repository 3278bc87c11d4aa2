//! The resolved plan: what the data plane will do with a validated [`Config`].
//!
//! [`Plan::resolve`] is a pure function: it numbers the ports, decides each peer's next hop
//! (host-gw, VXLAN, or per peer in auto mode) and checks what needs the uplink's subnet.
//! Reading that subnet from the kernel is the caller's job (see
//! [`crate::cli::read_uplink_subnet`]). `Display` prints the plan; it is what
//! `podfwd check` shows.

use crate::config::{Backend, Config, Control, Dataplane, Mode, Peer, XdpMode};
use crate::nexthop::{NextHop, PortId};
use crate::wire::MacAddr;
use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;

/// What the data plane will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub node: LocalNode,
    /// Backend, mode, cores, queues and the AF_XDP knobs, as configured.
    pub dataplane: Dataplane,
    pub control: Control,
    /// `[metrics]`: where `/metrics` is served (`crate::metrics::serve`), if anywhere.
    pub metrics: crate::config::Metrics,
    /// The TUN backend's settings.
    pub tun: crate::config::Tun,
    /// Interfaces podfwd serves; `ports[i].id == i`, the uplink is port 0.
    pub ports: Vec<Port>,
    /// The own pod CIDR first, then one route per peer in config order.
    pub routes: Vec<Route>,
    /// The configured peers; `Route::peer` indexes this list.
    pub peers: Vec<Peer>,
}

/// This node, as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub ip: Ipv4Addr,
    /// The uplink's L2 subnet and where it came from; `None` when unknown.
    pub subnet: Option<Subnet>,
    pub pod_cidr: Ipv4Net,
    pub uplink: String,
    pub gateway: Option<Ipv4Addr>,
    /// The inner source MAC of VXLAN frames (present in vxlan and auto mode).
    pub vtep_mac: Option<MacAddr>,
    pub vni: u32,
    /// VXLAN UDP port.
    pub vxlan_port: u16,
    /// Name of the kernel VXLAN device of the slow path (`vxlan.device`).
    pub vxlan_device: String,
}

/// The uplink's subnet, which decides which peers are on-link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub net: Ipv4Net,
    pub source: SubnetSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubnetSource {
    /// `node.ip` was written with a prefix length.
    Config,
    /// Read from the uplink's address in the kernel.
    Kernel,
}

/// An interface podfwd serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub id: PortId,
    /// Kernel interface name.
    pub name: String,
    pub role: PortRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRole {
    /// The underlay interface (always port 0).
    Uplink,
    /// A pod-facing Ethernet interface (afxdp backend).
    Pod,
    /// The TUN device (tun backend): carries bare IP packets, no Ethernet header.
    Tun,
}

/// One entry of the forwarding table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Net,
    pub next_hop: NextHop,
    /// Index into `config.peers` of the peer this route leads to; `None` for own pods.
    pub peer: Option<usize>,
    /// For VXLAN routes, the underlay address the encapsulated frame is sent to on the
    /// uplink: the peer itself when on-link (or the subnet is unknown), else
    /// `node.gateway`. `None` for other next hops.
    pub underlay_via: Option<Ipv4Addr>,
}

/// Why a valid config cannot be turned into a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "dataplane.mode = \"auto\" chooses host-gw or VXLAN per peer from the uplink's subnet, \
         which is unknown: give node.ip with a prefix length (like \"10.168.0.2/24\") or run \
         on a machine where the uplink {uplink:?} exists"
    )]
    AutoNeedsSubnet { uplink: String },
    #[error(
        "peers[{peer}] (node_ip {node_ip}, pod_cidr {pod_cidr}) is not on the uplink subnet \
         {subnet} and node.gateway is not set: {why}"
    )]
    PeerOffLink {
        peer: usize,
        node_ip: Ipv4Addr,
        pod_cidr: Ipv4Net,
        subnet: Ipv4Net,
        why: &'static str,
    },
    #[error("node.gateway {gateway} is not on the uplink subnet {subnet}")]
    GatewayOffLink { gateway: Ipv4Addr, subnet: Ipv4Net },
    #[error("node.ip {ip} is not in the uplink subnet {subnet} read from {uplink:?}")]
    NodeIpNotInSubnet {
        ip: Ipv4Addr,
        subnet: Ipv4Net,
        uplink: String,
    },
    #[error("{field} is missing; dataplane.mode = \"{mode}\" needs it")]
    MissingVtepMac { field: String, mode: Mode },
    #[error("{count} ports do not fit in a 16-bit port id")]
    TooManyPorts { count: usize },
}

impl Plan {
    /// Resolves a validated config into a plan. `uplink_subnet` is the uplink's subnet as
    /// read from the kernel; it is used only when `node.ip` has no prefix length.
    pub fn resolve(config: &Config, uplink_subnet: Option<Ipv4Net>) -> Result<Plan, PlanError> {
        let node = &config.node;
        let dp = &config.dataplane;

        let subnet = match (node.subnet, uplink_subnet) {
            (Some(net), _) => Some(Subnet {
                net,
                source: SubnetSource::Config,
            }),
            (None, Some(net)) => {
                let net = net.trunc();
                if !net.contains(&node.ip) {
                    return Err(PlanError::NodeIpNotInSubnet {
                        ip: node.ip,
                        subnet: net,
                        uplink: node.uplink.clone(),
                    });
                }
                Some(Subnet {
                    net,
                    source: SubnetSource::Kernel,
                })
            }
            (None, None) => None,
        };
        let on_link = |ip: Ipv4Addr| subnet.map(|s| s.net.contains(&ip));

        if let (Some(gateway), Some(s)) = (node.gateway, subnet) {
            if !s.net.contains(&gateway) {
                return Err(PlanError::GatewayOffLink {
                    gateway,
                    subnet: s.net,
                });
            }
        }
        if dp.mode == Mode::Auto && subnet.is_none() {
            return Err(PlanError::AutoNeedsSubnet {
                uplink: node.uplink.clone(),
            });
        }
        let vtep_mac = config.vxlan.vtep_mac;
        if dp.mode.uses_vxlan() && vtep_mac.is_none() {
            return Err(PlanError::MissingVtepMac {
                field: "vxlan.vtep_mac".into(),
                mode: dp.mode,
            });
        }

        let ports = Self::ports(config)?;
        let mut routes = Vec::with_capacity(config.peers.len() + 1);
        routes.push(Route {
            prefix: node.pod_cidr,
            next_hop: match dp.backend {
                Backend::AfXdp | Backend::Xdp => NextHop::Connected { port: 1 },
                Backend::Tun => NextHop::Local,
            },
            peer: None,
            underlay_via: None,
        });

        for (i, peer) in config.peers.iter().enumerate() {
            let peer_on_link = on_link(peer.node_ip);
            let off_link = |why| PlanError::PeerOffLink {
                peer: i,
                node_ip: peer.node_ip,
                pod_cidr: peer.pod_cidr,
                subnet: subnet.map(|s| s.net).unwrap_or(node.pod_cidr),
                why,
            };
            let host_gw =
                dp.mode == Mode::HostGw || (dp.mode == Mode::Auto && peer_on_link == Some(true));
            let route = if host_gw {
                let gateway = match (peer_on_link, node.gateway) {
                    (Some(false), Some(gw)) => gw,
                    (Some(false), None) => {
                        return Err(off_link(
                            "host-gw needs every peer on the uplink's L2 segment; set node.gateway \
                             to route through the underlay router, or use mode \"vxlan\" or \"auto\"",
                        ))
                    }
                    // On-link, or the subnet is unknown (check on another machine).
                    _ => peer.node_ip,
                };
                Route {
                    prefix: peer.pod_cidr,
                    next_hop: NextHop::HostGw { gateway, port: 0 },
                    peer: Some(i),
                    underlay_via: None,
                }
            } else {
                let peer_vtep = peer.vtep_mac.ok_or_else(|| PlanError::MissingVtepMac {
                    field: format!("peers[{i}].vtep_mac"),
                    mode: dp.mode,
                })?;
                let via = match (peer_on_link, node.gateway, dp.backend) {
                    (Some(false), Some(gw), _) => gw,
                    // The TUN backend sends through a UDP socket: the kernel routes it.
                    (Some(false), None, Backend::Tun) => peer.node_ip,
                    (Some(false), None, Backend::AfXdp | Backend::Xdp) => return Err(off_link(
                        "the afxdp and xdp backends need an underlay next hop for the outer VXLAN \
                             frame; set node.gateway to the underlay router",
                    )),
                    _ => peer.node_ip,
                };
                Route {
                    prefix: peer.pod_cidr,
                    next_hop: NextHop::Vxlan {
                        node_ip: peer.node_ip,
                        vtep_mac: peer_vtep,
                    },
                    peer: Some(i),
                    underlay_via: Some(via),
                }
            };
            routes.push(route);
        }

        Ok(Plan {
            node: LocalNode {
                ip: node.ip,
                subnet,
                pod_cidr: node.pod_cidr,
                uplink: node.uplink.clone(),
                gateway: node.gateway,
                vtep_mac,
                vni: config.vxlan.vni,
                vxlan_port: config.vxlan.port,
                vxlan_device: config.vxlan.device.clone(),
            },
            dataplane: dp.clone(),
            control: config.control.clone(),
            metrics: config.metrics.clone(),
            tun: config.tun.clone(),
            ports,
            routes,
            peers: config.peers.clone(),
        })
    }

    fn ports(config: &Config) -> Result<Vec<Port>, PlanError> {
        let mut names = vec![(config.node.uplink.clone(), PortRole::Uplink)];
        match config.dataplane.backend {
            Backend::AfXdp | Backend::Xdp => names.extend(
                config
                    .node
                    .pod_interfaces
                    .iter()
                    .map(|n| (n.clone(), PortRole::Pod)),
            ),
            Backend::Tun => names.push((config.tun.name.clone(), PortRole::Tun)),
        }
        names
            .into_iter()
            .enumerate()
            .map(|(i, (name, role))| {
                let id =
                    PortId::try_from(i).map_err(|_| PlanError::TooManyPorts { count: i + 1 })?;
                Ok(Port { id, name, role })
            })
            .collect()
    }

    /// The route for `config.peers[i]`.
    pub fn peer_route(&self, i: usize) -> Option<&Route> {
        self.routes.iter().find(|r| r.peer == Some(i))
    }

    fn port_name(&self, id: PortId) -> &str {
        self.ports
            .get(usize::from(id))
            .map_or("?", |p| p.name.as_str())
    }
}

impl fmt::Display for PortRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortRole::Uplink => "uplink",
            PortRole::Pod => "pod",
            PortRole::Tun => "tun",
        })
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.node;
        let dp = &self.dataplane;
        writeln!(f, "node")?;
        writeln!(f, "  ip          {}", n.ip)?;
        match n.subnet {
            Some(Subnet { net, source }) => {
                let from = match source {
                    SubnetSource::Config => "from node.ip".to_string(),
                    SubnetSource::Kernel => format!("read from {}", n.uplink),
                };
                writeln!(f, "  subnet      {net} ({from})")?;
            }
            None => writeln!(f, "  subnet      unknown (on-link checks skipped)")?,
        }
        writeln!(f, "  pod cidr    {}", n.pod_cidr)?;
        writeln!(f, "  uplink      {}", n.uplink)?;
        if let Some(gw) = n.gateway {
            writeln!(f, "  gateway     {gw}")?;
        }
        let mode_detail = match (dp.mode, n.vtep_mac) {
            (Mode::HostGw, _) => String::new(),
            (_, Some(mac)) => format!(" (vni {}, udp port {}, vtep {mac})", n.vni, n.vxlan_port),
            (_, None) => format!(" (vni {}, udp port {})", n.vni, n.vxlan_port),
        };
        writeln!(f, "mode          {}{mode_detail}", dp.mode)?;
        match dp.backend {
            Backend::AfXdp => {
                let xdp = match dp.xdp_mode {
                    XdpMode::Native => "native XDP",
                    XdpMode::Generic => "generic XDP",
                };
                let idle = match (dp.busy_poll, dp.worker_priority) {
                    (true, _) => "busy-poll".to_string(),
                    (false, 0) => "poll() when idle".to_string(),
                    (false, p) => format!("poll() when idle, SCHED_FIFO {p}"),
                };
                writeln!(
                    f,
                    "backend       afxdp ({xdp}, batch {}, rings rx {} tx {} fill {} comp {}, \
                     {} frames, {idle})",
                    dp.batch_size,
                    dp.rx_ring_size,
                    dp.tx_ring_size,
                    dp.fill_ring_size,
                    dp.comp_ring_size,
                    dp.frame_count
                )?;
            }
            Backend::Xdp => writeln!(
                f,
                "backend       xdp (in-kernel fast path, {}; what it cannot finish goes to \
                 the kernel)",
                match dp.xdp_mode {
                    XdpMode::Native => "native XDP",
                    XdpMode::Generic => "generic XDP",
                }
            )?,
            Backend::Tun => writeln!(
                f,
                "backend       tun (device {}, one queue per core, offloads {})",
                self.tun.name,
                if self.tun.offload { "on" } else { "off" }
            )?,
        }
        let cores: Vec<String> = dp.cores.iter().map(|c| c.to_string()).collect();
        let plural = if dp.queues == 1 { "" } else { "s" };
        if dp.backend == Backend::Xdp {
            writeln!(
                f,
                "workers       none: the program forwards in each rx queue's softirq \
                 (dataplane.cores unused)"
            )?;
        } else {
            writeln!(
                f,
                "workers       cores [{}], {} queue{plural} per interface",
                cores.join(", "),
                dp.queues
            )?;
        }
        writeln!(f, "control       socket {}", self.control.socket.display())?;
        if dp.backend.uses_xdp() {
            writeln!(
                f,
                "              bpf pins {}",
                self.control.bpf_pin_dir.display()
            )?;
        }
        if let Some(listen) = self.metrics.listen {
            writeln!(f, "metrics       http://{listen}/metrics")?;
        }
        writeln!(f, "ports")?;
        for p in &self.ports {
            writeln!(f, "  {:<3} {:<16} {}", p.id, p.name, p.role)?;
        }
        writeln!(f, "routes")?;
        for r in &self.routes {
            let hop = match r.next_hop {
                NextHop::HostGw { gateway, port } => {
                    format!("host-gw via {gateway} dev {}", self.port_name(port))
                }
                NextHop::Connected { port } => format!("connected dev {}", self.port_name(port)),
                NextHop::Vxlan { node_ip, vtep_mac } => match r.underlay_via {
                    Some(via) if via != node_ip => {
                        format!("vxlan to {node_ip} vtep {vtep_mac} (outer via {via})")
                    }
                    _ => format!("vxlan to {node_ip} vtep {vtep_mac}"),
                },
                other => other.to_string(),
            };
            let whom = match r.peer.and_then(|i| Some((i, self.peers.get(i)?))) {
                None => "own pods".to_string(),
                Some((i, peer)) => {
                    let link = match n.subnet {
                        Some(s) if s.net.contains(&peer.node_ip) => ", on-link",
                        Some(_) => ", off-link",
                        None => "",
                    };
                    format!("peers[{i}] at {}{link}", peer.node_ip)
                }
            };
            writeln!(f, "  {:<18} -> {hop}  ({whom})", r.prefix.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node A on 10.168.0.0/24 with one peer on-link (B) and one behind a router (C).
    fn config(mode: &str, extra_node: &str, ip: &str) -> Config {
        Config::from_toml_str(&format!(
            r#"
[node]
ip = "{ip}"
pod_cidr = "10.244.0.0/24"
uplink = "nodeA-ul"
pod_interfaces = ["nodeA-pod", "nodeA-pod2"]
{extra_node}

[dataplane]
mode = "{mode}"

[vxlan]
vtep_mac = "0e:00:00:00:00:0a"

[[peers]]
pod_cidr = "10.244.1.0/24"
node_ip = "10.168.0.3"
vtep_mac = "0e:00:00:00:00:0b"

[[peers]]
pod_cidr = "10.244.2.0/24"
node_ip = "10.20.0.4"
vtep_mac = "0e:00:00:00:00:0c"
"#
        ))
        .unwrap()
    }

    const GW: &str = "gateway = \"10.168.0.1\"";
    const B: Ipv4Addr = Ipv4Addr::new(10, 168, 0, 3);
    const C: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 4);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 168, 0, 1);

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x0e, 0, 0, 0, 0, last])
    }

    fn subnet() -> Option<Ipv4Net> {
        Some("10.168.0.0/24".parse().unwrap())
    }

    #[test]
    fn uplink_is_port_0_and_pod_interfaces_follow_in_order() {
        let plan = Plan::resolve(&config("vxlan", GW, "10.168.0.2/24"), None).unwrap();
        let ports: Vec<_> = plan
            .ports
            .iter()
            .map(|p| (p.id, p.name.as_str(), p.role))
            .collect();
        assert_eq!(
            ports,
            [
                (0, "nodeA-ul", PortRole::Uplink),
                (1, "nodeA-pod", PortRole::Pod),
                (2, "nodeA-pod2", PortRole::Pod),
            ]
        );
    }

    #[test]
    fn xdp_backend_serves_the_uplink_and_pod_interfaces_and_runs_no_workers() {
        let mut c = config("vxlan", GW, "10.168.0.2/24");
        c.dataplane.backend = Backend::Xdp;
        let plan = Plan::resolve(&c, None).unwrap();
        assert_eq!(plan.ports[0].role, PortRole::Uplink);
        assert!(plan.ports[1..].iter().all(|p| p.role == PortRole::Pod));
        assert_eq!(
            plan.routes[0].next_hop,
            NextHop::Connected { port: 1 },
            "local pods are forwarded by the program too"
        );
        let text = plan.to_string();
        assert!(
            text.contains("backend       xdp (in-kernel fast path"),
            "{text}"
        );
        assert!(text.contains("dataplane.cores unused"), "{text}");
    }

    #[test]
    fn tun_backend_serves_the_uplink_and_the_tun_device() {
        let mut c = config("vxlan", "", "10.168.0.2/24");
        c.dataplane.backend = Backend::Tun;
        let plan = Plan::resolve(&c, None).unwrap();
        let ports: Vec<_> = plan
            .ports
            .iter()
            .map(|p| (p.id, p.name.as_str(), p.role))
            .collect();
        assert_eq!(
            ports,
            [
                (0, "nodeA-ul", PortRole::Uplink),
                (1, "podfwd0", PortRole::Tun)
            ]
        );
        assert_eq!(plan.routes[0].next_hop, NextHop::Local);
    }

    #[test]
    fn own_pod_cidr_is_connected_to_the_first_pod_port() {
        let plan = Plan::resolve(&config("vxlan", GW, "10.168.0.2/24"), None).unwrap();
        let own = plan.routes[0];
        assert_eq!(own.prefix, "10.244.0.0/24".parse().unwrap());
        assert_eq!(own.next_hop, NextHop::Connected { port: 1 });
        assert_eq!(own.peer, None);
    }

    #[test]
    fn vxlan_mode_encapsulates_to_every_peer() {
        let plan = Plan::resolve(&config("vxlan", GW, "10.168.0.2/24"), None).unwrap();
        let b = plan.peer_route(0).unwrap();
        assert_eq!(b.prefix, "10.244.1.0/24".parse().unwrap());
        assert_eq!(
            b.next_hop,
            NextHop::Vxlan {
                node_ip: B,
                vtep_mac: mac(0x0b)
            }
        );
        assert_eq!(b.underlay_via, Some(B));
        let c = plan.peer_route(1).unwrap();
        assert_eq!(
            c.next_hop,
            NextHop::Vxlan {
                node_ip: C,
                vtep_mac: mac(0x0c)
            }
        );
        assert_eq!(
            c.underlay_via,
            Some(ROUTER),
            "off-link peer goes through node.gateway"
        );
        assert_eq!(plan.node.vtep_mac, Some(mac(0x0a)));
        assert_eq!((plan.node.vni, plan.node.vxlan_port), (1, 8472));
    }

    #[test]
    fn vxlan_to_an_off_link_peer_without_a_gateway_is_rejected_for_afxdp() {
        let err = Plan::resolve(&config("vxlan", "", "10.168.0.2/24"), None).unwrap_err();
        assert!(
            matches!(
                err,
                PlanError::PeerOffLink {
                    peer: 1,
                    node_ip: C,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("peers[1]"), "{err}");
        assert!(err.to_string().contains("node.gateway"), "{err}");
    }

    #[test]
    fn vxlan_to_an_off_link_peer_without_a_gateway_is_left_to_the_kernel_with_tun() {
        let mut c = config("vxlan", "", "10.168.0.2/24");
        c.dataplane.backend = Backend::Tun;
        let plan = Plan::resolve(&c, None).unwrap();
        assert_eq!(plan.peer_route(1).unwrap().underlay_via, Some(C));
    }

    #[test]
    fn host_gw_mode_routes_via_the_peer_node() {
        let plan = Plan::resolve(&config("host-gw", GW, "10.168.0.2/24"), None).unwrap();
        let b = plan.peer_route(0).unwrap();
        assert_eq!(
            b.next_hop,
            NextHop::HostGw {
                gateway: B,
                port: 0
            }
        );
        assert_eq!(b.underlay_via, None);
        // C is off-link: "underlay" routing through node.gateway.
        let c = plan.peer_route(1).unwrap();
        assert_eq!(
            c.next_hop,
            NextHop::HostGw {
                gateway: ROUTER,
                port: 0
            }
        );
    }

    #[test]
    fn host_gw_to_an_off_link_peer_without_a_gateway_is_rejected_naming_the_peer() {
        let err = Plan::resolve(&config("host-gw", "", "10.168.0.2/24"), None).unwrap_err();
        assert!(
            matches!(err, PlanError::PeerOffLink { peer: 1, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("peers[1]") && msg.contains("10.20.0.4") && msg.contains("10.168.0.0/24"),
            "{msg}"
        );
    }

    #[test]
    fn host_gw_with_the_subnet_unknown_trusts_the_peers_are_on_link() {
        let plan = Plan::resolve(&config("host-gw", "", "10.168.0.2"), None).unwrap();
        assert_eq!(plan.node.subnet, None);
        assert_eq!(
            plan.peer_route(1).unwrap().next_hop,
            NextHop::HostGw {
                gateway: C,
                port: 0
            }
        );
    }

    #[test]
    fn auto_mode_uses_host_gw_on_link_and_vxlan_off_link() {
        let plan = Plan::resolve(&config("auto", GW, "10.168.0.2/24"), None).unwrap();
        assert_eq!(
            plan.peer_route(0).unwrap().next_hop,
            NextHop::HostGw {
                gateway: B,
                port: 0
            }
        );
        let c = plan.peer_route(1).unwrap();
        assert_eq!(
            c.next_hop,
            NextHop::Vxlan {
                node_ip: C,
                vtep_mac: mac(0x0c)
            }
        );
        assert_eq!(c.underlay_via, Some(ROUTER));
    }

    #[test]
    fn auto_mode_takes_the_subnet_from_the_kernel_when_node_ip_has_no_prefix() {
        let plan = Plan::resolve(&config("auto", GW, "10.168.0.2"), subnet()).unwrap();
        assert_eq!(
            plan.node.subnet,
            Some(Subnet {
                net: subnet().unwrap(),
                source: SubnetSource::Kernel
            })
        );
        assert!(matches!(
            plan.peer_route(0).unwrap().next_hop,
            NextHop::HostGw { .. }
        ));
        assert!(matches!(
            plan.peer_route(1).unwrap().next_hop,
            NextHop::Vxlan { .. }
        ));
    }

    #[test]
    fn subnet_from_node_ip_wins_over_the_kernel() {
        let plan = Plan::resolve(&config("auto", GW, "10.168.0.2/16"), subnet()).unwrap();
        let s = plan.node.subnet.unwrap();
        assert_eq!(
            (s.net, s.source),
            ("10.168.0.0/16".parse().unwrap(), SubnetSource::Config)
        );
    }

    #[test]
    fn auto_mode_with_the_subnet_unknown_says_how_to_fix_it() {
        let err = Plan::resolve(&config("auto", GW, "10.168.0.2"), None).unwrap_err();
        assert_eq!(
            err,
            PlanError::AutoNeedsSubnet {
                uplink: "nodeA-ul".into()
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("node.ip with a prefix length"), "{msg}");
        assert!(
            msg.contains("where the uplink \"nodeA-ul\" exists"),
            "{msg}"
        );
    }

    #[test]
    fn kernel_subnet_without_the_node_ip_is_rejected() {
        let err = Plan::resolve(
            &config("vxlan", GW, "10.168.0.2"),
            Some("10.9.0.0/16".parse().unwrap()),
        )
        .unwrap_err();
        assert!(matches!(err, PlanError::NodeIpNotInSubnet { .. }), "{err}");
    }

    #[test]
    fn gateway_off_the_uplink_subnet_is_rejected() {
        let c = config("vxlan", "gateway = \"10.9.0.1\"", "10.168.0.2/24");
        let err = Plan::resolve(&c, None).unwrap_err();
        assert!(matches!(err, PlanError::GatewayOffLink { .. }), "{err}");
        assert!(err.to_string().contains("node.gateway 10.9.0.1"), "{err}");
    }

    #[test]
    fn unvalidated_config_without_vtep_macs_is_an_error_not_a_panic() {
        let mut c = config("vxlan", GW, "10.168.0.2/24");
        c.peers[1].vtep_mac = None;
        let err = Plan::resolve(&c, None).unwrap_err();
        assert!(
            err.to_string().starts_with("peers[1].vtep_mac is missing"),
            "{err}"
        );
        c.vxlan.vtep_mac = None;
        let err = Plan::resolve(&c, None).unwrap_err();
        assert!(
            err.to_string().starts_with("vxlan.vtep_mac is missing"),
            "{err}"
        );
    }

    #[test]
    fn example_config_resolves_to_vxlan_to_node_b() {
        let c = Config::from_toml_str(include_str!("../podfwd.example.toml")).unwrap();
        let plan = Plan::resolve(&c, None).unwrap();
        assert_eq!(
            plan.peer_route(0).unwrap().next_hop,
            NextHop::Vxlan {
                node_ip: B,
                vtep_mac: mac(0x0b)
            }
        );
    }

    #[test]
    fn printed_plan_shows_node_mode_ports_and_one_line_per_route() {
        let plan = Plan::resolve(&config("auto", GW, "10.168.0.2/24"), None).unwrap();
        let text = plan.to_string();
        for expected in [
            "ip          10.168.0.2",
            "subnet      10.168.0.0/24 (from node.ip)",
            "gateway     10.168.0.1",
            "mode          auto (vni 1, udp port 8472, vtep 0e:00:00:00:00:0a)",
            "backend       afxdp (native XDP, batch 64",
            "workers       cores [0], 1 queue per interface",
            "0   nodeA-ul         uplink",
            "1   nodeA-pod        pod",
            "10.244.0.0/24      -> connected dev nodeA-pod  (own pods)",
            "10.244.1.0/24      -> host-gw via 10.168.0.3 dev nodeA-ul  (peers[0] at 10.168.0.3, on-link)",
            "10.244.2.0/24      -> vxlan to 10.20.0.4 vtep 0e:00:00:00:00:0c (outer via 10.168.0.1)  \
             (peers[1] at 10.20.0.4, off-link)",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        assert_eq!(text.lines().filter(|l| l.contains(" -> ")).count(), 3);
    }
}
