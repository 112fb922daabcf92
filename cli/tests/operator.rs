//! The command as an operator uses it: typo'd and empty paths, exit
//! statuses, dump's range, filters and stats, --json everywhere, bench's
//! JSON rows, and what inspect says it checked.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::process::Command;

use common::*;
use serde_json::Value;

fn json_lines(o: &std::process::Output) -> Vec<Value> {
    stdout(o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn an_empty_or_missing_directory_is_not_a_clean_wal() {
    let empty = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let e = empty.path().to_str().unwrap();
    for cmd in ["verify", "inspect", "dump", "repair"] {
        let o = run(&[cmd, e]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}{}", stdout(&o), stderr(&o));
        assert!(stderr(&o).contains("no WAL segments in"), "{cmd}: {}", stderr(&o));
        assert!(!stdout(&o).contains("clean"), "{cmd}: {}", stdout(&o));
    }
    let o = run(&["verify", e, "--allow-empty"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["inspect", e, "--allow-empty"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // No segment to probe: O_DIRECT is unknown, not "refused".
    assert!(stdout(&o).contains("direct_io=unknown"), "{}", stdout(&o));

    for cmd in ["verify", "inspect", "dump", "repair"] {
        let o = run(&[cmd, "/nonexistent/directwal"]);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        assert!(stderr(&o).contains("/nonexistent/directwal: no such directory"), "{cmd}: {}", stderr(&o));
    }
}

#[test]
fn argument_errors_are_clear_and_exit_2() {
    let dir = write_wal(20, None);
    let d = dir.path().to_str().unwrap();
    let o = run(&["dump", d, "--limit", "-1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a count of records"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("tip:"), "{}", stderr(&o));
    let o = run(&["bench", "--threads", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'0' is not a thread count"), "{}", stderr(&o));
    let o = run(&["dump", d, "--type", "bogus"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["dump", d, "--from", "9", "--to", "3"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["verify", d, "--format", "hex"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn every_help_has_the_same_exit_status_section() {
    let main = stdout(&run(&["--help"]));
    let at = main.find("Exit status:").expect("an exit status section");
    let section = &main[at..];
    assert!(
        section.contains("0  success")
            && section.contains("1  damage found")
            && section.contains("2  the command could not run")
    );
    for cmd in ["inspect", "dump", "verify", "repair", "bench"] {
        let help = stdout(&run(&[cmd, "--help"]));
        assert!(help.ends_with(section), "{cmd} --help:\n{help}");
        assert!(help.contains("--json") && help.contains("--format"), "{cmd} --help:\n{help}");
    }
}

#[test]
fn cli_readme_holds_every_help_word_for_word() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for cmd in [
        &["--help"][..],
        &["inspect", "--help"],
        &["dump", "--help"],
        &["verify", "--help"],
        &["repair", "--help"],
        &["bench", "--help"],
    ] {
        let help = stdout(&run(cmd));
        let block = format!("```text\n$ directwal {}\n{help}```", cmd.join(" "));
        assert!(
            readme.contains(&block),
            "cli/README.md lacks (or differs from) `directwal {}`:\n{block}",
            cmd.join(" ")
        );
    }
}

#[test]
fn json_and_format_json_are_accepted_everywhere() {
    let dir = write_wal(30, None);
    let d = dir.path().to_str().unwrap();
    for cmd in ["inspect", "verify", "repair", "dump"] {
        for flag in [&["--json"][..], &["--format", "json"][..]] {
            let mut args = vec![cmd, d];
            args.extend_from_slice(flag);
            let o = run(&args);
            assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
            assert!(!json_lines(&o).is_empty(), "{args:?}");
        }
    }
}

#[test]
fn inspect_says_what_it_checked_and_exits_1_on_damage() {
    let dir = write_wal(400, None);
    let d = dir.path().to_str().unwrap();
    // A flipped payload byte in a sealed segment: inspect reads no records
    // there, so it must not call that segment healthy, only its headers.
    let first = &segments(dir.path())[0];
    let f = OpenOptions::new().read(true).write(true).open(first).unwrap();
    let at = directwal::layout::data_start(4096) + 60;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 1], at).unwrap();
    let o = run(&["inspect", d]);
    assert_eq!(o.status.code(), Some(0));
    let name = first.file_name().unwrap().to_str().unwrap();
    assert!(stdout(&o).lines().any(|l| l.starts_with(name) && l.ends_with(" headers-ok")), "{}", stdout(&o));
    assert!(!stdout(&o).lines().any(|l| l.ends_with(" ok")), "{}", stdout(&o));

    // Damage inspect does see (a segment missing in the middle): exit 1.
    std::fs::remove_file(&segments(dir.path())[2]).unwrap();
    let o = run(&["inspect", d]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains(" damaged"), "{}", stdout(&o));
    let o = run(&["inspect", d, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json_lines(&o)[0]["clean"], false);

    // inspect needs no key, so a stale DIRECTWAL_KEY_FILE does not stop it.
    let o = Command::new(env!("CARGO_BIN_EXE_directwal"))
        .args(["inspect", d])
        .env("DIRECTWAL_KEY_FILE", "/nonexistent/key")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!stderr(&o).contains("key file"), "{}", stderr(&o));
}

#[test]
fn dump_selects_by_range_type_tenant_and_vshard_with_short_flags() {
    // Record i: type 1 + i % 3, tenant 7 i, vshard i % 5 (see write_wal).
    let dir = write_wal(300, None);
    let d = dir.path().to_str().unwrap();
    let lsns = |o: &std::process::Output| json_lines(o).iter().map(|v| v["lsn"].as_u64().unwrap()).collect::<Vec<_>>();

    let o = run(&["dump", d, "-s", "100", "-e", "120", "--json"]);
    assert_eq!(lsns(&o), (100..=120).collect::<Vec<_>>());
    let o = run(&["dump", d, "-s", "100", "-n", "5", "--type", "put", "--json"]);
    assert_eq!(lsns(&o), vec![102, 105, 108, 111, 114]);
    assert!(json_lines(&o).iter().all(|v| v["type_name"] == "put" && v["record_type"] == 1));
    let o = run(&["dump", d, "-t", "2,checkpoint", "--vshard", "0", "-e", "60", "--format", "json"]);
    let want: Vec<u64> = (1..=60).filter(|i| i % 3 != 0 && i % 5 == 0).collect();
    assert_eq!(lsns(&o), want);
    let o = run(&["dump", d, "--tenant", "700", "--json"]);
    assert_eq!(lsns(&o), vec![100]);

    // Text names the known types.
    let o = run(&["dump", d, "-s", "3", "-n", "3"]);
    let text = stdout(&o);
    let types: Vec<&str> = text.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(types, ["type=put", "type=delete", "type=checkpoint"], "{text}");
}

#[test]
fn dump_stats_count_records_and_bytes_per_type_and_tenant() {
    let dir = write_wal(300, None);
    let d = dir.path().to_str().unwrap();
    let o = run(&["dump", d, "--stats", "--json", "-e", "30"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["records"], 30);
    assert_eq!(v["payload_bytes"], 30 * PAYLOAD_LEN as u64);
    assert_eq!(v["disk_bytes"], 30 * directwal::layout::record_size(PAYLOAD_LEN) as u64);
    let types = v["types"].as_array().unwrap();
    assert_eq!(types.len(), 3);
    assert!(types.iter().all(|t| t["records"] == 10), "{v}");
    assert_eq!(types[1]["type_name"], "delete");
    assert_eq!(v["tenants"].as_array().unwrap().len(), 30);
    let o = run(&["dump", d, "--stats", "-e", "30"]);
    let text = stdout(&o);
    assert!(text.starts_with("records 30 (LSN 1..=30)"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("put(1)") && l.contains(" 10 ") && l.contains("33.33%")), "{text}");
}

#[test]
fn dump_refuses_to_pass_an_overlapping_segment_silently() {
    let dir = write_wal(300, None);
    let d = dir.path().to_str().unwrap();
    let segs = segments(dir.path());
    // A copy of the second segment under a name three LSNs later, as a
    // botched restore leaves: LSNs there would be held twice.
    let second = directwal::parse_segment_name(segs[1].file_name().unwrap().to_str().unwrap()).unwrap();
    let dup = dir.path().join(directwal::segment_file_name(second + 3));
    std::fs::copy(&segs[1], &dup).unwrap();
    let o = run(&["dump", d, "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let printed = json_lines(&o).len() as u64;
    assert_eq!(printed, second + 2, "every record before the duplicate, none after");
    let name = dup.file_name().unwrap().to_str().unwrap();
    assert!(stderr(&o).contains(name), "{}", stderr(&o));
    // A range that ends before it is not affected.
    let o = run(&["dump", d, "--to", "5"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bench_json_has_one_object_per_row_with_its_verdict() {
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let o = run(&["bench", "--dir", base.path().to_str().unwrap(), "--records", "64", "--workload", "w1,w3", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json_lines(&o);
    assert_eq!(rows.len(), 4, "W1, W1 bytes, W3 fresh and checkpointed");
    for r in &rows {
        for key in ["workload", "value", "unit", "baseline", "ratio", "target", "pass"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        let ratio = r["value"].as_f64().unwrap() / r["baseline"].as_f64().unwrap();
        assert!((ratio - r["ratio"].as_f64().unwrap()).abs() < 1e-9, "{r}");
        assert!(r["pass"].is_boolean(), "{r}");
    }
    assert_eq!(rows[1]["target"]["at_most"], 1.3);
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0, "the bench removed its own directory");
}

mod follow {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, ChildStdout, Stdio};
    use std::time::{Duration, Instant};

    use directwal::{SegmentedWal, SegmentedWalConfig};

    use super::*;

    fn spawn(args: &[&str]) -> (Child, BufReader<ChildStdout>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_directwal"))
            .args(args)
            .env_remove("DIRECTWAL_KEY_FILE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        (child, out)
    }

    /// The LSN of the next JSON line of `out`.
    fn next_lsn(out: &mut BufReader<ChildStdout>) -> u64 {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "dump --follow ended early");
        serde_json::from_str::<Value>(&line).unwrap()["lsn"].as_u64().unwrap()
    }

    /// A writer in this process (the dump is another one), with small
    /// segments so the follow crosses segment rolls.
    fn writer(dir: &std::path::Path) -> SegmentedWal {
        let mut c = SegmentedWalConfig::new(dir.into());
        c.segment_target_size = 16 * 1024;
        SegmentedWal::open(c).unwrap()
    }

    fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "dump --follow did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn prints_records_a_concurrent_writer_syncs_in_order_and_stops_on_sigint() {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut wal = writer(dir.path());
        for i in 1..=10u64 {
            wal.append(1, 0, 0, &payload(i)).unwrap();
        }
        wal.sync().unwrap();
        let (mut child, mut out) = spawn(&["dump", dir.path().to_str().unwrap(), "-f", "--poll-ms", "20", "--json"]);
        for want in 1..=10 {
            assert_eq!(next_lsn(&mut out), want);
        }
        // Batches synced while the dump follows, across several segments.
        let mut lsn = 10;
        for _ in 0..8 {
            for _ in 0..40 {
                lsn += 1;
                wal.append(2, 3, 4, &payload(lsn)).unwrap();
            }
            wal.sync().unwrap();
            for want in lsn - 39..=lsn {
                assert_eq!(next_lsn(&mut out), want);
            }
        }
        let segs = wal.list_segments().unwrap().len();
        assert!(segs >= 3, "the follow crossed segment rolls: {segs} segments");
        // SAFETY: kill() with the child's live pid and a valid signal.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        let status = wait_exit(&mut child);
        assert_eq!(status.code(), Some(0), "Ctrl-C ends the follow cleanly");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert!(rest.is_empty(), "nothing after the last record: {rest}");
    }

    #[test]
    fn stops_by_itself_once_to_is_printed() {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut wal = writer(dir.path());
        wal.append(1, 0, 0, b"first").unwrap();
        wal.sync().unwrap();
        let (mut child, mut out) =
            spawn(&["dump", dir.path().to_str().unwrap(), "-f", "-e", "25", "--poll-ms", "20", "--json"]);
        assert_eq!(next_lsn(&mut out), 1);
        for i in 2..=40u64 {
            wal.append(1, 0, 0, &payload(i)).unwrap();
            if i % 8 == 0 {
                wal.sync().unwrap();
            }
        }
        wal.sync().unwrap();
        for want in 2..=25 {
            assert_eq!(next_lsn(&mut out), want);
        }
        let status = wait_exit(&mut child);
        assert_eq!(status.code(), Some(0));
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert!(rest.is_empty(), "nothing past --to: {rest}");
    }
}
