//! The writer's configuration, [`WalWriterConfig`], at nodedb-wal 0.0.6's
//! module path (`nodedb_wal::writer::WalWriterConfig`).
//!
//! Inside the crate: the active segment, an aligned buffer in front of one
//! segment file.
//!
//! Records are encoded back to back into the buffer, which holds a fixed
//! window of the file. A sync writes the blocks from the first one that is
//! not yet durable up to the end of the data (the last one partly filled and
//! zero padded) and fdatasyncs; the partly filled block stays in the buffer
//! and is written again, with identical durable bytes, by the next sync
//! (DESIGN I4). Nothing is padded per sync. Readers read the buffer itself
//! (I18): nothing is copied for them.

mod buffers;
mod pipe;
mod space;
mod tail;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::crypto::{SegmentCipher, TAG_LEN};
use crate::error::{Result, WalError};
use crate::format::{self, RecordFields, Seal, SegmentHeader};
use crate::io::{AlignedBuf, OpenMode, Storage, StorageFile, is_direct_io_refusal};
use crate::stats::{Stats, Written};
use crate::view::ActiveView;
use std::sync::Arc;

pub(crate) use buffers::Buffers;
use pipe::{Job, WritePipe};

pub use crate::wal::{DEFAULT_ALIGNMENT, DEFAULT_WRITE_BUFFER_SIZE, WalWriterConfig};

/// Bytes of one sync epoch from which space is reserved with fallocate
/// rather than zero-filled: the journal work an allocated-but-unwritten
/// extent costs at fdatasync is small next to that much data, while
/// zero-filling would write it twice (docs/DESIGN.md, "Preparing space").
const LARGE_EPOCH_BYTES: u64 = 1 << 20;

/// The segment currently written.
pub(crate) struct ActiveSegment {
    pub name: String,
    pub path: PathBuf,
    file: Arc<dyn StorageFile>,
    pub header: SegmentHeader,
    pub seed: u32,
    block: usize,
    direct: bool,
    /// File offset of `buf[0]`; always block aligned.
    buf_file_off: u64,
    /// Bytes of data in the buffer.
    buf_len: usize,
    /// End of all appended data (`buf_file_off + buf_len`).
    pub data_end: u64,
    /// End of every record accepted so far, the one `append` is staging
    /// included (then past `data_end`): what the durable reserve covers (I26).
    accepted_end: u64,
    /// End of the data covered by a completed fdatasync.
    pub durable_end: u64,
    /// What the latest `write_out` wrote (durable once its fdatasync returns).
    flushed: FlushTarget,
    /// Records covered by a completed fdatasync, and the LSN of the last one.
    pub durable_records: u64,
    pub durable_last_lsn: u64,
    /// Records appended (durable or not) and the last LSN appended.
    pub records: u64,
    pub last_lsn: u64,
    /// The file is zero-filled (or already written) up to here.
    prepared_end: u64,
    /// The file's length reaches at least this far through preparation
    /// (zero-fill, fallocate, a spare's own length), once those writes complete.
    extended_to: u64,
    /// I26: the file length a completed fdatasync made durable; no data
    /// write ends less than a block before it.
    durable_len: u64,
    /// `extended_to` when the flush in flight was written out.
    extended_at_flush: u64,
    /// Space prepared ahead never goes past this (the data of a full
    /// segment and its reserve) unless a record needs it.
    prepare_limit: u64,
    /// Bytes the last completed sync wrote: predicts the size of the next one.
    last_epoch_bytes: u64,
    /// Set when payloads of this segment are encrypted (its header says so).
    cipher: Option<SegmentCipher>,
    /// What readers see of this segment: the watermark and sparse index.
    pub view: Arc<ActiveView>,
    prepare_chunk: u64,
    /// Writes full buffers in the background (I16).
    pipe: Mutex<WritePipe>,
    /// An fdatasync begun by `begin_flush` has not been finished yet (I12).
    sync_in_flight: bool,
    stats: Arc<Stats>,
    /// End of the record bytes handed to the device so far (for telling new
    /// data from rewritten tail blocks in the stats).
    written_end: u64,
    /// I4, checked in debug builds: rewritten bytes are unchanged.
    tail: tail::TailCheck,
}

