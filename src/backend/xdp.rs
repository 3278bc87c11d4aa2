//! The in-kernel fast path (`backend = "xdp"`, Cilium's model): the XDP program on the
//! uplink and every pod interface forwards the frames podfwd owns itself (host-gw
//! rewrite, VXLAN encap and decap, `bpf_redirect_map` through a devmap), from BPF maps
//! that the one control plane fills from the same FIB the pipeline reads
//! ([`FastPath`]). What the program cannot finish (next hop unresolved, too big, no
//! route, TTL, local) goes to the kernel with `XDP_PASS`; this backend runs no AF_XDP
//! workers, so `dataplane.cores` is not used. Design and limits: docs/xdp-fastpath.md.
//!
//! Counters: the program counts per CPU; [`Backend::worker_counters`] reports one entry
//! per CPU with the pipeline's names (forwarded, encapsulated, decapsulated, drops by
//! reason), and a small publisher thread mirrors them for the metrics endpoint.

use super::afxdp::xdp::{Classifier, FastPath, FastPathStats, FwdStat};
use super::afxdp::{Classifiers, Program};
use super::{Backend, BackendError, Ports};
use crate::config::Backend as BackendKind;
use crate::control::StatsReply;
use crate::counters::{Counters, DropReason, SharedCounters};
use crate::pipeline::{Fib, FibWriter, NodeParams};
use crate::plan::Plan;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the publisher thread mirrors the per-CPU counters for the metrics.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// The in-kernel XDP data path of one node.
pub struct XdpBackend {
    ports: Ports,
    fast: Arc<FastPath>,
    classifiers: Classifiers,
    /// The FIB generation the maps hold (None: never synced).
    synced: Option<u64>,
    /// Per CPU, mirrored by `publisher` for the metrics endpoint.
    per_cpu: Vec<Arc<SharedCounters>>,
    publisher: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl XdpBackend {
    /// Resolves the plan's interfaces (in port order) and creates the fast path's maps.
    pub fn open(plan: &Plan) -> Result<XdpBackend, BackendError> {
        // No queue check: no AF_XDP sockets.
        let classifiers = Classifiers::open(plan, Program::FastPath, |_, _| Ok(()))?;
        let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1).max(1);
        Ok(XdpBackend {
            ports: classifiers.ports(),
            fast: Arc::new(FastPath::create()?),
            classifiers,
            synced: None,
            per_cpu: (0..cpus)
                .map(|_| Arc::new(SharedCounters::default()))
                .collect(),
            publisher: None,
        })
    }

    /// Reads the per-CPU counters as the pipeline's `Counters`, one per CPU.
    fn read_counters(fast: &FastPath) -> Vec<(usize, Counters)> {
        match fast.stats() {
            Ok(s) => per_cpu_counters(&s),
            Err(_) => Vec::new(),
        }
    }
}

/// The fast path's per-CPU counts under the pipeline's names.
pub fn per_cpu_counters(s: &FastPathStats) -> Vec<(usize, Counters)> {
    s.per_cpu
        .iter()
        .enumerate()
        .map(|(cpu, v)| {
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            let mut c = Counters {
                forwarded: get(FwdStat::Forwarded as usize),
                encapsulated: get(FwdStat::Encapsulated as usize),
                decapsulated: get(FwdStat::Decapsulated as usize),
                forwarded_bytes: get(FwdStat::ForwardedBytes as usize),
                encapsulated_bytes: get(FwdStat::EncapsulatedBytes as usize),
                decapsulated_bytes: get(FwdStat::DecapsulatedBytes as usize),
                to_kernel: get(FwdStat::Fallback as usize),
                checksums_completed: get(FwdStat::ChecksumsCompleted as usize),
                ..Counters::default()
            };
            for r in DropReason::ALL {
                c.drops[r as usize] = get(r as usize);
            }
            c.tx = c.forwarded + c.encapsulated;
            c.rx = c.tx + c.to_kernel + get(FwdStat::Dropped as usize);
            (cpu, c)
        })
        .collect()
}

