//! Encode and decode of everything directwal puts on disk. docs/FORMAT.md is
//! the normative description; the constants here carry the same names as its
//! byte tables.
//!
//! A segment file is:
//! ```text
//! block 0              segment header (SEGMENT_HEADER_LEN meaningful bytes, rest zero)
//! block 1              seal block (all zero until the segment is sealed)
//! block 2 ..           records, back to back, each padded to RECORD_ALIGN
//! ```
//! All integers are little-endian.

mod record;
pub use record::{
    RecordFault, RecordFields, check_header, check_record, check_record_in, encode_record, encode_record_with,
    read_header,
};

/// Magic at offset 0 of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"DWALSEG\0";
/// Magic at offset 0 of a written seal block.
pub const SEAL_MAGIC: [u8; 8] = *b"DWALSEAL";
/// Highest readable format version. Version 2 added the header's `flags`
/// byte, version 3 its `encryption_off` bit, version 4 the writer's promise
/// of a durable reserve past the data (DESIGN I26) and the keyed MAC of an
/// `encryption_off` header (I11); older segments stay readable. Every new
/// header is version 4 (`SegmentHeader::version_needed`).
pub const FORMAT_VERSION: u16 = 4;

/// First format version whose writer keeps, in an unsealed segment, at least
/// one durable block of prepared space past every data write (DESIGN I26):
/// such a file that ends less than a block past the block holding the end
/// of its valid data was cut.
pub const RESERVE_VERSION: u16 = 4;

/// Header flag: the segment file is a recycled one, so the space past its
/// data may hold stale bytes of an older segment (never valid here: I17).
pub const HEADER_FLAG_RECYCLED: u8 = 1 << 0;
/// Header flag (version 3 on): a plain segment started by an explicit
/// `disable_encryption` after encrypted ones (DESIGN I11). Without it, a
/// plain segment after encrypted ones is an unexplained downgrade.
pub const HEADER_FLAG_ENCRYPTION_OFF: u8 = 1 << 1;
/// Bytes of the header MAC of an `encryption_off` header (version 4 on,
/// DESIGN I11): HMAC-SHA256.
pub const HEADER_MAC_LEN: usize = 32;
/// Every header flag this build knows.
pub const KNOWN_HEADER_FLAGS: u8 = HEADER_FLAG_RECYCLED | HEADER_FLAG_ENCRYPTION_OFF;

/// The largest LSN ever handed out (I20): the LSN after it, `u64::MAX`, is
/// still representable, so `lsn + 1` never wraps for a valid record. A
/// segment cannot start above it, and no record carries a larger one.
pub const MAX_LSN: u64 = u64::MAX - 1;

/// Meaningful bytes of the segment header block; the CRC is the last 4.
pub const SEGMENT_HEADER_LEN: usize = 128;
/// Meaningful bytes of the seal block; the CRC is the last 4.
pub const SEAL_LEN: usize = 64;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 32;
/// Records start at multiples of this many bytes (so recovery can search for
/// a record after damage without trying every byte offset).
pub const RECORD_ALIGN: usize = 8;
/// Largest payload accepted by `append`: 64 MiB.
pub const MAX_PAYLOAD_SIZE: usize = 64 << 20;
/// Largest payload length on disk: an encrypted payload carries a 16-byte tag.
pub const MAX_STORED_LEN: usize = MAX_PAYLOAD_SIZE + 16; // crypto::TAG_LEN, asserted below
/// Largest `segment_target_size` honoured; larger values are clamped so that
/// every in-segment offset fits the 32-bit `epoch_start` field.
pub const MAX_SEGMENT_TARGET_SIZE: u64 = 1 << 30;

/// Record flag: the payload is AES-256-GCM ciphertext followed by its tag.
pub const FLAG_ENCRYPTED: u16 = 1 << 0;
/// All flags this build knows; a record with other bits set is invalid.
pub const KNOWN_FLAGS: u16 = FLAG_ENCRYPTED;

