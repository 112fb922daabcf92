//! Records on disk: the record header's fields, encoding a record into a
//! segment's bytes and checking one read back (docs/FORMAT.md, "Record
//! header"). The field offsets (`R_*`) live with the other layout constants
//! in the parent module, where they are asserted together.

use super::{
    KNOWN_FLAGS, MAX_LSN, MAX_STORED_LEN, R_CRC, R_EPOCH_START, R_FLAGS, R_LEN, R_LSN, R_TENANT, R_TYPE, R_VSHARD,
    RECORD_HEADER_LEN, record_size, u16_at, u32_at, u64_at,
};

/// Plain fields of a record header (the CRC and length are derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordFields {
    /// Log sequence number.
    pub lsn: u64,
    /// Offset in the segment where this record's sync epoch began: every
    /// byte before it was made durable before this record was written
    /// (DESIGN I5).
    pub epoch_start: u32,
    /// Caller-defined tenant.
    pub tenant_id: u32,
    /// Caller-defined record type.
    pub record_type: u16,
    /// Caller-defined virtual shard.
    pub vshard_id: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
}

/// Encodes header + payload + zero padding into `out`, which must be exactly
/// `record_size(payload.len())` bytes.
pub fn encode_record(seed: u32, f: &RecordFields, payload: &[u8], out: &mut [u8]) {
    encode_record_with(seed, f, payload.len(), out, |body| body.copy_from_slice(payload));
}

/// Encodes a record whose `stored_len` payload bytes are written by `fill`
/// (which may encrypt in place) before the CRC is computed over them.
pub fn encode_record_with(
    seed: u32,
    f: &RecordFields,
    stored_len: usize,
    out: &mut [u8],
    fill: impl FnOnce(&mut [u8]),
) {
    debug_assert_eq!(out.len(), record_size(stored_len));
    let (h, rest) = out.split_at_mut(RECORD_HEADER_LEN);
    let len = u32::try_from(stored_len).expect("a stored length is at most MAX_STORED_LEN");
    h[R_LEN..R_LEN + 4].copy_from_slice(&len.to_le_bytes());
    h[R_LSN..R_LSN + 8].copy_from_slice(&f.lsn.to_le_bytes());
    h[R_EPOCH_START..R_EPOCH_START + 4].copy_from_slice(&f.epoch_start.to_le_bytes());
    h[R_TENANT..R_TENANT + 4].copy_from_slice(&f.tenant_id.to_le_bytes());
    h[R_TYPE..R_TYPE + 2].copy_from_slice(&f.record_type.to_le_bytes());
    h[R_VSHARD..R_VSHARD + 2].copy_from_slice(&f.vshard_id.to_le_bytes());
    h[R_FLAGS..R_FLAGS + 2].copy_from_slice(&f.flags.to_le_bytes());
    h[R_FLAGS + 2..RECORD_HEADER_LEN].fill(0);
    let (body, pad) = rest.split_at_mut(stored_len);
    fill(body);
    pad.fill(0);
    // The CRC covers header bytes from R_LEN on and the payload, which are
    // contiguous: one pass.
    let crc = crc32c::crc32c_append(seed, &out[R_LEN..RECORD_HEADER_LEN + stored_len]);
    out[R_CRC..R_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A record header read from disk, not yet validated against its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// Stored CRC.
    pub crc: u32,
    /// Payload length.
    pub len: u32,
    /// The other fields.
    pub fields: RecordFields,
}

/// Reads a header from the first `RECORD_HEADER_LEN` bytes of `b`.
#[inline]
pub fn read_header(b: &[u8]) -> RawHeader {
    RawHeader {
        crc: u32_at(b, R_CRC),
        len: u32_at(b, R_LEN),
        fields: RecordFields {
            lsn: u64_at(b, R_LSN),
            epoch_start: u32_at(b, R_EPOCH_START),
            tenant_id: u32_at(b, R_TENANT),
            record_type: u16_at(b, R_TYPE),
            vshard_id: u16_at(b, R_VSHARD),
            flags: u16_at(b, R_FLAGS),
        },
    }
}

/// Why the bytes at an offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordFault {
    /// Fewer bytes remain than a header.
    Truncated,
    /// The header is all zero (never written).
    Zero,
    /// A header field is impossible (length, flags, reserved bytes, epoch start).
    BadField(&'static str),
    /// The LSN is not the one expected here.
    LsnMismatch(u64),
    /// The CRC does not match.
    BadCrc,
}

impl RecordFault {
    /// Human-readable reason, for `Corruption` and logs.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl std::fmt::Display for RecordFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordFault::Truncated => f.write_str("record cut short by the end of the data"),
            RecordFault::Zero => f.write_str("zeroed record header"),
            RecordFault::BadField(field) => write!(f, "impossible header field: {field}"),
            RecordFault::LsnMismatch(found) => write!(f, "record carries LSN {found}"),
            RecordFault::BadCrc => f.write_str("record CRC mismatch"),
        }
    }
}

