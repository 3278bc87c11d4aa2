//! Handing frames back to the kernel: the AF_XDP backend's way to the slow path for a
//! frame that turned out exceptional after the classifier gave it to a worker.
//!
//! The classifier passes every frame the kernel must handle (see docs/xdp.md), but the
//! state it decided on can change before the worker runs: a neighbour entry goes stale
//! or is flushed, a route is being replaced, podfwd's FIB lags the kernel's by a
//! moment. Such a frame is not dropped: its IP packet is written to a TUN device
//! (`podfwd-slow`, no address, no routes), which the kernel receives exactly like a
//! packet from the wire and routes with its own tables: it queues it while it resolves
//! the neighbour (the kernel's `unres_qlen_bytes` queue, whose overflow it counts in
//! `/proc/net/stat/arp_cache` as `unresolved_discards`), answers ICMP (time exceeded,
//! frag needed), fragments, or hands it to its VXLAN device. See docs/slow-path.md.
//!
//! The device needs reverse-path filtering off or loose (a pod's address is routed
//! elsewhere): [`Handoff::open`] sets its own `rp_filter` to 0 and warns when
//! `net.ipv4.conf.all.rp_filter` is strict, since the kernel uses the larger value.

use crate::backend::tun::device::TunDevice;
use crate::backend::tun::TunError;
use std::io;
use std::os::fd::RawFd;

/// Name of the hand-off device (per network namespace).
pub const DEVICE: &str = "podfwd-slow";

/// The hand-off device. Writes are non-blocking and atomic per packet, so workers
/// share it.
pub struct Handoff {
    dev: TunDevice,
    fd: RawFd,
}

impl Handoff {
    /// Creates the device (or attaches to a leftover of a killed instance), brings it
    /// up and turns its reverse-path filter off.
    pub fn open() -> Result<Handoff, TunError> {
        let dev = TunDevice::create(DEVICE, 9000, 1, false)?;
        let fd = dev.fd(0);
        let path = format!("/proc/sys/net/ipv4/conf/{DEVICE}/rp_filter");
        if let Err(e) = std::fs::write(&path, "0") {
            tracing::warn!(sysctl = %path, error = %e, "cannot turn the hand-off device's rp_filter off");
        }
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{DEVICE}/disable_ipv6"),
            "1",
        );
        if std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter")
            .is_ok_and(|v| v.trim() == "1")
        {
            tracing::warn!(
                sysctl = "net.ipv4.conf.all.rp_filter",
                value = 1,
                interface = DEVICE,
                "strict reverse-path filtering: the kernel drops frames podfwd hands back to it \
                 through the hand-off device; use 0 or 2 (loose)"
            );
        }
        Ok(Handoff { dev, fd })
    }

    /// The device's interface index.
    pub fn ifindex(&self) -> u32 {
        self.dev.index()
    }

    /// Gives the IPv4 packet `ip` to the kernel, as if it had arrived from the wire.
    #[inline]
    pub fn send(&self, ip: &[u8]) -> io::Result<()> {
        // SAFETY: `fd` is the TUN queue owned by `self.dev`, open for as long as `self`;
        // the buffer is valid for `ip.len()` bytes.
        let n = unsafe { libc::write(self.fd, ip.as_ptr().cast(), ip.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
