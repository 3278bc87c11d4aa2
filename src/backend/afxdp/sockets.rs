//! AF_XDP sockets: one UMEM per worker shared by its sockets on every interface, and
//! their rings.
//!
//! Each worker owns one UMEM shared by its sockets on every interface podfwd serves (one
//! socket per (interface, queue) it is assigned). A frame received on one interface is
//! transmitted from the same UMEM frame on another: no copy between sockets (the kernel
//! allows XDP_SHARED_UMEM across devices, with a fill/completion ring pair per device
//! and queue). On veth the kernel runs AF_XDP in copy mode, so it copies into and out of
//! the UMEM; podfwd itself copies nothing except when a frame's start moves (see
//! [`Worker`]). The loop is run to completion:
//!
//! completions -> refill fill rings -> rx batch -> pipeline -> tx batches per port ->
//! kick tx (need_wakeup) -> publish counters; idle: poll() or busy-spin.
//!
//! Nothing is allocated, locked or formatted per packet; the syscalls are the tx kick
//! (once per batch per port, only when the ring asks for it) and poll() when idle.

use crate::nexthop::PortId;
use crate::pipeline::MAX_BATCH;
use std::io;
use std::num::NonZeroU32;
use std::os::unix::io::{AsRawFd, RawFd};
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// UMEM frame size: room for a 1500-byte MTU frame, VXLAN overhead and the kernel's
/// 256-byte XDP headroom, which the pipeline writes outer headers into.
pub const FRAME_SIZE: u32 = 4096;

/// One (interface, queue) a worker serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBinding {
    pub port: PortId,
    pub ifname: String,
    pub queue: u32,
}

/// Socket and ring settings (from `[dataplane]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketSettings {
    pub batch_size: usize,
    pub frame_count: u32,
    pub rx_ring_size: u32,
    pub tx_ring_size: u32,
    pub fill_ring_size: u32,
    pub comp_ring_size: u32,
    pub busy_poll: bool,
}

/// Errors creating the AF_XDP sockets.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error("invalid AF_XDP setting {what} = {value}: {why}")]
    Setting {
        what: &'static str,
        value: u64,
        why: String,
    },
    #[error("creating the UMEM ({frames} frames of {FRAME_SIZE} bytes): {source}")]
    Umem { frames: u32, source: io::Error },
    #[error("creating the AF_XDP socket on {ifname} queue {queue}: {source}{hint}")]
    Socket {
        ifname: String,
        queue: u32,
        source: io::Error,
        hint: &'static str,
    },
}

fn hint_for(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (AF_XDP needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF: run as root)"
        }
        Some(libc::EAFNOSUPPORT) => " (this kernel has no AF_XDP support: CONFIG_XDP_SOCKETS)",
        Some(libc::EINVAL) => " (is the queue index below the interface's queue count?)",
        Some(libc::ENODEV) | Some(libc::ENXIO) => " (no such interface in this network namespace)",
        Some(libc::EBUSY) => " (another AF_XDP socket is bound to this queue)",
        _ => "",
    }
}

/// The sockets of one (interface, queue) inside a worker.
pub(super) struct PortQueue {
    pub(super) port: PortId,
    pub(super) rx: RxQueue,
    pub(super) tx: TxQueue,
    pub(super) fq: FillQueue,
    pub(super) cq: CompQueue,
    pub(super) fd: RawFd,
    /// Frames staged for transmission on this port in the current batch.
    pub(super) stage: Vec<FrameDesc>,
}

/// A worker's UMEM and sockets, created by the control thread (so errors surface before
/// the data path starts) and then moved into the worker thread.
pub struct WorkerSockets {
    pub(super) umem: Umem,
    pub(super) free: Vec<FrameDesc>,
    pub(super) queues: Vec<PortQueue>,
    pub(super) settings: SocketSettings,
    /// Fill-ring target per socket, so frames remain for frames in flight.
    pub(super) fill_target: usize,
}