// Segment header field offsets (docs/FORMAT.md, "Segment header").
const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_HEADER_LEN: usize = 10;
const H_BLOCK_SIZE: usize = 12;
const H_WAL_ID: usize = 16;
const H_SALT: usize = 32;
const H_FIRST_LSN: usize = 48;
const H_CIPHER: usize = 56;
const H_FLAGS: usize = 57;
const H_KEY_ID: usize = 60;
const H_CREATED_MS: usize = 64;
const H_MAC: usize = 72;
const H_MAC_KEY_ID: usize = H_MAC + HEADER_MAC_LEN;
const H_CRC: usize = SEGMENT_HEADER_LEN - 4;

// Seal block field offsets (docs/FORMAT.md, "Seal block").
const S_MAGIC: usize = 0;
const S_LAST_LSN: usize = 8;
const S_RECORDS: usize = 16;
const S_DATA_END: usize = 24;
const S_SEALED_MS: usize = 32;
const S_CRC: usize = SEAL_LEN - 4;

// Record header field offsets (docs/FORMAT.md, "Record header").
const R_CRC: usize = 0;
const R_LEN: usize = 4;
const R_LSN: usize = 8;
const R_EPOCH_START: usize = 16;
const R_TENANT: usize = 20;
const R_TYPE: usize = 24;
const R_VSHARD: usize = 26;
const R_FLAGS: usize = 28;

/// Smallest block size a segment header may declare.
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Largest block size a segment header may declare.
pub const MAX_BLOCK_SIZE: u32 = 65536;

/// The one rule for a block size (the configured alignment, and the one a
/// header records): a power of two from `MIN_BLOCK_SIZE` to `MAX_BLOCK_SIZE`.
pub fn valid_block_size(n: u64) -> bool {
    (u64::from(MIN_BLOCK_SIZE)..=u64::from(MAX_BLOCK_SIZE)).contains(&n) && n.is_power_of_two()
}

// The layout constants, tied together at compile time: a change to one that
// breaks another does not build.
const _: () = {
    // The segment header: fields in order, all before the CRC (the last 4
    // bytes), and the header fits the smallest block.
    assert!(H_MAGIC + 8 <= H_VERSION && H_VERSION + 2 <= H_HEADER_LEN && H_HEADER_LEN + 2 <= H_BLOCK_SIZE);
    assert!(H_BLOCK_SIZE + 4 <= H_WAL_ID && H_WAL_ID + 16 <= H_SALT && H_SALT + 16 <= H_FIRST_LSN);
    assert!(H_FIRST_LSN + 8 <= H_CIPHER && H_CIPHER < H_FLAGS && H_FLAGS < H_KEY_ID && H_KEY_ID + 4 <= H_CREATED_MS);
    assert!(H_CREATED_MS + 8 <= H_MAC && H_MAC + HEADER_MAC_LEN <= H_MAC_KEY_ID && H_MAC_KEY_ID + 4 <= H_CRC);
    assert!(H_CRC + 4 == SEGMENT_HEADER_LEN);
    assert!(SEGMENT_HEADER_LEN <= MIN_BLOCK_SIZE as usize);
    // The seal block: the same, in block 1.
    assert!(S_MAGIC + 8 <= S_LAST_LSN && S_LAST_LSN + 8 <= S_RECORDS && S_RECORDS + 8 <= S_DATA_END);
    assert!(S_DATA_END + 8 <= S_SEALED_MS && S_SEALED_MS + 8 <= S_CRC && S_CRC + 4 == SEAL_LEN);
    assert!(SEAL_LEN <= MIN_BLOCK_SIZE as usize);
    // The record header: the CRC first, the fields it covers from R_LEN on,
    // then the two reserved zero bytes that end the header.
    assert!(R_CRC + 4 <= R_LEN && R_LEN + 4 <= R_LSN && R_LSN + 8 <= R_EPOCH_START);
    assert!(R_EPOCH_START + 4 <= R_TENANT && R_TENANT + 4 <= R_TYPE && R_TYPE + 2 <= R_VSHARD);
    assert!(R_VSHARD + 2 <= R_FLAGS && R_FLAGS + 4 == RECORD_HEADER_LEN);
    // Records start aligned: the data start is a multiple of RECORD_ALIGN
    // and so is every record's size.
    assert!(RECORD_ALIGN.is_power_of_two() && RECORD_HEADER_LEN.is_multiple_of(RECORD_ALIGN));
    assert!((MIN_BLOCK_SIZE as usize).is_multiple_of(RECORD_ALIGN));
    assert!(MIN_BLOCK_SIZE.is_power_of_two() && MAX_BLOCK_SIZE.is_power_of_two() && MIN_BLOCK_SIZE <= MAX_BLOCK_SIZE);
    // A stored payload is the payload and, when encrypted, its tag; its
    // length fits the header's 32-bit field.
    assert!(MAX_STORED_LEN == MAX_PAYLOAD_SIZE + crate::crypto::TAG_LEN);
    assert!(record_size(MAX_STORED_LEN) <= u32::MAX as usize);
    // Every offset in a segment fits the 32-bit `epoch_start` (I5): a
    // segment grows past its target by at most one record.
    assert!(
        data_start(MAX_BLOCK_SIZE as usize) + MAX_SEGMENT_TARGET_SIZE + record_size(MAX_STORED_LEN) as u64
            <= u32::MAX as u64
    );
};

