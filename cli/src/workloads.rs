//! The W1–W5 workloads (docs/BENCHMARKS.md) and the device probes they are compared with.
//! Shared by `directwal bench` and `cargo bench --bench wal` (which includes
//! this file), so both measure exactly the same thing. Each workload calls
//! `tick(n)` as it completes records, for progress bars.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use directwal::crypto::KeyRing;
use directwal::io::AlignedBuf;
use directwal::{SegmentedWal, SegmentedWalConfig, StatsHandle, StatsSnapshot, WalHandle};

// Also included by bench-peers, so every bench writes the same bytes.
#[path = "noise.rs"]
mod noise;
pub use noise::Noise;

/// Boxed error of a workload.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Median of `v` (sorted in place).
#[allow(dead_code)] // the CLI runs each workload once
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// An empty directory `base/name`.
pub fn fresh(base: &Path, name: &str) -> BenchResult<PathBuf> {
    let p = base.join(name);
    if p.exists() {
        std::fs::remove_dir_all(&p)?;
    }
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

/// Drops `path` from the page cache, so the next read comes from the disk
/// (where the platform can: not on macOS).
pub fn evict(path: &Path) {
    if let Ok(f) = File::open(path) {
        let _ = f.sync_all();
        let _ = directwal::io::evict_cached(&f);
    }
}

/// Drops every file of `dir` from the page cache.
pub fn evict_dir(dir: &Path) -> BenchResult<()> {
    for e in std::fs::read_dir(dir)? {
        evict(&e?.path());
    }
    Ok(())
}

/// How a probe file's space is prepared before the timed writes.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // the CLI probes only zero-filled space
pub enum Space {
    /// The file grows with each write.
    Grow,
    /// Written with zeros and synced first.
    ZeroFilled,
    /// fallocate'd and synced first.
    Fallocated,
}

/// Makes every 4 KiB block of `buf` unlike any block a probe wrote before
/// (stamps a serial number, unique across runs, and the block's index into
/// its first 16 bytes). A WAL never writes the same block twice (each holds
/// other LSNs), so neither may the probes it is compared with, whatever the
/// host does with repeated blocks (it may deduplicate, compress or skip them).
fn stamp(buf: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if NEXT.load(Ordering::Relaxed) == 0 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        let _ = NEXT.compare_exchange(0, now << 8, Ordering::Relaxed, Ordering::Relaxed);
    }
    let serial = NEXT.fetch_add(1, Ordering::Relaxed);
    for (j, block) in buf.chunks_mut(4096).enumerate() {
        block[..8].copy_from_slice(&serial.to_le_bytes());
        block[8..16].copy_from_slice(&(j as u64).to_le_bytes());
    }
}

/// A probe's write buffer: `len` bytes of `noise`, aligned for O_DIRECT.
fn noise_buf(noise: &Noise, len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::new(len, 4096);
    buf.copy_from_slice(&noise.bytes()[..len]);
    buf
}

/// A new, empty file opened for O_DIRECT writes (the probes' file; on
/// macOS F_NOCACHE).
fn create_direct(path: &Path) -> std::io::Result<File> {
    directwal::io::open_uncached(OpenOptions::new().read(true).write(true).create(true).truncate(true), path)
}

/// The device ceiling: `count` pwrites of `block` bytes at increasing
/// offsets with O_DIRECT, each followed by fdatasync. Returns writes/s.
pub fn probe_sync_writes(dir: &Path, block: usize, count: u64, space: Space, tick: &dyn Fn(u64)) -> BenchResult<f64> {
    let path = dir.join("probe");
    let f = create_direct(&path)?;
    let total = block as u64 * count;
    match space {
        Space::Grow => {}
        Space::Fallocated => {
            directwal::io::allocate(&f, 0, total)?;
            f.sync_all()?;
        }
        Space::ZeroFilled => {
            let zero = AlignedBuf::new(4 << 20, 4096);
            let mut off = 0;
            while off < total {
                f.write_all_at(&zero, off)?;
                off += zero.len() as u64;
            }
            f.sync_all()?;
        }
    }
    // Every write different (see `Noise` and `stamp`), taken from one aligned buffer.
    const SPAN: usize = 4 << 20;
    let mut buf = noise_buf(&Noise::new(), block + SPAN);
    let t = Instant::now();
    for i in 0..count {
        let at = (i as usize * 4096) % SPAN;
        stamp(&mut buf[at..at + block]);
        f.write_all_at(&buf[at..at + block], i * block as u64)?;
        f.sync_data()?;
        tick(1);
    }
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(path)?;
    Ok(count as f64 / secs)
}

