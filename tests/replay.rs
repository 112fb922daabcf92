//! Owned replay (`replay`, `replay_from`, `replay_from_limit`, and the
//! same on `WalHandle`): exactly the records the readers see, in one `Vec`
//! sized up front, and no record read past the limit.
mod common;

use common::payload;
use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::{SegmentedWal, SegmentedWalConfig, WalError, WalHandle};

fn cfg(dir: &std::path::Path) -> SegmentedWalConfig {
    common::config(dir).segment(16 * 1024).chunk(16 * 1024).buffer(8 * 1024).build()
}

fn fill(wal: &mut SegmentedWal, n: u64) {
    for _ in 0..n {
        let lsn = wal.next_lsn();
        wal.append(1, 7, 3, &payload(lsn, 100)).unwrap();
    }
    wal.sync().unwrap();
}

fn check(records: &[directwal::WalRecord], first: u64) {
    for (i, r) in records.iter().enumerate() {
        let lsn = first + i as u64;
        assert_eq!((r.header.lsn, r.header.tenant_id, r.header.vshard_id), (lsn, 7, 3));
        assert_eq!(r.payload, payload(lsn, 100), "payload of LSN {lsn}");
    }
}

/// Damages the record at LSN `lsn` of the first segment (a payload byte);
/// returns the record's offset.
fn damage(dir: &std::path::Path, lsn: u64) -> u64 {
    let first = &common::segment_files(dir)[0];
    let size = directwal::layout::record_size(100) as u64;
    let off = directwal::layout::data_start(4096) + (lsn - 1) * size;
    let mut bytes = std::fs::read(first).unwrap();
    bytes[off as usize + 40] ^= 1;
    std::fs::write(first, bytes).unwrap();
    off
}

#[test]
fn replay_is_sized_from_the_segments_and_holds_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 500);
    assert!(wal.list_segments().unwrap().len() > 4, "sealed segments and an active one");
    let all = wal.replay().unwrap();
    assert_eq!(all.len(), 500);
    // Reserved once from the seals and the active segment's watermark, not
    // grown by doubling (which leaves 512 here).
    assert_eq!(all.capacity(), 500);
    check(&all, 1);
    let from = wal.replay_from(123).unwrap();
    assert_eq!((from.len(), from.capacity()), (378, 378));
    check(&from, 123);
    let (page, more) = wal.replay_from_limit(490, 5).unwrap();
    assert_eq!((page.len(), page.capacity(), more), (5, 5, true));
    check(&page, 490);
    let (rest, more) = wal.replay_from_limit(496, 1000).unwrap();
    assert_eq!((rest.len(), more), (5, false));
    check(&rest, 496);
}

#[test]
fn replay_from_limit_does_not_read_the_record_after_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 200);
    drop(wal);
    let off = damage(dir.path(), 10);
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    let (page, more) = wal.replay_from_limit(1, 9).unwrap();
    assert_eq!((page.len(), more), (9, true));
    check(&page, 1);
    // The replay that includes LSN 10 names it, as before.
    for result in [wal.replay(), wal.replay_from(5), wal.replay_from_limit(1, 10).map(|(r, _)| r)] {
        match result {
            Err(WalError::Corruption { lsn, offset, segment, .. }) => {
                assert_eq!((lsn, offset), (10, off));
                assert!(segment.ends_with(".seg"), "{segment}");
            }
            other => panic!("expected corruption at LSN 10, got {other:?}"),
        }
    }
}

#[test]
fn encrypted_replay_moves_each_decrypted_payload_into_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::new(WalEncryptionKey::from_bytes(&[9; 32]));
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    wal.set_encryption_ring(ring.clone()).unwrap();
    fill(&mut wal, 300);
    let all = wal.replay().unwrap();
    assert_eq!((all.len(), all.capacity()), (300, 300));
    assert!(all.iter().all(|r| r.is_encrypted()));
    check(&all, 1);
    drop(wal);
    // Reopened: sealed segments read from their files.
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    wal.set_encryption_ring(ring).unwrap();
    check(&wal.replay().unwrap(), 1);
    let (page, more) = wal.replay_from_limit(299, 1).unwrap();
    assert_eq!((page.len(), more), (1, true));
    check(&page, 299);
}

#[test]
fn the_handle_replays_like_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 150);
    let expected = wal.replay().unwrap();
    let handle = WalHandle::from_wal(wal);
    assert_eq!(handle.replay().unwrap(), expected);
    assert_eq!(handle.replay_from(40).unwrap(), expected[39..]);
    let (page, more) = handle.replay_from_limit(140, 20).unwrap();
    assert_eq!((page.as_slice(), more), (&expected[139..], false));
}

