//! The scan of the newest (unsealed) segment: find where valid data ends and
//! decide whether the damage after it is a torn final write (cut it) or
//! damage to data that was already durable (refuse) — DESIGN I5/I6.

use crate::error::{CorruptionKind, WalError};
use crate::format::{self, RECORD_ALIGN, RECORD_HEADER_LEN, RecordFault, record_size};

/// What the scan of an unsealed segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Valid records from the start of the data.
    pub records: u64,
    /// LSN of the last valid record (`first_lsn - 1` if none).
    pub last_lsn: u64,
    /// Offset just past the last valid record.
    pub data_end: u64,
    /// Set when something other than never-written space follows the data.
    pub torn: Option<TornTail>,
}

impl ScanOutcome {
    /// The valid records before the damage the scan of an unsealed segment
    /// that starts at `first_lsn` reported: its `Corruption` (a record of
    /// an earlier sync damaged, I5; the file shortened, I26) sits where
    /// they end and names the LSN that would come next. None for any other
    /// error. Tolerant recovery seals there; `check` counts them.
    pub fn before_damage(e: &WalError, first_lsn: u64) -> Option<ScanOutcome> {
        let &WalError::Corruption { offset, lsn, .. } = e else { return None };
        let (records, last_lsn) = (lsn.checked_sub(first_lsn)?, lsn.checked_sub(1)?);
        Some(ScanOutcome { records, last_lsn, data_end: offset, torn: None })
    }

    /// The seal that ends the segment after these records (a reader's view
    /// of an unsealed segment, or recovery sealing it).
    pub fn seal(&self, sealed_ms: u64) -> crate::format::Seal {
        crate::format::Seal { last_lsn: self.last_lsn, records: self.records, data_end: self.data_end, sealed_ms }
    }

    /// I24: whether tolerant recovery sets the segment aside rather than
    /// replacing it, `self` being what the scan kept before `damage`: no
    /// record kept, and either damaged durable data at its first record (I5)
    /// or a cut inside its first record (I26). Its bytes are the evidence of
    /// what was dropped. An empty segment otherwise (nothing written, a torn
    /// first write, a file shortened to its data start) is replaced. One
    /// rule for open and `check`.
    pub fn sets_aside(&self, damage: &WalError) -> bool {
        self.records == 0
            && match damage {
                WalError::Corruption { kind: CorruptionKind::DurableRecord { .. }, .. } => true,
                // I26: cut inside its first record: the bytes of that
                // (acknowledged) record are in the file, the evidence. Cut
                // at its data start, it holds no record byte: replaced.
                WalError::Corruption { kind: CorruptionKind::NoReserve { file_len, data_end }, .. } => {
                    file_len > data_end
                }
                _ => false,
            }
    }
}

/// A torn final write that recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Offset where valid data ends.
    pub offset: u64,
    /// LSN that was expected there.
    pub lsn: u64,
    /// Why the bytes there are not a record.
    pub reason: String,
    /// Valid records of the same unfinished write found after the hole and dropped.
    pub dropped_records: u64,
    /// Bytes cut: from `offset` to the last non-zero byte after it.
    pub bytes_cut: u64,
}

/// Scans the records of an unsealed segment image.
///
/// Returns `Corruption` when a record written by a *later* sync than the
/// damaged spot validates after it: that sync could only start after the
/// damaged bytes were durable (I5), so they were acknowledged data.
///
/// In a `recycled` file the space after the data holds stale bytes of an
/// older segment, which play the part zeros play in a fresh file (I17).
pub fn scan_unsealed(
    name: &str,
    img: &[u8],
    data_start: u64,
    first_lsn: u64,
    seed: u32,
    recycled: bool,
) -> Result<ScanOutcome, WalError> {
    let end = img.len() as u64;
    let mut off = data_start;
    let mut lsn = first_lsn;
    let mut records = 0u64;
    let fault = loop {
        if off >= end {
            break None;
        }
        match format::check_record(img, off, end, seed, Some(lsn)) {
            Ok((h, _)) => {
                off += record_size(h.len as usize) as u64;
                lsn += 1;
                records += 1;
            }
            Err(f) => break Some(f),
        }
    };
    let mut outcome = ScanOutcome { records, last_lsn: lsn - 1, data_end: off, torn: None };
    let Some(fault) = fault else { return Ok(outcome) };
    let hole = Hole { img, at: off, lsn, seed, fault };
    let (dropped, dropped_end) = hole.look_past(name)?;
    outcome.torn = hole.torn_tail(recycled, dropped, dropped_end);
    Ok(outcome)
}

