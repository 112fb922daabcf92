//! The workloads W1, W2, W3, W5 (docs/BENCHMARKS.md) beside device-ceiling probes, measured
//! in one run and interleaved (the machine is shared and noisy): medians of
//! `ROUNDS` rounds, and ratios as medians of the per-round ratios. Run: `cargo bench --bench wal`.
//! Environment: DIRECTWAL_BENCH_DIR (default: the target tmp dir, which must
//! be on the disk under test), DIRECTWAL_BENCH_ROUNDS (default 3),
//! DIRECTWAL_BENCH_ONLY (comma-separated groups: w1, w2, w3, w4, w5, readers, open, stats;
//! default all; rows whose figures were not measured are left out).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::{SegmentedWal, SegmentedWalConfig, WalReader};

// The workloads and probes `directwal bench` runs, so both measure the same.
#[path = "../cli/src/workloads.rs"]
mod workloads;
use workloads::{Log, Scrape, Space, evict, median};
#[path = "support/coldread.rs"]
mod coldread;
#[path = "support/replay.rs"]
mod replay;

const W1_RECORDS: u64 = 3_000;
const W2_RECORDS: u64 = 1_000_000;
const W3_RECORDS: u64 = 32_000;
const W3_SYNC_EVERY: u64 = 1_000;

fn fresh(base: &Path, name: &str) -> PathBuf {
    workloads::fresh(base, name).unwrap()
}

fn no_tick(_: u64) {}

fn probe_sync_writes(dir: &Path, block: usize, count: u64, space: Space) -> f64 {
    workloads::probe_sync_writes(dir, block, count, space, &no_tick).unwrap()
}

fn cfg(dir: &Path) -> SegmentedWalConfig {
    SegmentedWalConfig::new(dir.into())
}

fn ring() -> KeyRing {
    KeyRing::new(WalEncryptionKey::from_bytes(&[0x42; 32]))
}

fn w1(base: &Path, prepare_chunk: Option<u64>, encrypted: bool) -> workloads::W1 {
    let mut c = cfg(&fresh(base, "w1"));
    if let Some(chunk) = prepare_chunk {
        c.writer_config.prepare_chunk_size = chunk;
    }
    let r = workloads::w1(c, W1_RECORDS, encrypted.then(ring).as_ref(), &no_tick).unwrap();
    assert!(r.direct_io, "bench directory must support O_DIRECT");
    r
}

fn w2(base: &Path, log: Log) -> (f64, PathBuf) {
    let dir = fresh(base, if log == Log::Fresh { "w2" } else { "w2c" });
    (workloads::w2(&dir, W2_RECORDS, log, &no_tick).unwrap(), dir)
}

fn w3(base: &Path, log: Log, encrypted: bool) -> f64 {
    let dir = fresh(base, "w3");
    workloads::w3(&dir, W3_RECORDS, W3_SYNC_EVERY, log, encrypted.then(ring).as_ref(), &no_tick).unwrap()
}

fn w4(base: &Path, threads: usize, per_thread: usize) -> (f64, f64) {
    workloads::w4(&fresh(base, "w4"), threads, per_thread, &no_tick).unwrap()
}

/// Microseconds one stats snapshot takes, on a WAL with a follower.
fn snapshot_cost(base: &Path) -> f64 {
    let mut wal = SegmentedWal::open(cfg(&fresh(base, "snap"))).unwrap();
    wal.append(1, 0, 0, b"x").unwrap();
    wal.sync().unwrap();
    let (stats, _cursor) = (wal.stats_handle(), wal.reader().cursor(1));
    let t = Instant::now();
    for _ in 0..10_000 {
        std::hint::black_box(stats.snapshot());
    }
    t.elapsed().as_secs_f64() * 1e6 / 10_000.0
}

