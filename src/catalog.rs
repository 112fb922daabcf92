//! The catalog: the one loader of a WAL directory.
//!
//! [`load`] lists the directory and checks every rule about what is in it —
//! names and file kinds (I21), file lengths (I22, I23), headers, seals (values
//! checked before use, I7), the WAL id, LSN continuity (I9) — and returns a typed description
//! of the log with every fault found. `SegmentedWal::open`,
//! `WalReader::open_dir` and `check::check_dir` all start here, so they
//! cannot disagree about a directory: open and the directory reader refuse
//! the first fault (tolerant open may set aside or cut damage confined to
//! the newest segment, I24), `check` reports them all. [`scan_once`] is the
//! one scan of the unsealed newest segment ([`scan_newest`] repeats it beside
//! a live writer), [`cipher_for`] the one key lookup.
//!
//! The catalog never writes: setting aside, sealing and deleting temps is
//! the open's business.

use std::path::{Path, PathBuf};

use crate::crypto::{self, KeyRing, SegmentCipher};
use crate::error::{CorruptionKind, Result, WalError};
use crate::format::{self, Cipher, MAX_SEGMENT_TARGET_SIZE, MAX_STORED_LEN, Seal, SegmentHeader};
use crate::io::{FileImage, FileKind, Storage};
use crate::recovery::{self, ScanOutcome};
use crate::segment::{self, NameKind};

/// Largest block size, and so the largest header and seal block.
const MAX_BLOCK: u64 = format::MAX_BLOCK_SIZE as u64;

/// I23: no segment the writer makes is longer than this: the header and seal
/// blocks, a segment's worth of data (the target), one more record (a record
/// never splits, and the first one of a segment may exceed the target),
/// prepared space of at most one chunk (never more than the target), and
/// rounding to a block. A longer file is not a segment of this WAL and is
/// never read whole.
pub const MAX_SEGMENT_FILE_LEN: u64 = 2 * MAX_BLOCK
    + MAX_SEGMENT_TARGET_SIZE
    + (format::RECORD_HEADER_LEN + MAX_STORED_LEN).next_multiple_of(format::RECORD_ALIGN) as u64
    + MAX_SEGMENT_TARGET_SIZE
    + MAX_BLOCK;

/// I22: every length the writer gives a segment file is a multiple of this
/// (the smallest block size): it writes, zero-fills and reserves whole
/// blocks only.
pub const LENGTH_UNIT: u64 = 512;

/// A name of the WAL's found in the directory.
#[derive(Debug, Clone)]
pub struct Found {
    /// First LSN, from the name (segments and temps).
    pub first_lsn: u64,
    /// File name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
}

/// What the directory holds, by name (I21: only regular files get here).
#[derive(Debug, Default)]
pub struct Listing {
    /// Segment files, sorted by first LSN.
    pub segments: Vec<Found>,
    /// Temporary files of segments never completed (`wal-{lsn:020}.seg.tmp`).
    pub temps: Vec<PathBuf>,
    /// Spare files kept for recycling, sorted by name.
    pub spares: Vec<PathBuf>,
    /// Newest segments set aside by tolerant recovery (I24), sorted by name.
    pub aside: Vec<PathBuf>,
    /// Entries named like WAL files that are not regular files (I21).
    pub not_files: Vec<WalError>,
}