/// Records of a long log: 64 KiB each, in 4 MiB segments, 48 MiB in all,
/// enough sealed bytes for a full replay to read ahead on a second thread.
const LONG: u64 = 768;
const LONG_LEN: usize = 64 << 10;

/// Helper threads a long owned replay starts here: one on Linux with two
/// cores or more (DESIGN I27), none otherwise.
fn helpers(replays: u64) -> u64 {
    let two_cores = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    replays * u64::from(two_cores && cfg!(target_os = "linux"))
}

fn long_cfg(dir: &std::path::Path) -> SegmentedWalConfig {
    common::config(dir).segment(4 << 20).build()
}

fn fill_long(dir: &std::path::Path) {
    let mut wal = SegmentedWal::open(long_cfg(dir)).unwrap();
    for lsn in 1..=LONG {
        wal.append(1, 7, 3, &payload(lsn, LONG_LEN)).unwrap();
    }
    wal.sync().unwrap();
}

/// Every record from `from`, in pages of 50: a limited replay, which never
/// reads ahead on a second thread.
fn paged(wal: &SegmentedWal, mut from: u64) -> directwal::Result<Vec<directwal::WalRecord>> {
    let mut all = Vec::new();
    loop {
        let (page, more) = wal.replay_from_limit(from, 50)?;
        from = page.last().map_or(from, |r| r.header.lsn + 1);
        all.extend(page);
        if !more {
            return Ok(all);
        }
    }
}

