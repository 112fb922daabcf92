//! `repair`: for the operator whose WAL refuses to open. It does exactly
//! what an open in `RecoveryMode::Tolerant` does, and nothing else: that
//! open takes the directory lock, seals the newest segment just before its
//! first damaged record and starts a new segment there. It deletes and
//! rewrites no record: the dropped bytes stay in the file after the seal, as
//! evidence (or, when the damage is at the first record, in the whole file,
//! set aside as `.aside-{k}`: I24). Like every open it deletes leftover `.tmp` files, which never
//! held an acknowledged record (I2). Without `--yes` nothing is opened for
//! writing.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use directwal::check::{CheckOptions, DirCheck, Problem, SegmentCheck, check_dir};
use directwal::crypto::KeyRing;
use directwal::layout::{RECORD_ALIGN, RECORD_HEADER_LEN, record_size};
use directwal::{MAX_PAYLOAD_SIZE, RecoveryMode, SegmentedWal, SegmentedWalConfig};
use serde_json::json;

use crate::{Failure, Output, no_segments, wal_dir};

#[derive(clap::Args)]
pub struct Args {
    /// The WAL directory (no process may have it open).
    dir: PathBuf,
    /// Cut the log; without it, repair only says what it would drop.
    #[arg(long, visible_alias = "confirm")]
    yes: bool,
    #[command(flatten)]
    output: Output,
}

/// The cut: where the log will end, and what leaves it.
struct Cut<'a> {
    problem: &'a Problem,
    /// The newest segment as checked before the repair: its path, first
    /// LSN, header key id, valid records before the damage (the tolerant
    /// open keeps them) and file length.
    newest: &'a SegmentCheck,
    /// Why the tolerant open sets the newest segment aside whole (I24)
    /// instead of cutting it; None when it cuts.
    aside: Option<Aside>,
}

/// Why the newest segment is set aside (I24).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Aside {
    /// It has no readable header: its cipher is unknown.
    NoHeader,
    /// Its first record is damaged durable data: it holds no record to
    /// keep, and its bytes are the evidence of what is dropped.
    DamagedFirst,
}

impl Cut<'_> {
    /// Bytes of the file after the cut: none when the file was shortened
    /// to where its records end (I26), so the cut drops nothing.
    fn bytes_after(&self) -> u64 {
        self.newest.file_size.saturating_sub(self.problem.offset)
    }
}

pub fn run(args: Args, ring: Option<KeyRing>) -> Result<(), Failure> {
    let json = args.output.text_or_json()?;
    let dir = &args.dir;
    let check = full_check(dir, ring.clone())?;
    let mut out = std::io::stdout().lock();
    let Some(cut) = plan(&check, &mut out)? else {
        let torn = check.segments.iter().any(|s| s.torn_tail.is_some());
        let note = if torn { " (the torn tail is cut by the next open of the WAL)" } else { "" };
        if json {
            writeln!(out, "{}", json!({"dir": dir.display().to_string(), "damage": false, "repaired": false}))?;
        } else {
            writeln!(out, "no damage in {}: nothing to repair{note}", dir.display())?;
        }
        return Ok(());
    };
    if !args.yes {
        dry_run(&cut, dir, json, &mut out)?;
        return Err(Failure::Damaged);
    }
    let mut config = SegmentedWalConfig::new(dir.into());
    config.writer_config.recovery_mode = RecoveryMode::Tolerant;
    // Every spare file stays (the open would delete those past the count).
    config.writer_config.recycle_segments = usize::MAX;
    let wal = SegmentedWal::open(config)?;
    let report = wal.recovery_report().clone();
    let next = wal.next_lsn();
    drop(wal);
    let after = full_check(dir, ring)?;
    if let Some(aside) = &report.set_aside {
        report_set_aside(aside, &cut, next, after.is_clean(), dir, json, &mut out)?;
        return if after.is_clean() { Ok(()) } else { Err(Failure::Damaged) };
    }
    let p = cut.problem;
    let Some(dropped) = report.dropped_corruption else {
        return Err(Failure::Error(format!(
            "the tolerant open dropped nothing although {p} was found; nothing was cut"
        )));
    };
    // A newest segment with no record left is not sealed: the open replaces
    // it under its name when it starts a new segment (an encrypted WAL only
    // once a ring is set, which repair does not do).
    let fate = match after.segments.iter().find(|s| s.name == p.segment) {
        Some(s) if s.sealed => Fate::Sealed,
        Some(s) if s.problems.is_empty() => Fate::Replaced,
        _ => Fate::Left,
    };
    let done = Done { report: dropped, fate, next, clean: after.is_clean() };
    report_cut(&cut, &done, dir, json, &mut out)?;
    if done.clean { Ok(()) } else { Err(Failure::Damaged) }
}

