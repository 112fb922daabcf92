//! `dump`: records streamed page by page through a read-only `WalReader`,
//! so a log of any size prints in bounded memory; `--follow` goes on
//! through the same reader as a writer syncs more (see `follow.rs`).

use std::io::{BufWriter, StdoutLock, Write};
use std::path::{Path, PathBuf};

use directwal::check::{CheckOptions, Problem, check_dir};
use directwal::crypto::KeyRing;
use directwal::{WalCursor, WalReader, WalRecord};
use serde_json::json;

use crate::filter::{Filter, Stats, parse_count, parse_type, type_name};
use crate::{Failure, Format, Output, follow, no_segments, wal_dir};

/// Records per page read from the reader.
const PAGE_RECORDS: usize = 1024;
/// Payload bytes per page (a page holds at least one record).
const PAGE_BYTES: usize = 8 << 20;
/// Text format: longer payloads are cut, with the rest counted.
const TEXT_PAYLOAD_MAX: usize = 256;

#[derive(clap::Args)]
pub struct Args {
    /// The WAL directory.
    dir: PathBuf,
    /// First LSN to print (default: the oldest retained).
    #[arg(short = 's', long, value_name = "LSN", default_value_t = 0)]
    from: u64,
    /// Last LSN to print (with --follow: stop once it is printed).
    #[arg(short = 'e', long, value_name = "LSN")]
    to: Option<u64>,
    /// Print at most this many records (of those the filters select).
    #[arg(short = 'n', long, value_name = "N", value_parser = parse_count, allow_hyphen_values = true)]
    limit: Option<u64>,
    /// Only these record types: noop, put, delete, checkpoint, commit or a
    /// number (repeat or separate with commas).
    #[arg(short = 't', long = "type", value_name = "TYPE", value_parser = parse_type, value_delimiter = ',')]
    types: Vec<u16>,
    /// Only these tenants (repeat or separate with commas).
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    tenant: Vec<u32>,
    /// Only these virtual shards (repeat or separate with commas).
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    vshard: Vec<u16>,
    /// Keep printing records as a writer (another process) adds them, until
    /// Ctrl-C (exit 0), --to or --limit.
    #[arg(short = 'f', long)]
    follow: bool,
    /// With --follow: milliseconds between looks for new records (10-10000).
    #[arg(long, value_name = "MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    poll_ms: u64,
    /// Print records and bytes per type and per tenant (of the selected
    /// records) instead of the records.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    output: Output,
}

/// Where the selected records go: printed, or counted for `--stats`.
pub struct Sink {
    out: BufWriter<StdoutLock<'static>>,
    format: Format,
    filter: Filter,
    stats: Option<Stats>,
    /// Records still to print (`--limit`).
    left: u64,
    /// The last LSN to take.
    end: u64,
}

impl Sink {
    /// Takes a record; false once the sink wants no more (limit or end reached).
    fn take(&mut self, rec: &WalRecord) -> std::io::Result<bool> {
        if rec.header.lsn > self.end {
            return Ok(false);
        }
        if self.filter.takes(&rec.header) {
            match (&mut self.stats, self.format) {
                (Some(s), _) => s.add(&rec.header, rec.payload.len()),
                (None, Format::Text) => text(&mut self.out, rec)?,
                (None, Format::Json) => writeln!(self.out, "{}", record_json(rec))?,
                (None, Format::Hex) => hex(&mut self.out, rec)?,
            }
            self.left -= 1;
        }
        Ok(self.left > 0 && rec.header.lsn < self.end)
    }

    /// Whether the sink wants records from `lsn` on.
    pub fn wants(&self, lsn: u64) -> bool {
        self.left > 0 && lsn <= self.end
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// The stats (with `--stats`), then everything flushed.
    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(s) = &self.stats {
            s.print(&mut self.out, self.format == Format::Json)?;
        }
        self.out.flush()
    }
}

