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
        let reads = counting::READS.lock().unwrap();
        let total: f64 = reads.iter().map(|r| r.1).sum();
        let n: usize = reads.iter().map(|r| r.2).sum();
        let max = reads.iter().map(|r| r.1).fold(0.0, f64::max);
        let empty = reads.iter().filter(|r| r.2 == 0).count();
        eprintln!("reads: {} calls ({empty} empty), {n} entries, {:.0} us total, {max:.0} us max", reads.len(), total);
        let calls = counting::CALLS.lock().unwrap();
        for node in 1..=3 {
            let mut a: Vec<f64> =
                counting::APPEND_US.lock().unwrap().iter().filter(|x| x.0 == node).map(|x| x.1).collect();
            a.sort_by(f64::total_cmp);
            let q =
                |p: f64| a.get(((a.len() as f64 * p) as usize).min(a.len().saturating_sub(1))).copied().unwrap_or(0.0);
            let sum: f64 = a.iter().sum();
            eprintln!(
                "node {node}: append call p50 {:.0} us, p99 {:.0} us, total {:.0} ms",
                q(0.5),
                q(0.99),
                sum / 1e3
            );
        }
        for node in 1..=3 {
            let c: Vec<_> = calls.iter().filter(|c| c.0 == node).collect();
            let entries: usize = c.iter().map(|c| c.2).sum();
            let gaps: Vec<f64> = c.windows(2).map(|w| (w[1].1 - w[0].1).as_secs_f64() * 1e6).collect();
            let mut g = gaps.clone();
            g.sort_by(f64::total_cmp);
            eprintln!(
                "node {node}: {} appends, {entries} entries, gap p50 {:.0} us",
                c.len(),
                g.get(g.len() / 2).unwrap_or(&0.0)
            );
        }
        for (i, w) in wals.lock().unwrap().iter().enumerate() {
            let s = w.stats_snapshot();
            eprintln!(
                "node {}: {} records, {} fdatasyncs ({:.0} us mean), {} syncs, {:.1} records/sync, {} write calls",
                i + 1,
                s.records_appended,
                s.fdatasyncs,
                s.fdatasync_time.as_secs_f64() * 1e6 / s.fdatasyncs.max(1) as f64,
                s.syncs,
                s.synced_records as f64 / s.syncs.max(1) as f64,
                s.write_calls,
            );
        }
    }
}
