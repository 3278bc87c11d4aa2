//! The etcd route source: flannel's subnet registry ([`crate::cluster`]) as the peers of
//! a running node, in flanneld's place.
//!
//! [`start`] does what flanneld does before it forwards: read `<prefix>/config`, own a
//! subnet (reuse this node's lease, or create one atomically), list the peers' leases,
//! write `subnet.env` for the CNI plugin, and returns the node's first plan. Then
//! [`EtcdSource::poll`], called by the control loop every turn (at least every 50 ms),
//! applies the watch's events to the lease set and hands the loop a new plan whenever
//! the peers changed; the loop applies only the difference, without stopping a worker
//! (`control::reload`). While etcd is unreachable the watcher retries on its own and the
//! node keeps the routes it has. SIGHUP re-reads the node's file (the registry's part
//! stays).

use super::source::RouteSource;
use crate::cluster::{self, Lease, LeaseAttrs, LeaseBackend, NetworkConfig, OwnLease};
use crate::cluster::{Registry, RegistryEvent};
use crate::config::{Config, EtcdNode, RegistryAssignment};
use crate::plan::Plan;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// Resolves a complete config into a plan (reads the uplink's addresses, as `podfwd
/// run` does for a static file); errors as `podfwd check` prints them.
pub type Resolve = Box<dyn Fn(&Config) -> Result<Plan, String>>;

/// How long [`start`] waits for the watcher's first list of the peers.
const FIRST_LIST: Duration = Duration::from_secs(10);

/// The registry as the control loop's route source.
pub struct EtcdSource {
    registry: Registry,
    events: Receiver<RegistryEvent>,
    path: PathBuf,
    node: EtcdNode,
    network: NetworkConfig,
    own: OwnLease,
    leases: BTreeMap<Ipv4Net, Lease>,
    resolve: Resolve,
}

/// Connects, owns a subnet, lists the peers and writes `subnet.env`: the node's first
/// plan and the source that follows the registry from there.
pub fn start(path: &Path, resolve: Resolve) -> Result<(Plan, EtcdSource), String> {
    let node = EtcdNode::load(path).map_err(|e| e.to_string())?;
    let registry = Registry::connect(&node.settings).map_err(|e| e.to_string())?;
    let network = registry.network_config().map_err(|e| e.to_string())?;
    let attrs = lease_attrs(&node, &network)?;
    let own = registry
        .acquire_lease(&attrs, &network)
        .map_err(|e| e.to_string())?;
    tracing::info!(
        subnet = %own.subnet,
        reused = own.reused,
        lease = %format_args!("{:x}", own.etcd_lease),
        "cluster: this node's subnet"
    );
    let events = registry.watch();
    let deadline = Instant::now() + FIRST_LIST;
    let leases = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(RegistryEvent::Snapshot(leases)) => break leases,
            Ok(RegistryEvent::Connection { up: true }) => tracing::info!("cluster: etcd reachable"),
            Ok(RegistryEvent::Connection { up: false }) => {
                tracing::warn!("cluster: etcd unreachable")
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "cluster: no list of the peers from etcd {} within {} s",
                    node.settings.endpoints.join(","),
                    FIRST_LIST.as_secs()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err("cluster: the registry's watcher stopped".into())
            }
        }
    };
    let source = EtcdSource {
        registry,
        events,
        path: path.to_path_buf(),
        node,
        network,
        own,
        leases: leases.into_iter().map(|l| (l.subnet, l)).collect(),
        resolve,
    };
    let (config, plan) = source.plan()?;
    source.write_subnet_file(&config)?;
    Ok((plan, source))
}

