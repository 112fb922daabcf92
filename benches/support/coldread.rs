//! Cold reads of sealed segments, start to end, side by side: the readers'
//! mapping with MADV_WILLNEED read-ahead against large `pread`s into one
//! reused buffer (buffered, O_DIRECT, and buffered on a second thread
//! overlapping the CRCs of one chunk with the read of the next). Each
//! strategy does the same CRC work: a CRC32C over every record's bytes.
//! Interleaved with the other W5 sides, each from a cold cache.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use crate::workloads::evict;

/// Bytes per `pread`, and the mapping's read-ahead (as the reader's).
const CHUNK: usize = 8 << 20;
const ALIGN: usize = 4096;

#[derive(Clone, Copy, Debug)]
pub enum Strategy {
    /// A mapping, MADV_WILLNEED 8 MiB ahead (what readers do).
    MmapWillNeed,
    /// A mapping, MADV_WILLNEED 32 MiB ahead.
    MmapWillNeed32,
    /// A mapping advised MADV_SEQUENTIAL, no WILLNEED (the kernel's
    /// read-ahead on faults).
    MmapSequential,
    /// 8 MiB buffered `pread`s into one reused buffer.
    Pread,
    /// 8 MiB O_DIRECT `pread`s into one reused aligned buffer.
    Direct,
    /// Buffered `pread`s on a second thread, two buffers: the CRCs of one
    /// chunk overlap the read of the next.
    PreadOverlapped,
}

pub const STRATEGIES: [Strategy; 6] = [
    Strategy::MmapWillNeed,
    Strategy::MmapWillNeed32,
    Strategy::MmapSequential,
    Strategy::Pread,
    Strategy::Direct,
    Strategy::PreadOverlapped,
];

impl Strategy {
    pub fn key(self) -> &'static str {
        match self {
            Strategy::MmapWillNeed => "cold_mmap_mbs",
            Strategy::MmapWillNeed32 => "cold_mmap32_mbs",
            Strategy::MmapSequential => "cold_mmapseq_mbs",
            Strategy::Pread => "cold_pread_mbs",
            Strategy::Direct => "cold_direct_mbs",
            Strategy::PreadOverlapped => "cold_pread2_mbs",
        }
    }
}

/// A sealed segment's file and its data span `[start, end)`.
pub struct Span {
    pub path: PathBuf,
    pub start: u64,
    pub end: u64,
}

/// The sealed segments of the WAL in `dir`, as spans.
pub fn sealed_spans(dir: &Path) -> Vec<Span> {
    let wal = directwal::SegmentedWal::open(directwal::SegmentedWalConfig::new(dir.into())).unwrap();
    let start = directwal::layout::data_start(directwal::DEFAULT_ALIGNMENT) as u64;
    wal.list_segments()
        .unwrap()
        .into_iter()
        .filter(|s| s.sealed)
        .map(|s| Span { path: s.path.clone(), start, end: s.used_bytes })
        .collect()
}

/// CRC32C of each `record`-byte record of `bytes` (the verification work).
fn crcs(bytes: &[u8], record: usize) -> u32 {
    bytes.chunks(record).fold(0, |acc, r| acc ^ crc32c::crc32c(r))
}

/// Reads every span with `strategy` from a cold cache: MB/s.
pub fn measure(strategy: Strategy, spans: &[Span], record: usize) -> f64 {
    spans.iter().for_each(|s| evict(&s.path));
    let t = Instant::now();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK + ALIGN];
    for s in spans {
        let len = (s.end - s.start) as usize;
        // Chunks hold whole records: CHUNK is a multiple of the record size.
        let chunk = CHUNK / record * record;
        let acc = match strategy {
            Strategy::MmapWillNeed => mmap(s, chunk, chunk, record),
            Strategy::MmapWillNeed32 => mmap(s, chunk, 4 * chunk, record),
            Strategy::MmapSequential => mmap(s, chunk, 0, record),
            Strategy::Pread => pread(&File::open(&s.path).unwrap(), s, &mut buf[..chunk], record),
            Strategy::Direct => direct(s, &mut buf, record),
            Strategy::PreadOverlapped => overlapped(s, chunk, record),
        };
        std::hint::black_box(acc);
        bytes += len as u64;
    }
    bytes as f64 / 1e6 / t.elapsed().as_secs_f64()
}

/// Scans the mapping `chunk` bytes at a time, asking for `ahead` bytes past
/// each chunk (0: MADV_SEQUENTIAL instead).
fn mmap(s: &Span, chunk: usize, ahead: usize, record: usize) -> u32 {
    let f = File::open(&s.path).unwrap();
    // SAFETY: the bench's own sealed segment, which nothing writes while mapped.
    let m = unsafe { memmap2::Mmap::map(&f) }.unwrap();
    if ahead == 0 {
        let _ = m.advise(memmap2::Advice::Sequential);
    }
    let (start, end) = (s.start as usize, s.end as usize);
    let mut acc = 0;
    let mut off = start;
    while off < end {
        let to = (off + chunk).min(end);
        if ahead > 0 {
            let _ = m.advise_range(memmap2::Advice::WillNeed, to, ahead.min(m.len() - to));
        }
        acc ^= crcs(&m[off..to], record);
        off = to;
    }
    acc
}

fn pread(f: &File, s: &Span, buf: &mut [u8], record: usize) -> u32 {
    let mut acc = 0;
    let mut off = s.start;
    while off < s.end {
        let n = buf.len().min((s.end - off) as usize);
        f.read_exact_at(&mut buf[..n], off).unwrap();
        acc ^= crcs(&buf[..n], record);
        off += n as u64;
    }
    acc
}

fn direct(s: &Span, buf: &mut [u8], record: usize) -> u32 {
    let f = directwal::io::open_direct(OpenOptions::new().read(true), &s.path).unwrap();
    let at = buf.as_ptr().align_offset(ALIGN);
    let buf = &mut buf[at..at + CHUNK];
    // Aligned reads from the block holding `start`; CRCs over whole records.
    let (mut off, mut acc) = (s.start / ALIGN as u64 * ALIGN as u64, 0);
    let mut carry = (s.start - off) as usize;
    let mut tail = Vec::new();
    while off < s.end {
        let n = CHUNK.min(((s.end - off) as usize).next_multiple_of(ALIGN));
        let got = f.read_at(&mut buf[..n], off).unwrap();
        let data = &buf[carry..got.min((s.end - off) as usize)];
        tail.extend_from_slice(data);
        let whole = tail.len() / record * record;
        acc ^= crcs(&tail[..whole], record);
        tail.drain(..whole);
        carry = 0;
        off += got as u64;
    }
    acc
}

fn overlapped(s: &Span, chunk: usize, record: usize) -> u32 {
    let f = File::open(&s.path).unwrap();
    let (to_crc, from_reader) = mpsc::sync_channel::<Vec<u8>>(1);
    let (to_reader, spare) = mpsc::channel::<Vec<u8>>();
    for _ in 0..2 {
        to_reader.send(vec![0u8; chunk]).unwrap();
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut off = s.start;
            while off < s.end {
                let mut buf = spare.recv().unwrap();
                let n = chunk.min((s.end - off) as usize);
                buf.resize(n, 0);
                f.read_exact_at(&mut buf, off).unwrap();
                off += n as u64;
                to_crc.send(buf).unwrap();
            }
            drop(to_crc);
        });
        let mut acc = 0;
        for buf in from_reader {
            acc ^= crcs(&buf, record);
            let _ = to_reader.send(buf);
        }
        acc
    })
}
