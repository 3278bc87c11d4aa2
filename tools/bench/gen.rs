//! The traffic generator: UDP frames from a pod's eth0 through AF_PACKET + sendmmsg.
//!
//! Runs as its own process inside the generator pod's namespace (`podfwd-bench gen ...`),
//! pinned to one CPU. Frames are built once (one per flow, the flows differ in UDP source
//! port) and sent in batches; veth refuses frames when its peer's ring is full
//! (ENOBUFS/EAGAIN), so the generator retries instead of aborting (trafgen aborts).
//! Prints one JSON line with its totals when done.
//!
//! With [`GenSpec::vxlan`] each frame is wrapped in the outer Ethernet/IPv4/UDP/VXLAN
//! headers a flannel VTEP would put around it (VNI, port 8472, outer UDP checksum 0 as
//! Linux sends it, outer source port varying with the flow): the decapsulation
//! scenarios send these from the peer node's underlay, so no VTEP on the generator's
//! CPU limits the rate.

use podfwd::wire::checksum;
use std::io;
use std::time::{Duration, Instant};

/// What to send.
#[derive(Debug, Clone)]
pub struct GenSpec {
    pub ifname: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    /// Ethernet frame length without FCS (60 = a 64-byte frame on a wire).
    pub frame_len: usize,
    pub flows: u16,
    pub secs: f64,
    pub cpu: usize,
    /// Wrap every frame in VXLAN (the frame above becomes the inner frame).
    pub vxlan: Option<VxlanOuter>,
}

/// The outer headers of a VXLAN-encapsulated frame.
#[derive(Debug, Clone, Copy)]
pub struct VxlanOuter {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub port: u16,
    pub vni: u32,
}

/// Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8).
pub const VXLAN_OVERHEAD: usize = 50;

impl VxlanOuter {
    /// Parses `SRC_MAC,DST_MAC,SRC_IP,DST_IP` (port 8472, VNI 1, as flannel).
    pub fn parse(s: &str) -> Result<VxlanOuter, String> {
        let p: Vec<&str> = s.split(',').collect();
        let [sm, dm, si, di] = p.as_slice() else {
            return Err(format!(
                "bad --vxlan-outer {s:?}: expected SRC_MAC,DST_MAC,SRC_IP,DST_IP"
            ));
        };
        Ok(VxlanOuter {
            src_mac: parse_mac(sm)?,
            dst_mac: parse_mac(dm)?,
            src_ip: parse_ip(si)?,
            dst_ip: parse_ip(di)?,
            port: 8472,
            vni: 1,
        })
    }
}

pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad MAC {s}: {e}"))?;
    v.try_into().map_err(|_| format!("bad MAC {s}"))
}

pub fn parse_ip(s: &str) -> Result<[u8; 4], String> {
    s.parse::<std::net::Ipv4Addr>()
        .map(|a| a.octets())
        .map_err(|e| format!("bad IPv4 {s}: {e}"))
}

/// One Ethernet/IPv4/UDP frame of `spec.frame_len` bytes with complete checksums.
pub fn build_frame(spec: &GenSpec, src_port: u16, ip_id: u16) -> Vec<u8> {
    let len = spec.frame_len.max(42);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&spec.dst_mac);
    f[6..12].copy_from_slice(&spec.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&spec.src_ip);
    ip[16..20].copy_from_slice(&spec.dst_ip);
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp_len = ip_len - 20;
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes()); // discard
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let mut sum = checksum::add(0, &spec.src_ip);
    sum = checksum::add(sum, &spec.dst_ip);
    sum += 17 + u32::from(udp_len);
    sum = checksum::add(sum, &f[34..len]);
    let c = match !checksum::fold(sum) {
        0 => 0xffff,
        c => c,
    };
    f[40..42].copy_from_slice(&c.to_be_bytes());
    match &spec.vxlan {
        Some(o) => encapsulate(o, &f, src_port),
        None => f,
    }
}

