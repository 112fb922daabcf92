//! Recovery of the newest (unsealed) segment: find where valid data ends and
//! decide whether the damage after it is a torn final write (cut it) or
//! damage to data that was already durable (refuse) — DESIGN I5/I6.

use crate::error::WalError;
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
pub fn scan_unsealed(
    name: &str,
    img: &[u8],
    data_start: u64,
    first_lsn: u64,
    seed: u32,
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

    // Look past the hole for records that validate on their own (their
    // length cannot be trusted across the hole, so search aligned offsets).
    let hole = off;
    let mut dropped = 0u64;
    let mut p = hole + RECORD_ALIGN as u64;
    while p + RECORD_HEADER_LEN as u64 <= end {
        // Cheap filter before the CRC: a record after the hole carries an LSN
        // at or above the one expected at the hole, and at most one more per
        // minimal record that fits in between. Zeroed space fails here.
        let cand = u64::from_le_bytes(img[p as usize + 8..p as usize + 16].try_into().expect("8 bytes"));
        let max_lsn = lsn + (p - hole) / RECORD_HEADER_LEN as u64;
        if cand < lsn || cand > max_lsn {
            p += RECORD_ALIGN as u64;
            continue;
        }
        match format::check_record(img, p, end, seed, None) {
            Ok((h, _)) => {
                if u64::from(h.fields.epoch_start) > hole {
                    return Err(WalError::Corruption {
                        segment: name.to_owned(),
                        offset: hole,
                        lsn,
                        reason: format!(
                            "{}; record LSN {} at offset {p} belongs to a later sync, so this data was durable",
                            fault.describe(),
                            h.fields.lsn
                        ),
                    });
                }
                dropped += 1;
                p += record_size(h.len as usize) as u64;
            }
            Err(_) => p += RECORD_ALIGN as u64,
        }
    }
    if fault != RecordFault::Zero || dropped > 0 {
        let last_nonzero = img[hole as usize..].iter().rposition(|&b| b != 0).map_or(0, |i| i as u64 + 1);
        outcome.torn = Some(TornTail {
            offset: hole,
            lsn,
            reason: fault.describe(),
            dropped_records: dropped,
            bytes_cut: last_nonzero,
        });
    }
    Ok(outcome)
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
        let out = scan_unsealed("s", &img, START, 1, SEED).unwrap();
        assert_eq!((out.records, out.last_lsn, out.torn), (3, 3, None));
        assert_eq!(out.data_end, offs[2] + record_size(100) as u64);
    }

    #[test]
    fn hole_inside_last_epoch_is_torn_and_drops_its_later_records() {
        let (mut img, offs) = image(&[8192, 8192, 8400, 8400, 8400]);
        // Record 3 (LSN 3) is the first of the last epoch; lose it.
        img[offs[2] as usize..offs[3] as usize].fill(0);
        let out = scan_unsealed("s", &img, START, 1, SEED).unwrap();
        assert_eq!(out.records, 2);
        let torn = out.torn.unwrap();
        assert_eq!((torn.offset, torn.lsn, torn.dropped_records), (offs[2], 3, 2));
        // Cut from the hole to the end of the last (dropped) record.
        assert_eq!(torn.bytes_cut, offs[4] + record_size(100) as u64 - offs[2] - 4 /* zero padding */);
    }

    #[test]
    fn hole_before_a_later_epoch_is_corruption() {
        let (mut img, offs) = image(&[8192, 8192, 8400, 8400]);
        img[offs[1] as usize + 40] ^= 1; // payload of LSN 2, durable before epoch 8400 was written
        match scan_unsealed("s", &img, START, 1, SEED) {
            Err(WalError::Corruption { offset, lsn, .. }) => assert_eq!((offset, lsn), (offs[1], 2)),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
