//! Records as the caller sees them.

use crate::format::FLAG_ENCRYPTED;

/// Well-known record types. Any raw `u16` is accepted by `append`; these are
/// conveniences (`RecordType::Put as u16`).
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// No operation (padding, heartbeats).
    Noop = 0,
    /// Insert or update.
    Put = 1,
    /// Deletion.
    Delete = 2,
    /// Checkpoint marker.
    Checkpoint = 3,
    /// Transaction commit marker.
    Commit = 4,
}

impl RecordType {
    /// The well-known type with this code, if any.
    pub fn from_u16(code: u16) -> Option<Self> {
        Some(match code {
            0 => RecordType::Noop,
            1 => RecordType::Put,
            2 => RecordType::Delete,
            3 => RecordType::Checkpoint,
            4 => RecordType::Commit,
            _ => return None,
        })
    }
}

impl From<RecordType> for u16 {
    fn from(t: RecordType) -> u16 {
        t as u16
    }
}

/// The plain header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Log sequence number: 1, 2, 3 … without gaps.
    pub lsn: u64,
    /// Caller-defined type code.
    pub record_type: u16,
    /// Caller-defined tenant.
    pub tenant_id: u32,
    /// Caller-defined virtual shard.
    pub vshard_id: u16,
    /// Record flags as stored (`is_encrypted` reads them).
    pub flags: u16,
    /// Length of the payload as stored on disk.
    pub payload_len: u32,
}

/// A record returned by replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// Header fields.
    pub header: RecordHeader,
    /// Payload bytes (plaintext).
    pub payload: Vec<u8>,
}

impl WalRecord {
    /// True when the record is stored encrypted on disk.
    pub fn is_encrypted(&self) -> bool {
        self.header.flags & FLAG_ENCRYPTED != 0
    }

    /// The record type as a well-known [`RecordType`], if it is one.
    pub fn logical_record_type(&self) -> Option<RecordType> {
        RecordType::from_u16(self.header.record_type)
    }
}

/// A record lent to a visitor ([`crate::WalReader::visit`],
/// [`crate::SegmentedWal::visit_durable`]): the payload is borrowed from the
/// segment mapping (or the decryption buffer) for the duration of the call,
/// so a replay that only looks at records allocates nothing per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Header fields.
    pub header: RecordHeader,
    /// Payload bytes (plaintext).
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// An owned copy.
    pub fn to_record(&self) -> WalRecord {
        WalRecord { header: self.header, payload: self.payload.to_vec() }
    }
}
