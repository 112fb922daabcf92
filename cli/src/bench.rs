//! `bench`: the W1–W5 workloads (docs/BENCHMARKS.md), each beside the device probe it is
//! judged against, measured in the same run; a progress bar per step and
//! one table (or JSON lines) at the end. It runs in a new subdirectory of
//! `--dir` and removes only that: whatever `--dir` held is left alone.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use directwal::crypto::KeyRing;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use serde_json::json;

use crate::workloads::{self, BenchResult, Log, Space};
use crate::{Failure, Output};

/// The workloads W1–W5 (docs/BENCHMARKS.md).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Debug)]
pub enum Workload {
    /// 128 B records, each synced before the next.
    W1,
    /// 1M × 128 B records, one sync.
    W2,
    /// 4 KiB records, a sync every 1000.
    W3,
    /// Many threads committing 128 B records, each waiting for durability.
    W4,
    /// Replay of W2's log from a cold cache.
    W5,
}

#[derive(clap::Args)]
pub struct Args {
    /// Directory to run in (created if missing); it must be on the disk
    /// under test. The bench works in a new subdirectory of it, removed
    /// afterwards unless --keep; nothing else in it is touched.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Workloads to run (repeat or separate with commas); default all.
    #[arg(long = "workload", value_enum, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Records per workload (W4: per thread). Defaults: W1 2,000; W2/W5
    /// 1,000,000; W3 32,000; W4 1,000 per thread up to 8 threads, else 300.
    #[arg(long)]
    records: Option<u64>,
    /// W4 thread counts, 1 or more (repeat or separate with commas).
    #[arg(long, value_delimiter = ',', default_values_t = [4usize, 32],
          value_parser = threads_count)]
    threads: Vec<usize>,
    /// Keep the bench's subdirectory (and the logs written) after the run.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    output: Output,
}

/// `--threads`: 1 to 4096.
fn threads_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=4096) => Ok(n),
        _ => Err(format!("'{s}' is not a thread count from 1 to 4096")),
    }
}

/// What a ratio must be to pass.
#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
    None,
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::AtLeast(x) => format!(">= {x}"),
            Target::AtMost(x) => format!("<= {x}"),
            Target::None => String::new(),
        }
    }

    fn pass(self, ratio: Option<f64>) -> Option<bool> {
        match (self, ratio) {
            (Target::AtLeast(x), Some(r)) => Some(r >= x),
            (Target::AtMost(x), Some(r)) => Some(r <= x),
            _ => None,
        }
    }
}

/// One line of the result table.
struct Row {
    workload: String,
    /// The measurement in words, and as a number with its unit.
    result: String,
    value: f64,
    unit: &'static str,
    /// What it is measured against, in words and as a number (same unit).
    against: String,
    baseline: Option<f64>,
    target: Target,
    /// A condition of the target besides the ratio (W4: p99 under 2 ms).
    also: Option<bool>,
    /// The WAL's own stats for the run (`--json` only).
    stats: Option<serde_json::Value>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        self.baseline.map(|b| self.value / b)
    }

    /// Whether the target is met; None without a target.
    fn pass(&self) -> Option<bool> {
        self.target.pass(self.ratio()).map(|p| p && self.also.unwrap_or(true))
    }
}

/// 308.07484729608234 -> "308", 12345.6 -> "12.3k", 6752190.0 -> "6.75M".
fn human(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2}G", x / 1e9),
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e4 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn bar(prefix: &str, len: u64) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix:<12} {bar:30} {pos:>9}/{len:9} {rate:>10} {eta}")
        .expect("a valid template")
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_fmt(format_args!("{}/s", human(s.per_sec())));
        });
    ProgressBar::new(len).with_style(style).with_prefix(prefix.to_owned())
}

/// Runs `work` under a progress bar of `len` steps.
fn step<T>(prefix: &str, len: u64, work: impl FnOnce(&(dyn Fn(u64) + Sync)) -> BenchResult<T>) -> BenchResult<T> {
    let pb = bar(prefix, len);
    let out = work(&|n| pb.inc(n));
    pb.finish_and_clear();
    out
}

pub fn run(args: Args, ring: Option<KeyRing>) -> Result<(), Failure> {
    let mut wanted = args.workloads.clone();
    if wanted.is_empty() {
        wanted = vec![Workload::W1, Workload::W2, Workload::W3, Workload::W4, Workload::W5];
    }
    wanted.sort();
    wanted.dedup();
    let json = args.output.text_or_json()?;
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Failure::Error(format!("cannot create {}: {e}", args.dir.display())))?;
    // Ours alone: removed when `work` drops (unless --keep), nothing else is.
    let work = tempfile::Builder::new()
        .prefix("directwal-bench-")
        .tempdir_in(&args.dir)
        .map_err(|e| Failure::Error(format!("cannot create a directory in {}: {e}", args.dir.display())))?;
    let result = measure(&args, work.path(), &wanted, ring.as_ref());
    let base = if args.keep { work.keep() } else { work.path().to_owned() };
    let rows = result.map_err(|e| Failure::Error(format!("bench failed: {e}")))?;
    if json {
        print_json(&rows);
    } else {
        print_table(&base, args.keep, ring.is_some(), &rows);
    }
    Ok(())
}

