//! What the kernel slow path should hold, derived from the plan (pure).

use super::{DEVICE_ALIAS, RTPROT_PODFWD};
use crate::nexthop::NextHop;
use crate::plan::Plan;
use crate::wire::MacAddr;
use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;

/// Bytes a VXLAN encapsulation adds (outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8): the
/// VTEP's MTU is the uplink's minus this, as flanneld sets it.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The kernel objects podfwd installs for a plan, as flanneld would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSpec {
    /// The underlay interface: the VTEP's lower device, the device of host-gw routes.
    pub uplink: String,
    /// The name of podfwd's VXLAN device (`vxlan.device`). Known also when no device is
    /// wanted: a podfwd device of that name is then removed.
    pub device_name: String,
    /// The VXLAN device, when the mode uses VXLAN (vxlan, auto).
    pub vxlan: Option<VxlanDevice>,
    /// Permanent neighbours on the VXLAN device: one per VXLAN peer.
    pub neighbours: Vec<Neighbour>,
    /// FDB entries on the VXLAN device: one per VXLAN peer.
    pub fdb: Vec<FdbEntry>,
    /// One route per peer, in the plan's order.
    pub routes: Vec<KernelRoute>,
}

/// `ip link add NAME type vxlan id VNI local LOCAL dev UPLINK nolearning dstport PORT`,
/// `address MAC mtu MTU up`, `ip addr add ADDRESS dev NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanDevice {
    pub vni: u32,
    pub port: u16,
    /// The VXLAN source address (`node.ip`).
    pub local: Ipv4Addr,
    /// The own VTEP MAC.
    pub mac: MacAddr,
    /// `None`: the uplink's MTU minus [`VXLAN_OVERHEAD`], read when applied.
    pub mtu: Option<u32>,
    /// The own pod network's address as a /32 (flanneld's `10.244.0.0/32`): the source
    /// address of what the node itself sends into the overlay.
    pub address: Ipv4Net,
}

/// `ip neigh add IP lladdr MAC dev <vxlan device> nud permanent`: the peer's pod network
/// address resolves to its VTEP MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// `bridge fdb add MAC dev <vxlan device> dst DST`: frames to the peer's VTEP MAC go to
/// its node address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub dst: Ipv4Addr,
}

/// Which device a route leaves through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteDev {
    Uplink,
    Vxlan,
}

/// `ip route add PREFIX via VIA dev DEV [onlink] proto 112`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRoute {
    pub prefix: Ipv4Net,
    pub via: Ipv4Addr,
    pub dev: RouteDev,
    pub onlink: bool,
    /// The peer (index into the plan's peers) the route leads to.
    pub peer: usize,
}

impl KernelSpec {
    /// What flanneld would install for this plan: for each VXLAN peer a neighbour, an
    /// FDB entry and an onlink route through the VXLAN device; for each host-gw peer a
    /// route via the plan's gateway (the peer, or `node.gateway`) on the uplink. The
    /// VXLAN device exists when the mode uses VXLAN, even without VXLAN peers (as
    /// flanneld's does). Off-link VXLAN peers need no route of their own: the kernel
    /// routes the outer packet with the node's own routes.
    pub fn from_plan(plan: &Plan) -> KernelSpec {
        let node = &plan.node;
        let vxlan = match node.vtep_mac {
            Some(mac) if plan.dataplane.mode.uses_vxlan() => Some(VxlanDevice {
                vni: node.vni,
                port: node.vxlan_port,
                local: node.ip,
                mac,
                mtu: None,
                address: Ipv4Net::from(node.pod_cidr.network()),
            }),
            _ => None,
        };
        let mut spec = KernelSpec {
            uplink: node.uplink.clone(),
            device_name: node.vxlan_device.clone(),
            vxlan,
            neighbours: Vec::new(),
            fdb: Vec::new(),
            routes: Vec::new(),
        };
        for r in &plan.routes {
            let Some(peer) = r.peer else { continue };
            match r.next_hop {
                NextHop::HostGw { gateway, .. } => spec.routes.push(KernelRoute {
                    prefix: r.prefix,
                    via: gateway,
                    dev: RouteDev::Uplink,
                    onlink: false,
                    peer,
                }),
                // Without a device (no own VTEP MAC) there is nothing to route into;
                // Plan::resolve does not let that happen.
                NextHop::Vxlan { node_ip, vtep_mac } if spec.vxlan.is_some() => {
                    let via = r.prefix.network();
                    spec.neighbours.push(Neighbour {
                        ip: via,
                        mac: vtep_mac,
                    });
                    spec.fdb.push(FdbEntry {
                        mac: vtep_mac,
                        dst: node_ip,
                    });
                    spec.routes.push(KernelRoute {
                        prefix: r.prefix,
                        via,
                        dev: RouteDev::Vxlan,
                        onlink: true,
                        peer,
                    });
                }
                _ => {}
            }
        }
        spec
    }

