//! The payload encodings of the store's records (docs/FORMAT.md, "Records
//! of the openraft log store"): one home for which record type means what
//! and how its payload is encoded.
//!
//! The store writes postcard 1 (a compact serde binary format with a frozen
//! wire format); it still reads the JSON records of stores written before
//! (types `0x5201..=0x5205`), so an old directory opens and can be appended
//! to: the record type says the encoding, record by record (I13).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Result as WalResult, WalError, WalReader, WalRecord};

/// Record type of a log entry (postcard).
pub const REC_ENTRY: u16 = 0x5211;
/// Record type of a vote (postcard).
pub const REC_VOTE: u16 = 0x5212;
/// Record type of the committed log id (postcard).
pub const REC_COMMITTED: u16 = 0x5213;
/// Record type of a suffix truncation (postcard).
pub const REC_TRUNCATE: u16 = 0x5214;
/// Record type of a purge (postcard).
pub const REC_PURGE: u16 = 0x5215;

/// Record type of a log entry written as JSON (read, never written).
pub const REC_JSON_ENTRY: u16 = 0x5201;
/// Record type of a vote written as JSON (read, never written).
pub const REC_JSON_VOTE: u16 = 0x5202;
/// Record type of the committed log id written as JSON (read, never written).
pub const REC_JSON_COMMITTED: u16 = 0x5203;
/// Record type of a suffix truncation written as JSON (read, never written).
pub const REC_JSON_TRUNCATE: u16 = 0x5204;
/// Record type of a purge written as JSON (read, never written).
pub const REC_JSON_PURGE: u16 = 0x5205;

/// What a record of the store says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Entry,
    Vote,
    Committed,
    Truncate,
    Purge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Json,
    Postcard,
}

/// The kind and encoding a record type stands for; None for a type the
/// store never wrote.
fn classify(record_type: u16) -> Option<(Kind, Codec)> {
    let codec = match record_type & 0xfff0 {
        0x5200 => Codec::Json,
        0x5210 => Codec::Postcard,
        _ => return None,
    };
    let kind = match record_type & 0x000f {
        1 => Kind::Entry,
        2 => Kind::Vote,
        3 => Kind::Committed,
        4 => Kind::Truncate,
        5 => Kind::Purge,
        _ => return None,
    };
    Some((kind, codec))
}

/// The record type the store writes for `kind`.
fn written_type(kind: Kind) -> u16 {
    match kind {
        Kind::Entry => REC_ENTRY,
        Kind::Vote => REC_VOTE,
        Kind::Committed => REC_COMMITTED,
        Kind::Truncate => REC_TRUNCATE,
        Kind::Purge => REC_PURGE,
    }
}

/// The kind of `rec`, or `RaftUnknownRecord` naming its segment and LSN.
pub(super) fn kind_of(reader: &WalReader, rec: &WalRecord) -> WalResult<Kind> {
    classify(rec.header.record_type).map(|(kind, _)| kind).ok_or_else(|| WalError::RaftUnknownRecord {
        segment: reader.segment_of(rec.header.lsn),
        lsn: rec.header.lsn,
        record_type: rec.header.record_type,
    })
}

/// Encodes `value` as the record of `kind` the store writes: (record type, payload).
pub(super) fn encode(kind: Kind, value: &impl Serialize) -> WalResult<(u16, Vec<u8>)> {
    let record_type = written_type(kind);
    debug_assert_eq!(classify(record_type), Some((kind, Codec::Postcard)));
    let bytes = postcard::to_allocvec(value).map_err(|e| WalError::RaftEncode { record_type, source: Box::new(e) })?;
    Ok((record_type, bytes))
}

/// Bytes left over after a whole value was decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0} bytes after the encoded value")]
struct TrailingBytes(usize);

fn decode_postcard<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    // postcard never allocates more than the input holds: lengths are
    // checked against the bytes left before a string or bytes is taken,
    // and serde caps what it reserves for a sequence.
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(Box::new(TrailingBytes(rest.len())));
    }
    Ok(value)
}

