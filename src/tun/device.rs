//! The TUN device and the kernel routes into it; the AF_PACKET socket host-gw sends on.

use super::TunError;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;

/// A non-blocking TUN device without packet information (bare IP packets). The kernel
/// removes the device, and every route through it, when it is dropped.
pub struct TunDevice {
    iface: tun_tap::Iface,
}

impl TunDevice {
    /// Creates (or attaches to) the TUN device `name`, sets its MTU and brings it up.
    pub fn create(name: &str, mtu: u32) -> Result<TunDevice, TunError> {
        let iface =
            tun_tap::Iface::without_packet_info(name, tun_tap::Mode::Tun).map_err(|source| {
                TunError::Create {
                    name: name.to_string(),
                    source,
                }
            })?;
        set_nonblocking(iface.as_raw_fd()).map_err(|source| TunError::Io {
            what: format!("setting TUN device {name} non-blocking"),
            source,
        })?;
        let mtu = mtu.to_string();
        // A longer queue than the TUN default (500) absorbs the kernel's bursts into it.
        ip(&[
            "link",
            "set",
            "dev",
            name,
            "mtu",
            &mtu,
            "txqueuelen",
            "2000",
            "up",
        ])?;
        Ok(TunDevice { iface })
    }

    pub fn name(&self) -> &str {
        self.iface.name()
    }

    pub fn fd(&self) -> RawFd {
        self.iface.as_raw_fd()
    }
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

/// Sets a socket's receive and send buffers to `bytes`, beyond `net.core.rmem_max` /
/// `wmem_max` when privileged (`SO_RCVBUFFORCE`), else as far as those limits allow.
pub fn set_socket_buffers(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let set = |opt| {
            // SAFETY: the option value is a c_int that lives across the call.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    &v as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            }
        };
        if set(force) < 0 && set(plain) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs `ip ARGS` in the current network namespace; its stderr becomes the error.
pub fn ip(args: &[&str]) -> Result<(), TunError> {
    let cmd = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| TunError::Io {
            what: format!("running `{cmd}`"),
            source,
        })?;
    if !out.status.success() {
        return Err(TunError::Command {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// An `AF_PACKET` raw socket bound to one interface for sending whole Ethernet frames,
/// past the qdisc (`PACKET_QDISC_BYPASS`). It receives nothing (protocol 0).
pub struct PacketSocket {
    fd: std::os::fd::OwnedFd,
}

impl PacketSocket {
    pub fn bind(ifname: &str, ifindex: u32) -> Result<PacketSocket, TunError> {
        let err = |what: &str| TunError::Io {
            what: format!("{what} (AF_PACKET socket on {ifname})"),
            source: io::Error::last_os_error(),
        };
        // SAFETY: socket() has no memory preconditions.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(err("socket"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: the option value is a c_int that lives across the call.
        let r = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(err("setsockopt(PACKET_QDISC_BYPASS)"));
        }
        // SAFETY: sockaddr_ll is plain old data; zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 0;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the length given.
        let r = unsafe {
            libc::bind(
                raw,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(err("bind"));
        }
        Ok(PacketSocket { fd })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
