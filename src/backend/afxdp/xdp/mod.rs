//! The XDP classifier: loading `podfwd_xdp` (built from `bpf/podfwd_xdp.bpf.c` at compile
//! time and embedded here), attaching it to an interface, and feeding its maps.
//!
//! One [`Classifier`] per interface. The program redirects to the rx queue's AF_XDP socket
//! only the frames podfwd owns on that interface (see [`Role`], [`Settings`] and
//! [`Ownership`]) and hands
//! everything else to the kernel with `XDP_PASS`; a queue without a registered socket
//! falls back to the kernel too. It is attached through a **bpf_link**: the kernel detaches
//! it when the last reference to the link goes away, which is when the [`Classifier`] is
//! dropped or the process dies in any way, SIGKILL included. A node whose podfwd is gone
//! is left with no program, so the kernel forwards again (fail-open). Nothing is pinned
//! unless [`Classifier::pin_maps`] is asked for (debugging only).
//!
//! The control thread owns the classifiers; map updates take `&self` because the kernel
//! serialises them, but each classifier expects a single writer. Frames and rules:
//! `docs/xdp.md`.

mod attach;
mod fastpath;
#[cfg(test)]
mod fastpath_tests;
mod maps;
mod object;
mod stats;
#[cfg(test)]
mod tests;

pub use attach::{attached_programs, AttachMode, AttachedProgram};
pub use fastpath::{
    adjacency_bytes, FastPath, FastPathStats, FwdStat, ADJACENCY_SIZE, MAX_ADJACENCIES,
    MAX_FIB_ROUTES, MAX_TX_PORTS,
};
pub use maps::{
    peer_subnets, Ownership, PortKind, Role, Settings, MAX_PORTS, MAX_QUEUES, MAX_ROUTES, MAX_VTEPS,
};
pub use object::{forget_kernel_answers, OWN_PROGRAM_NAMES, PROGRAM_NAME};
pub use stats::{ClassifierStats, Stat};

use attach::XdpLink;
use maps::*;
use object::*;

use crate::netlink::{self, NetlinkError};
use ipnet::Ipv4Net;
use libbpf_rs::{MapCore, MapFlags, MapType, Object};
use std::collections::BTreeSet;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, RawFd};
use std::path::{Path, PathBuf};

const PRIVILEGES: &str = "podfwd needs CAP_NET_ADMIN and CAP_BPF (CAP_SYS_ADMIN on kernels \
                          before 5.8): run it as root";

