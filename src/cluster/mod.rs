//! flannel's etcd v3 subnet registry as podfwd's route source, in flanneld's own format,
//! so podfwd nodes and flanneld nodes share one registry (see `docs/cluster.md`).
//!
//! - [`network`]: `<prefix>/config`, parsed and defaulted as flanneld does.
//! - [`lease`]: subnet keys (`10.244.1.0-24`) and lease values, byte for byte.
//! - [`allocate`]: owning a subnet (reuse by PublicIP, atomic create, renewal).
//! - [`watch`]: list + watch of `<prefix>/subnets/` with resume and re-list.
//! - [`subnet_env`]: `/run/flannel/subnet.env` for the CNI plugin.
//!
//! The daemon is threads + mio, etcd-client is async: a [`Registry`] owns a small tokio
//! runtime (one worker thread, `podfwd-etcd`) and every method blocks the calling thread
//! until etcd answered (each call is bounded by a timeout). Peers arrive on a plain
//! `std::sync::mpsc::Receiver<RegistryEvent>`.
//!
//! The runtime's threads inherit the network namespace of the thread that calls
//! [`Registry::connect`]: create the registry in the namespace from which etcd is reached.

pub mod allocate;
pub mod lease;
pub mod network;
pub mod subnet_env;
pub mod watch;

pub use allocate::{OwnLease, RENEW_MARGIN, SUBNET_TTL};
pub use lease::{subnet_key, Lease, LeaseAttrs, LeaseBackend, LeaseError};
pub use network::{BackendConfig, NetworkConfig, NetworkConfigError, VxlanBackend};

use crate::config::{Config, ConfigError, EtcdNode, EtcdSettings, Peer, RegistryAssignment};
use etcd_client::{Client, ConnectOptions, GetOptions};
use ipnet::Ipv4Net;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Why the registry could not be used. Each names the key, file or endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.etcd_endpoints: {endpoint:?} {why}")]
    Endpoint { endpoint: String, why: &'static str },
    #[error("{field}: cannot read {}: {error}", path.display())]
    TlsFile {
        field: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot start the etcd client runtime: {0}")]
    Runtime(std::io::Error),
    #[error("etcd {op}: {source}")]
    Etcd {
        op: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd {op}: no answer within {after:?}")]
    Timeout { op: String, after: Duration },
    #[error(
        "{key} does not exist; write flannel's network config first, like: \
         etcdctl put {key} '{{\"Network\":\"10.244.0.0/16\",\"Backend\":{{\"Type\":\"vxlan\"}}}}'"
    )]
    NoNetworkConfig { key: String },
    #[error("{key}: {source}")]
    NetworkConfig {
        key: String,
        #[source]
        source: NetworkConfigError,
    },
    #[error("no free subnet left in {min}..={max} of Network {network}")]
    OutOfSubnets {
        network: Ipv4Net,
        min: Ipv4Addr,
        max: Ipv4Addr,
    },
    #[error(
        "gave up after {} attempts: other nodes took each subnet this node picked",
        allocate::RACE_RETRIES
    )]
    TooManyRaces,
    #[error("{0}: not the backend of the network config ({1})")]
    BackendMismatch(&'static str, &'static str),
}

/// What the watcher reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// The complete set of peer leases (first list, and after a compaction): replace
    /// what you have.
    Snapshot(Vec<Lease>),
    /// A new peer.
    Added(Lease),
    /// A known peer's attributes changed (PublicIP, VtepMAC, ...).
    Changed(Lease),
    /// A peer's lease was deleted or expired.
    Removed(Ipv4Net),
    /// This node's own lease was deleted: flanneld shuts down on this; the caller decides.
    OwnLeaseRemoved(Ipv4Net),
    /// The watch lost (`false`) or regained (`true`) etcd.
    Connection { up: bool },
}

