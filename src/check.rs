//! Read-only checks of a WAL directory, for tools such as `directwal inspect`
//! and `directwal verify`.
//!
//! [`check_dir`] never writes, never takes the directory lock and never
//! stops at the first problem: every segment is looked at and every problem
//! is reported with its segment, offset and LSN. Opening the WAL, by
//! contrast, refuses at the first problem (D4); the two agree on what is a
//! problem, because both use the same record and seal checks
//! (`format::check_record`, the seal consistency rule of D9, the torn-tail
//! rule of I5).
//!
//! A torn tail on the newest segment is not a problem: it is the unfinished
//! write of a crash, which the next open cuts (I5), and it never held an
//! acknowledged record. It is reported separately, in
//! [`SegmentCheck::torn_tail`].

use std::path::{Path, PathBuf};

use crate::crypto::{KeyRing, SegmentCipher};
use crate::error::{Result, WalError};
use crate::format::{self, Cipher, FLAG_ENCRYPTED, Seal, SegmentHeader};
use crate::io::{OsStorage, Storage};
use crate::recovery::{self, TornTail};
use crate::segment;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Keys for encrypted segments. Needed only with `verify_records`.
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
    /// `.tmp` files of segments being prepared; the next open deletes them (I2).
    pub temp_files: Vec<PathBuf>,
    /// Spare files kept for recycling (not part of the log; I17).
    pub spare_files: Vec<PathBuf>,
}

impl DirCheck {
    /// True when no segment has a problem (a torn tail is not one).
    pub fn is_clean(&self) -> bool {
        self.segments.iter().all(|s| s.problems.is_empty())
    }

    /// Every problem, in segment order.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.segments.iter().flat_map(|s| s.problems.iter())
    }

    /// Valid records in all segments (not counting those truncated meanwhile).
    pub fn total_records(&self) -> u64 {
        self.segments.iter().filter(|s| !s.truncated).map(|s| s.records).sum()
    }
}

/// Checks the WAL in `dir` without writing anything. `progress` is called
/// with the size of each segment file once it has been checked.
///
/// Returns `Err` only when the directory cannot be listed, or when
/// `verify_records` meets an encrypted segment whose key is not in the ring;
/// everything wrong on disk is a [`Problem`] in the result.
pub fn check_dir(dir: &Path, opts: &CheckOptions, progress: &mut dyn FnMut(u64)) -> Result<DirCheck> {
    let storage = OsStorage;
    let listing = segment::discover(&storage, dir)?;
    let found = listing.segments;
    let mut out = DirCheck {
        dir: dir.to_owned(),
        wal_id: None,
        segments: Vec::new(),
        temp_files: listing.temps,
        spare_files: listing.spares,
    };
    let mut expect_lsn: Option<u64> = None;
    // Readable headers, with the index of their segment in `out.segments`.
    let mut headers: Vec<(usize, SegmentHeader)> = Vec::new();
    for (i, f) in found.iter().enumerate() {
        let is_newest = i + 1 == found.len();
        let mut seg = SegmentCheck {
            name: f.name.clone(),
            path: f.path.clone(),
            first_lsn: f.first_lsn,
            last_lsn: f.first_lsn - 1,
            records: 0,
            file_size: 0,
            used_bytes: 0,
            sealed: false,
            wal_id: None,
            key_id: None,
            records_verified: 0,
            torn_tail: None,
            problems: Vec::new(),
            truncated: false,
        };
        let problem = |seg: &mut SegmentCheck, offset: u64, lsn: u64, what: String| {
            seg.problems.push(Problem { segment: f.name.clone(), offset, lsn, what });
        };
        // D5: contiguity with the previous segment; a missing prefix is truncation.
        if let Some(expected) = expect_lsn {
            if f.first_lsn > expected {
                let what = format!("LSNs {expected}..{} are missing: no segment holds them", f.first_lsn - 1);
                problem(&mut seg, 0, expected, what);
            } else if f.first_lsn < expected {
                let what = format!("overlaps the previous segment, which ends at LSN {}", expected - 1);
                problem(&mut seg, 0, f.first_lsn, what);
            }
        }
        let img = match storage.read_image(&f.path) {
            Ok(img) => img,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Listed, then truncated by a live writer: a missing prefix.
                seg.truncated = true;
                expect_lsn = None;
                out.segments.push(seg);
                continue;
            }
            Err(e) => {
                problem(&mut seg, 0, f.first_lsn, format!("cannot read: {e}"));
                expect_lsn = None;
                out.segments.push(seg);
                continue;
            }
        };
        seg.file_size = img.len() as u64;
        let (header, seal) = match segment::read_header_and_seal(&f.name, &img) {
            Ok(hs) => hs,
            Err(e) => {
                problem(&mut seg, 0, f.first_lsn, error_text(&e));
                expect_lsn = None;
                out.segments.push(seg);
                progress(img.len() as u64);
                continue;
            }
        };
        seg.wal_id = Some(header.wal_id);
        seg.key_id = segment::key_id(&header);
        headers.push((out.segments.len(), header.clone()));
        if header.first_lsn != f.first_lsn {
            problem(&mut seg, 0, f.first_lsn, format!("header says first LSN {}", header.first_lsn));
        }
        match out.wal_id {
            None => out.wal_id = Some(header.wal_id),
            Some(id) if id != header.wal_id => {
                let what = format!("belongs to WAL {:032x}, not to WAL {id:032x}", header.wal_id);
                problem(&mut seg, 0, f.first_lsn, what);
            }
            Some(_) => {}
        }
        let data_start = format::data_start(header.block_size as usize);
        let seal = match seal {
            Ok(seal) => seal,
            // A seal torn by a crash on the newest segment: the open rescans it.
            Err(_) if is_newest => None,
            Err(e) => {
                problem(&mut seg, header.block_size as u64, f.first_lsn, error_text(&e));
                None
            }
        };
        let cipher = if opts.verify_records { cipher_for(opts.ring.as_ref(), &f.name, &header)? } else { None };
        match seal {
            Some(seal) => {
                seg.sealed = true;
                if let Some(what) = seal_fault(f.first_lsn, &seal, data_start, img.len()) {
                    problem(&mut seg, header.block_size as u64, f.first_lsn, what);
                } else {
                    (seg.records, seg.last_lsn, seg.used_bytes) = (seal.records, seal.last_lsn, seal.data_end);
                    if opts.verify_records {
                        verify_records(&mut seg, &img, &header, seal.data_end, cipher.as_ref());
                        if seg.problems.is_empty() && seg.records_verified != seal.records {
                            let what = format!(
                                "seal counts {} records, the data holds {}",
                                seal.records, seg.records_verified
                            );
                            problem(&mut seg, header.block_size as u64, f.first_lsn, what);
                        }
                    }
                }
            }
            None => {
                if !is_newest {
                    // I7: a newer segment exists only after this one was sealed.
                    let what = "segment is not sealed although a newer segment exists".to_owned();
                    problem(&mut seg, header.block_size as u64, f.first_lsn, what);
                }
                match recovery::scan_unsealed(
                    &f.name,
                    &img,
                    data_start,
                    f.first_lsn,
                    header.crc_seed(),
                    header.recycled,
                ) {
                    Ok(scan) => {
                        (seg.records, seg.last_lsn, seg.used_bytes) = (scan.records, scan.last_lsn, scan.data_end);
                        seg.torn_tail = scan.torn;
                        if opts.verify_records {
                            verify_records(&mut seg, &img, &header, scan.data_end, cipher.as_ref());
                        }
                    }
                    Err(e) => {
                        let (offset, lsn) = match &e {
                            WalError::Corruption { offset, lsn, .. } => (*offset, *lsn),
                            _ => (data_start, f.first_lsn),
                        };
                        problem(&mut seg, offset, lsn, error_text(&e));
                    }
                }
            }
        }
        if !seg.problems.is_empty() && !segment::still_holds(&storage, &f.path, &header) {
            // Damage seen in a file a live writer has since truncated (and
            // perhaps recycled under our mapping) is not damage of the log.
            seg.truncated = true;
            seg.problems.clear();
        }
        expect_lsn = if seg.truncated { None } else { Some(seg.last_lsn + 1) };
        progress(img.len() as u64);
        out.segments.push(seg);
    }
    report_downgrade(&mut out, &headers);
    Ok(out)
}

