//! The harness with directwal's `LogStore` (storage-v2; `append`
//! acknowledges once the entries are durable, DESIGN I14).
//!
//! Other modes, for the targets of docs/BENCHMARKS.md:
//! `--probe` one fdatasync and one loopback round trip on this machine;
//! `--reopen N` the time to open a store holding N entries;
//! `--codec` JSON against postcard for one entry.

mod counting;
mod probe;

use directwal::SegmentedWalConfig;
use directwal::raft::LogStore;
use harness::{BENCH_APP, Bench, Sm, main_with};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let after = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let dir = std::path::PathBuf::from(after("--dir").unwrap_or_else(|| "target".into()));
    if args.iter().any(|a| a == "--probe") {
        return probe::fdatasync_and_loopback(&dir);
    }
    if let Some(n) = after("--reopen") {
        return probe::reopen(&dir, n.parse().expect("--reopen N"));
    }
    if args.iter().any(|a| a == "--codec") {
        return probe::codec();
    }
    // DIRECTWAL_STATS=1: how openraft calls the store and each node's WAL
    // counters, after the run on stderr (the store wrapped to count).
    let stats = std::env::var_os("DIRECTWAL_STATS").is_some();
    let wals = std::sync::Mutex::new(Vec::new());
    let open = |dir| {
        let log = LogStore::<Bench>::open(SegmentedWalConfig::new(dir)).expect("the store opens");
        wals.lock().unwrap().push(log.wal().clone());
        log
    };
    if stats {
        main_with("directwal", true, BENCH_APP, |id, dir| {
            let log = counting::Counting(id, open(dir));
            async move { (log, Sm::new(BENCH_APP)) }
        });
    } else {
        main_with("directwal", true, BENCH_APP, |_id, dir| {
            let log = open(dir);
            async move { (log, Sm::new(BENCH_APP)) }
        });
    }
    if stats {
        counting::report(&wals.lock().unwrap());
    }
}