/// Counters and state for metrics; cheap to read from any thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryState {
    /// Whether the watch currently has a stream to etcd.
    pub connected: bool,
    /// Highest etcd revision the watch has seen.
    pub last_revision: i64,
    /// Times the watch lost etcd.
    pub disconnects: u64,
    /// Snapshots sent (1 + re-lists after compaction).
    pub snapshots: u64,
    /// This node's subnet, once acquired.
    pub own_subnet: Option<Ipv4Net>,
    /// When this node's lease expires unless renewed.
    pub own_expires: Option<SystemTime>,
    /// Successful renewals.
    pub renewals: u64,
    /// Failed renewal attempts.
    pub renew_failures: u64,
}

/// Timing knobs; [`Timing::default`] is flanneld's (tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// TTL of the etcd lease under the subnet key (24 h).
    pub lease_ttl: Duration,
    /// Renew this long before expiry (60 min).
    pub renew_margin: Duration,
    /// Retry a failed renewal after this long (1 min).
    pub renew_retry: Duration,
    /// Bound on each etcd request.
    pub op_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_ttl: allocate::SUBNET_TTL,
            renew_margin: allocate::RENEW_MARGIN,
            renew_retry: allocate::RENEW_RETRY,
            op_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) connected: AtomicBool,
    pub(crate) revision: AtomicI64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) snapshots: AtomicU64,
    pub(crate) renewals: AtomicU64,
    pub(crate) renew_failures: AtomicU64,
    pub(crate) own: Mutex<Option<OwnLease>>,
}

/// The etcd side: a client, the prefix, the request bound. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Etcd {
    pub(crate) client: Client,
    pub(crate) prefix: String,
    pub(crate) op_timeout: Duration,
}

/// All subnet keys at one revision.
pub(crate) struct Listing {
    pub(crate) leases: Vec<Lease>,
    /// Subnets of every key that names one, also those whose value is malformed: a
    /// new lease must not collide with them either.
    pub(crate) taken: Vec<Ipv4Net>,
    /// Keys that are not leases, with the reason.
    pub(crate) skipped: Vec<(String, LeaseError)>,
    pub(crate) revision: i64,
}

impl Etcd {
    /// Runs one request with the timeout, naming it in the error.
    pub(crate) async fn call<T>(
        &self,
        op: &str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.op_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(ClusterError::Etcd {
                op: op.to_string(),
                source,
            }),
            Err(_) => Err(ClusterError::Timeout {
                op: op.to_string(),
                after: self.op_timeout,
            }),
        }
    }

    pub(crate) fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    pub(crate) fn subnet_path(&self, subnet: Ipv4Net) -> String {
        format!("{}/subnets/{}", self.prefix, subnet_key(subnet))
    }

    pub(crate) fn config_path(&self) -> String {
        format!("{}/config", self.prefix)
    }

    pub(crate) async fn network_config(&self) -> Result<NetworkConfig, ClusterError> {
        let key = self.config_path();
        let mut c = self.client.clone();
        let resp = self
            .call(&format!("get {key}"), c.get(key.clone(), None))
            .await?;
        let kv = resp
            .kvs()
            .first()
            .ok_or_else(|| ClusterError::NoNetworkConfig { key: key.clone() })?;
        NetworkConfig::parse(kv.value())
            .map_err(|source| ClusterError::NetworkConfig { key, source })
    }

    pub(crate) async fn list_subnets(&self) -> Result<Listing, ClusterError> {
        let prefix = self.subnets_prefix();
        let mut c = self.client.clone();
        let resp = self
            .call(
                &format!("list {prefix}"),
                c.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let mut listing = Listing {
            leases: Vec::new(),
            taken: Vec::new(),
            skipped: Vec::new(),
            revision: resp.header().map_or(0, |h| h.revision()),
        };
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if let Ok(sn) = lease::parse_subnet_key(&key) {
                listing.taken.push(sn);
            }
            match Lease::from_kv(&key, kv.value(), kv.lease(), kv.mod_revision()) {
                Ok(l) => listing.leases.push(l),
                Err(e) => listing.skipped.push((key, e)),
            }
        }
        Ok(listing)
    }
}

