//! Attacks on the durable reserve (DESIGN I26): no crash image of a healthy
//! WAL may be refused as `NoReserve` (a false alarm), whatever the block
//! size, prepare chunk, segment target or buffer, with recycled spares,
//! rolls, truncation and restarts; every acknowledged record survives; a
//! cut the writer could not have left is caught; and directory readers
//! beside a live writer report no damage that is not there.

mod common;

use std::path::Path;
use std::sync::Arc;

use directwal::sim::SimStorage;
use directwal::{SegmentedWal, SegmentedWalConfig};

use common::Rng;

/// (block size, prepare chunk, segment target, write buffer): block sizes
/// 512/4096/65536, chunks below a block, targets below a chunk.
const SHAPES: [(usize, u64, u64, usize); 5] = [
    (512, 512, 4096, 1024),
    (512, 1, 700, 1024),
    (4096, 1024, 2048, 8192),
    (4096, 64 << 10, 1, 8192),
    (65536, 4096, 1000, 128 << 10),
];

fn cfg(shape: (usize, u64, u64, usize)) -> SegmentedWalConfig {
    let (block, chunk, segment, buffer) = shape;
    let mut c = common::config(Path::new("/wal")).segment(segment).chunk(chunk).buffer(buffer).recycle(2).build();
    c.writer_config.alignment = block;
    c
}

/// A seed with this bit set also draws long records (one in four): up to
/// 200 KB, longer than every shape's write buffer and prepare chunk, so
/// they are written in several writes (I26's reserve past a record's end).
const LONG: u64 = 1 << 32;