fn measure(args: &Args, base: &Path, wanted: &[Workload], ring: Option<&KeyRing>) -> BenchResult<Vec<Row>> {
    let n = |default: u64| args.records.unwrap_or(default).max(1);
    let mut rows = Vec::new();
    let mut w2_dir: Option<PathBuf> = None;
    for &w in wanted {
        match w {
            Workload::W1 => rows.extend(w1_rows(base, n(2_000), ring)?),
            Workload::W2 | Workload::W5 if w2_dir.is_none() => {
                let count = n(1_000_000);
                let dir = workloads::fresh(base, "w2")?;
                let rate = step("W2", count, |t| workloads::w2(&dir, count, Log::Fresh, t))?;
                if w == Workload::W2 {
                    rows.extend(w2_rows(base, count, rate)?);
                } else {
                    rows.extend(w5_rows(&dir, count)?);
                }
                w2_dir = Some(dir);
            }
            Workload::W2 => {}
            Workload::W5 => rows.extend(w5_rows(w2_dir.as_deref().expect("W2 ran"), n(1_000_000))?),
            Workload::W3 => rows.extend(w3_rows(base, n(32_000), ring)?),
            Workload::W4 => rows.extend(w4_rows(base, args)?),
        }
    }
    Ok(rows)
}

/// W1 beside 4 KiB O_DIRECT writes each synced, and its bytes per record.
fn w1_rows(base: &Path, count: u64, ring: Option<&KeyRing>) -> BenchResult<Vec<Row>> {
    let mut rows = Vec::new();
    let dir = workloads::fresh(base, "ceiling")?;
    let ceiling = step("ceiling 4K", count, |t| workloads::probe_sync_writes(&dir, 4096, count, Space::ZeroFilled, t))?;
    let dir = workloads::fresh(base, "w1")?;
    let r =
        step("W1", count, |t| workloads::w1(directwal::SegmentedWalConfig::new(dir.to_path_buf()), count, ring, t))?;
    if !r.direct_io {
        eprintln!("note: this file system refused O_DIRECT; the WAL ran buffered");
    }
    rows.push(Row {
        workload: "W1 128 B, each durable".into(),
        result: format!("{} rec/s", thousands(r.rate)),
        value: r.rate,
        unit: "records/s",
        against: format!("4K direct+sync {}/s", human(ceiling)),
        baseline: Some(ceiling),
        target: Target::AtLeast(0.95),
        also: None,
        stats: Some(stats_json(&r.stats)),
    });
    let header = directwal::layout::RECORD_HEADER_LEN as f64;
    rows.push(Row {
        workload: "W1 bytes per record".into(),
        result: format!("{:.1} B", r.bytes_per_record),
        value: r.bytes_per_record,
        unit: "bytes",
        against: format!("payload+header {} B", 128.0 + header),
        baseline: Some(128.0 + header),
        target: Target::AtMost(1.3),
        also: None,
        stats: None,
    });
    Ok(rows)
}

/// W2's rows: the fresh log (`rate`, measured), then a checkpointed one.
fn w2_rows(base: &Path, count: u64, rate: f64) -> BenchResult<Vec<Row>> {
    let row = |workload: String, rate: f64| Row {
        workload,
        result: format!("{} rec/s", thousands(rate)),
        value: rate,
        unit: "records/s",
        against: "3M rec/s".into(),
        baseline: Some(3e6),
        target: Target::AtLeast(1.0),
        also: None,
        stats: None,
    };
    let fresh = row(format!("W2 {} x 128 B, 1 sync", count_label(count)), rate);
    let dir = workloads::fresh(base, "w2c")?;
    let rate = step("W2 ckpt", count, |t| workloads::w2(&dir, count, Log::Checkpointed, t))?;
    Ok(vec![fresh, row("W2 checkpointed log".into(), rate)])
}

