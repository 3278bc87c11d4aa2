//! The TUN backend's sockets: the VXLAN UDP socket (an SO_REUSEPORT group, UDP GRO), its
//! buffers, and the AF_PACKET socket host-gw sends on.

use super::TunError;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking UDP socket bound to `addr`; with `reuse_port`, in an `SO_REUSEPORT`
/// group (one socket per worker; the kernel spreads flows over the group by hash).
pub fn bind_udp(addr: std::net::SocketAddrV4, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    // SAFETY: socket() has no memory preconditions.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if reuse_port {
        set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    // SAFETY: sockaddr_in is plain old data; zero is a valid value.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = addr.port().to_be();
    sin.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    // SAFETY: `sin` is a valid sockaddr_in of the length given.
    let r = unsafe {
        libc::bind(
            raw,
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::UdpSocket::from(fd))
}

/// Turns on `UDP_GRO`: the socket receives trains of datagrams in one buffer, with their
/// size in a control message.
pub fn set_udp_gro(fd: RawFd) -> io::Result<()> {
    set_int(fd, libc::SOL_UDP, super::worker::UDP_GRO, 1)
}

/// `setsockopt` with an int value.
fn set_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a c_int that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
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

/// An `AF_PACKET` raw socket bound to one interface for sending whole Ethernet frames.
/// It receives nothing (protocol 0). Frames go through the uplink's qdisc, as the kernel's
/// own forwarding does: with `PACKET_QDISC_BYPASS` a stopped device queue (a veth whose
/// peer is busy) dropped frames at once, and TCP through tun-host-gw retransmitted tens
/// of thousands of segments per run in the bench.
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
