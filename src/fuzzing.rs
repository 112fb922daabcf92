//! Fuzz harnesses, shared by the cargo-fuzz targets in `fuzz/` and
//! by `tests/fuzz_corpus.rs`, which replays the committed corpora in CI.
//! Each function must never panic on any input unless it found a bug.

use std::path::Path;
use std::sync::Arc;

use crate::crypto::{KeyRing, WalEncryptionKey};
use crate::format::{self, RecordFields, SEGMENT_HEADER_LEN, Seal, SegmentHeader};
use crate::sim::SimStorage;
use crate::{SegmentedWal, SegmentedWalConfig, WalError};

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().saturating_sub(at).min(8);
    b[..n].copy_from_slice(&data[at..at + n]);
    u64::from_le_bytes(b)
}

/// Arbitrary bytes as records: every accepted record lies inside the input
/// and round-trips through the encoder.
pub fn record_decode(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let seed = u32::from_le_bytes(data[..4].try_into().expect("4 bytes"));
    let img = &data[4..];
    let end = img.len() as u64;
    let mut off = 0u64;
    while off < end {
        match format::check_record(img, off, end, seed, None) {
            Ok((h, payload)) => {
                assert!(payload.end <= img.len());
                let size = format::record_size(h.len as usize);
                let mut re = vec![0u8; size];
                format::encode_record(seed, &h.fields, &img[payload.clone()], &mut re);
                assert_eq!(&re[..format::RECORD_HEADER_LEN + h.len as usize], &img[off as usize..payload.end]);
                off += size as u64;
            }
            Err(_) => off += format::RECORD_ALIGN as u64,
        }
    }
}

/// Arbitrary bytes as the only segment file of a WAL directory, opened and
/// replayed on the simulated device. The first input byte selects repairs so
/// the fuzzer gets past the checksums: bit 0 header magic and CRC, bit 1 the
/// seal CRC, bit 2 every record CRC along the chain, bit 3 a second segment.
pub fn segment_file(data: &[u8]) {
    if let Some((wal, first_lsn)) = open_fuzzed_segment(data, None) {
        let _ = wal.replay();
        let _ = wal.replay_from_limit(first_lsn.saturating_add(1), 3);
        let _ = wal.list_segments();
    }
}

/// The key of the encrypted fuzz target and its seed corpus.
pub const FUZZ_KEY: [u8; 32] = [0x5a; 32];

/// Payload the encrypted seed corpus holds at `lsn`.
pub fn fuzz_payload(lsn: u64) -> Vec<u8> {
    (0..(lsn * 37 % 300) as usize).map(|i| (lsn as usize * 13 + i) as u8).collect()
}

/// Encrypted-record decoding: like [`segment_file`] with the key ring set.
/// Oracle (I11): a record that replays as encrypted carries exactly the
/// plaintext written at its LSN — mutations fail, they never decrypt.
pub fn encrypted_segment(data: &[u8]) {
    let ring = KeyRing::new(WalEncryptionKey::from_bytes(&FUZZ_KEY));
    let Some((wal, _)) = open_fuzzed_segment(data, Some(ring)) else { return };
    if let Ok(records) = wal.replay() {
        for r in records.iter().filter(|r| r.is_encrypted()) {
            assert_eq!(r.payload, fuzz_payload(r.header.lsn), "LSN {} decrypted to other bytes", r.header.lsn);
        }
    }
}

