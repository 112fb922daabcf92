//! Tests across processes: the one-writer lock (DESIGN I25) and a restart
//! right after a SIGKILL. The test binary runs itself again as the writer:
//! the ignored test `child` plays the role named by `DIRECTWAL_CHILD` and
//! talks to the parent in stdout lines holding `MARK` (the harness prints
//! its own text there too, which the parent skips).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{Rng, payload};
use directwal::io::LOCK_FILE;
use directwal::{SegmentedWal, SegmentedWalConfig, WalError};

const ROLE: &str = "DIRECTWAL_CHILD";
const DIR: &str = "DIRECTWAL_CHILD_DIR";
/// Starts a message from the child (after whatever the harness printed on
/// the same line, such as "test child ... ").
const MARK: &str = "@child: ";
/// Longest wait for a line from a child before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

fn cfg(dir: &Path) -> SegmentedWalConfig {
    // Small segments and chunks: rolls and recycling within a few MB, and
    // each open's new segment is quick to prepare.
    common::config(dir).segment(1 << 20).chunk(256 << 10).build()
}

/// The payload length of record `lsn` (so any process can check any record).
fn len_of(lsn: u64) -> usize {
    16 + (lsn.wrapping_mul(0x9e37_79b9) % 3000) as usize
}

/// Appends `n` records with the payloads `check_log` expects; returns the last LSN.
fn append(wal: &mut SegmentedWal, n: u64) -> u64 {
    let mut last = 0;
    for _ in 0..n {
        let lsn = wal.next_lsn();
        last = wal.append(1, 7, 0, &payload(lsn, len_of(lsn))).unwrap();
        assert_eq!(last, lsn);
    }
    last
}

/// Replays `wal` and checks it holds consecutive LSNs up to `next_lsn - 1`
/// with the payloads `append` writes, starting at or below `from`.
/// Returns (first, last) LSN.
fn check_log(wal: &SegmentedWal, from: u64) -> (u64, u64) {
    let recs = wal.replay().unwrap();
    let first = recs.first().map_or(wal.next_lsn(), |r| r.header.lsn);
    assert!(first <= from, "records from {from} on were kept, yet the log starts at {first}");
    for (i, r) in recs.iter().enumerate() {
        let lsn = first + i as u64;
        assert_eq!(r.header.lsn, lsn, "LSNs not consecutive");
        assert!(r.payload == payload(lsn, len_of(lsn)), "LSN {lsn}: wrong payload");
    }
    assert_eq!(first + recs.len() as u64, wal.next_lsn());
    (first, wal.next_lsn() - 1)
}

/// A child process, killed and reaped if the test ends early.
struct Kid {
    child: Child,
    lines: Receiver<String>,
}

impl Kid {
    fn spawn(role: &str, dir: &Path) -> Kid {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(DIR, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Some((_, msg)) = line.split_once(MARK)
                    && tx.send(msg.to_owned()).is_err()
                {
                    break;
                }
            }
        });
        Kid { child, lines }
    }

    /// The child's next message (fails the test after `PATIENCE`); None
    /// once it has exited and every message was taken.
    fn next(&self) -> Option<String> {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("no word from the child for {PATIENCE:?}"),
        }
    }

    fn expect(&self, want: &str) {
        assert_eq!(self.next().as_deref(), Some(want));
    }

    fn tell(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line to the parent.
fn say(msg: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{msg}").unwrap();
    out.flush().unwrap();
}

#[test]
#[ignore = "the writer process of the tests below; runs only when they start it"]
fn child() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let dir = PathBuf::from(std::env::var_os(DIR).expect("DIRECTWAL_CHILD_DIR"));
    match role.split_once(' ') {
        Some(("crash", seed)) => write_until_killed(&dir, seed.parse().unwrap()),
        _ if role == "hold" => hold_the_wal(&dir),
        _ => panic!("unknown role {role}"),
    }
}