/// W3 (fresh and checkpointed log) beside pre-filled 4 MiB O_DIRECT writes.
fn w3_rows(base: &Path, count: u64, ring: Option<&KeyRing>) -> BenchResult<Vec<Row>> {
    let mut rows = Vec::new();
    let dir = workloads::fresh(base, "ceiling")?;
    let chunks = (count * 4096).div_ceil(4 << 20).max(1);
    let ceiling =
        step("ceiling 4M", chunks, |t| workloads::probe_sync_writes(&dir, 4 << 20, chunks, Space::ZeroFilled, t))?
            * 4.194304;
    let enc = if ring.is_some() { ", enc" } else { "" };
    for (log, label, what) in [(Log::Fresh, "W3", "4 KiB, sync/1000"), (Log::Checkpointed, "W3 ckpt", "checkpointed")] {
        let dir = workloads::fresh(base, "w3")?;
        let mb_s = step(label, count, |t| workloads::w3(&dir, count, 1_000, log, ring, t))?;
        rows.push(Row {
            workload: format!("W3 {what}{enc}"),
            result: format!("{mb_s:.0} MB/s"),
            value: mb_s,
            unit: "MB/s",
            against: format!("4M direct+sync {ceiling:.0} MB/s"),
            baseline: Some(ceiling),
            target: Target::AtLeast(0.9),
            also: None,
            stats: None,
        });
    }
    Ok(rows)
}

/// W4 at each thread count; 32 threads and more are judged against the absolute target (docs/BENCHMARKS.md).
fn w4_rows(base: &Path, args: &Args) -> BenchResult<Vec<Row>> {
    let mut rows = Vec::new();
    for &threads in &args.threads {
        let per = args.records.unwrap_or(if threads <= 8 { 1_000 } else { 300 }).max(1) as usize;
        let dir = workloads::fresh(base, "w4")?;
        let label = format!("W4 {threads} thr");
        let (rate, p99, stats) = step(&label, (threads * per) as u64, |t| {
            workloads::w4_scraped(&dir, threads, per, workloads::Scrape::No, t)
        })?;
        let judged = threads >= 32;
        rows.push(Row {
            workload: format!("W4 {threads} thr, each waits"),
            result: format!(
                "{}/s, p99 {} ms",
                human(rate),
                if p99 < 10.0 { format!("{p99:.2}") } else { format!("{p99:.0}") }
            ),
            value: rate,
            unit: "records/s",
            against: if judged { "60k rec/s, p99 < 2 ms".into() } else { String::new() },
            baseline: judged.then_some(60e3),
            target: if judged { Target::AtLeast(1.0) } else { Target::None },
            also: judged.then_some(p99 < 2.0),
            stats: Some(stats_json(&stats)),
        });
    }
    Ok(rows)
}

/// W5's rows: the replay against the disk's sequential read, and the open
/// (recovery) time it measured, which has no target.
fn w5_rows(dir: &Path, expected: u64) -> BenchResult<[Row; 2]> {
    let seq = step("seq read", 1, |t| {
        let r = workloads::probe_seq_read(dir);
        t(1);
        r
    })?;
    let r = step("W5", expected, |t| workloads::w5(dir, None, workloads::Replay::Borrowed, t))?;
    if r.records != expected {
        return Err(format!("W5 replayed {} records, W2 wrote {expected}", r.records).into());
    }
    let open = Row {
        workload: "W5 open (recovery), cold".into(),
        result: format!("{:.3} s", r.open_s),
        value: r.open_s,
        unit: "s",
        against: String::new(),
        baseline: None,
        target: Target::None,
        also: None,
        stats: None,
    };
    let replay = Row {
        workload: "W5 replay of W2, cold".into(),
        result: format!("{:.0} MB/s, {}/s", r.mb_s, human(r.rate)),
        value: r.mb_s,
        unit: "MB/s",
        against: format!("sequential read {seq:.0} MB/s"),
        baseline: Some(seq),
        target: Target::AtLeast(0.8),
        also: None,
        stats: None,
    };
    Ok([replay, open])
}

/// 1000000 -> "1M", 32000 -> "32k", 1234 -> "1,234", 12345678 -> "12.35M".
fn count_label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n if n >= 1_000_000 => human(n as f64),
        n => thousands(n as f64),
    }
}

