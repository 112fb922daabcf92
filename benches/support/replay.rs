//! W5 side by side: the ways to read W2's log back, and a plain file of the
//! same records, each from a cold cache, interleaved in one process (the
//! order rotates every round, so each side meets the same moments of the
//! shared machine). Figures go to `docs/BENCHMARKS.md`, "Replay (owned records)".

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use directwal::{RecordHeader, SegmentedWal, SegmentedWalConfig, WalRecord};

use crate::workloads::{Noise, evict, evict_dir};

/// Bytes before each payload in the plain file: length and CRC32C.
const PLAIN_HEADER: usize = 8;

/// A plain file holding `n` records with W2's payloads, each as
/// `len u32 | crc32c u32 | payload`: the baseline of what reading the same
/// records from a file costs without a WAL.
pub fn write_plain(base: &Path, n: u64) -> PathBuf {
    let path = base.join("w5_plain.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == n * (PLAIN_HEADER as u64 + 128)) {
        return path;
    }
    let noise = Noise::new();
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).unwrap());
    for i in 1..=n {
        let p = noise.payload(i, 128);
        w.write_all(&(p.len() as u32).to_le_bytes()).unwrap();
        w.write_all(&crc32c::crc32c(p).to_le_bytes()).unwrap();
        w.write_all(p).unwrap();
    }
    w.into_inner().unwrap().sync_all().unwrap();
    path
}

/// Reads the plain file with a 1 MiB `BufReader`, checking each record's
/// CRC32C: records/s.
fn plain(path: &Path, n: u64) -> f64 {
    evict(path);
    let t = Instant::now();
    let mut r = BufReader::with_capacity(1 << 20, File::open(path).unwrap());
    let (mut head, mut payload, mut count) = ([0u8; PLAIN_HEADER], Vec::new(), 0u64);
    while r.read_exact(&mut head).is_ok() {
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        payload.resize(len, 0);
        r.read_exact(&mut payload).unwrap();
        assert_eq!(crc32c::crc32c(&payload), u32::from_le_bytes(head[4..].try_into().unwrap()));
        std::hint::black_box(&payload);
        count += 1;
    }
    assert_eq!(count, n);
    n as f64 / t.elapsed().as_secs_f64()
}

/// Builds `n` owned records from payloads in memory (W2's first 4,096,
/// repeated), timing only the building: records/s. Dropping them is not timed.
fn floor(n: u64) -> f64 {
    let noise = Noise::new();
    let payloads: Vec<Vec<u8>> = (1..=4096).map(|i| noise.payload(i, 128).to_vec()).collect();
    let t = Instant::now();
    let mut all = Vec::with_capacity(n as usize);
    for i in 0..n {
        let payload = payloads[(i % 4096) as usize].as_slice().to_vec();
        let header =
            RecordHeader { lsn: i + 1, record_type: 1, tenant_id: 0, vshard_id: 0, flags: 0, payload_len: 128 };
        all.push(WalRecord { header, payload });
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(&all);
    n as f64 / secs
}

/// One way of reading the WAL back.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    /// The plain file (baseline).
    Plain,
    /// `SegmentedWal::replay()`: every record owned, in one `Vec`.
    Replay,
    /// `visit_durable`: records lent.
    Visit,
    /// `replay_from_limit` in 10k-record pages: owned records.
    Paged,
    /// `read_page_into` one reused `PageBuf`, 10k records a page: payloads
    /// copied into the page's one buffer, which is reused.
    PagedLent,
    /// No reading: `n` owned `WalRecord`s built from W2's payloads already
    /// in memory, in one `Vec` sized once, as `replay()` builds them. The
    /// floor of any owned replay: its memory (docs/BENCHMARKS.md).
    Floor,
}

pub const SIDES: [Side; 6] = [Side::Plain, Side::Replay, Side::Visit, Side::Paged, Side::PagedLent, Side::Floor];

impl Side {
    pub fn key(self) -> &'static str {
        match self {
            Side::Plain => "w5x_plain",
            Side::Replay => "w5x_replay",
            Side::PagedLent => "w5x_paged_lent",
            Side::Floor => "w5x_floor",
            Side::Visit => "w5x_visit",
            Side::Paged => "w5x_paged",
        }
    }
}

/// Measures `side` once from a cold cache: records/s. The WAL is opened
/// first, untimed (open is measured elsewhere), and fresh for each side: a
/// WAL keeps its sealed segments mapped, and the kernel does not drop
/// mapped pages from the cache. Dropping `replay()`'s result is not timed.
pub fn measure(side: Side, dir: &Path, plain_path: &Path, n: u64) -> f64 {
    match side {
        Side::Plain => return plain(plain_path, n),
        Side::Floor => return floor(n),
        _ => {}
    }
    let wal = SegmentedWal::open(SegmentedWalConfig::new(dir.into())).unwrap();
    evict_dir(dir).unwrap();
    let t = Instant::now();
    let got = match side {
        Side::Plain | Side::Floor => unreachable!(),
        Side::Replay => {
            let all = wal.replay().unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(all.len() as u64, n);
            assert!(all.iter().enumerate().all(|(i, r)| r.header.lsn == i as u64 + 1));
            return n as f64 / secs;
        }
        Side::Visit => {
            let mut count = 0u64;
            wal.visit_durable(0, |r| {
                std::hint::black_box(r.payload);
                count += 1;
                true
            })
            .unwrap();
            count
        }
        Side::Paged => {
            let (mut from, mut count) = (0u64, 0u64);
            loop {
                let (page, more) = wal.replay_from_limit(from, 10_000).unwrap();
                count += page.len() as u64;
                from = page.last().map_or(from, |r| r.header.lsn + 1);
                std::hint::black_box(&page);
                if !more {
                    break count;
                }
            }
        }
        Side::PagedLent => {
            let (reader, mut page, mut count) = (wal.reader(), directwal::PageBuf::new(), 0u64);
            reader.read_page_into(&mut page, 0, 10_000, usize::MAX).unwrap();
            loop {
                count += page.len() as u64;
                std::hint::black_box(page.iter().map(|r| r.payload.len()).sum::<usize>());
                if !page.has_more() {
                    break count;
                }
                let next = page.next_lsn();
                reader.read_page_into(&mut page, next, 10_000, usize::MAX).unwrap();
            }
        }
    };
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(got, n);
    n as f64 / secs
}

/// Every side once, in an order that rotates with `round`: (key, records/s).
pub fn round(dir: &Path, plain_path: &Path, n: u64, round: usize) -> Vec<(&'static str, f64)> {
    (0..SIDES.len())
        .map(|i| SIDES[(i + round) % SIDES.len()])
        .map(|side| (side.key(), measure(side, dir, plain_path, n)))
        .collect()
}