/// A connection to the registry. Dropping it stops the watchers and the renewal
/// (the lease is left to expire, as flanneld leaves it).
pub struct Registry {
    runtime: Option<tokio::runtime::Runtime>,
    etcd: Etcd,
    timing: Timing,
    shared: Arc<Shared>,
    subnet_file: PathBuf,
    renewal: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Registry {
    /// Connects with flanneld's timing. Does not wait for etcd: the first request does.
    pub fn connect(settings: &EtcdSettings) -> Result<Registry, ClusterError> {
        Registry::connect_with(settings, Timing::default())
    }

    /// Connects with the given timing.
    pub fn connect_with(settings: &EtcdSettings, timing: Timing) -> Result<Registry, ClusterError> {
        let mut tls_wanted = settings.ca_file.is_some() || settings.cert_file.is_some();
        for e in &settings.endpoints {
            if e.starts_with("https://") {
                tls_wanted = true;
            } else if !e.starts_with("http://") {
                return Err(ClusterError::Endpoint {
                    endpoint: e.clone(),
                    why: "is not an http:// or https:// URL",
                });
            }
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timing.op_timeout)
            // Detects a silently dead etcd under an idle watch stream.
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            // flanneld's WithRequireLeader: a member cut off from its cluster ends the
            // watch instead of serving stale leases.
            .with_require_leader(true);
        if tls_wanted {
            options = options.with_tls(tls_options(settings)?);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("podfwd-etcd")
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let endpoints = settings.endpoints.clone();
        let client = runtime
            .block_on(async move { Client::connect(endpoints, Some(options)).await })
            .map_err(|source| ClusterError::Etcd {
                op: "connect".into(),
                source,
            })?;
        Ok(Registry {
            runtime: Some(runtime),
            etcd: Etcd {
                client,
                prefix: settings.prefix.trim_end_matches('/').to_string(),
                op_timeout: timing.op_timeout,
            },
            timing,
            shared: Arc::new(Shared::default()),
            subnet_file: settings.subnet_file.clone(),
            renewal: Mutex::new(None),
        })
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("runtime lives until drop")
    }

    /// Reads and checks `<prefix>/config`.
    pub fn network_config(&self) -> Result<NetworkConfig, ClusterError> {
        self.rt().block_on(self.etcd.network_config())
    }

    /// Owns a subnet by flanneld's rules (see [`allocate`]) and keeps it renewed until
    /// the registry is dropped. `attrs.backend` must match the network's backend.
    pub fn acquire_lease(
        &self,
        attrs: &LeaseAttrs,
        network: &NetworkConfig,
    ) -> Result<OwnLease, ClusterError> {
        let want = network.backend_type();
        let have = match attrs.backend {
            LeaseBackend::Vxlan { .. } => "vxlan",
            LeaseBackend::HostGw => "host-gw",
            LeaseBackend::Other { .. } => "other",
        };
        if want != have {
            return Err(ClusterError::BackendMismatch(have, want));
        }
        let previous = subnet_env::previous_subnet(&self.subnet_file);
        let own = self.rt().block_on(self.etcd.acquire(
            network,
            attrs,
            previous,
            self.timing.lease_ttl,
        ))?;
        *self.shared.own.lock().unwrap() = Some(own.clone());
        self.start_renewal();
        Ok(own)
    }

    /// Starts (or restarts) the renewal task for the current own lease.
    fn start_renewal(&self) {
        let mut slot = self.renewal.lock().unwrap();
        if let Some(old) = slot.take() {
            old.abort();
        }
        let etcd = self.etcd.clone();
        let shared = self.shared.clone();
        let timing = self.timing;
        *slot = Some(self.rt().spawn(async move {
            let mut warnings = crate::log::RateLimit::new(crate::log::WARN_EVERY);
            loop {
                let Some(own) = shared.own.lock().unwrap().clone() else {
                    return;
                };
                let Some(expires) = own.expires else {
                    return; // a reservation never expires
                };
                let wait = expires
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .saturating_sub(timing.renew_margin);
                tokio::time::sleep(wait).await;
                loop {
                    let lease = Lease {
                        subnet: own.subnet,
                        attrs: own.attrs.clone(),
                        etcd_lease: own.etcd_lease,
                        mod_revision: 0,
                    };
                    match etcd
                        .update(&lease, &own.attrs, Some(timing.lease_ttl))
                        .await
                    {
                        Ok(renewed) => {
                            shared.renewals.fetch_add(1, Ordering::Relaxed);
                            *shared.own.lock().unwrap() = Some(renewed);
                            break;
                        }
                        Err(e) => {
                            shared.renew_failures.fetch_add(1, Ordering::Relaxed);
                            crate::warn_limited!(
                                warnings,
                                own.subnet,
                                subnet = %own.subnet,
                                error = %e,
                                retry_in = ?timing.renew_retry,
                                "cluster: renewing the lease failed"
                            );
                            tokio::time::sleep(timing.renew_retry).await;
                        }
                    }
                }
            }
        }));
    }

    /// The own lease as last acquired or renewed.
    pub fn own_lease(&self) -> Option<OwnLease> {
        self.shared.own.lock().unwrap().clone()
    }

    /// Starts following the peers' leases; this node's own subnet (once acquired) is
    /// left out. Each call starts its own watcher; it stops when the receiver is
    /// dropped (at its next event) or the registry is dropped.
    pub fn watch(&self) -> Receiver<RegistryEvent> {
        self.spawn_watch(None)
    }

    /// Like [`Registry::watch`], calling `notify` after each event is queued, so an
    /// event loop can sleep in `poll` (e.g. `move || { let _ = waker.wake(); }` with a
    /// `mio::Waker`) and drain the receiver with `try_recv` when woken.
    pub fn watch_notify(
        &self,
        notify: impl Fn() + Send + Sync + 'static,
    ) -> Receiver<RegistryEvent> {
        self.spawn_watch(Some(Box::new(notify)))
    }

    fn spawn_watch(&self, notify: Option<watch::Notify>) -> Receiver<RegistryEvent> {
        let (tx, rx) = mpsc::channel();
        let own = self.own_lease().map(|o| o.subnet);
        let w = watch::Watcher::new(self.etcd.clone(), self.shared.clone(), tx, own, notify);
        self.rt().spawn(w.run());
        rx
    }

    /// Current state for metrics.
    pub fn state(&self) -> RegistryState {
        let own = self.own_lease();
        RegistryState {
            connected: self.shared.connected.load(Ordering::Relaxed),
            last_revision: self.shared.revision.load(Ordering::Relaxed),
            disconnects: self.shared.disconnects.load(Ordering::Relaxed),
            snapshots: self.shared.snapshots.load(Ordering::Relaxed),
            own_subnet: own.as_ref().map(|o| o.subnet),
            own_expires: own.and_then(|o| o.expires),
            renewals: self.shared.renewals.load(Ordering::Relaxed),
            renew_failures: self.shared.renew_failures.load(Ordering::Relaxed),
        }
    }

    /// Writes flanneld's subnet.env for the own lease to `cluster.subnet_file`.
    pub fn write_subnet_file(
        &self,
        network: &NetworkConfig,
        mtu: u32,
        ip_masq: bool,
    ) -> std::io::Result<()> {
        let own = self.own_lease().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no lease acquired yet")
        })?;
        subnet_env::write(&self.subnet_file, network.network, own.subnet, mtu, ip_masq)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn tls_options(settings: &EtcdSettings) -> Result<etcd_client::TlsOptions, ClusterError> {
    let read = |field: &'static str, path: &PathBuf| {
        std::fs::read(path).map_err(|error| ClusterError::TlsFile {
            field,
            path: path.clone(),
            error,
        })
    };
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &settings.ca_file {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(
            "cluster.etcd_ca_file",
            ca,
        )?));
    }
    if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
        tls = tls.identity(etcd_client::Identity::from_pem(
            read("cluster.etcd_cert_file", cert)?,
            read("cluster.etcd_key_file", key)?,
        ));
    }
    Ok(tls)
}

