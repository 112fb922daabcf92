//! What `dump` selects (`--type`, `--tenant`, `--vshard`), record type
//! names, and the per-type and per-tenant totals of `dump --stats`.

use std::collections::BTreeMap;
use std::io::Write;

use directwal::layout::record_size;
use directwal::{RecordHeader, RecordType};
use serde_json::{Value, json};

/// The name of a well-known record type (`RecordType`), if `code` is one.
pub fn type_name(code: u16) -> Option<&'static str> {
    RecordType::from_u16(code).map(|t| match t {
        RecordType::Noop => "noop",
        RecordType::Put => "put",
        RecordType::Delete => "delete",
        RecordType::Checkpoint => "checkpoint",
        RecordType::Commit => "commit",
    })
}

/// `--type` values: a name of [`type_name`] or a number.
pub fn parse_type(s: &str) -> Result<u16, String> {
    if let Ok(n) = s.parse::<u16>() {
        return Ok(n);
    }
    (0..=u16::MAX).take(8).find(|&c| type_name(c).is_some_and(|n| n.eq_ignore_ascii_case(s))).ok_or_else(|| {
        format!("'{s}' is neither a type number (0-65535) nor one of noop, put, delete, checkpoint, commit")
    })
}

/// `--limit`: a count of records, 1 or more.
pub fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' is not a count of records (a whole number, 1 or more)")),
    }
}

/// The records `dump` prints: every one whose fields are in each non-empty list.
#[derive(Default)]
pub struct Filter {
    pub types: Vec<u16>,
    pub tenants: Vec<u32>,
    pub vshards: Vec<u16>,
}

impl Filter {
    pub fn takes(&self, h: &RecordHeader) -> bool {
        fn ok<T: PartialEq>(list: &[T], v: T) -> bool {
            list.is_empty() || list.contains(&v)
        }
        ok(&self.types, h.record_type) && ok(&self.tenants, h.tenant_id) && ok(&self.vshards, h.vshard_id)
    }
}

/// Records and bytes (payload, and on disk with the header and padding).
#[derive(Default, Clone, Copy)]
struct Count {
    records: u64,
    payload: u64,
    on_disk: u64,
}

/// `dump --stats`: totals per record type and per tenant.
#[derive(Default)]
pub struct Stats {
    all: Count,
    types: BTreeMap<u16, Count>,
    tenants: BTreeMap<u32, Count>,
    first: Option<u64>,
    last: u64,
}

impl Stats {
    pub fn add(&mut self, h: &RecordHeader, payload_len: usize) {
        let add = |c: &mut Count| {
            c.records += 1;
            c.payload += payload_len as u64;
            c.on_disk += record_size(payload_len) as u64;
        };
        add(&mut self.all);
        add(self.types.entry(h.record_type).or_default());
        add(self.tenants.entry(h.tenant_id).or_default());
        self.first.get_or_insert(h.lsn);
        self.last = h.lsn;
    }

    pub fn print(&self, out: &mut impl Write, json: bool) -> std::io::Result<()> {
        if json {
            return writeln!(out, "{}", self.to_json());
        }
        let range = self.first.map_or("none".to_owned(), |f| format!("{f}..={}", self.last));
        writeln!(
            out,
            "records {} (LSN {range}), payload {} B, on disk {} B",
            self.all.records, self.all.payload, self.all.on_disk
        )?;
        writeln!(out, "{:<16} {:>12} {:>7} {:>14} {:>14}", "type", "records", "%", "payload_bytes", "disk_bytes")?;
        for (&code, c) in &self.types {
            let name = type_name(code).map_or(code.to_string(), |n| format!("{n}({code})"));
            self.row(out, &name, c)?;
        }
        writeln!(out, "{:<16} {:>12} {:>7} {:>14} {:>14}", "tenant", "records", "%", "payload_bytes", "disk_bytes")?;
        for (tenant, c) in &self.tenants {
            self.row(out, &tenant.to_string(), c)?;
        }
        Ok(())
    }

    fn row(&self, out: &mut impl Write, label: &str, c: &Count) -> std::io::Result<()> {
        let pct = 100.0 * c.records as f64 / self.all.records.max(1) as f64;
        writeln!(out, "{label:<16} {:>12} {pct:>6.2}% {:>14} {:>14}", c.records, c.payload, c.on_disk)
    }

    fn to_json(&self) -> Value {
        let count = |c: &Count| json!({"records": c.records, "payload_bytes": c.payload, "disk_bytes": c.on_disk});
        json!({
            "records": self.all.records,
            "payload_bytes": self.all.payload,
            "disk_bytes": self.all.on_disk,
            "first_lsn": self.first,
            "last_lsn": self.first.map(|_| self.last),
            "types": self.types.iter().map(|(&code, c)| {
                let mut v = count(c);
                v["record_type"] = json!(code);
                v["type_name"] = json!(type_name(code));
                v
            }).collect::<Vec<_>>(),
            "tenants": self.tenants.iter().map(|(&t, c)| {
                let mut v = count(c);
                v["tenant_id"] = json!(t);
                v
            }).collect::<Vec<_>>(),
        })
    }
}
