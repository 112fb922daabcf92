//! Read-only checks of a WAL directory, for tools such as `directwal inspect`
//! and `directwal verify`.
//!
//! [`check_dir`] never writes, never takes the directory lock and never
//! stops at the first problem: every segment is looked at and every problem
//! is reported with its segment, offset and LSN. Opening the WAL, by
//! contrast, refuses at the first problem; the two agree on what is a
//! problem because both take the directory from the catalog (names, file
//! kinds, lengths, headers, seals, WAL id, continuity: I21-I23) and scan the
//! newest segment with the same function (the torn-tail rule of I5).
//!
//! A torn tail on the newest segment is not a problem: it is the unfinished
//! write of a crash, which the next open cuts (I5), and it never held an
//! acknowledged record. It is reported separately, in
//! [`SegmentCheck::torn_tail`].

use std::path::{Path, PathBuf};

use crate::catalog;
use crate::crypto::{KeyRing, SegmentCipher, UNFLAGGED_DOWNGRADE, Unproven, UnprovenOff};
use crate::error::{Result, WalError};
use crate::format::{self, FLAG_ENCRYPTED, SegmentHeader};
use crate::io::{FileImage, OsStorage, Storage};
use crate::recovery::{ScanOutcome, TornTail};
use crate::segment;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Keys for encrypted segments, needed with `verify_records`; and to
    /// verify the MAC of a plain segment flagged `encryption_off` after
    /// encrypted ones (DESIGN I11), which without a ring goes unchecked.
    pub ring: Option<KeyRing>,
    /// Check every record of every segment (CRC, LSN, and for encrypted
    /// segments the authentication tag), not only headers, seals and the
    /// newest segment. Encrypted segments then need their key: without it
    /// the check fails closed with `KeyRequired` or `UnknownKey`.
    pub verify_records: bool,
}

/// One problem found: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Segment file name.
    pub segment: String,
    /// Byte offset in the segment file.
    pub offset: u64,
    /// LSN expected or found at that place.
    pub lsn: u64,
    /// What is wrong, in words.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} offset {} lsn {}: {}", self.segment, self.offset, self.lsn, self.what)
    }
}

/// What the check found in one segment file.
#[derive(Debug, Clone)]
pub struct SegmentCheck {
    /// File name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// First LSN (from the file name).
    pub first_lsn: u64,
    /// Last valid LSN (`first_lsn - 1` when it holds none).
    pub last_lsn: u64,
    /// Valid records.
    pub records: u64,
    /// File size, including prepared space.
    pub file_size: u64,
    /// Bytes of header blocks and records.
    pub used_bytes: u64,
    /// Whether the segment carries a valid seal.
    pub sealed: bool,
    /// The WAL id in its header, when the header is readable.
    pub wal_id: Option<u128>,
    /// Key id of an encrypted segment.
    pub key_id: Option<u32>,
    /// Records whose CRC (and tag) were checked one by one.
    pub records_verified: u64,
    /// The unfinished final write the next open will cut (newest segment only).
    pub torn_tail: Option<TornTail>,
    /// Everything wrong with it.
    pub problems: Vec<Problem>,
    /// A live writer truncated the segment while it was checked: its file
    /// is gone, or was recycled into a newer segment (DESIGN I17). What the
    /// check saw of it does not count; its records are not in the log any more.
    pub truncated: bool,
    /// A tolerant open sets this newest segment aside (I24): damaged
    /// durable data at its first record (`ScanOutcome::sets_aside`).
    pub sets_aside: bool,
}

impl SegmentCheck {
    /// `truncated`, `damaged`, `torn-tail` or `ok`.
    pub fn health(&self) -> &'static str {
        if self.truncated {
            "truncated"
        } else if !self.problems.is_empty() {
            "damaged"
        } else if self.torn_tail.is_some() {
            "torn-tail"
        } else {
            "ok"
        }
    }
}

/// What the check found in a directory.
#[derive(Debug, Clone)]
pub struct DirCheck {
    /// The directory.
    pub dir: PathBuf,
    /// The WAL id of the oldest readable segment header.
    pub wal_id: Option<u128>,
    /// Segments in LSN order.
    pub segments: Vec<SegmentCheck>,
    /// Problems with directory entries rather than segments: files named
    /// like the WAL's that are not regular files (I21).
    pub entry_problems: Vec<Problem>,
    /// `.tmp` files of segments being prepared; the next open deletes them (I2).
    pub temp_files: Vec<PathBuf>,
    /// Spare files kept for recycling (not part of the log; I17).
    pub spare_files: Vec<PathBuf>,
    /// Newest segments set aside by tolerant recovery (not part of the log; I24).
    pub aside_files: Vec<PathBuf>,
}

impl DirCheck {
    /// True when no segment has a problem (a torn tail is not one).
    pub fn is_clean(&self) -> bool {
        self.entry_problems.is_empty() && self.segments.iter().all(|s| s.problems.is_empty())
    }

