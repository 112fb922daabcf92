//! `bench`: the SPEC §8 workloads, each beside the device probe it is
//! judged against, measured in the same run; a progress bar per step and
//! one table at the end.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use directwal::crypto::KeyRing;
use indicatif::{ProgressBar, ProgressStyle};

use crate::Failure;
use crate::workloads::{self, BenchResult, Log, Space};

/// The workloads of SPEC §8.
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
    /// Directory to run in; it must be on the disk under test. Removed
    /// afterwards unless --keep.
    #[arg(long, default_value = "directwal-bench")]
    dir: PathBuf,
    /// Workloads to run (repeat or separate with commas); default all.
    #[arg(long = "workload", value_enum, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Records per workload (W4: per thread). Defaults: W1 2,000; W2/W5
    /// 1,000,000; W3 32,000; W4 1,000 per thread up to 8 threads, else 300.
    #[arg(long)]
    records: Option<u64>,
    /// W4 thread counts (repeat or separate with commas).
    #[arg(long, value_delimiter = ',', default_values_t = [4usize, 32])]
    threads: Vec<usize>,
    /// Keep the directory (and the logs written) after the run.
    #[arg(long)]
    keep: bool,
}

/// One line of the result table.
struct Row {
    workload: String,
    result: String,
    against: String,
    ratio: Option<f64>,
    target: &'static str,
}

fn bar(prefix: &str, len: u64) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix:<14} {bar:40} {pos:>9}/{len:9} {per_sec:>14} {eta}")
        .expect("a valid template");
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
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Failure::Error(format!("cannot create {}: {e}", args.dir.display())))?;
    let result = measure(&args, &wanted, ring.as_ref());
    if !args.keep {
        let _ = std::fs::remove_dir_all(&args.dir);
    }
    let rows = result.map_err(|e| Failure::Error(format!("bench failed: {e}")))?;
    print_table(&args.dir, ring.is_some(), &rows);
    Ok(())
}

