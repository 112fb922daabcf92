//! Open-time recovery: everything `open` does to the directory before the
//! writer starts its first segment, as one algorithm ([`recover`]):
//!
//! 1. load the catalog (names, headers, seals, WAL id, continuity);
//! 2. settle the catalog's faults: refuse the first one, unless tolerant
//!    mode has a remedy for it (I24);
//! 3. take the WAL id and the encryption requirement from the headers and
//!    from segments set aside whose cipher is unknown or encrypted (I11);
//! 4. settle the newest segment (table below); every older one is sealed
//!    and its seal checked by the catalog;
//! 5. decide where the next segment starts: past the last record kept, or
//!    at the first LSN of an empty newest segment or of one set aside for
//!    damage at its first record, or, after a segment set
//!    aside, past the previous segment's seal (its own name's LSN when none
//!    precedes it). The writer never appends into a segment of an earlier
//!    process (I6);
//! 6. tidy, only now that the directory was accepted (a refused open
//!    deletes nothing): delete the WAL's own temporary files (I2) and the
//!    trusted spares beyond `recycle_segments` (I17; an untrusted spare is
//!    left alone).
//!
//! What open does, by the kind of newest segment:
//!
//! | Newest segment | Strict open | Tolerant open |
//! |---|---|---|
//! | none (empty directory) | new WAL id; the log starts at LSN 1 | same |
//! | sealed | fdatasync it again (its seal's sync may have failed or never run, I6); next segment after its last LSN | same |
//! | unsealed, clean (data ends in never-written space) | fdatasync, seal at the end of the data (I6, I7); next segment after it | same |
//! | unsealed, torn tail (the last write did not fully land) | cut at the first invalid record, report it (`torn_tail`), seal at the cut (I5) | same |
//! | unsealed, damage to durable data (a record of a later sync validates after the damage, I5) | refuse: `Corruption` | cut at the damage, report it (`dropped_corruption`), seal there |
//! | unsealed, damage to durable data at its first record (no record before it) | refuse: `Corruption` | report it (`dropped_corruption`), rename it to `.aside-{k}` as it is (`set_aside`, never replaced: the evidence, I24); the log goes on at its first LSN; a ring is asked for only if its header names a cipher (I11) |
//! | empty (no valid record: none written, the first write torn, or shortened to its data start) | no seal; the next segment replaces it under the same name | same |
//! | no readable header (garbage, cut before its header, I2) | refuse: the header error | rename it to `.aside-{k}` (never deleted, I24); the log goes on after the previous segment (at its own first LSN when none precedes it); a ring or an explicit `disable_encryption` is required first (its cipher is unknown, I11) |
//! | shortened (length not a multiple of 512, I22) | refuse: `Corruption` | keep what it holds (`dropped_corruption`), then as unsealed above |
//! | shortened (version 4 on: the file ends less than a block past the block holding the records' end, or the end of the record whose header follows them, I26) | refuse: `Corruption` | keep what it holds (`dropped_corruption`), seal at its end; cut inside its first record, set it aside as damage at the first record above |
//! | over-long (longer than any segment, I23) | refuse: `Corruption` | set aside as a headerless one |
//! | newer format version | refuse: `UnsupportedVersion` | same |
//!
//! A fault in any older segment (missing segment, foreign WAL id, bad seal,
//! unsealed although a newer one exists) is refused in both modes.

mod scan;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{error, warn};

pub use scan::{ScanOutcome, TornTail, scan_unsealed};

use crate::catalog::{self, Remedy};
use crate::error::{Result, WalError};
use crate::format::{Seal, SegmentHeader};
use crate::io::Storage;
use crate::segment;
use crate::stats::{Stats, Written};
use crate::view::SealedSeg;
use crate::wal::{RecoveryMode, RecoveryReport, SetAside, WalWriterConfig};
use crate::writer;

/// What recovery leaves for the writer.
pub(crate) struct Recovered {
    /// The WAL id: the segments', or a new one.
    pub wal_id: u128,
    /// The LSN the next segment starts with.
    pub next_lsn: u64,
    /// Every segment of the log, sealed, oldest first.
    pub sealed: Vec<Arc<SealedSeg>>,
    /// The newest segment held no record: the next segment replaces it.
    pub replace_newest: bool,
    /// I11: the key new records must be encrypted with.
    pub required_key: Option<u32>,
    /// I11, I24: a set-aside segment's cipher is unknown: a ring (any key)
    /// is required until one is set or encryption is turned off explicitly.
    pub cipher_unknown: bool,
    /// Spare files kept (I17).
    pub spares: Vec<PathBuf>,
    /// What recovery found and did (`open_time` is the caller's).
    pub report: RecoveryReport,
}

