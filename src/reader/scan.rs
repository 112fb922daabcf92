//! Decoding records out of sealed segments (mapped) and the active one
//! (the writer's shared buffers, or ranged reads).

use std::borrow::Cow;

use super::ahead::{self, Ahead};
use super::{WalReader, durable_lsn, oldest};
use crate::crypto::SegmentCipher;
use crate::error::{CorruptionKind, Result, WalError};
use crate::format::{self, SegmentHeader};
use crate::record::{RecordHeader, RecordRef};
use crate::view::{ActiveView, INDEX_EVERY, SealedSeg, View, Window};

/// How far ahead of a scan of a sealed segment its pages are requested.
pub(super) const READ_AHEAD: u64 = 8 << 20;
/// Bytes of the active segment read at a time.
const ACTIVE_WINDOW: usize = 1 << 20;

/// Where one segment's records are read from.
enum Source<'a> {
    /// The sealed segment at this index of the view.
    Sealed(usize, &'a SealedSeg),
    Active(&'a ActiveView),
}

impl WalReader {
    /// Streams records from `from_lsn` to `f` until it returns false.
    /// `room` is asked before each record is decoded: a page that is full
    /// stops without reading the record after it, so damage there cannot
    /// fail a page that does not include it.
    pub(super) fn scan(
        &self,
        view: &View,
        from_lsn: u64,
        room: &dyn Fn() -> bool,
        mut f: impl FnMut(RecordRef<'_>) -> bool,
    ) -> Result<bool> {
        self.scan_decoded(view, from_lsn, false, room, |header, payload| f(RecordRef { header, payload: &payload }))
    }

    /// [`scan`](Self::scan), handing `f` each payload as decoded: lent from
    /// the segment, or the decrypted buffer itself, so an owned replay can
    /// keep it without copying it again. `helper`: the caller reads on to
    /// the last durable record and is busy with each one: a second thread
    /// reads the sealed segments ahead when there is enough to read
    /// ([`ahead`]).
    pub(super) fn scan_decoded(
        &self,
        view: &View,
        from_lsn: u64,
        helper: bool,
        room: &dyn Fn() -> bool,
        f: impl FnMut(RecordHeader, Cow<'_, [u8]>) -> bool,
    ) -> Result<bool> {
        let oldest = oldest(view);
        if from_lsn != 0 && from_lsn < oldest {
            return Err(WalError::LsnTruncated { requested: from_lsn, oldest });
        }
        let from = from_lsn.max(oldest);
        // Binary search by first LSN: the last sealed segment starting at
        // or before `from` (when the active segment holds `from`, the scan of
        // that sealed segment returns at once).
        let start = view.sealed().partition_point(|s| s.header.first_lsn <= from).saturating_sub(1);
        let reads_sealed = view.sealed().get(start).is_some_and(|s| from <= s.seal.last_lsn);
        // I27: the helper reads this snapshot's segments; the scan is the same.
        if helper && reads_sealed && ahead::worth_it(view.sealed(), start) {
            // Where the scan will start: `scan_sealed` seeks the same way.
            let first = view.sealed()[start].index_start(from).1.1;
            return ahead::with_helper(view.sealed(), (start, first), |a| {
                if a.is_some() {
                    self.shared.stats.read_ahead_helper();
                }
                self.scan_from(view, from, start, room, f, a)
            });
        }
        self.scan_from(view, from, start, room, f, None)
    }

    /// The scan of [`scan_decoded`](Self::scan_decoded) from LSN `from`, in
    /// the `start`-th sealed segment (or the active one), telling `ahead`
    /// where it is in the sealed segments.
    fn scan_from(
        &self,
        view: &View,
        from: u64,
        start: usize,
        room: &dyn Fn() -> bool,
        mut f: impl FnMut(RecordHeader, Cow<'_, [u8]>) -> bool,
        ahead: Option<&Ahead>,
    ) -> Result<bool> {
        let durable = durable_lsn(view);
        let first_of = |s: &Source<'_>| match s {
            Source::Sealed(_, s) => s.header.first_lsn,
            Source::Active(a) => a.header.first_lsn,
        };
        let sealed = view.sealed().iter().enumerate().skip(start).map(|(i, s)| Source::Sealed(i, s));
        let sources = sealed.chain(view.active().map(|a| Source::Active(a)));
        let mut lsn = from;
        for src in sources {
            if lsn > durable {
                break;
            }
            // Never skip LSNs: a gap (segments truncated under a cursor that
            // pinned an older one) ends the page, or is LsnTruncated at once.
            if first_of(&src) > lsn {
                if lsn == from {
                    return Err(WalError::LsnTruncated { requested: lsn, oldest: first_of(&src) });
                }
                return Ok(true);
            }
            let go_on = match src {
                Source::Sealed(i, s) => self.scan_sealed(view, (i, s), &mut lsn, room, &mut f, ahead)?,
                Source::Active(a) => self.scan_active(view, a, &mut lsn, room, &mut f)?,
            };
            if !go_on {
                return Ok(lsn <= durable);
            }
        }
        Ok(false)
    }

    /// `e`, or `LsnTruncated` when a directory reader's segment is no longer
    /// the file it listed: the writer (another process) truncated it, maybe
    /// recycling the file under the mapping. Its records are gone, not damaged.
    fn gone_or(&self, s: &SealedSeg, lsn: u64, e: WalError) -> WalError {
        if !self.shared.foreign_writer {
            return e;
        }
        let storage = &*self.shared.storage;
        if crate::segment::still_holds(storage, &s.path, &s.header) {
            return e;
        }
        let oldest = crate::catalog::list(storage, &self.shared.dir)
            .ok()
            .and_then(|l| l.segments.first().map(|f| f.first_lsn))
            .unwrap_or(s.seal.last_lsn.saturating_add(1)); // I20: the seal is unchecked here
        WalError::LsnTruncated { requested: lsn, oldest }
    }

    fn cipher(&self, view: &View, name: &str, header: &SegmentHeader, lsn: u64) -> Result<Option<SegmentCipher>> {
        crate::catalog::cipher_for(view.ring(), name, header, lsn)
    }

    fn scan_sealed(
        &self,
        view: &View,
        (i, s): (usize, &SealedSeg),
        lsn: &mut u64,
        room: &dyn Fn() -> bool,
        f: &mut impl FnMut(RecordHeader, Cow<'_, [u8]>) -> bool,
        ahead: Option<&Ahead>,
    ) -> Result<bool> {
        if *lsn > s.seal.last_lsn {
            return Ok(true);
        }
        let storage = &*self.shared.storage;
        let img = match ahead {
            Some(a) => a.image(i, s, storage),
            None => s.image(storage),
        };
        let img = img.map_err(|e| self.gone_or(s, *lsn, e))?;
        if let Some(a) = ahead.filter(|_| img.is_mapped()) {
            a.map_next(view.sealed(), i, storage);
        }
        let seed = s.header.crc_seed();
        let first = s.header.first_lsn;
        // Seek through the index; past its frontier, read on from the
        // frontier and extend the index on the way.
        let (extend_from, (mut at_lsn, mut off)) = s.index_start(*lsn);
        let mut new_entries = Vec::new();
        let cipher = self.cipher(view, &s.name, &s.header, *lsn)?;
        let mut go_on = true;
        // I10: never past the seal's data end.
        while at_lsn <= s.seal.last_lsn {
            // Read ahead: the disk works while records are checked.
            s.read_ahead(&img, off, READ_AHEAD);
            if let Some(a) = ahead {
                a.at(i, off);
            }
            if extend_from.is_some() && (at_lsn - first).is_multiple_of(INDEX_EVERY) {
                new_entries.push((at_lsn, off));
            }
            if at_lsn >= *lsn && !room() {
                *lsn = at_lsn;
                go_on = false;
                break;
            }
            let take = at_lsn >= *lsn;
            let rec = decode(&s.name, &img, 0, off, s.seal.data_end, seed, at_lsn, cipher.as_ref(), take, true)
                .map_err(|e| self.gone_or(s, at_lsn, e))?;
            if let Some((header, payload)) = rec.0 {
                if !f(header, payload) {
                    *lsn = at_lsn;
                    go_on = false;
                    break;
                }
                *lsn = at_lsn + 1;
            }
            off += rec.1;
            at_lsn += 1;
        }
        if let Some(from) = extend_from {
            // The record we stopped at was not consumed: the frontier is at it,
            // so its entry (if any) is pushed again by the next extension.
            if new_entries.last() == Some(&(at_lsn, off)) {
                new_entries.pop();
            }
            s.extend_index(from, new_entries, (at_lsn, off));
        }
        Ok(go_on)
    }

    fn scan_active(
        &self,
        view: &View,
        a: &ActiveView,
        lsn: &mut u64,
        room: &dyn Fn() -> bool,
        f: &mut impl FnMut(RecordHeader, Cow<'_, [u8]>) -> bool,
    ) -> Result<bool> {
        let (last, end) = a.watermark();
        if *lsn > last {
            return Ok(true);
        }
        let (mut at_lsn, mut off) = a.seek(*lsn);
        let cipher = self.cipher(view, &a.name, &a.header, *lsn)?;
        let seed = a.header.crc_seed();
        let mut window = Window::Owned { base: off, bytes: Vec::new(), from_disk: true };
        // I10: never past the published durable end.
        while at_lsn <= last {
            if at_lsn >= *lsn && !room() {
                *lsn = at_lsn;
                return Ok(false);
            }
            // Make the window hold the whole record at `off` (or all that is durable).
            loop {
                let (base, bytes) = (window.base(), window.bytes());
                let w_end = base + bytes.len() as u64;
                let need_end = record_end(bytes, base, off).unwrap_or(off + format::RECORD_HEADER_LEN as u64);
                if off >= base && (need_end <= w_end || w_end >= end) {
                    break;
                }
                window = match a.tail_window(off, need_end, end) {
                    Some(w) => w,
                    None => {
                        let len = (ACTIVE_WINDOW as u64).max(need_end - off).min(end.saturating_sub(off));
                        let bytes = self
                            .shared
                            .storage
                            .read_range(&a.path, off, len as usize, view.direct())
                            .map_err(|e| WalError::io("read", &a.path, e))?;
                        Window::Owned { base: off, bytes, from_disk: true }
                    }
                };
            }
            // Decode every record the window holds whole (the first one it
            // does, by the loop above).
            let (base, bytes, verify) = (window.base(), window.bytes(), window.read_from_disk());
            let w_end = base + bytes.len() as u64;
            loop {
                let take = at_lsn >= *lsn;
                let rec = decode(&a.name, bytes, base, off, end, seed, at_lsn, cipher.as_ref(), take, verify)?;
                off += rec.1;
                if let Some((header, payload)) = rec.0 {
                    if !f(header, payload) {
                        *lsn = at_lsn;
                        return Ok(false);
                    }
                    *lsn = at_lsn + 1;
                }
                at_lsn += 1;
                if at_lsn > last || (w_end < end && record_end(bytes, base, off).is_none_or(|e| e > w_end)) {
                    break;
                }
                if at_lsn >= *lsn && !room() {
                    *lsn = at_lsn;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// Where the record at segment offset `off` ends, when the window `bytes`
/// (at segment offset `base`) holds its header; its length is not checked
/// beyond the largest a record may have.
#[inline]
fn record_end(bytes: &[u8], base: u64, off: u64) -> Option<u64> {
    let rel = usize::try_from(off.checked_sub(base)?).ok()?;
    let h = bytes.get(rel..rel.checked_add(format::RECORD_HEADER_LEN)?)?;
    Some(off + format::record_size((format::read_header(h).len as usize).min(format::MAX_STORED_LEN)) as u64)
}

/// A record's header and its payload, lent from the image or decrypted.
type Decoded<'a> = (RecordHeader, Cow<'a, [u8]>);

/// Checks the record at `off` of `img` (expected LSN `lsn`) and, when `take`,
/// decodes it (decrypting with `cipher`). Returns the record and its size.
/// `img[0]` is at segment offset `base`; `off` and `end` are segment offsets.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn decode<'a>(
    name: &str,
    img: &'a [u8],
    base: u64,
    off: u64,
    end: u64,
    seed: u32,
    lsn: u64,
    cipher: Option<&SegmentCipher>,
    take: bool,
    verify_crc: bool,
) -> Result<(Option<Decoded<'a>>, u64)> {
    let (h, payload) = format::check_record_in(img, base, off, end, seed, Some(lsn), verify_crc).map_err(|fault| {
        WalError::Corruption { segment: name.to_owned(), offset: off, lsn, kind: CorruptionKind::Record(fault) }
    })?;
    let size = format::record_size(h.len as usize) as u64;
    if !take {
        return Ok((None, size));
    }
    // I11: in an encrypted segment every record is encrypted and authentic;
    // in a plain one none may claim to be.
    let auth_failed = || WalError::AuthenticationFailed { segment: name.to_owned(), offset: off, lsn };
    let encrypted = h.fields.flags & format::FLAG_ENCRYPTED != 0;
    if encrypted != cipher.is_some() {
        return Err(auth_failed());
    }
    let payload = match cipher {
        Some(c) => Cow::Owned(c.open(&h.fields, &img[payload]).ok_or_else(auth_failed)?),
        None => Cow::Borrowed(&img[payload]),
    };
    let header = RecordHeader {
        lsn,
        record_type: h.fields.record_type,
        tenant_id: h.fields.tenant_id,
        vshard_id: h.fields.vshard_id,
        flags: h.fields.flags,
        payload_len: h.len,
    };
    Ok((Some((header, payload)), size))
}