/// I11: a plain segment after encrypted ones without the `encryption_off`
/// flag is a problem (`crypto::encryption_state`, the rule open applies).
fn report_downgrade(out: &mut DirCheck, headers: &[(usize, SegmentHeader)]) {
    let live: Vec<&(usize, SegmentHeader)> = headers.iter().filter(|(i, _)| !out.segments[*i].truncated).collect();
    if let Some(d) = crate::crypto::encryption_state(live.iter().map(|(_, h)| h)).downgrade {
        let seg = &mut out.segments[live[d].0];
        let what = "plain segment after encrypted ones without an explicit disable_encryption \
                    (header flag encryption_off): the WAL still requires its key"
            .to_owned();
        seg.problems.push(Problem { segment: seg.name.clone(), offset: 0, lsn: seg.first_lsn, what });
    }
}

/// The reason of an error, without the location the `Problem` carries anyway.
fn error_text(e: &WalError) -> String {
    match e {
        WalError::Corruption { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// D9: the seal's values are checked before any arithmetic on them (the
/// same rule the open applies).
fn seal_fault(first_lsn: u64, seal: &Seal, data_start: u64, file_len: usize) -> Option<String> {
    let consistent = seal.last_lsn.checked_add(1).and_then(|n| n.checked_sub(first_lsn)) == Some(seal.records)
        && (seal.records == 0) == (seal.data_end == data_start);
    (!consistent || seal.data_end < data_start || seal.data_end > file_len as u64)
        .then(|| "seal block describes impossible data".to_owned())
}

/// The cipher of an encrypted segment, failing closed when its key is absent.
fn cipher_for(ring: Option<&KeyRing>, name: &str, header: &SegmentHeader) -> Result<Option<SegmentCipher>> {
    match header.cipher {
        Cipher::None => Ok(None),
        Cipher::Aes256Gcm { key_id } => {
            let lsn = header.first_lsn;
            let ring = ring.ok_or(WalError::KeyRequired { segment: name.to_owned(), lsn })?;
            let key = ring.get(key_id).ok_or(WalError::UnknownKey { key_id, segment: name.to_owned(), lsn })?;
            Ok(Some(SegmentCipher::new(key, header.wal_id, header.salt)))
        }
    }
}

/// Checks each record from the data start to `end`: CRC, LSN sequence, and
/// for encrypted segments the tag (E5: in an encrypted segment every record
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