/// Reopen W2's log (cold cache) and page through it with a cursor in
/// 10k-record pages: records/s.
fn w5p(dir: &Path) -> f64 {
    let segs: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    let wal = SegmentedWal::open(cfg(dir)).unwrap();
    segs.iter().for_each(|p| evict(p));
    let t = Instant::now();
    let mut cursor = wal.reader().cursor(0);
    let mut n = 0u64;
    loop {
        let page = cursor.next_page(10_000, usize::MAX).unwrap();
        n += page.records.len() as u64;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(n, W2_RECORDS);
    n as f64 / t.elapsed().as_secs_f64()
}

/// How a follower takes its records.
#[derive(Clone, Copy)]
enum Follow {
    /// Pages of owned records (`WalCursor::next_page`).
    Owned,
    /// Pages in one reused `PageBuf` (`WalCursor::next_page_into`).
    Reused,
    /// Records lent from the log (`WalReader::visit`).
    Lent,
}

/// A follower's check of the record it takes: the one it expects, `next`.
fn saw(next: &mut u64, r: directwal::RecordRef<'_>) {
    assert_eq!(r.header.lsn, *next, "a follower sees every durable record once, in order");
    std::hint::black_box(r.payload);
    *next += 1;
}

/// Followers of one measured block: `n` threads that read from `from_lsn`
/// 1,000 records at a time, polling every millisecond once caught up, as
/// replication followers do.
struct Followers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Followers {
    /// Starts `n` followers and returns once each has read its first page.
    fn start(reader: &WalReader, n: usize, from_lsn: u64, how: Follow) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ready = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
        let threads = (0..n)
            .map(|_| {
                let (reader, stop, ready) = (reader.clone(), stop.clone(), ready.clone());
                std::thread::spawn(move || {
                    let mut cursor = reader.cursor(from_lsn);
                    let mut buf = directwal::PageBuf::new();
                    let mut next = from_lsn;
                    // One page: (records read, whether more are durable).
                    let mut page = || -> (u64, bool) {
                        let first = next;
                        let more = match how {
                            Follow::Lent => reader
                                .visit(next, |r| {
                                    if next - first == 1_000 {
                                        return false;
                                    }
                                    saw(&mut next, r);
                                    true
                                })
                                .unwrap(),
                            Follow::Reused => {
                                cursor.next_page_into(&mut buf, 1_000, usize::MAX).unwrap();
                                buf.iter().for_each(|r| saw(&mut next, r));
                                buf.has_more()
                            }
                            Follow::Owned => {
                                let page = cursor.next_page(1_000, usize::MAX).unwrap();
                                page.records.iter().for_each(|r| {
                                    saw(&mut next, directwal::RecordRef { header: r.header, payload: &r.payload })
                                });
                                page.has_more
                            }
                        };
                        (next - first, more)
                    };
                    page();
                    ready.wait();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if page().0 == 0 {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                    }
                    // Untimed: the rest of what the block made durable.
                    while page().1 {}
                    next - from_lsn
                })
            })
            .collect();
        ready.wait();
        Followers { stop, threads }
    }

    /// Stops the followers; asserts each read exactly the `records` made
    /// durable since it started.
    fn finish(self, records: u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            assert_eq!(t.join().unwrap(), records, "every durable record reaches every follower");
        }
    }
}

