//! The command's allocator: the system's, except that buffers of a megabyte or more (components,
//! zips, the composed output) are mapped on their own and advised into transparent huge pages.
//!
//! A link of a 4 MB component writes a few such buffers once each (the inflated component, the
//! composed one, the zip), and with 4 KiB pages the kernel's page faults took more of the
//! command's time than linking did (BENCHMARKS.md, "Where the time goes"): one fault per 2 MiB
//! instead of one per 4 KiB removes most of that. A huge page fills only an aligned 2 MiB that lies
//! wholly inside what was asked for, and the part a buffer grows by (a `Vec` doubling) keeps small
//! pages, so memory the command never writes does not become resident.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Buffers at least this large are mapped on their own.
const LARGE: usize = 1 << 20;
/// The size of a transparent huge page on x86-64 and AArch64 Linux.
const HUGE: usize = 2 << 20;
/// Mappings are page-aligned; larger alignments go to the system allocator.
const PAGE: usize = 4096;

/// The global allocator of `kinode-link`.
pub struct Allocator;

fn is_large(size: usize, align: usize) -> bool {
    size >= LARGE && align <= PAGE
}

fn mapped(size: usize) -> usize {
    size.next_multiple_of(PAGE)
}

/// Maps `size` bytes, placed so that as many whole huge pages as possible fall inside.
fn map(size: usize) -> *mut u8 {
    let len = mapped(size);
    // Over-map by a huge page, then give back the head and tail around an aligned start.
    let Some(reserved) = len.checked_add(HUGE) else {
        return ptr::null_mut();
    };
    // SAFETY: an anonymous private mapping aliases nothing.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            reserved,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let base = base as usize;
    let start = base.next_multiple_of(HUGE);
    // SAFETY: head and tail are parts of the mapping just made that nothing uses.
    unsafe {
        if start > base {
            libc::munmap(base as *mut libc::c_void, start - base);
        }
        let tail = start + len;
        let end = base + reserved;
        if end > tail {
            libc::munmap(tail as *mut libc::c_void, end - tail);
        }
        // One advice for the whole mapping, which stays one area the kernel can resize: a huge
        // page fills only an aligned 2 MiB that lies wholly inside, so the tail keeps small pages.
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    start as *mut u8
}

// SAFETY: large blocks are whole mappings of `mapped(size)` bytes, freed and resized only here,
// and told apart from the system allocator's by the size and alignment the caller passes back,
// which `GlobalAlloc` requires to be the block's own.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            // A fresh anonymous mapping reads as zeros.
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(layout.size(), layout.align()) {
            // SAFETY: the block is a mapping of this length, made by `map` or `realloc`.
            unsafe { libc::munmap(block.cast(), mapped(layout.size())) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        match (is_large(layout.size(), align), is_large(new_size, align)) {
            (false, false) => {
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.realloc(block, layout, new_size) }
            }
            (true, true) => {
                let (old, new) = (mapped(layout.size()), mapped(new_size));
                if new <= old {
                    // SAFETY: shrinking a mapping we own keeps it in place.
                    let kept = unsafe { libc::mremap(block.cast(), old, new, 0) };
                    return if kept == libc::MAP_FAILED {
                        ptr::null_mut()
                    } else {
                        kept.cast()
                    };
                }
                // Growing: the pages move (no copy) into a new aligned mapping, which keeps the
                // huge pages whole.
                let target = map(new_size);
                if target.is_null() {
                    return target;
                }
                // SAFETY: `block` is a mapping of `old` bytes and `target` one of `new` bytes,
                // both ours; the move replaces `target`'s pages with the block's.
                let moved = unsafe {
                    libc::mremap(
                        block.cast(),
                        old,
                        new,
                        libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                        target,
                    )
                };
                if moved == libc::MAP_FAILED {
                    // A block grown before is two areas (see below), which `mremap` refuses.
                    // SAFETY: `target` is unused; the block is as the caller says.
                    unsafe {
                        libc::munmap(target.cast(), new);
                        return self.copy_to_new(block, layout, new_size);
                    }
                }
                // A grown buffer (a `Vec` doubling) is rarely filled: its new part keeps small
                // pages, or the huge pages its writes touch would be resident whole.
                // SAFETY: the new part lies inside the mapping; advice changes no contents.
                unsafe {
                    libc::madvise(
                        moved.cast::<u8>().add(old).cast(),
                        new - old,
                        libc::MADV_NOHUGEPAGE,
                    )
                };
                moved.cast()
            }
            // Across the threshold: a block of the other kind.
            // SAFETY: as for the caller.
            _ => unsafe { self.copy_to_new(block, layout, new_size) },
        }
    }
}

impl Allocator {
    /// Moves a block into a new one of `new_size` bytes by copying.
    ///
    /// # Safety
    /// The same as `GlobalAlloc::realloc`'s.
    unsafe fn copy_to_new(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `realloc`'s caller guarantees that `new_size` with the block's alignment is a
        // valid, non-zero layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as just said.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are live and at least this long, and do not overlap.
            unsafe {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills `len` bytes at `block` with a pattern that differs from byte to byte.
    unsafe fn fill(block: *mut u8, len: usize) {
        for i in 0..len {
            // SAFETY: the caller's block is at least `len` long.
            unsafe { block.add(i).write((i % 251) as u8) };
        }
    }

    /// Whether the first `len` bytes at `block` still hold [`fill`]'s pattern.
    unsafe fn intact(block: *const u8, len: usize) -> bool {
        // SAFETY: the caller's block is at least `len` long.
        (0..len).all(|i| unsafe { block.add(i).read() } == (i % 251) as u8)
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).expect("a valid layout")
    }

    #[test]
    fn a_large_block_is_aligned_to_a_huge_page_and_reads_as_zeros() {
        let size = 3 * HUGE + 123;
        // SAFETY: a non-zero layout; the block is freed with it.
        unsafe {
            let block = Allocator.alloc_zeroed(layout(size));
            assert!(!block.is_null());
            assert_eq!(block as usize % HUGE, 0);
            assert!((0..size).all(|i| block.add(i).read() == 0));
            Allocator.dealloc(block, layout(size));
        }
    }

    #[test]
    fn growing_and_shrinking_keeps_the_contents_in_every_kind_of_move() {
        // Small to large (a copy), large to larger twice (the pages move; the second time the
        // block is two areas and is copied), larger to large (in place), large to small (a copy).
        let sizes = [4096, LARGE + 17, 2 * HUGE + 5, 5 * HUGE, HUGE + 1, 100];
        // SAFETY: each step passes the layout the block was last given.
        unsafe {
            let mut block = Allocator.alloc(layout(sizes[0]));
            fill(block, sizes[0]);
            for pair in sizes.windows(2) {
                let (old, new) = (pair[0], pair[1]);
                block = Allocator.realloc(block, layout(old), new);
                assert!(!block.is_null(), "{old} -> {new}");
                assert!(intact(block, old.min(new)), "{old} -> {new}");
                fill(block, new);
            }
            Allocator.dealloc(block, layout(sizes[sizes.len() - 1]));
        }
    }

    #[test]
    fn a_vec_grown_past_the_threshold_holds_what_was_pushed() {
        let mut bytes = Vec::new();
        for i in 0..3 * HUGE + 7 {
            bytes.push((i % 253) as u8);
        }
        assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
        bytes.truncate(10);
        bytes.shrink_to_fit();
        assert_eq!(bytes, (0..10).map(|i| i as u8).collect::<Vec<_>>());
    }
}