/// Where recovery works, and how.
struct Ctx<'a> {
    storage: &'a dyn Storage,
    dir: &'a Path,
    cfg: &'a WalWriterConfig,
    stats: &'a Stats,
}

impl Ctx<'_> {
    fn tolerant(&self) -> bool {
        self.cfg.recovery_mode == RecoveryMode::Tolerant
    }
}

/// Recovers the log in `dir` (see the module documentation): the one place
/// open decides what of the directory is the log. The caller holds the
/// directory's lock.
pub(crate) fn recover(storage: &dyn Storage, dir: &Path, cfg: &WalWriterConfig, stats: &Stats) -> Result<Recovered> {
    let cx = Ctx { storage, dir, cfg, stats };
    let mut cat = catalog::load(storage, dir)?;
    let mut report = RecoveryReport { segments: cat.segments.len(), ..Default::default() };
    let aside_lsn = settle_faults(&cx, &mut cat, &mut report)?;
    let wal_id = cat.wal_id.unwrap_or_else(random_u128);
    // I11: the key new records need (one rule over all headers).
    let crate::crypto::EncryptionState { required_key, cipher_unknown, .. } = encryption_state(storage, &cat);
    // I24: where the log goes on after a segment set aside.
    let mut next_lsn = aside_lsn.unwrap_or(1);
    let newest = cat.segments.pop();
    let mut sealed = Vec::with_capacity(cat.segments.len() + 1);
    for seg in &cat.segments {
        present(seg)?;
        // The catalog refused every older segment without a valid seal (I7).
        let seal = seg.seal.expect("an older segment without faults is sealed");
        next_lsn = next_lsn.max(seal.last_lsn + 1);
        sealed.push(sealed_seg(seg, seal)?);
    }
    let mut replace_newest = false;
    if let Some(seg) = newest {
        match settle_newest(&cx, &seg, &mut cat.aside, &mut report)? {
            Newest::Sealed(seal) => {
                next_lsn = next_lsn.max(seal.last_lsn + 1);
                sealed.push(sealed_seg(&seg, seal)?);
            }
            Newest::Empty => {
                // Empty: the next segment takes its name (and its first LSN).
                next_lsn = next_lsn.max(seg.first_lsn);
                replace_newest = true;
            }
            // I24: moved away, nothing left to replace: the log goes on at its first LSN.
            Newest::SetAside => next_lsn = next_lsn.max(seg.first_lsn),
        }
    }
    // Only now that the directory was accepted: a refused open deletes nothing.
    let spares = tidy(&cx, &cat, &mut report)?;
    Ok(Recovered { wal_id, next_lsn, sealed, replace_newest, required_key, cipher_unknown, spares, report })
}

/// Fails when `seg` was listed and gone before it was read.
fn present(seg: &catalog::Seg) -> Result<()> {
    if seg.vanished {
        let e = std::io::Error::new(std::io::ErrorKind::NotFound, "segment vanished while the WAL was opened");
        return Err(WalError::io("read", &seg.path, e));
    }
    Ok(())
}

/// A checked segment of the catalog, for the readers' view.
fn sealed_seg(seg: &catalog::Seg, seal: Seal) -> Result<Arc<SealedSeg>> {
    let header = seg.header.clone().expect("a segment without faults has a header");
    Ok(Arc::new(SealedSeg::new(seg.name.clone(), seg.path.clone(), header, seal, None)))
}

/// What became of the newest segment.
enum Newest {
    /// Sealed (again, or at the end of what recovery kept).
    Sealed(Seal),
    /// No record and nothing dropped: the next segment replaces it.
    Empty,
    /// No record before damaged durable data: set aside (I24).
    SetAside,
}