/// 1234567.8 -> "1,234,568".
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_table(dir: &Path, kept: bool, encrypted: bool, rows: &[Row]) {
    println!(
        "directwal bench in {}{} ({} cores{})",
        dir.display(),
        if kept { ", kept" } else { ", removed" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if encrypted { ", W1/W3 encrypted" } else { "" }
    );
    for line in table(rows) {
        println!("{line}");
    }
}

/// The table's lines: a head, then a row each.
fn table(rows: &[Row]) -> Vec<String> {
    let w = |f: fn(&Row) -> usize, head: &str| rows.iter().map(f).max().unwrap_or(0).max(head.len());
    let (w0, w1, w2) =
        (w(|r| r.workload.len(), "workload"), w(|r| r.result.len(), "result"), w(|r| r.against.len(), "against"));
    let head =
        format!("{:<w0$}  {:<w1$}  {:<w2$}  {:>5}  {:<7} pass", "workload", "result", "against", "ratio", "target");
    let lines = rows.iter().map(|r| {
        let ratio = r.ratio().map_or(String::new(), |x| format!("{x:.2}"));
        let pass = match r.pass() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        let target = r.target.text();
        format!("{:<w0$}  {:<w1$}  {:<w2$}  {ratio:>5}  {target:<7} {pass}", r.workload, r.result, r.against)
    });
    std::iter::once(head).chain(lines).collect()
}

/// One JSON object per row.
fn print_json(rows: &[Row]) {
    for r in rows {
        let target = match r.target {
            Target::AtLeast(x) => json!({"at_least": x}),
            Target::AtMost(x) => json!({"at_most": x}),
            Target::None => json!(null),
        };
        let v = json!({
            "workload": r.workload, "result": r.result, "value": r.value, "unit": r.unit,
            "against": r.against, "baseline": r.baseline, "ratio": r.ratio(),
            "target": target, "pass": r.pass(), "stats": r.stats,
        });
        println!("{v}");
    }
}

/// The WAL's stats for a row of `--json` (docs/OBSERVABILITY.md has the
/// meaning of each figure): times in microseconds.
fn stats_json(s: &directwal::StatsSnapshot) -> serde_json::Value {
    let hist = |h: &directwal::HistogramSnapshot, scale: f64| {
        json!({"count": h.count, "p50": h.p50() as f64 / scale, "p99": h.p99() as f64 / scale,
               "p999": h.p999() as f64 / scale, "max": h.max as f64 / scale, "mean": h.mean() / scale})
    };
    let b = &s.bytes_written;
    json!({
        "records_appended": s.records_appended,
        "payload_bytes_appended": s.payload_bytes_appended,
        "bytes_written": {"data": b.data, "tail_rewrite": b.tail_rewrite, "prepare": b.prepare,
                          "seal": b.seal, "device": b.device},
        "write_amplification": b.device as f64 / s.payload_bytes_appended.max(1) as f64,
        "write_calls": s.write_calls,
        "buffer_full_writes": s.buffer_full_writes,
        "write_time_us": s.write_time.as_secs_f64() * 1e6,
        "fdatasyncs": s.fdatasyncs,
        "fdatasync_time_us": s.fdatasync_time.as_secs_f64() * 1e6,
        "directory_fsyncs": s.directory_fsyncs,
        "syncs": s.syncs,
        "fdatasync_us": hist(&s.fdatasync_latency_ns, 1e3),
        "commit_wait_us": hist(&s.commit_wait_ns, 1e3),
        "sync_batch_records": hist(&s.sync_batch_records, 1.0),
        "segments_live": s.segments_live,
        "segments_sealed": s.segments_sealed,
        "spare_files": s.spare_files,
        "rolls": s.rolls,
        "segments_truncated": s.segments_truncated,
        "bytes_reclaimed": s.bytes_reclaimed,
        "poisoned": s.poisoned,
        "direct_io": s.direct_io,
    })
}

#[cfg(test)]
mod tests {
    use super::{Row, Target, human, table, thousands};

    #[test]
    fn the_widest_rows_fit_100_columns() {
        let row = |workload: &str, result: &str, against: &str| Row {
            workload: workload.into(),
            result: result.into(),
            value: 1.0,
            unit: "",
            against: against.into(),
            baseline: Some(1234.5),
            target: Target::AtLeast(0.95),
            also: None,
            stats: None,
        };
        // The longest text each column gets, with 10M records and slow syncs.
        let rows = [
            row("W2 12.35M x 128 B, 1 sync", "12,345,678 rec/s", "3M rec/s"),
            row("W4 4096 thr, each waits", "123.4k/s, p99 12345 ms", "60k rec/s, p99 < 2 ms"),
            row("W3 4 KiB, sync/1000, enc", "12345 MB/s", "4M direct+sync 12345 MB/s"),
            row("W1 128 B, each durable", "1,234,567 rec/s", "4K direct+sync 123.4k/s"),
            row("W5 open (recovery), cold", "12345 MB/s, 12.35M/s", "sequential read 12345 MB/s"),
        ];
        for line in table(&rows) {
            assert!(line.len() <= 100, "{} columns: {line}", line.len());
        }
    }

    #[test]
    fn rates_have_human_units() {
        assert_eq!(human(308.07484729608234), "308");
        assert_eq!(human(12_345.6), "12.3k");
        assert_eq!(human(6_752_190.0), "6.75M");
        assert_eq!(super::count_label(1_000_000), "1M");
        assert_eq!(super::count_label(64), "64");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }
}