/// Offset of the first record in a segment with the given block size.
#[inline]
pub const fn data_start(block_size: usize) -> u64 {
    2 * block_size as u64
}

/// Bytes a record with `payload_len` payload bytes occupies on disk.
#[inline]
pub const fn record_size(payload_len: usize) -> usize {
    (RECORD_HEADER_LEN + payload_len).next_multiple_of(RECORD_ALIGN)
}

#[inline]
fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
#[inline]
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
#[inline]
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
#[inline]
fn u128_at(b: &[u8], o: usize) -> u128 {
    u128::from_le_bytes(b[o..o + 16].try_into().expect("16 bytes"))
}

/// Cipher recorded in a segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// Payloads are stored in plain.
    None,
    /// Payloads are AES-256-GCM ciphertext under the key `key_id`.
    Aes256Gcm {
        /// Stable id of the ring key.
        key_id: u32,
    },
}

/// Decoded segment header (block 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version written.
    pub version: u16,
    /// Alignment unit of the writer; data starts at `2 * block_size`.
    pub block_size: u32,
    /// Random id shared by all segments of one WAL.
    pub wal_id: u128,
    /// Random per-segment salt: seeds every CRC in this segment.
    pub salt: u128,
    /// LSN of the first record (also in the file name).
    pub first_lsn: u64,
    /// Encryption descriptor.
    pub cipher: Cipher,
    /// Wall-clock creation time, for operators.
    pub created_ms: u64,
    /// The file was recycled: stale bytes may follow the data
    /// (`HEADER_FLAG_RECYCLED`; version 2 on).
    pub recycled: bool,
    /// Plain by an explicit `disable_encryption` (`HEADER_FLAG_ENCRYPTION_OFF`;
    /// version 3 on; never set on an encrypted segment).
    pub encryption_off: bool,
    /// The keyed MAC that proves `encryption_off` (version 4 on; None: no
    /// flag, a version 3 header, or written without a key; DESIGN I11).
    pub mac: Option<HeaderMac>,
}

/// The MAC of an `encryption_off` header (docs/FORMAT.md, "Segment header"):
/// HMAC-SHA256 of [`SegmentHeader::mac_input`] under the header-MAC key
/// derived from the ring key `key_id` (`crypto::HeaderMacKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderMac {
    /// Id of the ring key the MAC key was derived from.
    pub key_id: u32,
    /// The MAC; all zero means "none" (never written as a MAC).
    pub tag: [u8; HEADER_MAC_LEN],
}