fn payload(seed: u64, lsn: u64) -> Vec<u8> {
    let mut r = Rng(seed ^ lsn.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    if seed & LONG != 0 && r.below(4) == 0 {
        return common::payload(r.next(), 2_000 + r.below(200_000) as usize);
    }
    let len = match r.below(8) {
        0 => 0,
        1..=5 => r.below(600) as usize,
        _ => 1000 + r.below(3000) as usize,
    };
    common::payload(r.next(), len)
}

#[derive(Debug, Default, Clone, Copy)]
struct Model {
    appended: u64,
    acked: u64,
    truncated_below: u64,
}

/// A random workload; at the first failure it stops (the simulated death),
/// or, with `restart`, reopens the WAL as an application must after
/// `Poisoned` and goes on.
fn workload(seed: u64, shape: (usize, u64, u64, usize), sim: &SimStorage, restart: bool) -> Model {
    let mut m = Model::default();
    let mut rng = Rng(seed | 1);
    let open = |m: &mut Model| {
        let wal = SegmentedWal::open_with_storage(cfg(shape), Arc::new(sim.clone())).ok()?;
        m.appended = wal.next_lsn() - 1;
        m.acked = m.appended;
        Some(wal)
    };
    let Some(mut wal) = open(&mut m) else { return m };
    for _ in 0..40 {
        let r = match rng.below(100) {
            0..=59 => {
                let lsn = wal.next_lsn();
                wal.append(1, 0, 0, &payload(seed, lsn)).map(|_| m.appended = lsn)
            }
            60..=84 => wal.sync().map(|()| m.acked = m.appended),
            85..=89 => wal.roll_segment(),
            90..=94 => {
                let c = rng.below(m.acked + 2);
                m.truncated_below = m.truncated_below.max(c);
                wal.truncate_before(c).map(|_| ())
            }
            _ => {
                wal.simulate_crash();
                match open(&mut m) {
                    Some(w) => {
                        wal = w;
                        Ok(())
                    }
                    None => return m,
                }
            }
        };
        if r.is_err() {
            if !restart {
                break;
            }
            wal.simulate_crash();
            // An injected fault fires once; it may hit the reopen itself.
            match open(&mut m).or_else(|| open(&mut m)) {
                Some(w) => wal = w,
                None => return m,
            }
        }
    }
    wal.simulate_crash();
    m
}

fn check(seed: u64, shape: (usize, u64, u64, usize), image: &SimStorage, m: Model) -> Result<(), String> {
    let wal = SegmentedWal::open_with_storage(cfg(shape), Arc::new(image.clone()))
        .map_err(|e| format!("open refused: {e}"))?;
    let recs = wal.replay().map_err(|e| format!("replay: {e}"))?;
    let last = recs.last().map_or(wal.next_lsn() - 1, |r| r.header.lsn);
    if last < m.acked && m.acked >= m.truncated_below {
        return Err(format!("acknowledged LSN {} lost (ends at {last})", m.acked));
    }
    for r in &recs {
        if r.payload != payload(seed, r.header.lsn) {
            return Err(format!("LSN {} has other bytes", r.header.lsn));
        }
    }
    Ok(())
}

/// I26: crash after every operation, in every shape: open never reports
/// `NoReserve` (nor anything else) and keeps every acknowledged record.
#[test]
fn no_crash_image_of_any_shape_is_a_false_no_reserve() {
    sweep_crash_images(1..=6, u64::MAX);
}

/// I26 with records longer than the write buffer and the prepare chunk:
/// a torn write of one leaves its header and the part before the cut, and
/// the file still reaches a block past its end (the writer made that
/// durable before the first of its writes), so no crash image is refused.
/// Before the writer reserved past the record's end, the first write of
/// such a record needed only a block past that write durable.
#[test]
fn no_crash_image_with_records_longer_than_the_buffer_is_a_false_no_reserve() {
    sweep_crash_images(LONG | 1..=LONG | 2, 300);
}

/// Crash images after every operation of each seed's workload in every
/// shape (after every `ops / cap`-th one when there are more than `cap`).
fn sweep_crash_images(seeds: std::ops::RangeInclusive<u64>, cap: u64) {
    let mut failures = Vec::new();
    let mut points = 0;
    for shape in SHAPES {
        for seed in seeds.clone() {
            let full = SimStorage::new();
            workload(seed, shape, &full, false);
            for k in (0..=full.ops()).step_by((full.ops() / cap).max(1) as usize) {
                let sim = SimStorage::new();
                sim.crash_after(k);
                let m = workload(seed, shape, &sim, false);
                let mut rng = Rng(seed.wrapping_mul(1_000_003) ^ k | 1);
                let image = sim.crash_image(&mut || rng.next());
                points += 1;
                if let Err(e) = check(seed, shape, &image, m) {
                    failures.push(format!("shape {shape:?} seed {seed} crash after op {k} ({m:?}): {e}"));
                }
            }
        }
    }
    println!("crash points: {points}");
    assert!(failures.is_empty(), "{} failures, first: {}", failures.len(), failures[0]);
}

/// I26, a missed cut: the writer keeps a whole *block* durable past the
/// block-rounded end of every data write, not only 512 bytes. In a 4096-byte
/// block WAL, a file cut 1024 bytes past the last record it keeps (inside
/// the next, acknowledged, record) cannot be a crash image, yet the
/// The WAL of the cut-record tests: 1 MiB segments, 64 KiB chunks, 4096-byte blocks.
fn long_cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(1 << 20).chunk(64 * 1024).build()
}

/// `n` records of `len` bytes, each synced alone, then a simulated crash:
/// one unsealed segment.
fn long_records(n: u64, len: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(long_cfg(dir.path())).unwrap();
    for lsn in 1..=n {
        wal.append(1, 0, 0, &common::payload(lsn, len)).unwrap();
        wal.sync().unwrap();
    }
    wal.simulate_crash();
    dir
}

/// Shortens the segment file `path` to `cut` bytes, as a bad copy would.
fn cut_to(path: &Path, cut: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(cut).unwrap();
}

/// A strict open of the log in `dir`, cut to `cut` bytes inside record 2
/// (record 1 ends at `end1`), is refused as `NoReserve` there.
fn refused_as_no_reserve_after_record_1(dir: &Path, cut: u64, end1: u64) {
    use directwal::{CorruptionKind, WalError};
    match SegmentedWal::open(long_cfg(dir)) {
        Err(WalError::Corruption { offset, lsn, kind: CorruptionKind::NoReserve { file_len, data_end }, .. }) => {
            assert_eq!((offset, lsn, file_len, data_end), (end1, 2, cut, end1))
        }
        other => panic!("expected Corruption(NoReserve), got {:?}", other.map(|w| w.recovery_report().clone())),
    }
}