fn qsize(what: &'static str, v: u32) -> Result<QueueSize, AfXdpError> {
    QueueSize::new(v).map_err(|e| AfXdpError::Setting {
        what,
        value: u64::from(v),
        why: e.to_string(),
    })
}

impl WorkerSockets {
    /// Creates one UMEM and a socket per binding (the XDP program must not be loaded by
    /// libxdp: podfwd attaches its own classifier and registers the socket fds in it).
    pub fn new(settings: SocketSettings, bindings: &[QueueBinding]) -> Result<Self, AfXdpError> {
        if settings.batch_size == 0 || settings.batch_size > MAX_BATCH {
            return Err(AfXdpError::Setting {
                what: "batch_size",
                value: settings.batch_size as u64,
                why: format!("must be 1..={MAX_BATCH}"),
            });
        }
        let frames = NonZeroU32::new(settings.frame_count).ok_or(AfXdpError::Setting {
            what: "frame_count",
            value: 0,
            why: "must be positive".into(),
        })?;
        let umem_cfg = UmemConfig::builder()
            .frame_size(FrameSize::new(FRAME_SIZE).map_err(|e| AfXdpError::Setting {
                what: "frame_size",
                value: u64::from(FRAME_SIZE),
                why: e.to_string(),
            })?)
            .fill_queue_size(qsize("fill_ring_size", settings.fill_ring_size)?)
            .comp_queue_size(qsize("comp_ring_size", settings.comp_ring_size)?)
            .frame_headroom(0)
            .build()
            .map_err(|e| AfXdpError::Setting {
                what: "umem",
                value: 0,
                why: e.to_string(),
            })?;
        let (umem, free) = Umem::new(umem_cfg, frames, false).map_err(|e| AfXdpError::Umem {
            frames: settings.frame_count,
            source: io::Error::other(e.to_string()),
        })?;
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(qsize("rx_ring_size", settings.rx_ring_size)?)
            .tx_queue_size(qsize("tx_ring_size", settings.tx_ring_size)?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        let mut queues = Vec::with_capacity(bindings.len());
        for b in bindings {
            let sock_err = |source: io::Error| AfXdpError::Socket {
                ifname: b.ifname.clone(),
                queue: b.queue,
                hint: hint_for(&source),
                source,
            };
            let ifname: Interface = b
                .ifname
                .parse()
                .map_err(|_| sock_err(io::Error::from_raw_os_error(libc::ENODEV)))?;
            // SAFETY: every (interface, queue) is bound once per UMEM (the plan has no
            // duplicate interfaces, and queues are distinct), and libxdp's program
            // loading is inhibited, as xsk-rs requires for shared UMEMs.
            let (tx, rx, fqcq) = unsafe { Socket::new(sock_cfg, &umem, &ifname, b.queue) }
                .map_err(|e| {
                    let os = std::error::Error::source(&e)
                        .and_then(|s| s.downcast_ref::<io::Error>())
                        .and_then(io::Error::raw_os_error);
                    match os {
                        Some(code) => sock_err(io::Error::from_raw_os_error(code)),
                        None => sock_err(io::Error::other(e.to_string())),
                    }
                })?;
            let (fq, cq) = fqcq.ok_or_else(|| {
                sock_err(io::Error::other("libxdp returned no fill/completion rings"))
            })?;
            let fd = rx.fd().as_raw_fd();
            queues.push(PortQueue {
                port: b.port,
                rx,
                tx,
                fq,
                cq,
                fd,
                stage: Vec::with_capacity(MAX_BATCH),
            });
        }
        let n = bindings.len().max(1);
        // Half the frames wait in fill rings, half are free for frames in flight on tx.
        let fill_target = (settings.frame_count as usize / (2 * n))
            .min(settings.fill_ring_size as usize)
            .max(1);
        Ok(WorkerSockets {
            umem,
            free,
            queues,
            settings,
            fill_target,
        })
    }

    /// The (port, queue index in bindings order, socket fd) to register in the XSKMAP.
    pub fn fds(&self) -> Vec<(PortId, RawFd)> {
        self.queues.iter().map(|q| (q.port, q.fd)).collect()
    }
}