/// What the tolerant open did to the damaged newest segment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Sealed at the cut.
    Sealed,
    /// Holding no record before the cut: replaced by a new segment of its name.
    Replaced,
    /// Holding no record, and no new segment started: left as it was.
    Left,
}

/// What the tolerant open did.
struct Done {
    /// Its recovery report's words.
    report: String,
    fate: Fate,
    /// The LSN new records start at.
    next: u64,
    /// A fresh verify found no problem.
    clean: bool,
}

/// After `--yes`: what the tolerant open did at the cut, and only that. A
/// file shortened to where its records end held nothing after them: its
/// records were kept and sealed, and nothing was dropped.
fn report_cut(cut: &Cut<'_>, done: &Done, dir: &Path, json: bool, out: &mut impl Write) -> Result<(), Failure> {
    let (p, after) = (cut.problem, cut.bytes_after());
    let last = (after > 0).then(|| last_lsn_after(&cut.newest.path, p.offset, p.lsn)).flatten();
    let (kept, next) = (p.lsn.saturating_sub(1), done.next);
    if json {
        let v = json!({"dir": dir.display().to_string(), "damage": true, "repaired": true,
            "cut": {"segment": p.segment, "offset": p.offset, "lsn": p.lsn, "what": p.what},
            "bytes_after_cut": after, "sealed": done.fate == Fate::Sealed, "replaced": done.fate == Fate::Replaced,
            "dropped_first_lsn": (after > 0).then_some(p.lsn), "dropped_last_lsn": last, "next_lsn": next,
            "report": done.report, "clean_after": done.clean});
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let upto = last.map_or(format!("LSN {} on", p.lsn), |l| format!("LSNs {}..={l}", p.lsn));
    let seg = &p.segment;
    match (after, done.fate) {
        (_, Fate::Left) => writeln!(
            out,
            "{seg} holds no record before offset {}: left as it was (no new segment was started to replace \
             it: an encrypted WAL starts one once its ring is set)",
            p.offset
        )?,
        (0, Fate::Sealed) => writeln!(
            out,
            "sealed {seg} at offset {}, where its file ends: kept LSNs {}..={kept}, all it holds; nothing was \
             dropped (the file was shortened before this repair); the log now ends at LSN {kept}",
            p.offset, cut.newest.first_lsn
        )?,
        (0, Fate::Replaced) => writeln!(
            out,
            "{seg} held no record (its file ends at offset {}): replaced by a new segment under its name; \
             nothing was dropped (the file was shortened before this repair)",
            p.offset
        )?,
        (_, Fate::Sealed) => {
            writeln!(out, "cut {seg} at offset {}: dropped {upto}; the log now ends at LSN {kept}", p.offset)?
        }
        (_, Fate::Replaced) => writeln!(
            out,
            "{seg} held no record before offset {}: replaced by a new segment under its name, which dropped \
             {upto} and its bytes",
            p.offset
        )?,
    }
    writeln!(out, "  recovery report: {}", done.report)?;
    if after > 0 && done.fate == Fate::Sealed {
        writeln!(out, "  the dropped bytes remain in {seg} after its seal; new records start at LSN {next}")?;
    } else {
        writeln!(out, "  new records start at LSN {next}")?;
    }
    writeln!(out, "  verify after the cut: {}", if done.clean { "clean" } else { "DAMAGED" })?;
    Ok(())
}

/// Without `--yes`: what the tolerant open would do, nothing changed.
fn dry_run(cut: &Cut<'_>, dir: &Path, json: bool, out: &mut impl Write) -> Result<(), Failure> {
    let p = cut.problem;
    if json {
        let action = if cut.aside.is_some() { "set aside" } else { "cut" };
        let v = json!({"dir": dir.display().to_string(), "damage": true, "repaired": false, "action": action,
            "cut": {"segment": p.segment, "offset": p.offset, "lsn": p.lsn, "what": p.what}});
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(out, "PROBLEM {p}")?;
    if cut.aside == Some(Aside::NoHeader) {
        writeln!(
            out,
            "would set {} aside (renamed to {}.aside-N, kept as it is): it has no readable header, so its \
             records (LSN {} on) would be out of the log; nothing changed: run again with --yes",
            p.segment, p.segment, cut.newest.first_lsn
        )?;
    } else if cut.aside == Some(Aside::DamagedFirst) {
        writeln!(
            out,
            "would set {} aside (renamed to {}.aside-N, kept as it is, the evidence): its first record is \
             damaged durable data, so it holds no record to keep; LSN {} on would be out of the log; nothing \
             changed: run again with --yes",
            p.segment, p.segment, p.lsn
        )?;
    } else {
        let (seg, o, kept) = (&p.segment, p.offset, p.lsn.saturating_sub(1));
        let nothing = || "nothing would be dropped (the file holds nothing after it)".to_owned();
        let (act, drop) = match (cut.bytes_after(), cut.newest.records) {
            (0, 0) => {
                (format!("would replace {seg}, which holds no record, by a new segment under its name"), nothing())
            }
            (0, _) => (
                format!("would seal {seg} at offset {o}, where its file ends: the log would end at LSN {kept}"),
                nothing(),
            ),
            (_, 0) => (
                format!("would replace {seg}, which holds no record before offset {o}, by a new segment"),
                format!("LSN {} on would be dropped with the file's bytes", p.lsn),
            ),
            _ => (
                format!("would cut {seg} at offset {o}: the log would end at LSN {kept}"),
                format!("LSN {} on would be dropped (the bytes stay in the file)", p.lsn),
            ),
        };
        writeln!(out, "{act}; {drop}; nothing changed: run again with --yes")?;
    }
    Ok(())
}

/// After `--yes`, when the tolerant open set the newest segment aside (I24).
fn report_set_aside(
    aside: &directwal::SetAside,
    cut: &Cut<'_>,
    next: u64,
    clean: bool,
    dir: &Path,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let (first, last) = match cut.aside {
        // From the damage on, as the record headers after it say.
        Some(Aside::DamagedFirst) => {
            (cut.problem.lsn, last_lsn_after(&aside.moved_to, cut.problem.offset, cut.problem.lsn))
        }
        // The records in it, as their headers say (the block size is unknown: scan from 0).
        _ => (cut.newest.first_lsn, last_lsn_after(&aside.moved_to, 0, cut.newest.first_lsn.saturating_sub(1))),
    };
    let moved_to =
        aside.moved_to.file_name().map_or(aside.moved_to.display().to_string(), |n| n.to_string_lossy().into());
    if json {
        let v = json!({"dir": dir.display().to_string(), "damage": true, "repaired": true, "action": "set aside",
            "segment": aside.segment, "moved_to": aside.moved_to.display().to_string(),
            "dropped_first_lsn": first, "dropped_last_lsn": last, "next_lsn": next,
            "report": aside.reason, "clean_after": clean});
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let range = last.map_or(format!("LSN {first} on"), |l| format!("LSNs {first}..={l}"));
    writeln!(out, "set aside {} as {moved_to}; {range} of it are out of the log", aside.segment)?;
    writeln!(out, "  reason: {}", aside.reason)?;
    writeln!(out, "  new records start at LSN {next}")?;
    // I11: as the library's rule over set-aside files decides.
    let ring_for = match (cut.aside, cut.newest.key_id) {
        (Some(Aside::DamagedFirst), None) => None,
        (Some(Aside::DamagedFirst), Some(k)) => Some(format!("it is encrypted (key {k})")),
        _ => Some("its cipher is unknown".to_owned()),
    };
    match ring_for {
        None => writeln!(out, "  its header says plain: it asks for no key ring")?,
        Some(why) => writeln!(
            out,
            "  {why}, so the WAL now requires a key ring until one is set or encryption is turned off \
             explicitly (disable_encryption)"
        )?,
    }
    writeln!(out, "  verify after the repair: {}", if clean { "clean" } else { "DAMAGED" })?;
    Ok(())
}

fn full_check(dir: &Path, ring: Option<KeyRing>) -> Result<DirCheck, Failure> {
    wal_dir(dir)?;
    let check = check_dir(dir, &CheckOptions { ring, verify_records: true }, &mut |_| {})?;
    if check.segments.is_empty() {
        return Err(no_segments(dir));
    }
    Ok(check)
}

/// The cut a tolerant open would make, or None when there is no damage.
/// Damage outside the newest segment is refused (exit 1): a tolerant open
/// does not cut there, and cutting there would remove later segments.
fn plan<'a>(check: &'a DirCheck, out: &mut impl Write) -> Result<Option<Cut<'a>>, Failure> {
    let newest = check.segments.last().expect("segments checked non-empty");
    let Some(first) = check.problems().next() else { return Ok(None) };
    if check.problems().any(|p| p.segment != newest.name) || newest.sealed {
        for p in check.problems() {
            writeln!(out, "PROBLEM {p}")?;
        }
        writeln!(
            out,
            "not repaired: repair cuts only damage in the newest, unsealed segment ({}), as an open in \
             tolerant mode does; cutting at an older segment would remove the segments after it, which \
             this tool never does. Nothing changed.",
            newest.name
        )?;
        return Err(Failure::Damaged);
    }
    let aside =
        if newest.wal_id.is_none() { Some(Aside::NoHeader) } else { newest.sets_aside.then_some(Aside::DamagedFirst) };
    Ok(Some(Cut { problem: first, newest, aside }))
}

/// The last LSN of the record chain that follows the damage at `offset`,
/// as the record headers there say (their CRCs are not checked: the library
/// does not lend its record check). None when no chain is found.
fn last_lsn_after(path: &Path, offset: u64, lsn: u64) -> Option<u64> {
    let f = std::fs::File::open(path).ok()?;
    // I23: no segment is longer; a set-aside file may be.
    let len = f.metadata().ok()?.len().min(directwal::layout::MAX_SEGMENT_FILE_LEN);
    let header = |at: u64| -> Option<(u64, usize)> {
        let mut b = [0u8; RECORD_HEADER_LEN];
        f.read_exact_at(&mut b, at).ok()?;
        let stored = u32::from_le_bytes(b[4..8].try_into().ok()?) as usize;
        let l = u64::from_le_bytes(b[8..16].try_into().ok()?);
        (stored <= MAX_PAYLOAD_SIZE + 16).then_some((l, stored))
    };
    let mut p = offset + RECORD_ALIGN as u64;
    let mut last = None;
    while p + RECORD_HEADER_LEN as u64 <= len {
        // Saturating: LSNs may reach MAX_LSN (I20).
        let max_lsn = lsn.saturating_add((p - offset) / RECORD_HEADER_LEN as u64);
        match header(p) {
            Some((l, stored)) if l > lsn && l <= max_lsn && last.is_none_or(|x: u64| x.checked_add(1) == Some(l)) => {
                last = Some(l);
                p += record_size(stored) as u64;
            }
            _ if last.is_some() => break,
            _ => p += RECORD_ALIGN as u64,
        }
    }
    last
}