/// Reads the record header `hb` (at least `RECORD_HEADER_LEN` bytes) of a
/// record at segment offset `offset` and checks its fields alone: not all
/// zero, a possible length, known flags, zero reserved bytes, an epoch start
/// not past the record (I5), an LSN at most `MAX_LSN` (I20). The payload and
/// CRC are not looked at. The one home of these rules: [`check_record_in`]
/// and the reserve check of a cut inside a record (I26) call it.
#[inline(always)]
pub fn check_header(hb: &[u8], offset: u64) -> Result<RawHeader, RecordFault> {
    let hb = hb.get(..RECORD_HEADER_LEN).ok_or(RecordFault::Truncated)?;
    if hb.iter().all(|&x| x == 0) {
        return Err(RecordFault::Zero);
    }
    let h = read_header(hb);
    if h.len as usize > MAX_STORED_LEN {
        return Err(RecordFault::BadField("payload length"));
    }
    if h.fields.flags & !KNOWN_FLAGS != 0 {
        return Err(RecordFault::BadField("flags"));
    }
    if hb[R_FLAGS + 2..RECORD_HEADER_LEN] != [0, 0] {
        return Err(RecordFault::BadField("reserved"));
    }
    if h.fields.epoch_start as u64 > offset {
        return Err(RecordFault::BadField("epoch start beyond record"));
    }
    // I20: no valid record carries an LSN whose successor would wrap.
    if h.fields.lsn > MAX_LSN {
        return Err(RecordFault::BadField("LSN beyond the largest"));
    }
    Ok(h)
}

/// Validates the record at `offset` of `seg` (the whole segment image; bytes
/// past `end` are ignored). On success returns the header and the payload
/// range; the payload is never longer than the bytes actually present
/// (DESIGN I10): its length is checked before any arithmetic on it.
pub fn check_record(
    seg: &[u8],
    offset: u64,
    end: u64,
    seed: u32,
    expect_lsn: Option<u64>,
) -> Result<(RawHeader, std::ops::Range<usize>), RecordFault> {
    check_record_in(seg, 0, offset, end, seed, expect_lsn, true)
}

/// [`check_record`] on a window of a segment: `seg[0]` is at segment offset
/// `base`; `offset` and `end` are segment offsets, the returned range indexes
/// `seg`.
#[inline(always)]
pub fn check_record_in(
    seg: &[u8],
    base: u64,
    offset: u64,
    end: u64,
    seed: u32,
    expect_lsn: Option<u64>,
    verify_crc: bool,
) -> Result<(RawHeader, std::ops::Range<usize>), RecordFault> {
    let Some(rel) = offset.checked_sub(base) else { return Err(RecordFault::Truncated) };
    let epoch_check_offset = offset;
    let (offset, end) = (rel, end.saturating_sub(base));
    let end = end.min(seg.len() as u64);
    let o = offset as usize;
    if offset + RECORD_HEADER_LEN as u64 > end {
        return Err(RecordFault::Truncated);
    }
    let h = check_header(&seg[o..o + RECORD_HEADER_LEN], epoch_check_offset)?;
    if let Some(lsn) = expect_lsn
        && h.fields.lsn != lsn
    {
        return Err(RecordFault::LsnMismatch(h.fields.lsn));
    }
    let size = record_size(h.len as usize) as u64;
    if offset + size > end {
        return Err(RecordFault::Truncated);
    }
    let payload = o + RECORD_HEADER_LEN..o + RECORD_HEADER_LEN + h.len as usize;
    // Header from R_LEN on and payload are contiguous: one CRC pass.
    if verify_crc && crc32c::crc32c_append(seed, &seg[o + R_LEN..payload.end]) != h.crc {
        return Err(RecordFault::BadCrc);
    }
    Ok((h, payload))
}