/// Lists the directory: the WAL's names only (anything else is never
/// touched, I21), none of them opened (a FIFO must not block).
pub fn list(storage: &dyn Storage, dir: &Path) -> Result<Listing> {
    let entries = storage.list_dir(dir).map_err(|e| WalError::io("list", dir, e))?;
    let mut out = Listing::default();
    for entry in entries {
        let Some(kind) = segment::classify(&entry.name) else { continue };
        let path = dir.join(&entry.name);
        // I21: a WAL name on anything but a regular file is an error, never skipped.
        let what = match entry.kind {
            FileKind::File => None,
            FileKind::Symlink => Some("symlink"),
            FileKind::Dir => Some("directory"),
            FileKind::Other => Some("special file"),
        };
        if let Some(kind) = what {
            out.not_files.push(WalError::NotRegularFile { path, kind });
            continue;
        }
        match kind {
            NameKind::Segment(first_lsn) => out.segments.push(Found { first_lsn, name: entry.name, path }),
            NameKind::Temp(_) => out.temps.push(path),
            NameKind::Spare => out.spares.push(path),
            NameKind::Aside => out.aside.push(path),
        }
    }
    out.segments.sort_by_key(|s| s.first_lsn);
    out.temps.sort();
    out.spares.sort();
    out.aside.sort();
    Ok(out)
}

/// One segment file of the log.
#[derive(Debug)]
pub struct Seg {
    /// First LSN (from the name).
    pub first_lsn: u64,
    /// File name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// File length in bytes.
    pub file_len: u64,
    /// The header; None when it could not be read (a fault says why) or
    /// the file vanished.
    pub header: Option<SegmentHeader>,
    /// The seal, its values checked; None while unsealed (only the newest may be, I7).
    pub seal: Option<Seal>,
    /// The newest segment's seal block did not decode: a seal write cut by
    /// a crash (I7), so it counts as unsealed and is rescanned.
    pub torn_seal: Option<WalError>,
    /// Listed, then gone before it was read: truncated by a live writer
    /// (only a directory reader or `check` can see this; open holds the lock).
    pub vanished: bool,
}

/// What tolerant recovery may do about a fault (I24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Nothing: every mode refuses.
    None,
    /// The newest segment is not a usable segment at all (no readable
    /// header, or absurdly long): set it aside.
    SetAside,
    /// The newest segment's file was shortened (I22): keep what it holds.
    KeepShortened,
}

/// One thing wrong with the directory.
#[derive(Debug)]
pub struct Fault {
    /// Index into [`Catalog::segments`], when it concerns a segment.
    pub segment: Option<usize>,
    /// What is wrong, as the error open returns.
    pub error: WalError,
    /// What tolerant recovery may do about it.
    pub remedy: Remedy,
}

/// A WAL directory as the catalog found it.
#[derive(Debug)]
pub struct Catalog {
    /// Segments in LSN order, the newest last.
    pub segments: Vec<Seg>,
    /// Temporary files of the WAL's own (I2).
    pub temps: Vec<PathBuf>,
    /// Spare files (I17).
    pub spares: Vec<PathBuf>,
    /// Segments set aside by tolerant recovery (I24).
    pub aside: Vec<PathBuf>,
    /// The WAL id of the oldest readable header.
    pub wal_id: Option<u128>,
    /// Every fault, in directory order: entries that are not files first,
    /// then segment by segment.
    pub faults: Vec<Fault>,
}

impl Catalog {
    /// The first fault, which open and the directory reader return.
    pub fn take_first_fault(&mut self) -> Option<Fault> {
        (!self.faults.is_empty()).then(|| self.faults.remove(0))
    }

    /// The encryption rule over every readable header, oldest first (I11),
    /// with `ring` to verify the MACs of `encryption_off` headers (open has
    /// none: nothing is proven there). The state's indices (an unexplained
    /// downgrade, an unproven flag) are indices in `segments`. Segments
    /// that vanished while the directory was read (truncated by a live
    /// writer) take no part. `storage` reads the headers of set-aside files.
    pub fn encryption(&self, storage: &dyn Storage, ring: Option<&KeyRing>) -> crypto::EncryptionState {
        let live: Vec<usize> = (0..self.segments.len())
            .filter(|&i| self.segments[i].header.is_some() && !self.segments[i].vanished)
            .collect();
        let mut st = crypto::encryption_state(live.iter().filter_map(|&i| self.segments[i].header.as_ref()), ring);
        st.cipher_unknown = st.required_key.is_none() && self.aside_pending(storage);
        st.downgrade = st.downgrade.map(|d| live[d]);
        if let Some(u) = st.unproven.as_mut() {
            u.index = live[u.index];
        }
        st
    }

