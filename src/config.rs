//! The node's TOML configuration: parsing, defaults and validation.
//!
//! Parsing happens in two steps. serde reads the file into `Raw*` structs that keep every
//! leaf as written (strings for addresses, `i64` for numbers) together with its position;
//! [`Config::from_toml_str`] then checks each value and builds the typed [`Config`]. That
//! way every error names the field path (`peers[1].vtep_mac`), the value as written and
//! its line, instead of serde's "invalid value" without a path.
//!
//! A [`Config`] that came out of [`Config::from_toml_str`] or [`Config::load`] is
//! internally consistent; [`crate::plan::Plan::resolve`] adds the checks that need the
//! uplink's subnet.

use crate::wire::MacAddr;
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use toml::Spanned;

/// Longest interface name the kernel accepts (IFNAMSIZ minus the terminating NUL).
pub const MAX_IFNAME_LEN: usize = 15;
/// Longest path a Unix socket address holds (`sun_path` minus the terminating NUL).
pub const MAX_SOCKET_PATH_LEN: usize = 107;
/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Largest `dataplane.batch_size`: the workers keep one batch in a fixed stack array.
pub const MAX_BATCH_SIZE: usize = 256;
/// Number of CPUs a `cpu_set_t` can name; `dataplane.cores` must be below it.
pub const MAX_CORES: usize = 1024;

// ---------------------------------------------------------------------------------------
// The validated configuration
// ---------------------------------------------------------------------------------------

/// A node's validated configuration (one file per node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub node: Node,
    pub dataplane: Dataplane,
    pub vxlan: Vxlan,
    pub tun: Tun,
    pub control: Control,
    pub metrics: Metrics,
    /// One per remote node, like a flannel subnet lease. May be empty (a single node).
    pub peers: Vec<Peer>,
    /// `[cluster]`: where the peers come from.
    pub cluster: ClusterSource,
}

/// `cluster.source`: the peers from this file (`static`) or flannel's etcd registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClusterSource {
    #[default]
    Static,
    Etcd(EtcdSettings),
}

/// `[cluster]` with `source = "etcd"`: how to reach flannel's subnet registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `cluster.etcd_endpoints`: `http://` or `https://` URLs.
    pub endpoints: Vec<String>,
    /// `cluster.etcd_prefix` (flannel's default `/coreos.com/network`).
    pub prefix: String,
    /// `cluster.subnet_file`, written for the flannel CNI plugin.
    pub subnet_file: PathBuf,
    /// `cluster.etcd_ca_file`, `etcd_cert_file`, `etcd_key_file` (TLS, PEM).
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// flannel's default etcd prefix.
pub const DEFAULT_ETCD_PREFIX: &str = "/coreos.com/network";
/// flannel's default subnet file.
pub const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";

/// What the registry decides for an etcd node: the keys it must leave out of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryAssignment {
    /// `node.pod_cidr`: the subnet of this node's lease.
    pub pod_cidr: Ipv4Net,
    /// `dataplane.mode`: host-gw, vxlan, or auto (vxlan with DirectRouting).
    pub mode: Mode,
    /// `vxlan.vni`.
    pub vni: u32,
    /// `vxlan.port` (8472 when the network config leaves it 0).
    pub port: u16,
}

/// `[node]`: this node's addresses and interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node's underlay address (the VXLAN source address).
    pub ip: Ipv4Addr,
    /// The uplink's L2 subnet, when `node.ip` was written with a prefix length
    /// (`"10.168.0.2/24"` gives `10.168.0.0/24`). `None`: read it from the kernel.
    pub subnet: Option<Ipv4Net>,
    /// Pods on this node.
    pub pod_cidr: Ipv4Net,
    /// The underlay interface.
    pub uplink: String,
    /// Pod-facing interfaces podfwd serves (afxdp backend; may be empty with tun).
    pub pod_interfaces: Vec<String>,
    /// The underlay router: outer next hop for off-link VXLAN peers and the next hop of
    /// host-gw routes to peers that are not on the uplink subnet ("underlay" routing).
    pub gateway: Option<Ipv4Addr>,
}

/// `[dataplane]`: how packets are moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataplane {
    pub backend: Backend,
    pub mode: Mode,
    /// One pinned worker per listed CPU; non-empty, no duplicates.
    pub cores: Vec<usize>,
    /// Queues used per interface; at least 1.
    pub queues: u16,
    /// Where the XDP program is attached (afxdp backend).
    pub xdp_mode: XdpMode,
    /// Frames per rx/tx burst, `1..=MAX_BATCH_SIZE`.
    pub batch_size: usize,
    /// AF_XDP ring sizes, each a power of two.
    pub rx_ring_size: u32,
    pub tx_ring_size: u32,
    pub fill_ring_size: u32,
    pub comp_ring_size: u32,
    /// UMEM frames per socket; at least `batch_size`.
    pub frame_count: u32,
    /// Spin on the rings instead of sleeping in poll() when idle.
    pub busy_poll: bool,
    /// The workers' real-time priority: 1..=99 runs them `SCHED_FIFO` at that priority,
    /// 0 under the normal scheduler. A worker that shares its core with the kernel's
    /// receive processing (NAPI) must win that core whenever it has frames, or NAPI keeps
    /// copying frames that the full AF_XDP ring then drops (docs/afxdp.md, "Worker
    /// priority"). Default [`DEFAULT_WORKER_PRIORITY`] for afxdp, 0 with busy_poll or tun.
    pub worker_priority: u8,
}

/// `dataplane.worker_priority` of an afxdp node that sleeps in poll() when idle: the
/// lowest real-time priority, above every normal task (NAPI kthreads, ksoftirqd) and
/// below every other real-time one (threaded IRQ handlers run at 50).
pub const DEFAULT_WORKER_PRIORITY: u8 = 1;
/// The highest `SCHED_FIFO` priority.
pub const MAX_WORKER_PRIORITY: u8 = 99;

/// `[vxlan]`: the node's VTEP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    /// VXLAN network identifier, at most [`MAX_VNI`].
    pub vni: u32,
    /// UDP destination port (8472 is the Linux and flannel default, 4789 is IANA's).
    pub port: u16,
    /// This node's VTEP MAC: the inner source MAC. Present in vxlan and auto mode.
    pub vtep_mac: Option<MacAddr>,
    /// Name of the kernel VXLAN device podfwd installs for the slow path (see
    /// `docs/kernel-slow-path.md`).
    pub device: String,
}

/// `[tun]`: the TUN backend's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tun {
    pub name: String,
    /// Segmentation offloads: TSO from the TUN (`IFF_VNET_HDR`, `TUNSETOFFLOAD`), UDP GSO
    /// on send, UDP GRO and coalescing on receive. Default on; `false` forces them off.
    pub offload: bool,
}

/// `[control]`: paths that must differ between instances on one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The control socket (`podfwd stats` talks to it).
    pub socket: PathBuf,
    /// Where the XDP program and its maps are pinned in bpffs.
    pub bpf_pin_dir: PathBuf,
}

/// `[metrics]`: the Prometheus endpoint (`crate::metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Where `GET /metrics` is served; `None` (no `[metrics]`, or no `listen`): off.
    pub listen: Option<SocketAddr>,
}

/// `[[peers]]`: one remote node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub pod_cidr: Ipv4Net,
    pub node_ip: Ipv4Addr,
    /// The peer's VTEP MAC; present in vxlan and auto mode.
    pub vtep_mac: Option<MacAddr>,
}

/// `dataplane.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Backend {
    /// AF_XDP sockets on the uplink and the pod interfaces (fast path).
    #[default]
    #[value(name = "afxdp")]
    AfXdp,
    /// A TUN device; the kernel delivers to local pods (portable path).
    #[value(name = "tun")]
    Tun,
    /// The XDP program forwards in the kernel (rewrite, encap, decap, redirect); what it
    /// cannot finish goes to the kernel (in-kernel fast path).
    #[value(name = "xdp")]
    Xdp,
}

/// `dataplane.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Mode {
    /// Route to the peer node's underlay address and rewrite MACs (one L2 segment).
    #[value(name = "host-gw")]
    HostGw,
    /// Encapsulate to the peer's VTEP.
    #[default]
    #[value(name = "vxlan")]
    Vxlan,
    /// flannel's DirectRouting: host-gw for peers on the uplink subnet, VXLAN otherwise.
    #[value(name = "auto")]
    Auto,
}

/// `dataplane.xdp_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// In the driver (veth supports it).
    #[default]
    Native,
    /// The generic (skb) hook: works everywhere, slower.
    Generic,
}

macro_rules! text_enum {
    ($ty:ty, $what:literal, $( $variant:path => $text:literal ),+ $(,)?) => {
        impl $ty {
            /// All accepted spellings, in the order they are documented.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling used in the config file.
            pub const fn as_str(self) -> &'static str {
                match self { $($variant => $text),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($variant),)+
                    _ => Err(format!(
                        "{s:?} is not a {}; expected one of {}",
                        $what,
                        quoted_list(Self::NAMES)
                    )),
                }
            }
        }
    };
}

text_enum!(Backend, "backend", Backend::AfXdp => "afxdp", Backend::Tun => "tun", Backend::Xdp => "xdp");

impl Backend {
    /// Whether the backend serves the uplink and pod interfaces with the XDP program
    /// (`afxdp` through its AF_XDP workers, `xdp` in the kernel).
    pub const fn uses_xdp(self) -> bool {
        matches!(self, Backend::AfXdp | Backend::Xdp)
    }
}
text_enum!(Mode, "mode", Mode::HostGw => "host-gw", Mode::Vxlan => "vxlan", Mode::Auto => "auto");
text_enum!(XdpMode, "XDP mode", XdpMode::Native => "native", XdpMode::Generic => "generic");

impl Mode {
    /// Whether peers may be reached over VXLAN, so VTEP MACs are needed.
    pub const fn uses_vxlan(self) -> bool {
        matches!(self, Mode::Vxlan | Mode::Auto)
    }
}

impl Default for Dataplane {
    fn default() -> Self {
        Dataplane {
            backend: Backend::default(),
            mode: Mode::default(),
            cores: vec![0],
            queues: 1,
            xdp_mode: XdpMode::default(),
            batch_size: 64,
            rx_ring_size: 2048,
            tx_ring_size: 2048,
            fill_ring_size: 2048,
            comp_ring_size: 2048,
            frame_count: 4096,
            busy_poll: false,
            worker_priority: DEFAULT_WORKER_PRIORITY,
        }
    }
}

impl Default for Vxlan {
    fn default() -> Self {
        Vxlan {
            vni: 1,
            port: 8472,
            vtep_mac: None,
            device: "podfwd.1".to_string(),
        }
    }
}

impl Default for Tun {
    fn default() -> Self {
        Tun {
            name: "podfwd0".to_string(),
            offload: true,
        }
    }
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: PathBuf::from("/run/podfwd/podfwd.sock"),
            bpf_pin_dir: PathBuf::from("/sys/fs/bpf/podfwd"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named on the command line does not exist.
    #[error("config file {} does not exist", path.display())]
    NotFound { path: PathBuf },
    /// The file exists but could not be read.
    #[error("cannot read config file {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    /// An error in a named file.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<ConfigError>,
    },
    /// Not TOML, an unknown key, or a value of the wrong type. toml's message carries
    /// the line, the column and the offending line itself.
    #[error("{}", .0.to_string().trim_end())]
    Toml(#[from] toml::de::Error),
    /// A value that parsed but is not acceptable.
    #[error("{field}: {}{problem}{}",
        value.as_ref().map(|v| format!("{v} ")).unwrap_or_default(),
        line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Invalid {
        /// Path of the field, like `peers[1].vtep_mac`.
        field: String,
        /// The value as written (strings quoted), or `None` when it is missing.
        value: Option<String>,
        problem: Problem,
        /// 1-based line of the value in the file, when known.
        line: Option<usize>,
    },
}

impl ConfigError {
    /// The invalid field's path, for `Invalid` errors (also inside `InFile`).
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::InFile { error, .. } => error.field(),
            _ => None,
        }
    }

    /// What is wrong, for `Invalid` errors (also inside `InFile`).
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ConfigError::Invalid { problem, .. } => Some(problem),
            ConfigError::InFile { error, .. } => error.problem(),
            _ => None,
        }
    }
}