/// 512-byte rule opened it as an ordinary torn tail, dropping LSN 2 and 3.
#[test]
fn a_cut_within_a_block_of_the_records_end_in_a_4096_block_wal_is_caught() {
    use directwal::layout::{data_start, record_size};
    let len = 3000;
    let rec = record_size(len) as u64;
    let dir = long_records(3, len);
    let newest = common::segment_files(dir.path())[0].clone();
    // Record 1 ends at 8192 + rec; the cut at the next 4096 boundary lies
    // inside record 2 and leaves more than 512 bytes after record 1.
    let end1 = data_start(4096) + rec;
    let cut = end1.next_multiple_of(4096);
    assert!(end1 + 512 <= cut && cut < end1 + rec, "{end1} {cut}");
    cut_to(&newest, cut);
    refused_as_no_reserve_after_record_1(dir.path(), cut, end1);
    let check = directwal::check::check_dir(dir.path(), &Default::default(), &mut |_| {}).unwrap();
    assert!(check.problems().next().is_some_and(|p| p.to_string().contains("shortened")));
}

/// I26 and I3: a failed write, fdatasync (among them the reserve's, which
/// these shapes issue often) or fallocate (EIO, ENOSPC) at any operation,
/// in every shape: what was acknowledged survives, in the running process's
/// view and after a power loss, and no image is refused as shortened.
#[test]
fn an_io_error_at_any_operation_of_any_shape_loses_nothing_acknowledged() {
    let mut failures = Vec::new();
    for shape in SHAPES {
        for seed in 1..=3u64 {
            let full = SimStorage::new();
            workload(seed, shape, &full, true);
            for k in 0..full.ops() {
                for errno in [libc::EIO, libc::ENOSPC] {
                    let sim = SimStorage::new();
                    sim.fail_once_at(k, errno);
                    let m = workload(seed, shape, &sim, true);
                    let mut rng = Rng(seed ^ k.rotate_left(17) | 1);
                    let image = sim.crash_image(&mut || rng.next());
                    for (what, s) in [("running", &sim), ("power loss", &image)] {
                        if let Err(e) = check(seed, shape, s, m) {
                            failures.push(format!("shape {shape:?} seed {seed} errno {errno} at op {k}, {what}: {e}"));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures, first: {}", failures.len(), failures[0]);
}

/// I26 beside a live writer, on real file systems (tmpfs refuses O_DIRECT
/// and fallocates differently; the disk takes O_DIRECT): `verify`
/// (`check_dir`) and `WalReader::open_dir` never report a healthy,
/// growing WAL as shortened, and a killed writer's directory opens strictly.
#[test]
fn a_live_or_killed_writer_is_never_a_false_no_reserve_on_real_file_systems() {
    use directwal::check::{CheckOptions, check_dir};
    for (tmpfs, block, chunk, segment) in
        [(true, 512, 512, 3000), (true, 65536, 4096, 100_000), (false, 4096, 1, 5000), (false, 65536, 65536, 1)]
    {
        let dir = if tmpfs { common::tmpfs_dir() } else { tempfile::tempdir().unwrap() };
        let cfg = || {
            let mut c = common::config(dir.path()).segment(segment).chunk(chunk).buffer(2 * block).recycle(2).build();
            c.writer_config.alignment = block;
            c
        };
        let mut wal = SegmentedWal::open(cfg()).unwrap();
        let mut rng = Rng(block as u64 | 1);
        for step in 0..150u64 {
            match rng.below(10) {
                0..=5 => _ = wal.append(1, 0, 0, &payload(7, step)).unwrap(),
                6..=7 => wal.sync().unwrap(),
                8 => wal.roll_segment().unwrap(),
                _ => _ = wal.truncate_before(wal.durable_lsn()).unwrap(),
            }
            let shape = (tmpfs, block, step);
            let check = check_dir(dir.path(), &CheckOptions::default(), &mut |_| {}).unwrap();
            assert!(check.problems().next().is_none(), "{shape:?}: {:?}", check.problems().next());
            let reader = directwal::WalReader::open_dir(dir.path(), None);
            assert!(reader.is_ok(), "{shape:?}: {:?}", reader.err());
        }
        wal.simulate_crash();
        let wal = SegmentedWal::open(cfg()).unwrap();
        assert!(wal.recovery_report().dropped_corruption.is_none());
    }
}

/// I26, a cut deep inside a long record: more than a block past the block
/// holding the last whole record, inside the next one (20,000 bytes, longer
/// than a block), the file still reached a block past the records' end, so
/// it was taken for that record's torn write and opened as a torn tail,
/// dropping acknowledged LSNs 2 and 3. The header at the cut's records' end
/// names LSN 2 and a record ending past the file: a cut, refused.
#[test]
fn a_cut_deep_inside_a_long_record_is_caught_as_no_reserve() {
    use directwal::RecoveryMode;
    use directwal::layout::{data_start, record_size};
    let len = 20_000;
    let dir = long_records(3, len);
    let cfg = || long_cfg(dir.path());
    let end1 = data_start(4096) + record_size(len) as u64;
    let cut = end1.next_multiple_of(4096) + 2 * 4096;
    assert!(cut + 4096 < end1 + record_size(len) as u64, "the cut lies deep inside record 2");
    let newest = common::segment_files(dir.path())[0].clone();
    cut_to(&newest, cut);
    refused_as_no_reserve_after_record_1(dir.path(), cut, end1);
    let check = directwal::check::check_dir(dir.path(), &Default::default(), &mut |_| {}).unwrap();
    let p = check.problems().next().cloned().expect("check must report the cut");
    assert!((p.offset, p.lsn) == (end1, 2) && p.to_string().contains("shortened"), "{p}");
    // The refusal changed nothing; tolerant keeps what the file holds and says so.
    assert_eq!(std::fs::metadata(&newest).unwrap().len(), cut);
    let mut c = cfg();
    c.writer_config.recovery_mode = RecoveryMode::Tolerant;
    let wal = SegmentedWal::open(c).unwrap();
    assert_eq!(wal.next_lsn(), 2);
    assert!(wal.recovery_report().dropped_corruption.as_deref().unwrap().contains("shortened"));
}

/// I26, what the header after the records must say before a deep cut is
/// refused: the file cut 8 KiB into record 2 (20,000 bytes), and record 2's
/// header then edited. Only a whole header with possible fields naming the
/// next LSN counts (its CRC is not checked: a torn write leaves a bad one);
/// anything else is a torn tail as before, and hostile fields never panic.
#[test]
fn only_a_possible_header_naming_the_next_lsn_makes_a_deep_cut_no_reserve() {
    use directwal::layout::{data_start, record_size};
    use directwal::{CorruptionKind, WalError};
    let len = 20_000;
    let end1 = data_start(4096) + record_size(len) as u64;
    let cut = end1.next_multiple_of(4096) + 2 * 4096;
    let at = end1 as usize;
    // What the edit is, the edit to record 2's header, whether it is refused.
    type Edit = (&'static str, fn(&mut [u8]), bool);
    let edits: [Edit; 7] = [
        ("as written", |_| {}, true),
        ("payload CRC broken", |h| h[0] ^= 1, true),
        ("longest possible length", |h| h[4..8].copy_from_slice(&(64u32 << 20).to_le_bytes()), true),
        ("impossible length", |h| h[4..8].copy_from_slice(&u32::MAX.to_le_bytes()), false),
        ("LSN 3, not the next", |h| h[8..16].copy_from_slice(&3u64.to_le_bytes()), false),
        ("epoch start past the record", |h| h[16..20].copy_from_slice(&u32::MAX.to_le_bytes()), false),
        ("unknown flag", |h| h[28] |= 0x80, false),
    ];
    for (what, edit, refused) in edits {
        let dir = long_records(3, len);
        let cfg = || long_cfg(dir.path());
        let newest = common::segment_files(dir.path())[0].clone();
        let mut bytes = std::fs::read(&newest).unwrap();
        bytes.truncate(cut as usize);
        edit(&mut bytes[at..at + 32]);
        std::fs::write(&newest, &bytes).unwrap();
        match SegmentedWal::open(cfg()) {
            Err(WalError::Corruption { offset, lsn, kind: CorruptionKind::NoReserve { .. }, .. }) if refused => {
                assert_eq!((offset, lsn), (end1, 2), "{what}")
            }
            Ok(wal) if !refused => {
                let torn = wal.recovery_report().torn_tail.clone().expect("a torn tail");
                assert_eq!((torn.offset, torn.lsn, wal.next_lsn()), (end1, 2, 2), "{what}");
            }
            other => panic!("{what}: got {:?}", other.map(|w| w.recovery_report().clone())),
        }
    }
}

/// I26 under group commit (`WalHandle`: writes under the lock, fdatasync
/// without it, rolls by the committers): power-loss images taken while four
/// threads commit open strictly (never `NoReserve`) with every record
/// acknowledged before the image, LSNs contiguous.
#[test]
fn group_commit_crash_images_open_strictly_with_every_acknowledged_record() {
    for shape in [SHAPES[1], SHAPES[4]] {
        let sim = SimStorage::new();
        let handle = directwal::WalHandle::open_with_storage(cfg(shape), Arc::new(sim.clone())).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (h, stop) = (handle.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 400 {
                        i += 1;
                        h.commit(1, t as u32, 0, &payload(t, i)).unwrap();
                    }
                })
            })
            .collect();
        let mut rng = Rng(shape.0 as u64 | 1);
        for n in 0..40 {
            std::thread::sleep(std::time::Duration::from_millis(2));
            let acked = handle.durable_lsn();
            let image = sim.crash_image(&mut || rng.next());
            let wal = SegmentedWal::open_with_storage(cfg(shape), Arc::new(image))
                .unwrap_or_else(|e| panic!("{shape:?} image {n} (acked {acked}): open refused: {e}"));
            let recs = wal.replay().unwrap();
            let last = recs.last().map_or(0, |r| r.header.lsn);
            assert!(last >= acked, "{shape:?} image {n}: acknowledged LSN {acked} lost, replay ends at {last}");
            assert!(recs.windows(2).all(|w| w[1].header.lsn == w[0].header.lsn + 1), "{shape:?} image {n}: a gap");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(handle.stats_snapshot().reserve_fdatasyncs > 0, "{shape:?}: no reserve fdatasync was exercised");
    }
}

/// I26 with spares of every length the writer trusts (I17: any multiple of
/// 512), shorter than a header, than the data start, not a block multiple:
/// the segment started in one keeps the reserve; a killed writer's
/// directory opens strictly with every record.
#[test]
fn spares_of_odd_trusted_lengths_keep_the_reserve() {
    for len in [0u64, 512, 4096, 8192 + 512, 12288, 3 * 65536 + 1536] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = || common::config(dir.path()).buffered().segment(1 << 20).chunk(4096).build();
        drop(SegmentedWal::open(cfg()).unwrap());
        std::fs::write(dir.path().join("spare-00000000000000000001"), vec![0x5a; len as usize]).unwrap();
        let mut wal = SegmentedWal::open(cfg()).unwrap();
        for i in 1..=40u64 {
            wal.append(1, 0, 0, &common::payload(i, (i as usize * 379) % 3000)).unwrap();
            if i.is_multiple_of(3) {
                wal.sync().unwrap();
            }
        }
        wal.sync().unwrap();
        assert_eq!(wal.stats().segments_recycled, 1, "spare of {len} bytes");
        wal.simulate_crash();
        let wal = SegmentedWal::open(cfg()).unwrap_or_else(|e| panic!("spare of {len} bytes: {e}"));
        assert_eq!(wal.replay().unwrap().len(), 40, "spare of {len} bytes");
    }
}

/// Runs two group-committing threads (truncating as they go) in `dir` for
/// 1.5 s while this thread calls `check_dir` and `WalReader::open_dir` in a
/// loop; `judge` gets every error `open_dir` returns. `check_dir` must find
/// no problem.
fn beside_group_commit(tmpfs: bool, judge: &mut dyn FnMut(directwal::WalError)) {
    use directwal::check::{CheckOptions, check_dir};
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = if tmpfs { common::tmpfs_dir() } else { tempfile::tempdir().unwrap() };
    let cfg = common::config(dir.path()).segment(64 << 10).chunk(4096).buffer(8192).recycle(2).build();
    let handle = directwal::WalHandle::open(cfg).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let (h, stop) = (handle.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    h.commit(1, 0, 0, &payload(t, i)).unwrap();
                    if i.is_multiple_of(50) {
                        h.truncate_before(h.durable_lsn()).unwrap();
                    }
                }
            })
        })
        .collect();
    let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut rounds = 0;
    while std::time::Instant::now() < until {
        rounds += 1;
        let check = check_dir(dir.path(), &CheckOptions::default(), &mut |_| {}).unwrap();
        let problem = check.problems().next().map(|p| p.to_string());
        assert!(problem.is_none(), "tmpfs {tmpfs}, round {rounds}: {problem:?}");
        if let Err(e) = directwal::WalReader::open_dir(dir.path(), None) {
            judge(e);
        }
    }
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|w| w.join().unwrap());
    assert!(rounds > 5, "only {rounds} rounds");
}