    /// Fills in the VXLAN device's MTU from the uplink's (what [`super::apply`] does
    /// when it is unset); for printing.
    pub fn with_uplink_mtu(mut self, uplink_mtu: u32) -> KernelSpec {
        if let Some(v) = self.vxlan.as_mut() {
            if v.mtu.is_none() {
                v.mtu = Some(uplink_mtu.saturating_sub(VXLAN_OVERHEAD));
            }
        }
        self
    }

    /// The name of a route's device.
    pub fn dev_name(&self, dev: RouteDev) -> &str {
        match dev {
            RouteDev::Uplink => &self.uplink,
            RouteDev::Vxlan => &self.device_name,
        }
    }

    /// True when nothing is to be installed (host-gw without peers).
    pub fn is_empty(&self) -> bool {
        self.vxlan.is_none() && self.routes.is_empty()
    }

    /// The `ip`/`bridge` commands equivalent to the spec, one per line (what
    /// `Display` prints).
    pub fn commands(&self) -> Vec<String> {
        let mut out = Vec::new();
        let dev = &self.device_name;
        if let Some(v) = &self.vxlan {
            out.push(format!(
                "ip link add {dev} type vxlan id {} local {} dev {} nolearning dstport {}",
                v.vni, v.local, self.uplink, v.port
            ));
            let mtu = match v.mtu {
                Some(m) => m.to_string(),
                None => format!("<mtu of {} - {VXLAN_OVERHEAD}>", self.uplink),
            };
            out.push(format!(
                "ip link set {dev} address {} mtu {mtu} alias {DEVICE_ALIAS} up",
                v.mac
            ));
            out.push(format!("ip addr add {} dev {dev}", v.address));
        }
        for r in &self.routes {
            if r.dev == RouteDev::Vxlan {
                if let Some(n) = self.neighbours.iter().find(|n| n.ip == r.via) {
                    out.push(format!(
                        "ip neigh add {} lladdr {} dev {dev} nud permanent",
                        n.ip, n.mac
                    ));
                    if let Some(e) = self.fdb.iter().find(|e| e.mac == n.mac) {
                        out.push(format!(
                            "bridge fdb add {} dev {dev} dst {} self permanent",
                            e.mac, e.dst
                        ));
                    }
                }
            }
            out.push(format!(
                "ip route add {} via {} dev {}{} proto {RTPROT_PODFWD}",
                r.prefix,
                r.via,
                self.dev_name(r.dev),
                if r.onlink { " onlink" } else { "" }
            ));
        }
        out
    }
}

