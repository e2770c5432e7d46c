//! The live heap, counted by a global allocator that wraps the system one:
//! bytes requested, glibc's chunks for them, and the number of blocks.
//! A bench that declares `mod counting` (by `#[path]`) gets the allocator;
//! the others keep the plain system one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIVE_CHUNKS: AtomicUsize = AtomicUsize::new(0);
static LIVE_COUNT: AtomicUsize = AtomicUsize::new(0);
pub static PEAK: AtomicUsize = AtomicUsize::new(0);

/// glibc malloc's chunk for a request of `size` bytes on 64-bit Linux.
fn chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
    LIVE_CHUNKS.fetch_add(chunk(size), Ordering::Relaxed);
    LIVE_COUNT.fetch_add(1, Ordering::Relaxed);
}

fn shrank(size: usize) {
    LIVE.fetch_sub(size, Ordering::Relaxed);
    LIVE_CHUNKS.fetch_sub(chunk(size), Ordering::Relaxed);
    LIVE_COUNT.fetch_sub(1, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The heap at one moment.
#[derive(Clone, Copy)]
pub struct Heap {
    pub bytes: usize,
    pub chunks: usize,
    pub count: usize,
}

pub fn heap() -> Heap {
    Heap {
        bytes: LIVE.load(Ordering::Relaxed),
        chunks: LIVE_CHUNKS.load(Ordering::Relaxed),
        count: LIVE_COUNT.load(Ordering::Relaxed),
    }
}
