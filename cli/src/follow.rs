//! `dump --follow`: new records of a directory another process writes.
//!
//! `WalReader::open_dir` is a snapshot: it lists the segments and scans the
//! unsealed newest one once, and never sees records added after that. So
//! following re-opens the directory when it changed (a segment added or
//! removed, the newest one written, or written within [`QUIET`]) at most
//! once per poll interval, and
//! resumes with a cursor at the next LSN. Records reach us when they reach
//! the file, which for a writer's full buffer can be before its fdatasync;
//! a record that a crash then tears is cut by the next open (I5).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use directwal::crypto::KeyRing;
use directwal::{WalError, WalReader};

use crate::Failure;
use crate::dump::{Sink, drain};

/// Polls in a row whose open may fail from a write in progress before the
/// error counts.
const RETRIES: u32 = 5;
/// A directory unchanged for this long is not re-read. A write landing in
/// the same coarse clock tick as the look before it leaves the modification
/// time as it was, so a recently written one is re-read every poll.
const QUIET: Duration = Duration::from_secs(2);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C and SIGTERM end the follow (exit 0) instead of the process.
fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; signal() is given a valid signal number.
        unsafe { libc::signal(sig, handler) };
    }
}

/// Sleeps `d` in short steps; false once interrupted.
fn pause(d: Duration) -> bool {
    let until = Instant::now() + d;
    while !INTERRUPTED.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
    false
}

/// What the directory looks like: its segment names and the newest one's
/// size and modification time. Unchanged means nothing new to read.
fn fingerprint(dir: &Path) -> Option<(Vec<PathBuf>, u64, SystemTime)> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).and_then(directwal::parse_segment_name).is_some())
        .collect();
    segs.sort();
    let meta = std::fs::metadata(segs.last()?).ok()?;
    Some((segs, meta.len(), meta.modified().ok()?))
}

/// An error a writer's work in progress can cause (a segment renamed or
/// recycled between listing and reading, a write half landed).
fn transient(e: &WalError) -> bool {
    matches!(e, WalError::Corruption { .. } | WalError::Io { .. })
}

/// Prints records from `next` on as they appear, until the sink is done or
/// the process is interrupted.
pub fn follow(
    dir: &Path,
    ring: Option<KeyRing>,
    mut next: u64,
    sink: &mut Sink,
    poll: Duration,
) -> Result<(), Failure> {
    catch_interrupts();
    let mut seen = fingerprint(dir);
    let mut failures = 0;
    loop {
        sink.flush()?;
        if !pause(poll) {
            return Ok(());
        }
        let now = fingerprint(dir);
        let quiet = now.as_ref().is_some_and(|(_, _, m)| m.elapsed().is_ok_and(|e| e > QUIET));
        if quiet && now == seen && failures == 0 {
            continue;
        }
        let reader = match WalReader::open_dir(dir, ring.clone()) {
            Ok(r) => r,
            Err(e) if transient(&e) && failures < RETRIES => {
                failures += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        failures = 0;
        seen = now;
        if reader.durable_lsn() < next.max(1) {
            continue;
        }
        let mut cursor = reader.cursor(next);
        if !drain(&reader, &mut cursor, sink)? {
            return Ok(());
        }
        next = cursor.position();
    }
}
