//! The host's global allocator: mimalloc, called through its plain entry
//! points for word-aligned blocks.
//!
//! The `mimalloc` crate passes every request to `mi_malloc_aligned`, whose
//! fast path only serves blocks of at most 1 KiB; larger ones (a store, an
//! instantiation's future) take its generic aligned path. A word-aligned
//! block needs no more than `mi_malloc` gives every block, and `mi_malloc`
//! serves any size on its ordinary path: a CGI request took 41,260
//! instructions through `mi_malloc_aligned` and 39,658 through this
//! (`scripts/bench-instr`, docs/benchmarks.md).

use std::alloc::{GlobalAlloc, Layout};

/// mimalloc as the host's `#[global_allocator]` (`main.rs`; the spawn
/// example wraps it to count).
#[derive(Debug, Clone, Copy)]
pub struct Allocator;

/// The alignment of every block `mi_malloc` returns: its size classes are
/// whole words, so a 24-byte block is 8- but not 16-aligned.
const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: every call goes to mimalloc, which honours the `GlobalAlloc`
// contract; the unaligned entry points only for alignments they guarantee.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: the caller's contract; mi_malloc's blocks are word-aligned.
            unsafe { libmimalloc_sys::mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: as in `alloc`.
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on (mi_free frees either kind).
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: as in `alloc`; the block came from this allocator.
            unsafe { libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}