/// What a flush wrote: it becomes durable when the fdatasync after it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlushTarget {
    pub end: u64,
    pub records: u64,
    pub last_lsn: u64,
}

/// Everything needed to create a segment file.
pub(crate) struct NewSegment<'a> {
    pub storage: &'a dyn Storage,
    pub dir: &'a Path,
    /// Its `cipher` must describe `cipher`.
    pub header: SegmentHeader,
    pub cipher: Option<SegmentCipher>,
    /// Live readers of the WAL (the writer mirrors its writes for them).
    pub readers: Arc<std::sync::atomic::AtomicUsize>,
    pub direct: bool,
    pub prepare_bytes: u64,
    pub prepare_chunk: u64,
    /// Data bytes after which the segment rolls (`segment_target_size`).
    pub target: u64,
    /// Size of the sync epochs the previous segment saw (0 at open): large
    /// ones are continued with reserved rather than zero-filled space.
    pub epoch_hint: u64,
    /// A spare file, checked and opened, to reuse instead of a new one
    /// (I17); `header.recycled` must say so.
    pub spare: Option<crate::spares::OpenSpare>,
    pub stats: Arc<Stats>,
}

/// Opens a file, with O_DIRECT when asked and the file system allows it.
/// Returns the file and whether O_DIRECT is in effect.
pub(crate) fn open_file(
    storage: &dyn Storage,
    path: &Path,
    create: bool,
    direct: bool,
) -> Result<(Box<dyn StorageFile>, bool)> {
    if direct {
        match storage.open(path, OpenMode { create, direct: true }) {
            Ok(f) => return Ok((f, true)),
            Err(e) if is_direct_io_refusal(&e) => {}
            Err(e) => return Err(WalError::io("open", path, e)),
        }
    }
    let f = storage.open(path, OpenMode { create, direct: false }).map_err(|e| WalError::io("open", path, e))?;
    Ok((f, false))
}

impl ActiveSegment {
    /// Creates a segment (I2): written under a temporary name (or in a
    /// spare file, I17), header and prepared space made durable, then
    /// renamed into place and the directory fsynced. Fails without side
    /// effects visible to recovery.
    pub fn create(mut n: NewSegment<'_>, bufs: &mut Buffers) -> Result<Self> {
        debug_assert_eq!(n.cipher.as_ref().map_or(format::Cipher::None, |c| c.descriptor()), n.header.cipher);
        debug_assert_eq!(n.spare.is_some(), n.header.recycled);
        let name = crate::segment::segment_file_name(n.header.first_lsn);
        let path = n.dir.join(&name);
        let block = n.header.block_size as usize;
        // A spare's written space is as good as zeros: its stale bytes never
        // validate under the new salt (it seeds the CRC), so it needs no preparing.
        // I17: it was checked again right before use (by path and on the
        // opened descriptor), not only when it was pooled (`SparePool::take_open`).
        let (tmp, stale_end, (file, direct)) = match n.spare.take() {
            Some(s) => (s.path, s.len / block as u64 * block as u64, (s.file, s.direct)),
            None => {
                let tmp = n.dir.join(format!("{name}{}", crate::segment::TMP_SUFFIX));
                match open_file(n.storage, &tmp, true, n.direct) {
                    Ok(f) => (tmp, 0, f),
                    Err(e) => {
                        let _ = n.storage.remove_file(&tmp);
                        return Err(e);
                    }
                }
            }
        };
        let mut seg = ActiveSegment::new(name, path, Arc::from(file), direct, &mut n);
        if let Err(e) = seg.prepare(&n, &tmp, stale_end) {
            drop(seg);
            let _ = n.storage.remove_file(&tmp);
            return Err(e);
        }
        // The buffer starts this segment's data: readers of the last
        // segment must not be reading it (I18).
        bufs.exclusive();
        if let Err(e) = n.storage.rename(&tmp, &seg.path) {
            let _ = n.storage.remove_file(&tmp);
            return Err(WalError::io("rename", &tmp, e));
        }
        // I1: the directory is fsynced after a segment file is created/renamed.
        n.storage.sync_dir(n.dir).map_err(|e| WalError::io("fsync directory", n.dir, e))?;
        Ok(seg)
    }

