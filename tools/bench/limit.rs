//! The reference forwarders of the limit scenarios (issue 12): what a path can do at all
//! on veth, run on node A in place of podfwd, so every podfwd figure can be read as a
//! fraction of its own path's limit as well as against the kernel.
//!
//! - `podfwd-bench limit-afxdp`: a bare copy-mode AF_XDP forwarder with podfwd's socket
//!   settings (`[dataplane]` defaults: batch 64, rings 2048, 4096 frames of 4096 bytes,
//!   need_wakeup, poll() when idle, the same tx kick loop, SCHED_FIFO at podfwd's default
//!   worker priority) and podfwd's memory layout:
//!   one UMEM shared by the sockets on both interfaces, so a frame is transmitted from the
//!   UMEM frame it was received into (no copy in userspace). Per frame it only writes the
//!   12 MAC bytes. `xsk_limit` (bpf/xdp_limit.bpf.c) redirects every IPv4 frame to the
//!   sockets; ARP goes to the kernel.
//! - `podfwd-bench limit-xdp`: `xdp_limit` on both interfaces: MACs, TTL - 1 and
//!   `bpf_redirect()` to the other interface, in the kernel's NAPI poll.
//!
//! Both forward both ways (frames received on interface `i` leave on the other with the
//! MAC pair `macs[i]`), run until SIGINT/SIGTERM or until killed (the bpf_links die with
//! the process, which detaches the programs), and print `ready` once attached.

use libbpf_rs::{Link, MapCore, MapFlags, Object, ObjectBuilder};
use std::io;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

/// Keeps `include_bytes!` data 8-byte aligned: libelf reads ELF headers in place.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/xdp_limit.bpf.o"
)));

/// podfwd's UMEM frame size (src/backend/afxdp/sockets.rs).
const FRAME_SIZE: u32 = podfwd::backend::afxdp::FRAME_SIZE;

/// The new destination and source MAC of frames received on one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacPair {
    pub dst: [u8; 6],
    pub src: [u8; 6],
}

impl MacPair {
    /// The 12 bytes that start the rewritten Ethernet header.
    fn header(&self) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[..6].copy_from_slice(&self.dst);
        h[6..].copy_from_slice(&self.src);
        h
    }
}

/// Two interfaces in the calling process's namespace; `macs[i]` rewrites what arrives on
/// `ifaces[i]` before it leaves on the other one.
#[derive(Debug, Clone)]
pub struct LimitSpec {
    pub ifaces: [String; 2],
    pub macs: [MacPair; 2],
    /// CPU to pin the AF_XDP forwarder to (node A's forwarding CPU).
    pub cpu: usize,
}

fn ifindex(name: &str) -> Result<u32, String> {
    let c = std::ffi::CString::new(name).map_err(|_| format!("bad interface name {name:?}"))?;
    // SAFETY: a NUL-terminated name that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(format!("interface {name}: {}", io::Error::last_os_error()));
    }
    Ok(i)
}

/// Loads one instance of the object (its own `config` and `xsks` maps) for `iface`.
fn load(iface: &str) -> Result<Object, String> {
    ObjectBuilder::default()
        .open_memory(&OBJECT.0)
        .and_then(|o| o.load())
        .map_err(|e| format!("loading bpf/xdp_limit.bpf.o for {iface}: {e:#}"))
}

fn attach(obj: &mut Object, prog: &str, iface: &str) -> Result<Link, String> {
    let idx = ifindex(iface)?;
    let p = obj
        .progs_mut()
        .find(|p| p.name() == prog)
        .ok_or_else(|| format!("program {prog} missing from xdp_limit.bpf.o"))?;
    p.attach_xdp(idx as i32)
        .map_err(|e| format!("attaching {prog} to {iface}: {e:#}"))
}

fn update(obj: &Object, map: &str, key: &[u8], value: &[u8], iface: &str) -> Result<(), String> {
    obj.maps()
        .find(|m| m.name() == map)
        .ok_or_else(|| format!("map {map} missing from xdp_limit.bpf.o"))?
        .update(key, value, MapFlags::ANY)
        .map_err(|e| format!("writing map {map} for {iface}: {e:#}"))
}