/// Buffered sequential read of the files of `dir` from a cold cache, MB/s.
pub fn probe_seq_read(dir: &Path) -> BenchResult<f64> {
    evict_dir(dir)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    let t = Instant::now();
    for e in std::fs::read_dir(dir)? {
        let f = File::open(e?.path())?;
        let mut off = 0u64;
        loop {
            let n = f.read_at(&mut buf, off)?;
            if n == 0 {
                break;
            }
            off += n as u64;
        }
        bytes += off;
    }
    Ok(bytes as f64 / 1e6 / t.elapsed().as_secs_f64())
}

fn open(config: SegmentedWalConfig, ring: Option<&KeyRing>) -> BenchResult<SegmentedWal> {
    let mut wal = SegmentedWal::open(config)?;
    if let Some(ring) = ring {
        wal.set_encryption_ring(ring.clone())?;
    }
    Ok(wal)
}

/// W1 result.
pub struct W1 {
    /// Durable records per second.
    pub rate: f64,
    /// Bytes of the log per record.
    pub bytes_per_record: f64,
    /// Whether the WAL wrote with O_DIRECT.
    pub direct_io: bool,
    /// The WAL's stats at the end.
    #[allow(dead_code)] // benches/wal.rs reads the rate only
    pub stats: StatsSnapshot,
}

/// W1: `n` 128-byte records, each appended and synced before the next.
pub fn w1(config: SegmentedWalConfig, n: u64, ring: Option<&KeyRing>, tick: &dyn Fn(u64)) -> BenchResult<W1> {
    w1_scraped(config, n, ring, Scrape::No, tick)
}

/// A thread beside a workload, to measure what a metrics exporter costs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(dead_code)] // the CLI runs without one; benches/wal.rs runs all
pub enum Scrape {
    /// None.
    No,
    /// One that wakes every millisecond and does nothing else: the control
    /// (a thread waking often changes fdatasync wake-up latency by itself).
    Idle,
    /// One that reads the WAL's stats every millisecond.
    Stats,
}

/// W1, with `scrape` beside it.
pub fn w1_scraped(
    config: SegmentedWalConfig,
    n: u64,
    ring: Option<&KeyRing>,
    scrape: Scrape,
    tick: &dyn Fn(u64),
) -> BenchResult<W1> {
    let mut wal = open(config, ring)?;
    let noise = Noise::new();
    let t = Instant::now();
    scraping(wal.stats_handle(), scrape, || {
        for i in 0..n {
            wal.append(1, 0, 0, noise.payload(i, 128))?;
            wal.sync()?;
            tick(1);
        }
        Ok::<_, directwal::WalError>(())
    })?;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let used: u64 = wal.list_segments()?.iter().map(|s| s.used_bytes).sum();
    let stats = wal.stats_snapshot();
    Ok(W1 { rate, bytes_per_record: used as f64 / n as f64, direct_io: wal.direct_io_active(), stats })
}

/// Runs `f` with `how` beside it.
fn scraping<T>(stats: StatsHandle, how: Scrape, f: impl FnOnce() -> T) -> T {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        if how != Scrape::No {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if how == Scrape::Stats {
                        std::hint::black_box(stats.snapshot());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            });
        }
        let r = f();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    })
}

/// Where a workload's log lives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Log {
    /// A fresh directory: every segment is a new file.
    Fresh,
    /// A log in steady state: a checkpoint (`truncate_before`) follows every
    /// segment roll, as a database's does, so new segments start in the
    /// files of truncated ones (DESIGN I17). The untimed warm-up writes and
    /// truncates enough to fill the spare pool first.
    Checkpointed,
}