/// What is wrong with a value. Displayed after the value, so each message reads
/// `field: "value" <problem>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("is missing; {why}")]
    Missing { why: String },
    #[error("is not an IPv4 address")]
    NotIpv4Addr,
    #[error("is not an IPv4 address with an optional prefix length, like \"10.168.0.2/24\"")]
    NotIpv4AddrOrInterface,
    #[error("is not an IPv4 network in CIDR notation, like \"10.244.1.0/24\"")]
    NotCidr,
    #[error("is not a usable host address ({why})")]
    NotHostAddress { why: &'static str },
    #[error("has host bits set; did you mean \"{network}\"?")]
    HostBitsSet { network: Ipv4Net },
    #[error("overlaps {other_field} = \"{other}\"; pod CIDRs of different nodes must be disjoint")]
    Overlaps { other_field: String, other: Ipv4Net },
    #[error("is this node's own node.pod_cidr; a node does not list itself as a peer")]
    IsOwnPodCidr,
    #[error("is this node's own node.ip; a node does not list itself as a peer")]
    IsOwnNodeIp,
    #[error("is inside {cidr_field} = \"{cidr}\"; underlay and pod addresses must not overlap")]
    InsidePodCidr { cidr_field: String, cidr: Ipv4Net },
    #[error("is also {other_field}; {why}")]
    Duplicate {
        other_field: String,
        why: &'static str,
    },
    #[error("is not a MAC address: expected six hex octets separated by ':', like \"0e:00:00:00:00:0a\"")]
    NotMac,
    #[error("is a multicast MAC address; a VTEP MAC must be unicast (lowest bit of the first octet clear)")]
    MulticastMac,
    #[error("is the all-zero MAC address; a VTEP needs a real unicast MAC")]
    ZeroMac,
    #[error("is out of range; expected {min}..={max}{}", why.map(|w| format!(" ({w})")).unwrap_or_default())]
    OutOfRange {
        min: i64,
        max: i64,
        why: Option<&'static str>,
    },
    #[error("is not a power of two")]
    NotPowerOfTwo,
    #[error("is empty; {why}")]
    Empty { why: &'static str },
    #[error("is {len} bytes long; interface names are at most {MAX_IFNAME_LEN} bytes (IFNAMSIZ)")]
    NameTooLong { len: usize },
    #[error("is not a valid interface name ({why})")]
    BadInterfaceName { why: &'static str },
    #[error("is the uplink (node.uplink); pod interfaces and the uplink must differ")]
    SameAsUplink,
    #[error("is not one of {}", quoted_list(expected))]
    UnknownChoice { expected: &'static [&'static str] },
    #[error("is {len} bytes long; a Unix socket path is at most {MAX_SOCKET_PATH_LEN} bytes")]
    SocketPathTooLong { len: usize },
    #[error("is not an IP address and port, like \"127.0.0.1:9472\" or \"[::1]:9472\"")]
    NotSocketAddr,
    #[error("is set, but with cluster.source = \"etcd\" it comes from the registry; remove it (node.pod_cidr, dataplane.mode, vxlan.vni, vxlan.port and [[peers]] come from etcd)")]
    FromRegistry,
    #[error("needs the registry: node.pod_cidr, dataplane.mode, vxlan.vni, vxlan.port and the peers come from etcd (load the file with config::EtcdNode)")]
    NeedsRegistry,
    #[error("only applies with cluster.source = \"etcd\"")]
    OnlyForEtcd,
    #[error("is not an http:// or https:// URL, like \"http://10.168.0.3:2379\"")]
    NotEndpointUrl,
    #[error("needs {other_field} too; give both the client certificate and its key")]
    NeedsBoth { other_field: &'static str },
    #[error("must be 0 here: {why}")]
    RealTimeSpin { why: &'static str },
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// Raw (as written) form
// ---------------------------------------------------------------------------------------

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: Option<RawNode>,
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default)]
    vxlan: RawVxlan,
    #[serde(default)]
    tun: RawTun,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    peers: Vec<S<RawPeer>>,
    #[serde(default)]
    cluster: RawCluster,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    source: Option<S<String>>,
    etcd_endpoints: Option<S<Vec<S<String>>>>,
    etcd_prefix: Option<S<String>>,
    subnet_file: Option<S<String>>,
    etcd_ca_file: Option<S<String>>,
    etcd_cert_file: Option<S<String>>,
    etcd_key_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    ip: Option<S<String>>,
    pod_cidr: Option<S<String>>,
    uplink: Option<S<String>>,
    pod_interfaces: Option<S<Vec<S<String>>>>,
    gateway: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    backend: Option<S<String>>,
    mode: Option<S<String>>,
    cores: Option<S<Vec<S<i64>>>>,
    queues: Option<S<i64>>,
    xdp_mode: Option<S<String>>,
    batch_size: Option<S<i64>>,
    rx_ring_size: Option<S<i64>>,
    tx_ring_size: Option<S<i64>>,
    fill_ring_size: Option<S<i64>>,
    comp_ring_size: Option<S<i64>>,
    frame_count: Option<S<i64>>,
    busy_poll: Option<bool>,
    worker_priority: Option<S<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVxlan {
    vni: Option<S<i64>>,
    port: Option<S<i64>>,
    vtep_mac: Option<S<String>>,
    device: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTun {
    name: Option<S<String>>,
    offload: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<S<String>>,
    bpf_pin_dir: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    pod_cidr: Option<S<String>>,
    node_ip: Option<S<String>>,
    vtep_mac: Option<S<String>>,
}

// ---------------------------------------------------------------------------------------
// Loading and validation
// ---------------------------------------------------------------------------------------

/// Reads `path` and parses it with `parse`; every error names the file.
fn load_file<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        if error.kind() == io::ErrorKind::NotFound {
            ConfigError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            ConfigError::Read {
                path: path.to_path_buf(),
                error,
            }
        }
    })?;
    parse(&text).map_err(|error| ConfigError::InFile {
        path: path.to_path_buf(),
        error: Box::new(error),
    })
}

impl Config {
    /// Reads and validates a config file. Errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        load_file(path.as_ref(), Config::from_toml_str)
    }

    /// Parses and validates a config from TOML text. An etcd node's file is refused with
    /// [`Problem::NeedsRegistry`]: it is complete only with the registry's answer, see
    /// [`EtcdNode`].
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        Validator { text }.config(raw, None)
    }

    /// Whether the configured mode needs VTEP MACs (this node's and every peer's).
    pub fn needs_vtep_macs(&self) -> bool {
        self.dataplane.mode.uses_vxlan()
    }
}

/// An etcd node's config file (`cluster.source = "etcd"`), checked offline: every key
/// but those the registry decides ([`RegistryAssignment`]). [`EtcdNode::complete`]
/// adds the registry's answer and gives the full [`Config`]; the peers then come from
/// the registry's leases (`crate::cluster::peer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdNode {
    text: String,
    pub settings: EtcdSettings,
}

impl EtcdNode {
    /// Reads and checks an etcd node's file. Errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<EtcdNode, ConfigError> {
        load_file(path.as_ref(), EtcdNode::from_toml_str)
    }

    /// Checks an etcd node's file offline. The registry's keys are checked once known,
    /// by [`EtcdNode::complete`] (e.g. `vxlan.vtep_mac` is required for a vxlan network).
    pub fn from_toml_str(text: &str) -> Result<EtcdNode, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        // A stand-in the rest of the file cannot clash with: a host-gw network (the
        // VXLAN-only checks wait for the real answer) and a pod CIDR no node address
        // can be inside.
        let stand_in = RegistryAssignment {
            pod_cidr: Ipv4Net::new(Ipv4Addr::BROADCAST, 32).expect("/32"),
            mode: Mode::HostGw,
            vni: 1,
            port: Vxlan::default().port,
        };
        let config = Validator { text }.config(raw, Some(&stand_in))?;
        match config.cluster {
            ClusterSource::Etcd(settings) => Ok(EtcdNode {
                text: text.to_string(),
                settings,
            }),
            ClusterSource::Static => Err(ConfigError::Invalid {
                field: "cluster.source".into(),
                value: None,
                problem: Problem::Missing {
                    why: "this file lists its peers itself (source \"static\"); load it with Config::load".into(),
                },
                line: None,
            }),
        }
    }

    /// The full config with the registry's answer; `peers` stays empty.
    pub fn complete(&self, registry: &RegistryAssignment) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(&self.text)?;
        Validator { text: &self.text }.config(raw, Some(registry))
    }

    /// What `podfwd check` says about an etcd node before asking the registry.
    pub fn summary(&self) -> String {
        let s = &self.settings;
        format!(
            "cluster: etcd {} prefix {}\n  node.pod_cidr, dataplane.mode, vxlan.vni, vxlan.port and the peers come from the registry\n  subnet file: {}\n",
            s.endpoints.join(","),
            s.prefix,
            s.subnet_file.display()
        )
    }
}

/// Turns the raw form into a [`Config`], reporting the first problem found.
struct Validator<'a> {
    text: &'a str,
}

type R<T> = Result<T, ConfigError>;