/// Where the valid records of an unsealed segment end, and why.
struct Hole<'a> {
    img: &'a [u8],
    /// Offset of the first invalid record.
    at: u64,
    /// The LSN expected there.
    lsn: u64,
    seed: u32,
    fault: RecordFault,
}

impl Hole<'_> {
    /// Looks past the hole for records that validate on their own (their
    /// length cannot be trusted across the hole, so it searches aligned
    /// offsets). Returns how many there are and where the last one ends;
    /// `Corruption` when one of them belongs to a later sync (I5).
    fn look_past(&self, name: &str) -> Result<(u64, u64), WalError> {
        let (img, hole, lsn) = (self.img, self.at, self.lsn);
        let end = img.len() as u64;
        let mut dropped = 0u64;
        let mut dropped_end = hole;
        let mut p = hole + RECORD_ALIGN as u64;
        while p + RECORD_HEADER_LEN as u64 <= end {
            // Cheap filter before the CRC: a record after the hole carries an LSN
            // at or above the one expected at the hole, and at most one more per
            // minimal record that fits in between. Zeroed space fails here.
            let cand = format::read_header(&img[p as usize..]).fields.lsn;
            // I20: saturating, next to the largest LSN.
            let max_lsn = lsn.saturating_add((p - hole) / RECORD_HEADER_LEN as u64);
            if cand < lsn || cand > max_lsn {
                p += RECORD_ALIGN as u64;
                continue;
            }
            match format::check_record(img, p, end, self.seed, None) {
                Ok((h, _)) => {
                    if u64::from(h.fields.epoch_start) > hole {
                        return Err(WalError::Corruption {
                            segment: name.to_owned(),
                            offset: hole,
                            lsn,
                            kind: crate::error::CorruptionKind::DurableRecord {
                                fault: self.fault,
                                later_lsn: h.fields.lsn,
                                later_offset: p,
                            },
                        });
                    }
                    dropped += 1;
                    p += record_size(h.len as usize) as u64;
                    dropped_end = p;
                }
                Err(_) => p += RECORD_ALIGN as u64,
            }
        }
        Ok((dropped, dropped_end))
    }

    /// Whether the hole is a torn final write, and what cutting it drops
    /// (`dropped` records of the same write end at `dropped_end`).
    fn torn_tail(&self, recycled: bool, dropped: u64, dropped_end: u64) -> Option<TornTail> {
        let (img, hole, lsn) = (self.img, self.at, self.lsn);
        let end = img.len() as u64;
        // The header at the hole, if a whole one is there (its fields unchecked).
        let hole_header = img.get(hole as usize..hole as usize + RECORD_HEADER_LEN).map(format::read_header);
        let hole_lsn = hole_header.map(|h| h.fields.lsn);
        let torn = if recycled {
            // I17: stale bytes end the data as zeros do in a fresh file. The
            // write was torn if records of it lie beyond the hole, or if the
            // record at the hole is one of ours (its LSN) that did not fully land.
            dropped > 0 || hole_lsn == Some(lsn)
        } else {
            self.fault != RecordFault::Zero || dropped > 0
        };
        if !torn {
            return None;
        }
        let bytes_cut = if recycled {
            // Past our records the bytes are stale, not cut data.
            let own = match hole_header {
                Some(h) if h.fields.lsn == lsn => record_size(h.len as usize) as u64,
                _ => 0,
            };
            (dropped_end - hole).max(own).min(end - hole)
        } else {
            img[hole as usize..].iter().rposition(|&b| b != 0).map_or(0, |i| i as u64 + 1)
        };
        Some(TornTail { offset: hole, lsn, reason: self.fault.describe(), dropped_records: dropped, bytes_cut })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{RecordFields, encode_record};

    const START: u64 = 8192;
    const SEED: u32 = 99;

    /// Builds an image of records with the given epoch starts; returns it and record offsets.
    fn image(epochs: &[u32]) -> (Vec<u8>, Vec<u64>) {
        let mut img = vec![0u8; 64 * 1024];
        let mut off = START;
        let mut offs = Vec::new();
        for (i, &e) in epochs.iter().enumerate() {
            let f = RecordFields {
                lsn: 1 + i as u64,
                epoch_start: e,
                tenant_id: 0,
                record_type: 1,
                vshard_id: 0,
                flags: 0,
            };
            let size = record_size(100);
            encode_record(SEED, &f, &[i as u8; 100], &mut img[off as usize..off as usize + size]);
            offs.push(off);
            off += size as u64;
        }
        (img, offs)
    }

    #[test]
    fn clean_segment_ends_at_first_zero_header() {
        let (img, offs) = image(&[8192, 8192, 8192]);
        let out = scan_unsealed("s", &img, START, 1, SEED, false).unwrap();
        assert_eq!((out.records, out.last_lsn, out.torn), (3, 3, None));
        assert_eq!(out.data_end, offs[2] + record_size(100) as u64);
    }

    #[test]
    fn hole_inside_last_epoch_is_torn_and_drops_its_later_records() {
        let (mut img, offs) = image(&[8192, 8192, 8400, 8400, 8400]);
        // Record 3 (LSN 3) is the first of the last epoch; lose it.
        img[offs[2] as usize..offs[3] as usize].fill(0);
        let out = scan_unsealed("s", &img, START, 1, SEED, false).unwrap();
        assert_eq!(out.records, 2);
        let torn = out.torn.unwrap();
        assert_eq!((torn.offset, torn.lsn, torn.dropped_records), (offs[2], 3, 2));
        // Cut from the hole to the end of the last (dropped) record.
        assert_eq!(torn.bytes_cut, offs[4] + record_size(100) as u64 - offs[2] - 4 /* zero padding */);
    }

    /// Three records of ours, then records of an older segment (another
    /// seed, lower LSNs) as a recycled file holds them.
    fn recycled_image() -> (Vec<u8>, Vec<u64>) {
        let (mut img, offs) = image(&[8192, 8192, 8192]);
        let mut off = offs[2] + record_size(100) as u64;
        let mut lsn = 1;
        while off as usize + record_size(100) <= img.len() {
            let f = RecordFields { lsn, epoch_start: 8192, tenant_id: 0, record_type: 1, vshard_id: 0, flags: 0 };
            encode_record(SEED + 1, &f, &[7; 100], &mut img[off as usize..off as usize + record_size(100)]);
            off += record_size(100) as u64;
            lsn += 1;
        }
        (img, offs)
    }

    #[test]
    fn stale_records_of_a_recycled_file_end_the_data_like_zeros() {
        let (img, offs) = recycled_image();
        let out = scan_unsealed("s", &img, START, 1, SEED, true).unwrap();
        assert_eq!((out.records, out.last_lsn, out.torn), (3, 3, None));
        assert_eq!(out.data_end, offs[2] + record_size(100) as u64);
        // Without the header's recycled flag the same bytes look torn.
        assert!(scan_unsealed("s", &img, START, 1, SEED, false).unwrap().torn.is_some());
    }

    #[test]
    fn our_record_half_landed_in_a_recycled_file_is_torn() {
        let (mut img, offs) = recycled_image();
        // LSN 4's header reached the disk, the rest of it did not.
        let o = (offs[2] + record_size(100) as u64) as usize;
        let f = RecordFields { lsn: 4, epoch_start: o as u32, tenant_id: 0, record_type: 1, vshard_id: 0, flags: 0 };
        let mut rec = vec![0u8; record_size(100)];
        encode_record(SEED, &f, &[9; 100], &mut rec);
        img[o..o + 32].copy_from_slice(&rec[..32]);
        let out = scan_unsealed("s", &img, START, 1, SEED, true).unwrap();
        let torn = out.torn.expect("torn");
        assert_eq!((out.records, torn.offset, torn.lsn, torn.dropped_records), (3, o as u64, 4, 0));
        assert_eq!(torn.bytes_cut, record_size(100) as u64);
    }

    #[test]
    fn hole_before_a_later_epoch_is_corruption() {
        let (mut img, offs) = image(&[8192, 8192, 8400, 8400]);
        img[offs[1] as usize + 40] ^= 1; // payload of LSN 2, durable before epoch 8400 was written
        match scan_unsealed("s", &img, START, 1, SEED, false) {
            Err(WalError::Corruption { offset, lsn, .. }) => assert_eq!((offset, lsn), (offs[1], 2)),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
