//! The bytes a scan of a sealed segment checks its records in: the
//! segment's mapping (pages, cursors: random access, payloads lent without
//! a copy), or, for reads of whole segments (replays, `visit`), chunks read
//! ahead by `pread`s on a second thread, which also checks their CRCs while
//! the caller's thread decodes and copies the chunk before
//! (docs/BENCHMARKS.md, "Replay (owned records)").
//!
//! Either way each record is checked by the one validation
//! (`format::check_record_in`) on bytes that hold it whole, or every byte
//! up to the segment's end: the same bytes give the same verdict (I26).

use std::io;
use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::Scope;

use crate::buf::AlignedBuf;
use crate::format::{self, RawHeader, RecordFault};
use crate::io::{FileImage, ImageReader};
use crate::view::SealedSeg;

/// Bytes per read of a segment read by copies (a huge page).
const CHUNK: usize = crate::buf::HUGE_PAGE;
/// Buffers in flight: one decoded, one read, one waiting.
const BUFFERS: usize = 3;
/// Alignment of the read buffers (a page: the kernel copies whole pages).
const ALIGN: usize = 4096;
/// The fewest records a replay asks for to read by copies: a smaller page
/// reads the mapping, without filling buffers it will not use.
const MIN_RECORDS: usize = 1 << 16;

/// Whether a scan that takes up to `max_records` reads whole segments by
/// copies. The one rule for every caller.
pub(super) fn reads_by_copies(max_records: usize) -> bool {
    max_records >= MIN_RECORDS
}

/// One chunk of a segment: `buf[..len]` are the bytes at segment offsets
/// `base..`. Every record that starts before `checked_to` lies whole in it
/// and passed `check_record_in` with its CRC; the next chunk starts at
/// `checked_to`, unless this is the `last` (the end of the records, of the
/// data, or a fault at `checked_to`).
pub(super) struct Chunk {
    buf: AlignedBuf,
    base: u64,
    len: usize,
    checked_to: u64,
    last: bool,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Where one sealed segment's records are checked.
pub(super) enum SealedBytes<'a> {
    /// Its mapping (the whole file, from offset 0).
    Mapped(&'a FileImage),
    /// Chunks from the read-ahead thread ([`read_ahead`]).
    Read { chunks: Receiver<io::Result<Chunk>>, spare: Sender<AlignedBuf>, cur: Option<Chunk> },
}

/// A record checked (or the fault found) and the bytes its range indexes.
pub(super) type Checked<'b> = (&'b [u8], Result<(RawHeader, Range<usize>), RecordFault>);

/// Where a scan of a sealed segment starts and what it reads.
pub(super) struct Start {
    pub off: u64,
    pub lsn: u64,
}

impl<'a> SealedBytes<'a> {
    /// The bytes of `s` (mapped as `img`) for a scan from `start`: chunks
    /// read on a thread of `scope` when `by_copies`, more than two chunks
    /// remain and the file at its path is still the one mapped; else the
    /// mapping.
    pub fn new<'s>(
        scope: &'s Scope<'s, '_>,
        img: &'a FileImage,
        s: &'a SealedSeg,
        start: Start,
        by_copies: bool,
    ) -> Self
    where
        'a: 's,
    {
        // The mapping's length is the file's, as check_record_in bounds it there.
        let end = s.seal.data_end.min(img.len() as u64);
        if !by_copies || end.saturating_sub(start.off) <= 2 * CHUNK as u64 {
            return SealedBytes::Mapped(img);
        }
        let Some(reader) = img.reader(&s.path) else { return SealedBytes::Mapped(img) };
        let (to_main, chunks) = sync_channel(BUFFERS);
        let (spare, spares) = channel();
        let seal = (s.seal.last_lsn, s.seal.data_end, s.header.crc_seed());
        let job = move || read_ahead(reader, start, end, seal, spares, to_main);
        match std::thread::Builder::new().name("directwal-read".into()).spawn_scoped(scope, job) {
            Ok(_) => SealedBytes::Read { chunks, spare, cur: None },
            Err(_) => SealedBytes::Mapped(img),
        }
    }

    /// Whether the bytes are the mapping (which wants read-ahead asked for).
    pub fn mapped(&self) -> Option<&'a FileImage> {
        match self {
            SealedBytes::Mapped(img) => Some(img),
            SealedBytes::Read { .. } => None,
        }
    }

    /// Checks the record at segment offset `off` (expected LSN `lsn`), the
    /// next one after the last checked. I10: nothing past `data_end` is
    /// used. A record the read-ahead thread checked is checked again
    /// without its CRC (the same bytes, the same function).
    pub fn check(&mut self, off: u64, data_end: u64, seed: u32, lsn: u64) -> io::Result<Checked<'_>> {
        let (chunks, spare, cur) = match self {
            SealedBytes::Mapped(img) => {
                let bytes: &[u8] = img;
                return Ok((bytes, format::check_record_in(bytes, 0, off, data_end, seed, Some(lsn), true)));
            }
            SealedBytes::Read { chunks, spare, cur } => (chunks, spare, cur),
        };
        // The chunk that holds the record at `off` whole: the next one once
        // `off` reaches where this one's whole records end (a chunk may hold
        // none: the start of a record longer than a chunk).
        let c = loop {
            if let Some(c) = cur.take_if(|c| off >= c.checked_to && !c.last) {
                // Its records are done: the buffer goes back to be read into.
                let _ = spare.send(c.buf);
            }
            if let Some(c) = cur {
                break c;
            }
            let next = chunks.recv().unwrap_or_else(|_| Err(io::Error::other("the read-ahead thread stopped")))?;
            *cur = Some(next);
        };
        debug_assert!(off >= c.base, "chunks are read in order");
        // I26: records before `checked_to` passed with their CRC; from there
        // (the last chunk's fault, or the end) they are checked in full.
        let verify_crc = off >= c.checked_to;
        Ok((c.bytes(), format::check_record_in(c.bytes(), c.base, off, data_end, seed, Some(lsn), verify_crc)))
    }
}