    /// I11, I24: whether a set-aside file may hold the newest encryption
    /// decision: with no segment left, any set-aside file; else one whose
    /// name's LSN is above the newest segment's first LSN, or equal to it
    /// unless that segment is encrypted or flagged `encryption_off` (the
    /// segment written at that LSN once a ring was set or encryption turned
    /// off explicitly after the set-aside). Only a file whose cipher may be
    /// encrypted counts ([`aside_may_be_encrypted`]).
    fn aside_pending(&self, storage: &dyn Storage) -> bool {
        let newest = self.segments.last().map(|s| {
            let decided = s.header.as_ref().is_some_and(|h| h.cipher != Cipher::None || h.encryption_off);
            (s.first_lsn, decided)
        });
        self.aside.iter().any(|p| {
            let lsn = p.file_name().and_then(|n| segment::aside_first_lsn(&n.to_string_lossy()));
            let after_newest = match (lsn, newest) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(lsn), Some((first, decided))) => lsn > first || (lsn == first && !decided),
            };
            after_newest && aside_may_be_encrypted(storage, p)
        })
    }
}

/// I11, I24: whether a set-aside file may hold encrypted records: its
/// header cannot be read (no header, garbage, a newer version, the file
/// cannot be opened or read: fail closed) or names a cipher. A file set
/// aside for damaged records has a readable header that says plain: it
/// asks for no ring. Reads at most the header's bytes (within block 0).
fn aside_may_be_encrypted(storage: &dyn Storage, path: &Path) -> bool {
    match storage.read_range(path, 0, format::SEGMENT_HEADER_LEN, false) {
        Ok(head) => SegmentHeader::decode(&head).map_or(true, |h| h.cipher != Cipher::None),
        Err(_) => true,
    }
}

/// Lists and checks the directory. Fails only when it cannot be listed;
/// everything wrong in it is a [`Fault`].
pub fn load(storage: &dyn Storage, dir: &Path) -> Result<Catalog> {
    let listing = list(storage, dir)?;
    let mut cat = Catalog {
        segments: Vec::with_capacity(listing.segments.len()),
        temps: listing.temps,
        spares: listing.spares,
        aside: listing.aside,
        wal_id: None,
        faults: listing
            .not_files
            .into_iter()
            .map(|error| Fault { segment: None, error, remedy: Remedy::None })
            .collect(),
    };
    // I9: the LSN the next segment must start with; None after a segment
    // whose end is unknown (unreadable or vanished): a missing prefix is fine.
    let mut expect: Option<u64> = None;
    let count = listing.segments.len();
    for (i, f) in listing.segments.into_iter().enumerate() {
        let seg = load_segment(storage, &mut cat, f, i + 1 == count, expect);
        expect = seg.seal.as_ref().map(|s| s.last_lsn + 1);
        cat.segments.push(seg);
    }
    Ok(cat)
}

/// Checks one segment: file length (I23), header, name, WAL id,
/// continuity, seal (I7) and, for the unsealed newest, its length (I22).
fn load_segment(storage: &dyn Storage, cat: &mut Catalog, f: Found, newest: bool, expect: Option<u64>) -> Seg {
    let mut found = Vec::new();
    let seg = read_segment(storage, f, newest, expect, &mut cat.wal_id, &mut found);
    let index = cat.segments.len();
    for (error, remedy) in found {
        // I24: only damage confined to the newest segment has a remedy.
        let remedy = if newest { remedy } else { Remedy::None };
        cat.faults.push(Fault { segment: Some(index), error, remedy });
    }
    seg
}

/// Faults of one segment, with what tolerant recovery may do about each.
type SegFaults = Vec<(WalError, Remedy)>;

