//! Recovery (DESIGN "Recovery", I5, I6, I24): torn final writes are cut,
//! damage to durable data is reported with its position, foreign or garbage
//! files are typed errors.
mod common;

use std::path::{Path, PathBuf};

use common::{Rng, copy_dir, payload, segment_files};
use directwal::{RecoveryMode, SegmentedWal, SegmentedWalConfig, WalError};

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(1 << 20).chunk(64 * 1024).build()
}

const LEN: usize = 200;

/// Appends `n` records and syncs; returns the active segment's data end.
fn append_sync(wal: &mut SegmentedWal, n: u64) -> u64 {
    for _ in 0..n {
        let lsn = wal.next_lsn();
        wal.append(1, 0, 0, &payload(lsn, LEN)).unwrap();
    }
    wal.sync().unwrap();
    wal.list_segments().unwrap().last().unwrap().used_bytes
}

/// A WAL with `acked` records acknowledged in three syncs, then one more
/// write of `last` records whose sync we pretend never returned. Returns
/// (dir, active segment, durable end, end of the final write).
fn scenario(acked: u64, last: u64) -> (tempfile::TempDir, PathBuf, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    append_sync(&mut wal, acked / 3);
    append_sync(&mut wal, acked / 3);
    let durable = append_sync(&mut wal, acked - 2 * (acked / 3));
    let end = append_sync(&mut wal, last);
    let seg = wal.list_segments().unwrap().last().unwrap().path.clone();
    wal.simulate_crash();
    (dir, seg, durable, end)
}

/// Reopens a crash image and checks the acknowledged prefix, then appends.
fn reopen_and_check(dir: &Path, acked: u64, max: u64) -> u64 {
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap_or_else(|e| panic!("open refused: {e}"));
    let recs = wal.replay().unwrap();
    assert!(recs.len() as u64 >= acked && recs.len() as u64 <= max, "kept {} records", recs.len());
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.header.lsn, i as u64 + 1);
        assert_eq!(r.payload, payload(r.header.lsn, LEN), "LSN {}", r.header.lsn);
    }
    let kept = recs.len() as u64;
    assert_eq!(wal.next_lsn(), kept + 1);
    // And the WAL continues.
    let lsn = wal.append(1, 0, 0, &payload(kept + 1, LEN)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let wal = SegmentedWal::open(cfg(dir)).unwrap();
    assert_eq!(wal.replay().unwrap().last().unwrap().header.lsn, lsn);
    kept
}

fn damage(path: &Path, range: std::ops::Range<u64>, garbage: Option<&mut Rng>) {
    let mut bytes = std::fs::read(path).unwrap();
    let slice = &mut bytes[range.start as usize..range.end as usize];
    match garbage {
        Some(rng) => slice.iter_mut().for_each(|b| *b = rng.next() as u8),
        None => slice.fill(0),
    }
    std::fs::write(path, bytes).unwrap();
}

fn image_of(dir: &Path, seg: &Path, work: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(work);
    copy_dir(dir, work);
    work.join(seg.file_name().unwrap())
}

#[test]
fn torn_final_write_cut_at_many_offsets_keeps_every_acknowledged_record() {
    let (dir, seg, durable, end) = scenario(30, 40);
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    let mut tried = 0;
    let mut c = durable;
    while c < end {
        for garbage in [false, true] {
            let work = scratch.path().join("img");
            let s = image_of(dir.path(), &seg, &work);
            damage(&s, c..end, garbage.then_some(&mut rng));
            let kept = reopen_and_check(&work, 30, 70);
            // Everything before the cut that forms whole records survives.
            assert!(kept >= 30 + (c - durable) / directwal::layout::record_size(LEN) as u64 - 1);
            tried += 1;
        }
        c += 24;
    }
    println!("torn offsets tried: {tried}");
    assert!(tried > 500);
}