/// Decodes a record's payload with the encoding its type says; on failure
/// names the record's segment (looked up in `reader`) and LSN.
pub(super) fn decode<T: DeserializeOwned>(reader: &WalReader, rec: &WalRecord) -> WalResult<T> {
    let rt = rec.header.record_type;
    let result = match classify(rt) {
        Some((_, Codec::Postcard)) => decode_postcard(&rec.payload),
        Some((_, Codec::Json)) => serde_json::from_slice(&rec.payload).map_err(|e| e.into()),
        None => Err(format!("record type {rt:#06x} is not a raft store record").into()),
    };
    result.map_err(|source| WalError::RaftDecode {
        segment: reader.segment_of(rec.header.lsn),
        lsn: rec.header.lsn,
        record_type: rt,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_type_is_postcard_and_every_json_type_is_still_known() {
        let kinds = [Kind::Entry, Kind::Vote, Kind::Committed, Kind::Truncate, Kind::Purge];
        let json = [REC_JSON_ENTRY, REC_JSON_VOTE, REC_JSON_COMMITTED, REC_JSON_TRUNCATE, REC_JSON_PURGE];
        for (kind, json) in kinds.into_iter().zip(json) {
            assert_eq!(classify(written_type(kind)), Some((kind, Codec::Postcard)));
            assert_eq!(classify(json), Some((kind, Codec::Json)));
        }
        for other in [0x5200, 0x5206, 0x5210, 0x5216, 0x5221, 0x0042, 0xffff] {
            assert_eq!(classify(other), None, "{other:#06x}");
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = postcard::to_allocvec(&(7u64, 9u64)).unwrap();
        assert_eq!(decode_postcard::<(u64, u64)>(&bytes).unwrap(), (7, 9));
        bytes.push(0);
        let e = decode_postcard::<(u64, u64)>(&bytes).unwrap_err();
        assert_eq!(e.to_string(), "1 bytes after the encoded value");
    }

    /// A value whose `Serialize` fails.
    struct Unencodable;

    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }

    #[test]
    fn a_value_that_does_not_encode_is_its_own_error_naming_the_record_type() {
        match encode(Kind::Vote, &Unencodable) {
            Err(e @ WalError::RaftEncode { record_type: REC_VOTE, .. }) => {
                assert!(std::error::Error::source(&e).is_some(), "the encoder's error is kept: {e}");
            }
            other => panic!("expected RaftEncode, got {other:?}"),
        }
    }

    /// The byte tables of docs/FORMAT.md ("Records of the openraft log store").
    #[test]
    fn payloads_are_laid_out_as_format_md_says() {
        use crate::raft::kv::{Request, TypeConfig};
        use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
        let id = LogId::new(CommittedLeaderId::new(3, 1), 300);
        assert_eq!(encode(Kind::Truncate, &id).unwrap(), (REC_TRUNCATE, vec![3, 1, 0xac, 0x02]));
        assert_eq!(encode(Kind::Committed, &Some(id)).unwrap().1, [1, 3, 1, 0xac, 0x02]);
        assert_eq!(encode(Kind::Committed, &None::<LogId<u64>>).unwrap().1, [0]);
        assert_eq!(encode(Kind::Vote, &Vote::<u64>::new_committed(2, 7)).unwrap(), (REC_VOTE, vec![2, 7, 1]));
        let normal = Entry::<TypeConfig> {
            log_id: id,
            payload: EntryPayload::Normal(Request { key: "k".into(), value: "vv".into() }),
        };
        let (rt, bytes) = encode(Kind::Entry, &normal).unwrap();
        assert_eq!((rt, bytes), (REC_ENTRY, vec![3, 1, 0xac, 0x02, 1, 1, b'k', 2, b'v', b'v']));
        let blank = Entry::<TypeConfig> { log_id: id, payload: EntryPayload::Blank };
        assert_eq!(encode(Kind::Entry, &blank).unwrap().1, [3, 1, 0xac, 0x02, 0]);
    }

    /// A claimed 4 GiB key, or a membership of 4G configs, in a short
    /// payload fails to decode (postcard checks a length against the bytes
    /// left before it takes them).
    #[test]
    fn absurd_lengths_fail_to_decode_without_allocating_them() {
        use crate::raft::kv::TypeConfig;
        use openraft::Entry;
        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        for variant in [1u8, 2] {
            let mut bytes = vec![3, 1, 5, variant];
            bytes.extend_from_slice(&huge);
            bytes.extend_from_slice(b"abc");
            assert!(decode_postcard::<Entry<TypeConfig>>(&bytes).is_err(), "variant {variant}");
        }
    }
}
