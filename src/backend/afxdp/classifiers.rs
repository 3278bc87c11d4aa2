//! The XDP programs on a node's served interfaces, one per port, as both XDP backends
//! hold them: the interfaces (resolved in port order), the node settings and the `ports`
//! map every program shares, the owned routes and VTEPs, the flow cache, attaching, and
//! the live updates (`apply_routes`, `vtep_changed`).
//!
//! What the programs do with the frames podfwd owns stays with the backend that loads
//! them: `afxdp` loads the classifier and registers its AF_XDP sockets per rx queue;
//! `xdp` loads the fast path over its shared maps and sets [`Ownership::forward`].

use super::xdp::{peer_subnets, Classifier, Ownership, PortKind, Role, Settings, XdpError};
use crate::backend::{BackendError, Ports};
use crate::config::XdpMode;
use crate::control::StatsReply;
use crate::netlink::{self, Interface};
use crate::nexthop::PortId;
use crate::pipeline::PortInfo;
use crate::plan::{Plan, Port, PortRole};
use std::net::Ipv4Addr;

/// Which program the ports carry; it names them in errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// The classifier that redirects to AF_XDP sockets (backend `afxdp`).
    Classifier,
    /// The in-kernel fast path (backend `xdp`).
    FastPath,
}

impl Program {
    /// Why a TUN port cannot be served.
    fn tun_refused(self) -> &'static str {
        match self {
            Program::Classifier => "a TUN device cannot carry an XDP classifier",
            Program::FastPath => "a TUN device cannot carry an XDP program",
        }
    }

    /// What failed when a settings or `ports` map update did.
    fn update_failed(self) -> &'static str {
        match self {
            Program::Classifier => "updating the classifier",
            Program::FastPath => "updating the XDP program",
        }
    }
}

/// The per-port XDP programs of one node and what they all share.
#[derive(Debug)]
pub struct Classifiers {
    program: Program,
    /// The served interfaces, in port order.
    ifaces: Vec<Interface>,
    settings: Settings,
    /// The `ports` map of every program: the served interfaces and the VTEP.
    kinds: Vec<(u32, PortKind)>,
    /// One per port, in port order, once loaded.
    loaded: Vec<Classifier>,
    /// The flow cache: off, FIB answers, or FIB and conntrack answers
    /// ([`crate::backend::Backend::remember_kernel_answers`]).
    flow_cache: Option<bool>,
}

impl Classifiers {
    /// Resolves the plan's interfaces in port order; `check` refuses one the backend
    /// cannot serve. Loads nothing.
    pub fn open(
        plan: &Plan,
        program: Program,
        check: impl Fn(&Port, &Interface) -> Result<(), BackendError>,
    ) -> Result<Classifiers, BackendError> {
        let mut ifaces: Vec<Interface> = Vec::with_capacity(plan.ports.len());
        for port in &plan.ports {
            let i = netlink::interface(&port.name)?;
            check(port, &i)?;
            if !i.up {
                tracing::warn!(interface = %port.name, "interface is down");
            }
            ifaces.push(i);
        }
        Ok(Classifiers {
            program,
            ifaces,
            settings: Settings::from_plan(plan),
            kinds: Vec::new(),
            loaded: Vec::new(),
            flow_cache: None,
        })
    }

    /// The ports the FIB is built over: the interfaces' MACs, MTUs and ifindexes.
    pub fn ports(&self) -> Ports {
        Ports {
            info: self
                .ifaces
                .iter()
                .map(|i| PortInfo {
                    mac: i.mac,
                    mtu: u16::try_from(i.mtu).unwrap_or(u16::MAX),
                })
                .collect(),
            ifindex: self.ifaces.iter().map(|i| i.index).collect(),
            kernel_sends_vxlan: false,
        }
    }

    /// Turns the flow cache on for the programs loaded from now on; `conntrack`: it
    /// also remembers the kernel's conntrack answers.
    pub fn remember_kernel_answers(&mut self, conntrack: bool) {
        self.flow_cache = Some(conntrack);
    }

    /// What the programs own under the plan's mode, with the flow cache as remembered.
    pub fn ownership(&self, plan: &Plan) -> Ownership {
        let mut own = Ownership::for_mode(plan.dataplane.mode);
        own.flow_cache = self.flow_cache.is_some();
        own.flow_cache_conntrack = self.flow_cache == Some(true);
        own
    }