    /// Every problem: directory entries first, then in segment order.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.entry_problems.iter().chain(self.segments.iter().flat_map(|s| s.problems.iter()))
    }

    /// Valid records in all segments (not counting those truncated meanwhile).
    pub fn total_records(&self) -> u64 {
        self.segments.iter().filter(|s| !s.truncated).map(|s| s.records).sum()
    }
}

/// Checks the WAL in `dir` without writing anything. `progress` is called
/// with the size of each segment file once it has been checked.
///
/// Returns `Err` only when the directory cannot be listed, when
/// `verify_records` meets an encrypted segment whose key is not in the ring,
/// or when a given ring lacks the key of an `encryption_off` header's MAC;
/// everything wrong on disk is a [`Problem`] in the result. What counts as
/// wrong is decided by the catalog, which `open` uses too.
pub fn check_dir(dir: &Path, opts: &CheckOptions, progress: &mut dyn FnMut(u64)) -> Result<DirCheck> {
    let storage = OsStorage;
    let cat = catalog::load(&storage, dir)?;
    let mut out = DirCheck {
        dir: dir.to_owned(),
        wal_id: cat.wal_id,
        segments: Vec::with_capacity(cat.segments.len()),
        entry_problems: Vec::new(),
        temp_files: cat.temps.clone(),
        spare_files: cat.spares.clone(),
        aside_files: cat.aside.clone(),
    };
    for fault in cat.faults.iter().filter(|f| f.segment.is_none()) {
        let name = match &fault.error {
            WalError::NotRegularFile { path, .. } => path.file_name().map(|n| n.to_string_lossy().into_owned()),
            _ => None,
        };
        out.entry_problems.push(Problem {
            segment: name.unwrap_or_default(),
            offset: 0,
            lsn: 0,
            what: fault.error.to_string(),
        });
    }
    let count = cat.segments.len();
    for (i, seg) in cat.segments.iter().enumerate() {
        let mut sc = SegmentCheck {
            name: seg.name.clone(),
            path: seg.path.clone(),
            first_lsn: seg.first_lsn,
            last_lsn: seg.first_lsn - 1,
            records: 0,
            file_size: seg.file_len,
            used_bytes: 0,
            sealed: false,
            wal_id: seg.header.as_ref().map(|h| h.wal_id),
            key_id: seg.header.as_ref().and_then(segment::key_id),
            records_verified: 0,
            torn_tail: None,
            problems: Vec::new(),
            truncated: seg.vanished,
            sets_aside: false,
        };
        for fault in cat.faults.iter().filter(|f| f.segment == Some(i)) {
            sc.problems.push(problem(seg, &fault.error));
        }
        if let Some(header) = seg.header.as_ref().filter(|_| !seg.vanished) {
            check_contents(&storage, seg, header, i + 1 == count, opts, &mut sc)?;
            if !sc.problems.is_empty() && !segment::still_holds(&storage, &seg.path, header) {
                // Damage seen in a file a live writer has since truncated (and
                // perhaps recycled under our mapping) is not damage of the log.
                sc.truncated = true;
            }
        }
        if sc.truncated {
            sc.problems.clear();
        }
        progress(seg.file_len);
        out.segments.push(sc);
    }
    encryption_problems(&storage, &cat, opts.ring.as_ref(), &mut out.segments)?;
    Ok(out)
}

/// I11: an unexplained downgrade, and an `encryption_off` flag that proves
/// nothing (no MAC, another key's, or one that fails under the ring), are
/// damage to report; open requires the key anyway. A flag whose MAC key the
/// given ring lacks is `UnknownKey`, as for records; without a ring a MAC
/// cannot be checked, which is not a problem.
fn encryption_problems(
    storage: &dyn Storage,
    cat: &catalog::Catalog,
    ring: Option<&KeyRing>,
    segments: &mut [SegmentCheck],
) -> Result<()> {
    let st = cat.encryption(storage, ring);
    let live = |i: usize| segments.get(i).is_some_and(|sc| !sc.truncated);
    if let Some(UnprovenOff { index, why: Unproven::UnknownKey { mac_key }, .. }) = st.unproven
        && live(index)
    {
        let seg = &cat.segments[index];
        return Err(WalError::UnknownKey { key_id: mac_key, segment: seg.name.clone(), lsn: seg.first_lsn });
    }
    let mut found = Vec::new();
    if let Some(i) = st.downgrade {
        found.push((i, UNFLAGGED_DOWNGRADE.to_owned()));
    }
    if let Some(u) = st.unproven.filter(|u| u.is_problem()) {
        found.push((u.index, u.to_string()));
    }
    for (i, what) in found {
        if let Some(sc) = segments.get_mut(i).filter(|sc| !sc.truncated) {
            sc.problems.push(Problem { segment: sc.name.clone(), offset: 0, lsn: sc.first_lsn, what });
        }
    }
    Ok(())
}

