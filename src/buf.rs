//! Memory buffers for the writer: [`AlignedBuf`] (aligned as O_DIRECT
//! requires, on huge pages when large) and [`SharedBuf`] / [`WriteBuf`], a
//! buffer readers may read while the writer fills it (DESIGN I18). Their
//! public paths are `directwal::io::*`.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Buffers of at least this many bytes start on a multiple of it and ask
/// for transparent huge pages (`MADV_HUGEPAGE`). An O_DIRECT write is built
/// from the buffer's physical pages, and this disk takes at most 254
/// segments per request: from 4 KiB pages a 4 MiB write is four requests,
/// from 2 MiB pages one. Measured here (4 MiB O_DIRECT write + fdatasync,
/// alternated): 368–495 → 879–897 MB/s into a growing file, 502–687 →
/// 1,317–1,402 MB/s into a written one. Where the kernel gives no huge
/// pages the buffer works the same, with small ones.
pub const HUGE_PAGE: usize = 2 << 20;

/// A zero-initialised buffer whose start and length are multiples of
/// `align`, as O_DIRECT requires.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// The alignment asked for (a mapping's window starts `HUGE_PAGE` aligned).
    align: usize,
    /// Where the bytes live.
    mem: Memory,
}

/// The allocation behind an [`AlignedBuf`].
enum Memory {
    /// From the heap with this layout.
    Heap(Layout),
    /// An anonymous mapping whose `HUGE_PAGE`-aligned window
    /// `[ptr, ptr + len)` is the buffer (see [`map_huge`]); unmapped when
    /// dropped.
    Mapped(#[allow(dead_code)] memmap2::MmapMut),
}

// SAFETY: AlignedBuf owns its allocation exclusively (like Vec<u8>); moving it
// to another thread or sharing `&AlignedBuf` (read-only access) is sound.
unsafe impl Send for AlignedBuf {}
// SAFETY: see above; `&AlignedBuf` only hands out `&[u8]`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zero bytes aligned to `align` (a power of two; `len`
    /// is rounded up to a multiple of it).
    pub fn new(len: usize, align: usize) -> Self {
        let len = len.max(align).next_multiple_of(align);
        if len >= HUGE_PAGE
            && align <= HUGE_PAGE
            && let Some((map, ptr)) = map_huge(len)
        {
            return AlignedBuf { ptr, len, align, mem: Memory::Mapped(map) };
        }
        let layout = Layout::from_size_align(len, align).expect("valid buffer layout");
        // SAFETY: the layout has non-zero size (len >= align >= 1).
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len, align, mem: Memory::Heap(layout) }
    }

    /// Capacity in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The alignment it was allocated with.
    pub fn align(&self) -> usize {
        self.align
    }

    /// Never true: a buffer holds at least one block.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mapped = matches!(self.mem, Memory::Mapped(_));
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("align", &self.align)
            .field("mapped", &mapped)
            .finish()
    }
}