#[test]
fn hole_anywhere_inside_the_last_unsynced_write_never_refuses_open() {
    // Any single 512-byte sector of the final write lost (zeros or garbage),
    // with later sectors of the same write present: the reordered-write case.
    let (dir, seg, durable, end) = scenario(30, 60);
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = Rng(11);
    let mut s = durable.next_multiple_of(512);
    let mut tried = 0;
    while s < end {
        for garbage in [false, true] {
            let work = scratch.path().join("img");
            let img = image_of(dir.path(), &seg, &work);
            damage(&img, s..(s + 512).min(end), garbage.then_some(&mut rng));
            reopen_and_check(&work, 30, 90);
            tried += 1;
        }
        s += 512;
    }
    // A whole zeroed 4 KiB block in the middle of the write.
    let work = scratch.path().join("img");
    let img = image_of(dir.path(), &seg, &work);
    let mid = (durable + (end - durable) / 2) / 4096 * 4096;
    assert!(mid > durable && mid + 4096 < end);
    damage(&img, mid..mid + 4096, None);
    let kept = reopen_and_check(&work, 30, 90);
    assert!(kept < 90);
    println!("sectors tried: {tried}");
}

#[test]
fn flipped_byte_in_durable_data_followed_by_later_syncs_is_corruption_with_position() {
    let (dir, seg, _durable, _end) = scenario(30, 10);
    let scratch = tempfile::tempdir().unwrap();
    let start = directwal::layout::data_start(4096);
    let rsize = directwal::layout::record_size(LEN) as u64;
    // Records 1..=20 were followed by later syncs (epochs 2, 3 and 4).
    for (lsn, byte) in [(1u64, 0u64), (1, 31), (5, 100), (10, 8), (20, rsize - 9)] {
        let work = scratch.path().join("img");
        let img = image_of(dir.path(), &seg, &work);
        let pos = start + (lsn - 1) * rsize + byte;
        let mut bytes = std::fs::read(&img).unwrap();
        bytes[pos as usize] ^= 0x10;
        std::fs::write(&img, bytes).unwrap();
        match SegmentedWal::open(cfg(&work)) {
            Err(WalError::Corruption { segment, offset, lsn: at, .. }) => {
                assert_eq!(segment, seg.file_name().unwrap().to_str().unwrap());
                assert_eq!((offset, at), (start + (lsn - 1) * rsize, lsn));
            }
            other => panic!("flip at {pos} (LSN {lsn}): expected Corruption, got {other:?}"),
        }
        // Tolerant mode opens, keeps the records before the damage and says what it dropped.
        let mut c = cfg(&work);
        c.writer_config.recovery_mode = RecoveryMode::Tolerant;
        let wal = SegmentedWal::open(c).unwrap();
        assert!(wal.recovery_report().dropped_corruption.is_some());
        assert_eq!(wal.replay().unwrap().len() as u64, lsn - 1);
    }
}

#[test]
fn damage_in_sealed_segments_is_reported_by_replay_and_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    append_sync(&mut wal, 20);
    wal.roll_segment().unwrap();
    append_sync(&mut wal, 5);
    drop(wal);
    let sealed = segment_files(dir.path())[0].clone();
    let scratch = tempfile::tempdir().unwrap();
    let rsize = directwal::layout::record_size(LEN) as u64;
    let start = directwal::layout::data_start(4096);

    // A flipped payload byte: open succeeds (sealed segments are not
    // rescanned), replay names the segment, offset and LSN.
    let work = scratch.path().join("a");
    let img = image_of(dir.path(), &sealed, &work);
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[(start + 7 * rsize + 50) as usize] ^= 1;
    std::fs::write(&img, bytes).unwrap();
    let wal = SegmentedWal::open(cfg(&work)).unwrap();
    match wal.replay() {
        Err(WalError::Corruption { offset, lsn, .. }) => assert_eq!((offset, lsn), (start + 7 * rsize, 8)),
        other => panic!("expected Corruption, got {other:?}"),
    }
    drop(wal);

    // A damaged header or seal block refuses open.
    for (what, pos) in [("header", 20u64), ("seal", 4096 + 10)] {
        let work = scratch.path().join(what);
        let img = image_of(dir.path(), &sealed, &work);
        let mut bytes = std::fs::read(&img).unwrap();
        bytes[pos as usize] ^= 1;
        std::fs::write(&img, bytes).unwrap();
        match SegmentedWal::open(cfg(&work)) {
            Err(WalError::Corruption { offset, .. }) => assert_eq!(offset, pos / 4096 * 4096, "{what}"),
            other => panic!("{what}: expected Corruption, got {other:?}"),
        }
    }
}