/// This node's lease value (`PublicIP`, backend data), read from the node's file with
/// the registry's network config (any subnet of the network stands in for the lease's,
/// which the file does not decide).
fn lease_attrs(node: &EtcdNode, network: &NetworkConfig) -> Result<LeaseAttrs, String> {
    let placeholder = network.subnets().next().ok_or_else(|| {
        format!(
            "cluster: network {} has no subnet to lease",
            network.network
        )
    })?;
    let config = node
        .complete(&RegistryAssignment {
            pod_cidr: placeholder,
            mode: network.mode(),
            vni: network.vni(),
            port: network.vxlan_port(),
        })
        .map_err(|e| e.to_string())?;
    let backend = match network.backend {
        cluster::BackendConfig::HostGw => LeaseBackend::HostGw,
        cluster::BackendConfig::Vxlan(_) => LeaseBackend::Vxlan {
            vni: network.vni(),
            vtep_mac: config.vxlan.vtep_mac.ok_or_else(|| {
                "vxlan.vtep_mac: must be set: a vxlan network publishes it in this node's lease"
                    .to_string()
            })?,
        },
    };
    Ok(LeaseAttrs {
        public_ip: config.node.ip,
        backend,
    })
}

impl EtcdSource {
    /// The config and plan of the current lease set.
    fn plan(&self) -> Result<(Config, Plan), String> {
        let leases: Vec<Lease> = self.leases.values().cloned().collect();
        let config = cluster::node_config(&self.node, &self.network, &self.own, &leases)
            .map_err(|e| e.to_string())?;
        let plan = (self.resolve)(&config)?;
        Ok((config, plan))
    }

    /// flanneld's `subnet.env` for the CNI plugin (FLANNEL_MTU from the uplink's MTU).
    fn write_subnet_file(&self, config: &Config) -> Result<(), String> {
        let uplink_mtu = crate::netlink::interface(&config.node.uplink)
            .map(|i| i.mtu)
            .map_err(|e| format!("node.uplink {:?}: {e}", config.node.uplink))?;
        self.registry
            .write_subnet_file(&self.network, self.network.pod_mtu(uplink_mtu), false)
            .map_err(|e| {
                format!(
                    "cluster.subnet_file {}: {e}",
                    self.node.settings.subnet_file.display()
                )
            })
    }

    /// Applies the queued events; whether the peer set changed.
    fn drain(&mut self) -> bool {
        let mut changed = false;
        loop {
            match self.events.try_recv() {
                Ok(RegistryEvent::Snapshot(leases)) => {
                    self.leases = leases.into_iter().map(|l| (l.subnet, l)).collect();
                    changed = true;
                }
                Ok(RegistryEvent::Added(l)) | Ok(RegistryEvent::Changed(l)) => {
                    tracing::info!(
                        subnet = %l.subnet,
                        peer = %l.attrs.public_ip,
                        "cluster: lease"
                    );
                    self.leases.insert(l.subnet, l);
                    changed = true;
                }
                Ok(RegistryEvent::Removed(subnet)) => {
                    tracing::info!(%subnet, "cluster: lease removed");
                    changed |= self.leases.remove(&subnet).is_some();
                }
                Ok(RegistryEvent::OwnLeaseRemoved(subnet)) => tracing::warn!(
                    %subnet,
                    "cluster: this node's lease was deleted from etcd; \
                     forwarding goes on with the routes it has (restart podfwd to lease again)"
                ),
                Ok(RegistryEvent::Connection { up: true }) => {
                    tracing::info!("cluster: etcd reachable again")
                }
                Ok(RegistryEvent::Connection { up: false }) => tracing::warn!(
                    "cluster: etcd unreachable; forwarding goes on with the routes it has"
                ),
                Err(TryRecvError::Empty) => return changed,
                Err(TryRecvError::Disconnected) => {
                    tracing::warn!("cluster: the registry's watcher stopped");
                    return changed;
                }
            }
        }
    }
}

impl RouteSource for EtcdSource {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn state(&self) -> crate::metrics::RouteSourceState {
        let s = self.registry.state();
        crate::metrics::RouteSourceState {
            kind: "etcd",
            connected: s.connected,
            revision: Some(s.last_revision),
            lease_expiry: s.own_expires,
        }
    }

    fn poll(&mut self, reload: bool) -> Option<Result<Plan, String>> {
        let mut changed = self.drain();
        if reload {
            match EtcdNode::load(&self.path) {
                Ok(node) => {
                    self.node = node;
                    changed = true;
                }
                Err(e) => return Some(Err(e.to_string())),
            }
        }
        changed.then(|| self.plan().map(|(_, plan)| plan))
    }
}
