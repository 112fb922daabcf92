//! Segment naming and discovery.
//!
//! A segment is `wal-{first_lsn:020}.seg` (docs/FORMAT.md): lexical order is LSN order.
//! A segment under construction is `wal-{first_lsn:020}.seg.tmp` and only
//! becomes visible under its final name once its header is durable (I2).
//! A truncated segment kept for reuse is `spare-{n:020}` (I17): not part of
//! the log, its bytes never valid in any segment.

use std::path::{Path, PathBuf};

use crate::error::{Result, WalError};
use crate::format::{Cipher, HeaderError, Seal, SegmentHeader};
use crate::io::Storage;

const PREFIX: &str = "wal-";
const SUFFIX: &str = ".seg";
/// Suffix of a segment being prepared; such files are deleted at open.
pub const TMP_SUFFIX: &str = ".tmp";
const SPARE_PREFIX: &str = "spare-";
/// Infix of a newest segment that tolerant recovery set aside (I24).
const ASIDE_INFIX: &str = ".aside-";

/// What a directory entry's name makes it (I2, I17, I21, I24). Anything
/// else in the directory is not the WAL's and is never touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// `wal-{lsn:020}.seg`: a segment of the log.
    Segment(u64),
    /// `wal-{lsn:020}.seg.tmp`: a segment being created (I2).
    Temp(u64),
    /// `spare-{n:020}`: a file kept for recycling (I17).
    Spare,
    /// `wal-{lsn:020}.seg.aside-{k}`: set aside by tolerant recovery (I24).
    Aside,
}

/// The kind of WAL file `name` is, if it is one.
pub fn classify(name: &str) -> Option<NameKind> {
    if let Some(lsn) = parse_segment_name(name) {
        Some(NameKind::Segment(lsn))
    } else if let Some(lsn) = name.strip_suffix(TMP_SUFFIX).and_then(parse_segment_name) {
        Some(NameKind::Temp(lsn))
    } else if is_spare_name(name) {
        Some(NameKind::Spare)
    } else {
        let (seg, k) = name.split_once(ASIDE_INFIX)?;
        let numbered = !k.is_empty() && k.len() <= 20 && k.bytes().all(|b| b.is_ascii_digit());
        (numbered && parse_segment_name(seg).is_some()).then_some(NameKind::Aside)
    }
}

/// The `k`-th name under which the segment named `segment` may be set aside (I24).
pub fn aside_file_name(segment: &str, k: u32) -> String {
    format!("{segment}{ASIDE_INFIX}{k}")
}

/// The first LSN in the name of a set-aside segment (`wal-{lsn:020}.seg.aside-{k}`), if `name` is one.
pub fn aside_first_lsn(name: &str) -> Option<u64> {
    let (seg, _) = name.split_once(ASIDE_INFIX)?;
    (classify(name) == Some(NameKind::Aside)).then(|| parse_segment_name(seg)).flatten()
}

/// File name of a spare (recycled) file, numbered by the first LSN of the
/// segment it was.
pub fn spare_file_name(n: u64) -> String {
    format!("{SPARE_PREFIX}{n:020}")
}

fn is_spare_name(name: &str) -> bool {
    name.strip_prefix(SPARE_PREFIX).is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// File name of the segment starting at `first_lsn`.
pub fn segment_file_name(first_lsn: u64) -> String {
    format!("{PREFIX}{first_lsn:020}{SUFFIX}")
}

/// The first LSN encoded in a segment file name, if `name` is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&lsn| lsn > 0)
}

/// Description of one segment, as returned by `list_segments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Full path of the segment file.
    pub path: PathBuf,
    /// LSN of the first record (from the file name).
    pub first_lsn: u64,
    /// LSN of the last durable record; `first_lsn - 1` when it holds none.
    pub last_lsn: u64,
    /// Number of durable records.
    pub record_count: u64,
    /// Size of the file on disk (including prepared, not yet used space).
    pub file_size: u64,
    /// Bytes of header blocks and records actually used.
    pub used_bytes: u64,
    /// True for every segment but the active one.
    pub sealed: bool,
    /// Key id of the encryption key, for encrypted segments.
    pub key_id: Option<u32>,
}