fn measure(args: &Args, wanted: &[Workload], ring: Option<&KeyRing>) -> BenchResult<Vec<Row>> {
    let base = &args.dir;
    let n = |default: u64| args.records.unwrap_or(default).max(1);
    let mut rows = Vec::new();
    let mut w2_dir: Option<PathBuf> = None;
    for &w in wanted {
        match w {
            Workload::W1 => {
                let count = n(2_000);
                let dir = workloads::fresh(base, "ceiling")?;
                let ceiling = step("ceiling 4K", count, |t| {
                    workloads::probe_sync_writes(&dir, 4096, count, Space::ZeroFilled, t)
                })?;
                let dir = workloads::fresh(base, "w1")?;
                let r = step("W1", count, |t| workloads::w1(directwal::SegmentedWalConfig::new(&dir), count, ring, t))?;
                if !r.direct_io {
                    eprintln!("note: this file system refused O_DIRECT; the WAL ran buffered");
                }
                rows.push(Row {
                    workload: "W1 128 B, each durable".into(),
                    result: format!("{} rec/s", thousands(r.rate)),
                    against: format!("4 KiB O_DIRECT pwrite+fdatasync {}/s", thousands(ceiling)),
                    ratio: Some(r.rate / ceiling),
                    target: ">= 0.95",
                });
                let header = directwal::layout::RECORD_HEADER_LEN as f64;
                rows.push(Row {
                    workload: "bytes per synced 128 B record".into(),
                    result: format!("{:.1} B", r.bytes_per_record),
                    against: format!("payload + header {} B", 128.0 + header),
                    ratio: Some(r.bytes_per_record / (128.0 + header)),
                    target: "<= 1.3",
                });
            }
            Workload::W2 | Workload::W5 if w2_dir.is_none() => {
                let count = n(1_000_000);
                let dir = workloads::fresh(base, "w2")?;
                let rate = step("W2", count, |t| workloads::w2(&dir, count, Log::Fresh, t))?;
                if w == Workload::W2 {
                    rows.push(Row {
                        workload: format!("W2 {} x 128 B, one sync", thousands(count as f64)),
                        result: format!("{} rec/s", thousands(rate)),
                        against: "3M rec/s".into(),
                        ratio: Some(rate / 3e6),
                        target: ">= 1",
                    });
                    let dir = workloads::fresh(base, "w2c")?;
                    let rate = step("W2 ckpt", count, |t| workloads::w2(&dir, count, Log::Checkpointed, t))?;
                    rows.push(Row {
                        workload: "W2, checkpointed log (segments recycled)".into(),
                        result: format!("{} rec/s", thousands(rate)),
                        against: "3M rec/s".into(),
                        ratio: Some(rate / 3e6),
                        target: ">= 1",
                    });
                }
                w2_dir = Some(dir);
                if w == Workload::W5 {
                    rows.push(w5_row(w2_dir.as_deref().expect("just set"), count)?);
                }
            }
            Workload::W2 => {}
            Workload::W5 => {
                let dir = w2_dir.as_deref().expect("W2 ran");
                rows.push(w5_row(dir, n(1_000_000))?);
            }
            Workload::W3 => {
                let count = n(32_000);
                let dir = workloads::fresh(base, "ceiling")?;
                let chunks = (count * 4096).div_ceil(4 << 20).max(1);
                let ceiling = step("ceiling 4M", chunks, |t| {
                    workloads::probe_sync_writes(&dir, 4 << 20, chunks, Space::ZeroFilled, t)
                })? * 4.194304;
                let enc = if ring.is_some() { ", encrypted" } else { "" };
                for (log, label, what) in
                    [(Log::Fresh, "W3", ""), (Log::Checkpointed, "W3 ckpt", ", checkpointed log (segments recycled)")]
                {
                    let dir = workloads::fresh(base, "w3")?;
                    let mb_s = step(label, count, |t| workloads::w3(&dir, count, 1_000, log, ring, t))?;
                    rows.push(Row {
                        workload: format!("W3 4 KiB, sync every 1000{enc}{what}"),
                        result: format!("{mb_s:.0} MB/s"),
                        against: format!("pre-filled 4 MiB O_DIRECT+fdatasync {ceiling:.0} MB/s"),
                        ratio: Some(mb_s / ceiling),
                        target: ">= 0.9",
                    });
                }
            }
            Workload::W4 => {
                for &threads in &args.threads {
                    let threads = threads.max(1);
                    let per = args.records.unwrap_or(if threads <= 8 { 1_000 } else { 300 }).max(1) as usize;
                    let dir = workloads::fresh(base, "w4")?;
                    let label = format!("W4 {threads} thr");
                    let (rate, p99) = step(&label, (threads * per) as u64, |t| workloads::w4(&dir, threads, per, t))?;
                    rows.push(Row {
                        workload: format!("W4 {threads} threads, 128 B, each waits"),
                        result: format!("{} rec/s, p99 {p99:.2} ms", thousands(rate)),
                        against: if threads >= 32 { "60k rec/s, p99 < 2 ms".into() } else { String::new() },
                        ratio: (threads >= 32).then_some(rate / 60e3),
                        target: if threads >= 32 { ">= 1" } else { "" },
                    });
                }
            }
        }
    }
    Ok(rows)
}

fn w5_row(dir: &Path, expected: u64) -> BenchResult<Row> {
    let seq = step("seq read", 1, |t| {
        let r = workloads::probe_seq_read(dir);
        t(1);
        r
    })?;
    let r = step("W5", expected, |t| workloads::w5(dir, None, workloads::Replay::Borrowed, t))?;
    if r.records != expected {
        return Err(format!("W5 replayed {} records, W2 wrote {expected}", r.records).into());
    }
    Ok(Row {
        workload: "W5 replay of W2, cold".into(),
        result: format!("{} rec/s, {:.0} MB/s (open {:.3} s)", thousands(r.rate), r.mb_s, r.open_s),
        against: format!("buffered sequential read {seq:.0} MB/s"),
        ratio: Some(r.mb_s / seq),
        target: ">= 0.8",
    })
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

fn print_table(dir: &Path, encrypted: bool, rows: &[Row]) {
    println!(
        "directwal bench in {} ({} cores{})",
        dir.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if encrypted { ", W1/W3 encrypted" } else { "" }
    );
    let w = |f: fn(&Row) -> usize, head: &str| rows.iter().map(f).max().unwrap_or(0).max(head.len());
    let (w0, w1, w2) = (
        w(|r| r.workload.len(), "workload"),
        w(|r| r.result.len(), "result"),
        w(|r| r.against.len(), "measured against"),
    );
    println!("{:<w0$}  {:<w1$}  {:<w2$}  {:>6}  target", "workload", "result", "measured against", "ratio");
    for r in rows {
        let ratio = r.ratio.map_or(String::new(), |x| format!("{x:.2}"));
        println!("{:<w0$}  {:<w1$}  {:<w2$}  {:>6}  {}", r.workload, r.result, r.against, ratio, r.target);
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }
}
