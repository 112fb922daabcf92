//! Write, reopen, replay: what directwal does, and how fast, on this disk.
//!
//! `cargo run --release --example quickstart [DIR]` writes its WAL into a new
//! subdirectory of DIR (default ./target, which should be on a real disk for
//! O_DIRECT) and removes only that subdirectory at the end: whatever DIR
//! held before is left alone.

use std::time::Instant;

use directwal::{RecordType, SegmentedWal, SegmentedWalConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args().nth(1).map_or_else(|| std::path::PathBuf::from("target"), std::path::PathBuf::from);
    std::fs::create_dir_all(&base)?;
    // Ours alone: removed when `work` drops, and nothing else is.
    let work = tempfile::Builder::new().prefix("quickstart-wal-").tempdir_in(&base)?;
    let dir = work.path().to_owned();
    let config = SegmentedWalConfig::new(dir.to_path_buf());

    // 1. Durable appends, one sync each (a commit per record).
    let mut wal = SegmentedWal::open(config.clone())?;
    println!("opened {} (O_DIRECT: {})", dir.display(), wal.direct_io_active());
    let n_durable = 2_000u64;
    let t = Instant::now();
    for i in 0..n_durable {
        wal.append(RecordType::Put as u16, 1, 0, format!("durable record {i:>6}").as_bytes())?;
        wal.sync()?;
    }
    let e = t.elapsed();
    println!(
        "{n_durable} records, each durable before the next: {:.0} commits/s ({:.1} µs per commit)",
        n_durable as f64 / e.as_secs_f64(),
        e.as_secs_f64() * 1e6 / n_durable as f64
    );

    // 2. A bulk load with one sync at the end.
    let n_bulk = 500_000u64;
    let payload = [7u8; 128];
    let t = Instant::now();
    for _ in 0..n_bulk {
        wal.append(RecordType::Put as u16, 2, 1, &payload)?;
    }
    wal.sync()?;
    let e = t.elapsed();
    println!("{n_bulk} x 128 B records, one sync: {:.2} M records/s", n_bulk as f64 / e.as_secs_f64() / 1e6);
    let stats = wal.stats();
    println!(
        "syncs: {}, records per sync: {:.1}, slowest sync: {} µs",
        stats.syncs, stats.records_per_sync, stats.sync_time_us_max
    );
    drop(wal);

    // 3. Reopen (recovery) and replay everything.
    let t = Instant::now();
    let wal = SegmentedWal::open(config)?;
    let open = t.elapsed();
    let t = Instant::now();
    let mut count = 0u64;
    let mut last = 0;
    wal.for_each_durable(0, usize::MAX, |r| {
        count += 1;
        last = r.header.lsn;
    })?;
    let replay = t.elapsed();
    println!(
        "reopened in {:.1} ms; replayed {count} records (LSN 1..={last}) in {:.1} ms = {:.2} M records/s",
        open.as_secs_f64() * 1e3,
        replay.as_secs_f64() * 1e3,
        count as f64 / replay.as_secs_f64() / 1e6
    );
    assert_eq!(count, n_durable + n_bulk);
    assert_eq!(wal.next_lsn(), count + 1);
    let first = wal.replay_from_limit(1, 1)?.0;
    println!("first record: LSN {} {:?}", first[0].header.lsn, String::from_utf8_lossy(&first[0].payload));
    for s in wal.list_segments()? {
        println!(
            "  {}  LSN {}..={}  {} records  {} bytes used  {}",
            s.path.file_name().unwrap().to_string_lossy(),
            s.first_lsn,
            s.last_lsn,
            s.record_count,
            s.used_bytes,
            if s.sealed { "sealed" } else { "active" }
        );
    }
    Ok(())
}
