//! Measurements beside the cluster runs (docs/BENCHMARKS.md).

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use directwal::SegmentedWalConfig;
use directwal::raft::LogStore;
use harness::{Bench, Set};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

fn quantiles(mut us: Vec<f64>) -> (f64, f64) {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1];
    (at(0.5), at(0.99))
}

/// A 4 KiB overwrite + fdatasync in a preallocated file under `dir`, and a
/// 64-byte TCP round trip on 127.0.0.1: p50 and p99 of each.
pub fn fdatasync_and_loopback(dir: &Path) {
    let work = tempfile::tempdir_in(dir).expect("a work directory");
    let f = std::fs::File::create(work.path().join("probe")).expect("a probe file");
    f.write_all_at(&vec![0u8; 1 << 20], 0).expect("preallocate");
    f.sync_all().expect("sync");
    let block = vec![0x5au8; 4096];
    let mut sync_us = Vec::new();
    for i in 0..500u64 {
        let t = Instant::now();
        f.write_all_at(&block, (i % 256) * 4096).expect("write");
        f.sync_data().expect("fdatasync");
        sync_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (s50, s99) = quantiles(sync_us);
    println!("fdatasync (4 KiB overwrite, buffered, 500x): p50 {s50:.0} us, p99 {s99:.0} us");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 64];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let mut rtt_us = Vec::new();
    let mut buf = [7u8; 64];
    for _ in 0..5000 {
        let t = Instant::now();
        c.write_all(&buf).expect("send");
        c.read_exact(&mut buf).expect("receive");
        rtt_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (r50, r99) = quantiles(rtt_us);
    println!("loopback TCP round trip (64 B, 5000x): p50 {r50:.0} us, p99 {r99:.0} us");
    println!("1-client p99 target: 1.2 x (fdatasync p99 + 2 x loopback p99) = {:.0} us", 1.2 * (s99 + 2.0 * r99));
}

fn entry(index: u64, value: &str) -> Entry<Bench> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Set { key: format!("k{}", index % 1024), value: value.to_owned() }),
    }
}

/// Writes `n` entries with 128-byte values into a new store under `dir`,
/// then times opening it (warm page cache) and reading its log state.
pub fn reopen(dir: &Path, n: u64) {
    let work = tempfile::tempdir_in(dir).expect("a work directory");
    let cfg = || SegmentedWalConfig::new(work.path().to_path_buf());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let value = "v".repeat(128);
    let t = Instant::now();
    rt.block_on(async {
        let mut s = LogStore::<Bench>::open(cfg()).expect("open");
        let mut i = 1;
        while i <= n {
            let to = (i + 4096).min(n + 1);
            s.blocking_append((i..to).map(|j| entry(j, &value))).await.expect("append");
            i = to;
        }
    });
    let bytes: u64 = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    println!("wrote {n} entries ({:.0} MB on disk) in {:.1} s", bytes as f64 / 1e6, t.elapsed().as_secs_f64());
    for round in 1..=4 {
        // The last round reads from the device: the store's own files are
        // dropped from the page cache first (nothing else is).
        let cold = round == 4;
        if cold {
            evict(work.path());
        }
        let t = Instant::now();
        let mut s = LogStore::<Bench>::open(cfg()).expect("reopen");
        let state = rt.block_on(s.get_log_state()).expect("log state");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(n));
        let cache = if cold { "its files evicted from the page cache" } else { "warm page cache" };
        println!("reopen {round}: {n} entries indexed in {:.0} ms ({cache})", secs * 1e3);
    }
}

/// Drops the pages of the files in `dir` from the page cache
/// (`POSIX_FADV_DONTNEED` after an fdatasync, so none is dirty).
fn evict(dir: &Path) {
    use std::os::fd::AsRawFd;
    for e in std::fs::read_dir(dir).expect("the store directory") {
        let f = std::fs::File::open(e.expect("an entry").path()).expect("a store file");
        f.sync_data().expect("fdatasync");
        // SAFETY: plain syscall on a descriptor owned by `f` for its duration.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "posix_fadvise");
    }
}

/// Bytes and encode + decode time of one entry, JSON (the old records)
/// against postcard (the new ones).
pub fn codec() {
    for len in [128usize, 4096] {
        let e = entry(123_456, &"x".repeat(len));
        let json = serde_json::to_vec(&e).unwrap();
        let post = postcard::to_allocvec(&e).unwrap();
        let n = 200_000;
        let time = |f: &dyn Fn() -> usize| {
            let t = Instant::now();
            let mut sink = 0;
            for _ in 0..n {
                sink += f();
            }
            std::hint::black_box(sink);
            t.elapsed().as_secs_f64() * 1e9 / n as f64
        };
        let j = time(&|| {
            let b = serde_json::to_vec(std::hint::black_box(&e)).unwrap();
            serde_json::from_slice::<Entry<Bench>>(&b).unwrap().log_id.index as usize
        });
        let p = time(&|| {
            let b = postcard::to_allocvec(std::hint::black_box(&e)).unwrap();
            postcard::from_bytes::<Entry<Bench>>(&b).unwrap().log_id.index as usize
        });
        println!(
            "value {len} B: JSON {} B, {j:.0} ns encode+decode; postcard {} B ({} B beside key and value), {p:.0} ns",
            json.len(),
            post.len(),
            post.len() - len - "k576".len()
        );
    }
}