    /// Loads one program per port with `load` and configures it: the settings (with
    /// the VXLAN device `vtep_ifindex`, 0: none), `own`, the owned routes and VTEPs and
    /// the `ports` map. Attaches none ([`Classifiers::attach`]).
    pub fn load(
        &mut self,
        plan: &Plan,
        vtep_ifindex: u32,
        own: &Ownership,
        mut load: impl FnMut(&str, Role, &Settings) -> Result<Classifier, XdpError>,
    ) -> Result<(), BackendError> {
        self.settings.vtep_ifindex = vtep_ifindex;
        let owned_routes = peer_subnets(plan);
        let peer_ips: Vec<Ipv4Addr> = plan.peers.iter().map(|p| p.node_ip).collect();
        self.kinds = plan
            .ports
            .iter()
            .zip(&self.ifaces)
            .map(|(p, i)| {
                let kind = match p.role {
                    PortRole::Uplink => PortKind::Uplink,
                    _ => PortKind::Pod,
                };
                (i.index, kind)
            })
            .collect();
        if vtep_ifindex != 0 {
            self.kinds.push((vtep_ifindex, PortKind::Vtep));
        }
        for port in &plan.ports {
            let role = Role::from_port_role(port.role).ok_or_else(|| BackendError::Interface {
                name: port.name.clone(),
                why: self.program.tun_refused().into(),
            })?;
            let c = load(&port.name, role, &self.settings)?;
            c.set_ownership(own)?;
            c.set_routes(&owned_routes)?;
            c.set_vteps(&peer_ips)?;
            c.set_ports(&self.kinds)?;
            self.loaded.push(c);
        }
        Ok(())
    }

    /// The program of port `port` (panics before [`Classifiers::load`]).
    pub fn of_port(&self, port: PortId) -> &Classifier {
        &self.loaded[usize::from(port)]
    }

    /// Attaches every program, falling back from native to generic XDP with a warning.
    /// From here on podfwd owns the traffic the programs select.
    pub fn attach(&mut self, mode: XdpMode) -> Result<(), BackendError> {
        for c in &mut self.loaded {
            attach(c, mode)?;
        }
        Ok(())
    }

    /// Writes the plan's owned routes and VTEPs into every program.
    pub fn apply_routes(&self, plan: &Plan) -> Result<(), BackendError> {
        let owned_routes = peer_subnets(plan);
        let peer_ips: Vec<Ipv4Addr> = plan.peers.iter().map(|p| p.node_ip).collect();
        for c in &self.loaded {
            c.set_routes(&owned_routes)?;
            c.set_vteps(&peer_ips)?;
        }
        Ok(())
    }

    /// The programs look decapsulated packets up on the new VXLAN device (0: none), and
    /// own routes to it. A program that cannot be updated is warned about.
    pub fn vtep_changed(&mut self, vtep_ifindex: u32) {
        self.settings.vtep_ifindex = vtep_ifindex;
        self.kinds.retain(|(_, k)| *k != PortKind::Vtep);
        if vtep_ifindex != 0 {
            self.kinds.push((vtep_ifindex, PortKind::Vtep));
        }
        for c in &self.loaded {
            if let Err(e) = c.set_settings(&self.settings).and(c.set_ports(&self.kinds)) {
                tracing::warn!(error = %e, "{}", self.program.update_failed());
            }
        }
    }

    /// `reply` with every program's counters, by interface.
    pub fn report(&self, mut reply: StatsReply) -> StatsReply {
        for c in &self.loaded {
            if let Ok(st) = c.stats() {
                let named = st.iter().map(|(s, v)| (s.name().to_string(), v));
                reply = reply.with_classifier(c.iface(), named);
            }
        }
        reply
    }
}

/// Attaches a program, falling back from native to generic XDP with a warning.
fn attach(c: &mut Classifier, mode: XdpMode) -> Result<(), BackendError> {
    match (mode, c.attach(mode)) {
        (_, Ok(())) => Ok(()),
        (XdpMode::Native, Err(e)) => {
            tracing::warn!(
                interface = c.iface(),
                error = %e,
                "native XDP failed; using generic XDP (slower)"
            );
            c.attach(XdpMode::Generic)?;
            Ok(())
        }
        (_, Err(e)) => Err(e.into()),
    }
}