#[test]
fn a_segment_of_another_wal_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for d in [a.path(), b.path()] {
        let mut wal = SegmentedWal::open(cfg(d)).unwrap();
        append_sync(&mut wal, 5);
        wal.roll_segment().unwrap();
        append_sync(&mut wal, 5);
    }
    // B's second segment (first LSN 6) put in place of A's.
    let name = segment_files(b.path())[1].file_name().unwrap().to_owned();
    std::fs::copy(b.path().join(&name), a.path().join(&name)).unwrap();
    match SegmentedWal::open(cfg(a.path())) {
        Err(WalError::ForeignSegment { segment, .. }) => assert_eq!(segment, name.to_str().unwrap()),
        other => panic!("expected ForeignSegment, got {other:?}"),
    }
}

#[test]
fn garbage_named_like_a_segment_is_an_error_never_a_panic() {
    let mut rng = Rng(3);
    let valid = {
        let d = tempfile::tempdir().unwrap();
        let mut wal = SegmentedWal::open(cfg(d.path())).unwrap();
        append_sync(&mut wal, 3);
        drop(wal);
        std::fs::read(&segment_files(d.path())[0]).unwrap()
    };
    let mut images: Vec<Vec<u8>> = vec![vec![], vec![0; 10], vec![0; 8192], b"DWALSEG\0".to_vec()];
    for len in [100usize, 4096, 9000, 70_000] {
        images.push((0..len).map(|_| rng.next() as u8).collect());
    }
    // A valid header followed by garbage, and a valid file cut short.
    let mut hdr = valid.clone();
    hdr[4096..].iter_mut().for_each(|b| *b = rng.next() as u8);
    images.push(hdr);
    images.push(valid[..5000].to_vec());
    for (i, img) in images.iter().enumerate() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(directwal::segment_file_name(1)), img).unwrap();
        let r = std::panic::catch_unwind(|| SegmentedWal::open(cfg(d.path())).map(|w| w.replay()));
        match r {
            Err(_) => panic!("image {i} panicked"),
            Ok(Ok(Ok(recs))) => assert!(i >= 8, "image {i} accepted with {} records", recs.len()),
            // No readable header: damage naming the file at offset 0, never another error.
            Ok(Err(WalError::Corruption { segment, offset: 0, .. })) if i < 8 => {
                assert_eq!(segment, directwal::segment_file_name(1), "image {i}")
            }
            Ok(Err(e)) => assert!(i >= 8 && matches!(e, WalError::Corruption { .. }), "image {i}: {e}"),
            Ok(Ok(Err(e))) => panic!("image {i} opened but failed to replay: {e}"),
        }
    }
}

#[test]
fn an_empty_newest_segment_left_by_a_crash_is_tolerated_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    append_sync(&mut wal, 4);
    wal.roll_segment().unwrap(); // creates wal-5, empty
    wal.simulate_crash();
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2);
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.next_lsn(), 5);
    assert_eq!(wal.replay().unwrap().len(), 4);
    assert_eq!(segment_files(dir.path()), files, "replaced under the same name");
}

#[test]
fn leftover_temporary_segment_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    drop(SegmentedWal::open(cfg(dir.path())).unwrap());
    std::fs::write(dir.path().join("wal-00000000000000000009.seg.tmp"), [1u8; 100]).unwrap();
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.recovery_report().temp_files_removed, 1);
    assert!(!dir.path().join("wal-00000000000000000009.seg.tmp").exists());
}