/// Why loading, attaching or configuring the classifier failed.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("interface {iface:?} does not exist in this network namespace")]
    NoSuchInterface { iface: String },
    #[error(
        "interface {iface:?} is not an Ethernet interface (ARPHRD type {hw_type}); \
             the XDP classifier parses Ethernet frames"
    )]
    NotEthernet { iface: String, hw_type: u16 },
    #[error("{action} on {iface:?} is not permitted: {PRIVILEGES}")]
    NoPrivileges { action: String, iface: String },
    #[error(
        "this kernel does not support {what}; podfwd's afxdp backend needs \
             CONFIG_BPF_SYSCALL, CONFIG_XDP_SOCKETS and Linux 5.9 or newer (XDP links); \
             use the tun backend"
    )]
    KernelUnsupported { what: &'static str },
    #[error("the kernel's verifier rejected {program} ({source}); verifier log (end):\n{log}")]
    VerifierRejected {
        program: String,
        source: io::Error,
        log: String,
    },
    #[error(
        "native XDP cannot be attached to {iface:?}: {source}; the driver may lack XDP \
             support or refuse this setup (veth: MTU above about 3500, or fewer rx queues \
             than its peer has tx queues); set dataplane.xdp_mode = \"generic\" to use the \
             slower skb hook"
    )]
    NativeUnsupported { iface: String, source: io::Error },
    #[error("attaching {PROGRAM_NAME} to {iface:?} in {mode} mode failed: {source}")]
    AttachFailed {
        iface: String,
        mode: AttachMode,
        source: io::Error,
    },
    #[error("{PROGRAM_NAME} is already attached to {iface:?} ({mode} mode) by this classifier")]
    AlreadyAttached { iface: String, mode: AttachMode },
    #[error(
        "interface {iface:?} already has XDP program {name:?} (id {id}, {mode} mode), \
             which is not podfwd's; podfwd does not remove it: detach it \
             (`ip link set dev {iface} xdp off`) or serve another interface"
    )]
    ForeignProgram {
        iface: String,
        name: String,
        id: u32,
        mode: AttachMode,
    },
    #[error(
        "{name:?} (id {id}, {mode} mode) on {iface:?} is held by a bpf_link of a running \
             process (another podfwd on this interface?); stop it first"
    )]
    HeldByLink {
        iface: String,
        name: String,
        id: u32,
        mode: AttachMode,
    },
    #[error(
        "{} is not on a bpffs; mount one (`mount -t bpf bpf /sys/fs/bpf`) or leave \
             pinning off: podfwd attaches through bpf_links and needs no pins", path.display()
    )]
    BpfFsMissing { path: PathBuf },
    #[error("rx queue {queue} is out of range: the classifier serves queues 0..{MAX_QUEUES}")]
    QueueOutOfRange { queue: u32 },
    #[error("{count} routes do not fit in the classifier's {MAX_ROUTES}-entry trie")]
    TooManyRoutes { count: usize },
    #[error("{count} entries do not fit in the classifier's {max}-entry {map} map")]
    TooManyEntries {
        map: &'static str,
        count: usize,
        max: u32,
    },
    #[error("the embedded BPF object does not match this build of podfwd: {what}")]
    ObjectMismatch { what: String },
    #[error("{action} on {iface:?} failed: {source}")]
    Os {
        action: String,
        iface: String,
        source: io::Error,
    },
    #[error("{action} on {iface:?} failed: {source:#}")]
    Bpf {
        action: String,
        iface: String,
        source: libbpf_rs::Error,
    },
}

fn os_error(action: impl Into<String>, iface: &str, errno: i32) -> XdpError {
    let action = action.into();
    if errno == libc::EPERM || errno == libc::EACCES {
        return XdpError::NoPrivileges {
            action,
            iface: iface.into(),
        };
    }
    XdpError::Os {
        action,
        iface: iface.into(),
        source: io::Error::from_raw_os_error(errno),
    }
}

fn bpf_error(action: impl Into<String>, iface: &str, e: libbpf_rs::Error) -> XdpError {
    let action = action.into();
    if e.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        return XdpError::NoPrivileges {
            action,
            iface: iface.into(),
        };
    }
    XdpError::Bpf {
        action,
        iface: iface.into(),
        source: e,
    }
}

/// `podfwd_xdp` loaded for one interface, with its own maps; attached or not.
#[derive(Debug)]
pub struct Classifier {
    iface: String,
    ifindex: u32,
    role: Role,
    mac: [u8; 6],
    /// Declared before `object`, so the link is closed (program detached) first.
    link: Option<XdpLink>,
    pinned: Vec<PathBuf>,
    removed_stale: Vec<AttachedProgram>,
    object: Object,
}

impl Classifier {
    /// Loads the embedded program for `iface` (which must exist in the calling thread's
    /// network namespace) and writes its role and settings. Does not attach it.
    pub fn load(iface: &str, role: Role, settings: &Settings) -> Result<Classifier, XdpError> {
        let (ifindex, mac) = lookup_interface(iface)?;
        Classifier::open(iface, ifindex, mac, role, settings, None)
    }

    /// Loads the program for `iface` with the fast path's shared forwarding maps
    /// (backend `xdp`). Forwarding starts once [`Ownership::forward`] is set.
    pub fn load_fast_path(
        iface: &str,
        role: Role,
        settings: &Settings,
        fast: &FastPath,
    ) -> Result<Classifier, XdpError> {
        let (ifindex, mac) = lookup_interface(iface)?;
        Classifier::open(iface, ifindex, mac, role, settings, Some(fast))
    }