/// The writer with and without `readers` followers, interleaved block by
/// block in one WAL (order ABBA…, so both variants see the same moments of
/// this shared disk; followers start and stop outside the timed part).
/// W1: blocks of 300 durable 128 B records. W2: blocks of 50k records with
/// a sync every 10k. Returns records/s: (W1 with, W1 without, W2 with, W2 without).
fn writers_with_readers(base: &Path, readers: usize, blocks: usize, how: Follow) -> (f64, f64, f64, f64) {
    let noise = workloads::Noise::new();
    let run = |name: &str, per_block: u64, sync_every: u64| {
        let mut wal = SegmentedWal::open(cfg(&fresh(base, name))).unwrap();
        let (mut t_with, mut t_without, mut i) = (0f64, 0f64, 0u64);
        // Two untimed blocks first, one each way: the first block with
        // readers makes the buffers they keep shared (I18), once.
        for b in 0..2 * blocks + 2 {
            let warm_up = b < 2;
            let with = if warm_up { b == 0 } else { (b % 2 == 0) == ((b / 2) % 2 == 0) };
            let followers = with.then(|| Followers::start(&wal.reader(), readers, wal.next_lsn(), how));
            let t = Instant::now();
            for _ in 0..per_block {
                wal.append(1, 0, 0, noise.payload(i, 128)).unwrap();
                i += 1;
                if i.is_multiple_of(sync_every) {
                    wal.sync().unwrap();
                }
            }
            wal.sync().unwrap();
            let e = if warm_up { 0.0 } else { t.elapsed().as_secs_f64() };
            match followers {
                Some(f) => {
                    t_with += e;
                    f.finish(per_block);
                }
                None => t_without += e,
            }
        }
        let n = (blocks as u64 * per_block) as f64;
        (n / t_with, n / t_without)
    };
    let (w1_with, w1_without) = run("wr1", 300, 1);
    let (w2_with, w2_without) = run("wr2", 50_000, 10_000);
    (w1_with, w1_without, w2_with, w2_without)
}

/// Open time (the target of docs/BENCHMARKS.md): 1 GiB of sealed segments and a full active segment
/// that a crash left unsealed (so open scans it), 128 B records; the open
/// timed from a cold cache. Returns (seconds, records recovered by the scan).
fn open_time(base: &Path) -> (f64, u64) {
    let dir = fresh(base, "open");
    let mut wal = SegmentedWal::open(cfg(&dir)).unwrap();
    let noise = workloads::Noise::new();
    let record = directwal::layout::record_size(128) as u64;
    let data_start = directwal::layout::data_start(directwal::DEFAULT_ALIGNMENT) as u64;
    let per_segment = (directwal::DEFAULT_SEGMENT_TARGET_SIZE - data_start) / record;
    for i in 0..17 * per_segment {
        wal.append(1, 0, 0, noise.payload(i, 128)).unwrap();
    }
    wal.sync().unwrap();
    let segs = wal.list_segments().unwrap();
    assert_eq!(segs.len(), 17, "16 sealed + 1 full active segment");
    let sealed: u64 = segs[..16].iter().map(|s| s.used_bytes).sum();
    assert!(sealed >= 1 << 30, "{sealed} sealed bytes");
    wal.simulate_crash();
    workloads::evict_dir(&dir).unwrap();
    let t = Instant::now();
    let wal = SegmentedWal::open(cfg(&dir)).unwrap();
    let secs = t.elapsed().as_secs_f64();
    (secs, wal.recovery_report().recovered_records)
}