/// Bytes from the start of a segment that hold its header and seal blocks
/// whatever the block size (at most 64 KiB each).
pub const HEAD_BYTES: usize = 2 * crate::format::MAX_BLOCK_SIZE as usize;

/// The header and seal blocks of a segment, and the file's length: one small
/// read instead of touching the file through a mapping, whose first fault
/// would read ahead far more than two blocks (open reads every segment).
pub fn read_head(storage: &dyn Storage, path: &Path) -> Result<(Vec<u8>, u64)> {
    let head = storage.read_range(path, 0, HEAD_BYTES, false).map_err(|e| WalError::io("read", path, e))?;
    let len = if head.len() < HEAD_BYTES {
        head.len() as u64
    } else {
        storage.file_len(path).map_err(|e| WalError::io("stat", path, e))?
    };
    Ok((head, len))
}

/// Whether `path` still holds the segment whose header is `header` (same
/// salt). False once a writer truncated it: the file is gone, or was
/// recycled into a newer segment (I17). An error other than "not found"
/// proves nothing, so it counts as the same file.
pub fn still_holds(storage: &dyn Storage, path: &Path, header: &SegmentHeader) -> bool {
    match storage.read_range(path, 0, HEAD_BYTES, false) {
        Ok(head) => SegmentHeader::decode(&head).is_ok_and(|h| h.salt == header.salt),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Decodes header and seal of a segment image, mapping failures to typed
/// errors. The seal's error is returned separately: recovery tolerates an
/// unreadable seal on the newest segment (a seal write torn by a crash).
pub fn read_header_and_seal(name: &str, img: &[u8]) -> Result<(SegmentHeader, Result<Option<Seal>>)> {
    let header = SegmentHeader::decode(img).map_err(|e| header_error(name, 0, e))?;
    let bs = header.block_size as usize;
    let seal_block = img.get(bs..).unwrap_or(&[]);
    let seal = Seal::decode(header.crc_seed(), seal_block).map_err(|e| header_error(name, bs as u64, e));
    Ok((header, seal))
}

fn header_error(name: &str, offset: u64, e: HeaderError) -> WalError {
    match e {
        HeaderError::Version(version) => {
            WalError::UnsupportedVersion { segment: name.to_owned(), version, supported: crate::format::FORMAT_VERSION }
        }
        HeaderError::Invalid(reason) => WalError::Corruption {
            segment: name.to_owned(),
            offset,
            lsn: parse_segment_name(name).unwrap_or(0),
            kind: crate::error::CorruptionKind::Block(reason),
        },
    }
}

/// Key id recorded in a header, if the segment is encrypted.
pub fn key_id(header: &SegmentHeader) -> Option<u32> {
    match header.cipher {
        Cipher::None => None,
        Cipher::Aes256Gcm { key_id } => Some(key_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_lsn_and_parse_back() {
        assert_eq!(segment_file_name(1), "wal-00000000000000000001.seg");
        for lsn in [1u64, 42, u64::MAX] {
            assert_eq!(parse_segment_name(&segment_file_name(lsn)), Some(lsn));
        }
        assert!(segment_file_name(9) < segment_file_name(10));
        for bad in ["wal-1.seg", "wal-0000000000000000000x.seg", "wal-00000000000000000000.seg", "x.seg"] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
        // Spares are never taken for segments, and vice versa.
        assert!(is_spare_name(&spare_file_name(7)));
        assert_eq!(parse_segment_name(&spare_file_name(7)), None);
        assert!(!is_spare_name(&segment_file_name(7)) && !is_spare_name("spare-7"));
        // I21: only the WAL's own names are classified.
        let seg = segment_file_name(7);
        assert_eq!(classify(&seg), Some(NameKind::Segment(7)));
        assert_eq!(classify(&format!("{seg}.tmp")), Some(NameKind::Temp(7)));
        assert_eq!(classify(&aside_file_name(&seg, 1)), Some(NameKind::Aside));
        for foreign in ["wal-notes.tmp", "wal-7.seg.tmp", "LOCK", "wal-00000000000000000007.seg.aside-", "x.aside-1"] {
            assert_eq!(classify(foreign), None, "{foreign}");
        }
    }
}