impl Validator<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> Option<usize> {
        let before = self.text.get(..span.start)?;
        Some(before.bytes().filter(|&b| b == b'\n').count() + 1)
    }

    fn err<T: fmt::Debug>(
        &self,
        field: impl Into<String>,
        v: &S<T>,
        problem: Problem,
    ) -> ConfigError {
        ConfigError::Invalid {
            field: field.into(),
            value: Some(format!("{:?}", v.get_ref())),
            problem,
            line: self.line(v.span()),
        }
    }

    fn missing(
        &self,
        field: impl Into<String>,
        why: impl Into<String>,
        line: Option<usize>,
    ) -> ConfigError {
        ConfigError::Invalid {
            field: field.into(),
            value: None,
            problem: Problem::Missing { why: why.into() },
            line,
        }
    }

    fn config(&self, mut raw: RawConfig, registry: Option<&RegistryAssignment>) -> R<Config> {
        let cluster = self.cluster(&raw)?;
        if let ClusterSource::Etcd(_) = cluster {
            let source = raw
                .cluster
                .source
                .as_ref()
                .expect("etcd is never the default");
            let Some(a) = registry else {
                return Err(self.err("cluster.source", source, Problem::NeedsRegistry));
            };
            // The registry's values stand where `source = "etcd"` is written, so an
            // error about them points at that line.
            let span = source.span();
            let text = |v: String| Some(Spanned::new(span.clone(), v));
            let int = |v: i64| Some(Spanned::new(span.clone(), v));
            if let Some(node) = raw.node.as_mut() {
                node.pod_cidr = text(a.pod_cidr.to_string());
            }
            raw.dataplane.mode = text(a.mode.to_string());
            raw.vxlan.vni = int(a.vni.into());
            raw.vxlan.port = int(a.port.into());
        }
        let raw_node = raw
            .node
            .as_ref()
            .ok_or_else(|| self.missing("node", "every config needs a [node] section", None))?;
        let dataplane = self.dataplane(&raw.dataplane)?;
        let node = self.node(raw_node, dataplane.backend)?;
        let vxlan = self.vxlan(&raw.vxlan, dataplane.mode, &node)?;
        let tun = self.tun(&raw.tun, &node, dataplane.backend)?;
        let control = self.control(&raw.control)?;
        let metrics = self.metrics(&raw.metrics)?;
        let mut peers = Vec::with_capacity(raw.peers.len());
        let mut peer_srcs = Vec::with_capacity(raw.peers.len());
        for (i, p) in raw.peers.iter().enumerate() {
            let (peer, src) = self.peer(i, p, dataplane.mode)?;
            peers.push(peer);
            peer_srcs.push(src);
        }
        let config = Config {
            node,
            dataplane,
            vxlan,
            tun,
            control,
            metrics,
            peers,
            cluster,
        };
        self.cross_checks(&config, raw_node, &peer_srcs)?;
        Ok(config)
    }

    /// Rules that relate several fields: disjoint pod CIDRs, distinct nodes and VTEPs,
    /// underlay addresses outside pod CIDRs.
    fn cross_checks(&self, c: &Config, raw_node: &RawNode, srcs: &[PeerSrc<'_>]) -> R<()> {
        for (i, (peer, src)) in c.peers.iter().zip(srcs).enumerate() {
            let cidr_field = format!("peers[{i}].pod_cidr");
            if peer.pod_cidr == c.node.pod_cidr {
                return Err(self.err(cidr_field, src.pod_cidr, Problem::IsOwnPodCidr));
            }
            if overlaps(peer.pod_cidr, c.node.pod_cidr) {
                return Err(self.err(
                    cidr_field,
                    src.pod_cidr,
                    Problem::Overlaps {
                        other_field: "node.pod_cidr".into(),
                        other: c.node.pod_cidr,
                    },
                ));
            }
            if let Some(j) = c.peers[..i]
                .iter()
                .position(|p| overlaps(p.pod_cidr, peer.pod_cidr))
            {
                return Err(self.err(
                    cidr_field,
                    src.pod_cidr,
                    Problem::Overlaps {
                        other_field: format!("peers[{j}].pod_cidr"),
                        other: c.peers[j].pod_cidr,
                    },
                ));
            }

            let ip_field = format!("peers[{i}].node_ip");
            if peer.node_ip == c.node.ip {
                return Err(self.err(ip_field, src.node_ip, Problem::IsOwnNodeIp));
            }
            if let Some(j) = c.peers[..i].iter().position(|p| p.node_ip == peer.node_ip) {
                return Err(self.err(
                    ip_field,
                    src.node_ip,
                    Problem::Duplicate {
                        other_field: format!("peers[{j}].node_ip"),
                        why: "each node has one pod subnet",
                    },
                ));
            }

            if let (Some(mac), Some(mac_src)) = (peer.vtep_mac, src.vtep_mac) {
                let mac_field = format!("peers[{i}].vtep_mac");
                if Some(mac) == c.vxlan.vtep_mac {
                    return Err(self.err(
                        mac_field,
                        mac_src,
                        Problem::Duplicate {
                            other_field: "vxlan.vtep_mac".into(),
                            why: "every VTEP needs its own MAC",
                        },
                    ));
                }
                if let Some(j) = c.peers[..i].iter().position(|p| p.vtep_mac == Some(mac)) {
                    return Err(self.err(
                        mac_field,
                        mac_src,
                        Problem::Duplicate {
                            other_field: format!("peers[{j}].vtep_mac"),
                            why: "every VTEP needs its own MAC",
                        },
                    ));
                }
            }
        }

        // Underlay addresses inside a pod CIDR would be routed into the pod network.
        let mut underlay: Vec<(String, &S<String>, Ipv4Addr)> = Vec::new();
        if let Some(ip) = raw_node.ip.as_ref() {
            underlay.push(("node.ip".into(), ip, c.node.ip));
        }
        if let (Some(g), Some(gw)) = (raw_node.gateway.as_ref(), c.node.gateway) {
            underlay.push(("node.gateway".into(), g, gw));
        }
        for (i, (peer, src)) in c.peers.iter().zip(srcs).enumerate() {
            underlay.push((format!("peers[{i}].node_ip"), src.node_ip, peer.node_ip));
        }
        let pod_cidrs = std::iter::once(("node.pod_cidr".to_string(), c.node.pod_cidr)).chain(
            c.peers
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("peers[{i}].pod_cidr"), p.pod_cidr)),
        );
        for (cidr_field, cidr) in pod_cidrs {
            if let Some((field, v, _)) = underlay.iter().find(|(_, _, a)| cidr.contains(a)) {
                return Err(self.err(
                    field.clone(),
                    *v,
                    Problem::InsidePodCidr { cidr_field, cidr },
                ));
            }
        }
        Ok(())
    }

    // --- [cluster] ---

    /// `[cluster]`, and for an etcd node the check that the registry's keys are absent.
    fn cluster(&self, raw: &RawConfig) -> R<ClusterSource> {
        let c = &raw.cluster;
        let etcd = match c.source.as_ref() {
            None => false,
            Some(s) => match s.get_ref().as_str() {
                "static" => false,
                "etcd" => true,
                _ => {
                    return Err(self.err(
                        "cluster.source",
                        s,
                        Problem::UnknownChoice {
                            expected: &["static", "etcd"],
                        },
                    ))
                }
            },
        };
        let text_keys = [
            ("cluster.etcd_prefix", c.etcd_prefix.as_ref()),
            ("cluster.subnet_file", c.subnet_file.as_ref()),
            ("cluster.etcd_ca_file", c.etcd_ca_file.as_ref()),
            ("cluster.etcd_cert_file", c.etcd_cert_file.as_ref()),
            ("cluster.etcd_key_file", c.etcd_key_file.as_ref()),
        ];
        if !etcd {
            if let Some(list) = c.etcd_endpoints.as_ref() {
                return Err(self.err("cluster.etcd_endpoints", list, Problem::OnlyForEtcd));
            }
            if let Some((field, Some(v))) = text_keys.into_iter().find(|k| k.1.is_some()) {
                return Err(self.err(field, v, Problem::OnlyForEtcd));
            }
            return Ok(ClusterSource::Static);
        }

        // Keys the registry decides must not be in the file.
        let from_registry =
            |field: &str, span: std::ops::Range<usize>, value: String| ConfigError::Invalid {
                field: field.into(),
                value: Some(value),
                problem: Problem::FromRegistry,
                line: self.line(span),
            };
        if let Some(v) = raw.node.as_ref().and_then(|n| n.pod_cidr.as_ref()) {
            return Err(self.err("node.pod_cidr", v, Problem::FromRegistry));
        }
        if let Some(v) = raw.dataplane.mode.as_ref() {
            return Err(self.err("dataplane.mode", v, Problem::FromRegistry));
        }
        if let Some(v) = raw.vxlan.vni.as_ref() {
            return Err(self.err("vxlan.vni", v, Problem::FromRegistry));
        }
        if let Some(v) = raw.vxlan.port.as_ref() {
            return Err(self.err("vxlan.port", v, Problem::FromRegistry));
        }
        if let Some(p) = raw.peers.first() {
            let n = raw.peers.len();
            return Err(from_registry("peers", p.span(), format!("[{n} entries]")));
        }

        let endpoints = match c.etcd_endpoints.as_ref() {
            None => {
                return Err(self.missing(
                    "cluster.etcd_endpoints",
                    "give the etcd client URLs, like [\"http://10.168.0.3:2379\"]",
                    None,
                ))
            }
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(self.err(
                        "cluster.etcd_endpoints",
                        list,
                        Problem::Empty {
                            why: "give at least one etcd client URL",
                        },
                    ));
                }
                let mut out = Vec::new();
                for (i, e) in list.get_ref().iter().enumerate() {
                    let url = e.get_ref();
                    let rest = url
                        .strip_prefix("http://")
                        .or_else(|| url.strip_prefix("https://"));
                    if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                        return Err(self.err(
                            format!("cluster.etcd_endpoints[{i}]"),
                            e,
                            Problem::NotEndpointUrl,
                        ));
                    }
                    out.push(url.clone());
                }
                out
            }
        };
        let prefix = match c.etcd_prefix.as_ref() {
            None => DEFAULT_ETCD_PREFIX.to_string(),
            Some(p) => {
                let trimmed = p.get_ref().trim_end_matches('/');
                if !trimmed.starts_with('/') {
                    return Err(self.err(
                        "cluster.etcd_prefix",
                        p,
                        Problem::Empty {
                            why: "give an absolute key prefix, like \"/coreos.com/network\"",
                        },
                    ));
                }
                trimmed.to_string()
            }
        };
        let path = |field: &str, v: Option<&S<String>>| -> R<Option<PathBuf>> {
            match v {
                None => Ok(None),
                Some(s) if s.get_ref().is_empty() => {
                    Err(self.err(field, s, Problem::Empty { why: "give a path" }))
                }
                Some(s) => Ok(Some(PathBuf::from(s.get_ref()))),
            }
        };
        let subnet_file = path("cluster.subnet_file", c.subnet_file.as_ref())?
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SUBNET_FILE));
        let ca_file = path("cluster.etcd_ca_file", c.etcd_ca_file.as_ref())?;
        let cert_file = path("cluster.etcd_cert_file", c.etcd_cert_file.as_ref())?;
        let key_file = path("cluster.etcd_key_file", c.etcd_key_file.as_ref())?;
        match (c.etcd_cert_file.as_ref(), c.etcd_key_file.as_ref()) {
            (Some(cert), None) => {
                return Err(self.err(
                    "cluster.etcd_cert_file",
                    cert,
                    Problem::NeedsBoth {
                        other_field: "cluster.etcd_key_file",
                    },
                ))
            }
            (None, Some(key)) => {
                return Err(self.err(
                    "cluster.etcd_key_file",
                    key,
                    Problem::NeedsBoth {
                        other_field: "cluster.etcd_cert_file",
                    },
                ))
            }
            _ => {}
        }
        Ok(ClusterSource::Etcd(EtcdSettings {
            endpoints,
            prefix,
            subnet_file,
            ca_file,
            cert_file,
            key_file,
        }))
    }

    // --- [node] ---

    fn node(&self, raw: &RawNode, backend: Backend) -> R<Node> {
        let ip = raw.ip.as_ref().ok_or_else(|| {
            self.missing(
                "node.ip",
                "give this node's underlay address, like \"10.168.0.2/24\"",
                None,
            )
        })?;
        let (addr, subnet) = self.node_ip(ip)?;
        let pod_cidr = raw.pod_cidr.as_ref().ok_or_else(|| {
            self.missing("node.pod_cidr", "give the pod subnet of this node", None)
        })?;
        let pod_cidr = self.cidr("node.pod_cidr", pod_cidr)?;
        let uplink = raw
            .uplink
            .as_ref()
            .ok_or_else(|| self.missing("node.uplink", "give the underlay interface", None))?;
        self.ifname("node.uplink", uplink)?;
        let mut pod_interfaces: Vec<&S<String>> = Vec::new();
        if let Some(list) = raw.pod_interfaces.as_ref() {
            for (i, name) in list.get_ref().iter().enumerate() {
                let field = format!("node.pod_interfaces[{i}]");
                self.ifname(&field, name)?;
                if name.get_ref() == uplink.get_ref() {
                    return Err(self.err(field, name, Problem::SameAsUplink));
                }
                if let Some(j) = pod_interfaces
                    .iter()
                    .position(|n| n.get_ref() == name.get_ref())
                {
                    return Err(self.err(
                        field,
                        name,
                        Problem::Duplicate {
                            other_field: format!("node.pod_interfaces[{j}]"),
                            why: "list each interface once",
                        },
                    ));
                }
                pod_interfaces.push(name);
            }
        }
        if backend.uses_xdp() && pod_interfaces.is_empty() {
            let why = "the afxdp and xdp backends need at least one pod-facing interface";
            return Err(match raw.pod_interfaces.as_ref() {
                Some(list) => ConfigError::Invalid {
                    field: "node.pod_interfaces".into(),
                    value: Some("[]".into()),
                    problem: Problem::Empty { why },
                    line: self.line(list.span()),
                },
                None => self.missing("node.pod_interfaces", why, None),
            });
        }
        let gateway = match raw.gateway.as_ref() {
            Some(g) => {
                let gw = self.host_addr("node.gateway", g)?;
                if gw == addr {
                    return Err(self.err(
                        "node.gateway",
                        g,
                        Problem::Duplicate {
                            other_field: "node.ip".into(),
                            why: "the gateway is the underlay router, not this node",
                        },
                    ));
                }
                Some(gw)
            }
            None => None,
        };
        Ok(Node {
            ip: addr,
            subnet,
            pod_cidr,
            uplink: uplink.get_ref().clone(),
            pod_interfaces: pod_interfaces
                .into_iter()
                .map(|n| n.get_ref().clone())
                .collect(),
            gateway,
        })
    }

    /// `node.ip`: an address, or an interface address with its prefix length.
    fn node_ip(&self, v: &S<String>) -> R<(Ipv4Addr, Option<Ipv4Net>)> {
        let s = v.get_ref().trim();
        if s.contains('/') {
            let net = Ipv4Net::from_str(s)
                .map_err(|_| self.err("node.ip", v, Problem::NotIpv4AddrOrInterface))?;
            self.check_host_addr("node.ip", v, net.addr())?;
            // A /31 or /32 has no network or broadcast address to collide with.
            if net.prefix_len() < 31 {
                if net.addr() == net.network() {
                    return Err(self.err(
                        "node.ip",
                        v,
                        Problem::NotHostAddress {
                            why: "it is the network address of its subnet",
                        },
                    ));
                }
                if net.addr() == net.broadcast() {
                    return Err(self.err(
                        "node.ip",
                        v,
                        Problem::NotHostAddress {
                            why: "it is the broadcast address of its subnet",
                        },
                    ));
                }
            }
            Ok((net.addr(), Some(net.trunc())))
        } else {
            let addr = Ipv4Addr::from_str(s)
                .map_err(|_| self.err("node.ip", v, Problem::NotIpv4AddrOrInterface))?;
            self.check_host_addr("node.ip", v, addr)?;
            Ok((addr, None))
        }
    }

    fn host_addr(&self, field: &str, v: &S<String>) -> R<Ipv4Addr> {
        let addr = Ipv4Addr::from_str(v.get_ref().trim())
            .map_err(|_| self.err(field, v, Problem::NotIpv4Addr))?;
        self.check_host_addr(field, v, addr)?;
        Ok(addr)
    }

    fn check_host_addr(&self, field: &str, v: &S<String>, addr: Ipv4Addr) -> R<()> {
        let why = if addr.is_unspecified() {
            "it is the unspecified address"
        } else if addr.is_broadcast() {
            "it is the broadcast address"
        } else if addr.is_multicast() {
            "it is a multicast address"
        } else if addr.is_loopback() {
            "it is a loopback address"
        } else {
            return Ok(());
        };
        Err(self.err(field, v, Problem::NotHostAddress { why }))
    }

    fn cidr(&self, field: &str, v: &S<String>) -> R<Ipv4Net> {
        let s = v.get_ref().trim();
        if !s.contains('/') {
            return Err(self.err(field, v, Problem::NotCidr));
        }
        let net = Ipv4Net::from_str(s).map_err(|_| self.err(field, v, Problem::NotCidr))?;
        if net != net.trunc() {
            return Err(self.err(
                field,
                v,
                Problem::HostBitsSet {
                    network: net.trunc(),
                },
            ));
        }
        Ok(net)
    }

    fn ifname(&self, field: &str, v: &S<String>) -> R<()> {
        let name = v.get_ref();
        if name.is_empty() {
            return Err(self.err(
                field,
                v,
                Problem::Empty {
                    why: "give an interface name",
                },
            ));
        }
        if name.len() > MAX_IFNAME_LEN {
            return Err(self.err(field, v, Problem::NameTooLong { len: name.len() }));
        }
        // The kernel's dev_valid_name(): no '/', ':' or whitespace, not "." or "..".
        let why = if name == "." || name == ".." {
            "\".\" and \"..\" are reserved"
        } else if name.contains('/') {
            "it contains '/'"
        } else if name.contains(':') {
            "it contains ':'"
        } else if name.chars().any(char::is_whitespace) {
            "it contains whitespace"
        } else if name.contains('\0') {
            "it contains a NUL byte"
        } else {
            return Ok(());
        };
        Err(self.err(field, v, Problem::BadInterfaceName { why }))
    }

    fn mac(&self, field: &str, v: &S<String>) -> R<MacAddr> {
        let mac = MacAddr::from_str(v.get_ref().trim())
            .map_err(|_| self.err(field, v, Problem::NotMac))?;
        if mac == MacAddr::ZERO {
            return Err(self.err(field, v, Problem::ZeroMac));
        }
        if !mac.is_unicast() {
            return Err(self.err(field, v, Problem::MulticastMac));
        }
        Ok(mac)
    }

    // --- [dataplane] ---

    fn dataplane(&self, raw: &RawDataplane) -> R<Dataplane> {
        let d = Dataplane::default();
        let backend = self.choice("dataplane.backend", raw.backend.as_ref(), d.backend)?;
        let mode = self.choice("dataplane.mode", raw.mode.as_ref(), d.mode)?;
        let xdp_mode = self.choice("dataplane.xdp_mode", raw.xdp_mode.as_ref(), d.xdp_mode)?;

        let cores = match raw.cores.as_ref() {
            None => d.cores,
            Some(list) if list.get_ref().is_empty() => {
                return Err(ConfigError::Invalid {
                    field: "dataplane.cores".into(),
                    value: Some("[]".into()),
                    problem: Problem::Empty {
                        why: "list at least one CPU to run a worker on",
                    },
                    line: self.line(list.span()),
                })
            }
            Some(list) => {
                let mut cores = Vec::new();
                for (i, c) in list.get_ref().iter().enumerate() {
                    let field = format!("dataplane.cores[{i}]");
                    let core = self.int(&field, c, 0, MAX_CORES as i64 - 1, Some("a CPU number"))?
                        as usize;
                    if let Some(j) = cores.iter().position(|&x| x == core) {
                        return Err(self.err(
                            field,
                            c,
                            Problem::Duplicate {
                                other_field: format!("dataplane.cores[{j}]"),
                                why: "one worker per CPU",
                            },
                        ));
                    }
                    cores.push(core);
                }
                cores
            }
        };
        let queues = self.opt_int(
            "dataplane.queues",
            raw.queues.as_ref(),
            d.queues.into(),
            1,
            u16::MAX.into(),
            None,
        )? as u16;
        let batch_size = self.opt_int(
            "dataplane.batch_size",
            raw.batch_size.as_ref(),
            d.batch_size as i64,
            1,
            MAX_BATCH_SIZE as i64,
            None,
        )? as usize;
        let rx_ring_size = self.ring(
            "dataplane.rx_ring_size",
            raw.rx_ring_size.as_ref(),
            d.rx_ring_size,
        )?;
        let tx_ring_size = self.ring(
            "dataplane.tx_ring_size",
            raw.tx_ring_size.as_ref(),
            d.tx_ring_size,
        )?;
        let fill_ring_size = self.ring(
            "dataplane.fill_ring_size",
            raw.fill_ring_size.as_ref(),
            d.fill_ring_size,
        )?;
        let comp_ring_size = self.ring(
            "dataplane.comp_ring_size",
            raw.comp_ring_size.as_ref(),
            d.comp_ring_size,
        )?;
        let frame_count = self.opt_int(
            "dataplane.frame_count",
            raw.frame_count.as_ref(),
            d.frame_count.into(),
            batch_size as i64,
            u32::MAX.into(),
            Some("at least one batch of frames"),
        )? as u32;
        let busy_poll = raw.busy_poll.unwrap_or(d.busy_poll);
        let worker_priority = match raw.worker_priority.as_ref() {
            // Real time only where it was measured to help and cannot starve the kernel:
            // AF_XDP workers that sleep in poll() whenever their rings are empty.
            None if backend == Backend::AfXdp && !busy_poll => d.worker_priority,
            None => 0,
            Some(v) => {
                let field = "dataplane.worker_priority";
                let p = self.int(
                    field,
                    v,
                    0,
                    MAX_WORKER_PRIORITY.into(),
                    Some("0: normal scheduling; 1..=99: SCHED_FIFO"),
                )? as u8;
                if p > 0 && busy_poll {
                    return Err(self.err(
                        field,
                        v,
                        Problem::RealTimeSpin {
                            why: "dataplane.busy_poll = true spins the worker, which at a \
                                  real-time priority starves the kernel's receive processing \
                                  on its core",
                        },
                    ));
                }
                if p > 0 && backend != Backend::AfXdp {
                    return Err(self.err(
                        field,
                        v,
                        Problem::RealTimeSpin {
                            why: "only the afxdp backend's workers run real time (they \
                                  sleep in poll() whenever their rings are empty); other \
                                  backends' are not measured that way",
                        },
                    ));
                }
                p
            }
        };
        Ok(Dataplane {
            backend,
            mode,
            cores,
            queues,
            xdp_mode,
            batch_size,
            rx_ring_size,
            tx_ring_size,
            fill_ring_size,
            comp_ring_size,
            frame_count,
            busy_poll,
            worker_priority,
        })
    }

    fn choice<T>(&self, field: &str, v: Option<&S<String>>, default: T) -> R<T>
    where
        T: FromStr + ChoiceNames,
    {
        match v {
            None => Ok(default),
            Some(v) => T::from_str(v.get_ref()).map_err(|_| {
                self.err(
                    field,
                    v,
                    Problem::UnknownChoice {
                        expected: T::CHOICES,
                    },
                )
            }),
        }
    }

    fn int(
        &self,
        field: &str,
        v: &S<i64>,
        min: i64,
        max: i64,
        why: Option<&'static str>,
    ) -> R<i64> {
        let n = *v.get_ref();
        if n < min || n > max {
            return Err(self.err(field, v, Problem::OutOfRange { min, max, why }));
        }
        Ok(n)
    }

    fn opt_int(
        &self,
        field: &str,
        v: Option<&S<i64>>,
        default: i64,
        min: i64,
        max: i64,
        why: Option<&'static str>,
    ) -> R<i64> {
        v.map_or(Ok(default), |v| self.int(field, v, min, max, why))
    }

    fn ring(&self, field: &str, v: Option<&S<i64>>, default: u32) -> R<u32> {
        let Some(v) = v else { return Ok(default) };
        let n = self.int(field, v, 1, 1 << 31, Some("a power of two"))?;
        if !(n as u64).is_power_of_two() {
            return Err(self.err(field, v, Problem::NotPowerOfTwo));
        }
        Ok(n as u32)
    }

    // --- [vxlan], [tun], [control] ---

    fn vxlan(&self, raw: &RawVxlan, mode: Mode, node: &Node) -> R<Vxlan> {
        let d = Vxlan::default();
        let vni = self.opt_int(
            "vxlan.vni",
            raw.vni.as_ref(),
            d.vni.into(),
            0,
            MAX_VNI.into(),
            Some("24 bits"),
        )? as u32;
        let port = self.opt_int(
            "vxlan.port",
            raw.port.as_ref(),
            d.port.into(),
            1,
            u16::MAX.into(),
            Some("a UDP port"),
        )? as u16;
        let vtep_mac = match raw.vtep_mac.as_ref() {
            Some(m) => Some(self.mac("vxlan.vtep_mac", m)?),
            None if mode.uses_vxlan() => {
                return Err(self.missing(
                    "vxlan.vtep_mac",
                    format!("this node's VTEP MAC is required when dataplane.mode = \"{mode}\""),
                    None,
                ))
            }
            None => None,
        };
        let device = match raw.device.as_ref() {
            Some(name) => {
                self.ifname("vxlan.device", name)?;
                if name.get_ref() == &node.uplink {
                    return Err(self.err("vxlan.device", name, Problem::SameAsUplink));
                }
                name.get_ref().clone()
            }
            None => d.device,
        };
        Ok(Vxlan {
            vni,
            port,
            vtep_mac,
            device,
        })
    }

    fn tun(&self, raw: &RawTun, node: &Node, backend: Backend) -> R<Tun> {
        let d = Tun::default();
        let offload = raw.offload.unwrap_or(d.offload);
        let Some(name) = raw.name.as_ref() else {
            return Ok(Tun { offload, ..d });
        };
        self.ifname("tun.name", name)?;
        if backend == Backend::Tun && name.get_ref() == &node.uplink {
            return Err(self.err("tun.name", name, Problem::SameAsUplink));
        }
        Ok(Tun {
            name: name.get_ref().clone(),
            offload,
        })
    }

    fn metrics(&self, raw: &RawMetrics) -> R<Metrics> {
        let listen = match raw.listen.as_ref() {
            None => None,
            Some(v) => Some(
                SocketAddr::from_str(v.get_ref().trim())
                    .map_err(|_| self.err("metrics.listen", v, Problem::NotSocketAddr))?,
            ),
        };
        Ok(Metrics { listen })
    }

    fn control(&self, raw: &RawControl) -> R<Control> {
        let d = Control::default();
        let socket = match raw.socket.as_ref() {
            None => d.socket,
            Some(s) => {
                if s.get_ref().is_empty() {
                    return Err(self.err(
                        "control.socket",
                        s,
                        Problem::Empty { why: "give a path" },
                    ));
                }
                if s.get_ref().len() > MAX_SOCKET_PATH_LEN {
                    return Err(self.err(
                        "control.socket",
                        s,
                        Problem::SocketPathTooLong {
                            len: s.get_ref().len(),
                        },
                    ));
                }
                PathBuf::from(s.get_ref())
            }
        };
        let bpf_pin_dir = match raw.bpf_pin_dir.as_ref() {
            None => d.bpf_pin_dir,
            Some(s) if s.get_ref().is_empty() => {
                return Err(self.err(
                    "control.bpf_pin_dir",
                    s,
                    Problem::Empty {
                        why: "give a directory",
                    },
                ))
            }
            Some(s) => PathBuf::from(s.get_ref()),
        };
        Ok(Control {
            socket,
            bpf_pin_dir,
        })
    }

    // --- [[peers]] ---

    fn peer<'r>(&self, i: usize, raw: &'r S<RawPeer>, mode: Mode) -> R<(Peer, PeerSrc<'r>)> {
        let line = self.line(raw.span());
        let raw = raw.get_ref();
        let pod_cidr = raw.pod_cidr.as_ref().ok_or_else(|| {
            self.missing(
                format!("peers[{i}].pod_cidr"),
                "give the peer node's pod subnet",
                line,
            )
        })?;
        let node_ip = raw.node_ip.as_ref().ok_or_else(|| {
            self.missing(
                format!("peers[{i}].node_ip"),
                "give the peer node's underlay address",
                line,
            )
        })?;
        let peer_cidr = self.cidr(&format!("peers[{i}].pod_cidr"), pod_cidr)?;
        let peer_ip = self.host_addr(&format!("peers[{i}].node_ip"), node_ip)?;
        let vtep_mac = match raw.vtep_mac.as_ref() {
            Some(m) => Some(self.mac(&format!("peers[{i}].vtep_mac"), m)?),
            None if mode.uses_vxlan() => {
                return Err(self.missing(
                    format!("peers[{i}].vtep_mac"),
                    format!("the peer's VTEP MAC is required when dataplane.mode = \"{mode}\""),
                    line,
                ))
            }
            None => None,
        };
        let peer = Peer {
            pod_cidr: peer_cidr,
            node_ip: peer_ip,
            vtep_mac,
        };
        let src = PeerSrc {
            pod_cidr,
            node_ip,
            vtep_mac: raw.vtep_mac.as_ref(),
        };
        Ok((peer, src))
    }
}

