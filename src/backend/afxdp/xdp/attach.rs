//! Attaching a classifier through a bpf_link, detaching it, and what else is attached
//! to an interface (podfwd's stale legacy attachments are removed, anything else is
//! refused).

use super::object::{xdp_supported, OWN_PROGRAM_NAMES, PROGRAM_NAME};
use super::{lookup_interface, os_error, Classifier, XdpError};
use crate::config::XdpMode;
use libbpf_rs::libbpf_sys;
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// How a program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// In the driver (`ip link` shows `xdp`).
    Native,
    /// The generic skb hook (`xdpgeneric`).
    Generic,
    /// Offloaded to the NIC (`xdpoffload`).
    Offload,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
            AttachMode::Offload => "offload",
        })
    }
}

impl From<XdpMode> for AttachMode {
    fn from(m: XdpMode) -> Self {
        match m {
            XdpMode::Native => AttachMode::Native,
            XdpMode::Generic => AttachMode::Generic,
        }
    }
}

impl AttachMode {
    pub(super) const fn flag(self) -> u32 {
        match self {
            AttachMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
            AttachMode::Offload => libbpf_sys::XDP_FLAGS_HW_MODE,
        }
    }
}

/// An XDP program found on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedProgram {
    /// Kernel program id (`bpftool prog show id N`).
    pub id: u32,
    /// Program name as the kernel keeps it (at most 15 bytes).
    pub name: String,
    pub mode: AttachMode,
}

impl AttachedProgram {
    /// Whether podfwd (or libxdp on its behalf) put this program there.
    pub fn is_podfwds(&self) -> bool {
        OWN_PROGRAM_NAMES.contains(&self.name.as_str())
    }
}

/// An attachment through a bpf_link: closing the fd detaches the program.
#[derive(Debug)]
pub(super) struct XdpLink {
    #[allow(dead_code)] // held, never read: closing it detaches the program
    fd: OwnedFd,
    mode: AttachMode,
}

impl Classifier {
    /// The mode this classifier is attached in, if it is.
    pub fn attached_mode(&self) -> Option<AttachMode> {
        self.link.as_ref().map(|l| l.mode)
    }

    /// Stale podfwd programs the last [`Classifier::attach`] removed from the interface.
    pub fn removed_stale(&self) -> &[AttachedProgram] {
        &self.removed_stale
    }

    /// Attaches the program through a bpf_link in the given mode. Removes podfwd programs
    /// a previous run attached the legacy way (netlink), refuses when another program is
    /// there. Native mode is requested explicitly: a driver without native XDP is an
    /// error ([`XdpError::NativeUnsupported`]), not a silent fall back to generic; the
    /// caller decides on the fallback.
    pub fn attach(&mut self, mode: XdpMode) -> Result<(), XdpError> {
        let mode = AttachMode::from(mode);
        if let Some(l) = &self.link {
            return Err(XdpError::AlreadyAttached {
                iface: self.iface.clone(),
                mode: l.mode,
            });
        }
        // The interface may have been re-created since load.
        self.ifindex = lookup_interface(&self.iface)?.0;
        self.removed_stale = self.remove_stale()?;

        let prog_fd = self.program()?.as_fd().as_raw_fd();
        let opts = libbpf_sys::bpf_link_create_opts {
            sz: mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
            flags: mode.flag(),
            ..Default::default()
        };
        // SAFETY: `prog_fd` is the loaded program's fd, alive while `self.object` is;
        // `opts` is a fully initialised options struct whose `sz` is its own size, and
        // libbpf only reads it during the call.
        let ret = unsafe {
            libbpf_sys::bpf_link_create(prog_fd, self.ifindex as i32, libbpf_sys::BPF_XDP, &opts)
        };
        if ret < 0 {
            return Err(self.attach_error(mode, -ret));
        }
        // SAFETY: bpf_link_create returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(ret) };
        self.link = Some(XdpLink { fd, mode });
        Ok(())
    }

    fn attach_error(&self, mode: AttachMode, errno: i32) -> XdpError {
        let iface = self.iface.clone();
        if errno == libc::EPERM || errno == libc::EACCES {
            return XdpError::NoPrivileges {
                action: format!("attaching {PROGRAM_NAME}"),
                iface,
            };
        }
        // The kernel answers EINVAL for an ifindex that went away meanwhile.
        if errno == libc::EINVAL && lookup_interface(&self.iface).is_err() {
            return XdpError::NoSuchInterface { iface };
        }
        if errno == libc::EBUSY {
            // Somebody attached between our check and the link: name them.
            if let Ok(progs) = query_programs(&self.iface, self.ifindex) {
                if let Some(p) = progs.into_iter().next() {
                    let (name, id, mode) = (p.name.clone(), p.id, p.mode);
                    return if p.is_podfwds() {
                        XdpError::HeldByLink {
                            iface,
                            name,
                            id,
                            mode,
                        }
                    } else {
                        XdpError::ForeignProgram {
                            iface,
                            name,
                            id,
                            mode,
                        }
                    };
                }
            }
        }
        let source = io::Error::from_raw_os_error(errno);
        if mode == AttachMode::Native && errno != libc::EBUSY {
            return XdpError::NativeUnsupported { iface, source };
        }
        if !xdp_supported() {
            return XdpError::KernelUnsupported {
                what: "XDP programs",
            };
        }
        XdpError::AttachFailed {
            iface,
            mode,
            source,
        }
    }