fn read_segment(
    storage: &dyn Storage,
    f: Found,
    newest: bool,
    expect: Option<u64>,
    wal_id: &mut Option<u128>,
    faults: &mut SegFaults,
) -> Seg {
    let mut seg = Seg {
        first_lsn: f.first_lsn,
        name: f.name,
        path: f.path,
        file_len: 0,
        header: None,
        seal: None,
        torn_seal: None,
        vanished: false,
    };
    let (head, file_len) = match segment::read_head(storage, &seg.path) {
        Ok(h) => h,
        Err(WalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            seg.vanished = true;
            return seg;
        }
        Err(e) => {
            faults.push((e, Remedy::None));
            return seg;
        }
    };
    seg.file_len = file_len;
    if file_len > MAX_SEGMENT_FILE_LEN {
        // I23: not read further, whatever its header says.
        let kind = CorruptionKind::TooLong { file_len, max: MAX_SEGMENT_FILE_LEN };
        faults.push((corruption(&seg, 0, kind), Remedy::SetAside));
        return seg;
    }
    let (header, seal) = match segment::read_header_and_seal(&seg.name, &head) {
        Ok(hs) => hs,
        // A newer format is not damage: never set aside.
        Err(e @ WalError::UnsupportedVersion { .. }) => {
            faults.push((e, Remedy::None));
            return seg;
        }
        Err(e) => {
            faults.push((e, Remedy::SetAside));
            return seg;
        }
    };
    check_place(&seg, &header, expect, wal_id, faults);
    check_seal(&mut seg, &header, seal, newest, faults);
    if newest && seg.seal.is_none() && !file_len.is_multiple_of(LENGTH_UNIT) {
        // I22: the writer never leaves such a length: the file was cut, and
        // records acknowledged after the cut may be gone.
        let kind = CorruptionKind::Shortened { file_len, unit: LENGTH_UNIT };
        faults.push((corruption(&seg, file_len, kind), Remedy::KeepShortened));
    }
    seg.header = Some(header);
    seg
}

/// The segment's place in the log: its name, its WAL, and continuity with
/// the previous segment (I9: a missing prefix is truncation, not a fault).
fn check_place(
    seg: &Seg,
    header: &SegmentHeader,
    expect: Option<u64>,
    wal_id: &mut Option<u128>,
    faults: &mut SegFaults,
) {
    if header.first_lsn != seg.first_lsn {
        let kind = CorruptionKind::FirstLsnMismatch { header_lsn: header.first_lsn };
        faults.push((corruption(seg, 0, kind), Remedy::None));
    }
    match *wal_id {
        None => *wal_id = Some(header.wal_id),
        Some(expected) if expected != header.wal_id => {
            let error = WalError::ForeignSegment { segment: seg.name.clone(), expected, found: header.wal_id };
            faults.push((error, Remedy::None));
        }
        Some(_) => {}
    }
    match expect {
        Some(expected) if seg.first_lsn > expected => {
            let (segment, found_lsn) = (seg.name.clone(), seg.first_lsn);
            faults.push((WalError::MissingSegment { segment, expected_lsn: expected, found_lsn }, Remedy::None));
        }
        Some(expected) if seg.first_lsn < expected => {
            let kind = CorruptionKind::Overlap { previous_last_lsn: expected - 1 };
            faults.push((corruption(seg, 0, kind), Remedy::None));
        }
        _ => {}
    }
}

/// The seal: checked values, or unsealed, which only the newest
/// segment may be (I7).
fn check_seal(seg: &mut Seg, header: &SegmentHeader, seal: Result<Option<Seal>>, newest: bool, faults: &mut SegFaults) {
    let block = u64::from(header.block_size);
    match seal {
        Ok(Some(seal)) => match seal_fault(seg.first_lsn, &seal, format::data_start(block as usize), seg.file_len) {
            Some(kind) => faults.push((corruption(seg, block, kind), Remedy::None)),
            None => seg.seal = Some(seal),
        },
        // I7: the seal is written after the data is durable and before any
        // newer segment exists: on the newest segment an unreadable seal is
        // a seal write cut by a crash; the scan decides.
        Err(e) if newest => seg.torn_seal = Some(e),
        Err(e) => faults.push((e, Remedy::None)),
        Ok(None) if !newest => {
            // I7: a newer segment exists only after this one was sealed.
            faults.push((corruption(seg, block, CorruptionKind::Unsealed), Remedy::None));
        }
        Ok(None) => {}
    }
}

