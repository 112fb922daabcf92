//! The `directwal` binary run on real WAL directories: clean, torn tail,
//! flipped byte, encrypted with and without the key, and dump's JSON read back.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::process::Command;

use common::*;
use directwal::SegmentedWal;
use directwal::layout::{data_start, record_size};

#[test]
fn clean_wal_inspects_verifies_and_dumps_back_exactly() {
    let dir = write_wal(500, None);
    let d = dir.path().to_str().unwrap();

    let o = run(&["inspect", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("wal-")).collect();
    assert_eq!(rows.len(), segments(dir.path()).len());
    assert!(rows.len() > 3, "several segments: {text}");
    // Sealed segments: headers and seals read, records not (verify reads
    // them); the unsealed newest one: every record scanned.
    let (newest, sealed) = rows.split_last().unwrap();
    assert!(sealed.iter().all(|r| r.ends_with(" headers-ok")), "{text}");
    assert!(newest.ends_with(" records-ok"), "{text}");
    assert!(text.contains("sealed_records=not-verified"), "{text}");
    assert!(text.contains("records=500 "), "{text}");

    let o = run(&["inspect", d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["records"], 500);
    let segs = v["segments"].as_array().unwrap();
    assert_eq!(segs.iter().map(|s| s["records"].as_u64().unwrap()).sum::<u64>(), 500);
    assert!(segs[..segs.len() - 1].iter().all(|s| s["sealed"] == true));

    let o = run(&["verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("500 records") && stdout(&o).contains(": clean"), "{}", stdout(&o));

    let o = run(&["dump", d, "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 500);
    for (i, rec) in (1u64..).zip(&lines) {
        assert_eq!(rec["lsn"], i);
        assert_eq!(rec["record_type"], 1 + i % 3);
        assert_eq!(rec["tenant_id"], i * 7);
        assert_eq!(rec["vshard_id"], i % 5);
        let hex = rec["payload_hex"].as_str().unwrap();
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|j| u8::from_str_radix(&hex[j..j + 2], 16).unwrap()).collect();
        assert_eq!(bytes, payload(i), "lsn {i}");
        assert_eq!(rec["payload_utf8"].as_str().unwrap().as_bytes(), payload(i));
    }
}

#[test]
fn a_truncated_wal_with_spare_files_is_clean_and_dumps_only_the_log() {
    let dir = write_wal(500, None);
    let d = dir.path().to_str().unwrap();
    let wal = SegmentedWal::open(config(dir.path())).unwrap();
    let segs = wal.list_segments().unwrap();
    let cut = segs[3].first_lsn;
    wal.truncate_before(cut).unwrap();
    drop(wal);
    let o = run(&["inspect", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(" spare_files=2 "), "{}", stdout(&o));
    let o = run(&["inspect", d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["spare_files"], 2);
    let o = run(&["verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // The spares still hold old records; none of them is dumped.
    let o = run(&["dump", d, "--format", "json"]);
    let lsns: Vec<u64> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["lsn"].as_u64().unwrap())
        .collect();
    assert_eq!(lsns, (cut..=500).collect::<Vec<_>>());
}

#[test]
fn dump_pages_from_an_lsn_with_a_limit_in_each_format() {
    let dir = write_wal(300, None);
    let d = dir.path().to_str().unwrap();
    let o = run(&["dump", d, "--from", "123", "--limit", "40"]);
    let text = stdout(&o);
    let lsns: Vec<u64> =
        text.lines().map(|l| l.strip_prefix("lsn=").unwrap().split(' ').next().unwrap().parse().unwrap()).collect();
    assert_eq!(lsns, (123..163).collect::<Vec<_>>());
    assert!(text.lines().next().unwrap().contains("payload=\"record 000123 "), "{text}");

    let o = run(&["dump", d, "--from", "7", "--limit", "1", "--format", "hex"]);
    let text = stdout(&o);
    assert!(text.starts_with("# lsn=7 "), "{text}");
    assert!(text.contains("00000000  72 65 63 6f 72 64 20 30  30 30 30 30 37 20"), "{text}");
    assert_eq!(text.lines().count(), 1 + PAYLOAD_LEN.div_ceil(16));

    // Past the end: nothing, successfully.
    let o = run(&["dump", d, "--from", "301"]);
    assert!(o.status.success() && o.stdout.is_empty());
}

#[test]
fn torn_tail_is_reported_with_its_place_and_is_not_damage() {
    let dir = write_wal(95, None);
    let d = dir.path().to_str().unwrap();
    // Garbage after the last record of the newest segment: an unfinished write.
    let newest = segments(dir.path()).pop().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&run(&["inspect", d, "--json"]).stdout).unwrap();
    let last = v["segments"].as_array().unwrap().last().unwrap().clone();
    let end = last["bytes"].as_u64().unwrap();
    let next_lsn = last["last_lsn"].as_u64().unwrap() + 1;
    let f = OpenOptions::new().write(true).open(&newest).unwrap();
    f.write_all_at(&[0xa5; 300], end).unwrap();
    drop(f);

    let o = run(&["verify", d]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    let name = newest.file_name().unwrap().to_str().unwrap();
    assert!(text.contains(&format!("TORN {name} offset {end} lsn {next_lsn}:")), "{text}");
    assert!(text.contains("clean (with a torn tail)"), "{text}");
    let o = run(&["inspect", d]);
    assert!(stdout(&o).lines().any(|l| l.starts_with(name) && l.ends_with("torn-tail")), "{}", stdout(&o));
    // The records before it all dump.
    let o = run(&["dump", d, "--format", "json"]);
    assert_eq!(stdout(&o).lines().count(), 95);
}

#[test]
fn flipped_byte_in_durable_data_fails_verify_naming_the_place() {
    let dir = write_wal(400, None);
    let d = dir.path().to_str().unwrap();
    let first = &segments(dir.path())[0];
    // Record LSN 10 of the first (sealed) segment: its place is fixed by the format.
    let size = record_size(PAYLOAD_LEN) as u64;
    let offset = data_start(4096) + 9 * size;
    let f = OpenOptions::new().read(true).write(true).open(first).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset + 40).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], offset + 40).unwrap();
    drop(f);

    let o = run(&["verify", d]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let name = first.file_name().unwrap().to_str().unwrap();
    assert!(text.contains(&format!("PROBLEM {name} offset {offset} lsn 10: record CRC mismatch")), "{text}");
    assert!(text.contains("DAMAGED (1 problem)"), "{text}");

    let o = run(&["verify", d, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clean"], false);
    assert_eq!(v["problems"][0]["offset"], offset);
    assert_eq!(v["problems"][0]["lsn"], 10);
    // Dump stops at the damage with the same place, after printing what
    // precedes it, and exits 1 as verify does (damage, not a failure to run).
    let o = run(&["dump", d]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).lines().count(), 9);
    assert!(stderr(&o).contains(&format!("offset {offset}")), "{}", stderr(&o));
}

#[test]
fn encrypted_wal_needs_its_key_and_says_so() {
    let keys = tempfile::tempdir().unwrap();
    let (key, ring) = key_file(keys.path(), 0x42);
    let (wrong, _) = key_file(keys.path(), 0x43);
    let dir = write_wal(200, Some(ring));
    let d = dir.path().to_str().unwrap();
    let key = key.to_str().unwrap();

    // Inspect needs no key: the headers and CRCs are in the clear.
    let o = run(&["inspect", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).lines().filter(|l| l.starts_with("wal-")).all(|l| !l.contains(" - ")), "{}", stdout(&o));

    for args in [vec!["verify", d], vec!["dump", d]] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains("is encrypted") && err.contains("--key-file"), "{err}");
        assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
        assert!(o.stdout.is_empty(), "{args:?} printed before failing closed");
    }
    let o = run(&["verify", d, "--key-file", wrong.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("which none of the given key files holds"), "{}", stderr(&o));

    let o = run(&["verify", d, "--key-file", key]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("200 records"), "{}", stdout(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_directwal"))
        .args(["dump", d, "--format", "json", "--from", "50", "--limit", "3"])
        .env("DIRECTWAL_KEY_FILE", key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["payload_utf8"].as_str().unwrap().as_bytes(), payload(50));

    // A key file others can read is refused, not used.
    let loose = keys.path().join("loose");
    std::fs::write(&loose, [0x42; 32]).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["verify", d, "--key-file", loose.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot use key file"), "{}", stderr(&o));
}

#[test]
fn foreign_segment_and_gap_are_problems() {
    let a = write_wal(700, None);
    let b = write_wal(700, None);
    let sa = segments(a.path());
    let sb = segments(b.path());
    // Replace A's second segment with B's (same name, other WAL id).
    std::fs::copy(&sb[1], &sa[1]).unwrap();
    // Remove A's third segment: a gap.
    std::fs::remove_file(&sa[2]).unwrap();
    let o = run(&["verify", a.path().to_str().unwrap()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let n1 = sa[1].file_name().unwrap().to_str().unwrap();
    let n3 = sa[3].file_name().unwrap().to_str().unwrap();
    assert!(text.contains(&format!("PROBLEM {n1} offset 0")) && text.contains("belongs to WAL"), "{text}");
    assert!(text.contains(&format!("PROBLEM {n3} offset 0")) && text.contains("are missing"), "{text}");
}

#[test]
fn garbage_named_like_a_segment_is_a_problem_not_a_crash() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(dir.path().join("wal-00000000000000000001.seg"), vec![0x5a; 9000]).unwrap();
    for args in [["verify", dir.path().to_str().unwrap()], ["inspect", dir.path().to_str().unwrap()]] {
        let o = run(&args);
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert!(stdout(&o).contains("wal-00000000000000000001.seg"), "{}", stdout(&o));
    }
    assert_eq!(run(&["verify", dir.path().to_str().unwrap()]).status.code(), Some(1));
    assert_eq!(run(&["verify", "/nonexistent/directwal"]).status.code(), Some(2));
}

#[test]
fn bench_runs_every_workload_and_prints_the_table() {
    // A --dir that holds a user's files, including names the bench uses.
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = base.path();
    for name in ["w1", "w2", "ceiling", "notes.txt"] {
        std::fs::write(dir.join(name), format!("precious {name}")).unwrap();
    }
    std::fs::create_dir(dir.join("w3")).unwrap();
    std::fs::write(dir.join("w3").join("inside"), "precious inside").unwrap();
    let listing = || {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    let before = listing();

    let o = run(&["bench", "--dir", dir.to_str().unwrap(), "--records", "64", "--threads", "2"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    for row in ["W1 128 B", "W1 bytes per record", "W2 64 x 128 B", "W3 4 KiB", "W4 2 thr", "W5 replay"] {
        assert!(text.lines().any(|l| l.starts_with(row)), "{row} missing:\n{text}");
    }
    assert!(text.contains("4K direct+sync"), "{text}");
    let head = text.lines().nth(1).unwrap();
    assert!(head.starts_with("workload") && head.ends_with(" pass"), "{text}");
    assert!(text.lines().skip(1).all(|l| l.chars().count() <= 100), "wider than 100 columns:\n{text}");
    assert!(text.lines().any(|l| l.starts_with("W1 128 B") && (l.ends_with(" yes") || l.ends_with(" NO"))), "{text}");

    // Every file the user had is still there, unchanged; the bench's own
    // subdirectory is gone.
    assert_eq!(listing(), before);
    for name in ["w1", "w2", "ceiling", "notes.txt"] {
        assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), format!("precious {name}"));
    }
    assert_eq!(std::fs::read_to_string(dir.join("w3").join("inside")).unwrap(), "precious inside");
}

/// Issue 15 items 3 and 5: a symlink named like a segment and a newest
/// segment cut at a record boundary are problems (exit status 1).
#[test]
fn symlinked_and_shortened_segments_are_problems() {
    let a = write_wal(700, None);
    let sa = segments(a.path());
    let newest = sa.last().unwrap();
    let moved = a.path().parent().unwrap().join(format!("moved-{}", newest.file_name().unwrap().to_str().unwrap()));
    std::fs::rename(newest, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, newest).unwrap();
    let o = run(&["verify", a.path().to_str().unwrap()]);
    let text = stdout(&o);
    let _ = std::fs::remove_file(&moved);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("not a regular file") && text.contains(newest.file_name().unwrap().to_str().unwrap()),
        "{text}"
    );

    let b = write_wal(700, None);
    let newest = segments(b.path()).pop().unwrap();
    let cut = data_start(4096) + 2 * record_size(PAYLOAD_LEN) as u64;
    OpenOptions::new().write(true).open(&newest).unwrap().set_len(cut).unwrap();
    let o = run(&["verify", b.path().to_str().unwrap()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("shortened"), "{text}");
}

/// DESIGN I26: a newest segment cut at a multiple of 512 that is also a
/// record boundary is a problem too (exit status 1); before format version
/// 4, verify called it clean.
#[test]
fn a_newest_segment_cut_at_a_block_aligned_record_boundary_is_a_problem() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let len = 512 - directwal::layout::RECORD_HEADER_LEN;
    let mut wal = SegmentedWal::open(config(dir.path())).unwrap();
    for _ in 0..8 {
        wal.append(1, 0, 0, &vec![7u8; len]).unwrap();
    }
    wal.sync().unwrap();
    wal.simulate_crash();
    let newest = segments(dir.path()).pop().unwrap();
    let cut = data_start(4096) + 4 * 512;
    OpenOptions::new().write(true).open(&newest).unwrap().set_len(cut).unwrap();
    let o = run(&["verify", dir.path().to_str().unwrap()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("shortened") && text.contains(&cut.to_string()), "{text}");
}