    /// The state of a segment whose file `file` holds nothing yet.
    fn new(name: String, path: PathBuf, file: Arc<dyn StorageFile>, direct: bool, n: &mut NewSegment<'_>) -> Self {
        let block = n.header.block_size as usize;
        let start = format::data_start(block);
        let before_first = n.header.first_lsn - 1;
        ActiveSegment {
            view: Arc::new(ActiveView::new(name.clone(), path.clone(), n.header.clone(), n.readers.clone())),
            name,
            path,
            file,
            seed: n.header.crc_seed(),
            header: n.header.clone(),
            block,
            direct,
            buf_file_off: start,
            buf_len: 0,
            data_end: start,
            accepted_end: start,
            durable_end: start,
            flushed: FlushTarget { end: start, records: 0, last_lsn: before_first },
            durable_records: 0,
            durable_last_lsn: before_first,
            records: 0,
            last_lsn: before_first,
            prepared_end: 0,
            extended_to: 0,
            durable_len: 0,
            extended_at_flush: 0,
            prepare_limit: (start + n.target).next_multiple_of(block as u64) + block as u64,
            last_epoch_bytes: n.epoch_hint,
            cipher: n.cipher.take(),
            prepare_chunk: n.prepare_chunk,
            pipe: Mutex::new(WritePipe::default()),
            sync_in_flight: false,
            stats: n.stats.clone(),
            written_end: start,
            tail: tail::TailCheck::default(),
        }
    }

    /// Writes the header block and a zero seal block, prepares the first
    /// chunk of space (written space of a spare up to `stale_end` counts)
    /// and makes it all durable (I2: before the file gets its name).
    fn prepare(&mut self, n: &NewSegment<'_>, tmp: &Path, stale_end: u64) -> Result<()> {
        let (block, start) = (self.block, format::data_start(self.block));
        let mut head = AlignedBuf::new(2 * block, block);
        n.header.encode(&mut head[..block]);
        self.write(&head, 0)?;
        self.stats.wrote(Written::Prepare, head.len() as u64);
        self.prepared_end = start.max(stale_end);
        self.extended_to = self.prepared_end;
        // I22: whole blocks only, so the file's length stays a multiple of
        // 512; I26: at least one block past the data start.
        let want = (start + n.prepare_bytes.max(block as u64)).next_multiple_of(block as u64);
        if self.prepared_end >= want {
            // A recycled file: already written space.
        } else if n.epoch_hint >= LARGE_EPOCH_BYTES {
            // I8: bulk writers get reserved space, as `ensure_space` would
            // give them; zero-filling would write the chunk twice.
            self.reserve_to(want)?;
        } else {
            self.zero_fill(want)?;
        }
        self.file.sync_data().map_err(|e| WalError::io("fdatasync", tmp, e))?;
        // I26: the first reserve is durable before any data is written.
        self.durable_len = self.extended_to;
        Ok(())
    }

    /// Whether O_DIRECT is in effect for this file.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Bytes of the file in use (headers + records).
    pub fn used_bytes(&self) -> u64 {
        self.data_end
    }

    /// The size of this segment's sync epochs, for the next segment: the
    /// last completed one, or the one in progress if larger.
    pub fn epoch_hint(&self) -> u64 {
        self.last_epoch_bytes.max(self.data_end - self.durable_end)
    }

    /// Bytes of data since the start of the data region.
    pub fn data_bytes(&self) -> u64 {
        self.data_end - format::data_start(self.block)
    }

    fn pipe(&self) -> std::sync::MutexGuard<'_, WritePipe> {
        self.pipe.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// I16: waits for the background write in flight; an error is that of
    /// a failed data write (now or earlier), after which the WAL must be
    /// poisoned.
    pub fn settle(&self) -> Result<()> {
        self.pipe().settle().map_err(|e| WalError::io("write", &self.path, e))
    }

    /// Whether a background data write has failed (the WAL must poison).
    pub fn write_failed(&self) -> bool {
        self.pipe().failed.is_some()
    }

    fn write(&self, bytes: &[u8], offset: u64) -> Result<()> {
        self.settle()?;
        self.file.write_all_at(bytes, offset).map_err(|e| WalError::io("write", &self.path, e))
    }

    /// Bytes a payload of `len` bytes occupies in this segment.
    pub fn record_size(&self, len: usize) -> usize {
        format::record_size(len + if self.cipher.is_some() { TAG_LEN } else { 0 })
    }