/// What the registry decides for this node's config ([`crate::config::EtcdNode::complete`]).
pub fn assignment(network: &NetworkConfig, own: &OwnLease) -> RegistryAssignment {
    RegistryAssignment {
        pod_cidr: own.subnet,
        mode: network.mode(),
        vni: network.vni(),
        port: network.vxlan_port(),
    }
}

/// The `[[peers]]` entry a lease stands for, or why it is not a peer of this network
/// (flanneld's backends ignore leases of another backend type the same way).
pub fn peer(network: &NetworkConfig, lease: &Lease) -> Result<Peer, String> {
    match (&network.backend, &lease.attrs.backend) {
        (BackendConfig::Vxlan(_), LeaseBackend::Vxlan { vtep_mac, .. }) => Ok(Peer {
            pod_cidr: lease.subnet,
            node_ip: lease.attrs.public_ip,
            vtep_mac: Some(*vtep_mac),
        }),
        (BackendConfig::HostGw, LeaseBackend::HostGw) => Ok(Peer {
            pod_cidr: lease.subnet,
            node_ip: lease.attrs.public_ip,
            vtep_mac: None,
        }),
        (_, b) => Err(format!(
            "lease {} is a {:?} lease in a {} network; ignoring it",
            lease.subnet,
            b,
            network.backend_type()
        )),
    }
}