pub fn run(args: Args, ring: Option<KeyRing>) -> Result<(), Failure> {
    let format = args.output.format()?;
    let to = args.to.unwrap_or(u64::MAX);
    if to < args.from {
        return Err(Failure::Error(format!("--to {to} is before --from {}", args.from)));
    }
    // Records at and after the first problem of the layout (an overlapping
    // or duplicate segment, a gap, a foreign or unreadable header) are not
    // one log: print what precedes it, then report it.
    let problem = layout_problem(&args.dir)?;
    let end = problem.as_ref().map_or(to, |p| to.min(p.lsn.saturating_sub(1)));
    let mut sink = Sink {
        out: BufWriter::new(std::io::stdout().lock()),
        format,
        filter: Filter { types: args.types, tenants: args.tenant, vshards: args.vshard },
        stats: args.stats.then(Stats::default),
        left: args.limit.unwrap_or(u64::MAX),
        end,
    };
    // The segments before the first damaged one (the problem above says which).
    let (reader, _) = WalReader::open_dir_prefix(&args.dir, ring.clone())?;
    let mut cursor = reader.cursor(args.from);
    let drained = drain(&reader, &mut cursor, &mut sink);
    let followed = match drained {
        Ok(true) if args.follow && problem.is_none() => {
            let poll = std::time::Duration::from_millis(args.poll_ms);
            follow::follow(&args.dir, ring, cursor.position(), &mut sink, poll)
        }
        other => other.map(|_| ()),
    };
    sink.finish()?;
    followed?;
    match problem {
        Some(p) if p.lsn <= to && sink.left > 0 => Err(Failure::Damage(format!("{p}; run `directwal verify`"))),
        _ => Ok(()),
    }
}

/// The first problem `check_dir` finds in the headers, seals and layout
/// (records are not read: the reader checks each as it goes).
fn layout_problem(dir: &Path) -> Result<Option<Problem>, Failure> {
    wal_dir(dir)?;
    let check = check_dir(dir, &CheckOptions::default(), &mut |_| {})?;
    if check.segments.is_empty() {
        return Err(no_segments(dir));
    }
    Ok(check.problems().min_by_key(|p| p.lsn).cloned())
}

/// Prints records from the cursor up to the durable end the reader saw.
/// Returns true when the sink wants more (the end was reached first).
pub fn drain(reader: &WalReader, cursor: &mut WalCursor, sink: &mut Sink) -> Result<bool, Failure> {
    let mut page_records = PAGE_RECORDS;
    loop {
        let at = cursor.position().max(reader.oldest_lsn());
        if !sink.wants(at) {
            return Ok(false);
        }
        // Never read past --to: damage after it is not this dump's business.
        let room = usize::try_from(sink.end - at).unwrap_or(usize::MAX).saturating_add(1);
        let page = match cursor.next_page(page_records.min(room), PAGE_BYTES) {
            Ok(page) => page,
            // A page is all or nothing: on damage, go on one record at a
            // time, so every record before the damaged one is printed.
            Err(_) if page_records > 1 => {
                page_records = 1;
                continue;
            }
            Err(e) => {
                sink.flush()?;
                return Err(e.into());
            }
        };
        for rec in &page.records {
            if !sink.take(rec)? {
                return Ok(false);
            }
        }
        if !page.has_more || page.records.is_empty() {
            return Ok(true);
        }
    }
}

fn fields(rec: &WalRecord) -> String {
    let h = &rec.header;
    let kind = type_name(h.record_type).map_or(h.record_type.to_string(), str::to_owned);
    format!(
        "lsn={} type={kind} tenant={} vshard={} flags={:#06x} len={}",
        h.lsn,
        h.tenant_id,
        h.vshard_id,
        h.flags,
        rec.payload.len()
    )
}

fn text(out: &mut impl Write, rec: &WalRecord) -> std::io::Result<()> {
    let shown = &rec.payload[..rec.payload.len().min(TEXT_PAYLOAD_MAX)];
    let rest = rec.payload.len() - shown.len();
    write!(out, "{} payload=\"{}\"", fields(rec), shown.escape_ascii())?;
    if rest > 0 {
        write!(out, " (+{rest} bytes)")?;
    }
    writeln!(out)
}

/// One JSON object per record: the payload as hex (always) and as text when
/// it is UTF-8.
fn record_json(rec: &WalRecord) -> serde_json::Value {
    let h = &rec.header;
    json!({
        "lsn": h.lsn,
        "record_type": h.record_type,
        "type_name": type_name(h.record_type),
        "tenant_id": h.tenant_id,
        "vshard_id": h.vshard_id,
        "flags": h.flags,
        "len": rec.payload.len(),
        "payload_hex": to_hex(&rec.payload),
        "payload_utf8": std::str::from_utf8(&rec.payload).ok(),
    })
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn hex(out: &mut impl Write, rec: &WalRecord) -> std::io::Result<()> {
    writeln!(out, "# {}", fields(rec))?;
    for (i, row) in rec.payload.chunks(16).enumerate() {
        write!(out, "{:08x}  ", i * 16)?;
        for j in 0..16 {
            match row.get(j) {
                Some(b) => write!(out, "{b:02x} ")?,
                None => write!(out, "   ")?,
            }
            if j == 7 {
                write!(out, " ")?;
            }
        }
        let ascii: String =
            row.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
        writeln!(out, " |{ascii}|")?;
    }
    Ok(())
}