    /// Whether this segment encrypts with the ring key `key_id` (None: plain).
    pub fn encrypts_with(&self) -> Option<u32> {
        crate::segment::key_id(&self.header)
    }

    /// Appends one record to the buffer, writing out full buffers as needed.
    /// `scratch` holds records larger than the buffer's free space. In an
    /// encrypted segment the payload is encrypted in place (AES-256-GCM, docs/FORMAT.md).
    pub fn append(
        &mut self,
        bufs: &mut Buffers,
        scratch: &mut Vec<u8>,
        mut fields: RecordFields,
        payload: &[u8],
    ) -> Result<()> {
        let stored = payload.len() + if self.cipher.is_some() { TAG_LEN } else { 0 };
        if self.cipher.is_some() {
            fields.flags |= format::FLAG_ENCRYPTED;
        }
        let cipher = self.cipher.as_ref();
        let fill = |body: &mut [u8]| {
            body[..payload.len()].copy_from_slice(payload);
            if let Some(c) = cipher {
                c.seal(&fields, body);
            }
        };
        let size = format::record_size(stored);
        self.view.note_record(fields.lsn, self.data_end);
        // I26: no part of this record is written before a block past its
        // end is durable (a record longer than the buffer takes several writes).
        self.accepted_end = self.data_end + size as u64;
        let cap = bufs.len();
        if size <= cap - self.buf_len {
            let out = &mut bufs.cur.tail_mut(self.buf_len)[..size];
            format::encode_record_with(self.seed, &fields, stored, out, fill);
            self.debug_check_encoded(out, &fields, payload);
            self.buf_len += size;
        } else {
            scratch.clear();
            scratch.resize(size, 0);
            format::encode_record_with(self.seed, &fields, stored, scratch, fill);
            self.debug_check_encoded(scratch, &fields, payload);
            let mut rest = &scratch[..];
            while !rest.is_empty() {
                let n = rest.len().min(cap - self.buf_len);
                bufs.cur.tail_mut(self.buf_len)[..n].copy_from_slice(&rest[..n]);
                self.buf_len += n;
                rest = &rest[n..];
                if self.buf_len == cap {
                    self.write_full_buffer(bufs)?;
                }
            }
        }
        if self.buf_len == cap {
            self.write_full_buffer(bufs)?;
        }
        self.data_end += size as u64;
        self.records += 1;
        self.last_lsn = fields.lsn;
        Ok(())
    }

    /// In debug builds, reads the record just encoded into `rec` back with
    /// the check recovery and readers use, and compares it with what was
    /// asked for: an encoder bug fails here, not at the next open.
    fn debug_check_encoded(&self, rec: &[u8], fields: &RecordFields, payload: &[u8]) {
        if cfg!(debug_assertions) {
            let end = self.data_end + rec.len() as u64;
            let checked =
                format::check_record_in(rec, self.data_end, self.data_end, end, self.seed, Some(fields.lsn), true);
            let (h, body) =
                checked.unwrap_or_else(|f| panic!("record LSN {} fails its own check: {}", fields.lsn, f.describe()));
            let stored = payload.len() + if self.cipher.is_some() { TAG_LEN } else { 0 };
            assert_eq!((h.fields, h.len as usize, body.len()), (*fields, stored, stored), "record LSN {}", fields.lsn);
            if self.cipher.is_none() {
                assert_eq!(&rec[body], payload, "record LSN {} stored another payload", fields.lsn);
            }
        }
    }

    /// Epoch start stamped on records appended now (I5): the end of the data
    /// already handed to a flush. Such a record is written only by a later
    /// flush, after that data's fdatasync completed (I12: the group-commit
    /// handle holds back writes while a flush is in flight; `sync` finishes
    /// it first).
    pub fn epoch_start(&self) -> u32 {
        u32::try_from(self.flushed.end).expect("a segment is shorter than 4 GiB (MAX_SEGMENT_FILE_LEN)")
    }

    /// Whether appending a payload of `len` bytes would write to the file
    /// (the buffer of `buf_cap` bytes fills).
    pub fn append_writes(&self, buf_cap: usize, len: usize) -> bool {
        self.buf_len + self.record_size(len) >= buf_cap
    }

    /// The file, for an fdatasync issued without the writer's lock.
    pub fn file(&self) -> Arc<dyn StorageFile> {
        self.file.clone()
    }

