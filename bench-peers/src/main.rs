//! SPEC §8 workloads against directwal and its peers, in one run, one table.
//!
//! `cargo run --release -p bench-peers --ignore-rust-version` (nodedb-wal 0.6
//! declares a newer rust-version than this toolchain). Environment:
//! BENCH_DIR (default: ./target/tmp/peers, on the disk under test),
//! BENCH_ROUNDS (default 3; medians of interleaved rounds), BENCH_ONLY
//! (comma-separated workloads w1..w5 to run; default all; the others show 0),
//! BENCH_SKIP (comma-separated name prefixes of systems to leave out, e.g. `nodedb`).
//!
//! Durability is the same for everyone: a record counts as committed only
//! after an fdatasync covering it returned. raft-engine is durable only via
//! `write(batch, true)` (its `sync()` does not sync); okaywal's
//! `EntryWriter::commit` syncs; File + fdatasync is the floor.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const W1_N: usize = 2_000;
const W2_N: usize = 1_000_000;
const W3_N: usize = 16_000;
const W3_EVERY: usize = 1_000;
const W4_PER_THREAD_4: usize = 1_000;
const W4_PER_THREAD_32: usize = 300;

/// Whether workload `w` (w1..w5) is to run (BENCH_ONLY).
fn want(w: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|x| x.trim() == w))
}

#[path = "../../cli/src/noise.rs"]
#[allow(dead_code)] // `bytes` is for the probes of the other benches
mod noise;

/// Payload `i` of `len` bytes, incompressible (see `noise::Noise`: this
/// disk compresses, so constant payloads would measure its compressor).
fn pl(i: usize, len: usize) -> &'static [u8] {
    static NOISE: std::sync::OnceLock<noise::Noise> = std::sync::OnceLock::new();
    NOISE.get_or_init(noise::Noise::new).payload(i as u64, len)
}

