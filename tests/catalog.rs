//! The directory rules (DESIGN I21-I24): `open`, `WalReader::open_dir` and
//! `check_dir` reach the same verdict on every directory, because all three
//! take it from the catalog.
mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{payload, segment_files};
use directwal::check::{CheckOptions, check_dir};
use directwal::{RecoveryMode, SegmentedWal, SegmentedWalConfig, WalError, WalReader};

const LEN: usize = 100;

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(1 << 20).chunk(64 * 1024).build()
}

/// A WAL of four segments of three records each (LSNs 1..=12); the newest
/// is left unsealed, as a crash leaves it.
fn wal_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    for s in 0..4 {
        if s > 0 {
            wal.roll_segment().unwrap();
        }
        for _ in 0..3 {
            let lsn = wal.next_lsn();
            wal.append(1, 0, 0, &payload(lsn, LEN)).unwrap();
        }
        wal.sync().unwrap();
    }
    wal.simulate_crash();
    assert_eq!(segment_files(dir.path()).len(), 4);
    dir
}

/// The newest segment's data start plus `n` records.
fn record_end(n: u64) -> u64 {
    directwal::layout::data_start(4096) + n * directwal::layout::record_size(LEN) as u64
}

/// The file name an error or problem is about.
fn named(e: &WalError) -> String {
    let name = match e {
        WalError::Corruption { segment, .. }
        | WalError::MissingSegment { segment, .. }
        | WalError::ForeignSegment { segment, .. }
        | WalError::UnsupportedVersion { segment, .. } => segment.clone(),
        WalError::NotRegularFile { path, .. } => path.file_name().unwrap().to_string_lossy().into_owned(),
        other => panic!("unexpected error kind {other:?}"),
    };
    assert!(name.starts_with("wal-") || name.starts_with("spare-"), "{e}");
    name
}

/// Asserts that open, open_dir and check agree on `dir`: all accept it,
/// or all refuse it naming the same file, open and open_dir with the same
/// kind of error. Returns open's error.
fn verdicts_agree(case: &str, dir: &Path) -> Option<WalError> {
    let check = check_dir(dir, &CheckOptions::default(), &mut |_| {}).unwrap();
    let first_problem = check.problems().next().cloned();
    let reader = WalReader::open_dir(dir, None).err();
    // open last: it writes (seals the newest segment) when it accepts.
    let open = SegmentedWal::open(cfg(dir)).err();
    match (&open, &reader, &first_problem) {
        (None, None, None) => None,
        (Some(o), Some(r), Some(p)) => {
            assert_eq!(std::mem::discriminant(o), std::mem::discriminant(r), "{case}: open {o} / open_dir {r}");
            assert_eq!(named(o), named(r), "{case}");
            assert_eq!(named(o), p.segment, "{case}: open {o} / check {p}");
            open
        }
        _ => panic!("{case}: verdicts differ: open {open:?}, open_dir {reader:?}, check {first_problem:?}"),
    }
}

type Damage = fn(&Path, &[PathBuf]);

