//! Anonymous memory mappings for the tables.
//!
//! tbl24 (64 MiB) and the tbl8 pool are mapped directly rather than allocated on the
//! heap: fresh anonymous pages are zero (= "no route") without a 64 MiB memset, they are
//! 2 MiB aligned so transparent huge pages can back them (one TLB entry per 2 MiB instead
//! of 512), and the tbl8 pool can reserve address space for its maximum size up front and
//! commit it step by step, so a reader's base pointer never moves while the pool grows.

use std::io;
use std::ptr::{self, NonNull};

/// Size and alignment of a transparent huge page on x86-64 and 4 KiB-page arm64.
pub(super) const HUGE_PAGE: usize = 2 << 20;

/// An owned anonymous mapping, unmapped on drop.
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    huge_pages: bool,
}

// SAFETY: a Mapping is plain memory owned by this value; all concurrent access to its
// contents goes through atomics (see table.rs), and the mapping itself is only created and
// dropped by its owner.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out a raw pointer and commits address space.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// A mapping of no bytes (nothing is mapped).
    pub(super) fn empty() -> Mapping {
        Mapping {
            ptr: NonNull::dangling(),
            len: 0,
            huge_pages: false,
        }
    }

    /// `len` bytes of zero-filled read-write memory, 2 MiB aligned.
    pub(super) fn zeroed(len: usize, huge_pages: bool) -> io::Result<Mapping> {
        let map = Mapping::map_aligned(len, libc::PROT_READ | libc::PROT_WRITE, 0, huge_pages)?;
        map.advise_huge(0, map.len);
        Ok(map)
    }

    /// `len` bytes of address space without memory behind it (PROT_NONE, not counted
    /// against the commit limit); see [`Mapping::commit`].
    pub(super) fn reserve(len: usize, huge_pages: bool) -> io::Result<Mapping> {
        Mapping::map_aligned(len, libc::PROT_NONE, libc::MAP_NORESERVE, huge_pages)
    }

    /// Makes `offset..offset + len` of a reservation readable and writable (zero-filled).
    /// `offset` must be page aligned; `len` is rounded up to whole pages.
    pub(super) fn commit(&self, offset: usize, len: usize) -> io::Result<()> {
        let len = round_up(len, page_size()).ok_or_else(too_large)?;
        match offset.checked_add(len) {
            Some(end) if end <= self.len && offset % page_size() == 0 => {}
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range was checked to lie inside this mapping, which we own; changing
        // PROT_NONE to read-write invalidates no reference (nothing could read it before).
        let rc = unsafe {
            libc::mprotect(
                self.ptr.as_ptr().add(offset).cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.advise_huge(offset, len);
        Ok(())
    }

    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn map_aligned(
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
        huge_pages: bool,
    ) -> io::Result<Mapping> {
        let len = round_up(len, page_size()).ok_or_else(too_large)?;
        if len == 0 {
            return Ok(Mapping::empty());
        }
        let total = len.checked_add(HUGE_PAGE).ok_or_else(too_large)?;
        // SAFETY: a private anonymous mapping at an address of the kernel's choosing touches
        // no existing memory.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                total,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = raw as usize;
        // Cannot overflow: the kernel mapped `total` bytes from `start`.
        let aligned = (start + HUGE_PAGE - 1) & !(HUGE_PAGE - 1);
        let head = aligned - start;
        let tail = total - head - len;
        // SAFETY: both trimmed ranges lie inside the mapping created above, are page
        // aligned (start, aligned and len are) and nothing refers to them.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
        }
        let ptr = NonNull::new(aligned as *mut u8)
            .ok_or_else(|| io::Error::from(io::ErrorKind::Other))?;
        Ok(Mapping {
            ptr,
            len,
            huge_pages,
        })
    }

    /// Best effort: without THP (or with THP "never") the tables still work, only with
    /// more TLB misses, so the result is ignored.
    fn advise_huge(&self, offset: usize, len: usize) {
        if !self.huge_pages || len == 0 {
            return;
        }
        // SAFETY: callers pass a range inside this mapping; MADV_HUGEPAGE changes no
        // contents.
        unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(offset).cast(),
                len,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: we own the mapping and, being dropped, nobody can reach it any more
            // (tables are only dropped after their epoch grace period).
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len);
            }
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

fn round_up(n: usize, to: usize) -> Option<usize> {
    Some(n.checked_add(to - 1)? / to * to)
}

fn too_large() -> io::Error {
    io::Error::from(io::ErrorKind::OutOfMemory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_mappings_are_huge_page_aligned_and_zero() {
        let m = Mapping::zeroed(3 * HUGE_PAGE + 5, true).unwrap();
        assert_eq!(m.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(m.len() >= 3 * HUGE_PAGE + 5);
        // SAFETY: inside the read-write mapping.
        assert_eq!(unsafe { *m.as_ptr().add(HUGE_PAGE + 17) }, 0);
    }

    #[test]
    fn reservations_commit_only_inside_their_bounds() {
        let m = Mapping::reserve(4 * HUGE_PAGE, false).unwrap();
        m.commit(HUGE_PAGE, HUGE_PAGE).unwrap();
        // SAFETY: committed above.
        unsafe { *m.as_ptr().add(HUGE_PAGE) = 7 };
        assert!(m.commit(3 * HUGE_PAGE, 2 * HUGE_PAGE).is_err());
        assert!(m.commit(1, 1).is_err());
    }

    #[test]
    fn empty_mappings_need_no_memory() {
        let m = Mapping::reserve(0, true).unwrap();
        assert_eq!(m.len(), 0);
        m.commit(0, 0).unwrap();
    }
}