impl Backend for XdpBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Xdp
    }

    fn ports(&self) -> &Ports {
        &self.ports
    }

    fn kernel_slow_path(&self) -> bool {
        true
    }

    fn remember_kernel_answers(&mut self, conntrack: bool) {
        self.classifiers.remember_kernel_answers(conntrack);
    }

    fn forget_kernel_answers(&self) {
        if let Err(e) = super::afxdp::xdp::forget_kernel_answers() {
            tracing::debug!(error = %e, "resetting the XDP programs' flow cache");
        }
    }

    fn start(
        &mut self,
        plan: &Plan,
        _node: NodeParams,
        _fib: &Fib,
        vtep_ifindex: u32,
    ) -> Result<(), BackendError> {
        tracing::info!(interfaces = plan.ports.len(), "loading the XDP fast path");
        // Egress ports first: a route is only followed to a port with a devmap entry.
        let egress: Vec<(crate::nexthop::PortId, u32)> = plan
            .ports
            .iter()
            .zip(&self.ports.ifindex)
            .map(|(p, i)| (p.id, *i))
            .collect();
        self.fast.set_ports(&egress)?;
        // The programs forward what they own themselves, from the fast path's maps.
        let mut ownership = self.classifiers.ownership(plan);
        ownership.forward = true;
        let fast = &self.fast;
        self.classifiers
            .load(plan, vtep_ifindex, &ownership, |iface, role, settings| {
                Classifier::load_fast_path(iface, role, settings, fast)
            })?;
        // Until the FIB is copied (`fib_changed`, right after this) the maps are empty
        // and every owned frame goes to the kernel.
        self.classifiers.attach(plan.dataplane.xdp_mode)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (fast, per_cpu, flag) = (self.fast.clone(), self.per_cpu.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("podfwd-xdpstats".into())
            .spawn(move || {
                // Relaxed: the flag only needs to be seen eventually.
                while !flag.load(Ordering::Relaxed) {
                    for (cpu, c) in Self::read_counters(&fast) {
                        if let Some(s) = per_cpu.get(cpu) {
                            s.publish(&c);
                        }
                    }
                    std::thread::sleep(PUBLISH_EVERY);
                }
            })
            .map_err(|e| BackendError::Worker {
                core: 0,
                why: format!("starting the counter publisher: {e}"),
            })?;
        self.publisher = Some((stop, thread));
        tracing::info!("XDP fast path attached");
        Ok(())
    }

    fn fib_changed(&mut self, fib: &FibWriter) -> Result<(), BackendError> {
        if self.synced == Some(fib.generation()) {
            return Ok(());
        }
        self.fast.sync(fib)?;
        self.synced = Some(fib.generation());
        Ok(())
    }

    fn apply_routes(&mut self, plan: &Plan) -> Result<(), BackendError> {
        self.classifiers.apply_routes(plan)
    }

    fn vtep_changed(&mut self, vtep_ifindex: u32) {
        self.classifiers.vtep_changed(vtep_ifindex);
    }

    fn trace_into(&mut self, _hub: crate::trace::TraceHub) {
        // The program runs in the kernel: `podfwd trace` sees no frames of this backend.
    }

    fn worker_sources(&self) -> Vec<crate::metrics::WorkerSource> {
        self.per_cpu
            .iter()
            .enumerate()
            .map(|(core, c)| crate::metrics::WorkerSource {
                core,
                counters: c.clone(),
            })
            .collect()
    }

    fn drain_misses(&mut self, _out: &mut Vec<Ipv4Addr>) {
        // Unresolved next hops go to the kernel, which resolves them itself.
    }

    fn stats(&self, uptime: Duration) -> StatsReply {
        self.classifiers
            .report(StatsReply::new(uptime, &self.worker_counters()))
    }

    fn worker_counters(&self) -> Vec<(usize, Counters)> {
        Self::read_counters(&self.fast)
    }

    fn ended_worker(&self) -> Option<usize> {
        None
    }

    fn stop(self: Box<Self>) -> (Counters, Result<(), BackendError>) {
        let this = *self;
        if let Some((stop, thread)) = this.publisher {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
        let mut total = Counters::default();
        for (_, c) in Self::read_counters(&this.fast) {
            total.merge(&c);
        }
        // Detach (fail-open to the kernel path).
        drop(this.classifiers);
        (total, Ok(()))
    }
}