#[test]
fn a_missing_middle_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    for _ in 0..3 {
        append_sync(&mut wal, 2);
        wal.roll_segment().unwrap();
    }
    drop(wal);
    std::fs::remove_file(&segment_files(dir.path())[1]).unwrap();
    match SegmentedWal::open(cfg(dir.path())) {
        Err(WalError::MissingSegment { expected_lsn, found_lsn, .. }) => assert_eq!((expected_lsn, found_lsn), (3, 5)),
        other => panic!("expected MissingSegment, got {other:?}"),
    }
}

#[test]
fn damage_inside_the_newest_sync_is_indistinguishable_from_a_torn_write_and_is_cut() {
    // Documented limit (DESIGN I5): no later write proves the last sync
    // completed, so damage there is treated as a torn tail.
    let (dir, seg, durable, _end) = scenario(30, 0);
    let rsize = directwal::layout::record_size(LEN) as u64;
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[(durable - rsize + 40) as usize] ^= 1; // the last record of the last sync
    std::fs::write(&seg, bytes).unwrap();
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.replay().unwrap().len(), 29);
    assert!(wal.recovery_report().torn_tail.is_some());
}

#[test]
fn a_seal_with_a_valid_crc_but_impossible_values_is_corruption_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    append_sync(&mut wal, 5);
    wal.roll_segment().unwrap();
    append_sync(&mut wal, 1);
    drop(wal);
    let seg = segment_files(dir.path())[0].clone();
    let original = std::fs::read(&seg).unwrap();
    // The seed is CRC32C(wal_id ‖ salt), header bytes 16..48 (FORMAT.md).
    let seed = crc32c::crc32c(&original[16..48]);
    let forge = |last_lsn: u64, records: u64, data_end: u64| {
        let mut bytes = original.clone();
        let s = &mut bytes[4096..4096 + 64];
        s[8..16].copy_from_slice(&last_lsn.to_le_bytes());
        s[16..24].copy_from_slice(&records.to_le_bytes());
        s[24..32].copy_from_slice(&data_end.to_le_bytes());
        let crc = crc32c::crc32c_append(seed, &s[..60]);
        s[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    };
    // Sanity: re-forging the true values yields a WAL that opens.
    let true_end = u64::from_le_bytes(original[4096 + 24..4096 + 32].try_into().unwrap());
    std::fs::write(&seg, forge(5, 5, true_end)).unwrap();
    assert_eq!(SegmentedWal::open(cfg(dir.path())).unwrap().replay().unwrap().len(), 6);
    for (last, records, end) in
        [(u64::MAX, 5, true_end), (5, 4, true_end), (5, 5, 1 << 40), (5, 5, 0), (0, 0, true_end)]
    {
        std::fs::write(&seg, forge(last, records, end)).unwrap();
        match std::panic::catch_unwind(|| SegmentedWal::open(cfg(dir.path()))) {
            Err(_) => panic!("forged seal ({last}, {records}, {end}) panicked"),
            Ok(Err(WalError::Corruption { offset: 4096, .. })) => {}
            Ok(other) => panic!("forged seal ({last}, {records}, {end}): expected Corruption, got {other:?}"),
        }
    }
}