/// Settles the newest segment: its seal made durable, or, unsealed, its
/// records scanned and sealed at their end. A segment with no record gets
/// no seal: it is replaced, unless tolerant recovery cut damaged durable
/// data at its first record (I24: then it is set aside, never replaced).
fn settle_newest(
    cx: &Ctx<'_>,
    seg: &catalog::Seg,
    aside: &mut Vec<PathBuf>,
    report: &mut RecoveryReport,
) -> Result<Newest> {
    present(seg)?;
    let header = seg.header.as_ref().expect("a segment without faults has a header");
    if let Some(seal) = seg.seal {
        // I6: the seal may have been written by a process whose fdatasync
        // failed or never ran; make it durable before a newer segment builds on it.
        let (file, _) = writer::open_file(cx.storage, &seg.path, false, cx.cfg.use_direct_io)?;
        file.sync_data().map_err(|e| WalError::io("fdatasync", &seg.path, e))?;
        return Ok(Newest::Sealed(seal));
    }
    if let Some(e) = &seg.torn_seal {
        warn!(segment = %seg.name, error = %e, "unreadable seal on the newest segment; rescanning it");
    }
    let (outcome, damage) = scan_newest(cx, seg, report)?;
    if let Some(e) = damage.filter(|e| outcome.sets_aside(e)) {
        // I24: replacing the file under its name would destroy the
        // evidence of the durable data dropped.
        set_aside(cx, seg, aside, &e, report)?;
        return Ok(Newest::SetAside);
    }
    let seal = outcome.seal(writer::now_ms());
    if seal.records == 0 {
        return Ok(Newest::Empty);
    }
    write_recovered_seal(cx, seg, header, &seal)?;
    Ok(Newest::Sealed(seal))
}

/// I2, I17, I21: deletes the WAL's own leftover temporary files
/// (never anything else) and spares beyond `recycle_segments`; returns the
/// spares kept.
fn tidy(cx: &Ctx<'_>, cat: &catalog::Catalog, report: &mut RecoveryReport) -> Result<Vec<PathBuf>> {
    let (storage, dir) = (cx.storage, cx.dir);
    for t in &cat.temps {
        // I2: a .tmp file never held an acknowledged record.
        storage.remove_file(t).map_err(|e| WalError::io("remove", t, e))?;
        report.temp_files_removed += 1;
    }
    // I17: spares hold nothing of the log; keep as many as configured,
    // of those we can trust (others are left alone: they may not be ours).
    let mut spares: Vec<PathBuf> = cat
        .spares
        .iter()
        .filter(|p| match crate::spares::distrust(storage, p) {
            None => true,
            Some(why) => {
                warn!(spare = %p.display(), why, "not a spare the WAL could have made: never reused, left in place");
                false
            }
        })
        .cloned()
        .collect();
    let extra = spares.split_off(spares.len().min(cx.cfg.recycle_segments));
    for t in &extra {
        storage.remove_file(t).map_err(|e| WalError::io("remove", t, e))?;
    }
    report.spare_files = spares.len();
    if !cat.temps.is_empty() || !extra.is_empty() {
        storage.sync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))?;
    }
    Ok(spares)
}

/// Refuses the catalog's first fault, unless tolerant mode may open past
/// it (I24): a newest segment that is no segment at all is set aside, a
/// shortened one (I22) is kept with what it holds. Returns the first LSN
/// of a segment set aside.
fn settle_faults(cx: &Ctx<'_>, cat: &mut catalog::Catalog, report: &mut RecoveryReport) -> Result<Option<u64>> {
    let tolerant = cx.tolerant();
    let mut aside_lsn = None;
    while let Some(fault) = cat.take_first_fault() {
        match fault.remedy {
            Remedy::SetAside if tolerant => {
                let seg = cat.segments.pop().expect("the newest segment");
                debug_assert_eq!(fault.segment, Some(cat.segments.len()));
                set_aside(cx, &seg, &mut cat.aside, &fault.error, report)?;
                // I24: the log goes on after the previous segment's seal,
                // else at the set-aside name's LSN.
                aside_lsn = Some(match cat.segments.last().and_then(|s| s.seal) {
                    Some(seal) => seal.last_lsn + 1,
                    None => seg.first_lsn,
                });
            }
            Remedy::KeepShortened if tolerant => {
                error!(error = %fault.error, "tolerant recovery: keeping what a shortened segment holds");
                report.dropped_corruption = Some(fault.error.to_string());
            }
            _ => {
                error!(error = %fault.error, "refusing to open the WAL");
                return Err(fault.error);
            }
        }
    }
    Ok(aside_lsn)
}