/// Reopen W2's log (cold cache) and replay it: (open s, records/s, MB/s).
fn w5(dir: &Path, how: workloads::Replay) -> (f64, f64, f64) {
    let r = workloads::w5(dir, None, how, &no_tick).unwrap();
    assert_eq!(r.records, W2_RECORDS);
    (r.open_s, r.rate, r.mb_s)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`:
    // measuring a debug build would be meaningless, so only say how to run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("wal bench: run with `cargo bench --bench wal`");
        return;
    }
    let base = std::env::var_os("DIRECTWAL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench"));
    std::fs::create_dir_all(&base).unwrap();
    let rounds: usize = std::env::var("DIRECTWAL_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    println!("directwal bench in {} ({rounds} rounds, medians)", base.display());

    let only = std::env::var("DIRECTWAL_BENCH_ONLY").unwrap_or_default();
    let run = |group: &str| only.is_empty() || only.split(',').any(|g| g.trim() == group);

    let mut m: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut push = |k: &'static str, v: f64| m.entry(k).or_default().push(v);
    for r in 0..rounds {
        eprintln!("round {}/{rounds}", r + 1);
        if run("w1") {
            push("ceiling_4k_zero_filled", probe_sync_writes(&base, 4096, W1_RECORDS, Space::ZeroFilled));
            push("ceiling_4k_growing", probe_sync_writes(&base, 4096, W1_RECORDS, Space::Grow));
            let a = w1(&base, None, false);
            push("w1", a.rate);
            push("w1_bytes_per_record", a.bytes_per_record);
            push("w1_enc", w1(&base, None, true).rate);
            push("w1_grow_per_block", w1(&base, Some(4096), false).rate);
        }
        let w2dir = if run("w2") || run("w5") {
            let (rate, w2dir) = w2(&base, Log::Fresh);
            push("w2", rate);
            if run("w2") {
                push("w2_ckpt", w2(&base, Log::Checkpointed).0);
                let (w2, raw) = workloads::w2_against_raw(&base, W2_RECORDS, 2).unwrap();
                push("w2_paired", w2);
                push("w2_raw", raw);
            }
            Some(w2dir)
        } else {
            None
        };
        if run("w3") {
            push("ceiling_4m_prefilled_mbs", probe_sync_writes(&base, 4 << 20, 32, Space::ZeroFilled) * 4.194304);
            push("w3_mbs", w3(&base, Log::Fresh, false));
            push("w3_ckpt_mbs", w3(&base, Log::Checkpointed, false));
            push("w3_enc_mbs", w3(&base, Log::Fresh, true));
            push("ceiling_4m_growing_mbs", probe_sync_writes(&base, 4 << 20, 32, Space::Grow) * 4.194304);
            push("ceiling_4m_fallocated_mbs", probe_sync_writes(&base, 4 << 20, 32, Space::Fallocated) * 4.194304);
            let (w3, probe) = workloads::w3_interleaved(&fresh(&base, "w3i"), 64).unwrap();
            push("w3_interleaved_mbs", w3);
            push("ceiling_interleaved_mbs", probe);
        }
        if let Some(w2dir) = w2dir.as_deref().filter(|_| run("w5")) {
            let (open_s, rec_s, mbs) = w5(w2dir, workloads::Replay::Borrowed);
            push("w5_open_s", open_s);
            push("w5_rec_s", rec_s);
            push("w5_mbs", mbs);
            let (_, rec_s, mbs) = w5(w2dir, workloads::Replay::Owned);
            push("w5_owned_rec_s", rec_s);
            push("w5_owned_mbs", mbs);
            push("w5p_rec_s", w5p(w2dir));
            push("seq_read_mbs", workloads::probe_seq_read(w2dir).unwrap());
            let plain = replay::write_plain(&base, W2_RECORDS);
            for (k, v) in replay::round(w2dir, &plain, W2_RECORDS, r) {
                push(k, v);
            }
            let spans = coldread::sealed_spans(w2dir);
            let record = directwal::layout::record_size(128);
            for i in 0..coldread::STRATEGIES.len() {
                let s = coldread::STRATEGIES[(i + r) % coldread::STRATEGIES.len()];
                push(s.key(), coldread::measure(s, &spans, record));
            }
        }
        if run("w4") {
            let (r4, p4) = w4(&base, 4, 2_000);
            push("w4_4", r4);
            push("w4_4_p99_ms", p4);
            let (r32, p32) = w4(&base, 32, 500);
            push("w4_32", r32);
            push("w4_32_p99_ms", p32);
        }
        if run("open") {
            let (secs, scanned) = open_time(&base);
            push("open_1g_s", secs);
            push("open_1g_scanned", scanned as f64);
        }
        if run("readers") {
            let (w1_4, w1_0, w2_4, w2_0) = writers_with_readers(&base, 4, 10, Follow::Owned);
            push("w1_no_readers", w1_0);
            push("w1_4_readers", w1_4);
            push("w2s_no_readers", w2_0);
            push("w2s_4_readers", w2_4);
            let (w1_4, w1_0, w2_4, w2_0) = writers_with_readers(&base, 4, 10, Follow::Reused);
            push("w1_no_reusers", w1_0);
            push("w1_4_reusers", w1_4);
            push("w2s_no_reusers", w2_0);
            push("w2s_4_reusers", w2_4);
            let (w1_4, w1_0, w2_4, w2_0) = writers_with_readers(&base, 4, 10, Follow::Lent);
            push("w1_no_lenders", w1_0);
            push("w1_4_lenders", w1_4);
            push("w2s_no_lenders", w2_0);
            push("w2s_4_lenders", w2_4);
        }
        if run("stats") {
            // Beside W1 and W4(32): nothing, a thread waking every 1 ms
            // (the control), or one reading the stats every 1 ms.
            // Alternated; the order rotates by round.
            push("stats_snapshot_us", snapshot_cost(&base));
            let modes = [Scrape::No, Scrape::Idle, Scrape::Stats];
            for k in 0..3 {
                let how = modes[(k + r) % 3];
                let w1 = workloads::w1_scraped(cfg(&fresh(&base, "w1s")), 1_000, None, how, &no_tick).unwrap();
                let (w4, p99, _) = workloads::w4_scraped(&fresh(&base, "w4s"), 32, 300, how, &no_tick).unwrap();
                eprintln!("  stats: {how:?} W1 {:.0} rec/s, W4(32) {w4:.0} rec/s p99 {p99:.2} ms", w1.rate);
                let keys = match how {
                    Scrape::No => ["w1_unscraped", "w4_32_unscraped", "w4_32_unscraped_p99_ms"],
                    Scrape::Idle => ["w1_idle", "w4_32_idle", "w4_32_idle_p99_ms"],
                    Scrape::Stats => ["w1_scraped", "w4_32_scraped", "w4_32_scraped_p99_ms"],
                };
                push(keys[0], w1.rate);
                push(keys[1], w4);
                push(keys[2], p99);
            }
        }
    }
    let med: BTreeMap<&str, f64> = m.iter().map(|(k, v)| (*k, median(&mut v.clone()))).collect();
    // A figure not measured (DIRECTWAL_BENCH_ONLY) is NaN; its rows are left out.
    let g = |k: &str| med.get(k).copied().unwrap_or(f64::NAN);
    // Ratios are medians of the per-round ratios: both sides of a round
    // ran minutes apart at most, so slow drifts of this shared machine cancel.
    let ratio = |a: &str, b: &str| match (m.get(a), m.get(b)) {
        (Some(x), Some(y)) if x.len() == y.len() => {
            let mut r: Vec<f64> = x.iter().zip(y).map(|(x, y)| x / y).collect();
            median(&mut r)
        }
        _ => f64::NAN,
    };
    let header_plus_payload = (128 + directwal::layout::RECORD_HEADER_LEN) as f64;
    let mut table = String::new();
    // Rows are written here, then printed without those holding NaN.
    macro_rules! println {
        ($($t:tt)*) => {{
            table.push_str(&format!($($t)*));
            table.push('\n');
        }};
    }
    println!("| workload | result | reference | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| device ceiling: 4 KiB O_DIRECT pwrite+fdatasync | {:.0}/s zero-filled | {:.0}/s growing file | {:.2} | |",
        g("ceiling_4k_zero_filled"),
        g("ceiling_4k_growing"),
        ratio("ceiling_4k_zero_filled", "ceiling_4k_growing")
    );
    println!(
        "| W1 128 B, each durable | {:.0} rec/s | ceiling {:.0}/s | {:.3} | >= 0.95 |",
        g("w1"),
        g("ceiling_4k_zero_filled"),
        ratio("w1", "ceiling_4k_zero_filled")
    );
    println!(
        "| W1 encrypted (AES-256-GCM) | {:.0} rec/s | plain W1 {:.0} | {:.3} | >= 0.95 |",
        g("w1_enc"),
        g("w1"),
        ratio("w1_enc", "w1")
    );
    println!(
        "| W1 zero-filling one block at a time (prepare_chunk_size = 4096) | {:.0} rec/s | W1 {:.0} | {:.3} | |",
        g("w1_grow_per_block"),
        g("w1"),
        ratio("w1_grow_per_block", "w1")
    );
    println!(
        "| W1 bytes on disk per record | {:.1} B | payload+header {header_plus_payload:.0} B | {:.3} | <= 1.3 |",
        g("w1_bytes_per_record"),
        g("w1_bytes_per_record") / header_plus_payload
    );
    println!("| W2 1M x 128 B, one sync | {:.0} rec/s | 3,000,000 | {:.3} | >= 1 |", g("w2"), g("w2") / 3e6);
    println!(
        "| W2, checkpointed log (segments recycled) | {:.0} rec/s | 3,000,000 | {:.3} | >= 1 |",
        g("w2_ckpt"),
        g("w2_ckpt") / 3e6
    );
    println!(
        "| W2 alternated with the disk writing the same bytes (4 MiB O_DIRECT writes, fdatasync per 64 MiB file) | {:.0} rec/s | raw writes {:.0} rec/s | {:.3} | |",
        g("w2_paired"),
        g("w2_raw"),
        ratio("w2_paired", "w2_raw")
    );
    println!(
        "| W3 4 KiB, sync every 1000 | {:.1} MB/s | pre-filled 4 MiB ceiling {:.1} MB/s | {:.3} | >= 0.9 |",
        g("w3_mbs"),
        g("ceiling_4m_prefilled_mbs"),
        ratio("w3_mbs", "ceiling_4m_prefilled_mbs")
    );
    println!(
        "| W3, checkpointed log (segments recycled) | {:.1} MB/s | pre-filled 4 MiB ceiling {:.1} MB/s | {:.3} | >= 0.9 |",
        g("w3_ckpt_mbs"),
        g("ceiling_4m_prefilled_mbs"),
        ratio("w3_ckpt_mbs", "ceiling_4m_prefilled_mbs")
    );
    println!(
        "| W3 in a checkpointed log, interleaved epoch by epoch with the pre-filled 4 MiB probe | {:.1} MB/s | probe {:.1} MB/s | {:.3} | >= 0.9 |",
        g("w3_interleaved_mbs"),
        g("ceiling_interleaved_mbs"),
        ratio("w3_interleaved_mbs", "ceiling_interleaved_mbs")
    );
    println!(
        "| W3 encrypted (AES-256-GCM) | {:.1} MB/s | plain W3 {:.1} MB/s | {:.3} | >= 0.7 |",
        g("w3_enc_mbs"),
        g("w3_mbs"),
        ratio("w3_enc_mbs", "w3_mbs")
    );
    println!(
        "| 4 MiB O_DIRECT pwrite+fdatasync, growing file | {:.1} MB/s | pre-filled {:.1} MB/s | {:.3} | |",
        g("ceiling_4m_growing_mbs"),
        g("ceiling_4m_prefilled_mbs"),
        ratio("ceiling_4m_growing_mbs", "ceiling_4m_prefilled_mbs")
    );
    println!(
        "| 4 MiB O_DIRECT pwrite+fdatasync, fallocated file | {:.1} MB/s | pre-filled {:.1} MB/s | {:.3} | |",
        g("ceiling_4m_fallocated_mbs"),
        g("ceiling_4m_prefilled_mbs"),
        ratio("ceiling_4m_fallocated_mbs", "ceiling_4m_prefilled_mbs")
    );
    println!(
        "| W5 replay of W2 (cold, `visit_durable`) | {:.0} rec/s, {:.1} MB/s | buffered seq read {:.1} MB/s | {:.3} | >= 0.8 |",
        g("w5_rec_s"),
        g("w5_mbs"),
        g("seq_read_mbs"),
        ratio("w5_mbs", "seq_read_mbs")
    );
    println!(
        "| W5 replay with an owned record each (`for_each_durable`) | {:.0} rec/s, {:.1} MB/s | lent (`visit_durable`) {:.1} MB/s | {:.3} | |",
        g("w5_owned_rec_s"),
        g("w5_owned_mbs"),
        g("w5_mbs"),
        ratio("w5_owned_mbs", "w5_mbs")
    );
    println!(
        "| W5p: W2's log in 10k-record pages (cold) | {:.0} rec/s | one full lending replay {:.0} rec/s | time {:.3} x | <= 1.2 x |",
        g("w5p_rec_s"),
        g("w5_rec_s"),
        ratio("w5_rec_s", "w5p_rec_s")
    );
    // Pages hand out owned records, as `replay` does: this row isolates
    // what paging itself costs.
    println!(
        "| W5p against a full replay with owned records (`for_each_durable`) | {:.0} rec/s | {:.0} rec/s | time {:.3} x | <= 1.2 x |",
        g("w5p_rec_s"),
        g("w5_owned_rec_s"),
        ratio("w5_owned_rec_s", "w5p_rec_s")
    );
    let w5_sides = [
        ("w5x_replay", "`replay()`, owned records in one `Vec`"),
        ("w5x_visit", "`visit_durable`, lent records"),
        ("w5x_paged", "`replay_from_limit` in 10k-record pages (owned)"),
        ("w5x_paged_lent", "`read_page_into` one reused `PageBuf`, 10k-record pages"),
        ("w5x_floor", "no reading: 1M owned `WalRecord`s built from memory (the floor of `replay()`)"),
    ];
    for (side, what) in w5_sides {
        println!(
            "| W5 side by side (cold, interleaved): {what} | {:.0} rec/s | plain file + 1 MiB BufReader + CRC32C {:.0} rec/s | {:.3} | {} |",
            g(side),
            g("w5x_plain"),
            ratio(side, "w5x_plain"),
            match side {
                "w5x_replay" => ">= 0.8",
                "w5x_visit" => ">= 0.9",
                _ => "",
            }
        );
    }
    println!(
        "| W5 side by side: `replay()` against paging (both owned) | {:.0} rec/s | 10k-record pages {:.0} rec/s | {:.3} | >= 1 |",
        g("w5x_replay"),
        g("w5x_paged"),
        ratio("w5x_replay", "w5x_paged")
    );
    println!(
        "| W5 side by side: `visit_durable` against a reused `PageBuf` | {:.0} rec/s | `PageBuf` pages {:.0} rec/s | {:.3} | |",
        g("w5x_visit"),
        g("w5x_paged_lent"),
        ratio("w5x_visit", "w5x_paged_lent")
    );
    for (key, what) in [
        ("cold_mmap32_mbs", "mapping + MADV_WILLNEED 32 MiB ahead"),
        ("cold_mmapseq_mbs", "mapping + MADV_SEQUENTIAL (kernel read-ahead on faults)"),
        ("cold_pread_mbs", "8 MiB buffered `pread`s into one reused buffer"),
        ("cold_direct_mbs", "8 MiB O_DIRECT `pread`s into one reused aligned buffer"),
        ("cold_pread2_mbs", "8 MiB buffered `pread`s on a second thread, CRCs overlapped"),
    ] {
        println!(
            "| cold read of W2's sealed segments + CRC32C per record: {what} | {:.1} MB/s | mapping + MADV_WILLNEED 8 MiB ahead (readers) {:.1} MB/s | {:.3} | |",
            g(key),
            g("cold_mmap_mbs"),
            ratio(key, "cold_mmap_mbs")
        );
    }
    println!(
        "| W1 with 4 readers following (interleaved blocks of 300 syncs) | {:.0} rec/s | without readers {:.0} | {:.3} | >= 0.9 |",
        g("w1_4_readers"),
        g("w1_no_readers"),
        ratio("w1_4_readers", "w1_no_readers")
    );
    println!(
        "| W2 (blocks of 50k, sync every 10k, interleaved) with 4 readers following | {:.0} rec/s | without readers {:.0} | {:.3} | >= 0.9 |",
        g("w2s_4_readers"),
        g("w2s_no_readers"),
        ratio("w2s_4_readers", "w2s_no_readers")
    );
    println!(
        "| W1 with 4 followers paging into a reused `PageBuf` (`next_page_into`, interleaved) | {:.0} rec/s | without readers {:.0} | {:.3} | >= 0.9 |",
        g("w1_4_reusers"),
        g("w1_no_reusers"),
        ratio("w1_4_reusers", "w1_no_reusers")
    );
    println!(
        "| W2 (blocks of 50k, sync every 10k) with 4 followers paging into a reused `PageBuf` | {:.0} rec/s | without readers {:.0} | {:.3} | >= 0.9 |",
        g("w2s_4_reusers"),
        g("w2s_no_reusers"),
        ratio("w2s_4_reusers", "w2s_no_reusers")
    );
    println!(
        "| W1 with 4 followers visiting lent records (`WalReader::visit`, interleaved) | {:.0} rec/s | without readers {:.0} | {:.3} | >= 0.9 |",
        g("w1_4_lenders"),
        g("w1_no_lenders"),
        ratio("w1_4_lenders", "w1_no_lenders")
    );
    println!(
        "| W2 (blocks of 50k, sync every 10k) with 4 followers visiting lent records | {:.0} rec/s | without readers {:.0} | {:.3} | >= 0.9 |",
        g("w2s_4_lenders"),
        g("w2s_no_lenders"),
        ratio("w2s_4_lenders", "w2s_no_lenders")
    );
    println!(
        "| W4 4 threads, 128 B, each waits | {:.0} rec/s, p99 {:.2} ms | okaywal 13,650/s (target) | {:.2} | >= 2 x okaywal |",
        g("w4_4"),
        g("w4_4_p99_ms"),
        g("w4_4") / 13_650.0
    );
    println!(
        "| W4 32 threads, 128 B, each waits | {:.0} rec/s, p99 {:.2} ms | 60,000 rec/s | {:.2} | >= 1, p99 < 2 ms |",
        g("w4_32"),
        g("w4_32_p99_ms"),
        g("w4_32") / 60_000.0
    );
    println!("| open of W2's log (cold, {} MB) | {:.4} s | | | |", W2_RECORDS * 160 / 1_000_000, g("w5_open_s"));
    println!(
        "| open: 1 GiB sealed + a full unsealed active segment ({:.0} records scanned), cold | {:.4} s | 0.2 s | {:.3} | <= 1 |",
        g("open_1g_scanned"),
        g("open_1g_s"),
        g("open_1g_s") / 0.2
    );
    println!("| one stats snapshot (StatsHandle::snapshot) | {:.2} µs | | | |", g("stats_snapshot_us"));
    for (w, scraped, idle, none) in [
        ("W1 1000 x 128 B", "w1_scraped", "w1_idle", "w1_unscraped"),
        ("W4 32 threads", "w4_32_scraped", "w4_32_idle", "w4_32_unscraped"),
    ] {
        println!(
            "| {w}, a thread reading stats every 1 ms | {:.0} rec/s | a thread only waking every 1 ms {:.0}/s (none: {:.0}/s, ratio {:.3}) | {:.3} | within 2% |",
            g(scraped),
            g(idle),
            g(none),
            ratio(scraped, none),
            ratio(scraped, idle)
        );
    }
    std::println!();
    for line in table.lines().filter(|l| !l.contains("NaN")) {
        std::println!("{line}");
    }
    if !g("w5x_plain").is_nan() {
        // W5's sides as docs/BENCHMARKS.md "Replay (owned records)" tables them.
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        std::println!("\nW5 for docs/BENCHMARKS.md ({rounds} rounds; load average at the end {load}):\n");
        std::println!(
            "| side (cold, interleaved) | rec/s | × plain file + BufReader + CRC32C ({:.2}M) |",
            g("w5x_plain") / 1e6
        );
        std::println!("|---|---|---|");
        for (side, what) in w5_sides {
            std::println!("| {what} | {:.2}M | {:.3} |", g(side) / 1e6, ratio(side, "w5x_plain"));
        }
        std::println!(
            "\n`replay()` / 10k pages {:.3}; `replay()` / its floor {:.3}; `visit_durable` / `PageBuf` pages {:.3}.",
            ratio("w5x_replay", "w5x_paged"),
            ratio("w5x_replay", "w5x_floor"),
            ratio("w5x_visit", "w5x_paged_lent")
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