/// I5, I26 beside a group-committing writer on the disk (O_DIRECT where the
/// file system takes it) and on tmpfs: `check_dir` and `WalReader::open_dir`
/// never report the growing WAL's newest segment as damaged or shortened.
/// Before: within a second or two `open_dir` reported `Corruption` ("…
/// belongs to a later sync, so this data was durable"): its one scan read a
/// record's place before the writer's bytes landed and a record of a later
/// sync after they did (`catalog::scan_newest` now rescans).
#[test]
fn verify_and_open_dir_beside_group_commit_never_report_false_damage() {
    use directwal::{CorruptionKind, WalError};
    for tmpfs in [false, true] {
        beside_group_commit(tmpfs, &mut |e| {
            if let WalError::Corruption {
                kind: CorruptionKind::DurableRecord { .. } | CorruptionKind::NoReserve { .. },
                ..
            } = e
            {
                panic!("tmpfs {tmpfs}: open_dir: {e}");
            }
        });
    }
}

/// `WalReader::open_dir` beside a live writer that rolls and truncates
/// answers a reader or `LsnTruncated`, never a false alarm. Before: within
/// seconds an I/O error (`NotFound`: the newest segment it listed was
/// truncated away before it read it) or `Corruption` "segment is not sealed
/// although a newer segment exists" (failed 2 of 3 runs); `check_dir`
/// already tolerated both. `open_dir` now believes an error only when a
/// fresh read of the directory repeats it.
#[test]
fn open_dir_beside_a_rolling_truncating_writer_only_ever_says_truncated() {
    for tmpfs in [false, true] {
        beside_group_commit(tmpfs, &mut |e| {
            assert!(matches!(e, directwal::WalError::LsnTruncated { .. }), "tmpfs {tmpfs}: open_dir: {e}");
        });
    }
}