    /// Loads the program for an interface already resolved.
    fn open(
        iface: &str,
        ifindex: u32,
        mac: [u8; 6],
        role: Role,
        settings: &Settings,
        fast: Option<&FastPath>,
    ) -> Result<Classifier, XdpError> {
        let reuse = fast.map(|f| f.shared_fds());
        let object = load_object(
            &PODFWD_XDP_OBJECT.0,
            PROGRAM_NAME,
            iface,
            reuse.as_ref().map_or(&[][..], |r| &r[..]),
        )?;
        let c = Classifier {
            iface: iface.to_string(),
            ifindex,
            role,
            mac,
            link: None,
            pinned: Vec::new(),
            removed_stale: Vec::new(),
            object,
        };
        c.check_layout()?;
        let config = config_bytes(role, settings, &Ownership::default(), mac);
        c.write_config(&config)?;
        Ok(c)
    }

    /// Checks the loaded maps against the layout this file writes.
    fn check_layout(&self) -> Result<(), XdpError> {
        let expect = [
            (MAP_CONFIG, MapType::Array, 4, CONFIG_SIZE as u32, 1),
            (
                MAP_ROUTES,
                MapType::LpmTrie,
                ROUTE_KEY_SIZE as u32,
                4,
                MAX_ROUTES,
            ),
            (MAP_XSKS, MapType::Xskmap, 4, 4, MAX_QUEUES),
            (MAP_STATS, MapType::PercpuArray, 4, 8, Stat::COUNT as u32),
            (MAP_VTEPS, MapType::Hash, 4, 4, MAX_VTEPS),
            (MAP_PORTS, MapType::Hash, 4, 4, MAX_PORTS),
            (MAP_EPOCH, MapType::Array, 4, 8, 2),
            (
                MAP_FLOW_CACHE,
                MapType::PercpuArray,
                4,
                FLOW_SLOT_SIZE,
                FLOW_CACHE_SLOTS,
            ),
        ];
        for (name, ty, key, value, entries) in expect {
            let m = self.map(name)?;
            let got = (m.map_type(), m.key_size(), m.value_size(), m.max_entries());
            if got != (ty, key, value, entries) {
                return Err(XdpError::ObjectMismatch {
                    what: format!(
                        "map {name:?} is {got:?}, expected {:?}",
                        (ty, key, value, entries)
                    ),
                });
            }
        }
        Ok(())
    }

