//! `inspect` and `verify`: both read the directory through
//! `directwal::check::check_dir`, which never writes and reports every
//! problem with its segment, offset and LSN.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use directwal::check::{CheckOptions, DirCheck, SegmentCheck, check_dir};
use directwal::crypto::KeyRing;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::{Failure, no_segments, wal_dir};

/// What inspect found in a segment, saying what it looked at: it reads the
/// headers and seals of sealed segments (`headers-ok`: their records are
/// not read, `verify` reads them) and every record of an unsealed one.
fn health(s: &SegmentCheck) -> &'static str {
    match s.health() {
        "ok" if s.sealed => "headers-ok",
        "ok" => "records-ok",
        other => other,
    }
}

pub fn inspect(dir: &Path, json: bool, allow_empty: bool) -> Result<(), Failure> {
    wal_dir(dir)?;
    let check = check_dir(dir, &CheckOptions::default(), &mut |_| {})?;
    if check.segments.is_empty() && !allow_empty {
        return Err(no_segments(dir));
    }
    let direct = direct_io_usable(&check);
    let damaged = !check.is_clean();
    let mut out = std::io::stdout().lock();
    if json {
        let v = json!({
            "dir": dir.display().to_string(),
            "wal_id": check.wal_id.map(|id| format!("{id:032x}")),
            "direct_io": direct,
            "records": check.total_records(),
            "temp_files": check.temp_files.len(),
            "spare_files": check.spare_files.len(),
            "records_verified": false,
            "clean": check.is_clean(),
            "entry_problems": check.entry_problems.iter().map(|p| json!({"entry": p.segment, "what": p.what}))
                .collect::<Vec<_>>(),
            "segments": check.segments.iter().map(segment_json).collect::<Vec<_>>(),
        });
        writeln!(out, "{v}")?;
        return if damaged { Err(Failure::Damaged) } else { Ok(()) };
    }
    writeln!(
        out,
        "{:<28} {:>20} {:>20} {:>10} {:>12} {:>12} {:<7} {:<8} health",
        "segment", "first_lsn", "last_lsn", "records", "bytes", "file_bytes", "state", "key_id"
    )?;
    for s in &check.segments {
        let key = s.key_id.map_or("-".to_owned(), |k| format!("{k:08x}"));
        writeln!(
            out,
            "{:<28} {:>20} {:>20} {:>10} {:>12} {:>12} {:<7} {:<8} {}",
            s.name,
            s.first_lsn,
            s.last_lsn,
            s.records,
            s.used_bytes,
            s.file_size,
            if s.sealed { "sealed" } else { "active" },
            key,
            health(s)
        )?;
        for p in &s.problems {
            writeln!(out, "  problem: {p}")?;
        }
        if let Some(t) = &s.torn_tail {
            let (offset, lsn, cut) = (t.offset, t.lsn, t.bytes_cut);
            writeln!(out, "  torn tail: offset {offset} lsn {lsn}: {} ({cut} bytes the next open cuts)", t.reason)?;
        }
    }
    for p in &check.entry_problems {
        writeln!(out, "problem: {}", p.what)?;
    }
    let bytes: u64 = check.segments.iter().map(|s| s.used_bytes).sum();
    let on_disk: u64 = check.segments.iter().map(|s| s.file_size).sum();
    writeln!(
        out,
        "wal_id={} segments={} records={} bytes={} bytes_on_disk={} temp_files={} spare_files={} direct_io={} \
         sealed_records=not-verified",
        check.wal_id.map_or("-".to_owned(), |id| format!("{id:032x}")),
        check.segments.len(),
        check.total_records(),
        bytes,
        on_disk,
        check.temp_files.len(),
        check.spare_files.len(),
        match direct {
            Some(true) => "usable",
            Some(false) => "refused",
            None => "unknown",
        }
    )?;
    if damaged { Err(Failure::Damaged) } else { Ok(()) }
}