/// A fresh anonymous mapping (memmap2) with a window of `len` bytes (a
/// multiple of the page size) starting on a `HUGE_PAGE` boundary, with huge
/// pages asked for before any page is touched; returns the mapping and the
/// window's start. The heap would hand out memory already faulted in as
/// small pages (a freed buffer's), for which the advice comes too late: in
/// one run, of the two buffers the writer alternates, one wrote 4 MiB in
/// 1.0 ms and the other in 5.5 ms. None when the mapping fails.
///
/// Why the window: the kernel places a mapping on any page boundary, and
/// memmap2 can neither ask for an aligned address nor unmap part of a
/// mapping, so `HUGE_PAGE` more bytes are mapped and the aligned window
/// inside them is used. The unused head and tail are address space only:
/// never touched, so never backed by memory.
fn map_huge(len: usize) -> Option<(memmap2::MmapMut, NonNull<u8>)> {
    let mut map = memmap2::MmapOptions::new().len(len.checked_add(HUGE_PAGE)?).map_anon().ok()?;
    let base = map.as_mut_ptr();
    let head = (base as usize).next_multiple_of(HUGE_PAGE) - base as usize;
    // Advice only: without THP (or on macOS) the pages are small, which
    // works the same.
    crate::io::advise_huge_pages(&map, head, len);
    // SAFETY: head < HUGE_PAGE, so [base + head, base + head + len) lies
    // inside the mapping of len + HUGE_PAGE bytes just made.
    let start = unsafe { base.add(head) };
    NonNull::new(start).map(|p| (map, p))
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to len initialised bytes owned by self (zeroed
        // at allocation: alloc_zeroed, or a fresh anonymous mapping), alive
        // for the borrow.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // A mapping unmaps itself when `mem` is dropped.
        if let Memory::Heap(layout) = self.mem {
            // SAFETY: ptr was returned by alloc_zeroed with exactly this
            // layout and is freed only here.
            unsafe { dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

/// A write buffer that readers may read while the writer fills it (DESIGN
/// I18). Its first `frozen` bytes never change again while anyone but the
/// writer holds it: readers read only those ([`SharedBuf::frozen`]), the
/// writer writes only above them ([`WriteBuf::tail_mut`]).
pub struct SharedBuf {
    buf: AlignedBuf,
    /// Bytes from the start that are frozen. Rises while the buffer is
    /// shared; back to 0 only when the writer holds it alone again.
    frozen: AtomicUsize,
}

impl SharedBuf {
    /// Capacity in bytes.
    pub fn len(&self) -> usize {
        self.buf.len
    }

    /// Never true: a buffer holds at least one block.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Its first `len` bytes, which must be frozen (panics otherwise).
    pub fn frozen(&self, len: usize) -> &[u8] {
        assert!(
            len <= self.frozen.load(Ordering::Acquire),
            "read of {len} bytes of a shared buffer beyond its frozen part"
        );
        // SAFETY: [0, len) is initialised (AlignedBuf zeroes its memory) and
        // frozen: the only writer, this buffer's `WriteBuf`, writes at or
        // above the frozen mark (`tail_mut` asserts it), and the mark does
        // not fall while `self` is borrowed (it is reset only through
        // `Arc::get_mut`, which excludes every other reference). The Acquire
        // load pairs with `freeze`'s Release: the frozen bytes are visible.
        unsafe { std::slice::from_raw_parts(self.buf.ptr.as_ptr(), len) }
    }
}

impl fmt::Debug for SharedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBuf")
            .field("buf", &self.buf)
            .field("frozen", &self.frozen.load(Ordering::Relaxed))
            .finish()
    }
}

/// The writer's handle on a [`SharedBuf`]: the only one that writes to it
/// (it is not `Clone`). Others get the buffer from [`freeze`](Self::freeze).
#[derive(Debug)]
pub struct WriteBuf {
    page: Arc<SharedBuf>,
}

impl WriteBuf {
    /// A zeroed buffer of `len` bytes aligned to `align` (as `AlignedBuf`).
    pub fn new(len: usize, align: usize) -> Self {
        WriteBuf { page: Arc::new(SharedBuf { buf: AlignedBuf::new(len, align), frozen: AtomicUsize::new(0) }) }
    }

    /// Capacity in bytes.
    pub fn len(&self) -> usize {
        self.page.len()
    }

    /// Never true: a buffer holds at least one block.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The alignment it was allocated with.
    pub fn align(&self) -> usize {
        self.page.buf.align()
    }

    /// All its bytes (to write them to a file).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: initialised and alive for the borrow. Only this handle
        // writes to the buffer, through `tail_mut(&mut self)`, which cannot
        // run while this borrow lives; other holders only read.
        unsafe { std::slice::from_raw_parts(self.page.buf.ptr.as_ptr(), self.page.len()) }
    }

    /// Its bytes from `from` on, to fill. I18: `from` must be at or above
    /// the frozen mark (panics otherwise): bytes others may read never change.
    pub fn tail_mut(&mut self, from: usize) -> &mut [u8] {
        // Relaxed: only this handle stores the mark.
        let frozen = self.page.frozen.load(Ordering::Relaxed);
        assert!(from >= frozen && from <= self.len(), "write at {from} into a buffer frozen up to {frozen}");
        // SAFETY: [from, len) is inside the buffer and above the frozen mark,
        // so no other holder reads it (they read only frozen bytes), and
        // `&mut self` excludes this handle's own `bytes()` borrows.
        unsafe { std::slice::from_raw_parts_mut(self.page.buf.ptr.as_ptr().add(from), self.len() - from) }
    }

    /// Freezes its first `upto` bytes (they never change again while the
    /// buffer is shared) and returns the buffer to share.
    pub fn freeze(&mut self, upto: usize) -> Arc<SharedBuf> {
        debug_assert!(upto <= self.len());
        self.page.frozen.fetch_max(upto, Ordering::Release);
        self.page.clone()
    }

    /// When no one else holds the buffer any more, thaws it (every byte
    /// may be written again) and returns true.
    pub fn reclaim(&mut self) -> bool {
        match Arc::get_mut(&mut self.page) {
            Some(p) => {
                *p.frozen.get_mut() = 0;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_zeroed_and_large_ones_start_on_a_huge_page() {
        for (len, align) in
            [(4096, 4096), (100, 512), (1 << 20, 4096), (HUGE_PAGE, 4096), (5 << 20, 4096), (3 << 20, 65536)]
        {
            let mut b = AlignedBuf::new(len, align);
            assert!(b.len() >= len && b.len().is_multiple_of(align), "{len} {align}: {}", b.len());
            assert_eq!(b.align(), align);
            assert!((b.as_ptr() as usize).is_multiple_of(align));
            if len >= HUGE_PAGE {
                // A mapping of its own, so the huge-page advice comes before
                // any page is touched.
                assert!((b.as_ptr() as usize).is_multiple_of(HUGE_PAGE), "{len}: not on a huge page boundary");
            }
            assert!(b.iter().all(|&x| x == 0));
            b.fill(0xa5);
            let last = b.len() - 1;
            assert_eq!(b[last], 0xa5);
        }
    }

    #[test]
    fn a_shared_buffer_is_written_only_above_its_frozen_part_and_reused_only_when_unshared() {
        let mut w = WriteBuf::new(8192, 4096);
        w.tail_mut(0)[..100].fill(7);
        let shared = w.freeze(100);
        assert_eq!(shared.frozen(100), &[7u8; 100][..]);
        w.tail_mut(100)[..10].fill(8);
        assert_eq!(&w.bytes()[..110], [&[7u8; 100][..], &[8u8; 10][..]].concat());
        // Frozen bytes stay as they were while a reader holds the buffer.
        let below = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            w.tail_mut(99);
        }));
        assert!(below.is_err(), "a write below the frozen part must be refused");
        let beyond = std::panic::catch_unwind(|| shared.frozen(101).len());
        assert!(beyond.is_err(), "a read beyond the frozen part must be refused");
        assert!(!w.reclaim(), "reclaimed while shared");
        w.tail_mut(100);
        drop(shared);
        assert!(w.reclaim(), "not reclaimed once unshared");
        w.tail_mut(0)[0] = 1;
        assert_eq!(w.bytes()[0], 1);
    }
}
