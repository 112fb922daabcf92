//! Owned replay: durable records as `WalRecord`s in one `Vec`
//! (`SegmentedWal::replay`, `replay_from`, `replay_from_limit`,
//! `WalHandle::replay*`). Decoding is the readers' scan; what is owned here
//! is how the result is built: sized once from the segments' record counts
//! instead of grown by doubling, and each payload moved in as decoded (a
//! decrypted payload is the buffer decryption made, never copied again).

use std::cell::Cell;

use super::{WalReader, durable_lsn, oldest};
use crate::error::Result;
use crate::format;
use crate::record::WalRecord;
use crate::view::View;

/// The most records reserved up front (4 Mi records: 192 MiB of
/// `WalRecord`s); a longer replay grows the `Vec` from there.
const RESERVE_CAP: u64 = 1 << 22;

impl WalReader {
    /// Up to `max_records` durable records from `from_lsn` (0: the oldest),
    /// owned, and whether durable records follow the last one. Errors as
    /// [`visit`](Self::visit). The record after the last one taken is not
    /// decoded, so damage there cannot fail a replay that stops before it.
    /// A replay of every record (`usize::MAX`) reads the sealed segments
    /// ahead on a second thread (`super::ahead`): building the records keeps
    /// this one busy, so the disk and the page faults would wait for it.
    pub(crate) fn collect(&self, from_lsn: u64, max_records: usize) -> Result<(Vec<WalRecord>, bool)> {
        let view = self.shared.snapshot();
        let mut out = Vec::with_capacity(expected_records(&view, from_lsn, max_records));
        let taken = Cell::new(0usize);
        let helper = max_records == usize::MAX;
        let has_more =
            self.scan_decoded(&view, from_lsn, helper, &|| taken.get() < max_records, |header, payload| {
                out.push(WalRecord { header, payload: payload.into_owned() });
                taken.set(taken.get() + 1);
                true
            })?;
        Ok((out, has_more))
    }
}

/// How many records a replay from `from_lsn` returns, to reserve: the
/// durable LSNs from there, bounded by what the segments' bytes can hold
/// (a seal is checked at open, but a directory reader's is not) and by
/// `RESERVE_CAP` and `max_records`.
fn expected_records(view: &View, from_lsn: u64, max_records: usize) -> usize {
    let from = from_lsn.max(oldest(view));
    let lsns = durable_lsn(view).saturating_add(1).saturating_sub(from);
    let min_record = format::record_size(0) as u64;
    let sealed: u64 = view
        .sealed()
        .iter()
        .filter(|s| s.seal.last_lsn >= from)
        .map(|s| s.seal.data_end.saturating_sub(format::data_start(s.header.block_size as usize)) / min_record)
        .fold(0u64, u64::saturating_add);
    let active = view.active().map_or(0, |a| {
        let (last, end) = a.watermark();
        let start = format::data_start(a.header.block_size as usize);
        (end.saturating_sub(start) / min_record).min(last.saturating_add(1).saturating_sub(a.header.first_lsn))
    });
    let n = lsns.min(sealed.saturating_add(active)).min(RESERVE_CAP);
    usize::try_from(n).unwrap_or(usize::MAX).min(max_records)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::format::Seal;
    use crate::io::OsStorage;
    use crate::view::{SealedSeg, Shared};

    fn view(first_lsn: u64, seal: Seal) -> View {
        let seg = SealedSeg::for_test("s".into(), first_lsn, seal);
        let shared = Shared::new("dir".into(), Arc::new(OsStorage), true, Arc::default());
        shared.set_sealed(vec![Arc::new(seg)]);
        shared.snapshot()
    }

    #[test]
    fn the_reserve_never_exceeds_what_the_bytes_can_hold() {
        let start = format::data_start(4096);
        let size = format::record_size(100) as u64;
        // A true seal: exactly its records.
        let v = view(1, Seal { last_lsn: 100, records: 100, data_end: start + 100 * size, sealed_ms: 0 });
        assert_eq!(expected_records(&v, 0, usize::MAX), 100);
        assert_eq!(expected_records(&v, 41, usize::MAX), 60);
        assert_eq!(expected_records(&v, 41, 7), 7);
        assert_eq!(expected_records(&v, 101, usize::MAX), 0);
        // Seals a directory reader does not check (only open does): no
        // overflow, and no more than the claimed bytes or the cap.
        let min = format::record_size(0) as u64;
        let v = view(1, Seal { last_lsn: u64::MAX, records: u64::MAX, data_end: start + 10 * min, sealed_ms: 0 });
        assert_eq!(expected_records(&v, 0, usize::MAX), 10);
        let v = view(1, Seal { last_lsn: u64::MAX, records: 0, data_end: u64::MAX, sealed_ms: 0 });
        assert_eq!(expected_records(&v, 0, usize::MAX) as u64, RESERVE_CAP);
        let v = view(5, Seal { last_lsn: 0, records: 0, data_end: 0, sealed_ms: 0 });
        assert_eq!(expected_records(&v, 0, usize::MAX), 0);
    }
}
