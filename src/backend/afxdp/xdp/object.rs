//! The embedded `podfwd_xdp` object (built from `bpf/podfwd_xdp.bpf.c` by build.rs) and
//! loading it into the kernel: the verifier log on rejection, feature probes that turn a
//! failure into "this kernel lacks X".

use super::fastpath::MAP_ADJACENCIES;
use super::maps::MAP_EPOCH;
use super::XdpError;
use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapType, Object, ObjectBuilder};
use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, RawFd};
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
/// The `epoch` map every classifier of this process shares (see `bpf/podfwd_xdp.bpf.c`),
/// with the control epoch last written to it.
struct SharedEpoch {
    map: libbpf_rs::MapHandle,
    control: std::sync::Mutex<u64>,
}

/// The process's shared `epoch` map, created on first use. BPF maps belong to no
/// network namespace, so classifiers in several namespaces (tests, `podfwd lab`) share
/// it too, which only makes them forget answers a little more often.
fn shared_epoch() -> Result<&'static SharedEpoch, XdpError> {
    static SHARED: std::sync::OnceLock<Result<SharedEpoch, String>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            let opts = libbpf_sys::bpf_map_create_opts {
                sz: mem::size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
                ..Default::default()
            };
            libbpf_rs::MapHandle::create(MapType::Array, Some(MAP_EPOCH), 4, 8, 2, &opts)
                .map(|map| SharedEpoch {
                    map,
                    control: std::sync::Mutex::new(0),
                })
                .map_err(|e| format!("creating it: {e}"))
        })
        .as_ref()
        .map_err(|why| XdpError::ObjectMismatch {
            what: format!("the shared epoch map: {why}"),
        })
}

/// Forgets every answer the flow caches of this process's classifiers remember (bumps
/// entry 0 of the shared `epoch` map; the programs count the connections they hand to
/// the kernel in entry 1 themselves). A program run that read the old epoch before this
/// call may still store an answer under it, which no later run reads: the programs read
/// the epoch before they ask the kernel.
pub fn forget_kernel_answers() -> Result<(), XdpError> {
    let shared = shared_epoch()?;
    // The lock keeps the written values increasing: two writers must not publish out of
    // order (an older epoch coming back would revive stale answers).
    let mut control = shared
        .control
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let next = control.wrapping_add(1).max(1);
    shared
        .map
        .update(&0u32.to_ne_bytes(), &next.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| XdpError::Os {
            action: "writing the flow cache epoch".into(),
            iface: String::new(),
            source: io::Error::other(e.to_string()),
        })?;
    *control = next;
    Ok(())
}

/// Opens and loads a BPF object from memory, capturing the verifier log on failure.
/// `reuse` names maps of the object that are to be existing maps instead (the fast
/// path's shared forwarding maps, by fd); without them, the fast path's preallocated
/// adjacency array is shrunk to one entry (a classifier for AF_XDP never reads it).
pub(super) fn load_object(
    bytes: &[u8],
    program: &str,
    iface: &str,
    reuse: &[(&str, RawFd)],
) -> Result<Object, XdpError> {
    let open =
        ObjectBuilder::default()
            .open_memory(bytes)
            .map_err(|e| XdpError::ObjectMismatch {
                what: format!("libbpf cannot open the embedded object: {e:#}"),
            })?;
    let mut log = vec![0u8; VERIFIER_LOG_SIZE];
    let obj_ptr = open.take_ptr();
    // The classifier's `epoch` map is the process's shared one (test fixtures have none).
    // libbpf renames a reused map after the map it reuses: both are called `epoch`.
    let epoch_name = CString::new(MAP_EPOCH).expect("no NUL in a map name");
    // SAFETY: `obj_ptr` is a valid open object we own; the name is NUL-terminated.
    let epoch_map =
        unsafe { libbpf_sys::bpf_object__find_map_by_name(obj_ptr.as_ptr(), epoch_name.as_ptr()) };
    if !epoch_map.is_null() {
        let shared = shared_epoch()?;
        // SAFETY: `epoch_map` belongs to the open object; libbpf dups the fd, which stays
        // valid for the process (the map handle is in a static).
        let rc =
            unsafe { libbpf_sys::bpf_map__reuse_fd(epoch_map, shared.map.as_fd().as_raw_fd()) };
        if rc != 0 {
            // SAFETY: ownership goes back to libbpf-rs, which closes the object on drop.
            drop(unsafe { Object::from_ptr(obj_ptr) });
            return Err(XdpError::Os {
                action: "sharing the epoch map".into(),
                iface: iface.to_string(),
                source: io::Error::from_raw_os_error(-rc),
            });
        }
    }
    for (name, fd) in reuse {
        let cname = CString::new(*name).expect("no NUL in a map name");
        // SAFETY: `obj_ptr` is a valid open object we own; the name is NUL-terminated.
        let map =
            unsafe { libbpf_sys::bpf_object__find_map_by_name(obj_ptr.as_ptr(), cname.as_ptr()) };
        // SAFETY: `map` (if not NULL) belongs to the open object; libbpf dups `fd`, which
        // the caller keeps open for the duration of this call.
        let rc = if map.is_null() {
            -libc::ENOENT
        } else {
            unsafe { libbpf_sys::bpf_map__reuse_fd(map, *fd) }
        };
        if rc != 0 {
            // SAFETY: ownership goes back to libbpf-rs, which closes the object on drop.
            drop(unsafe { Object::from_ptr(obj_ptr) });
            return Err(XdpError::Os {
                action: format!("sharing the fast path's map {name:?}"),
                iface: iface.to_string(),
                source: io::Error::from_raw_os_error(-rc),
            });
        }
    }
    if reuse.is_empty() {
        let cname = CString::new(MAP_ADJACENCIES).expect("no NUL in a map name");
        // SAFETY: as above.
        let map =
            unsafe { libbpf_sys::bpf_object__find_map_by_name(obj_ptr.as_ptr(), cname.as_ptr()) };
        if !map.is_null() {
            // SAFETY: `map` belongs to the open, not yet loaded object.
            unsafe { libbpf_sys::bpf_map__set_max_entries(map, 1) };
        }
    }
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