/// The read-ahead thread of one segment: reads it from `start` in chunks
/// into the buffers it gets back through `spares`, checks each whole record
/// (with its CRC) and sends the chunks in order; a record cut by a chunk's
/// end is copied to the front of the next one. Stops at the seal's last
/// record, at the end of the data, at a fault (the caller's thread finds
/// it again) or when the caller hangs up. `seal`: last LSN, data end, CRC
/// seed.
fn read_ahead(
    reader: ImageReader<'_>,
    start: Start,
    mut end: u64,
    seal: (u64, u64, u32),
    spares: Receiver<AlignedBuf>,
    to_main: SyncSender<io::Result<Chunk>>,
) {
    let (last_lsn, data_end, seed) = seal;
    let (mut off, mut lsn) = (start.off, start.lsn);
    let mut prev: Option<Chunk> = None;
    let mut fresh = BUFFERS;
    loop {
        // The record at `off` needs at least its header, or all of it when
        // the previous chunk holds the header (a length read from disk
        // allocates no more than the bytes up to `end`).
        let held = prev.as_ref().map_or(&[][..], |p| p.bytes());
        let base = prev.as_ref().map_or(off, |p| p.base);
        let need = super::scan::record_end(held, base, off).unwrap_or(off + format::RECORD_HEADER_LEN as u64);
        let size = ((need.min(end) - off) as usize).max(CHUNK).next_multiple_of(ALIGN);
        let mut buf = if fresh > 0 {
            fresh -= 1;
            AlignedBuf::new(size, ALIGN)
        } else {
            match spares.recv() {
                Ok(b) if b.len() >= size => b,
                Ok(_) => AlignedBuf::new(size, ALIGN),
                Err(_) => return,
            }
        };
        let mut len = 0;
        if let Some(p) = prev.take() {
            let carry = &p.bytes()[(off - p.base) as usize..];
            buf[..carry.len()].copy_from_slice(carry);
            len = carry.len();
            if to_main.send(Ok(p)).is_err() {
                return;
            }
        }
        let want = (buf.len() as u64).min(end - off) as usize;
        match reader.read_at(&mut buf[len..want], off + len as u64) {
            // The file ends early: so does the data (check_record_in says Truncated).
            Ok(got) if len + got < want => (end, len) = (off + (len + got) as u64, len + got),
            Ok(got) => len += got,
            Err(e) => {
                let _ = to_main.send(Err(e));
                return;
            }
        }
        let base = off;
        let mut last = false;
        loop {
            if lsn > last_lsn {
                last = true;
                break;
            }
            match format::check_record_in(&buf[..len], base, off, data_end, seed, Some(lsn), true) {
                Ok((h, _)) => {
                    off += format::record_size(h.len as usize) as u64;
                    lsn += 1;
                }
                // Cut by the chunk, with more to read: on in the next one.
                Err(RecordFault::Truncated) if base + (len as u64) < end => break,
                Err(_) => {
                    last = true;
                    break;
                }
            }
        }
        let chunk = Chunk { buf, base, len, checked_to: off, last };
        if last {
            let _ = to_main.send(Ok(chunk));
            return;
        }
        prev = Some(chunk);
    }
}
