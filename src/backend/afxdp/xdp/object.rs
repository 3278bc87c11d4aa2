//! The embedded `podfwd_xdp` object (built from `bpf/podfwd_xdp.bpf.c` by build.rs) and
//! loading it into the kernel: the verifier log on rejection, feature probes that turn a
//! failure into "this kernel lacks X".

use super::XdpError;
use libbpf_rs::libbpf_sys;
use libbpf_rs::{Object, ObjectBuilder};
use std::ffi::CString;
use std::io;
use std::mem;
use std::path::Path;

/// Keeps `include_bytes!` data 8-byte aligned: libelf reads ELF headers in place.
#[repr(C, align(8))]
pub(super) struct Aligned<B: ?Sized>(pub(super) B);

pub(super) static PODFWD_XDP_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/podfwd_xdp.bpf.o"
)));

/// The program's name in the kernel (`bpftool prog`, `ip link`).
pub const PROGRAM_NAME: &str = "podfwd_xdp";
/// Program names that podfwd (or libxdp on its behalf, through xsk-rs) leaves on an
/// interface, and that [`Classifier::attach`] removes when they were attached the legacy
/// way. libxdp's dispatcher is `xdp_dispatcher`, its default AF_XDP program `xsk_def_prog`.
pub const OWN_PROGRAM_NAMES: &[&str] = &[PROGRAM_NAME, "xdp_dispatcher", "xsk_def_prog"];

/// Verifier log buffer: plenty for this program's log at level 1.
pub(super) const VERIFIER_LOG_SIZE: usize = 1 << 20;
/// Lines of the verifier log kept in [`XdpError::VerifierRejected`] (the end says why).
pub(super) const VERIFIER_LOG_TAIL_LINES: usize = 60;
/// `statfs(2)` magic of bpffs.
pub(super) const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Opens and loads a BPF object from memory, capturing the verifier log on failure.
pub(super) fn load_object(bytes: &[u8], program: &str, iface: &str) -> Result<Object, XdpError> {
    let open =
        ObjectBuilder::default()
            .open_memory(bytes)
            .map_err(|e| XdpError::ObjectMismatch {
                what: format!("libbpf cannot open the embedded object: {e:#}"),
            })?;
    let mut log = vec![0u8; VERIFIER_LOG_SIZE];
    let obj_ptr = open.take_ptr();
    // SAFETY: `obj_ptr` is a valid open object that we own; programs are iterated with
    // libbpf's own iterator. Each program keeps a pointer to `log`, which outlives the
    // load below (it is declared before `object` and dropped after it) and is only read
    // after the load returned.
    unsafe {
        let mut prog = libbpf_sys::bpf_object__next_program(obj_ptr.as_ptr(), std::ptr::null_mut());
        while !prog.is_null() {
            libbpf_sys::bpf_program__set_log_buf(prog, log.as_mut_ptr().cast(), log.len() as _);
            prog = libbpf_sys::bpf_object__next_program(obj_ptr.as_ptr(), prog);
        }
    }
    // SAFETY: `obj_ptr` is the open, not yet loaded object we own.
    let ret = unsafe { libbpf_sys::bpf_object__load(obj_ptr.as_ptr()) };
    // SAFETY: ownership of the object goes back to libbpf-rs, which closes it on drop;
    // nothing else uses `obj_ptr` from here on.
    let object = unsafe { Object::from_ptr(obj_ptr) };
    if ret == 0 {
        return Ok(object);
    }
    drop(object);
    let errno = -ret;
    let text = verifier_log_tail(&log);
    if !text.is_empty() {
        return Err(XdpError::VerifierRejected {
            program: program.to_string(),
            source: io::Error::from_raw_os_error(errno),
            log: text,
        });
    }
    if errno == libc::EPERM || errno == libc::EACCES {
        return Err(XdpError::NoPrivileges {
            action: format!("loading {program}"),
            iface: iface.to_string(),
        });
    }
    if !xdp_supported() {
        return Err(XdpError::KernelUnsupported {
            what: "XDP programs",
        });
    }
    if !xskmap_supported() {
        return Err(XdpError::KernelUnsupported {
            what: "AF_XDP socket maps (XSKMAP)",
        });
    }
    Err(XdpError::Os {
        action: format!("loading {program}"),
        iface: iface.to_string(),
        source: io::Error::from_raw_os_error(errno),
    })
}

/// The last lines of a NUL-terminated verifier log.
pub(super) fn verifier_log_tail(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(VERIFIER_LOG_TAIL_LINES);
    lines[skip..].join("\n")
}

pub(super) fn xdp_supported() -> bool {
    // SAFETY: a probe with no options (NULL is allowed) that only makes bpf syscalls.
    unsafe {
        libbpf_sys::libbpf_probe_bpf_prog_type(libbpf_sys::BPF_PROG_TYPE_XDP, std::ptr::null()) == 1
    }
}

pub(super) fn xskmap_supported() -> bool {
    // SAFETY: as in `xdp_supported`.
    unsafe {
        libbpf_sys::libbpf_probe_bpf_map_type(libbpf_sys::BPF_MAP_TYPE_XSKMAP, std::ptr::null())
            == 1
    }
}

pub(super) fn statfs_type(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `statfs` is a plain C struct; all-zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is ours; statfs writes only into it.
    let ret = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64 but not everywhere
    Ok(st.f_type as i64)
}
