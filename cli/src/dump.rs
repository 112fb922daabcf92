//! `dump`: records streamed page by page through a read-only `WalReader`,
//! so a log of any size prints in bounded memory.

use std::io::{BufWriter, Write};
use std::path::Path;

use directwal::crypto::KeyRing;
use directwal::{WalReader, WalRecord};
use serde_json::json;

use crate::{Failure, Format};

/// Records per page read from the reader.
const PAGE_RECORDS: usize = 1024;
/// Payload bytes per page (a page holds at least one record).
const PAGE_BYTES: usize = 8 << 20;
/// Text format: longer payloads are cut, with the rest counted.
const TEXT_PAYLOAD_MAX: usize = 256;

pub fn dump(dir: &Path, ring: Option<KeyRing>, from: u64, limit: Option<u64>, format: Format) -> Result<(), Failure> {
    if !dir.is_dir() {
        return Err(Failure::Error(format!("{} is not a directory", dir.display())));
    }
    let reader = WalReader::open_dir(dir, ring)?;
    let mut cursor = reader.cursor(from);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut left = limit.unwrap_or(u64::MAX);
    let mut page_records = PAGE_RECORDS;
    while left > 0 {
        let page = match cursor.next_page(page_records.min(usize::try_from(left).unwrap_or(usize::MAX)), PAGE_BYTES) {
            Ok(page) => page,
            // A page is all or nothing: on damage, go on one record at a
            // time, so every record before the damaged one is printed.
            Err(_) if page_records > 1 => {
                page_records = 1;
                continue;
            }
            Err(e) => {
                out.flush()?;
                return Err(e.into());
            }
        };
        for rec in &page.records {
            match format {
                Format::Text => text(&mut out, rec)?,
                Format::Json => writeln!(out, "{}", record_json(rec))?,
                Format::Hex => hex(&mut out, rec)?,
            }
        }
        left -= page.records.len() as u64;
        if !page.has_more {
            break;
        }
    }
    out.flush()?;
    Ok(())
}

fn fields(rec: &WalRecord) -> String {
    let h = &rec.header;
    format!(
        "lsn={} type={} tenant={} vshard={} flags={:#06x} len={}",
        h.lsn,
        h.record_type,
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