/// Why a header or seal block was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Too short, bad magic or bad CRC.
    Invalid(&'static str),
    /// Valid magic, but a version this build does not read.
    Version(u16),
}

impl SegmentHeader {
    /// Seed of every CRC in this segment: binds records to WAL and segment.
    pub fn crc_seed(&self) -> u32 {
        let mut ids = [0u8; 32];
        ids[..16].copy_from_slice(&self.wal_id.to_le_bytes());
        ids[16..].copy_from_slice(&self.salt.to_le_bytes());
        crc32c::crc32c(&ids)
    }

    /// The version a new header is written with: 4 for every header, since
    /// the version itself says that its writer keeps the reserve of I26
    /// (nothing in the header's fields changes). Older builds refuse such a
    /// segment with `UnsupportedVersion`, never as damage.
    pub fn version_needed(&self) -> u16 {
        RESERVE_VERSION
    }

    /// Whether the writer of this segment kept a durable block past its
    /// data (DESIGN I26): version 4 on. Older segments keep I22's limit.
    pub fn keeps_reserve(&self) -> bool {
        self.version >= RESERVE_VERSION
    }

    /// I11: the bytes the header MAC covers: the encoded header (bytes
    /// 0..124, the CRC left out) with the MAC field zeroed and its key id
    /// in place. So the MAC binds every field: WAL id, salt, first LSN,
    /// flags, version and the key id it was made with.
    pub fn mac_input(&self) -> [u8; H_CRC] {
        let mut h = self.clone();
        if let Some(mac) = h.mac.as_mut() {
            mac.tag = [0; HEADER_MAC_LEN];
        }
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        h.encode(&mut b);
        b[..H_CRC].try_into().expect("H_CRC bytes")
    }