fn corruption(seg: &Seg, offset: u64, kind: CorruptionKind) -> WalError {
    WalError::Corruption { segment: seg.name.clone(), offset, lsn: seg.first_lsn, kind }
}

/// The seal's values are checked before any arithmetic on them (no bytes
/// from disk can make the reader overflow or read past the file).
fn seal_fault(first_lsn: u64, seal: &Seal, data_start: u64, file_len: u64) -> Option<CorruptionKind> {
    let consistent = seal.last_lsn.checked_add(1).and_then(|n| n.checked_sub(first_lsn)) == Some(seal.records)
        && (seal.records == 0) == (seal.data_end == data_start);
    (!consistent || seal.data_end < data_start || seal.data_end > file_len).then_some(CorruptionKind::ImpossibleSeal)
}

/// Scans of a newest segment that found damage before the verdict stands.
const SCAN_ATTEMPTS: usize = 4;

/// The one scan of an unsealed newest segment (I5, I6): its image (at most
/// `MAX_SEGMENT_FILE_LEN` bytes, I23) and where its valid records end.
///
/// I5, I26 beside a live writer: a directory reader (`open_dir`, `check`)
/// reads the file while another process writes it, and one scan is not a
/// snapshot: it can read a record's place before the writer's bytes land
/// and a record of a later sync further on after they did, which looks
/// like damage to durable data. Every write a later record depends on
/// completed before that record was written, so a scan that starts after
/// the first one saw the later record sees the earlier bytes too. Damage is
/// therefore reported only when a fresh scan repeats the verdict exactly; a
/// file that changed is scanned again, at most `SCAN_ATTEMPTS` times. A file
/// nobody writes repeats it at once; `open`, which holds the writer's lock
/// (I25), scans once ([`scan_once`]).
pub fn scan_newest(storage: &dyn Storage, seg: &Seg) -> Result<(FileImage, ScanOutcome)> {
    settled(SCAN_ATTEMPTS, |e| matches!(e, WalError::Corruption { .. }), || scan_once(storage, seg))
}

/// Beside a live writer one read of a directory or of a file is not a
/// snapshot: `read` again until it succeeds, fails with an error `retry`
/// does not doubt, or fails twice in a row the same way, at most `attempts`
/// times; the last result stands. Something nobody writes settles at the
/// second read. Used by `scan_newest` and `WalReader::open_dir`.
pub(crate) fn settled<T>(
    attempts: usize,
    retry: impl Fn(&WalError) -> bool,
    mut read: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut last = read();
    for _ in 1..attempts {
        let Err(e) = &last else { break };
        if !retry(e) {
            break;
        }
        let again = read();
        if again.as_ref().err().is_some_and(|a| a.to_string() == e.to_string()) {
            break;
        }
        last = again;
    }
    last
}

/// One scan of the newest segment: its records (I5), then its length
/// against them (I22, I26). Enough where nobody can write the file.
pub(crate) fn scan_once(storage: &dyn Storage, seg: &Seg) -> Result<(FileImage, ScanOutcome)> {
    let header = seg.header.as_ref().expect("a segment with a readable header");
    let img = storage.read_image(&seg.path).map_err(|e| WalError::io("read", &seg.path, e))?;
    // I23: a file grown since the catalog measured it is not scanned whole either.
    let len = img.len().min(MAX_SEGMENT_FILE_LEN as usize);
    let start = format::data_start(header.block_size as usize);
    let seed = header.crc_seed();
    let out = recovery::scan_unsealed(&seg.name, &img[..len], start, seg.first_lsn, seed, header.recycled)?;
    check_reserve(storage, seg, header, &img[..len], &out)?;
    Ok((img, out))
}