fn corruption(e: WalError) -> (String, u64, u64) {
    match e {
        WalError::Corruption { segment, offset, lsn, .. } => (segment, offset, lsn),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_long_replay_read_ahead_returns_what_pages_return() {
    let dir = tempfile::tempdir().unwrap();
    fill_long(dir.path());
    // Reopened, as at a restart: sealed segments read from their files.
    let wal = SegmentedWal::open(long_cfg(dir.path())).unwrap();
    assert!(wal.list_segments().unwrap().len() > 10);
    assert_eq!(wal.stats_snapshot().read_ahead_helpers, 0);
    let all = wal.replay().unwrap();
    assert_eq!(wal.stats_snapshot().read_ahead_helpers, helpers(1), "a long owned replay reads ahead");
    assert_eq!(all.len() as u64, LONG);
    assert!(all.iter().enumerate().all(|(i, r)| r.header.lsn == i as u64 + 1 && r.payload.len() == LONG_LEN));
    assert!(all.iter().all(|r| r.payload == payload(r.header.lsn, LONG_LEN)));
    assert_eq!(all, paged(&wal, 1).unwrap());
    assert_eq!(wal.stats_snapshot().read_ahead_helpers, helpers(1), "limited replays never do");
    assert_eq!(wal.replay_from(300).unwrap(), all[299..]);
    let mut each = Vec::new();
    assert!(!wal.for_each_durable(0, usize::MAX, |r| each.push(r)).unwrap());
    assert_eq!(each, all);
    assert_eq!(wal.stats_snapshot().read_ahead_helpers, helpers(3));
    drop(wal);
    // A directory reader replays the same way.
    assert_eq!(directwal::segmented::replay_all_segments(dir.path()).unwrap(), all);
}

#[test]
fn damage_deep_in_a_long_replay_is_the_error_pages_report() {
    let dir = tempfile::tempdir().unwrap();
    fill_long(dir.path());
    // A payload byte of the fourth record of the eighth segment.
    let file = &common::segment_files(dir.path())[7];
    let first = directwal::parse_segment_name(file.file_name().unwrap().to_str().unwrap()).unwrap();
    let off = directwal::layout::data_start(4096) + 3 * directwal::layout::record_size(LONG_LEN) as u64;
    let mut bytes = std::fs::read(file).unwrap();
    bytes[off as usize + 40] ^= 1;
    std::fs::write(file, bytes).unwrap();
    let wal = SegmentedWal::open(long_cfg(dir.path())).unwrap();
    let full = corruption(wal.replay().unwrap_err());
    assert_eq!((full.1, full.2), (off, first + 3));
    assert!(file.ends_with(&full.0), "{} names {}", full.0, file.display());
    assert_eq!(full, corruption(paged(&wal, 1).unwrap_err()));
    assert_eq!(full, corruption(wal.replay_from(first).unwrap_err()));
    // From the next segment on, the rest replays.
    let next = common::segment_files(dir.path())[8].file_name().unwrap().to_str().unwrap().to_owned();
    let next = directwal::parse_segment_name(&next).unwrap();
    let rest = wal.replay_from(next).unwrap();
    assert_eq!(rest.len() as u64, LONG - next + 1);
}

/// A long log opened on the fault-injecting storage, whose sixth segment's
/// next mapping answers EIO, once: the WAL and that segment's file name.
fn long_wal_failing_to_map_the_sixth(dir: &std::path::Path) -> (SegmentedWal, String) {
    fill_long(dir);
    let (storage, faults) = common::faulty();
    let wal = SegmentedWal::open_with_storage(long_cfg(dir), storage).unwrap();
    let sixth = common::segment_files(dir)[5].file_name().unwrap().to_str().unwrap().to_owned();
    *faults.eio_image_once.lock().unwrap() = Some(sixth.clone());
    (wal, sixth)
}

#[test]
fn a_failed_mapping_deep_in_a_long_replay_is_the_replays_error() {
    let dir = tempfile::tempdir().unwrap();
    // Only the replay's own mapping may meet the EIO (a helper reading
    // ahead never maps a file; one made ahead keeps its failure).
    let (wal, sixth) = long_wal_failing_to_map_the_sixth(dir.path());
    match wal.replay() {
        Err(WalError::Io { path, .. }) => assert!(path.ends_with(&sixth), "{}", path.display()),
        other => panic!("expected the mapping's EIO, got {:?}", other.map(|r| r.len())),
    }
    assert_eq!(wal.stats_snapshot().read_ahead_helpers, helpers(1));
    // Mapped at the next try: everything.
    assert_eq!(wal.replay().unwrap().len() as u64, LONG);
}

#[test]
fn reading_ahead_past_a_file_cut_under_the_replay_is_no_crash() {
    // Two sealed segments of 40 MiB: the helper runs 32 MiB ahead in the first.
    let dir = tempfile::tempdir().unwrap();
    let cfg = || common::config(dir.path()).segment(40 << 20).build();
    let mut wal = SegmentedWal::open(cfg()).unwrap();
    for lsn in 1..=1400 {
        wal.append(1, 7, 3, &payload(lsn, LONG_LEN)).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let first = common::segment_files(dir.path())[0].clone();
    let size = directwal::layout::record_size(LONG_LEN) as u64;
    let bad = directwal::layout::data_start(4096) + 96 * size; // LSN 97, about 6 MiB in
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[bad as usize + 40] ^= 1;
    std::fs::write(&first, bytes).unwrap();
    let wal = SegmentedWal::open(cfg()).unwrap();
    let mut seen = 0u64;
    let result = wal.for_each_durable(0, usize::MAX, |r| {
        seen = r.header.lsn;
        if seen == 1 {
            // Let the helper get ahead, then cut the file (another process,
            // a bad copy) a little past the damage: touching a page past the
            // cut would raise SIGBUS and kill the process.
            std::thread::sleep(std::time::Duration::from_millis(200));
            std::fs::OpenOptions::new().write(true).open(&first).unwrap().set_len(bad + (1 << 20)).unwrap();
        }
        if seen == 50 {
            // The scan has moved on by megabytes: the helper's turn.
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    // The replay reports the damage before the cut, as on one thread.
    match result {
        Err(WalError::Corruption { lsn, offset, .. }) => assert_eq!((lsn, offset, seen), (97, bad, 96)),
        other => panic!("expected the damage at LSN 97, got {other:?}"),
    }
    // (With one core, or off Linux, no helper: the replay alone.)
    assert_eq!(wal.stats_snapshot().read_ahead_helpers, helpers(1));
}

#[test]
fn a_mapping_made_meanwhile_is_used_not_an_earlier_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, sixth) = long_wal_failing_to_map_the_sixth(dir.path());
    let first6 = directwal::parse_segment_name(&sixth).unwrap();
    // Reading ahead, the replay maps the sixth segment early and meets the
    // EIO; then another reader maps it. Alone, the replay would find that
    // mapping when it gets there: so must it with the helper.
    let (reader, mut n) = (wal.reader(), 0u64);
    let all = wal.for_each_durable(0, usize::MAX, |r| {
        n += 1;
        if r.header.lsn == first6 - 1 {
            // (Alone, this read is the one that meets the EIO.)
            let _ = reader.read_page(first6, 1, usize::MAX);
        }
    });
    assert!(!all.unwrap());
    assert_eq!(n, LONG);
}