fn open_fuzzed_segment(data: &[u8], ring: Option<KeyRing>) -> Option<(SegmentedWal, u64)> {
    let (&mode, rest) = data.split_first()?;
    let mut img = rest.to_vec();
    let mut first_lsn = 1;
    if mode & 1 != 0 && img.len() >= SEGMENT_HEADER_LEN {
        img[..8].copy_from_slice(&format::SEGMENT_MAGIC);
        let crc = crc32c::crc32c(&img[..SEGMENT_HEADER_LEN - 4]);
        img[SEGMENT_HEADER_LEN - 4..SEGMENT_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }
    if let Ok(h) = SegmentHeader::decode(&img) {
        first_lsn = h.first_lsn;
        let bs = h.block_size as usize;
        if mode & 4 != 0 {
            repair_records(&mut img, &h);
        }
        if mode & 2 != 0 && img.len() >= bs + format::SEAL_LEN {
            let b = &img[bs..];
            let seal = Seal { last_lsn: u64_at(b, 8), records: u64_at(b, 16), data_end: u64_at(b, 24), sealed_ms: 0 };
            seal.encode(h.crc_seed(), &mut img[bs..]);
        }
    }
    let sim = SimStorage::new();
    let dir = Path::new("/fuzz");
    {
        use crate::io::{OpenMode, Storage};
        let create = OpenMode { create: true, direct: false };
        let f = sim.open(&dir.join(crate::segment::segment_file_name(first_lsn)), create).expect("sim open");
        f.write_all_at(&img, 0).expect("sim write");
        if mode & 8 != 0 {
            // An empty successor makes the fuzzed file a sealed predecessor.
            let next = crate::segment::segment_file_name(first_lsn.saturating_add(1));
            let _ = sim.open(&dir.join(next), create);
        }
    }
    let mut config = SegmentedWalConfig::new(dir.into());
    config.segment_target_size = 8 * 1024;
    config.writer_config.prepare_chunk_size = 4096;
    let mut wal = SegmentedWal::open_with_storage(config, Arc::new(sim)).ok()?;
    if let Some(ring) = ring {
        wal.set_encryption_ring(ring).ok()?;
    }
    Some((wal, first_lsn))
}

/// Rewrites the CRC of every record along the chain from the data start.
fn repair_records(img: &mut [u8], h: &SegmentHeader) {
    let seed = h.crc_seed();
    let mut off = format::data_start(h.block_size as usize) as usize;
    while off + format::RECORD_HEADER_LEN <= img.len() {
        let raw = format::read_header(&img[off..]);
        let size = format::record_size(raw.len as usize);
        if raw.len as usize > format::MAX_STORED_LEN || off + size > img.len() {
            return;
        }
        let payload = img[off + format::RECORD_HEADER_LEN..off + format::RECORD_HEADER_LEN + raw.len as usize].to_vec();
        let fields = RecordFields { flags: raw.fields.flags & format::KNOWN_FLAGS, ..raw.fields };
        format::encode_record(seed, &fields, &payload, &mut img[off..off + size]);
        off += size;
    }
}

/// Arbitrary bytes as a sequence of operations on a WAL on the simulated
/// device, ending in a crash: the recovered WAL must hold every acknowledged
/// record, byte-identical, with contiguous LSNs.
pub fn operations(data: &[u8]) {
    let mut pos = 0usize;
    let mut next = || {
        let b = data.get(pos).copied();
        pos += 1;
        b
    };
    let sim = SimStorage::new();
    let mut config = SegmentedWalConfig::new(Path::new("/ops").into());
    config.segment_target_size = 8 * 1024;
    config.writer_config.write_buffer_size = 4096;
    config.writer_config.prepare_chunk_size = 4096;
    let open = |c: &SegmentedWalConfig| SegmentedWal::open_with_storage(c.clone(), Arc::new(sim.clone()));
    let mut wal = open(&config).expect("open on an empty device");
    let payload = |lsn: u64, len: usize| -> Vec<u8> { (0..len).map(|i| (lsn as usize * 31 + i) as u8).collect() };
    let mut lens: Vec<usize> = vec![0]; // lens[lsn]
    let (mut acked, mut floor) = (0u64, 0u64);
    while let Some(op) = next() {
        match op % 8 {
            0..=3 => {
                let len = usize::from(next().unwrap_or(0)) * usize::from(op / 8 % 16 + 1);
                let lsn = wal.append(1, 0, 0, &payload(wal.next_lsn(), len)).expect("append");
                assert_eq!(lsn as usize, lens.len());
                lens.push(len);
            }
            4 | 5 => {
                wal.sync().expect("sync");
                acked = lens.len() as u64 - 1;
            }
            6 => wal.roll_segment().expect("roll"),
            _ => {
                let c = u64::from(next().unwrap_or(0)) % (acked + 2);
                floor = floor.max(c);
                wal.truncate_before(c).expect("truncate");
            }
        }
    }
    wal.simulate_crash();
    let mut r = 0x9e37_79b9_7f4a_7c15u64 ^ data.len() as u64;
    let image = sim.crash_image(&mut || {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        r
    });
    let recovered = SegmentedWal::open_with_storage(config, Arc::new(image)).expect("open after crash refused");
    let recs = match recovered.replay() {
        Ok(r) => r,
        Err(e @ WalError::Corruption { .. }) => panic!("corruption after a crash: {e}"),
        Err(e) => panic!("replay failed: {e}"),
    };
    let first = recs.first().map_or(recovered.next_lsn(), |r| r.header.lsn);
    assert!(first <= floor.max(1) || first > acked, "acknowledged records before {first} lost");
    for (i, rec) in recs.iter().enumerate() {
        let lsn = first + i as u64;
        assert_eq!(rec.header.lsn, lsn);
        assert!((lsn as usize) < lens.len(), "LSN {lsn} was never appended");
        assert_eq!(rec.payload, payload(lsn, lens[lsn as usize]));
    }
    assert!(recs.last().map_or(first - 1, |r| r.header.lsn) >= acked, "acknowledged records lost");
}