/// Opens the workload's WAL in `dir`, warmed up for `log`.
fn open_log(dir: &Path, log: Log, ring: Option<&KeyRing>) -> BenchResult<SegmentedWal> {
    let mut wal = open(SegmentedWalConfig::new(dir.into()), ring)?;
    if log == Log::Checkpointed {
        let big = vec![0x11u8; 1 << 20];
        let spares = directwal::DEFAULT_RECYCLE_SEGMENTS as u64;
        while wal.stats().segments_created <= spares {
            wal.append(1, 0, 0, &big)?;
        }
        wal.roll_segment()?;
        wal.truncate_before(wal.next_lsn())?;
        // The active segment is a new file: one record, then roll into a spare.
        wal.append(1, 0, 0, b"warm")?;
        wal.roll_segment()?;
        wal.truncate_before(wal.next_lsn())?;
        let s = wal.stats();
        if s.segments_recycled == 0 {
            return Err("the warm-up reused no segment file".into());
        }
    }
    Ok(wal)
}

/// Checkpoints after a roll, for `Log::Checkpointed`.
struct Checkpoints {
    on: bool,
    active: u64,
}

impl Checkpoints {
    fn new(wal: &SegmentedWal, log: Log) -> Self {
        Checkpoints { on: log == Log::Checkpointed, active: wal.active_segment_first_lsn() }
    }

    fn after_append(&mut self, wal: &SegmentedWal) -> BenchResult<()> {
        if self.on && wal.active_segment_first_lsn() != self.active {
            self.active = wal.active_segment_first_lsn();
            wal.truncate_before(self.active)?;
        }
        Ok(())
    }
}