/// Issue 15 item 10 (DESIGN I24): tolerant recovery opens past a newest
/// segment that is no segment at all (empty, headerless, garbage), says
/// what it set aside and keeps the file under an `.aside-{k}` name; strict
/// mode keeps refusing. Directory readers and `check` ignore the aside file.
#[test]
fn tolerant_open_sets_a_headerless_newest_segment_aside_and_never_deletes_it() {
    let images: [(&str, Vec<u8>); 3] = [("empty", vec![]), ("short", vec![0; 100]), ("garbage", vec![0x5a; 8192])];
    for (what, image) in images {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
        append_sync(&mut wal, 4);
        wal.roll_segment().unwrap();
        append_sync(&mut wal, 3);
        wal.simulate_crash();
        let newest = segment_files(dir.path())[1].clone();
        std::fs::write(&newest, &image).unwrap();
        assert!(SegmentedWal::open(cfg(dir.path())).is_err(), "{what}: strict mode opened");
        let mut c = cfg(dir.path());
        c.writer_config.recovery_mode = RecoveryMode::Tolerant;
        let mut wal = SegmentedWal::open(c.clone()).unwrap();
        let aside = wal.recovery_report().set_aside.clone().expect("reported");
        assert_eq!(aside.segment, newest.file_name().unwrap().to_str().unwrap(), "{what}");
        assert_eq!(std::fs::read(&aside.moved_to).unwrap(), image, "{what}: kept as it was");
        assert!(aside.moved_to.to_str().unwrap().ends_with(".seg.aside-1"), "{}", aside.moved_to.display());
        // The log goes on from the set-aside segment's first LSN.
        assert_eq!((wal.replay().unwrap().len(), wal.next_lsn()), (4, 5), "{what}");
        // I11: the set-aside segment may have been encrypted: a ring is
        // required until encryption is turned off explicitly.
        assert!(matches!(wal.append(1, 0, 0, b"x"), Err(WalError::EncryptionRequired { .. })), "{what}");
        wal.disable_encryption().unwrap();
        wal.append(1, 0, 0, b"after").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let check = directwal::check::check_dir(dir.path(), &Default::default(), &mut |_| {}).unwrap();
        assert!(check.is_clean() && check.aside_files == vec![aside.moved_to.clone()], "{what}");
        assert_eq!(directwal::WalReader::open_dir(dir.path(), None).unwrap().durable_lsn(), 5);
        let wal = SegmentedWal::open(c).unwrap();
        assert_eq!((wal.replay().unwrap().len(), wal.recovery_report().set_aside.clone()), (5, None));
    }
}

/// Issue 15 item 10 (DESIGN I24): damage to durable data at the newest
/// segment's FIRST record leaves no record to keep; tolerant recovery sets
/// the segment aside as it was (the evidence of what it dropped), never
/// replaces it, and goes on at its first LSN. A plain WAL is then asked for
/// no ring (I11: the set-aside file's header says plain). Strict mode refuses.
#[test]
fn tolerant_open_sets_aside_a_newest_segment_damaged_at_its_first_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    append_sync(&mut wal, 4);
    wal.roll_segment().unwrap();
    for _ in 0..3 {
        append_sync(&mut wal, 2);
    }
    wal.simulate_crash();
    let newest = segment_files(dir.path())[1].clone();
    let mut image = std::fs::read(&newest).unwrap();
    // Record 1 (LSN 5) was followed by two later syncs: durable data.
    image[directwal::layout::data_start(4096) as usize + 40] ^= 0x10;
    std::fs::write(&newest, &image).unwrap();
    assert!(matches!(SegmentedWal::open(cfg(dir.path())), Err(WalError::Corruption { lsn: 5, .. })));
    let mut c = cfg(dir.path());
    c.writer_config.recovery_mode = RecoveryMode::Tolerant;
    let mut wal = SegmentedWal::open(c).unwrap();
    let report = wal.recovery_report().clone();
    assert!(report.dropped_corruption.as_deref().is_some_and(|d| d.contains("LSN 5")), "{report:?}");
    let aside = report.set_aside.expect("the damaged segment is set aside");
    assert_eq!(aside.segment, newest.file_name().unwrap().to_str().unwrap());
    assert!(aside.moved_to.to_str().unwrap().ends_with(".seg.aside-1"), "{}", aside.moved_to.display());
    assert_eq!(std::fs::read(&aside.moved_to).unwrap(), image, "the evidence is kept byte for byte");
    assert_eq!((wal.replay().unwrap().len(), wal.next_lsn()), (4, 5));
    wal.append(1, 0, 0, &payload(5, LEN)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    // I11: the set-aside file is plain: no ring is asked after a reopen.
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.append(1, 0, 0, &payload(6, LEN)).unwrap(), 6);
    wal.sync().unwrap();
    drop(wal);
    let check = directwal::check::check_dir(dir.path(), &Default::default(), &mut |_| {}).unwrap();
    assert!(check.is_clean() && check.aside_files == vec![aside.moved_to.clone()]);
    assert_eq!(std::fs::read(&aside.moved_to).unwrap(), image);
}