/// I24 with I26: a file cut inside its FIRST record (no record kept) holds
/// the bytes of that acknowledged record: tolerant recovery renames it
/// aside unchanged instead of replacing it under its name (which destroyed
/// them), and the log goes on at its first LSN. Strict still refuses.
#[test]
fn a_cut_inside_the_first_long_record_is_set_aside_not_replaced() {
    use directwal::layout::{data_start, record_size};
    use directwal::{CorruptionKind, RecoveryMode, WalError};
    let len = 20_000;
    let dir = long_records(2, len);
    let cfg = || long_cfg(dir.path());
    let start = data_start(4096);
    let cut = start + 2 * 4096;
    assert!(cut + 4096 < start + record_size(len) as u64, "the cut lies deep inside record 1");
    let newest = common::segment_files(dir.path())[0].clone();
    cut_to(&newest, cut);
    let evidence = std::fs::read(&newest).unwrap();
    assert!(matches!(
        SegmentedWal::open(cfg()),
        Err(WalError::Corruption { lsn: 1, kind: CorruptionKind::NoReserve { .. }, .. })
    ));
    let mut c = cfg();
    c.writer_config.recovery_mode = RecoveryMode::Tolerant;
    let mut wal = SegmentedWal::open(c).unwrap();
    let report = wal.recovery_report().clone();
    assert!(report.dropped_corruption.as_deref().is_some_and(|d| d.contains("shortened")), "{report:?}");
    let aside = report.set_aside.expect("set aside, not replaced");
    assert_eq!(std::fs::read(&aside.moved_to).unwrap(), evidence, "the evidence kept byte for byte");
    assert_eq!(wal.next_lsn(), 1);
    assert_eq!(wal.append(1, 0, 0, b"goes on").unwrap(), 1);
    wal.sync().unwrap();
}