fn fresh(base: &Path, name: &str) -> PathBuf {
    let p = base.join(name);
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// One durable commit of a payload, callable from many threads.
type Commit = Arc<dyn Fn(&[u8]) + Send + Sync>;
/// A system under test: runs every workload in a directory.
type System = (&'static str, fn(&Path) -> Row);
/// A table column: its title and how to read it from a row.
type Column = (&'static str, fn(&Row) -> f64);
/// A row of the W5 side-by-side table: its title, the system's index, and
/// how to read its W5 from that system's row.
type W5Side = (&'static str, usize, fn(&Row) -> f64);

/// (records/s) of `threads` threads each committing `per` records through `commit`.
fn threaded(threads: usize, per: usize, commit: Commit) -> f64 {
    let t = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let c = commit.clone();
            std::thread::spawn(move || {
                for j in 0..per {
                    c(pl(t * per + j, 128));
                }
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    (threads * per) as f64 / t.elapsed().as_secs_f64()
}

/// Results of one system: W1, W2, W3 (MB/s), W4(4), W4(32), W5.
#[derive(Default, Clone, Copy)]
struct Row {
    w1: f64,
    w2: f64,
    w3: f64,
    w4_4: f64,
    w4_32: f64,
    w5: f64,
    /// directwal only: W5 through `visit_durable` (records lent).
    w5_lent: f64,
    /// directwal only: W5 through `replay_from_limit` in 10k-record pages.
    w5_paged: f64,
}

/// Drops every file of `dir` from the page cache: W5 reads from the disk.
fn evict_dir(dir: &Path) {
    use std::os::fd::AsRawFd;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if let Ok(f) = File::open(&path) {
            let _ = f.sync_all();
            // SAFETY: posix_fadvise on a valid open descriptor; no memory is passed.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

fn rate(n: usize, t: Instant) -> f64 {
    n as f64 / t.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------- directwal
fn directwal(base: &Path) -> Row {
    use directwal::{SegmentedWal, SegmentedWalConfig, WalHandle};
    let mut r = Row::default();
    if want("w1") {
        let dir = fresh(base, "dw1");
        let mut w = SegmentedWal::open(SegmentedWalConfig::new(dir.to_path_buf())).unwrap();
        let t = Instant::now();
        for i in 0..W1_N {
            w.append(1, 0, 0, pl(i, 128)).unwrap();
            w.sync().unwrap();
        }
        r.w1 = rate(W1_N, t);
        drop(w);
    }
    if want("w2") || want("w5") {
        let dir = fresh(base, "dw2");
        let mut w = SegmentedWal::open(SegmentedWalConfig::new(dir.to_path_buf())).unwrap();
        let t = Instant::now();
        for i in 0..W2_N {
            w.append(1, 0, 0, pl(i, 128)).unwrap();
        }
        w.sync().unwrap();
        r.w2 = rate(W2_N, t);
        drop(w);
        // W5, cold, each way of reading: reopen and read everything.
        let reopen = || {
            evict_dir(&dir);
            (Instant::now(), SegmentedWal::open(SegmentedWalConfig::new(dir.clone())).unwrap())
        };
        let (t, w) = reopen();
        let all = w.replay().unwrap();
        r.w5 = rate(all.len(), t);
        assert_eq!(all.len(), W2_N);
        drop((all, w));
        let (t, w) = reopen();
        let mut n = 0usize;
        w.visit_durable(0, |rec| {
            std::hint::black_box(rec.payload);
            n += 1;
            true
        })
        .unwrap();
        r.w5_lent = rate(n, t);
        assert_eq!(n, W2_N);
        drop(w);
        let (t, w) = reopen();
        let (mut from, mut n) = (0u64, 0usize);
        loop {
            let (page, more) = w.replay_from_limit(from, 10_000).unwrap();
            n += page.len();
            from = page.last().map_or(from, |rec| rec.header.lsn + 1);
            if !more {
                break;
            }
        }
        r.w5_paged = rate(n, t);
        assert_eq!(n, W2_N);
    }
    if want("w3") {
        let dir = fresh(base, "dw3");
        let mut w = SegmentedWal::open(SegmentedWalConfig::new(dir.to_path_buf())).unwrap();
        let t = Instant::now();
        for i in 1..=W3_N {
            w.append(1, 0, 0, pl(i, 4096)).unwrap();
            if i % W3_EVERY == 0 {
                w.sync().unwrap();
            }
        }
        r.w3 = (W3_N * 4096) as f64 / 1e6 / t.elapsed().as_secs_f64();
        drop(w);
    }
    if want("w4") {
        for (threads, per, out) in [(4, W4_PER_THREAD_4, &mut r.w4_4), (32, W4_PER_THREAD_32, &mut r.w4_32)] {
            let dir = fresh(base, "dw4");
            let h = WalHandle::open(SegmentedWalConfig::new(dir.to_path_buf())).unwrap();
            *out = threaded(
                threads,
                per,
                Arc::new(move |p: &[u8]| {
                    h.append_durable(1, 0, 0, p).unwrap();
                }),
            );
        }
    }
    r
}

// --------------------------------------------------------------- nodedb-wal
fn nodedb(base: &Path) -> Row {
    use nodedb_wal::{SegmentedWal, SegmentedWalConfig};
    // 0.6 replays only record types it knows (others are skipped silently).
    const PUT: u32 = nodedb_wal::record::RecordType::Put as u32;
    let mut r = Row::default();
    if want("w1") {
        let dir = fresh(base, "nd1");
        let mut w = SegmentedWal::open(SegmentedWalConfig::new(dir.clone())).unwrap();
        let t = Instant::now();
        for i in 0..W1_N {
            w.append(PUT, 0, 0, 0, pl(i, 128)).unwrap();
            w.sync().unwrap();
        }
        r.w1 = rate(W1_N, t);
        drop(w);
    }
    if want("w2") || want("w5") {
        let dir = fresh(base, "nd2");
        let mut w = SegmentedWal::open(SegmentedWalConfig::new(dir.clone())).unwrap();
        let t = Instant::now();
        for i in 0..W2_N {
            w.append(PUT, 0, 0, 0, pl(i, 128)).unwrap();
        }
        w.sync().unwrap();
        r.w2 = rate(W2_N, t);
        drop(w);
        evict_dir(&dir);
        let t = Instant::now();
        let w = SegmentedWal::open(SegmentedWalConfig::new(dir.clone())).unwrap();
        let n = w.replay().unwrap().len();
        r.w5 = rate(n, t);
        if n != W2_N {
            eprintln!("nodedb-wal: replay after reopen returned {n} of {W2_N} acknowledged records; W5 reported as 0");
            r.w5 = 0.0;
        }
        drop(w);
    }
    if want("w3") {
        let dir = fresh(base, "nd3");
        let mut w = SegmentedWal::open(SegmentedWalConfig::new(dir.clone())).unwrap();
        let t = Instant::now();
        for i in 1..=W3_N {
            w.append(PUT, 0, 0, 0, pl(i, 4096)).unwrap();
            if i % W3_EVERY == 0 {
                w.sync().unwrap();
            }
        }
        r.w3 = (W3_N * 4096) as f64 / 1e6 / t.elapsed().as_secs_f64();
        drop(w);
    }
    if want("w4") {
        for (threads, per, out) in [(4, W4_PER_THREAD_4, &mut r.w4_4), (32, W4_PER_THREAD_32, &mut r.w4_32)] {
            let dir = fresh(base, "nd4");
            let w = Mutex::new(SegmentedWal::open(SegmentedWalConfig::new(dir.into())).unwrap());
            *out = threaded(
                threads,
                per,
                Arc::new(move |p: &[u8]| {
                    let mut w = w.lock().unwrap();
                    w.append(PUT, 0, 0, 0, p).unwrap();
                    w.sync().unwrap();
                }),
            );
        }
    }
    r
}

// ------------------------------------------------------------------ okaywal
#[derive(Debug, Default)]
struct Count(Arc<std::sync::atomic::AtomicUsize>);

impl okaywal::LogManager for Count {
    fn recover(&mut self, entry: &mut okaywal::Entry<'_>) -> std::io::Result<()> {
        while let okaywal::ReadChunkResult::Chunk(mut chunk) = entry.read_chunk()? {
            let _ = chunk.read_all()?;
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
    fn checkpoint_to(
        &mut self,
        _last: okaywal::EntryId,
        _entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

fn okay(base: &Path) -> Row {
    use okaywal::WriteAheadLog;
    let mut r = Row::default();
    let open = |d: &Path| WriteAheadLog::recover(d, Count::default()).unwrap();
    if want("w1") {
        let dir = fresh(base, "ok1");
        let w = open(&dir);
        let t = Instant::now();
        for i in 0..W1_N {
            let mut e = w.begin_entry().unwrap();
            e.write_chunk(pl(i, 128)).unwrap();
            e.commit().unwrap();
        }
        r.w1 = rate(W1_N, t);
        w.shutdown().unwrap();
    }
    if want("w2") {
        let dir = fresh(base, "ok2");
        let w = open(&dir);
        let t = Instant::now();
        let mut e = w.begin_entry().unwrap();
        for i in 0..W2_N {
            e.write_chunk(pl(i, 128)).unwrap();
        }
        e.commit().unwrap();
        r.w2 = rate(W2_N, t);
        w.shutdown().unwrap();
    }
    // W5: okaywal checkpoints a segment once 768 KiB are written (its
    // default), after which recovery has nothing to read. The log to replay
    // is written (untimed) with checkpointing off, and recovered likewise.
    if want("w5") {
        let dir = fresh(base, "ok5");
        let no_checkpoint = |d: &Path| okaywal::Configuration::default_for(d).checkpoint_after_bytes(u64::MAX);
        let w = no_checkpoint(&dir).open(Count::default()).unwrap();
        let mut e = w.begin_entry().unwrap();
        for i in 0..W2_N {
            e.write_chunk(pl(i, 128)).unwrap();
        }
        e.commit().unwrap();
        drop(w);
        let counter = Count::default();
        let seen = counter.0.clone();
        evict_dir(&dir);
        let t = Instant::now();
        let w = no_checkpoint(&dir).open(counter).unwrap();
        let n = seen.load(std::sync::atomic::Ordering::Relaxed);
        r.w5 = rate(n, t);
        if n != W2_N {
            eprintln!("okaywal: recovery saw {n} of {W2_N} chunks; W5 reported as 0");
            r.w5 = 0.0;
        }
        w.shutdown().unwrap();
    }
    if want("w3") {
        let dir = fresh(base, "ok3");
        let w = open(&dir);
        let t = Instant::now();
        for k in 0..W3_N / W3_EVERY {
            let mut e = w.begin_entry().unwrap();
            for j in 0..W3_EVERY {
                e.write_chunk(pl(k * W3_EVERY + j, 4096)).unwrap();
            }
            e.commit().unwrap();
        }
        r.w3 = (W3_N * 4096) as f64 / 1e6 / t.elapsed().as_secs_f64();
        w.shutdown().unwrap();
    }
    if want("w4") {
        for (threads, per, out) in [(4, W4_PER_THREAD_4, &mut r.w4_4), (32, W4_PER_THREAD_32, &mut r.w4_32)] {
            let dir = fresh(base, "ok4");
            let w = open(&dir);
            *out = threaded(
                threads,
                per,
                Arc::new(move |p: &[u8]| {
                    let mut e = w.begin_entry().unwrap();
                    e.write_chunk(p).unwrap();
                    e.commit().unwrap();
                }),
            );
        }
    }
    r
}

// -------------------------------------------------------------- raft-engine
fn raft(base: &Path) -> Row {
    use raft_engine::{Config, Engine, LogBatch};
    let mut r = Row::default();
    let open = |d: &Path| Engine::open(Config { dir: d.to_str().unwrap().to_owned(), ..Default::default() }).unwrap();
    if want("w1") {
        let dir = fresh(base, "re1");
        let e = open(&dir);
        let t = Instant::now();
        for i in 0..W1_N as u64 {
            let mut b = LogBatch::default();
            b.put(1, i.to_be_bytes().to_vec(), pl(i as usize, 128).to_vec()).unwrap();
            e.write(&mut b, true).unwrap();
        }
        r.w1 = rate(W1_N, t);
        drop(e);
    }
    if want("w2") || want("w5") {
        let dir = fresh(base, "re2");
        let e = open(&dir);
        let t = Instant::now();
        let mut b = LogBatch::default();
        for i in 0..W2_N as u64 {
            b.put(1, i.to_be_bytes().to_vec(), pl(i as usize, 128).to_vec()).unwrap();
            if i % 10_000 == 9_999 {
                e.write(&mut b, false).unwrap();
            }
        }
        e.write(&mut b, true).unwrap();
        r.w2 = rate(W2_N, t);
        drop(e);
        // W5 for raft-engine: reopening replays the whole log into its memtables.
        evict_dir(&dir);
        let t = Instant::now();
        let e = open(&dir);
        r.w5 = rate(W2_N, t);
        drop(e);
    }
    if want("w3") {
        let dir = fresh(base, "re3");
        let e = open(&dir);
        let t = Instant::now();
        let mut b = LogBatch::default();
        for i in 1..=W3_N as u64 {
            b.put(1, i.to_be_bytes().to_vec(), pl(i as usize, 4096).to_vec()).unwrap();
            if i % W3_EVERY as u64 == 0 {
                e.write(&mut b, true).unwrap();
            }
        }
        r.w3 = (W3_N * 4096) as f64 / 1e6 / t.elapsed().as_secs_f64();
        drop(e);
    }
    if want("w4") {
        for (threads, per, out) in [(4, W4_PER_THREAD_4, &mut r.w4_4), (32, W4_PER_THREAD_32, &mut r.w4_32)] {
            let dir = fresh(base, "re4");
            let e = Arc::new(open(&dir));
            let key = Arc::new(std::sync::atomic::AtomicU64::new(0));
            *out = threaded(
                threads,
                per,
                Arc::new(move |p: &[u8]| {
                    let k = key.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let mut b = LogBatch::default();
                    b.put(1, k.to_be_bytes().to_vec(), p.to_vec()).unwrap();
                    e.write(&mut b, true).unwrap();
                }),
            );
        }
    }
    r
}

// ------------------------------------------------------------ File + fdatasync
fn file(base: &Path) -> Row {
    let mut r = Row::default();
    let dir = fresh(base, "f");
    let open = |n: &str| OpenOptions::new().create(true).append(true).open(dir.join(n)).unwrap();
    if want("w1") {
        let mut f = open("w1");
        let t = Instant::now();
        for i in 0..W1_N {
            f.write_all(pl(i, 128)).unwrap();
            f.sync_data().unwrap();
        }
        r.w1 = rate(W1_N, t);
    }
    if want("w2") {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, open("w2"));
        let t = Instant::now();
        for i in 0..W2_N {
            f.write_all(pl(i, 128)).unwrap();
        }
        let f: File = f.into_inner().unwrap();
        f.sync_data().unwrap();
        r.w2 = rate(W2_N, t);
    }
    if want("w3") {
        let mut f = std::io::BufWriter::with_capacity(4 << 20, open("w3"));
        let t = Instant::now();
        for i in 1..=W3_N {
            f.write_all(pl(i, 4096)).unwrap();
            if i % W3_EVERY == 0 {
                f.flush().unwrap();
                f.get_ref().sync_data().unwrap();
            }
        }
        r.w3 = (W3_N * 4096) as f64 / 1e6 / t.elapsed().as_secs_f64();
    }
    if want("w5") {
        r.w5 = plain_file_w5(&dir);
    }
    if want("w4") {
        for (threads, per, out) in [(4, W4_PER_THREAD_4, &mut r.w4_4), (32, W4_PER_THREAD_32, &mut r.w4_32)] {
            let f = Mutex::new(open(&format!("w4-{threads}")));
            *out = threaded(
                threads,
                per,
                Arc::new(move |p: &[u8]| {
                    let mut f = f.lock().unwrap();
                    f.write_all(p).unwrap();
                    f.sync_data().unwrap();
                }),
            );
        }
    }
    r
}

/// W5's baseline: W2's records in a plain file as `len u32 | crc32c u32 |
/// payload` (written untimed), read from a cold cache with a 1 MiB
/// `BufReader`, checking each record's CRC32C: records/s.
fn plain_file_w5(dir: &Path) -> f64 {
    use std::io::Read;
    let path = dir.join("w5");
    let mut f = std::io::BufWriter::with_capacity(1 << 20, File::create(&path).unwrap());
    for i in 0..W2_N {
        let p = pl(i, 128);
        f.write_all(&(p.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&crc32c::crc32c(p).to_le_bytes()).unwrap();
        f.write_all(p).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    evict_dir(dir);
    let t = Instant::now();
    let mut f = std::io::BufReader::with_capacity(1 << 20, File::open(&path).unwrap());
    let (mut head, mut payload, mut n) = ([0u8; 8], Vec::new(), 0usize);
    while f.read_exact(&mut head).is_ok() {
        payload.resize(u32::from_le_bytes(head[..4].try_into().unwrap()) as usize, 0);
        f.read_exact(&mut payload).unwrap();
        assert_eq!(crc32c::crc32c(&payload), u32::from_le_bytes(head[4..].try_into().unwrap()));
        n += 1;
    }
    assert_eq!(n, W2_N);
    rate(n, t)
}

fn main() {
    let base = std::env::var_os("BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target/tmp/peers"));
    std::fs::create_dir_all(&base).unwrap();
    let systems: [System; 5] = [
        ("directwal", directwal),
        ("nodedb-wal 0.6", nodedb),
        ("okaywal 0.3", okay),
        ("raft-engine 0.4", raft),
        ("File+fdatasync", file),
    ];
    // Rounds interleave the systems (rotating who goes first, since the
    // disk is shared and noisy); each cell is the median over rounds.
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut runs: Vec<Vec<Row>> = vec![Vec::new(); systems.len()];
    let skip = std::env::var("BENCH_SKIP").unwrap_or_default();
    let skipped = |name: &str| skip.split(',').any(|p| !p.trim().is_empty() && name.starts_with(p.trim()));
    for round in 0..rounds {
        for k in 0..systems.len() {
            let i = (k + round) % systems.len();
            if skipped(systems[i].0) {
                runs[i].push(Row::default());
                continue;
            }
            eprintln!("round {}/{rounds}: {} ...", round + 1, systems[i].0);
            runs[i].push((systems[i].1)(&base));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let rows: Vec<(&str, Row)> = systems
        .iter()
        .zip(&runs)
        .map(|((name, _), rs)| {
            let m = |g: fn(&Row) -> f64| median(&mut rs.iter().map(g).collect());
            let row = Row {
                w1: m(|r| r.w1),
                w2: m(|r| r.w2),
                w3: m(|r| r.w3),
                w4_4: m(|r| r.w4_4),
                w4_32: m(|r| r.w4_32),
                w5: m(|r| r.w5),
                w5_lent: m(|r| r.w5_lent),
                w5_paged: m(|r| r.w5_paged),
            };
            (*name, row)
        })
        .collect();
    println!("medians of {rounds} interleaved rounds");
    let _ = std::fs::remove_dir_all(&base);
    let cols: [Column; 6] = [
        ("W1 rec/s", |r| r.w1),
        ("W2 rec/s", |r| r.w2),
        ("W3 MB/s", |r| r.w3),
        ("W4(4) rec/s", |r| r.w4_4),
        ("W4(32) rec/s", |r| r.w4_32),
        ("W5 rec/s", |r| r.w5),
    ];
    print!("| system |");
    cols.iter().for_each(|(c, _)| print!(" {c} |"));
    println!();
    println!("|---|{}", "---|".repeat(cols.len()));
    for (name, r) in &rows {
        print!("| {name} |");
        cols.iter().for_each(|(_, g)| print!(" {:.0} |", g(r)));
        println!();
    }
    print!("| directwal / best peer |");
    for (_, g) in &cols {
        let best = rows[1..rows.len() - 1].iter().map(|(_, r)| g(r)).fold(0.0, f64::max);
        print!(" {:.2} |", g(&rows[0].1) / best);
    }
    println!();
    println!(
        "(W5, cold: directwal's is `replay()`, owned records; File+fdatasync's is the plain-file baseline; raft-engine's is its reopen, which replays the log)"
    );
    w5_side_by_side(&systems, &runs);
}

/// W5 side by side: every way of reading W2's records back, cold, against
/// the plain-file baseline (File+fdatasync's W5); ratios are medians of the
/// per-round ratios, as rounds interleave the systems.
fn w5_side_by_side(systems: &[System], runs: &[Vec<Row>]) {
    let base = systems.iter().position(|(name, _)| name.starts_with("File")).expect("the File row");
    let sides: [W5Side; 7] = [
        ("plain file + 1 MiB BufReader + CRC32C (baseline)", base, |r| r.w5),
        ("directwal `replay_from_limit` in 10k-record pages", 0, |r| r.w5_paged),
        ("directwal `visit_durable` (lent records)", 0, |r| r.w5_lent),
        ("directwal `replay()` (owned records)", 0, |r| r.w5),
        ("okaywal 0.3 recovery", 2, |r| r.w5),
        ("raft-engine 0.4 reopen", 3, |r| r.w5),
        ("nodedb-wal 0.6 `replay()`", 1, |r| r.w5),
    ];
    println!();
    println!("| W5 reader of the same 1M records, cold | rec/s | x baseline |");
    println!("|---|---|---|");
    for (what, i, g) in sides {
        let mut v: Vec<f64> = runs[i].iter().map(g).collect();
        let mut r: Vec<f64> = runs[i].iter().zip(&runs[base]).map(|(a, b)| g(a) / b.w5).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        r.sort_by(|a, b| a.total_cmp(b));
        println!("| {what} | {:.0} | {:.2} |", v[v.len() / 2], r[r.len() / 2]);
    }
}
