//! The TUN device: one descriptor per queue, with or without the offloads.

use super::TunError;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking TUN device without packet information (bare IP packets), with one
/// descriptor per queue. The kernel removes the device, and every route through it, when
/// the last descriptor is closed.
///
/// Created with our own `TUNSETIFF` rather than the tun-tap crate's: tun-tap 0.1 cannot
/// ask for `IFF_VNET_HDR` (the offloads) or `IFF_MULTI_QUEUE`.
pub struct TunDevice {
    queues: Vec<OwnedFd>,
    name: String,
    index: u32,
    offloads: Offloads,
}

/// What the TUN device was set up with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Every read and write starts with a `virtio_net_hdr` (`IFF_VNET_HDR`).
    pub vnet_hdr: bool,
    /// The kernel hands over TCP super-packets and partial checksums
    /// (`TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4)`).
    pub tso: bool,
}

/// `struct ifreq` as `TUNSETIFF` reads it: the name and the flags (the union's first
/// member); 40 bytes on 64-bit Linux.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl TunDevice {
    /// Creates (or attaches to) the TUN device `name` with `queues` queues
    /// (`IFF_MULTI_QUEUE` when more than one), sets its MTU and brings it up. With
    /// `offload`, asks for `IFF_VNET_HDR` and TSO; what the kernel refuses is turned off
    /// with a warning on stderr.
    pub fn create(
        name: &str,
        mtu: u32,
        queues: usize,
        offload: bool,
    ) -> Result<TunDevice, TunError> {
        let queues = queues.max(1);
        let create_err = |source| TunError::Create {
            name: name.to_string(),
            source,
        };
        if name.len() >= libc::IFNAMSIZ || name.is_empty() {
            return Err(create_err(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let mut base = libc::IFF_TUN | libc::IFF_NO_PI;
        if queues > 1 {
            base |= libc::IFF_MULTI_QUEUE;
        }
        let mut offloads = Offloads::default();
        let mut fds = Vec::with_capacity(queues);
        let first = match open_queue(name, base | if offload { libc::IFF_VNET_HDR } else { 0 }) {
            Ok(fd) => {
                offloads.vnet_hdr = offload;
                fd
            }
            Err(e) if offload && e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(
                    interface = name,
                    error = %e,
                    "IFF_VNET_HDR refused on the TUN device; running without segmentation offloads"
                );
                open_queue(name, base).map_err(create_err)?
            }
            Err(e) => return Err(create_err(e)),
        };
        if offloads.vnet_hdr {
            let flags = libc::TUN_F_CSUM | libc::TUN_F_TSO4;
            // SAFETY: TUNSETOFFLOAD takes its argument by value.
            let r = unsafe {
                libc::ioctl(
                    first.as_raw_fd(),
                    libc::TUNSETOFFLOAD,
                    flags as libc::c_ulong,
                )
            };
            if r < 0 {
                tracing::warn!(
                    interface = name,
                    error = %io::Error::last_os_error(),
                    "TUNSETOFFLOAD(TSO4, checksum) refused on the TUN device; the kernel \
                     segments TCP before the TUN"
                );
            } else {
                offloads.tso = true;
            }
        }
        fds.push(first);
        let flags = base
            | if offloads.vnet_hdr {
                libc::IFF_VNET_HDR
            } else {
                0
            };
        for _ in 1..queues {
            fds.push(open_queue(name, flags).map_err(create_err)?);
        }
        for fd in &fds {
            set_nonblocking(fd.as_raw_fd()).map_err(|source| TunError::Io {
                what: format!("setting TUN device {name} non-blocking"),
                source,
            })?;
        }
        // A longer queue than the TUN default (500) absorbs the kernel's bursts into it.
        let index = crate::netlink::interface(name)?.index;
        crate::netlink::set_link_up(index, mtu, 2000)?;
        Ok(TunDevice {
            queues: fds,
            name: name.to_string(),
            index,
            offloads,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// The descriptor of queue `q`.
    pub fn fd(&self, q: usize) -> RawFd {
        self.queues[q].as_raw_fd()
    }

    /// How many queues.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    pub fn offloads(&self) -> Offloads {
        self.offloads
    }
}

/// Opens `/dev/net/tun` and attaches it to the TUN device `name` with `flags`.
fn open_queue(name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path literal.
    let raw = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: flags as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is laid out as
    // (and large enough for).
    if unsafe { libc::ioctl(raw, libc::TUNSETIFF, &mut req as *mut IfReqFlags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