    fn map(&self, name: &str) -> Result<libbpf_rs::Map<'_>, XdpError> {
        self.object
            .maps()
            .find(|m| m.name() == name)
            .ok_or_else(|| XdpError::ObjectMismatch {
                what: format!("map {name:?} is missing"),
            })
    }

    fn program(&self) -> Result<libbpf_rs::Program<'_>, XdpError> {
        self.object
            .progs()
            .find(|p| p.name() == PROGRAM_NAME)
            .ok_or_else(|| XdpError::ObjectMismatch {
                what: format!("program {PROGRAM_NAME:?} is missing"),
            })
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The interface index as resolved at load, or at the last attach.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The interface's MAC as read at load (frames to other unicast MACs are passed).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The program's kernel id.
    pub fn program_id(&self) -> Result<u32, XdpError> {
        let prog = self.program()?;
        libbpf_rs::Program::id_from_fd(prog.as_fd())
            .map_err(|e| bpf_error("reading the program id", &self.iface, e))
    }

    /// The node's addresses and the ownership rules now in the `config` map.
    pub fn config(&self) -> Result<(Settings, Ownership), XdpError> {
        let value = self
            .map(MAP_CONFIG)?
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| bpf_error("reading the classifier config", &self.iface, e))?;
        let bytes: [u8; CONFIG_SIZE] = value
            .as_deref()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| XdpError::ObjectMismatch {
                what: "the config map has no entry of the expected size".into(),
            })?;
        Ok(config_from_bytes(&bytes))
    }

    /// Replaces the node's addresses; the ownership rules stay.
    pub fn set_settings(&self, settings: &Settings) -> Result<(), XdpError> {
        let (_, own) = self.config()?;
        self.write_config(&config_bytes(self.role, settings, &own, self.mac))
    }

    /// Replaces the ownership rules ([`Ownership::default`] after load); the addresses stay.
    pub fn set_ownership(&self, own: &Ownership) -> Result<(), XdpError> {
        let (settings, _) = self.config()?;
        self.write_config(&config_bytes(self.role, &settings, own, self.mac))
    }

    /// Re-reads the interface's MAC (after `ip link set ... address`) into the config.
    pub fn refresh_mac(&mut self) -> Result<(), XdpError> {
        let (_, mac) = lookup_interface(&self.iface)?;
        let (settings, own) = self.config()?;
        self.mac = mac;
        self.write_config(&config_bytes(self.role, &settings, &own, mac))
    }

    fn write_config(&self, bytes: &[u8; CONFIG_SIZE]) -> Result<(), XdpError> {
        self.map(MAP_CONFIG)?
            .update(&0u32.to_ne_bytes(), bytes, MapFlags::ANY)
            .map_err(|e| bpf_error("writing the classifier config", &self.iface, e))?;
        self.bump_epoch()
    }

    /// Forgets every answer in the flow cache (on every CPU, of every classifier of the
    /// process): the next frame of each flow asks the kernel again. Every map update of
    /// this classifier calls it; the control plane calls [`forget_kernel_answers`] on
    /// every kernel change the answers depend on.
    pub fn bump_epoch(&self) -> Result<(), XdpError> {
        forget_kernel_answers().map_err(|e| match e {
            XdpError::Os { action, source, .. } => XdpError::Os {
                action,
                iface: self.iface.clone(),
                source,
            },
            other => other,
        })
    }

    /// Replaces the `routes` trie with `prefixes` (host bits ignored): new entries are
    /// added before stale ones are removed, so a route kept across the call never
    /// disappears in between.
    pub fn set_routes(&self, prefixes: &[Ipv4Net]) -> Result<(), XdpError> {
        let wanted: BTreeSet<[u8; ROUTE_KEY_SIZE]> =
            prefixes.iter().map(|p| route_key(p.trunc())).collect();
        if wanted.len() > MAX_ROUTES as usize {
            return Err(XdpError::TooManyRoutes {
                count: wanted.len(),
            });
        }
        let routes = self.map(MAP_ROUTES)?;
        for key in &wanted {
            routes
                .update(key, &ROUTE_OWNED.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| {
                    let prefix = route_from_key(key)
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    bpf_error(format!("adding route {prefix}"), &self.iface, e)
                })?;
        }
        let stale: Vec<Vec<u8>> = routes
            .keys()
            .filter(|k| !wanted.contains(k.as_slice()))
            .collect();
        for key in stale {
            match routes.delete(&key) {
                Ok(()) => {}
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => return Err(bpf_error("removing a stale route", &self.iface, e)),
            }
        }
        self.bump_epoch()
    }

    /// The prefixes currently in the `routes` trie, sorted.
    pub fn routes(&self) -> Result<Vec<Ipv4Net>, XdpError> {
        let routes = self.map(MAP_ROUTES)?;
        let mut out: Vec<Ipv4Net> = routes.keys().filter_map(|k| route_from_key(&k)).collect();
        out.sort();
        Ok(out)
    }

    /// Replaces the known VTEPs (peer node addresses whose VXLAN is decapsulated here):
    /// new entries first, then stale ones removed.
    pub fn set_vteps(&self, vteps: &[Ipv4Addr]) -> Result<(), XdpError> {
        let keys: BTreeSet<[u8; 4]> = vteps.iter().map(|ip| ip.octets()).collect();
        if keys.len() > MAX_VTEPS as usize {
            return Err(XdpError::TooManyEntries {
                map: MAP_VTEPS,
                count: keys.len(),
                max: MAX_VTEPS,
            });
        }
        self.replace_hash(MAP_VTEPS, keys.iter().map(|k| (*k, 1u32)), "known VTEP")
    }

    /// Replaces the interfaces podfwd forwards to (`(ifindex, kind)`).
    pub fn set_ports(&self, ports: &[(u32, PortKind)]) -> Result<(), XdpError> {
        if ports.len() > MAX_PORTS as usize {
            return Err(XdpError::TooManyEntries {
                map: MAP_PORTS,
                count: ports.len(),
                max: MAX_PORTS,
            });
        }
        self.replace_hash(
            MAP_PORTS,
            ports.iter().map(|(i, k)| (i.to_ne_bytes(), *k as u32)),
            "port",
        )
    }

    /// Writes `entries` into the 4-byte-keyed hash `name`, then deletes the keys not
    /// among them: an entry kept across the call never disappears in between.
    fn replace_hash(
        &self,
        name: &str,
        entries: impl Iterator<Item = ([u8; 4], u32)>,
        what: &str,
    ) -> Result<(), XdpError> {
        let map = self.map(name)?;
        let mut wanted = BTreeSet::new();
        for (key, value) in entries {
            map.update(&key, &value.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| bpf_error(format!("adding {what} {key:?}"), &self.iface, e))?;
            wanted.insert(key);
        }
        let stale: Vec<Vec<u8>> = map
            .keys()
            .filter(|k| !wanted.iter().any(|w| w[..] == k[..]))
            .collect();
        for key in stale {
            match map.delete(&key) {
                Ok(()) => {}
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(bpf_error(
                        format!("removing a stale {what}"),
                        &self.iface,
                        e,
                    ))
                }
            }
        }
        self.bump_epoch()
    }

    /// Registers the AF_XDP socket bound to rx queue `queue` of this interface. The
    /// kernel takes its own reference to the socket, and drops the entry by itself when
    /// the socket is closed.
    pub fn register_socket(&self, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::QueueOutOfRange { queue });
        }
        let fd = u32::try_from(fd).map_err(|_| XdpError::Os {
            action: format!("registering the AF_XDP socket of queue {queue}"),
            iface: self.iface.clone(),
            source: io::Error::from_raw_os_error(libc::EBADF),
        })?;
        self.map(MAP_XSKS)?
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| {
                bpf_error(
                    format!(
                        "registering fd {fd} as the AF_XDP socket of queue {queue} \
                         (it must be an AF_XDP socket bound to this interface and queue)"
                    ),
                    &self.iface,
                    e,
                )
            })
    }

    /// Removes queue `queue`'s socket: its frames fall back to the kernel.
    pub fn unregister_socket(&self, queue: u32) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::QueueOutOfRange { queue });
        }
        match self.map(MAP_XSKS)?.delete(&queue.to_ne_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(bpf_error(
                format!("unregistering the AF_XDP socket of queue {queue}"),
                &self.iface,
                e,
            )),
        }
    }

    /// Pins the four maps under `dir/<iface>/` for `bpftool map dump pinned ...`.
    /// Debugging only: the data path needs no pins. The pins are removed on drop, but a
    /// killed process leaves them behind (harmless: no program is attached through them).
    pub fn pin_maps(&mut self, dir: &Path) -> Result<(), XdpError> {
        let on_bpffs = |p: &Path| statfs_type(p).map(|t| t == BPF_FS_MAGIC);
        let existing = dir
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        match on_bpffs(existing) {
            Ok(true) => {}
            Ok(false) => {
                return Err(XdpError::BpfFsMissing {
                    path: dir.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(XdpError::Os {
                    action: format!("checking that {} is on bpffs", dir.display()),
                    iface: self.iface.clone(),
                    source: e,
                })
            }
        }
        let sub = dir.join(&self.iface);
        std::fs::create_dir_all(&sub).map_err(|e| XdpError::Os {
            action: format!("creating {}", sub.display()),
            iface: self.iface.clone(),
            source: e,
        })?;
        for name in [MAP_CONFIG, MAP_ROUTES, MAP_XSKS, MAP_STATS] {
            let path = sub.join(name);
            let mut map = self
                .object
                .maps_mut()
                .find(|m| m.name() == name)
                .ok_or_else(|| XdpError::ObjectMismatch {
                    what: format!("map {name:?} is missing"),
                })?;
            map.pin(&path)
                .map_err(|e| bpf_error(format!("pinning {}", path.display()), &self.iface, e))?;
            self.pinned.push(path);
        }
        Ok(())
    }

    /// Runs the program once over `frame` (BPF_PROG_TEST_RUN); returns the XDP action.
    #[cfg(test)]
    fn run_frame(&self, frame: &[u8]) -> u32 {
        self.test_run(frame, 0, 1)
            .expect("BPF_PROG_TEST_RUN")
            .action
    }

    /// Runs the program `repeat` times over `frame` with `BPF_PROG_TEST_RUN`, as if it
    /// had arrived on the device `ingress_ifindex` (0: none; the kernel FIB and conntrack
    /// lookups need a device of this namespace), rx queue 0. Nothing is sent: an
    /// `XDP_REDIRECT` is only returned. The program's counters and caches are updated as
    /// for real traffic. For byte-level tests and for measuring the per-frame cost.
    pub fn test_run(
        &self,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<TestRun, XdpError> {
        // struct xdp_md: data (metadata length: 0), data_end (must be the frame's length),
        // data_meta (must be 0), ingress_ifindex, rx_queue_index, egress_ifindex.
        let mut ctx = [0u8; 24];
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        ctx[4..8].copy_from_slice(&len.to_ne_bytes());
        ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
        let input = libbpf_rs::ProgramInput {
            data_in: Some(frame),
            context_in: (ingress_ifindex != 0).then_some(&mut ctx[..]),
            repeat,
            ..Default::default()
        };
        let out = self.prog_test_run(input)?;
        Ok(TestRun {
            action: out.return_value,
            per_run: out.duration,
        })
    }
}

impl Classifier {
    /// Runs the program once over `frame` with `BPF_PROG_TEST_RUN` as if it arrived on
    /// rx queue 0 of no device: the XDP action and the frame as the program left it
    /// (after `bpf_xdp_adjust_head`/`_tail`). Nothing is sent; a redirect is only
    /// returned. For the fast path's byte-for-byte tests.
    pub fn test_run_output(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), XdpError> {
        let mut out = vec![0u8; frame.len() + 256];
        let input = libbpf_rs::ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out[..]),
            repeat: 1,
            ..Default::default()
        };
        let res = self.prog_test_run(input)?;
        let bytes = res.data.map(|d| d.to_vec()).unwrap_or_default();
        Ok((res.return_value, bytes))
    }

    /// `BPF_PROG_TEST_RUN` of the classifier program with `input`.
    fn prog_test_run<'d>(
        &self,
        input: libbpf_rs::ProgramInput<'d>,
    ) -> Result<libbpf_rs::ProgramOutput<'d>, XdpError> {
        self.object
            .progs_mut()
            .find(|p| p.name() == PROGRAM_NAME)
            .ok_or_else(|| XdpError::ObjectMismatch {
                what: format!("program {PROGRAM_NAME:?} is missing"),
            })?
            .test_run(input)
            .map_err(|e| bpf_error("BPF_PROG_TEST_RUN".to_string(), &self.iface, e))
    }
}

