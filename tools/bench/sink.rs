//! The sink: a two-instruction XDP program (`return XDP_DROP`) attached with a bpf_link to
//! the sink veth inside a namespace. Frames are counted by the veth's own rx counters
//! (which include frames handled by XDP) and dropped before any skb work, so the sink
//! costs little of the CPU it shares with the generator. The program is detached when
//! the [`XdpDrop`] (its link fd) is dropped, or with the namespace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    // Room for the fields the kernel knows after these (must be zero).
    _rest: [u64; 16],
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 8],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, zero-padded bpf_attr prefix of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// An attached XDP_DROP program; detached on drop.
pub struct XdpDrop {
    _link: OwnedFd,
    _prog: OwnedFd,
}

impl XdpDrop {
    /// Attaches to `ifname` in the named network namespace (`ip netns` name).
    pub fn attach(netns: &str, ifname: &str) -> io::Result<XdpDrop> {
        let netns = netns.to_string();
        let ifname = ifname.to_string();
        // setns on a throwaway thread: the link's ifindex is resolved in the caller's
        // network namespace, and this process's other threads stay where they are.
        std::thread::spawn(move || attach_here(&netns, &ifname))
            .join()
            .map_err(|_| io::Error::other("attach thread panicked"))?
    }
}

fn attach_here(netns: &str, ifname: &str) -> io::Result<XdpDrop> {
    let ns = std::fs::File::open(format!("/run/netns/{netns}"))?;
    // SAFETY: setns on this thread only, with a namespace fd we hold open.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    // r0 = XDP_DROP (1); exit
    let insns: [u64; 2] = [
        u64::from_le_bytes([0xb7, 0x00, 0, 0, 1, 0, 0, 0]),
        u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
    ];
    let license = b"GPL\0";
    let mut name16 = [0u8; 16];
    name16[..10].copy_from_slice(b"bench_drop");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name16,
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    let prog = bpf(BPF_PROG_LOAD, &mut attr)?;
    let mut link = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        ..Default::default()
    };
    let link = bpf(BPF_LINK_CREATE, &mut link)?;
    Ok(XdpDrop {
        _link: link,
        _prog: prog,
    })
}