    /// Writes the header into the first `SEGMENT_HEADER_LEN` bytes of `out`.
    pub fn encode(&self, out: &mut [u8]) {
        let b = &mut out[..SEGMENT_HEADER_LEN];
        b.fill(0);
        b[H_MAGIC..H_MAGIC + 8].copy_from_slice(&SEGMENT_MAGIC);
        b[H_VERSION..H_VERSION + 2].copy_from_slice(&self.version.to_le_bytes());
        b[H_HEADER_LEN..H_HEADER_LEN + 2].copy_from_slice(&(SEGMENT_HEADER_LEN as u16).to_le_bytes());
        b[H_BLOCK_SIZE..H_BLOCK_SIZE + 4].copy_from_slice(&self.block_size.to_le_bytes());
        b[H_WAL_ID..H_WAL_ID + 16].copy_from_slice(&self.wal_id.to_le_bytes());
        b[H_SALT..H_SALT + 16].copy_from_slice(&self.salt.to_le_bytes());
        b[H_FIRST_LSN..H_FIRST_LSN + 8].copy_from_slice(&self.first_lsn.to_le_bytes());
        let (cipher, key_id) = match self.cipher {
            Cipher::None => (0u8, 0u32),
            Cipher::Aes256Gcm { key_id } => (1u8, key_id),
        };
        b[H_CIPHER] = cipher;
        b[H_FLAGS] = if self.recycled { HEADER_FLAG_RECYCLED } else { 0 }
            | if self.encryption_off { HEADER_FLAG_ENCRYPTION_OFF } else { 0 };
        b[H_KEY_ID..H_KEY_ID + 4].copy_from_slice(&key_id.to_le_bytes());
        b[H_CREATED_MS..H_CREATED_MS + 8].copy_from_slice(&self.created_ms.to_le_bytes());
        if let Some(mac) = self.mac.as_ref().filter(|_| self.encryption_off) {
            b[H_MAC..H_MAC + HEADER_MAC_LEN].copy_from_slice(&mac.tag);
            b[H_MAC_KEY_ID..H_MAC_KEY_ID + 4].copy_from_slice(&mac.key_id.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[..H_CRC]);
        b[H_CRC..H_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Parses a header block. Checks magic, CRC, version and field sanity.
    pub fn decode(b: &[u8]) -> Result<Self, HeaderError> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(HeaderError::Invalid("file shorter than a segment header"));
        }
        if b[H_MAGIC..H_MAGIC + 8] != SEGMENT_MAGIC {
            return Err(HeaderError::Invalid("bad segment magic"));
        }
        if crc32c::crc32c(&b[..H_CRC]) != u32_at(b, H_CRC) {
            return Err(HeaderError::Invalid("segment header CRC mismatch"));
        }
        let version = u16_at(b, H_VERSION);
        if version == 0 || version > FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        if u16_at(b, H_HEADER_LEN) as usize != SEGMENT_HEADER_LEN {
            return Err(HeaderError::Invalid("unexpected segment header length"));
        }
        let block_size = u32_at(b, H_BLOCK_SIZE);
        if !valid_block_size(u64::from(block_size)) {
            return Err(HeaderError::Invalid("block size out of range"));
        }
        let cipher = match b[H_CIPHER] {
            0 => Cipher::None,
            1 => Cipher::Aes256Gcm { key_id: u32_at(b, H_KEY_ID) },
            _ => return Err(HeaderError::Invalid("unknown cipher")),
        };
        // Version 1 wrote this byte as reserved zero.
        let flags = b[H_FLAGS];
        if flags & !KNOWN_HEADER_FLAGS != 0
            || (version < 2 && flags != 0)
            || (version < 3 && flags & HEADER_FLAG_ENCRYPTION_OFF != 0)
        {
            return Err(HeaderError::Invalid("unknown header flags"));
        }
        let encryption_off = flags & HEADER_FLAG_ENCRYPTION_OFF != 0;
        if encryption_off && cipher != Cipher::None {
            return Err(HeaderError::Invalid("encrypted segment flagged as plain"));
        }
        let first_lsn = u64_at(b, H_FIRST_LSN);
        if first_lsn == 0 {
            return Err(HeaderError::Invalid("first LSN is zero"));
        }
        // I20: a segment starting above MAX_LSN could hold no record; the
        // writer never creates one.
        if first_lsn > MAX_LSN {
            return Err(HeaderError::Invalid("first LSN leaves no room for a record"));
        }
        Ok(SegmentHeader {
            version,
            block_size,
            wal_id: u128_at(b, H_WAL_ID),
            salt: u128_at(b, H_SALT),
            first_lsn,
            cipher,
            created_ms: u64_at(b, H_CREATED_MS),
            recycled: flags & HEADER_FLAG_RECYCLED != 0,
            encryption_off,
            mac: decode_mac(b, version, encryption_off),
        })
    }
}

/// The MAC field of a version 4 `encryption_off` header; None when absent
/// (older versions, no flag, or an all-zero field: written without a key).
fn decode_mac(b: &[u8], version: u16, encryption_off: bool) -> Option<HeaderMac> {
    let tag: [u8; HEADER_MAC_LEN] = b[H_MAC..H_MAC + HEADER_MAC_LEN].try_into().expect("32 bytes");
    (version >= 4 && encryption_off && tag != [0; HEADER_MAC_LEN])
        .then(|| HeaderMac { key_id: u32_at(b, H_MAC_KEY_ID), tag })
}

/// Decoded seal block (block 1): written once the segment will never grow again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// LSN of the last record (`first_lsn - 1` for a segment without records).
    pub last_lsn: u64,
    /// Number of records.
    pub records: u64,
    /// Offset just past the last record; readers stop here.
    pub data_end: u64,
    /// Wall-clock sealing time, for operators.
    pub sealed_ms: u64,
}

