//! Crash sweep on the simulated device. A random workload runs and
//! the simulated process dies after every single storage operation in turn;
//! each crash image (unsynced writes kept, dropped or torn per 512-byte
//! sector, unsynced directory entries lost) must reopen with every
//! acknowledged record, byte-identical, LSNs contiguous, nothing that was
//! never appended, and must not refuse on a torn tail. Even seeds run with
//! encryption on.
//!
//! Replay one case: `DIRECTWAL_CRASH_SEED=S cargo test --test crash`.

mod common;

use std::path::Path;

use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::sim::SimStorage;
use directwal::{SegmentedWal, SegmentedWalConfig};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let x = self.0;
        (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 7
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cfg() -> SegmentedWalConfig {
    common::config(Path::new("/wal")).segment(12 * 1024).buffer(8 * 1024).chunk(8 * 1024).build()
}

/// Payload of a record: a function of the seed and LSN only, so replay can
/// tell a real record from anything else.
fn payload(seed: u64, lsn: u64) -> Vec<u8> {
    let mut r = Rng(seed ^ lsn.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let len = match r.below(10) {
        0 => 0,
        1..=6 => r.below(200) as usize,
        7 | 8 => 200 + r.below(900) as usize,
        _ => 4000 + r.below(9000) as usize, // spans buffers and segments
    };
    common::payload(r.next(), len)
}

/// What the workload knows at the moment of the crash.
#[derive(Debug, Default, Clone, Copy)]
struct Model {
    /// Highest LSN handed out by append.
    appended: u64,
    /// Highest LSN covered by a sync (or recovery) that returned Ok.
    acked: u64,
    /// Records below this may have been truncated away.
    truncated_below: u64,
    /// Segments started in recycled files (spares of truncated segments).
    recycled: u64,
}

/// The process dies: no courtesy sync.
fn retire(m: &mut Model, wal: SegmentedWal) {
    m.recycled += wal.stats().segments_recycled;
    wal.simulate_crash();
}

const STEPS: u64 = 80;

/// Even seeds run encrypted: the ring is set right after every open.
fn open(sim: &SimStorage, seed: u64) -> directwal::Result<SegmentedWal> {
    let mut wal = SegmentedWal::open_with_storage(cfg(), std::sync::Arc::new(sim.clone()))?;
    if seed.is_multiple_of(2) {
        wal.set_encryption_ring(KeyRing::new(WalEncryptionKey::from_bytes(&[seed as u8; 32])))?;
    }
    Ok(wal)
}

/// What the workload does when an operation fails.
#[derive(Clone, Copy, PartialEq)]
enum OnError {
    /// The process is dead (crash sweep).
    Stop,
    /// The application restarts the WAL, as it must after `Poisoned` (fault sweep).
    Restart,
}

/// Runs the workload of `seed`; returns the model and how many operations failed.
fn workload(seed: u64, sim: &SimStorage, on_error: OnError) -> (Model, u32) {
    let mut m = Model::default();
    let mut rng = Rng(seed);
    let mut errors = 0;
    // A (re)start: recovery keeps, and makes durable, what survived. An
    // injected fault may hit open itself; it fires once, so retry once.
    let start = |m: &mut Model| -> Option<SegmentedWal> {
        let wal =
            open(sim, seed).or_else(|e| if on_error == OnError::Restart { open(sim, seed) } else { Err(e) }).ok()?;
        m.appended = wal.next_lsn() - 1;
        m.acked = m.appended;
        Some(wal)
    };
    let Some(mut wal) = start(&mut m) else { return (m, 1) };
    for _ in 0..STEPS {
        let r = match rng.below(100) {
            0..=54 => {
                let lsn = wal.next_lsn();
                wal.append(1, seed as u32, (lsn % 5) as u16, &payload(seed, lsn)).map(|got| {
                    assert_eq!(got, lsn, "a failed append must not burn an LSN");
                    m.appended = lsn;
                })
            }
            55..=84 => wal.sync().map(|()| m.acked = m.appended),
            85..=89 => wal.roll_segment(),
            90..=94 => {
                let c = rng.below(m.acked + 2);
                // Even a truncation that fails midway may have deleted segments below `c`.
                m.truncated_below = m.truncated_below.max(c);
                wal.truncate_before(c).map(|_| ())
            }
            _ => {
                // A process restart without the courtesy sync of Drop.
                retire(&mut m, wal);
                match start(&mut m) {
                    Some(w) => {
                        wal = w;
                        Ok(())
                    }
                    None => return (m, errors + 1),
                }
            }
        };
        if r.is_err() {
            errors += 1;
            retire(&mut m, wal);
            if on_error == OnError::Stop {
                return (m, errors);
            }
            match start(&mut m) {
                Some(w) => wal = w,
                None => return (m, errors),
            }
        }
    }
    retire(&mut m, wal);
    (m, errors)
}

/// Checks one crash image; returns whether recovery cut a torn tail.
fn check(seed: u64, crash_at: u64, image: &SimStorage, m: Model) -> Result<bool, String> {
    let ctx = format!("seed {seed} crash after op {crash_at} ({m:?})");
    let mut wal = open(image, seed).map_err(|e| format!("{ctx}: open refused: {e}"))?;
    let torn = wal.recovery_report().torn_tail.is_some();
    let recs = match wal.replay() {
        Ok(r) => r,
        Err(e) => return Err(format!("{ctx}: replay failed: {e}")),
    };
    let first = recs.first().map_or(wal.next_lsn(), |r| r.header.lsn);
    if first > m.truncated_below.max(1) && first <= m.acked {
        return Err(format!("{ctx}: acknowledged records before LSN {first} lost"));
    }
    for (i, r) in recs.iter().enumerate() {
        if r.header.lsn != first + i as u64 {
            return Err(format!("{ctx}: LSN gap at {}", r.header.lsn));
        }
        if r.header.lsn > m.appended || r.payload != payload(seed, r.header.lsn) {
            return Err(format!("{ctx}: LSN {} was never appended with these bytes", r.header.lsn));
        }
    }
    let last = recs.last().map_or(first - 1, |r| r.header.lsn);
    if last < m.acked {
        return Err(format!("{ctx}: acknowledged LSN {} lost (replay ends at {last})", m.acked));
    }
    // The recovered WAL continues where it ended.
    let lsn = wal.append(1, 0, 0, b"after").map_err(|e| format!("{ctx}: append after recovery: {e}"))?;
    if lsn != last + 1 {
        return Err(format!("{ctx}: next LSN {lsn} after {last}"));
    }
    wal.sync().map_err(|e| format!("{ctx}: sync after recovery: {e}"))?;
    Ok(torn)
}

#[test]
fn crash_after_every_operation_never_loses_an_acknowledged_record() {
    let seeds: Vec<u64> = match std::env::var("DIRECTWAL_CRASH_SEED") {
        Ok(s) => vec![s.parse().expect("seed")],
        Err(_) => (1..=72).collect(),
    };
    let mut points = 0u64;
    let mut failures = Vec::new();
    let mut torn = 0u64;
    let mut recycled = 0u64;
    for &seed in &seeds {
        let full = SimStorage::new();
        recycled += workload(seed, &full, OnError::Stop).0.recycled;
        let ops = full.ops();
        for k in 0..=ops {
            let sim = SimStorage::new();
            sim.crash_after(k);
            let (m, _) = workload(seed, &sim, OnError::Stop);
            let mut rng = Rng(seed.wrapping_mul(1_000_003) ^ k);
            let image = sim.crash_image(&mut || rng.next());
            points += 1;
            match check(seed, k, &image, m) {
                Ok(cut) => torn += u64::from(cut),
                Err(e) => failures.push(e),
            }
        }
    }
    println!(
        "crash points: {points} ({} seeds, {torn} with a torn tail cut; the runs started {recycled} segments in recycled files)",
        seeds.len()
    );
    assert!(failures.is_empty(), "{} failures, first: {}", failures.len(), failures[0]);
    assert!(seeds.len() == 1 || points >= 10_000, "only {points} crash points");
    assert!(seeds.len() == 1 || recycled > 0, "the sweep never reused a segment file");
}

#[test]
fn a_crash_image_of_a_clean_shutdown_is_exact() {
    let sim = SimStorage::new();
    let mut wal = open(&sim, 9).unwrap();
    for lsn in 1..=300 {
        wal.append(1, 0, 0, &payload(9, lsn)).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let mut rng = Rng(5);
    let image = sim.crash_image(&mut || rng.next());
    let recs = open(&image, 9).unwrap().replay().unwrap();
    assert_eq!(recs.len(), 300);
    assert!(recs.iter().all(|r| r.payload == payload(9, r.header.lsn)));
    // The device itself, after the clean shutdown, reopens to the same records.
    let recs = open(&sim, 9).expect("reopen after a clean shutdown").replay().unwrap();
    assert_eq!(recs.len(), 300);
    assert!(recs.iter().all(|r| r.payload == payload(9, r.header.lsn)));
}

/// An acknowledged record whose last sectors are zeros (its payload ends in
/// zeros, then the padding) survives the rewrite of its tail block: a crash
/// leaves those sectors as they were or as rewritten, with the same bytes.
/// The sweep once failed here (seed 18, crash after op 44 or 45, about one
/// run in 120): the simulator took a durable sector of zeros (an encrypted
/// record's tag ending in a zero byte, then padding) for space never
/// written and filled it with garbage.
#[test]
fn acknowledged_zero_sectors_survive_the_tail_block_rewrite() {
    let sim = SimStorage::new();
    let mut wal = open(&sim, 1).unwrap();
    // A 32-byte header, then 1000 zeros: the record's second and third
    // sectors hold nothing but zeros once durable.
    let zeros = vec![0u8; 1000];
    assert_eq!(wal.append(1, 0, 0, &zeros).unwrap(), 1);
    wal.sync().unwrap();
    wal.append(1, 0, 0, &payload(1, 2)).unwrap();
    // The next sync's write (the tail block again) lands, its fdatasync does not.
    sim.crash_after(sim.ops() + 1);
    assert!(wal.sync().is_err());
    wal.simulate_crash();
    for k in 0..300 {
        let mut rng = Rng(k);
        let image = sim.crash_image(&mut || rng.next());
        let recs = open(&image, 1).unwrap_or_else(|e| panic!("image {k}: open refused: {e}")).replay().unwrap();
        assert!(!recs.is_empty() && recs[0].payload == zeros, "image {k}: acknowledged LSN 1 lost or changed");
    }
}

/// Replays one crash point of the sweep with diagnostics, and fails as the
/// sweep did: `DIRECTWAL_CRASH_SEED=S DIRECTWAL_CRASH_AT=K cargo test --test
/// crash one_case -- --ignored --nocapture`.
#[test]
#[ignore = "a debugging aid: replays the crash point named by DIRECTWAL_CRASH_SEED and DIRECTWAL_CRASH_AT"]
fn one_case() {
    let var = |name: &str| -> u64 {
        let v = std::env::var(name).unwrap_or_else(|_| panic!("one_case replays the crash point named by {name}"));
        v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    };
    let (seed, k) = (var("DIRECTWAL_CRASH_SEED"), var("DIRECTWAL_CRASH_AT"));
    let sim = SimStorage::new();
    sim.crash_after(k);
    let (m, _) = workload(seed, &sim, OnError::Stop);
    let mut rng = Rng(seed.wrapping_mul(1_000_003) ^ k);
    let image = sim.crash_image(&mut || rng.next());
    println!("model {m:?}");
    for (name, len) in image.listing() {
        println!("  {name} {len}");
    }
    match open(&image, seed) {
        Ok(w) => {
            println!("report {:?}", w.recovery_report());
            let recs = w.replay();
            println!("replay: {:?}", recs.map(|r| r.iter().map(|r| r.header.lsn).collect::<Vec<_>>()));
            w.simulate_crash();
        }
        Err(e) => println!("open refused: {e}"),
    }
    if let Err(e) = check(seed, k, &image, m) {
        panic!("{e}");
    }
}

#[test]
fn an_io_error_at_any_operation_loses_no_acknowledged_record() {
    let mut points = 0u64;
    let mut hit = 0u64;
    let mut failures = Vec::new();
    for seed in 1..=12u64 {
        let full = SimStorage::new();
        workload(seed, &full, OnError::Restart);
        for k in 0..full.ops() {
            for errno in [libc::EIO, libc::ENOSPC] {
                let sim = SimStorage::new();
                sim.fail_once_at(k, errno);
                let (m, errors) = workload(seed, &sim, OnError::Restart);
                hit += u64::from(errors > 0);
                points += 1;
                // A power loss after the workload, and the process going on
                // (same device); the image is taken first since check() writes.
                let mut rng = Rng(seed ^ k.rotate_left(17));
                let image = sim.crash_image(&mut || rng.next());
                if let Err(e) = check(seed, k, &sim, m) {
                    failures.push(format!("errno {errno}: {e}"));
                }
                if let Err(e) = check(seed, k, &image, m) {
                    failures.push(format!("errno {errno}, then power loss: {e}"));
                }
            }
        }
    }
    println!("fault points: {points}, {hit} of them surfaced as an error");
    assert!(failures.is_empty(), "{} failures, first: {}", failures.len(), failures[0]);
    assert!(hit > points / 2);
}