/// The full config of an etcd node: the file completed with the registry's answer and
/// the peers of the current lease set (own subnet and leases of another backend left
/// out, each skipped one logged). `Plan::resolve` takes it from there.
pub fn node_config(
    node: &EtcdNode,
    network: &NetworkConfig,
    own: &OwnLease,
    leases: &[Lease],
) -> Result<Config, ConfigError> {
    let mut config = node.complete(&assignment(network, own))?;
    config.peers = leases
        .iter()
        .filter(|l| l.subnet != own.subnet)
        .filter_map(|l| match peer(network, l) {
            Ok(p) => Some(p),
            Err(why) => {
                // Said again with every change of the lease set: rate-limited per subnet.
                static SKIPPED: std::sync::LazyLock<
                    Mutex<crate::log::RateLimit<Ipv4Net>>,
                > = std::sync::LazyLock::new(|| {
                    Mutex::new(crate::log::RateLimit::new(crate::log::WARN_EVERY))
                });
                let mut skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
                crate::warn_limited!(skipped, l.subnet, subnet = %l.subnet, reason = %why, "cluster: not a peer");
                None
            }
        })
        .collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_can_be_shared_between_control_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Registry>();
        send_sync::<RegistryEvent>();
    }

    #[test]
    fn endpoints_must_be_urls() {
        let settings = EtcdSettings {
            endpoints: vec!["10.168.0.3:2379".into()],
            prefix: "/coreos.com/network".into(),
            subnet_file: "/tmp/x".into(),
            ca_file: None,
            cert_file: None,
            key_file: None,
        };
        let err = Registry::connect(&settings).err().expect("refused");
        assert!(
            err.to_string()
                .starts_with("cluster.etcd_endpoints: \"10.168.0.3:2379\""),
            "{err}"
        );
    }

    #[test]
    fn leases_become_peers_of_their_own_backend_only() {
        let vx = NetworkConfig::parse(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#)
            .unwrap();
        let hg =
            NetworkConfig::parse(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#)
                .unwrap();
        let lease = Lease::from_kv(
            "/coreos.com/network/subnets/10.244.3.0-24",
            br#"{"PublicIP":"10.168.0.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:0b"}}"#,
            7,
            9,
        )
        .unwrap();
        let p = peer(&vx, &lease).unwrap();
        assert_eq!(p.pod_cidr, "10.244.3.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(p.node_ip, Ipv4Addr::new(10, 168, 0, 3));
        assert_eq!(p.vtep_mac, Some("0e:00:00:00:00:0b".parse().unwrap()));
        assert!(peer(&hg, &lease).unwrap_err().contains("10.244.3.0/24"));
    }
}