/// What [`Classifier::test_run`] measured.
#[derive(Debug, Clone, Copy)]
pub struct TestRun {
    /// The XDP action the program returned (`XDP_PASS` = 2, `XDP_REDIRECT` = 4, ...).
    pub action: u32,
    /// The kernel's average time per run.
    pub per_run: std::time::Duration,
}

impl Drop for Classifier {
    fn drop(&mut self) {
        for p in self.pinned.drain(..) {
            let _ = std::fs::remove_file(&p);
            if let Some(dir) = p.parent() {
                let _ = std::fs::remove_dir(dir); // only once empty
            }
        }
        // `link` then `object` drop after this: detach, then unload.
    }
}

/// The interface's index and Ethernet address, from the one interface lookup
/// ([`netlink::interface`]) in the calling thread's network namespace.
fn lookup_interface(iface: &str) -> Result<(u32, [u8; 6]), XdpError> {
    match netlink::interface(iface) {
        Ok(i) if i.hw_type != libc::ARPHRD_ETHER => Err(XdpError::NotEthernet {
            iface: iface.into(),
            hw_type: i.hw_type,
        }),
        Ok(i) => Ok((i.index, i.mac.0)),
        Err(NetlinkError::NoSuchInterface(_)) | Err(NetlinkError::InvalidInterfaceName(_)) => {
            Err(XdpError::NoSuchInterface {
                iface: iface.into(),
            })
        }
        Err(e) => Err(XdpError::Os {
            action: "looking up the interface".into(),
            iface: iface.into(),
            source: io::Error::other(e.to_string()),
        }),
    }
}