/// Writes 10 records, says "ready", waits for a line on stdin, writes 10
/// more and says "done".
fn hold_the_wal(dir: &Path) {
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    append(&mut wal, 10);
    wal.sync().unwrap();
    say("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    append(&mut wal, 10);
    wal.sync().unwrap();
    say("done");
}

/// Appends and syncs until killed, saying "ack LSN" after every sync. Most
/// syncs are small (a commit or a few); one in four carries 0.3–1.3 MB, so
/// a kill often lands inside a long write + fdatasync.
fn write_until_killed(dir: &Path, seed: u64) -> ! {
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    let mut rng = Rng(seed | 1);
    loop {
        let n = if rng.below(4) == 0 { 200 + rng.below(600) } else { 1 + rng.below(8) };
        let last = append(&mut wal, n);
        wal.sync().unwrap();
        say(&format!("ack {last}"));
    }
}

/// I25: process A holds the WAL; process B (this one) is refused, also
/// after `rm DIR/LOCK`; A then goes on undisturbed. (With the lock on the
/// `LOCK` file only, B opened the WAL once the file was deleted, sealing
/// A's active segment.)
#[test]
fn a_second_process_is_refused_even_after_the_lock_file_is_deleted() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut a = Kid::spawn("hold", dir.path());
    a.expect("ready");

    let refused = |when: &str| match SegmentedWal::open(cfg(dir.path())) {
        Err(WalError::Locked { path }) => assert_eq!(path, dir.path()),
        Err(e) => panic!("{when}: expected Locked, got {e}"),
        Ok(_) => panic!("{when}: a second process opened the WAL a live writer holds"),
    };
    refused("lock file in place");
    std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
    refused("lock file deleted");
    std::fs::write(dir.path().join(LOCK_FILE), b"").unwrap();
    refused("lock file replaced by a new one");

    a.tell("go");
    a.expect("done");
    assert!(a.child.wait().unwrap().success());
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(check_log(&wal, 1), (1, 20), "the writer's records, all in one log");
}

/// Issue 15.11: a supervisor restarts a killed writer at once. Each round
/// a child appends and syncs, acknowledging LSNs; it is SIGKILLed at a
/// random moment (in its open, between syncs, inside a write or an
/// fdatasync), reaped, and the WAL is reopened at once: the reopen must
/// succeed (never `Locked`) and hold every acknowledged record.
#[test]
fn a_restart_right_after_sigkill_always_reopens_with_every_acknowledged_record() {
    const ROUNDS: u64 = 40;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut rng = Rng(0x5151_7e57);
    let (mut acked, mut kept_from) = (0u64, 1u64);
    let (mut in_open, t0) = (0, Instant::now());
    for round in 0..ROUNDS {
        let mut kid = Kid::spawn(&format!("crash {}", rng.next()), dir.path());
        // One round in four is killed without waiting for an ack: often
        // inside the child's open (recovery, sealing, the new segment).
        if round % 4 != 0 {
            let first = kid.next().expect("the child exited before its first sync");
            acked = acked.max(first.strip_prefix("ack ").unwrap().parse().unwrap());
        }
        std::thread::sleep(Duration::from_micros(rng.below(25_000)));
        kid.child.kill().unwrap();
        let status = kid.child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "round {round}: the child ended by itself: {status}");
        let before = acked;
        while let Some(m) = kid.next() {
            acked = acked.max(m.strip_prefix("ack ").unwrap().parse().unwrap());
        }
        if acked == before && round % 4 == 0 {
            in_open += 1;
        }

        let wal = match SegmentedWal::open(cfg(dir.path())) {
            Ok(w) => w,
            Err(e) => panic!("round {round}: the reopen right after SIGKILL failed: {e}"),
        };
        let (_, last) = check_log(&wal, kept_from);
        assert!(last >= acked, "round {round}: acknowledged LSN {acked} lost; the log ends at {last}");
        // Keep the log short (and feed the spare-file pool).
        kept_from = acked.saturating_sub(2000).max(1);
        wal.truncate_before(kept_from).unwrap();
    }
    eprintln!(
        "{ROUNDS} SIGKILLs, {in_open} before the first sync, {acked} records acknowledged, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(acked > 0);
}
