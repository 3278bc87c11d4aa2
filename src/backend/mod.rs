//! The I/O backends behind the node's one control plane ([`crate::control`]).
//!
//! A backend owns how frames get in and out (AF_XDP sockets and the XDP classifier, or a
//! TUN device and sockets) and the pinned workers that run the shared [`Pipeline`] over
//! them. Everything else (route sources, the FIB writer, neighbours, the kernel slow
//! path, the control socket, signals) is the control plane's, the same for every backend.
//!
//! The contract, in call order: [`open`] (interfaces, devices, sockets: no traffic is
//! taken yet) -> [`Backend::ports`] (what the FIB is built over) -> [`Backend::start`]
//! (workers on the shared FIB; from here the backend forwards) -> any number of
//! [`Backend::apply_routes`] / [`Backend::vtep_changed`] (live, never stopping a worker:
//! the workers read the FIB the control plane publishes) -> [`Backend::stop`].
//!
//! [`Pipeline`]: crate::pipeline::Pipeline

pub mod afxdp;
pub mod tun;
pub mod xdp;

use crate::config::Backend as BackendKind;
use crate::control::StatsReply;
use crate::counters::{Counters, SharedCounters};
use crate::pipeline::{Fib, FibWriter, NodeParams, PortInfo};
use crate::plan::Plan;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// Why a backend could not open, start or apply a change.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("interface {name}: {why}")]
    Interface { name: String, why: String },
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
    #[error(transparent)]
    Xdp(#[from] afxdp::xdp::XdpError),
    #[error(transparent)]
    AfXdp(#[from] afxdp::AfXdpError),
    #[error(transparent)]
    Tun(#[from] tun::TunError),
    #[error("dataplane.cores = {cores:?}: {why}")]
    Cores { cores: Vec<usize>, why: String },
    #[error("worker on cpu {core} failed: {why}")]
    Worker { core: usize, why: String },
}

/// The ports a backend forwards between, in FIB port-id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// MAC and MTU of each port (the FIB's rewrite data).
    pub info: Vec<PortInfo>,
    /// The kernel ifindex whose neighbour table feeds each port; 0 for a port without
    /// neighbours (the TUN device).
    pub ifindex: Vec<u32>,
    /// The kernel's UDP socket sends this backend's VXLAN (TUN): the outer next hops
    /// need no resolved MAC, the FIB gets a placeholder for them.
    pub kernel_sends_vxlan: bool,
}

/// One node data path: see the module documentation for the call order.
pub trait Backend {
    /// `afxdp` or `tun`, as in the config.
    fn kind(&self) -> BackendKind;
    /// The ports the FIB is built over.
    fn ports(&self) -> &Ports;
    /// Whether the node's kernel is programmed as flanneld would (VXLAN device,
    /// neighbours, FDB entries, routes) under this backend: the classifier passes what
    /// podfwd does not finish to that slow path.
    fn kernel_slow_path(&self) -> bool;
    /// Starts one pinned worker per configured core over `fib`. `vtep_ifindex` is the
    /// kernel's VXLAN device (0: none). On error the caller still calls [`Backend::stop`],
    /// which undoes what was started.
    fn start(
        &mut self,
        plan: &Plan,
        node: NodeParams,
        fib: &Fib,
        vtep_ifindex: u32,
    ) -> Result<(), BackendError>;
    /// Applies a new peer set (the FIB is already updated): what the backend keeps
    /// besides the FIB (classifier routes and VTEPs, the TUN device's kernel routes).
    /// Never stops a worker.
    fn apply_routes(&mut self, plan: &Plan) -> Result<(), BackendError>;
    /// The FIB may have changed (routes, neighbours, known VTEPs): a backend that keeps
    /// its own copy (the XDP fast path's maps) brings it up to date, live. Called after
    /// [`Backend::start`] and on every turn of the control loop.
    fn fib_changed(&mut self, _fib: &FibWriter) -> Result<(), BackendError> {
        Ok(())
    }
    /// The kernel's VXLAN device was recreated with a new ifindex.
    fn vtep_changed(&mut self, vtep_ifindex: u32);
    /// Before [`Backend::start`]: the control plane follows the kernel changes that the
    /// kernel's answers depend on and calls [`Backend::forget_kernel_answers`] on each
    /// (`conntrack`: NATed connections too), so the backend may remember those answers
    /// (the XDP classifier's flow cache). Without this call it must not.
    fn remember_kernel_answers(&mut self, _conntrack: bool) {}
    /// The kernel changed something its remembered answers depend on (or a second
    /// passed): forget them all.
    fn forget_kernel_answers(&self) {}
    /// Before [`Backend::start`]: every worker records its batches at the verdict point
    /// into its own tracer of `hub` while a `podfwd trace` client is attached.
    fn trace_into(&mut self, hub: crate::trace::TraceHub);
    /// Each worker's CPU and live counters, for the metrics endpoint (read, never
    /// written, by its thread).
    fn worker_sources(&self) -> Vec<crate::metrics::WorkerSource>;
    /// Destinations the workers dropped for lack of a MAC since the last call.
    fn drain_misses(&mut self, out: &mut Vec<Ipv4Addr>);
    /// The counters, per worker, plus what the backend counts itself.
    fn stats(&self, uptime: Duration) -> StatsReply;
    /// Each worker's counters, in core order.
    fn worker_counters(&self) -> Vec<(usize, Counters)>;
    /// The core of a worker that ended by itself (an error), if any.
    fn ended_worker(&self) -> Option<usize>;
    /// Stops the workers and releases everything the backend installed (classifiers
    /// detached, routes into the TUN removed); the counters' totals.
    fn stop(self: Box<Self>) -> (Counters, Result<(), BackendError>);
}

/// Opens the backend the plan names.
pub fn open(plan: &Plan) -> Result<Box<dyn Backend>, BackendError> {
    Ok(match plan.dataplane.backend {
        BackendKind::AfXdp => Box::new(afxdp::AfXdp::open(plan)?),
        BackendKind::Tun => Box::new(tun::TunBackend::open(plan)?),
        BackendKind::Xdp => Box::new(xdp::XdpBackend::open(plan)?),
    })
}

/// Pins the calling thread to `core` and, with `priority` > 0, makes it `SCHED_FIFO`
/// at that priority (see `config::Dataplane::worker_priority` for why).
fn settle(core: usize, priority: u8) -> Result<(), String> {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        return Err(format!("could not pin the worker thread to cpu {core}"));
    }
    if priority == 0 {
        return Ok(());
    }
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: `param` is a valid sched_param for the call; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            " (needs CAP_SYS_NICE and, in a cgroup with real-time group scheduling, a \
             real-time budget; or set dataplane.worker_priority = 0)"
        } else {
            ""
        };
        return Err(format!(
            "could not schedule the worker thread SCHED_FIFO at dataplane.worker_priority = \
             {priority}: {e}{hint}"
        ));
    }
    Ok(())
}