    /// Detaches the program if attached (dropping the classifier does the same).
    pub fn detach(&mut self) {
        self.link = None;
    }

    /// Removes podfwd's own legacy-attached leftovers; errors on anything else.
    fn remove_stale(&self) -> Result<Vec<AttachedProgram>, XdpError> {
        let mut removed = Vec::new();
        for p in query_programs(&self.iface, self.ifindex)? {
            if !p.is_podfwds() {
                return Err(XdpError::ForeignProgram {
                    iface: self.iface.clone(),
                    name: p.name,
                    id: p.id,
                    mode: p.mode,
                });
            }
            match detach_legacy(self.ifindex, &p) {
                Ok(()) => {
                    tracing::info!(
                        program = %p.name,
                        id = p.id,
                        mode = %p.mode,
                        interface = %self.iface,
                        "removed stale XDP program left attached by an earlier run"
                    );
                    removed.push(p);
                }
                // A link owns it: a live process holds it (legacy detach cannot touch it).
                Err(libc::EBUSY) => {
                    return Err(XdpError::HeldByLink {
                        iface: self.iface.clone(),
                        name: p.name,
                        id: p.id,
                        mode: p.mode,
                    })
                }
                // Gone or replaced meanwhile: nothing of ours to remove.
                Err(libc::ENOENT) | Err(libc::EEXIST) => {}
                Err(errno) => {
                    return Err(os_error(
                        format!("removing stale XDP program {:?} (id {})", p.name, p.id),
                        &self.iface,
                        errno,
                    ))
                }
            }
        }
        Ok(removed)
    }
}

/// The XDP programs attached to `iface` (in the calling thread's network namespace), in
/// any mode, with their names.
pub fn attached_programs(iface: &str) -> Result<Vec<AttachedProgram>, XdpError> {
    let (ifindex, _) = lookup_interface(iface)?;
    query_programs(iface, ifindex)
}

pub(super) fn query_programs(iface: &str, ifindex: u32) -> Result<Vec<AttachedProgram>, XdpError> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: `opts` is initialised with its own size; libbpf writes only inside it.
    let ret = unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if ret < 0 {
        return Err(os_error("querying attached XDP programs", iface, -ret));
    }
    let mut out = Vec::new();
    for (id, mode) in [
        (opts.drv_prog_id, AttachMode::Native),
        (opts.skb_prog_id, AttachMode::Generic),
        (opts.hw_prog_id, AttachMode::Offload),
    ] {
        if id == 0 {
            continue;
        }
        let name = match program_name(id) {
            Ok(n) => n,
            // Detached and freed since the query.
            Err(libc::ENOENT) => continue,
            Err(errno) => {
                return Err(os_error(
                    format!("reading the name of XDP program id {id}"),
                    iface,
                    errno,
                ))
            }
        };
        out.push(AttachedProgram { id, name, mode });
    }
    Ok(out)
}

pub(super) fn program_fd(id: u32) -> Result<OwnedFd, i32> {
    // SAFETY: plain syscall wrapper; returns a new fd or a negative errno.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: `fd` is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn program_name(id: u32) -> Result<String, i32> {
    let fd = program_fd(id)?;
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a zeroed bpf_prog_info and `len` its size, so the kernel writes
    // within it; no pointer members are set, so it writes nothing elsewhere.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret < 0 {
        return Err(-ret);
    }
    let bytes: Vec<u8> = info.name.iter().map(|&c| c as u8).collect();
    let name = CStr::from_bytes_until_nul(&bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
    Ok(name)
}

/// Detaches a legacy (netlink) attachment of exactly `prog`; EBUSY when a link holds it.
pub(super) fn detach_legacy(ifindex: u32, prog: &AttachedProgram) -> Result<(), i32> {
    let fd = program_fd(prog.id)?;
    let opts = libbpf_sys::bpf_xdp_attach_opts {
        sz: mem::size_of::<libbpf_sys::bpf_xdp_attach_opts>() as _,
        // Expected program: the kernel refuses (EEXIST) if another one is there by now.
        old_prog_fd: fd.as_raw_fd(),
        ..Default::default()
    };
    // SAFETY: `opts` is initialised with its own size and `fd` stays open for the call.
    let ret = unsafe { libbpf_sys::bpf_xdp_detach(ifindex as i32, prog.mode.flag(), &opts) };
    if ret < 0 {
        return Err(-ret);
    }
    Ok(())
}