fn cases() -> Vec<(&'static str, Damage)> {
    vec![
        ("missing middle segment", |_, s| std::fs::remove_file(&s[1]).unwrap()),
        ("duplicate first LSN (copy under the next name)", |_, s| {
            std::fs::copy(&s[1], &s[2]).unwrap();
        }),
        ("segment of another WAL", |_, s| {
            let other = wal_dir();
            std::fs::copy(&segment_files(other.path())[2], &s[2]).unwrap();
        }),
        ("bad seal of a non-newest segment", |_, s| flip(&s[1], 4096 + 20)),
        ("bad header of a non-newest segment", |_, s| flip(&s[1], 20)),
        ("newest segment a symlink", |d, s| to_symlink(d, &s[3])),
        ("oldest segment a symlink", |d, s| to_symlink(d, &s[0])),
        ("middle segment a directory", |_, s| {
            std::fs::remove_file(&s[1]).unwrap();
            std::fs::create_dir(&s[1]).unwrap();
        }),
        ("FIFO named like the next segment", |d, _| mkfifo(&d.join(directwal::segment_file_name(13)))),
        ("socket named like a spare", |d, _| {
            std::os::unix::net::UnixListener::bind(d.join("spare-00000000000000000001")).unwrap();
        }),
        ("symlink named like a segment being created", |d, s| {
            symlink(&s[0], d.join(format!("{}.tmp", directwal::segment_file_name(13)))).unwrap();
        }),
        ("newest segment shortened at a record boundary", |_, s| set_len(&s[3], record_end(2))),
        ("newest segment 8 GiB long (sparse)", |_, s| set_len(&s[3], 8 << 30)),
        ("newest segment empty", |_, s| set_len(&s[3], 0)),
        ("newest segment garbage", |_, s| std::fs::write(&s[3], vec![0x5a; 8192]).unwrap()),
    ]
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 1;
    std::fs::write(path, b).unwrap();
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

/// Moves `seg` out of the directory and leaves a symlink to it in its place.
fn to_symlink(dir: &Path, seg: &Path) {
    let moved = dir.parent().unwrap().join(format!("moved-{}", seg.file_name().unwrap().to_string_lossy()));
    std::fs::rename(seg, &moved).unwrap();
    symlink(&moved, seg).unwrap();
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the entry.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn open_open_dir_and_check_reach_the_same_verdict_on_every_damaged_directory() {
    let clean = wal_dir();
    assert!(verdicts_agree("clean", clean.path()).is_none());
    for (case, damage) in cases() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("wal");
        common::copy_dir(wal_dir().path(), &dir);
        damage(&dir, &segment_files(&dir));
        let e = verdicts_agree(case, &dir);
        assert!(e.is_some(), "{case}: accepted");
    }
}

/// Issue 15 item 3: a segment is never silently skipped.
#[test]
fn a_newest_segment_that_is_a_symlink_is_refused_not_skipped() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("wal");
    common::copy_dir(wal_dir().path(), &dir);
    let newest = segment_files(&dir)[3].clone();
    to_symlink(&dir, &newest);
    // Before: open skipped it and handed LSNs 10..=12 out again.
    let e = SegmentedWal::open(cfg(&dir)).expect_err("a symlinked segment must not be skipped");
    assert!(e.to_string().contains(&*newest.file_name().unwrap().to_string_lossy()), "{e}");
    assert!(WalReader::open_dir(&dir, None).is_err());
    assert!(!check_dir(&dir, &CheckOptions::default(), &mut |_| {}).unwrap().is_clean());
}

/// Issue 15 item 3: a FIFO named like a segment is refused, without blocking.
#[test]
fn a_fifo_named_like_a_segment_is_refused_without_blocking() {
    let dir = wal_dir();
    mkfifo(&dir.path().join(directwal::segment_file_name(13)));
    let t = Instant::now();
    assert!(SegmentedWal::open(cfg(dir.path())).is_err());
    assert!(WalReader::open_dir(dir.path(), None).is_err());
    assert!(!check_dir(dir.path(), &CheckOptions::default(), &mut |_| {}).unwrap().is_clean());
    assert!(t.elapsed().as_secs() < 5);
}

/// Issue 15 item 4: a directory reader reports a gap as open does.
#[test]
fn open_dir_reports_a_missing_middle_segment_as_open_does() {
    let dir = wal_dir();
    std::fs::remove_file(&segment_files(dir.path())[1]).unwrap();
    // Before: Ok, then `LsnTruncated { requested: 1.., oldest: 7 }` on reading.
    match WalReader::open_dir(dir.path(), None) {
        Err(WalError::MissingSegment { expected_lsn, found_lsn, .. }) => assert_eq!((expected_lsn, found_lsn), (4, 7)),
        Err(e) => panic!("expected MissingSegment, got {e}"),
        Ok(r) => panic!("accepted; reading from 1 gives {:?}", r.read_page(1, 10, 1 << 20).err()),
    }
}