/// Records and, with `verify_records`, every record of a segment whose
/// header the catalog read: a sealed one per its seal, the unsealed newest
/// by the scan open uses (I5).
fn check_contents(
    storage: &dyn Storage,
    seg: &catalog::Seg,
    header: &SegmentHeader,
    newest: bool,
    opts: &CheckOptions,
    sc: &mut SegmentCheck,
) -> Result<()> {
    let cipher = if opts.verify_records {
        catalog::cipher_for(opts.ring.as_ref(), &seg.name, header, header.first_lsn)?
    } else {
        None
    };
    let image = match &seg.seal {
        Some(seal) => {
            sc.sealed = true;
            (sc.records, sc.last_lsn, sc.used_bytes) = (seal.records, seal.last_lsn, seal.data_end);
            if !opts.verify_records {
                return Ok(());
            }
            storage.read_image(&seg.path).map_err(|e| WalError::io("read", &seg.path, e))
        }
        // Not sealed and not the newest: the catalog reported it (I7).
        None if !newest => return Ok(()),
        None => scan_newest(storage, seg, sc),
    };
    let img = match image {
        Ok(img) => img,
        Err(WalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            // Listed, then truncated by a live writer: a missing prefix.
            sc.truncated = true;
            return Ok(());
        }
        Err(e) => {
            sc.problems.push(problem(seg, &e));
            return Ok(());
        }
    };
    if opts.verify_records {
        verify_records(sc, &img, header, sc.used_bytes, cipher.as_ref());
        if let Some(seal) = seg.seal.as_ref().filter(|s| sc.problems.is_empty() && sc.records_verified != s.records) {
            let what = format!("seal counts {} records, the data holds {}", seal.records, sc.records_verified);
            sc.problems.push(Problem {
                segment: seg.name.clone(),
                offset: header.block_size.into(),
                lsn: seg.first_lsn,
                what,
            });
        }
    }
    Ok(())
}

/// The scan open makes of the unsealed newest segment (I5, I26), into
/// `sc`. Damage it reports is a problem at its place, and the records before
/// it still count (the same records tolerant recovery keeps): the image is
/// read again for them.
fn scan_newest(storage: &dyn Storage, seg: &catalog::Seg, sc: &mut SegmentCheck) -> Result<FileImage> {
    let (img, scan) = match catalog::scan_newest(storage, seg) {
        Ok(found) => found,
        Err(e) => {
            let Some(before) = ScanOutcome::before_damage(&e, seg.first_lsn) else { return Err(e) };
            sc.problems.push(problem(seg, &e));
            sc.sets_aside = before.sets_aside(&e);
            (storage.read_image(&seg.path).map_err(|e| WalError::io("read", &seg.path, e))?, before)
        }
    };
    (sc.records, sc.last_lsn, sc.used_bytes) = (scan.records, scan.last_lsn, scan.data_end);
    sc.torn_tail = scan.torn;
    Ok(img)
}

/// A catalog fault (or scan error) as a problem of segment `seg`.
fn problem(seg: &catalog::Seg, e: &WalError) -> Problem {
    let (offset, lsn, what) = match e {
        WalError::Corruption { offset, lsn, kind, .. } => (*offset, *lsn, kind.to_string()),
        WalError::MissingSegment { expected_lsn, found_lsn, .. } => {
            (0, *expected_lsn, format!("LSNs {expected_lsn}..{} are missing: no segment holds them", found_lsn - 1))
        }
        WalError::ForeignSegment { expected, found, .. } => {
            (0, seg.first_lsn, format!("belongs to WAL {found:032x}, not to WAL {expected:032x}"))
        }
        other => (0, seg.first_lsn, other.to_string()),
    };
    Problem { segment: seg.name.clone(), offset, lsn, what }
}

/// Checks each record from the data start to `end`: CRC, LSN sequence, and
/// for encrypted segments the tag (I11: in an encrypted segment every record
/// is encrypted, in a plain one none). Stops at the first bad record, since
/// lengths after it cannot be trusted.
fn verify_records(
    seg: &mut SegmentCheck,
    img: &[u8],
    header: &SegmentHeader,
    end: u64,
    cipher: Option<&SegmentCipher>,
) {
    let seed = header.crc_seed();
    let mut off = format::data_start(header.block_size as usize);
    let mut lsn = seg.first_lsn;
    while off < end {
        let fault = match format::check_record(img, off, end, seed, Some(lsn)) {
            Ok((h, payload)) => {
                let encrypted = h.fields.flags & FLAG_ENCRYPTED != 0;
                let authentic = match cipher {
                    Some(c) => encrypted && c.open(&h.fields, &img[payload]).is_some(),
                    None => !encrypted,
                };
                if authentic {
                    off += format::record_size(h.len as usize) as u64;
                    lsn += 1;
                    seg.records_verified += 1;
                    continue;
                }
                "authentication failed: the record was altered or moved".to_owned()
            }
            Err(fault) => fault.describe(),
        };
        seg.problems.push(Problem { segment: seg.name.clone(), offset: off, lsn, what: fault });
        return;
    }
}