/// I22, I26: the newest segment's length against where its records end.
/// Its writer (version 4 on) never issued a data write ending less than a
/// block before the file's durable length, nor wrote any byte of a record
/// before a block past that record's block-rounded end was durable; every
/// data write ends at a block boundary at or past the records it carries.
/// So in every crash image the file reaches a whole block past the
/// block-rounded end of the last record (at least 512 bytes after it, a
/// 64 KiB block's worth in a 64 KiB-block segment), and past that of the
/// record whose header sits where the valid records end, when that header
/// names the next LSN ([`next_record_end`]): a torn write of a record
/// longer than a block leaves its header and the file's full length. A
/// file ending sooner was cut (`Corruption` at the end of the records,
/// naming the LSN that would come next). Decided here, in the one scan
/// `open`, `open_dir` and `check` share. Versions 1–3 kept no reserve: a
/// cut at a multiple of 512 on a record boundary stays undetectable there
/// (I22's limit). A length that is no multiple of 512 is reported by
/// `read_segment` already. `img` is the scanned image.
fn check_reserve(
    storage: &dyn Storage,
    seg: &Seg,
    header: &SegmentHeader,
    img: &[u8],
    out: &ScanOutcome,
) -> Result<()> {
    // The header's block size is a checked power of two up to MAX_BLOCK_SIZE;
    // data_end is below MAX_SEGMENT_FILE_LEN and a record's end within
    // MAX_STORED_LEN of it: no overflow.
    let block = u64::from(header.block_size);
    let len = img.len() as u64;
    let records_end = next_record_end(img, out).unwrap_or(out.data_end);
    let needed = records_end.next_multiple_of(block) + block;
    if !header.keeps_reserve() || !len.is_multiple_of(LENGTH_UNIT) || needed <= len {
        return Ok(());
    }
    // A live writer beside `check` may have grown the file since it was mapped.
    if storage.file_len(&seg.path).is_ok_and(|now| needed <= now.min(MAX_SEGMENT_FILE_LEN)) {
        return Ok(());
    }
    let kind = CorruptionKind::NoReserve { file_len: len, data_end: out.data_end };
    Err(WalError::Corruption { segment: seg.name.clone(), offset: out.data_end, lsn: out.last_lsn + 1, kind })
}

/// I26: where the record ends whose header sits at `out.data_end` (the
/// first invalid spot), when the file holds that whole header, its fields
/// are possible (`format::check_header`: length, flags, epoch start, …)
/// and it carries the LSN after the last valid record. None otherwise. Its
/// CRC and payload are not checked: a torn write of it is what this is for.
fn next_record_end(img: &[u8], out: &ScanOutcome) -> Option<u64> {
    let at = usize::try_from(out.data_end).ok()?;
    let hb = img.get(at..at.checked_add(format::RECORD_HEADER_LEN)?)?;
    let h = format::check_header(hb, out.data_end).ok()?;
    (Some(h.fields.lsn) == out.last_lsn.checked_add(1))
        .then(|| out.data_end.checked_add(format::record_size(h.len as usize) as u64))
        .flatten()
}

/// The cipher of an encrypted segment (I11), failing closed when its key is
/// absent: `KeyRequired` without a ring, `UnknownKey` when the ring lacks it.
pub fn cipher_for(
    ring: Option<&KeyRing>,
    name: &str,
    header: &SegmentHeader,
    lsn: u64,
) -> Result<Option<SegmentCipher>> {
    match header.cipher {
        Cipher::None => Ok(None),
        Cipher::Aes256Gcm { key_id } => {
            let ring = ring.ok_or(WalError::KeyRequired { segment: name.to_owned(), lsn })?;
            let key = ring.get(key_id).ok_or(WalError::UnknownKey { key_id, segment: name.to_owned(), lsn })?;
            Ok(Some(SegmentCipher::new(key, header.wal_id, header.salt)))
        }
    }
}