/// Issue 15 item 5: a shortened newest segment is refused (strict), opened
/// with a report (tolerant), and `verify` is not clean.
#[test]
fn a_newest_segment_cut_at_a_record_boundary_is_not_accepted_as_clean() {
    let dir = wal_dir();
    let newest = segment_files(dir.path())[3].clone();
    set_len(&newest, record_end(2));
    let check = check_dir(dir.path(), &CheckOptions::default(), &mut |_| {}).unwrap();
    assert!(!check.is_clean(), "verify must report a shortened newest segment");
    // Before: open kept LSNs 10 and 11, dropped 12, and reported nothing.
    match SegmentedWal::open(cfg(dir.path())) {
        Err(WalError::Corruption { segment, offset, .. }) => {
            assert_eq!((segment.as_str(), offset), (&*newest.file_name().unwrap().to_string_lossy(), record_end(2)))
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    let mut c = cfg(dir.path());
    c.writer_config.recovery_mode = RecoveryMode::Tolerant;
    let wal = SegmentedWal::open(c).unwrap();
    assert_eq!(wal.replay().unwrap().len(), 11);
    assert!(wal.recovery_report().dropped_corruption.as_deref().unwrap().contains("shortened"));
}

/// Issue 15 item 8: a segment longer than any the writer makes is refused
/// at once, never scanned (before: 3.3 s per GiB).
#[test]
fn an_absurdly_long_newest_segment_is_refused_within_a_second() {
    let dir = wal_dir();
    let newest = segment_files(dir.path())[3].clone();
    set_len(&newest, 8 << 30);
    let t = Instant::now();
    let e = SegmentedWal::open(cfg(dir.path())).expect_err("an 8 GiB segment");
    let open_time = t.elapsed();
    assert!(matches!(&e, WalError::Corruption { segment, .. } if newest.ends_with(segment)), "{e}");
    let t = Instant::now();
    assert!(
        !check_dir(dir.path(), &CheckOptions { verify_records: true, ..Default::default() }, &mut |_| {})
            .unwrap()
            .is_clean()
    );
    let check_time = t.elapsed();
    println!("8 GiB sparse newest segment: open refused in {open_time:?}, check in {check_time:?}");
    assert!(open_time.as_secs_f64() < 1.0 && check_time.as_secs_f64() < 1.0);
    // Tolerant mode sets it aside (I24) and opens, also at once.
    let mut c = cfg(dir.path());
    c.writer_config.recovery_mode = RecoveryMode::Tolerant;
    let t = Instant::now();
    let wal = SegmentedWal::open(c).unwrap();
    assert!(t.elapsed().as_secs_f64() < 1.0);
    assert_eq!((wal.replay().unwrap().len(), wal.next_lsn()), (9, 10));
    let aside = wal.recovery_report().set_aside.clone().unwrap();
    assert_eq!(std::fs::metadata(&aside.moved_to).unwrap().len(), 8 << 30);
}

/// Issue 15 item 9: open deletes only the temporary files it creates.
#[test]
fn open_deletes_only_its_own_temporary_files() {
    let dir = wal_dir();
    let notes = dir.path().join("wal-notes.tmp");
    let own = dir.path().join(format!("{}.tmp", directwal::segment_file_name(13)));
    std::fs::write(&notes, b"an operator's notes").unwrap();
    std::fs::write(&own, b"").unwrap();
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.recovery_report().temp_files_removed, 1);
    assert!(!own.exists());
    assert_eq!(std::fs::read(&notes).unwrap(), b"an operator's notes");
}

/// I22 holds for every file the writer makes: with a target and prepare
/// chunk that are not multiples of the block, and epochs large enough that
/// a new segment's space is reserved (fallocate) rather than zero-filled,
/// the new segment's length is still a multiple of 512, so a crash right
/// after it was created reopens (strict).
#[test]
fn a_segment_prepared_with_an_unaligned_chunk_keeps_a_whole_block_length() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_target_size = 10_000;
    c.writer_config.prepare_chunk_size = 10_000;
    let mut wal = SegmentedWal::open(c.clone()).unwrap();
    wal.append(1, 0, 0, &payload(1, 2 << 20)).unwrap(); // a 2 MiB sync epoch
    wal.sync().unwrap();
    wal.roll_segment().unwrap(); // the next segment is prepared for large epochs
    wal.simulate_crash();
    for f in segment_files(dir.path()) {
        let len = std::fs::metadata(&f).unwrap().len();
        assert_eq!(len % 512, 0, "{} is {len} bytes", f.display());
    }
    let wal = SegmentedWal::open(c).unwrap();
    assert_eq!(wal.replay().unwrap().len(), 1);
}