/// The raw values a validated peer came from, for errors found by later checks.
struct PeerSrc<'r> {
    pod_cidr: &'r S<String>,
    node_ip: &'r S<String>,
    vtep_mac: Option<&'r S<String>>,
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Accepted spellings of a text-valued setting, for [`Problem::UnknownChoice`].
trait ChoiceNames {
    const CHOICES: &'static [&'static str];
}
impl ChoiceNames for Backend {
    const CHOICES: &'static [&'static str] = Backend::NAMES;
}
impl ChoiceNames for Mode {
    const CHOICES: &'static [&'static str] = Mode::NAMES;
}
impl ChoiceNames for XdpMode {
    const CHOICES: &'static [&'static str] = XdpMode::NAMES;
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[node]
ip = "10.168.0.2/24"
pod_cidr = "10.244.0.0/24"
uplink = "nodeA-ul"
pod_interfaces = ["nodeA-pod"]

[dataplane]
mode = "vxlan"

[vxlan]
vtep_mac = "0e:00:00:00:00:0a"

[[peers]]
pod_cidr = "10.244.1.0/24"
node_ip = "10.168.0.3"
vtep_mac = "0e:00:00:00:00:0b"

[[peers]]
pod_cidr = "10.244.2.0/24"
node_ip = "10.168.0.4"
vtep_mac = "0e:00:00:00:00:0c"
"#;

    /// BASE with each `(old, new)` replaced once; `old` must occur.
    #[track_caller]
    fn edit(edits: &[(&str, &str)]) -> String {
        let mut text = BASE.to_string();
        for (old, new) in edits {
            assert!(text.contains(old), "{old:?} not in the base config");
            text = text.replacen(old, new, 1);
        }
        text
    }

    /// Asserts that `text` is rejected for `field` and that the message names the field
    /// and shows `value`; returns the problem for further checks.
    #[track_caller]
    fn rejects(text: &str, field: &str, value: &str) -> Problem {
        let err = Config::from_toml_str(text).expect_err("config was accepted");
        let msg = err.to_string();
        assert_eq!(err.field(), Some(field), "wrong field in: {msg}");
        assert!(msg.starts_with(&format!("{field}: ")), "{msg}");
        assert!(msg.contains(value), "{value} not in: {msg}");
        err.problem().expect("an Invalid error").clone()
    }

    #[track_caller]
    fn toml_error(text: &str) -> String {
        match Config::from_toml_str(text) {
            Err(e @ ConfigError::Toml(_)) => e.to_string(),
            other => panic!("expected a TOML error, got {other:?}"),
        }
    }

    #[test]
    fn base_config_is_valid() {
        let c = Config::from_toml_str(BASE).unwrap();
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[1].vtep_mac, Some(MacAddr([0x0e, 0, 0, 0, 0, 0x0c])));
    }

    #[test]
    fn example_file_parses() {
        let c = Config::from_toml_str(include_str!("../podfwd.example.toml")).unwrap();
        assert_eq!(c.node.ip, Ipv4Addr::new(10, 168, 0, 2));
        assert_eq!(c.node.subnet, Some("10.168.0.0/24".parse().unwrap()));
        assert_eq!(c.node.uplink, "nodeA-ul");
        assert_eq!(c.node.pod_interfaces, ["nodeA-pod"]);
        assert_eq!(c.vxlan.vtep_mac, Some("0e:00:00:00:00:0a".parse().unwrap()));
        assert_eq!(
            c.peers,
            [Peer {
                pod_cidr: "10.244.1.0/24".parse().unwrap(),
                node_ip: Ipv4Addr::new(10, 168, 0, 3),
                vtep_mac: Some("0e:00:00:00:00:0b".parse().unwrap()),
            }]
        );
    }

    #[test]
    fn example_file_documents_every_key() {
        let example = include_str!("../podfwd.example.toml");
        let keys = [
            "[node]",
            "ip",
            "pod_cidr",
            "uplink",
            "pod_interfaces",
            "gateway",
            "[dataplane]",
            "backend",
            "mode",
            "cores",
            "queues",
            "xdp_mode",
            "batch_size",
            "rx_ring_size",
            "tx_ring_size",
            "fill_ring_size",
            "comp_ring_size",
            "frame_count",
            "busy_poll",
            "worker_priority",
            "[vxlan]",
            "vni",
            "port",
            "vtep_mac",
            "[tun]",
            "name",
            "offload",
            "[control]",
            "socket",
            "bpf_pin_dir",
            "[metrics]",
            "listen",
            "[cluster]",
            "source",
            "etcd_endpoints",
            "etcd_prefix",
            "subnet_file",
            "etcd_ca_file",
            "etcd_cert_file",
            "etcd_key_file",
            "[[peers]]",
            "node_ip",
        ];
        for key in keys {
            let documented = example.lines().collect::<Vec<_>>().windows(2).any(|w| {
                let line = w[1].trim_start_matches("# ");
                w[0].starts_with('#') && (line.starts_with(&format!("{key} =")) || line == key)
                    || key.starts_with('[') && w[1] == key
            });
            assert!(
                documented,
                "{key} is not set with a comment above it in the example"
            );
        }
    }

    #[test]
    fn omitted_keys_get_the_documented_defaults() {
        let c = Config::from_toml_str(
            "[node]\nip = \"10.168.0.2\"\npod_cidr = \"10.244.0.0/24\"\nuplink = \"eth0\"\n\
             pod_interfaces = [\"veth0\"]\n[vxlan]\nvtep_mac = \"0e:00:00:00:00:0a\"\n",
        )
        .unwrap();
        assert_eq!(c.node.subnet, None);
        assert_eq!(c.node.gateway, None);
        assert_eq!(c.dataplane, Dataplane::default());
        assert_eq!(c.dataplane.backend, Backend::AfXdp);
        assert_eq!(c.dataplane.mode, Mode::Vxlan);
        assert_eq!(c.dataplane.cores, [0]);
        assert_eq!(c.dataplane.queues, 1);
        assert_eq!(c.dataplane.xdp_mode, XdpMode::Native);
        assert_eq!(c.dataplane.batch_size, 64);
        assert_eq!(c.dataplane.rx_ring_size, 2048);
        assert_eq!(c.dataplane.frame_count, 4096);
        assert!(!c.dataplane.busy_poll);
        assert_eq!((c.vxlan.vni, c.vxlan.port), (1, 8472));
        assert_eq!(c.tun.name, "podfwd0");
        assert_eq!(c.control.socket, Path::new("/run/podfwd/podfwd.sock"));
        assert_eq!(c.control.bpf_pin_dir, Path::new("/sys/fs/bpf/podfwd"));
        assert!(c.peers.is_empty());
    }

    #[test]
    fn every_knob_is_read() {
        let c = Config::from_toml_str(&edit(&[
            (
                "uplink = \"nodeA-ul\"\n",
                "uplink = \"nodeA-ul\"\ngateway = \"10.168.0.1\"\n",
            ),
            (
                "mode = \"vxlan\"\n",
                "mode = \"auto\"\nbackend = \"afxdp\"\ncores = [1, 0]\nqueues = 2\n\
                 xdp_mode = \"generic\"\nbatch_size = 32\nrx_ring_size = 512\n\
                 tx_ring_size = 1024\nfill_ring_size = 4096\ncomp_ring_size = 256\n\
                 frame_count = 8192\nbusy_poll = true\n",
            ),
            ("[vxlan]\n", "[vxlan]\nvni = 4096\nport = 4789\n"),
            (
                "[[peers]]",
                "[tun]\nname = \"tun7\"\n[control]\nsocket = \"/run/a.sock\"\n\
                 bpf_pin_dir = \"/sys/fs/bpf/a\"\n[[peers]]",
            ),
        ]))
        .unwrap();
        let d = &c.dataplane;
        assert_eq!(c.node.gateway, Some(Ipv4Addr::new(10, 168, 0, 1)));
        assert_eq!(
            (d.mode, d.cores.as_slice(), d.queues),
            (Mode::Auto, &[1, 0][..], 2)
        );
        assert_eq!(
            (d.xdp_mode, d.batch_size, d.busy_poll),
            (XdpMode::Generic, 32, true)
        );
        assert_eq!(
            (
                d.rx_ring_size,
                d.tx_ring_size,
                d.fill_ring_size,
                d.comp_ring_size,
                d.frame_count
            ),
            (512, 1024, 4096, 256, 8192)
        );
        assert_eq!((c.vxlan.vni, c.vxlan.port), (4096, 4789));
        assert_eq!(c.tun.name, "tun7");
        assert_eq!(c.control.socket, Path::new("/run/a.sock"));
        assert_eq!(c.control.bpf_pin_dir, Path::new("/sys/fs/bpf/a"));
    }

    // --- TOML-level errors ---

    #[test]
    fn unknown_key_is_rejected_with_its_line_and_column() {
        let msg = toml_error(&edit(&[("[vxlan]\n", "[vxlan]\nvnid = 7\n")]));
        assert!(msg.contains("unknown field `vnid`"), "{msg}");
        assert!(msg.contains("line 12, column 1"), "{msg}");
    }

    #[test]
    fn unknown_key_in_a_peer_is_rejected() {
        let msg = toml_error(&edit(&[(
            "node_ip = \"10.168.0.4\"",
            "nodeip = \"10.168.0.4\"",
        )]));
        assert!(msg.contains("unknown field `nodeip`"), "{msg}");
    }

    #[test]
    fn unknown_section_is_rejected() {
        let msg = toml_error(&format!("{BASE}\n[flannel]\nbackend = \"vxlan\"\n"));
        assert!(msg.contains("unknown field `flannel`"), "{msg}");
    }

    #[test]
    fn value_of_the_wrong_type_is_rejected_with_its_line() {
        let msg = toml_error(&edit(&[(
            "mode = \"vxlan\"\n",
            "mode = \"vxlan\"\nqueues = \"two\"\n",
        )]));
        assert!(msg.contains("line 10"), "{msg}");
        assert!(msg.contains("queues"), "{msg}");
    }

    #[test]
    fn text_that_is_not_toml_is_rejected() {
        let msg = toml_error("[node\nip = ");
        assert!(msg.contains("TOML parse error at line 1"), "{msg}");
    }

    // --- [node] ---

    #[test]
    fn missing_node_section_is_rejected() {
        let p = rejects("[dataplane]\nmode = \"host-gw\"\n", "node", "[node]");
        assert!(matches!(p, Problem::Missing { .. }));
    }

    #[test]
    fn missing_node_ip_is_rejected() {
        let p = rejects(
            &edit(&[("ip = \"10.168.0.2/24\"\n", "")]),
            "node.ip",
            "missing",
        );
        assert!(matches!(p, Problem::Missing { .. }));
    }

    #[test]
    fn node_ip_that_is_not_an_address_is_rejected() {
        let p = rejects(
            &edit(&[("\"10.168.0.2/24\"", "\"10.168.0.256\"")]),
            "node.ip",
            "\"10.168.0.256\"",
        );
        assert_eq!(p, Problem::NotIpv4AddrOrInterface);
        let p = rejects(
            &edit(&[("\"10.168.0.2/24\"", "\"10.168.0.2/33\"")]),
            "node.ip",
            "\"10.168.0.2/33\"",
        );
        assert_eq!(p, Problem::NotIpv4AddrOrInterface);
    }

    #[test]
    fn node_ip_with_a_prefix_length_gives_the_uplink_subnet() {
        let c =
            Config::from_toml_str(&edit(&[("\"10.168.0.2/24\"", "\"10.168.0.2/16\"")])).unwrap();
        assert_eq!(c.node.ip, Ipv4Addr::new(10, 168, 0, 2));
        assert_eq!(c.node.subnet, Some("10.168.0.0/16".parse().unwrap()));
    }

    #[test]
    fn node_ip_without_a_prefix_length_leaves_the_subnet_to_the_kernel() {
        let c = Config::from_toml_str(&edit(&[("\"10.168.0.2/24\"", "\"10.168.0.2\"")])).unwrap();
        assert_eq!(c.node.subnet, None);
    }

    #[test]
    fn node_ip_that_is_the_network_address_of_its_subnet_is_rejected() {
        let p = rejects(
            &edit(&[("\"10.168.0.2/24\"", "\"10.168.0.0/24\"")]),
            "node.ip",
            "\"10.168.0.0/24\"",
        );
        assert!(matches!(p, Problem::NotHostAddress { why } if why.contains("network address")));
    }

    #[test]
    fn unspecified_or_multicast_node_ip_is_rejected() {
        for bad in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "127.0.0.1"] {
            let p = rejects(
                &edit(&[("\"10.168.0.2/24\"", &format!("\"{bad}\""))]),
                "node.ip",
                bad,
            );
            assert!(matches!(p, Problem::NotHostAddress { .. }), "{bad}");
        }
    }

    #[test]
    fn pod_cidr_that_is_not_a_network_is_rejected() {
        let p = rejects(
            &edit(&[("\"10.244.0.0/24\"", "\"10.244.0/24\"")]),
            "node.pod_cidr",
            "\"10.244.0/24\"",
        );
        assert_eq!(p, Problem::NotCidr);
    }

    #[test]
    fn pod_cidr_without_a_prefix_length_is_rejected() {
        let p = rejects(
            &edit(&[("\"10.244.0.0/24\"", "\"10.244.0.0\"")]),
            "node.pod_cidr",
            "\"10.244.0.0\"",
        );
        assert_eq!(p, Problem::NotCidr);
    }

    #[test]
    fn pod_cidr_with_host_bits_set_names_the_network_meant() {
        let text = edit(&[("\"10.244.1.0/24\"", "\"10.244.1.7/24\"")]);
        let p = rejects(&text, "peers[0].pod_cidr", "\"10.244.1.7/24\"");
        assert_eq!(
            p,
            Problem::HostBitsSet {
                network: "10.244.1.0/24".parse().unwrap()
            }
        );
        let msg = Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(msg.contains("did you mean \"10.244.1.0/24\""), "{msg}");
    }

    #[test]
    fn empty_uplink_name_is_rejected() {
        let p = rejects(
            &edit(&[("uplink = \"nodeA-ul\"", "uplink = \"\"")]),
            "node.uplink",
            "\"\"",
        );
        assert!(matches!(p, Problem::Empty { .. }));
    }

    #[test]
    fn missing_uplink_is_rejected() {
        let p = rejects(
            &edit(&[("uplink = \"nodeA-ul\"\n", "")]),
            "node.uplink",
            "missing",
        );
        assert!(matches!(p, Problem::Missing { .. }));
    }

    #[test]
    fn interface_name_longer_than_ifnamsiz_is_rejected() {
        let p = rejects(
            &edit(&[("\"nodeA-ul\"", "\"a-sixteen-bytes!\"")]),
            "node.uplink",
            "\"a-sixteen-bytes!\"",
        );
        assert_eq!(p, Problem::NameTooLong { len: 16 });
        let p = rejects(
            &edit(&[("[\"nodeA-pod\"]", "[\"nodeA-pod\", \"pod-interface-17b\"]")]),
            "node.pod_interfaces[1]",
            "\"pod-interface-17b\"",
        );
        assert_eq!(p, Problem::NameTooLong { len: 17 });
        // 15 bytes is the limit and fits.
        Config::from_toml_str(&edit(&[("\"nodeA-ul\"", "\"fifteen-bytes-x\"")])).unwrap();
    }

    #[test]
    fn interface_name_the_kernel_refuses_is_rejected() {
        for bad in ["a/b", "a b", "eth0:1", ".."] {
            let p = rejects(
                &edit(&[("\"nodeA-pod\"", &format!("{bad:?}"))]),
                "node.pod_interfaces[0]",
                bad,
            );
            assert!(matches!(p, Problem::BadInterfaceName { .. }), "{bad}");
        }
    }

    #[test]
    fn empty_pod_interfaces_with_the_afxdp_backend_is_rejected() {
        let p = rejects(
            &edit(&[("[\"nodeA-pod\"]", "[]")]),
            "node.pod_interfaces",
            "[]",
        );
        assert!(matches!(p, Problem::Empty { why } if why.contains("afxdp")));
    }

    #[test]
    fn missing_pod_interfaces_with_the_afxdp_backend_is_rejected() {
        let p = rejects(
            &edit(&[("pod_interfaces = [\"nodeA-pod\"]\n", "")]),
            "node.pod_interfaces",
            "missing",
        );
        assert!(matches!(p, Problem::Missing { why } if why.contains("afxdp")));
    }

    #[test]
    fn tun_backend_needs_no_pod_interfaces() {
        let c = Config::from_toml_str(&edit(&[
            ("pod_interfaces = [\"nodeA-pod\"]\n", ""),
            ("mode = \"vxlan\"", "mode = \"vxlan\"\nbackend = \"tun\""),
        ]))
        .unwrap();
        assert!(c.node.pod_interfaces.is_empty());
        assert_eq!(c.dataplane.backend, Backend::Tun);
    }

    #[test]
    fn pod_interface_equal_to_the_uplink_is_rejected() {
        let p = rejects(
            &edit(&[("[\"nodeA-pod\"]", "[\"nodeA-pod\", \"nodeA-ul\"]")]),
            "node.pod_interfaces[1]",
            "\"nodeA-ul\"",
        );
        assert_eq!(p, Problem::SameAsUplink);
    }

    #[test]
    fn pod_interface_listed_twice_is_rejected() {
        let p = rejects(
            &edit(&[("[\"nodeA-pod\"]", "[\"nodeA-pod\", \"nodeA-pod\"]")]),
            "node.pod_interfaces[1]",
            "node.pod_interfaces[0]",
        );
        assert!(matches!(p, Problem::Duplicate { .. }));
    }

    #[test]
    fn gateway_that_is_not_an_address_is_rejected() {
        let text = edit(&[(
            "uplink = \"nodeA-ul\"\n",
            "uplink = \"nodeA-ul\"\ngateway = \"router\"\n",
        )]);
        assert_eq!(
            rejects(&text, "node.gateway", "\"router\""),
            Problem::NotIpv4Addr
        );
    }

    #[test]
    fn gateway_equal_to_the_node_ip_is_rejected() {
        let text = edit(&[(
            "uplink = \"nodeA-ul\"\n",
            "uplink = \"nodeA-ul\"\ngateway = \"10.168.0.2\"\n",
        )]);
        let p = rejects(&text, "node.gateway", "\"10.168.0.2\"");
        assert!(matches!(p, Problem::Duplicate { other_field, .. } if other_field == "node.ip"));
    }

    #[test]
    fn underlay_address_inside_a_pod_cidr_is_rejected() {
        let p = rejects(
            &edit(&[("node_ip = \"10.168.0.4\"", "node_ip = \"10.244.1.9\"")]),
            "peers[1].node_ip",
            "\"10.244.1.9\"",
        );
        assert!(
            matches!(p, Problem::InsidePodCidr { cidr_field, .. } if cidr_field == "peers[0].pod_cidr")
        );
        let p = rejects(
            &edit(&[("\"10.168.0.2/24\"", "\"10.244.0.2\"")]),
            "node.ip",
            "\"10.244.0.2\"",
        );
        assert!(
            matches!(p, Problem::InsidePodCidr { cidr_field, .. } if cidr_field == "node.pod_cidr")
        );
    }

    // --- [dataplane] ---

    #[test]
    fn unknown_backend_is_rejected() {
        let p = rejects(
            &edit(&[("mode = \"vxlan\"", "mode = \"vxlan\"\nbackend = \"dpdk\"")]),
            "dataplane.backend",
            "\"dpdk\"",
        );
        assert!(
            matches!(p, Problem::UnknownChoice { expected } if expected == ["afxdp", "tun", "xdp"])
        );
    }

    #[test]
    fn afxdp_workers_run_real_time_by_default_and_never_with_busy_poll_or_tun() {
        let c = Config::from_toml_str(BASE).unwrap();
        assert_eq!(c.dataplane.worker_priority, DEFAULT_WORKER_PRIORITY);
        let c = Config::from_toml_str(&edit(&[(
            "mode = \"vxlan\"",
            "mode = \"vxlan\"\nbusy_poll = true",
        )]))
        .unwrap();
        assert_eq!(c.dataplane.worker_priority, 0);
        let c = Config::from_toml_str(&edit(&[
            ("pod_interfaces = [\"nodeA-pod\"]\n", ""),
            ("mode = \"vxlan\"", "mode = \"vxlan\"\nbackend = \"tun\""),
        ]))
        .unwrap();
        assert_eq!(c.dataplane.worker_priority, 0);
        let c = Config::from_toml_str(&edit(&[(
            "mode = \"vxlan\"",
            "mode = \"vxlan\"\nworker_priority = 0",
        )]))
        .unwrap();
        assert_eq!(c.dataplane.worker_priority, 0);
        let c = Config::from_toml_str(&edit(&[(
            "mode = \"vxlan\"",
            "mode = \"vxlan\"\nworker_priority = 99",
        )]))
        .unwrap();
        assert_eq!(c.dataplane.worker_priority, 99);
    }

    #[test]
    fn a_real_time_worker_priority_with_busy_poll_or_tun_or_out_of_range_is_rejected() {
        let p = rejects(
            &edit(&[(
                "mode = \"vxlan\"",
                "mode = \"vxlan\"\nbusy_poll = true\nworker_priority = 5",
            )]),
            "dataplane.worker_priority",
            "5",
        );
        assert!(
            matches!(p, Problem::RealTimeSpin { why } if why.contains("busy_poll")),
            "{p}"
        );
        let p = rejects(
            &edit(&[
                ("pod_interfaces = [\"nodeA-pod\"]\n", ""),
                (
                    "mode = \"vxlan\"",
                    "mode = \"vxlan\"\nbackend = \"tun\"\nworker_priority = 1",
                ),
            ]),
            "dataplane.worker_priority",
            "1",
        );
        assert!(
            matches!(p, Problem::RealTimeSpin { why } if why.contains("only the afxdp")),
            "{p}"
        );
        let p = rejects(
            &edit(&[(
                "mode = \"vxlan\"",
                "mode = \"vxlan\"\nworker_priority = 100",
            )]),
            "dataplane.worker_priority",
            "100",
        );
        assert!(
            matches!(
                p,
                Problem::OutOfRange {
                    min: 0,
                    max: 99,
                    ..
                }
            ),
            "{p}"
        );
    }

    #[test]
    fn unknown_mode_is_rejected() {
        let text = edit(&[("mode = \"vxlan\"", "mode = \"hostgw\"")]);
        let p = rejects(&text, "dataplane.mode", "\"hostgw\"");
        assert!(matches!(p, Problem::UnknownChoice { .. }));
        let msg = Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(msg.contains("\"host-gw\", \"vxlan\", \"auto\""), "{msg}");
    }

    #[test]
    fn unknown_xdp_mode_is_rejected() {
        let text = edit(&[("mode = \"vxlan\"", "mode = \"vxlan\"\nxdp_mode = \"skb\"")]);
        assert!(matches!(
            rejects(&text, "dataplane.xdp_mode", "\"skb\""),
            Problem::UnknownChoice { .. }
        ));
    }

    #[test]
    fn empty_cores_are_rejected() {
        let text = edit(&[("mode = \"vxlan\"", "mode = \"vxlan\"\ncores = []")]);
        assert!(matches!(
            rejects(&text, "dataplane.cores", "[]"),
            Problem::Empty { .. }
        ));
    }

    #[test]
    fn duplicate_cores_are_rejected() {
        let text = edit(&[("mode = \"vxlan\"", "mode = \"vxlan\"\ncores = [0, 1, 1]")]);
        let p = rejects(&text, "dataplane.cores[2]", "1");
        assert!(
            matches!(p, Problem::Duplicate { other_field, .. } if other_field == "dataplane.cores[1]")
        );
    }

    #[test]
    fn negative_core_is_rejected() {
        let text = edit(&[("mode = \"vxlan\"", "mode = \"vxlan\"\ncores = [-1]")]);
        assert!(matches!(
            rejects(&text, "dataplane.cores[0]", "-1"),
            Problem::OutOfRange { .. }
        ));
    }

    #[test]
    fn zero_queues_are_rejected() {
        let text = edit(&[("mode = \"vxlan\"", "mode = \"vxlan\"\nqueues = 0")]);
        let p = rejects(&text, "dataplane.queues", "0");
        assert!(matches!(p, Problem::OutOfRange { min: 1, .. }));
    }

    #[test]
    fn batch_size_out_of_range_is_rejected() {
        for bad in ["0", "257", "-64"] {
            let text = edit(&[(
                "mode = \"vxlan\"",
                &format!("mode = \"vxlan\"\nbatch_size = {bad}"),
            )]);
            let p = rejects(&text, "dataplane.batch_size", bad);
            assert_eq!(
                p,
                Problem::OutOfRange {
                    min: 1,
                    max: 256,
                    why: None
                }
            );
        }
    }

    #[test]
    fn ring_size_that_is_not_a_power_of_two_is_rejected() {
        for ring in [
            "rx_ring_size",
            "tx_ring_size",
            "fill_ring_size",
            "comp_ring_size",
        ] {
            let text = edit(&[(
                "mode = \"vxlan\"",
                &format!("mode = \"vxlan\"\n{ring} = 3000"),
            )]);
            let p = rejects(&text, &format!("dataplane.{ring}"), "3000");
            assert_eq!(p, Problem::NotPowerOfTwo, "{ring}");
            let text = edit(&[("mode = \"vxlan\"", &format!("mode = \"vxlan\"\n{ring} = 0"))]);
            assert!(matches!(
                rejects(&text, &format!("dataplane.{ring}"), "0"),
                Problem::OutOfRange { .. }
            ));
        }
    }

    #[test]
    fn frame_count_smaller_than_a_batch_is_rejected() {
        let text = edit(&[(
            "mode = \"vxlan\"",
            "mode = \"vxlan\"\nbatch_size = 128\nframe_count = 100",
        )]);
        let p = rejects(&text, "dataplane.frame_count", "100");
        assert!(matches!(p, Problem::OutOfRange { min: 128, .. }));
    }

    // --- [vxlan], [tun], [control] ---

    #[test]
    fn vxlan_port_zero_is_rejected() {
        let text = edit(&[("[vxlan]\n", "[vxlan]\nport = 0\n")]);
        assert!(matches!(
            rejects(&text, "vxlan.port", "0"),
            Problem::OutOfRange {
                min: 1,
                max: 65535,
                ..
            }
        ));
        let text = edit(&[("[vxlan]\n", "[vxlan]\nport = 65536\n")]);
        assert!(matches!(
            rejects(&text, "vxlan.port", "65536"),
            Problem::OutOfRange { .. }
        ));
    }

    #[test]
    fn vxlan_device_defaults_to_podfwd_1_and_is_validated_as_an_interface_name() {
        assert_eq!(
            Config::from_toml_str(BASE).unwrap().vxlan.device,
            "podfwd.1"
        );
        let text = edit(&[("[vxlan]\n", "[vxlan]\ndevice = \"flannel.1\"\n")]);
        assert_eq!(
            Config::from_toml_str(&text).unwrap().vxlan.device,
            "flannel.1"
        );
        let text = edit(&[(
            "[vxlan]\n",
            "[vxlan]\ndevice = \"a-very-long-vxlan-name\"\n",
        )]);
        assert!(matches!(
            rejects(&text, "vxlan.device", "a-very-long-vxlan-name"),
            Problem::NameTooLong { len: 22 }
        ));
        let text = edit(&[("[vxlan]\n", "[vxlan]\ndevice = \"vx/1\"\n")]);
        rejects(&text, "vxlan.device", "vx/1");
        let text = edit(&[("[vxlan]\n", "[vxlan]\ndevice = \"\"\n")]);
        rejects(&text, "vxlan.device", "\"\"");
    }

    #[test]
    fn vxlan_device_named_like_the_uplink_is_rejected() {
        let uplink = Config::from_toml_str(BASE).unwrap().node.uplink;
        let text = edit(&[("[vxlan]\n", &format!("[vxlan]\ndevice = \"{uplink}\"\n"))]);
        assert_eq!(
            rejects(&text, "vxlan.device", &uplink),
            Problem::SameAsUplink
        );
    }

    #[test]
    fn vni_that_does_not_fit_24_bits_is_rejected() {
        let text = edit(&[("[vxlan]\n", "[vxlan]\nvni = 16777216\n")]);
        let p = rejects(&text, "vxlan.vni", "16777216");
        assert!(matches!(
            p,
            Problem::OutOfRange {
                max: 16_777_215,
                ..
            }
        ));
        let text = edit(&[("[vxlan]\n", "[vxlan]\nvni = 16777215\n")]);
        assert_eq!(Config::from_toml_str(&text).unwrap().vxlan.vni, MAX_VNI);
    }

    #[test]
    fn missing_node_vtep_mac_in_vxlan_mode_is_rejected() {
        let p = rejects(
            &edit(&[("vtep_mac = \"0e:00:00:00:00:0a\"\n", "")]),
            "vxlan.vtep_mac",
            "\"vxlan\"",
        );
        assert!(matches!(p, Problem::Missing { .. }));
    }

    #[test]
    fn missing_node_vtep_mac_in_auto_mode_is_rejected() {
        let text = edit(&[
            ("vtep_mac = \"0e:00:00:00:00:0a\"\n", ""),
            ("\"vxlan\"", "\"auto\""),
        ]);
        assert!(matches!(
            rejects(&text, "vxlan.vtep_mac", "\"auto\""),
            Problem::Missing { .. }
        ));
    }

    #[test]
    fn node_vtep_mac_that_is_multicast_is_rejected() {
        let text = edit(&[("\"0e:00:00:00:00:0a\"", "\"ff:ff:ff:ff:ff:ff\"")]);
        assert_eq!(
            rejects(&text, "vxlan.vtep_mac", "\"ff:ff:ff:ff:ff:ff\""),
            Problem::MulticastMac
        );
    }

    #[test]
    fn tun_name_longer_than_ifnamsiz_is_rejected() {
        let text = format!("{BASE}\n[tun]\nname = \"podfwd-tun-device\"\n");
        assert!(matches!(
            rejects(&text, "tun.name", "\"podfwd-tun-device\""),
            Problem::NameTooLong { .. }
        ));
    }

    #[test]
    fn tun_name_equal_to_the_uplink_is_rejected_with_the_tun_backend() {
        let text = edit(&[
            ("mode = \"vxlan\"", "mode = \"vxlan\"\nbackend = \"tun\""),
            ("[[peers]]", "[tun]\nname = \"nodeA-ul\"\n[[peers]]"),
        ]);
        assert_eq!(
            rejects(&text, "tun.name", "\"nodeA-ul\""),
            Problem::SameAsUplink
        );
    }

    #[test]
    fn metrics_are_off_unless_a_listen_address_is_given() {
        assert_eq!(Config::from_toml_str(BASE).unwrap().metrics.listen, None);
        let text = format!("{BASE}\n[metrics]\n");
        assert_eq!(Config::from_toml_str(&text).unwrap().metrics.listen, None);
        let text = format!("{BASE}\n[metrics]\nlisten = \"127.0.0.1:9472\"\n");
        assert_eq!(
            Config::from_toml_str(&text).unwrap().metrics.listen,
            Some("127.0.0.1:9472".parse().unwrap())
        );
        let text = format!("{BASE}\n[metrics]\nlisten = \"[::1]:9472\"\n");
        assert_eq!(
            Config::from_toml_str(&text).unwrap().metrics.listen,
            Some("[::1]:9472".parse().unwrap())
        );
    }

    #[test]
    fn metrics_listen_must_be_an_address_and_port() {
        for bad in ["localhost:9472", "127.0.0.1", ":9472", "127.0.0.1:99999"] {
            let text = format!("{BASE}\n[metrics]\nlisten = \"{bad}\"\n");
            assert_eq!(
                rejects(&text, "metrics.listen", bad),
                Problem::NotSocketAddr
            );
        }
        let text = format!("{BASE}\n[metrics]\nport = 9472\n");
        assert!(toml_error(&text).contains("port"));
    }

    #[test]
    fn socket_path_longer_than_sun_path_is_rejected() {
        let long = format!("/run/{}", "x".repeat(103));
        let text = format!("{BASE}\n[control]\nsocket = \"{long}\"\n");
        assert_eq!(
            rejects(&text, "control.socket", &long),
            Problem::SocketPathTooLong { len: 108 }
        );
    }

    #[test]
    fn empty_control_paths_are_rejected() {
        let text = format!("{BASE}\n[control]\nsocket = \"\"\n");
        assert!(matches!(
            rejects(&text, "control.socket", "\"\""),
            Problem::Empty { .. }
        ));
        let text = format!("{BASE}\n[control]\nbpf_pin_dir = \"\"\n");
        assert!(matches!(
            rejects(&text, "control.bpf_pin_dir", "\"\""),
            Problem::Empty { .. }
        ));
    }

    // --- [[peers]] ---

    #[test]
    fn peer_pod_cidr_that_is_not_a_network_is_rejected() {
        let text = edit(&[("\"10.244.2.0/24\"", "\"10.244.two.0/24\"")]);
        assert_eq!(
            rejects(&text, "peers[1].pod_cidr", "\"10.244.two.0/24\""),
            Problem::NotCidr
        );
    }

    #[test]
    fn peer_without_a_pod_cidr_is_rejected() {
        let text = edit(&[("pod_cidr = \"10.244.2.0/24\"\n", "")]);
        assert!(matches!(
            rejects(&text, "peers[1].pod_cidr", "missing"),
            Problem::Missing { .. }
        ));
    }

    #[test]
    fn peer_without_a_node_ip_is_rejected() {
        let text = edit(&[("node_ip = \"10.168.0.4\"\n", "")]);
        assert!(matches!(
            rejects(&text, "peers[1].node_ip", "missing"),
            Problem::Missing { .. }
        ));
    }

    #[test]
    fn own_pod_cidr_listed_as_a_peer_is_rejected() {
        let text = edit(&[("\"10.244.2.0/24\"", "\"10.244.0.0/24\"")]);
        assert_eq!(
            rejects(&text, "peers[1].pod_cidr", "\"10.244.0.0/24\""),
            Problem::IsOwnPodCidr
        );
    }

    #[test]
    fn peer_pod_cidr_overlapping_the_own_pod_cidr_is_rejected() {
        let text = edit(&[("\"10.244.2.0/24\"", "\"10.244.0.0/16\"")]);
        let p = rejects(&text, "peers[1].pod_cidr", "\"10.244.0.0/16\"");
        assert_eq!(
            p,
            Problem::Overlaps {
                other_field: "node.pod_cidr".into(),
                other: "10.244.0.0/24".parse().unwrap()
            }
        );
    }

    #[test]
    fn peer_pod_cidrs_overlapping_each_other_are_rejected() {
        let text = edit(&[("\"10.244.2.0/24\"", "\"10.244.1.128/25\"")]);
        let p = rejects(&text, "peers[1].pod_cidr", "\"10.244.1.128/25\"");
        assert!(
            matches!(p, Problem::Overlaps { other_field, .. } if other_field == "peers[0].pod_cidr")
        );
    }

    #[test]
    fn peer_node_ip_that_is_not_an_address_is_rejected() {
        let text = edit(&[("\"10.168.0.4\"", "\"node-b\"")]);
        assert_eq!(
            rejects(&text, "peers[1].node_ip", "\"node-b\""),
            Problem::NotIpv4Addr
        );
    }

    #[test]
    fn peer_node_ip_equal_to_the_own_node_ip_is_rejected() {
        let text = edit(&[("\"10.168.0.4\"", "\"10.168.0.2\"")]);
        assert_eq!(
            rejects(&text, "peers[1].node_ip", "\"10.168.0.2\""),
            Problem::IsOwnNodeIp
        );
    }

    #[test]
    fn duplicate_peer_node_ip_is_rejected() {
        let text = edit(&[("\"10.168.0.4\"", "\"10.168.0.3\"")]);
        let p = rejects(&text, "peers[1].node_ip", "\"10.168.0.3\"");
        assert!(
            matches!(p, Problem::Duplicate { other_field, .. } if other_field == "peers[0].node_ip")
        );
    }

    #[test]
    fn vtep_mac_that_is_not_a_mac_is_rejected() {
        let text = edit(&[("\"0e:00:00:00:00:0c\"", "\"zz:00\"")]);
        let p = rejects(&text, "peers[1].vtep_mac", "\"zz:00\"");
        assert_eq!(p, Problem::NotMac);
        let msg = Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(
            msg.starts_with("peers[1].vtep_mac: \"zz:00\" is not a MAC address"),
            "{msg}"
        );
    }

    #[test]
    fn multicast_vtep_mac_is_rejected() {
        let text = edit(&[("\"0e:00:00:00:00:0b\"", "\"01:00:5e:00:00:01\"")]);
        assert_eq!(
            rejects(&text, "peers[0].vtep_mac", "\"01:00:5e:00:00:01\""),
            Problem::MulticastMac
        );
    }

    #[test]
    fn all_zero_vtep_mac_is_rejected() {
        let text = edit(&[("\"0e:00:00:00:00:0b\"", "\"00:00:00:00:00:00\"")]);
        assert_eq!(
            rejects(&text, "peers[0].vtep_mac", "\"00:00:00:00:00:00\""),
            Problem::ZeroMac
        );
    }

    #[test]
    fn vtep_mac_shared_by_two_peers_is_rejected() {
        let text = edit(&[("\"0e:00:00:00:00:0c\"", "\"0e:00:00:00:00:0b\"")]);
        let p = rejects(&text, "peers[1].vtep_mac", "\"0e:00:00:00:00:0b\"");
        assert!(
            matches!(p, Problem::Duplicate { other_field, .. } if other_field == "peers[0].vtep_mac")
        );
    }

    #[test]
    fn peer_vtep_mac_equal_to_the_own_vtep_mac_is_rejected() {
        let text = edit(&[("\"0e:00:00:00:00:0c\"", "\"0e:00:00:00:00:0a\"")]);
        let p = rejects(&text, "peers[1].vtep_mac", "\"0e:00:00:00:00:0a\"");
        assert!(
            matches!(p, Problem::Duplicate { other_field, .. } if other_field == "vxlan.vtep_mac")
        );
    }

    #[test]
    fn missing_peer_vtep_mac_in_vxlan_mode_is_rejected() {
        let text = edit(&[("vtep_mac = \"0e:00:00:00:00:0c\"\n", "")]);
        assert!(matches!(
            rejects(&text, "peers[1].vtep_mac", "\"vxlan\""),
            Problem::Missing { .. }
        ));
    }

    #[test]
    fn missing_peer_vtep_mac_in_auto_mode_is_rejected() {
        let text = edit(&[
            ("vtep_mac = \"0e:00:00:00:00:0c\"\n", ""),
            ("\"vxlan\"", "\"auto\""),
        ]);
        assert!(matches!(
            rejects(&text, "peers[1].vtep_mac", "\"auto\""),
            Problem::Missing { .. }
        ));
    }

    #[test]
    fn vtep_macs_are_optional_in_host_gw_mode() {
        let text = edit(&[
            ("vtep_mac = \"0e:00:00:00:00:0a\"\n", ""),
            ("vtep_mac = \"0e:00:00:00:00:0c\"\n", ""),
            ("\"vxlan\"", "\"host-gw\""),
        ]);
        let c = Config::from_toml_str(&text).unwrap();
        assert_eq!(c.vxlan.vtep_mac, None);
        assert_eq!(c.peers[1].vtep_mac, None);
    }

    // --- positions and files ---

    #[test]
    fn errors_carry_the_line_of_the_value() {
        let text = edit(&[("\"0e:00:00:00:00:0c\"", "\"zz:00\"")]);
        let err = Config::from_toml_str(&text).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { line: Some(22), .. }),
            "{err:?}"
        );
        assert!(err.to_string().ends_with("(line 22)"), "{err}");
    }

    #[test]
    fn load_names_the_file_in_errors() {
        let path =
            std::env::temp_dir().join(format!("podfwd-config-test-{}.toml", std::process::id()));
        std::fs::write(&path, edit(&[("\"10.168.0.4\"", "\"10.168.0.3\"")])).unwrap();
        let err = Config::load(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}: peers[1].node_ip", path.display())),
            "{msg}"
        );
        assert_eq!(err.field(), Some("peers[1].node_ip"));
    }

    #[test]
    fn load_of_a_missing_file_says_it_does_not_exist() {
        let err = Config::load("/nonexistent/podfwd.toml").unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { .. }));
        assert_eq!(
            err.to_string(),
            "config file /nonexistent/podfwd.toml does not exist"
        );
    }

    #[test]
    fn mode_and_backend_names_round_trip() {
        for m in [Mode::HostGw, Mode::Vxlan, Mode::Auto] {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
        }
        for b in [Backend::AfXdp, Backend::Tun, Backend::Xdp] {
            assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
        }
        assert!("hostgw"
            .parse::<Mode>()
            .unwrap_err()
            .contains("\"host-gw\""));
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::*;

    const ETCD_NODE: &str = r#"
[node]
ip = "10.168.0.2/24"
uplink = "nodeA-ul"
pod_interfaces = ["nodeA-pod"]

[vxlan]
vtep_mac = "0e:00:00:00:00:0a"
device = "flannel.1"

[cluster]
source = "etcd"
etcd_endpoints = ["http://10.168.0.3:2379", "https://10.168.0.4:2379"]
"#;

    fn assignment(mode: Mode) -> RegistryAssignment {
        RegistryAssignment {
            pod_cidr: "10.244.7.0/24".parse().unwrap(),
            mode,
            vni: 1,
            port: 8472,
        }
    }

    #[track_caller]
    fn rejects(text: &str, field: &str, value: &str, line: usize) -> Problem {
        let err = EtcdNode::from_toml_str(text).expect_err("config was accepted");
        let msg = err.to_string();
        assert_eq!(err.field(), Some(field), "wrong field in: {msg}");
        assert!(msg.contains(value), "{value} not in: {msg}");
        assert!(msg.ends_with(&format!("(line {line})")), "{msg}");
        err.problem().expect("an Invalid error").clone()
    }

    #[test]
    fn etcd_node_gets_flannel_defaults_and_completes_from_the_registry() {
        let node = EtcdNode::from_toml_str(ETCD_NODE).unwrap();
        assert_eq!(
            node.settings,
            EtcdSettings {
                endpoints: vec![
                    "http://10.168.0.3:2379".into(),
                    "https://10.168.0.4:2379".into()
                ],
                prefix: "/coreos.com/network".into(),
                subnet_file: "/run/flannel/subnet.env".into(),
                ca_file: None,
                cert_file: None,
                key_file: None,
            }
        );
        assert!(node.summary().contains("come from the registry"));
        let c = node.complete(&assignment(Mode::Auto)).unwrap();
        assert_eq!(c.node.pod_cidr, "10.244.7.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(c.dataplane.mode, Mode::Auto);
        assert_eq!((c.vxlan.vni, c.vxlan.port), (1, 8472));
        assert!(c.peers.is_empty());
        assert!(matches!(c.cluster, ClusterSource::Etcd(_)));
    }

    #[test]
    fn plain_load_of_an_etcd_node_says_it_needs_the_registry() {
        let err = Config::from_toml_str(ETCD_NODE).unwrap_err();
        assert_eq!(err.field(), Some("cluster.source"));
        assert_eq!(err.problem(), Some(&Problem::NeedsRegistry));
        assert!(err.to_string().contains("(line 12)"), "{err}");
    }

    #[test]
    fn registry_keys_in_the_file_are_refused_by_name_and_line() {
        let with =
            |section: &str, line: &str| ETCD_NODE.replace(section, &format!("{section}\n{line}"));
        let p = rejects(
            &with("[node]", "pod_cidr = \"10.244.0.0/24\""),
            "node.pod_cidr",
            "10.244.0.0/24",
            3,
        );
        assert_eq!(p, Problem::FromRegistry);
        rejects(&with("[vxlan]", "vni = 7"), "vxlan.vni", "7", 8);
        rejects(&with("[vxlan]", "port = 4789"), "vxlan.port", "4789", 8);
        let text = format!("{ETCD_NODE}\n[dataplane]\nmode = \"vxlan\"\n");
        rejects(&text, "dataplane.mode", "vxlan", 16);
        let text = format!(
            "{ETCD_NODE}\n[[peers]]\npod_cidr = \"10.244.1.0/24\"\nnode_ip = \"10.168.0.3\"\n"
        );
        rejects(&text, "peers", "1 entries", 15);
    }

    #[test]
    fn bad_cluster_values_name_field_value_and_line() {
        let p = rejects(
            &ETCD_NODE.replace("\"etcd\"", "\"consul\""),
            "cluster.source",
            "consul",
            12,
        );
        assert!(matches!(p, Problem::UnknownChoice { .. }));
        let p = rejects(
            &ETCD_NODE.replace("http://10.168.0.3:2379", "10.168.0.3:2379"),
            "cluster.etcd_endpoints[0]",
            "10.168.0.3:2379",
            13,
        );
        assert_eq!(p, Problem::NotEndpointUrl);
        let no_key = format!("{ETCD_NODE}etcd_cert_file = \"/etc/etcd/node.pem\"\n");
        let p = rejects(&no_key, "cluster.etcd_cert_file", "node.pem", 14);
        assert!(matches!(p, Problem::NeedsBoth { .. }));
        let rel = format!("{ETCD_NODE}etcd_prefix = \"coreos.com/network\"\n");
        rejects(&rel, "cluster.etcd_prefix", "coreos.com/network", 14);
        let err = EtcdNode::from_toml_str(&ETCD_NODE.replace(
            "etcd_endpoints = [\"http://10.168.0.3:2379\", \"https://10.168.0.4:2379\"]",
            "",
        ))
        .unwrap_err();
        assert_eq!(err.field(), Some("cluster.etcd_endpoints"));
    }

    #[test]
    fn etcd_keys_in_a_static_file_are_refused() {
        let text =
            "[node]\nip = \"10.168.0.2/24\"\npod_cidr = \"10.244.0.0/24\"\nuplink = \"ul\"\n\
                    pod_interfaces = [\"pod\"]\n[dataplane]\nmode = \"host-gw\"\n[cluster]\n\
                    etcd_endpoints = [\"http://10.168.0.3:2379\"]\n";
        let err = Config::from_toml_str(text).unwrap_err();
        assert_eq!(err.field(), Some("cluster.etcd_endpoints"));
        assert_eq!(err.problem(), Some(&Problem::OnlyForEtcd));
        assert!(err.to_string().contains("(line 9)"), "{err}");
        let c = Config::from_toml_str(&text.replace(
            "etcd_endpoints = [\"http://10.168.0.3:2379\"]",
            "source = \"static\"",
        ))
        .unwrap();
        assert_eq!(c.cluster, ClusterSource::Static);
        assert!(EtcdNode::from_toml_str(text.split("[cluster]").next().unwrap()).is_err());
    }

    #[test]
    fn vxlan_network_needs_the_vtep_mac_once_known() {
        let no_mac = ETCD_NODE.replace("vtep_mac = \"0e:00:00:00:00:0a\"\n", "");
        let node = EtcdNode::from_toml_str(&no_mac).unwrap();
        assert!(node.complete(&assignment(Mode::HostGw)).is_ok());
        let err = node.complete(&assignment(Mode::Vxlan)).unwrap_err();
        assert_eq!(err.field(), Some("vxlan.vtep_mac"));
    }
}