impl fmt::Display for KernelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "nothing (no VXLAN device, no peer routes)");
        }
        for line in self.commands() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// Node A (10.168.0.2/24) with peer B on-link and peer C behind the router.
    fn plan(mode: &str, extra_node: &str) -> Plan {
        let c = Config::from_toml_str(&format!(
            r#"
[node]
ip = "10.168.0.2/24"
pod_cidr = "10.244.0.0/24"
uplink = "nodeA-ul"
pod_interfaces = ["nodeA-pod"]
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
        .unwrap();
        Plan::resolve(&c, None).unwrap()
    }

    const GW: &str = "gateway = \"10.168.0.1\"";

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x0e, 0, 0, 0, 0, last])
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn vxlan_mode_installs_the_device_and_a_neighbour_fdb_entry_and_route_per_peer() {
        let spec = KernelSpec::from_plan(&plan("vxlan", GW));
        assert_eq!(spec.device_name, "podfwd.1");
        assert_eq!(
            spec.vxlan,
            Some(VxlanDevice {
                vni: 1,
                port: 8472,
                local: ip("10.168.0.2"),
                mac: mac(0x0a),
                mtu: None,
                address: "10.244.0.0/32".parse().unwrap(),
            })
        );
        assert_eq!(
            spec.neighbours,
            [
                Neighbour {
                    ip: ip("10.244.1.0"),
                    mac: mac(0x0b)
                },
                Neighbour {
                    ip: ip("10.244.2.0"),
                    mac: mac(0x0c)
                }
            ]
        );
        // The FDB points at the peer node itself, also for the peer behind the router:
        // the kernel routes the outer packet.
        assert_eq!(
            spec.fdb,
            [
                FdbEntry {
                    mac: mac(0x0b),
                    dst: ip("10.168.0.3")
                },
                FdbEntry {
                    mac: mac(0x0c),
                    dst: ip("10.20.0.4")
                }
            ]
        );
        assert_eq!(spec.routes.len(), 2);
        assert!(spec
            .routes
            .iter()
            .all(|r| r.dev == RouteDev::Vxlan && r.onlink && r.via == r.prefix.network()));
    }

    #[test]
    fn vxlan_spec_prints_as_the_flanneld_commands() {
        let spec = KernelSpec::from_plan(&plan("vxlan", GW)).with_uplink_mtu(1500);
        let text = spec.to_string();
        let expected = "\
ip link add podfwd.1 type vxlan id 1 local 10.168.0.2 dev nodeA-ul nolearning dstport 8472
ip link set podfwd.1 address 0e:00:00:00:00:0a mtu 1450 alias podfwd-managed up
ip addr add 10.244.0.0/32 dev podfwd.1
ip neigh add 10.244.1.0 lladdr 0e:00:00:00:00:0b dev podfwd.1 nud permanent
bridge fdb add 0e:00:00:00:00:0b dev podfwd.1 dst 10.168.0.3 self permanent
ip route add 10.244.1.0/24 via 10.244.1.0 dev podfwd.1 onlink proto 112
ip neigh add 10.244.2.0 lladdr 0e:00:00:00:00:0c dev podfwd.1 nud permanent
bridge fdb add 0e:00:00:00:00:0c dev podfwd.1 dst 10.20.0.4 self permanent
ip route add 10.244.2.0/24 via 10.244.2.0 dev podfwd.1 onlink proto 112
";
        assert_eq!(text, expected);
    }

    #[test]
    fn unknown_uplink_mtu_is_printed_as_what_it_will_be() {
        let text = KernelSpec::from_plan(&plan("vxlan", GW)).to_string();
        assert!(text.contains("mtu <mtu of nodeA-ul - 50> alias"), "{text}");
    }

    #[test]
    fn host_gw_mode_installs_only_routes_on_the_uplink() {
        let spec = KernelSpec::from_plan(&plan("host-gw", GW));
        assert_eq!(spec.vxlan, None);
        assert!(spec.neighbours.is_empty() && spec.fdb.is_empty());
        assert_eq!(
            spec.routes,
            [
                KernelRoute {
                    prefix: "10.244.1.0/24".parse().unwrap(),
                    via: ip("10.168.0.3"),
                    dev: RouteDev::Uplink,
                    onlink: false,
                    peer: 0
                },
                // Off-link peer: "underlay" routing through node.gateway, as planned.
                KernelRoute {
                    prefix: "10.244.2.0/24".parse().unwrap(),
                    via: ip("10.168.0.1"),
                    dev: RouteDev::Uplink,
                    onlink: false,
                    peer: 1
                }
            ]
        );
        assert_eq!(
            spec.to_string(),
            "ip route add 10.244.1.0/24 via 10.168.0.3 dev nodeA-ul proto 112\n\
             ip route add 10.244.2.0/24 via 10.168.0.1 dev nodeA-ul proto 112\n"
        );
    }

    #[test]
    fn auto_mode_mixes_host_gw_on_link_and_vxlan_off_link() {
        let spec = KernelSpec::from_plan(&plan("auto", GW));
        assert!(
            spec.vxlan.is_some(),
            "auto mode has the VTEP, like DirectRouting"
        );
        assert_eq!(
            spec.neighbours,
            [Neighbour {
                ip: ip("10.244.2.0"),
                mac: mac(0x0c)
            }]
        );
        assert_eq!(
            spec.fdb,
            [FdbEntry {
                mac: mac(0x0c),
                dst: ip("10.20.0.4")
            }]
        );
        let routes: Vec<_> = spec
            .routes
            .iter()
            .map(|r| (r.prefix.to_string(), r.via, r.dev, r.onlink))
            .collect();
        assert_eq!(
            routes,
            [
                (
                    "10.244.1.0/24".to_string(),
                    ip("10.168.0.3"),
                    RouteDev::Uplink,
                    false
                ),
                (
                    "10.244.2.0/24".to_string(),
                    ip("10.244.2.0"),
                    RouteDev::Vxlan,
                    true
                )
            ]
        );
    }

    #[test]
    fn host_gw_without_a_router_on_a_shared_segment_routes_via_each_peer() {
        // Subnet unknown: the plan trusts the peers are on-link.
        let c = Config::from_toml_str(
            "[node]\nip = \"10.168.0.2\"\npod_cidr = \"10.244.0.0/24\"\nuplink = \"ul\"\n\
             pod_interfaces = [\"pod\"]\n[dataplane]\nmode = \"host-gw\"\n\
             [[peers]]\npod_cidr = \"10.244.2.0/24\"\nnode_ip = \"10.20.0.4\"\n",
        )
        .unwrap();
        let spec = KernelSpec::from_plan(&Plan::resolve(&c, None).unwrap());
        assert_eq!(spec.routes[0].via, ip("10.20.0.4"));
    }

    #[test]
    fn configured_device_name_and_vxlan_parameters_are_used() {
        let c = Config::from_toml_str(
            "[node]\nip = \"10.168.0.2/24\"\npod_cidr = \"10.244.4.0/24\"\nuplink = \"ul\"\n\
             pod_interfaces = [\"pod\"]\n[vxlan]\nvni = 42\nport = 4789\ndevice = \"vx42\"\n\
             vtep_mac = \"0e:00:00:00:00:0a\"\n",
        )
        .unwrap();
        let spec = KernelSpec::from_plan(&Plan::resolve(&c, None).unwrap());
        let v = spec.vxlan.unwrap();
        assert_eq!((v.vni, v.port), (42, 4789));
        assert_eq!(v.address, "10.244.4.0/32".parse::<Ipv4Net>().unwrap());
        assert!(spec.routes.is_empty(), "no peers, but the device stays");
        assert!(spec
            .to_string()
            .starts_with("ip link add vx42 type vxlan id 42 local 10.168.0.2 dev ul"));
    }

    #[test]
    fn empty_spec_says_so() {
        let c = Config::from_toml_str(
            "[node]\nip = \"10.168.0.2/24\"\npod_cidr = \"10.244.0.0/24\"\nuplink = \"ul\"\n\
             pod_interfaces = [\"pod\"]\n[dataplane]\nmode = \"host-gw\"\n",
        )
        .unwrap();
        let spec = KernelSpec::from_plan(&Plan::resolve(&c, None).unwrap());
        assert!(spec.is_empty());
        assert!(spec.to_string().starts_with("nothing"));
    }
}
