//! Errors. Every variant that concerns bytes on disk names the segment file,
//! the byte offset inside it and the LSN expected there, so an operator can
//! act on the message alone.

use std::fmt;
use std::io;
use std::path::PathBuf;

pub use crate::format::RecordFault;

/// Result alias used throughout the crate.
pub type Result<T, E = WalError> = std::result::Result<T, E>;

/// Everything that can go wrong in directwal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An operating-system call failed.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// What directwal was doing (`"write"`, `"fdatasync"`, `"open"` …).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The file system is full (ENOSPC / EDQUOT). Nothing acknowledged was
    /// touched and no LSN was consumed; free space and retry (DESIGN I8).
    #[error("out of space during {op} on {}: {source}", path.display())]
    NoSpace {
        /// What directwal was doing.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Durable data is damaged: a record that was already covered by a
    /// completed sync (or lies in a sealed segment) does not validate, or a
    /// segment's header, seal or place in the log is impossible.
    #[error("corruption in {segment} at offset {offset} (LSN {lsn}): {kind}")]
    Corruption {
        /// Segment file name.
        segment: String,
        /// Byte offset of the damaged record (or block) inside the segment file.
        offset: u64,
        /// LSN expected at that offset.
        lsn: u64,
        /// What was wrong.
        kind: CorruptionKind,
    },

    /// A record of the openraft log store (feature `openraft`) does not
    /// decode as the entry, vote or log id its type says. The record itself
    /// is valid (its CRC checks): it was written by something else, such as
    /// a store of another `RaftTypeConfig`.
    #[error("raft store record LSN {lsn} in {segment} (type {record_type:#06x}) does not decode: {source}")]
    RaftDecode {
        /// Segment file name holding the record.
        segment: String,
        /// LSN of the record.
        lsn: u64,
        /// Its record type.
        record_type: u16,
        /// The decoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A value of the openraft log store (feature `openraft`) does not
    /// encode (its `Serialize` failed): nothing was written.
    #[error("raft store record of type {record_type:#06x} does not encode: {source}")]
    RaftEncode {
        /// The record type it was to be written as.
        record_type: u16,
        /// The encoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A record in the openraft log store's WAL has a type the store never
    /// writes.
    #[error("raft store record LSN {lsn} in {segment} has type {record_type:#06x}, not a raft store record")]
    RaftUnknownRecord {
        /// Segment file name holding the record.
        segment: String,
        /// LSN of the record.
        lsn: u64,
        /// Its record type.
        record_type: u16,
    },

    /// A segment file belongs to a different WAL (its WAL id differs).
    #[error("segment {segment} belongs to another WAL (id {found:032x}, expected {expected:032x})")]
    ForeignSegment {
        /// Segment file name.
        segment: String,
        /// WAL id of the directory (from its oldest segment).
        expected: u128,
        /// WAL id found in this segment's header.
        found: u128,
    },

    /// A segment header names a format version this build cannot read
    /// (written by a newer build; docs/FORMAT.md, "Versioning rule").
    #[error("segment {segment} has format version {version}; this build reads up to {supported}")]
    UnsupportedVersion {
        /// Segment file name.
        segment: String,
        /// Version found on disk.
        version: u16,
        /// Highest version this build understands.
        supported: u16,
    },

    /// A segment between two retained segments is missing: a missing prefix
    /// is truncation, a missing middle is lost data (DESIGN I9).
    #[error("segment missing before {segment}: expected first LSN {expected_lsn}, found {found_lsn}")]
    MissingSegment {
        /// The segment after the gap.
        segment: String,
        /// The LSN the missing segment should start with.
        expected_lsn: u64,
        /// The first LSN of the segment after the gap.
        found_lsn: u64,
    },

    /// A directory entry named like a WAL file (segment, segment being
    /// created, spare) is not a regular file: a symlink, directory, FIFO or
    /// socket. It is never followed, opened or skipped (DESIGN I21).
    #[error("{} is named like a WAL file but is a {kind}, not a regular file", path.display())]
    NotRegularFile {
        /// The entry.
        path: PathBuf,
        /// What it is: `symlink`, `directory` or `special file`.
        kind: &'static str,
    },

    /// The payload exceeds [`crate::MAX_PAYLOAD_SIZE`]. No LSN was consumed.
    #[error("payload of {size} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Size of the rejected payload.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// An earlier write or fdatasync failed; the writer refuses all further
    /// appends and syncs until the WAL is reopened (DESIGN I3).
    #[error("WAL is poisoned by an earlier failure and must be reopened: {first_failure}")]
    Poisoned {
        /// The first failure (shared: every later call reports the same one).
        #[source]
        first_failure: std::sync::Arc<WalError>,
    },

    /// O_DIRECT was required (`require_direct_io`) but the file system refuses it.
    #[error("O_DIRECT is not supported for {}", path.display())]
    DirectIoUnsupported {
        /// The file that could not be opened with O_DIRECT.
        path: PathBuf,
    },

    /// The requested LSN has been truncated away; the caller needs a snapshot.
    #[error("LSN {requested} was truncated; the oldest retained LSN is {oldest}")]
    LsnTruncated {
        /// The LSN asked for.
        requested: u64,
        /// The oldest LSN still in the log.
        oldest: u64,
    },

    /// Another process (or another `SegmentedWal` in this one) holds the directory.
    #[error("WAL directory {} is locked by another writer", path.display())]
    Locked {
        /// The WAL directory.
        path: PathBuf,
    },

    /// The record does not authenticate: moved, swapped, spliced, edited, or
    /// decrypted with the wrong key material. Never returned as data (DESIGN I11).
    #[error("authentication failed for LSN {lsn} in {segment} at offset {offset}")]
    AuthenticationFailed {
        /// Segment file name.
        segment: String,
        /// Offset of the record.
        offset: u64,
        /// LSN of the record.
        lsn: u64,
    },

    /// The segment was encrypted with a key the ring does not hold.
    #[error("key {key_id:08x} needed for {segment} (LSN {lsn}) is not in the key ring")]
    UnknownKey {
        /// Id of the missing key.
        key_id: u32,
        /// Segment that needs it.
        segment: String,
        /// First LSN that needs it.
        lsn: u64,
    },

    /// This WAL requires a key (DESIGN I11: fail closed): appends, and
    /// `disable_encryption`, are refused until a key ring holding it is set.
    /// Also after an open of a WAL that turned encryption off while
    /// encrypted segments remain: set the ring, then call
    /// `disable_encryption` again.
    #[error("{}", encryption_required(*key_id))]
    EncryptionRequired {
        /// Key id of the newest encrypted segment; 0 when unknown (a segment
        /// set aside by tolerant recovery may have been encrypted, I11).
        key_id: u32,
    },

    /// A key file could not be used.
    #[error("key file {}: {reason}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },

    /// An encrypted record was met and this WAL has no key ring to decrypt it.
    #[error("record LSN {lsn} in {segment} is encrypted and no key ring is set")]
    KeyRequired {
        /// Segment file name.
        segment: String,
        /// LSN of the record.
        lsn: u64,
    },

    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// Every LSN has been handed out (DESIGN I20): the last record took the
    /// largest LSN, so nothing more can be appended. Nothing was written.
    #[error("LSN space exhausted: LSN {last_lsn} was the last one; no record can follow it")]
    LsnExhausted {
        /// The last LSN handed out (or the one before the next segment's start).
        last_lsn: u64,
    },

    /// The WAL was closed (its last handle dropped) before the operation
    /// could complete; nothing failed.
    #[error("the WAL was closed")]
    Closed,

    /// Durability was awaited for an LSN that was never appended.
    #[error("LSN {lsn} was not appended")]
    LsnNotAppended {
        /// The LSN asked for.
        lsn: u64,
    },

    /// The WAL's directory path no longer names the directory the writer
    /// locked (it was renamed or replaced; DESIGN I25): no file is created or
    /// deleted at that path, and the writer is poisoned. Reopen at the new path.
    #[error("{} is no longer the directory this writer locked (renamed or replaced); reopen the WAL", path.display())]
    DirectoryMoved {
        /// The path the WAL was opened at.
        path: PathBuf,
    },
}

impl WalError {
    /// Wraps an `io::Error`, classifying out-of-space conditions as [`WalError::NoSpace`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => WalError::NoSpace { op, path, source },
            _ => WalError::Io { op, path, source },
        }
    }
}