/// `xdp_limit` on both interfaces until `stop`.
pub fn run_xdp(spec: &LimitSpec, stop: &AtomicBool) -> Result<(), String> {
    let mut held = Vec::new();
    for i in 0..2 {
        let (iface, out) = (&spec.ifaces[i], &spec.ifaces[1 - i]);
        let mut obj = load(iface)?;
        // struct limit_config: dst_mac[6], src_mac[6], out_ifindex (u32, at offset 12).
        let mut cfg = [0u8; 16];
        cfg[..12].copy_from_slice(&spec.macs[i].header());
        cfg[12..].copy_from_slice(&ifindex(out)?.to_ne_bytes());
        update(&obj, "config", &0u32.to_ne_bytes(), &cfg, iface)?;
        let link = attach(&mut obj, "xdp_limit", iface)?;
        held.push((obj, link));
    }
    println!("ready");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// One socket's rings.
struct Port {
    rx: RxQueue,
    tx: TxQueue,
    fq: FillQueue,
    cq: CompQueue,
    /// Frames to send on this port in the current batch.
    stage: Vec<FrameDesc>,
}

/// What the AF_XDP forwarder moved (printed as JSON when it stops).
#[derive(Debug, Default, serde::Serialize)]
pub struct AfXdpTotals {
    pub rx: u64,
    pub tx: u64,
    /// Frames dropped because the other socket's tx ring was full.
    pub tx_ring_full: u64,
    pub kicks: u64,
}

fn qsize(what: &str, v: u32) -> Result<QueueSize, String> {
    QueueSize::new(v).map_err(|e| format!("{what} = {v}: {e}"))
}

/// The bare AF_XDP forwarder until `stop`.
pub fn run_afxdp(spec: &LimitSpec, stop: &AtomicBool) -> Result<AfXdpTotals, String> {
    crate::gen::pin_pid(0, spec.cpu).map_err(|e| format!("pinning to CPU {}: {e}", spec.cpu))?;
    // podfwd's defaults, so the limit is of the same socket set-up.
    let d = podfwd::config::Dataplane::default();
    // And podfwd's scheduling: SCHED_FIFO at its default worker priority, so the
    // forwarder wins the core from NAPI as podfwd's worker does (docs/afxdp.md, "Worker
    // priority"); under the normal scheduler NAPI copies frames the full ring drops.
    let param = libc::sched_param {
        sched_priority: i32::from(d.worker_priority),
    };
    // SAFETY: `param` is valid for the call; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        return Err(format!(
            "SCHED_FIFO {}: {}",
            d.worker_priority,
            std::io::Error::last_os_error()
        ));
    }
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(FRAME_SIZE).map_err(|e| format!("frame size: {e}"))?)
        .fill_queue_size(qsize("fill ring", d.fill_ring_size)?)
        .comp_queue_size(qsize("completion ring", d.comp_ring_size)?)
        .frame_headroom(0)
        .build()
        .map_err(|e| format!("UMEM config: {e}"))?;
    let frames = NonZeroU32::new(d.frame_count).ok_or("frame_count is 0")?;
    let (umem, mut free) = Umem::new(umem_cfg, frames, false)
        .map_err(|e| format!("creating the UMEM ({} frames): {e}", d.frame_count))?;
    let sock_cfg = SocketConfig::builder()
        .rx_queue_size(qsize("rx ring", d.rx_ring_size)?)
        .tx_queue_size(qsize("tx ring", d.tx_ring_size)?)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
        .build();
    let mut ports = Vec::with_capacity(2);
    let mut held = Vec::with_capacity(2);
    for iface in &spec.ifaces {
        let name: Interface = iface
            .parse()
            .map_err(|_| format!("interface name {iface:?}"))?;
        // SAFETY: each interface's queue 0 is bound once to this UMEM, and libxdp's
        // program loading is inhibited, as xsk-rs requires for shared UMEMs.
        let (tx, rx, fqcq) = unsafe { xsk_rs::Socket::new(sock_cfg, &umem, &name, 0) }
            .map_err(|e| format!("AF_XDP socket on {iface} queue 0: {e}"))?;
        let (fq, cq) = fqcq.ok_or_else(|| format!("{iface}: no fill/completion rings"))?;
        let mut obj = load(iface)?;
        let fd = rx.fd().as_raw_fd() as u32;
        update(&obj, "xsks", &0u32.to_ne_bytes(), &fd.to_ne_bytes(), iface)?;
        let link = attach(&mut obj, "xsk_limit", iface)?;
        held.push((obj, link));
        ports.push(Port {
            rx,
            tx,
            fq,
            cq,
            stage: Vec::with_capacity(d.batch_size),
        });
    }
    // As podfwd: half the frames wait in fill rings, half are free for frames in flight.
    let fill_target = (d.frame_count as usize / 4).min(d.fill_ring_size as usize);
    let batch = d.batch_size;
    let mut descs = vec![FrameDesc::default(); batch];
    let headers = [spec.macs[0].header(), spec.macs[1].header()];
    let mut totals = AfXdpTotals::default();
    let mut pollfds: Vec<libc::pollfd> = ports
        .iter()
        .map(|p| libc::pollfd {
            fd: p.rx.fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    println!("ready");
    // Relaxed: the flag carries no data.
    while !stop.load(Ordering::Relaxed) {
        let mut work = 0;
        for q in 0..2 {
            // Completions back to the free pool.
            loop {
                // SAFETY: the completion ring belongs to this UMEM.
                let n = unsafe { ports[q].cq.consume(&mut descs) };
                free.extend_from_slice(&descs[..n]);
                if n < descs.len() {
                    break;
                }
            }
            // Fill ring topped up to its target.
            let ring = d.fill_ring_size;
            let p = &mut ports[q];
            let free_slots = p.fq.nb_free(ring) as usize;
            let in_ring = ring as usize - free_slots.min(ring as usize);
            let want = fill_target
                .saturating_sub(in_ring)
                .min(free_slots)
                .min(free.len());
            if want > 0 {
                let from = free.len() - want;
                // SAFETY: frames of this UMEM's free pool: nobody else uses them.
                if unsafe { p.fq.produce(&free[from..]) } > 0 {
                    free.truncate(from);
                }
            }
            // One rx batch, MACs rewritten, staged on the other port.
            // SAFETY: the rx ring belongs to this UMEM.
            let n = unsafe { ports[q].rx.consume(&mut descs) };
            if n == 0 {
                continue;
            }
            work += n;
            totals.rx += n as u64;
            for desc in descs[..n].iter_mut() {
                // SAFETY: the frame was just consumed from the rx ring: the kernel no
                // longer writes it and nothing else refers to it until it is staged.
                let mut data = unsafe { umem.data_mut(desc) };
                if let Some(h) = data.contents_mut().get_mut(..12) {
                    h.copy_from_slice(&headers[q]);
                }
                ports[1 - q].stage.push(*desc);
            }
            let out = &mut ports[1 - q];
            let room = out.tx.nb_free(out.stage.len() as u32) as usize;
            let k = room.min(out.stage.len());
            // SAFETY: the staged frames belong to this UMEM and are ours.
            let sent = if k > 0 {
                unsafe { out.tx.produce(&out.stage[..k]) }
            } else {
                0
            };
            totals.tx += sent as u64;
            if sent < out.stage.len() {
                totals.tx_ring_full += (out.stage.len() - sent) as u64;
                free.extend_from_slice(&out.stage[sent..]);
            }
            out.stage.clear();
            if sent > 0 {
                // podfwd's kick loop: copy mode sends at most 32 frames per kick.
                totals.kicks += podfwd::backend::afxdp::kick_tx(&mut out.tx, d.tx_ring_size)
                    .map_err(|e| format!("tx kick on {}: {e}", spec.ifaces[1 - q]))?;
            }
        }
        if work > 0 {
            continue;
        }
        podfwd::backend::afxdp::wait_idle(&mut pollfds).map_err(|e| format!("poll: {e}"))?;
    }
    drop(held);
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rewritten_header_is_destination_then_source() {
        let m = MacPair {
            dst: [2, 0, 0, 0, 0, 0xb1],
            src: [2, 0, 0, 0, 0, 0xa1],
        };
        assert_eq!(m.header(), [2, 0, 0, 0, 0, 0xb1, 2, 0, 0, 0, 0, 0xa1]);
    }

    #[test]
    fn the_object_has_both_programs_and_their_maps() {
        // Opening (not loading) needs no privileges.
        let o = ObjectBuilder::default()
            .open_memory(&OBJECT.0)
            .expect("opens");
        let progs: Vec<String> = o
            .progs()
            .map(|p| p.name().to_string_lossy().into_owned())
            .collect();
        assert!(progs.contains(&"xdp_limit".to_string()), "{progs:?}");
        assert!(progs.contains(&"xsk_limit".to_string()), "{progs:?}");
        let maps: Vec<String> = o
            .maps()
            .map(|m| m.name().to_string_lossy().into_owned())
            .collect();
        assert!(maps.iter().any(|m| m == "config") && maps.iter().any(|m| m == "xsks"));
    }
}