    /// Where in the buffer the next write starts: the block holding the
    /// end of what was last written (I4), or the buffer's start when that
    /// was in an earlier buffer.
    fn unwritten_from(&self) -> usize {
        (self.flushed.end.saturating_sub(self.buf_file_off) as usize).min(self.buf_len) / self.block * self.block
    }

    /// Hands a completely filled buffer to the write helper (no fdatasync)
    /// and continues in another, so the write overlaps the encoding of the
    /// next buffer (I16). The full one is frozen and readers read it (I18).
    fn write_full_buffer(&mut self, bufs: &mut Buffers) -> Result<()> {
        self.assert_no_sync_in_flight();
        let (cap, from) = (bufs.len(), self.unwritten_from());
        let (at, end) = (self.buf_file_off + from as u64, self.buf_file_off + cap as u64);
        // I26: a durable block past this write's end before it is issued.
        self.durable_reserve(end)?;
        // I4: a rewrite of the last flush's tail block leaves its bytes as they were.
        self.tail.write(&self.name, &bufs.cur.bytes()[from..cap], at, end, self.block);
        let mut pipe = self.pipe();
        pipe.settle().map_err(|e| WalError::io("write", &self.path, e))?;
        let full = bufs.cur.freeze(cap);
        self.view.share_buffer(self.buf_file_off, &full, cap);
        let job = Job { file: self.file.clone(), buf: full, range: from..cap, offset: at };
        pipe.submit(job).map_err(|e| WalError::io("write", &self.path, e))?;
        drop(pipe);
        self.stats.buffer_full();
        self.count_data_write(at, cap - from, end);
        bufs.rotate();
        self.buf_file_off += cap as u64;
        self.buf_len = 0;
        Ok(())
    }

    /// Writes everything appended since the last flush, from the block that
    /// holds the durable end (I4), without fdatasync, and keeps the partly
    /// filled tail block at the front of the buffer. Returns what is written
    /// so far; it is durable once an fdatasync after this returns. On error
    /// the caller must poison the writer (I3).
    pub fn write_out(&mut self, bufs: &mut Buffers) -> Result<FlushTarget> {
        // I16: this epoch's background write completes (and succeeded) first.
        self.settle()?;
        if self.data_end == self.flushed.end {
            return Ok(self.flushed);
        }
        if self.buf_len > 0 {
            let padded = self.buf_len.next_multiple_of(self.block);
            bufs.cur.tail_mut(self.buf_len)[..padded - self.buf_len].fill(0);
            // I4: the first block written may be the tail block of the last
            // sync; its durable prefix is rewritten with identical bytes.
            let from = self.unwritten_from();
            let at = self.buf_file_off + from as u64;
            self.assert_no_sync_in_flight();
            // I26: a durable block past this write's end before it is issued.
            self.durable_reserve(self.buf_file_off + padded as u64)?;
            self.tail.write(&self.name, &bufs.cur.bytes()[from..padded], at, self.data_end, self.block);
            self.write(&bufs.cur.bytes()[from..padded], at)?;
            self.count_data_write(at, padded - from, self.data_end);
            // I18: the data (not the padding, which later records replace)
            // is frozen, and readers read it from this buffer.
            let written = bufs.cur.freeze(self.buf_len);
            self.view.share_buffer(self.buf_file_off, &written, self.buf_len);
        }
        self.flushed = FlushTarget { end: self.data_end, records: self.records, last_lsn: self.last_lsn };
        Ok(self.flushed)
    }

    /// I12: no data write is issued while an fdatasync begun by
    /// [`begin_flush`](Self::begin_flush) may still be running: the write
    /// could reach the disk before the data it follows is durable (I5). The
    /// group-commit handle holds such appends back; this is where it is checked.
    fn assert_no_sync_in_flight(&self) {
        assert!(!self.sync_in_flight, "I12: a data write was issued in {} while its fdatasync is in flight", self.name);
    }