pub fn verify(dir: &Path, ring: Option<KeyRing>, json: bool, allow_empty: bool) -> Result<(), Failure> {
    wal_dir(dir)?;
    // The bar counts segment bytes; its total comes from the file sizes.
    let total: u64 = std::fs::read_dir(dir)
        .map_err(|e| Failure::Error(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("verifying {bar:40} {binary_bytes}/{binary_total_bytes} {eta}")
            .expect("a valid template"),
    );
    let t = Instant::now();
    let opts = CheckOptions { ring, verify_records: true };
    let check = check_dir(dir, &opts, &mut |n| bar.inc(n));
    bar.finish_and_clear();
    let check = check?;
    if check.segments.is_empty() && !allow_empty {
        return Err(no_segments(dir));
    }
    let secs = t.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    let verified: u64 = check.segments.iter().map(|s| s.records_verified).sum();
    if json {
        let v = json!({
            "dir": dir.display().to_string(),
            "clean": check.is_clean(),
            "segments": check.segments.len(),
            "records_verified": verified,
            "problems": check.problems().map(|p| json!({
                "segment": p.segment, "offset": p.offset, "lsn": p.lsn, "what": p.what,
            })).collect::<Vec<_>>(),
            "torn_tails": check.segments.iter().filter_map(torn_json).collect::<Vec<_>>(),
        });
        writeln!(out, "{v}")?;
    } else {
        for p in check.problems() {
            writeln!(out, "PROBLEM {p}")?;
        }
        for s in &check.segments {
            if let Some(t) = &s.torn_tail {
                writeln!(
                    out,
                    "TORN {} offset {} lsn {}: {}; the next open cuts {} bytes of an unfinished write \
                     (never acknowledged)",
                    s.name, t.offset, t.lsn, t.reason, t.bytes_cut
                )?;
            }
        }
        writeln!(
            out,
            "verified {} segments, {} records in {:.2} s: {}",
            check.segments.len(),
            verified,
            secs,
            summary(&check)
        )?;
    }
    if check.is_clean() { Ok(()) } else { Err(Failure::Damaged) }
}

fn summary(check: &DirCheck) -> String {
    match check.problems().count() {
        0 if check.segments.iter().any(|s| s.torn_tail.is_some()) => "clean (with a torn tail)".into(),
        0 => "clean".into(),
        n => format!("DAMAGED ({n} problem{})", if n == 1 { "" } else { "s" }),
    }
}

fn segment_json(s: &SegmentCheck) -> Value {
    json!({
        "name": s.name,
        "first_lsn": s.first_lsn,
        "last_lsn": s.last_lsn,
        "records": s.records,
        "bytes": s.used_bytes,
        "file_size": s.file_size,
        "sealed": s.sealed,
        "truncated_while_checked": s.truncated,
        "key_id": s.key_id.map(|k| format!("{k:08x}")),
        "health": health(s),
        "problems": s.problems.iter().map(|p| json!({"offset": p.offset, "lsn": p.lsn, "what": p.what}))
            .collect::<Vec<_>>(),
        "torn_tail": torn_json(s),
    })
}

fn torn_json(s: &SegmentCheck) -> Option<Value> {
    s.torn_tail.as_ref().map(
        |t| json!({"segment": s.name, "offset": t.offset, "lsn": t.lsn, "reason": t.reason, "bytes_cut": t.bytes_cut}),
    )
}

/// Whether this file system accepts O_DIRECT here, probed read-only by
/// opening a segment with it. `None` without a segment (a directory refuses
/// O_DIRECT on file systems whose files accept it) or when none opens.
fn direct_io_usable(check: &DirCheck) -> Option<bool> {
    let target = &check.segments.first()?.path;
    match directwal::io::open_direct(std::fs::OpenOptions::new().read(true), target) {
        Ok(_) => Some(true),
        Err(e) if directwal::io::is_direct_io_refusal(&e) => Some(false),
        Err(_) => None,
    }
}