/// `EncryptionRequired` in words: what is required, and what to do both to
/// go on encrypted and to stay plain (DESIGN I11).
fn encryption_required(key_id: u32) -> String {
    match key_id {
        0 => "a key ring is required (a set-aside segment may have been encrypted): set one to append \
              encrypted, or call disable_encryption to write plain records"
            .to_owned(),
        k => format!(
            "key {k:08x} is required: an encrypted segment needs it, also when plain segments follow it \
             (encryption turned off); set a key ring holding it to append encrypted, or, to stay plain, \
             set that ring and then call disable_encryption"
        ),
    }
}

/// What is wrong with damaged data ([`WalError::Corruption`]). Displayed in
/// words, as in the error's message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The record at the offset does not validate.
    Record(RecordFault),
    /// The record at the offset does not validate, and a record after it
    /// was written by a later sync (DESIGN I5): the damaged bytes had been
    /// made durable, so this is no torn write.
    DurableRecord {
        /// What is wrong with the damaged record.
        fault: RecordFault,
        /// LSN of the later sync's record.
        later_lsn: u64,
        /// Its offset in the segment file.
        later_offset: u64,
    },
    /// The segment header or seal block is invalid (magic, CRC or a field).
    Block(&'static str),
    /// The file is longer than any segment can be (DESIGN I23).
    TooLong {
        /// The file's length.
        file_len: u64,
        /// The longest a segment file may be.
        max: u64,
    },
    /// The newest segment's length is not a multiple of the unit the writer
    /// writes in (DESIGN I22): the file was shortened.
    Shortened {
        /// The file's length.
        file_len: u64,
        /// The unit.
        unit: u64,
    },
    /// The newest segment's file ends less than a block (its header's block
    /// size) past the block that holds the end of its records, or of the
    /// record whose header (naming the next LSN) follows them, although its
    /// writer (format version 4 on) keeps a durable block past every data
    /// write and every record it began (DESIGN I26): the file was shortened
    /// (at a record boundary, or inside a record after them).
    NoReserve {
        /// The file's length.
        file_len: u64,
        /// Where its valid records end.
        data_end: u64,
    },
    /// The header's first LSN is not the one in the file name.
    FirstLsnMismatch {
        /// The first LSN the header gives.
        header_lsn: u64,
    },
    /// The segment starts before the previous one ends.
    Overlap {
        /// The previous segment's last LSN.
        previous_last_lsn: u64,
    },
    /// The seal's values contradict each other or the file.
    ImpossibleSeal,
    /// An older segment is not sealed although a newer one exists (DESIGN I7).
    Unsealed,
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::Record(fault) => write!(f, "{fault}"),
            CorruptionKind::DurableRecord { fault, later_lsn, later_offset } => write!(
                f,
                "{fault}; record LSN {later_lsn} at offset {later_offset} belongs to a later sync, so this data was durable"
            ),
            CorruptionKind::Block(what) => f.write_str(what),
            CorruptionKind::TooLong { file_len, max } => {
                write!(f, "file is {file_len} bytes, longer than any segment ({max} bytes)")
            }
            CorruptionKind::Shortened { file_len, unit } => write!(
                f,
                "file length {file_len} is not a multiple of {unit}: the file was shortened, acknowledged records may be gone"
            ),
            CorruptionKind::NoReserve { file_len, data_end } => write!(
                f,
                "records end at {data_end} and the file at {file_len}, less than a block past the block holding them or the end of the record whose header follows them, where its writer keeps a durable block free: the file was shortened, acknowledged records may be gone"
            ),
            CorruptionKind::FirstLsnMismatch { header_lsn } => write!(f, "header says first LSN {header_lsn}"),
            CorruptionKind::Overlap { previous_last_lsn } => {
                write!(f, "overlaps the previous segment, which ends at LSN {previous_last_lsn}")
            }
            CorruptionKind::ImpossibleSeal => f.write_str("seal block describes impossible data"),
            CorruptionKind::Unsealed => f.write_str("segment is not sealed although a newer segment exists"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corruption(kind: CorruptionKind) -> String {
        WalError::Corruption { segment: "0000000000000003.wal".into(), offset: 8192, lsn: 3, kind }.to_string()
    }

    /// Both ways on are named: the ring to append encrypted, and the ring
    /// then `disable_encryption` to stay plain (DESIGN I11).
    #[test]
    fn encryption_required_says_how_to_go_on_encrypted_or_plain() {
        let known = WalError::EncryptionRequired { key_id: 0xabcd }.to_string();
        assert!(
            known.contains("key 0000abcd is required")
                && known.contains("plain segments follow")
                && known.contains("set a key ring holding it to append encrypted")
                && known.contains("set that ring and then call disable_encryption"),
            "{known}"
        );
        let unknown = WalError::EncryptionRequired { key_id: 0 }.to_string();
        assert!(unknown.contains("set-aside") && unknown.contains("call disable_encryption"), "{unknown}");
        assert!(!unknown.contains("00000000"), "{unknown}");
    }

    #[test]
    fn corruption_messages_say_what_the_reason_strings_said() {
        let at = "corruption in 0000000000000003.wal at offset 8192 (LSN 3)";
        assert_eq!(corruption(CorruptionKind::Record(RecordFault::BadCrc)), format!("{at}: record CRC mismatch"));
        assert_eq!(
            corruption(CorruptionKind::Record(RecordFault::BadField("flags"))),
            format!("{at}: impossible header field: flags")
        );
        assert_eq!(
            corruption(CorruptionKind::DurableRecord { fault: RecordFault::Zero, later_lsn: 5, later_offset: 12288 }),
            format!(
                "{at}: zeroed record header; record LSN 5 at offset 12288 belongs to a later sync, so this data was durable"
            )
        );
        assert_eq!(corruption(CorruptionKind::Block("bad seal magic")), format!("{at}: bad seal magic"));
        assert_eq!(
            corruption(CorruptionKind::Shortened { file_len: 5000, unit: 512 }),
            format!(
                "{at}: file length 5000 is not a multiple of 512: the file was shortened, acknowledged records may be gone"
            )
        );
    }
}