impl Seal {
    /// Writes the seal into the first `SEAL_LEN` bytes of `out`, CRC seeded by the segment.
    pub fn encode(&self, seed: u32, out: &mut [u8]) {
        let b = &mut out[..SEAL_LEN];
        b.fill(0);
        b[S_MAGIC..S_MAGIC + 8].copy_from_slice(&SEAL_MAGIC);
        b[S_LAST_LSN..S_LAST_LSN + 8].copy_from_slice(&self.last_lsn.to_le_bytes());
        b[S_RECORDS..S_RECORDS + 8].copy_from_slice(&self.records.to_le_bytes());
        b[S_DATA_END..S_DATA_END + 8].copy_from_slice(&self.data_end.to_le_bytes());
        b[S_SEALED_MS..S_SEALED_MS + 8].copy_from_slice(&self.sealed_ms.to_le_bytes());
        let crc = crc32c::crc32c_append(seed, &b[..S_CRC]);
        b[S_CRC..S_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// `Ok(None)` when the block is all zero (not sealed); an error when it is
    /// neither zero nor a valid seal of this segment.
    pub fn decode(seed: u32, b: &[u8]) -> Result<Option<Self>, HeaderError> {
        if b.len() < SEAL_LEN {
            return Err(HeaderError::Invalid("file shorter than a seal block"));
        }
        let b = &b[..SEAL_LEN];
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        if b[S_MAGIC..S_MAGIC + 8] != SEAL_MAGIC {
            return Err(HeaderError::Invalid("bad seal magic"));
        }
        if crc32c::crc32c_append(seed, &b[..S_CRC]) != u32_at(b, S_CRC) {
            return Err(HeaderError::Invalid("seal CRC mismatch"));
        }
        Ok(Some(Seal {
            last_lsn: u64_at(b, S_LAST_LSN),
            records: u64_at(b, S_RECORDS),
            data_end: u64_at(b, S_DATA_END),
            sealed_ms: u64_at(b, S_SEALED_MS),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            version: FORMAT_VERSION,
            block_size: 4096,
            wal_id: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
            salt: 0xfeed_beef,
            first_lsn: 42,
            cipher: Cipher::None,
            created_ms: 7,
            recycled: false,
            encryption_off: false,
            mac: None,
        }
    }

    #[test]
    fn recycled_flag_round_trips_and_version_1_headers_still_read() {
        let mut h = header();
        h.recycled = true;
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Ok(h.clone()));
        // A version 1 header (reserved byte 57 zero) reads as not recycled.
        h.version = 1;
        h.recycled = false;
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Ok(h.clone()));
        // Version 1 knew no flags; unknown bits are refused in any version.
        for (version, flags) in [(1u16, HEADER_FLAG_RECYCLED), (2, 0x80)] {
            h.version = version;
            h.encode(&mut b);
            b[H_FLAGS] = flags;
            let crc = crc32c::crc32c(&b[..H_CRC]);
            b[H_CRC..].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(SegmentHeader::decode(&b), Err(HeaderError::Invalid("unknown header flags")), "v{version}");
        }
    }

    #[test]
    fn encryption_off_needs_version_3_and_a_plain_segment() {
        let mut h = header();
        h.encryption_off = true;
        h.version = h.version_needed();
        assert_eq!((h.version, header().version_needed()), (4, 4));
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Ok(h.clone()), "no MAC: the field stays zero");
        // Version 4: the MAC and its key id round-trip, and the MAC input
        // is the header with the MAC zeroed (and nothing else changed).
        h.mac = Some(HeaderMac { key_id: 0xabcd, tag: [7; HEADER_MAC_LEN] });
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Ok(h.clone()));
        assert_eq!(&b[H_MAC_KEY_ID..H_MAC_KEY_ID + 4], &0xabcd_u32.to_le_bytes());
        let input = h.mac_input();
        assert_eq!(input[H_MAC..H_MAC + HEADER_MAC_LEN], [0; HEADER_MAC_LEN]);
        assert_eq!((&input[..H_MAC], &input[H_MAC_KEY_ID..]), (&b[..H_MAC], &b[H_MAC_KEY_ID..H_CRC]));
        // Version 3 had no MAC: the same bytes there are not read as one.
        h.version = 3;
        h.encode(&mut b);
        h.mac = None;
        assert_eq!(SegmentHeader::decode(&b), Ok(h.clone()));
        // A version 2 reader's view: the bit is unknown there.
        h.version = 2;
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Err(HeaderError::Invalid("unknown header flags")));
        h.version = 3;
        h.cipher = Cipher::Aes256Gcm { key_id: 9 };
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Err(HeaderError::Invalid("encrypted segment flagged as plain")));
    }

    #[test]
    fn a_first_lsn_without_room_for_a_record_is_refused() {
        let mut h = header();
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        h.first_lsn = MAX_LSN;
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b).map(|h| h.first_lsn), Ok(MAX_LSN));
        h.first_lsn = u64::MAX;
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Err(HeaderError::Invalid("first LSN leaves no room for a record")));
    }

    #[test]
    fn segment_header_round_trips_and_rejects_any_flipped_byte() {
        let h = header();
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut c = b;
            c[i] ^= 0x40;
            assert!(SegmentHeader::decode(&c).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn newer_version_is_reported_as_version_error() {
        let mut h = header();
        h.version = FORMAT_VERSION + 1;
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Err(HeaderError::Version(FORMAT_VERSION + 1)));
    }

    #[test]
    fn seal_round_trips_zero_means_unsealed_and_other_segments_seal_fails() {
        let seal = Seal { last_lsn: 9, records: 3, data_end: 8192 + 480, sealed_ms: 1 };
        let mut b = [0u8; SEAL_LEN];
        assert_eq!(Seal::decode(5, &b), Ok(None));
        seal.encode(5, &mut b);
        assert_eq!(Seal::decode(5, &b), Ok(Some(seal)));
        assert!(Seal::decode(6, &b).is_err());
    }

    #[test]
    fn record_round_trips_and_salt_binds_it_to_its_segment() {
        let f = RecordFields { lsn: 5, epoch_start: 8192, tenant_id: 3, record_type: 2, vshard_id: 9, flags: 0 };
        let payload = b"hello world";
        let mut seg = vec![0u8; 8192 + record_size(payload.len())];
        encode_record(77, &f, payload, &mut seg[8192..]);
        let end = seg.len() as u64;
        let (h, range) = check_record(&seg, 8192, end, 77, Some(5)).unwrap();
        assert_eq!(h.fields, f);
        assert_eq!(&seg[range], payload);
        assert_eq!(check_record(&seg, 8192, end, 78, Some(5)), Err(RecordFault::BadCrc));
        assert_eq!(check_record(&seg, 8192, end, 77, Some(6)), Err(RecordFault::LsnMismatch(5)));
        assert_eq!(check_record(&seg, 8192, end - 8, 77, None), Err(RecordFault::Truncated));
        // I20: a record claiming the LSN after MAX_LSN never validates.
        let f = RecordFields { lsn: u64::MAX, ..f };
        encode_record(77, &f, payload, &mut seg[8192..]);
        let lsn_fault = RecordFault::BadField("LSN beyond the largest");
        assert_eq!(check_record(&seg, 8192, end, 77, Some(u64::MAX)), Err(lsn_fault));
    }

    #[test]
    fn huge_length_field_is_rejected_without_allocating() {
        let mut seg = vec![0u8; 8192 + 64];
        seg[8192 + R_LEN..8192 + R_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        seg[8192 + R_LSN] = 1;
        assert_eq!(check_record(&seg, 8192, seg.len() as u64, 0, None), Err(RecordFault::BadField("payload length")));
    }
}
