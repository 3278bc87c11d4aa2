//! The AF_XDP backend (`backend = "afxdp"`): an XDP classifier on every interface podfwd
//! serves redirects the frames podfwd owns to AF_XDP sockets; one pinned worker per
//! configured core runs the pipeline over them. Everything else goes to the kernel's
//! slow path, which the control plane programs as flanneld would.
//!
//! - [`classifiers`]: the per-port XDP programs and what they share (also the `xdp`
//!   backend's).
//! - [`sockets`]: the UMEM and the AF_XDP sockets of one worker.
//! - [`worker`]: the per-core loop.
//! - [`xdp`]: the classifier (embedded object, map ABI, attach, stats).
//!
//! The classifiers are attached through bpf_links, so even a SIGKILLed instance leaves
//! the node on the kernel path.

pub mod classifiers;
pub mod sockets;
pub mod worker;
pub mod xdp;

pub use classifiers::{Classifiers, Program};
pub use sockets::{AfXdpError, QueueBinding, SocketSettings, WorkerSockets, FRAME_SIZE};
pub use worker::{kick_tx, wait_idle, Misses, Worker};

use super::{Backend, BackendError, Ports, Workers};
use crate::config::Backend as BackendKind;
use crate::control::StatsReply;
use crate::counters::{Counters, SharedCounters};
use crate::handoff::Handoff;
use crate::pipeline::{Fib, NodeParams, Pipeline};
use crate::plan::Plan;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use xdp::Classifier;

/// The AF_XDP data path of one node.
pub struct AfXdp {
    ports: Ports,
    classifiers: Classifiers,
    workers: Workers,
    /// Per worker (same order): its misses ring and how far it was read.
    misses: Vec<(Arc<Misses>, usize)>,
    /// Where the workers' tracers come from ([`Backend::trace_into`]).
    trace: Option<crate::trace::TraceHub>,
}

impl AfXdp {
    /// Resolves the plan's interfaces (in port order) and checks their queues.
    pub fn open(plan: &Plan) -> Result<AfXdp, BackendError> {
        let queues = u32::from(plan.dataplane.queues);
        let classifiers = Classifiers::open(plan, Program::Classifier, |port, i| {
            if i.num_rx_queues < queues {
                return Err(BackendError::Interface {
                    name: port.name.clone(),
                    why: format!(
                        "has {} rx queues, dataplane.queues = {queues} (create veths with numrxqueues/numtxqueues, or lower queues)",
                        i.num_rx_queues
                    ),
                });
            }
            Ok(())
        })?;
        Ok(AfXdp {
            ports: classifiers.ports(),
            classifiers,
            trace: None,
            workers: Workers::default(),
            misses: Vec::new(),
        })
    }
}

impl Backend for AfXdp {
    fn kind(&self) -> BackendKind {
        BackendKind::AfXdp
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
        if let Err(e) = xdp::forget_kernel_answers() {
            // Asked every second and on each kernel change: rate-limited.
            static FAILED: std::sync::Mutex<Option<crate::log::RateLimit<()>>> =
                std::sync::Mutex::new(None);
            let mut failed = FAILED.lock().unwrap_or_else(|e| e.into_inner());
            let limit =
                failed.get_or_insert_with(|| crate::log::RateLimit::new(crate::log::WARN_EVERY));
            crate::warn_limited!(limit, (), error = %e, "resetting the classifiers' flow cache");
        }
    }

    fn start(
        &mut self,
        plan: &Plan,
        node: NodeParams,
        fib: &Fib,
        vtep_ifindex: u32,
    ) -> Result<(), BackendError> {
        tracing::info!(interfaces = plan.ports.len(), "loading the XDP classifier");
        // A hand-off device takes what turns out exceptional in a worker.
        let handoff = Arc::new(Handoff::open()?);

        // Classifiers (loaded, configured, not yet attached): they redirect what they
        // own to the sockets registered below.
        let ownership = self.classifiers.ownership(plan);
        self.classifiers
            .load(plan, vtep_ifindex, &ownership, Classifier::load)?;

        // Workers: queue q of every interface goes to worker q % workers.
        let cores = plan.dataplane.cores.clone();
        let queues = u32::from(plan.dataplane.queues);
        if cores.len() > queues as usize {
            return Err(BackendError::Cores {
                cores,
                why: format!("more workers than queues ({queues}): raise dataplane.queues"),
            });
        }
        let available = core_affinity::get_core_ids().unwrap_or_default();
        for c in &cores {
            if !available.iter().any(|id| id.id == *c) {
                return Err(BackendError::Cores {
                    cores: cores.clone(),
                    why: format!("cpu {c} is not available to this process"),
                });
            }
        }
        let dp = &plan.dataplane;
        let sock_settings = SocketSettings {
            batch_size: dp.batch_size,
            frame_count: dp.frame_count,
            rx_ring_size: dp.rx_ring_size,
            tx_ring_size: dp.tx_ring_size,
            fill_ring_size: dp.fill_ring_size,
            comp_ring_size: dp.comp_ring_size,
            busy_poll: dp.busy_poll,
        };
        let mut worker_sockets = Vec::with_capacity(cores.len());
        for w in 0..cores.len() {
            let mut bindings = Vec::new();
            for q in (0..queues).filter(|q| *q as usize % cores.len() == w) {
                for port in &plan.ports {
                    bindings.push(QueueBinding {
                        port: port.id,
                        ifname: port.name.clone(),
                        queue: q,
                    });
                }
            }
            let sockets = WorkerSockets::new(sock_settings, &bindings)?;
            for ((port, fd), b) in sockets.fds().into_iter().zip(&bindings) {
                self.classifiers
                    .of_port(port)
                    .register_socket(b.queue, fd)?;
            }
            worker_sockets.push(sockets);
        }

        tracing::info!(workers = cores.len(), "AF_XDP workers ready; attaching");
        // Attach: from here on podfwd owns the traffic the classifiers select.
        self.classifiers.attach(dp.xdp_mode)?;

        for (sockets, core) in worker_sockets.into_iter().zip(cores.iter().copied()) {
            let shared = Arc::new(SharedCounters::default());
            let misses = Arc::new(Misses::default());
            let mut worker = Worker::new(
                sockets,
                Pipeline::new(node, fib.clone()),
                shared.clone(),
                misses.clone(),
                Some(handoff.clone()),
            );
            if let Some(hub) = &self.trace {
                worker = worker.with_tracer(hub.tracer(u16::try_from(core).unwrap_or(u16::MAX)));
            }
            self.workers.spawn(
                format!("podfwd-w{core}"),
                core,
                dp.worker_priority,
                shared,
                move |stop| worker.run(stop),
            )?;
            self.misses.push((misses, 0));
        }
        Ok(())
    }

    fn apply_routes(&mut self, plan: &Plan) -> Result<(), BackendError> {
        self.classifiers.apply_routes(plan)
    }

    fn vtep_changed(&mut self, vtep_ifindex: u32) {
        self.classifiers.vtep_changed(vtep_ifindex);
    }

    fn drain_misses(&mut self, out: &mut Vec<Ipv4Addr>) {
        let mut raw = Vec::new();
        for (m, seen) in &mut self.misses {
            m.drain(seen, &mut raw);
        }
        out.extend(raw.into_iter().map(Ipv4Addr::from));
    }

    fn stats(&self, uptime: Duration) -> StatsReply {
        self.classifiers
            .report(StatsReply::new(uptime, &self.workers.counters()))
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
        // Stop the workers, then detach (fail-open to the kernel path).
        let out = this.workers.stop();
        drop(this.classifiers);
        out
    }
}