    /// First half of every sync (`SegmentedWal::sync`, the group-commit
    /// handle, [`seal`](Self::seal)): writes what was appended
    /// ([`write_out`](Self::write_out)). Returns what the fdatasync of
    /// [`file`](Self::file) the caller issues next makes durable, or None
    /// when everything appended is durable already. Until
    /// [`finish_flush`](Self::finish_flush), no data write may be issued (I12).
    pub fn begin_flush(&mut self, bufs: &mut Buffers) -> Result<Option<FlushTarget>> {
        let t = self.write_out(bufs)?;
        if t.end <= self.durable_end {
            return Ok(None);
        }
        self.sync_in_flight = true;
        // I26: the fdatasync makes the file durable at least this long.
        self.extended_at_flush = self.extended_to;
        Ok(Some(t))
    }

    /// Second half of every sync: the fdatasync issued after `begin_flush`
    /// returned `t` completed with `synced`. Publishes what it made durable
    /// to readers and returns the number of records; an error means the
    /// caller must poison the writer (I3): the state of the file is unknown.
    pub fn finish_flush(&mut self, t: FlushTarget, synced: std::io::Result<()>) -> Result<u64> {
        self.sync_in_flight = false;
        synced.map_err(|e| WalError::io("fdatasync", &self.path, e))?;
        self.durable_len = self.durable_len.max(self.extended_at_flush);
        Ok(self.mark_durable(t))
    }

    /// Records that an fdatasync issued after `write_out` returned `t` has
    /// completed; publishes it to readers. Returns the records it made durable.
    fn mark_durable(&mut self, t: FlushTarget) -> u64 {
        if t.end <= self.durable_end {
            return 0;
        }
        // The durable end, count and LSN never move backwards: a later
        // flush covers everything an earlier one did.
        assert!(
            t.records >= self.durable_records && t.last_lsn >= self.durable_last_lsn,
            "durable state of {} would move backwards: {t:?} after {} records up to LSN {}",
            self.name,
            self.durable_records,
            self.durable_last_lsn
        );
        let made_durable = t.records - self.durable_records;
        self.last_epoch_bytes = t.end - self.durable_end;
        self.durable_end = t.end;
        self.durable_records = t.records;
        self.durable_last_lsn = t.last_lsn;
        // Readers may read what this fdatasync made durable (I18).
        self.view.publish_durable(self.durable_end, self.durable_last_lsn);
        made_durable
    }

    /// Writes everything appended and fdatasyncs, through the one sync path
    /// (`begin_flush`, fdatasync, `finish_flush`). On error the caller must
    /// poison the writer (I3). Returns the number of records this sync made
    /// durable.
    pub fn sync(&mut self, bufs: &mut Buffers) -> Result<u64> {
        let Some(t) = self.begin_flush(bufs)? else { return Ok(0) };
        let synced = self.file.sync_data();
        self.finish_flush(t, synced)
    }

    /// Seals the segment (I7): all data durable, then the seal block written
    /// and fdatasynced. After this the file never changes again.
    pub fn seal(&mut self, bufs: &mut Buffers) -> Result<Seal> {
        self.sync(bufs)?;
        let seal =
            Seal { last_lsn: self.last_lsn, records: self.records, data_end: self.data_end, sealed_ms: now_ms() };
        self.assert_no_sync_in_flight();
        write_seal(&*self.file, &self.path, self.block, self.seed, &seal)?;
        self.stats.wrote(Written::Seal, self.block as u64);
        Ok(seal)
    }

    /// Counts a write of the file bytes from `off`, `len` long, whose record
    /// data ends at `data_end`: bytes past what was written before are new
    /// data, the rest a rewritten tail block or its padding (I4).
    fn count_data_write(&mut self, off: u64, len: usize, data_end: u64) {
        let new = data_end.saturating_sub(off.max(self.written_end));
        self.written_end = self.written_end.max(data_end);
        self.stats.wrote(Written::Data, new);
        self.stats.wrote(Written::TailRewrite, len as u64 - new);
    }
}

/// Writes a seal block at block 1 of `file` and fdatasyncs it.
pub(crate) fn write_seal(file: &dyn StorageFile, path: &Path, block: usize, seed: u32, seal: &Seal) -> Result<()> {
    let mut b = AlignedBuf::new(block, block);
    seal.encode(seed, &mut b);
    file.write_all_at(&b, block as u64).map_err(|e| WalError::io("write seal", path, e))?;
    file.sync_data().map_err(|e| WalError::io("fdatasync", path, e))
}

/// Milliseconds since the Unix epoch (for operator-facing timestamps only).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
