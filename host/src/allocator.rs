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
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Set when a module was compiled: Cranelift ran, on this thread and on
/// rayon's pool (wasmtime compiles functions in parallel).
static COMPILED: AtomicBool = AtomicBool::new(false);

/// Notes that a module was compiled, for [`return_freed_memory`].
pub fn compiled() {
    COMPILED.store(true, Ordering::Relaxed);
}

/// Hands the memory that compiling freed back to the OS, if a module was
/// compiled since the last call: after start-up and after a reload.
///
/// mimalloc keeps freed pages in the heap of the thread that freed them,
/// and returns them only when that thread allocates again; the compiler's
/// threads are idle after start-up, so a host that compiled its modules
/// kept ~100 MiB resident instead of ~27 (docs/operations.md). A forced
/// collect on every one of those threads returns what they hold free.
///
/// # Examples
///
/// ```
/// mnvkd_host::allocator::compiled();
/// mnvkd_host::allocator::return_freed_memory();
/// ```
pub fn return_freed_memory() {
    if !COMPILED.swap(false, Ordering::Relaxed) {
        return; // nothing compiled: rayon's pool may not even exist
    }
    // SAFETY: mi_collect takes no pointers; any thread may call it.
    rayon::broadcast(|_| unsafe { libmimalloc_sys::mi_collect(true) });
    // SAFETY: as above.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