/// `inner` behind outer headers from `o`; the outer UDP source port varies with `flow`
/// as a VTEP's flow hash does.
pub fn encapsulate(o: &VxlanOuter, inner: &[u8], flow: u16) -> Vec<u8> {
    let mut f = vec![0u8; VXLAN_OVERHEAD + inner.len()];
    f[0..6].copy_from_slice(&o.dst_mac);
    f[6..12].copy_from_slice(&o.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (f.len() - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF, as Linux VTEPs send by default
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&o.src_ip);
    ip[16..20].copy_from_slice(&o.dst_ip);
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&(32768 | (flow & 0x7fff)).to_be_bytes());
    udp[2..4].copy_from_slice(&o.port.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    // UDP checksum 0: allowed for VXLAN over IPv4 (RFC 7348), Linux's default.
    f[42] = 0x08; // I flag: the VNI is valid
    f[46..49].copy_from_slice(&o.vni.to_be_bytes()[1..4]);
    f[VXLAN_OVERHEAD..].copy_from_slice(inner);
    f
}

/// Pins the calling thread to `cpu`.
pub fn pin_self(cpu: usize) -> io::Result<()> {
    pin_pid(0, cpu)
}

/// Pins a task (thread id; 0 = the caller) to one CPU.
pub fn pin_pid(pid: i32, cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays within it for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Totals of one generator run.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct GenReport {
    pub sent: u64,
    /// sendmmsg calls refused with ENOBUFS/EAGAIN (veth back-pressure), retried.
    pub retries: u64,
    pub secs: f64,
}

/// Sends until `spec.secs` have passed.
pub fn run(spec: &GenSpec) -> io::Result<GenReport> {
    pin_self(spec.cpu)?;
    let frames: Vec<Vec<u8>> = (0..spec.flows.max(1))
        .map(|i| build_frame(spec, 10_000u16.wrapping_add(i), i))
        .collect();
    let name = std::ffi::CString::new(spec.ifname.as_str())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: plain syscalls on a socket this function owns; every pointer handed to the
    // kernel points to live, correctly sized memory for the duration of the call.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: this socket receives nothing.
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let close = Fd(fd);
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        if libc::bind(
            fd,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        // Straight to the driver: back-pressure comes back as ENOBUFS instead of drops
        // in a qdisc (veth has none by default anyway).
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
        let sndbuf: libc::c_int = 8 << 20;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            &sndbuf as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
        const BATCH: usize = 64;
        let nflows = frames.len();
        let mut iovs: Vec<libc::iovec> = Vec::with_capacity(nflows);
        for f in &frames {
            iovs.push(libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            });
        }
        // Message k of a window points at flow (start + k) % nflows; one ring of
        // nflows + BATCH headers lets every window start anywhere without rebuilding.
        let mut msgs: Vec<libc::mmsghdr> = (0..nflows + BATCH)
            .map(|k| {
                let mut m: libc::mmsghdr = std::mem::zeroed();
                m.msg_hdr.msg_iov = &mut iovs[k % nflows] as *mut libc::iovec;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(spec.secs);
        let mut rep = GenReport::default();
        let mut pos = 0usize;
        let mut n = 0u32;
        loop {
            n = n.wrapping_add(1);
            if n % 16 == 0 && Instant::now() >= end {
                break;
            }
            let r = libc::sendmmsg(fd, msgs.as_mut_ptr().add(pos), BATCH as u32, 0);
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => {
                        rep.retries += 1;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            rep.sent += r as u64;
            pos = (pos + r as usize) % nflows;
        }
        rep.secs = start.elapsed().as_secs_f64();
        drop(close);
        Ok(rep)
    }
}

struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this struct owns, once.
        unsafe { libc::close(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_checksums_verify() {
        let spec = GenSpec {
            ifname: "eth0".into(),
            src_mac: [2, 0, 0, 0, 0, 0xa2],
            dst_mac: [2, 0, 0, 0, 0, 0xa3],
            src_ip: [10, 244, 0, 2],
            dst_ip: [10, 244, 1, 2],
            frame_len: 60,
            flows: 4,
            secs: 0.0,
            cpu: 0,
            vxlan: None,
        };
        let f = build_frame(&spec, 10_001, 7);
        assert_eq!(f.len(), 60);
        assert_eq!(checksum::checksum(&f[14..34]), 0);
        let mut sum = checksum::add(0, &f[26..34]);
        sum += 17 + 26;
        sum = checksum::add(sum, &f[34..]);
        assert_eq!(!checksum::fold(sum), 0);
    }

    #[test]
    fn vxlan_frame_parses_as_outer_headers_around_the_inner_frame() {
        let mut spec = GenSpec {
            ifname: "nodeB-ul".into(),
            src_mac: [0x0e, 0, 0, 0, 0, 0x0b],
            dst_mac: [0x0e, 0, 0, 0, 0, 0x0a],
            src_ip: [10, 244, 1, 2],
            dst_ip: [10, 244, 0, 2],
            frame_len: 60,
            flows: 4,
            secs: 0.0,
            cpu: 0,
            vxlan: None,
        };
        let inner = build_frame(&spec, 10_003, 1);
        spec.vxlan = Some(
            VxlanOuter::parse("02:00:00:00:00:b1,02:00:00:00:00:a1,10.168.0.3,10.168.0.2").unwrap(),
        );
        let f = build_frame(&spec, 10_003, 1);
        assert_eq!(f.len(), 110);
        let p = etherparse::SlicedPacket::from_ethernet(&f).expect("outer parses");
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("outer IPv4 expected");
        };
        assert_eq!(ip.header().source(), [10, 168, 0, 3]);
        assert_eq!(ip.header().destination(), [10, 168, 0, 2]);
        assert_eq!(checksum::checksum(&f[14..34]), 0);
        let Some(etherparse::TransportSlice::Udp(udp)) = &p.transport else {
            panic!("outer UDP expected");
        };
        assert_eq!(udp.destination_port(), 8472);
        assert_eq!(udp.length() as usize, 8 + 8 + 60);
        assert_eq!(&f[42..50], &[0x08, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&f[50..], &inner[..]);
        assert!(VxlanOuter::parse("02:00:00:00:00:b1,10.168.0.3").is_err());
        assert!(VxlanOuter::parse("zz,02:00:00:00:00:a1,10.168.0.3,10.168.0.2").is_err());
    }
}