/// I24: renames a damaged newest segment to a free `.aside-{k}` name,
/// durably, never deleting it, and reports it (`why`: the damage). The
/// one place tolerant recovery sets a segment aside.
fn set_aside(
    cx: &Ctx<'_>,
    seg: &catalog::Seg,
    aside: &mut Vec<PathBuf>,
    why: &WalError,
    report: &mut RecoveryReport,
) -> Result<()> {
    // One open sets aside at most one segment: only the newest has a remedy.
    debug_assert!(report.set_aside.is_none(), "a second segment set aside");
    let to = (1u32..)
        .map(|k| cx.dir.join(segment::aside_file_name(&seg.name, k)))
        .find(|p| !aside.contains(p))
        .expect("a free name");
    cx.storage.rename(&seg.path, &to).map_err(|e| WalError::io("rename", &seg.path, e))?;
    cx.storage.sync_dir(cx.dir).map_err(|e| WalError::io("fsync directory", cx.dir, e))?;
    error!(segment = %seg.name, moved_to = %to.display(), error = %why,
        "tolerant recovery: set the newest segment aside");
    // I11: the set-aside file now counts for the encryption rule.
    aside.push(to.clone());
    report.set_aside = Some(SetAside { segment: seg.name.clone(), moved_to: to, reason: why.to_string() });
    Ok(())
}

/// I11: the encryption requirement the segments on disk set: the key new
/// records need, and whether encryption was turned off explicitly.
/// Open has no ring, so no `encryption_off` flag is proven here: the key
/// stays required until a ring is set (then `disable_encryption` proves the
/// decision again in the next segment's header).
fn encryption_state(storage: &dyn Storage, cat: &catalog::Catalog) -> crate::crypto::EncryptionState {
    let st = cat.encryption(storage, None);
    if let Some(i) = st.downgrade {
        warn!(segment = %cat.segments[i].name, "{}", crate::crypto::UNFLAGGED_DOWNGRADE);
    }
    if let Some(u) = st.unproven {
        warn!(segment = %cat.segments[u.index].name, "{u}; set the ring (and disable_encryption to stay plain)");
    }
    if st.cipher_unknown {
        warn!("a set-aside segment may have been encrypted: a key ring is required (or disable_encryption)");
    }
    st
}

/// Scans the unsealed newest segment and decides where it ends (cutting a
/// torn tail, I5); returns what it keeps and, when tolerant recovery cut
/// damage, the damage.
fn scan_newest(
    cx: &Ctx<'_>,
    seg: &catalog::Seg,
    report: &mut RecoveryReport,
) -> Result<(ScanOutcome, Option<WalError>)> {
    // Under the writer's lock (I25) nobody writes the file: one scan is the verdict.
    let (outcome, damage) = match catalog::scan_once(cx.storage, seg) {
        // No mapping of the file may be alive while it is written with
        // O_DIRECT (the seal): the image goes at once.
        Ok((_img, o)) => (o, None),
        Err(e @ WalError::Corruption { .. }) if cx.tolerant() => {
            error!(error = %e, "tolerant recovery: cutting the log at damaged durable data");
            report.dropped_corruption = Some(e.to_string());
            match ScanOutcome::before_damage(&e, seg.first_lsn) {
                Some(o) => (o, Some(e)),
                None => return Err(e),
            }
        }
        Err(e) => {
            error!(error = %e, "corruption found during recovery");
            return Err(e);
        }
    };
    if let Some(t) = &outcome.torn {
        warn!(
            segment = %seg.name,
            offset = t.offset,
            lsn = t.lsn,
            reason = %t.reason,
            dropped_records = t.dropped_records,
            bytes_cut = t.bytes_cut,
            "cut torn final write"
        );
    }
    report.recovered_records = outcome.records;
    report.torn_tail = outcome.torn.clone();
    Ok((outcome, damage))
}

/// I6: makes what recovery kept durable, then seals the segment there.
fn write_recovered_seal(cx: &Ctx<'_>, seg: &catalog::Seg, header: &SegmentHeader, seal: &Seal) -> Result<()> {
    let (block, seed) = (header.block_size as usize, header.crc_seed());
    let (file, _) = writer::open_file(cx.storage, &seg.path, false, cx.cfg.use_direct_io)?;
    // I6: what recovery keeps may only be in a cache (a crashed
    // process's buffered writes): make it durable before sealing.
    file.sync_data().map_err(|e| WalError::io("fdatasync", &seg.path, e))?;
    cx.stats.wrote(Written::Seal, block as u64);
    writer::write_seal(&*file, &seg.path, block, seed, seal)
}

/// A random id (a new WAL's id, a segment's salt).
pub(crate) fn random_u128() -> u128 {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source failed");
    u128::from_le_bytes(b)
}