/// A started worker thread.
pub(crate) struct WorkerThread {
    pub core: usize,
    pub shared: Arc<SharedCounters>,
    thread: JoinHandle<std::io::Result<()>>,
}

/// The workers of a backend: spawned pinned, stopped together.
#[derive(Default)]
pub(crate) struct Workers {
    pub threads: Vec<WorkerThread>,
    stop: Arc<AtomicBool>,
}

impl Workers {
    /// Spawns `run` on a thread pinned to `core` (and, with `priority` 1..=99, scheduled
    /// `SCHED_FIFO` at that priority) and waits until it is: a worker that cannot be
    /// pinned or scheduled as asked fails the start (naming the core and why), it never
    /// runs otherwise.
    pub fn spawn(
        &mut self,
        name: String,
        core: usize,
        priority: u8,
        shared: Arc<SharedCounters>,
        run: impl FnOnce(&AtomicBool) -> std::io::Result<()> + Send + 'static,
    ) -> Result<(), BackendError> {
        let stop = self.stop.clone();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let ready = settle(core, priority);
                let _ = ready_tx.send(ready.clone());
                if let Err(why) = ready {
                    return Err(std::io::Error::other(why));
                }
                run(&stop)
            })
            .map_err(|e| BackendError::Worker {
                core,
                why: e.to_string(),
            })?;
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(format!("the worker thread for cpu {core} ended at once")));
        if let Err(why) = ready {
            let _ = thread.join();
            return Err(BackendError::Worker { core, why });
        }
        self.threads.push(WorkerThread {
            core,
            shared,
            thread,
        });
        Ok(())
    }

    pub fn sources(&self) -> Vec<crate::metrics::WorkerSource> {
        self.threads
            .iter()
            .map(|w| crate::metrics::WorkerSource {
                core: w.core,
                counters: w.shared.clone(),
            })
            .collect()
    }

    pub fn counters(&self) -> Vec<(usize, Counters)> {
        self.threads
            .iter()
            .map(|w| (w.core, w.shared.snapshot()))
            .collect()
    }

    pub fn ended(&self) -> Option<usize> {
        self.threads
            .iter()
            .find(|w| w.thread.is_finished())
            .map(|w| w.core)
    }

    /// Stops and joins every worker; the totals and the first worker error.
    pub fn stop(self) -> (Counters, Result<(), BackendError>) {
        // Relaxed: the workers only need to see the flag eventually (they check it at
        // least every 100 ms).
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Counters::default();
        let mut result = Ok(());
        for w in self.threads {
            total.merge(&w.shared.snapshot());
            let why = match w.thread.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "panicked".to_string(),
            };
            if result.is_ok() {
                result = Err(BackendError::Worker { core: w.core, why });
            }
        }
        (total, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_cannot_be_pinned_fails_naming_its_core_and_never_runs() {
        // CPU 1000 is below CPU_SETSIZE (1024) and exists on no test machine.
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let mut workers = Workers::default();
        let err = workers
            .spawn(
                "podfwd-test".into(),
                1000,
                0,
                Arc::new(SharedCounters::default()),
                move |_| {
                    r.store(true, Ordering::Relaxed);
                    Ok(())
                },
            )
            .unwrap_err();
        assert!(
            matches!(&err, BackendError::Worker { core: 1000, why } if why.contains("cpu 1000")),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("worker on cpu 1000 failed"),
            "{err}"
        );
        assert!(!ran.load(Ordering::Relaxed));
        assert!(workers.threads.is_empty());
    }

    #[test]
    fn a_worker_priority_runs_the_worker_sched_fifo_or_fails_naming_the_key() {
        let mut workers = Workers::default();
        let shared = Arc::new(SharedCounters::default());
        let seen = Arc::new(std::sync::Mutex::new(None));
        let s = seen.clone();
        let r = workers.spawn("podfwd-test".into(), 0, 3, shared, move |_| {
            let mut param = libc::sched_param { sched_priority: 0 };
            // SAFETY: pid 0 is this thread; `param` is valid for the call.
            let policy = unsafe { libc::sched_getscheduler(0) };
            // SAFETY: as above.
            unsafe { libc::sched_getparam(0, &mut param) };
            *s.lock().unwrap() = Some((policy, param.sched_priority));
            Ok(())
        });
        match r {
            Ok(()) => {
                let (_, result) = workers.stop();
                assert!(result.is_ok());
                assert_eq!(*seen.lock().unwrap(), Some((libc::SCHED_FIFO, 3)));
            }
            // Without CAP_SYS_NICE: a clear error, and the worker never ran.
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("dataplane.worker_priority = 3"), "{msg}");
                assert!(seen.lock().unwrap().is_none());
            }
        }
    }

    #[test]
    fn pinned_workers_run_until_stopped() {
        let mut workers = Workers::default();
        let shared = Arc::new(SharedCounters::default());
        workers
            .spawn("podfwd-test".into(), 0, 0, shared, |stop| {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(workers.ended(), None);
        let (_, result) = workers.stop();
        assert!(result.is_ok());
    }
}