/// W2: `n` 128-byte records appended, one sync at the end. Records/s.
pub fn w2(dir: &Path, n: u64, log: Log, tick: &dyn Fn(u64)) -> BenchResult<f64> {
    let mut wal = open_log(dir, log, None)?;
    let mut ckpt = Checkpoints::new(&wal, log);
    let noise = Noise::new();
    let t = Instant::now();
    for i in 1..=n {
        wal.append(1, 0, 0, noise.payload(i, 128))?;
        ckpt.after_append(&wal)?;
        if i % 65_536 == 0 {
            tick(65_536);
        }
    }
    wal.sync()?;
    tick(n % 65_536);
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// W2 and the device writing the same bytes, alternated `pairs` times
/// (order swapped every pair): W2 into a fresh directory, and the raw probe
/// writing as many bytes as W2's records occupy, 4 MiB O_DIRECT writes into
/// new 64 MiB files, each file fdatasynced when full and the last at the
/// end (what W2 asks of the disk, without a WAL). Returns (W2 records/s,
/// the probe's rate in records/s of the same size).
#[allow(dead_code)] // the CLI measures W2 alone
pub fn w2_against_raw(dir: &Path, n: u64, pairs: u64) -> BenchResult<(f64, f64)> {
    const CHUNK: usize = 4 << 20;
    const FILE: u64 = 64 << 20;
    let noise = Noise::new();
    let total = n * directwal::layout::record_size(128) as u64;
    let mut buf = noise_buf(&noise, CHUNK + 4096);
    let (mut t_wal, mut t_raw) = (0f64, 0f64);
    for pair in 0..pairs {
        for wal_turn in [pair % 2 == 0, pair % 2 != 0] {
            let d = fresh(dir, "w2raw")?;
            if wal_turn {
                t_wal += n as f64 / w2(&d, n, Log::Fresh, &|_| {})?;
            } else {
                let t = Instant::now();
                let (mut off, mut k) = (0u64, 0u64);
                while off < total {
                    let f = create_direct(&d.join(format!("raw-{k}")))?;
                    let mut at = 0u64;
                    while at < FILE && off < total {
                        // A different 4 MiB each time (the buffer's first or
                        // second page on); the last write only what is left.
                        let from = (k as usize + (at / CHUNK as u64) as usize) % 2 * 4096;
                        let len = CHUNK.min((total - off).next_multiple_of(4096) as usize);
                        stamp(&mut buf[from..from + len]);
                        f.write_all_at(&buf[from..from + len], at)?;
                        at += len as u64;
                        off += len as u64;
                    }
                    f.sync_data()?;
                    k += 1;
                }
                t_raw += t.elapsed().as_secs_f64();
            }
        }
    }
    std::fs::remove_dir_all(dir.join("w2raw"))?;
    Ok((pairs as f64 * n as f64 / t_wal, pairs as f64 * n as f64 / t_raw))
}

/// W3: `n` 4 KiB records, a sync every `every`. MB/s of payload.
pub fn w3(dir: &Path, n: u64, every: u64, log: Log, ring: Option<&KeyRing>, tick: &dyn Fn(u64)) -> BenchResult<f64> {
    let mut wal = open_log(dir, log, ring)?;
    let mut ckpt = Checkpoints::new(&wal, log);
    let noise = Noise::new();
    let t = Instant::now();
    for i in 1..=n {
        wal.append(1, 0, 0, noise.payload(i, 4096))?;
        ckpt.after_append(&wal)?;
        if i % every == 0 {
            wal.sync()?;
            tick(every);
        }
    }
    wal.sync()?;
    tick(n % every);
    Ok((n * 4096) as f64 / 1e6 / t.elapsed().as_secs_f64())
}

/// W3 in a checkpointed log and the pre-filled 4 MiB ceiling probe,
/// interleaved sync epoch by sync epoch (order swapped every two), so both
/// see the same moments of this shared disk: `epochs` epochs of each, 1,000
/// incompressible 4 KiB records per W3 epoch, one 4 MiB O_DIRECT write +
/// fdatasync into a pre-filled 256 MiB file per probe epoch. Returns
/// (W3 MB/s of payload, probe MB/s).
#[allow(dead_code)] // the CLI measures W3 and the probe one after the other
pub fn w3_interleaved(dir: &Path, epochs: u64) -> BenchResult<(f64, f64)> {
    const CHUNK: usize = 4 << 20;
    const FILE_CHUNKS: u64 = 64;
    let noise = Noise::new();
    let probe_path = dir.join("probe");
    let f = create_direct(&probe_path)?;
    let mut buf = noise_buf(&noise, CHUNK + 4096);
    for k in 0..FILE_CHUNKS {
        stamp(&mut buf[..CHUNK]);
        f.write_all_at(&buf[..CHUNK], k * CHUNK as u64)?;
    }
    f.sync_all()?;
    let mut wal = open_log(&dir.join("wal"), Log::Checkpointed, None)?;
    let mut ckpt = Checkpoints::new(&wal, Log::Checkpointed);
    let (mut t_wal, mut t_probe, mut i) = (0f64, 0f64, 0u64);
    for epoch in 0..2 * epochs {
        let wal_turn = (epoch % 2 == 0) == ((epoch / 2) % 2 == 0);
        let t = Instant::now();
        if wal_turn {
            for _ in 0..1000 {
                wal.append(1, 0, 0, noise.payload(i, 4096))?;
                ckpt.after_append(&wal)?;
                i += 1;
            }
            wal.sync()?;
            t_wal += t.elapsed().as_secs_f64();
        } else {
            // A different 4 MiB each time (the buffer's first or second page on).
            let k = epoch / 2;
            let at = (k % 2) as usize * 4096;
            stamp(&mut buf[at..at + CHUNK]);
            f.write_all_at(&buf[at..at + CHUNK], (k % FILE_CHUNKS) * CHUNK as u64)?;
            f.sync_data()?;
            t_probe += t.elapsed().as_secs_f64();
        }
    }
    drop(f);
    std::fs::remove_file(probe_path)?;
    let mb = epochs as f64 * 1000.0 * 4096.0 / 1e6;
    Ok((mb / t_wal, epochs as f64 * CHUNK as f64 / 1e6 / t_probe))
}

/// W4: `threads` threads each commit `per_thread` 128-byte records through
/// one `WalHandle`, waiting for each. Returns (records/s, p99 latency ms).
#[allow(dead_code)] // benches/wal.rs; the CLI wants the stats too
pub fn w4(dir: &Path, threads: usize, per_thread: usize, tick: &(dyn Fn(u64) + Sync)) -> BenchResult<(f64, f64)> {
    w4_scraped(dir, threads, per_thread, Scrape::No, tick).map(|(rate, p99, _)| (rate, p99))
}

/// W4 with `scrape` beside it; also returns the WAL's stats at the end.
pub fn w4_scraped(
    dir: &Path,
    threads: usize,
    per_thread: usize,
    scrape: Scrape,
    tick: &(dyn Fn(u64) + Sync),
) -> BenchResult<(f64, f64, StatsSnapshot)> {
    let wal = WalHandle::open(SegmentedWalConfig::new(dir.into()))?;
    let noise = Noise::new();
    let t = Instant::now();
    let mut lat: Vec<f64> =
        scraping(wal.stats_handle(), scrape, || w4_threads(&wal, &noise, threads, per_thread, tick))?;
    let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok((rate, lat[(lat.len() * 99 / 100).min(lat.len() - 1)] * 1e3, wal.stats_snapshot()))
}

/// W4's committing threads; each commit's latency in seconds.
fn w4_threads(
    wal: &WalHandle,
    noise: &Noise,
    threads: usize,
    per_thread: usize,
    tick: &(dyn Fn(u64) + Sync),
) -> BenchResult<Vec<f64>> {
    let lat = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|k| {
                let (wal, noise) = (wal.clone(), noise);
                s.spawn(move || -> directwal::Result<Vec<f64>> {
                    let mut lat = Vec::with_capacity(per_thread);
                    for i in 0..per_thread {
                        let t = Instant::now();
                        wal.append_durable(1, 0, 0, noise.payload((i * threads + k) as u64, 128))?;
                        lat.push(t.elapsed().as_secs_f64());
                        tick(1);
                    }
                    Ok(lat)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(threads * per_thread);
        for w in workers {
            all.extend(w.join().expect("a W4 thread panicked")?);
        }
        Ok::<_, directwal::WalError>(all)
    })?;
    Ok(lat)
}

/// W5 result.
pub struct W5 {
    /// Seconds to open (recover) the log, cold.
    pub open_s: f64,
    /// Records replayed per second, cold.
    pub rate: f64,
    /// Megabytes of log replayed per second.
    pub mb_s: f64,
    /// Records replayed.
    pub records: u64,
}

/// How W5 replays.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // the CLI replays one way
pub enum Replay {
    /// `visit_durable`: payloads lent from the mapping.
    Borrowed,
    /// `for_each_durable`: an owned `WalRecord` per record.
    Owned,
}

/// W5: reopen the log in `dir` from a cold cache and replay all of it.
pub fn w5(dir: &Path, ring: Option<&KeyRing>, how: Replay, tick: &dyn Fn(u64)) -> BenchResult<W5> {
    evict_dir(dir)?;
    let t = Instant::now();
    let mut wal = SegmentedWal::open(SegmentedWalConfig::new(dir.into()))?;
    let open_s = t.elapsed().as_secs_f64();
    if let Some(ring) = ring {
        wal.set_encryption_ring(ring.clone())?;
    }
    evict_dir(dir)?;
    let t = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut count = |len: usize| {
        records += 1;
        bytes += directwal::layout::record_size(len) as u64;
        if records.is_multiple_of(65_536) {
            tick(65_536);
        }
    };
    match how {
        Replay::Borrowed => {
            wal.visit_durable(0, |rec| {
                count(std::hint::black_box(rec.payload).len());
                true
            })?;
        }
        Replay::Owned => {
            wal.for_each_durable(0, usize::MAX, |rec| count(std::hint::black_box(rec.payload).len()))?;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    tick(records % 65_536);
    Ok(W5 { open_s, rate: records as f64 / secs, mb_s: bytes as f64 / 1e6 / secs, records })
}
