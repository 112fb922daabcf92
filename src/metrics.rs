//! Publishing the stats through the `metrics` facade (feature `metrics`).
//!
//! Names and units follow Prometheus conventions; docs/OBSERVABILITY.md
//! lists them. Handles are registered once, when the WAL opens, with the
//! recorder installed then; every series carries a `wal_dir` label.
//! Counters and histograms move as events happen; gauges are set whenever
//! a [`crate::StatsSnapshot`] is taken (and `directwal_poisoned` at once).

use std::path::Path;

use metrics::{Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram};
use metrics::{gauge, histogram};

use crate::stats::{StatsSnapshot, Written};

pub(crate) struct Handles {
    records: Counter,
    payload_bytes: Counter,
    bytes_written: [Counter; 4],
    pub buffer_full: Counter,
    pub reserve_fdatasyncs: Counter,
    pub read_ahead_helpers: Counter,
    pub dir_fsyncs: Counter,
    pub segments_created: Counter,
    pub segments_recycled: Counter,
    pub rolls: Counter,
    pub segments_truncated: Counter,
    pub bytes_reclaimed: Counter,
    pub write_duration: Histogram,
    pub fsync_duration: Histogram,
    pub commit_wait: Histogram,
    pub batch_records: Histogram,
    segments: [Gauge; 3],
    poisoned: Gauge,
    direct_io: Gauge,
    readers: Gauge,
    followers: Gauge,
    follower_lag: Gauge,
    durable_lsn: Gauge,
}

fn describe() {
    describe_counter!("directwal_records_appended_total", Unit::Count, "Records appended");
    describe_counter!("directwal_payload_bytes_appended_total", Unit::Bytes, "Payload bytes appended");
    describe_counter!("directwal_bytes_written_total", Unit::Bytes, "Bytes written to the device, by kind");
    describe_counter!("directwal_buffer_full_writes_total", Unit::Count, "Full write buffers written before a sync");
    describe_counter!(
        "directwal_reserve_fdatasyncs_total",
        Unit::Count,
        "fdatasyncs made only to keep the durable reserve"
    );
    describe_counter!("directwal_read_ahead_helpers_total", Unit::Count, "Threads started to read ahead of a replay");
    describe_counter!("directwal_directory_fsyncs_total", Unit::Count, "fsyncs of the WAL directory");
    describe_counter!("directwal_segments_created_total", Unit::Count, "Segments started");
    describe_counter!("directwal_segments_recycled_total", Unit::Count, "Segments started in a spare file");
    describe_counter!("directwal_rolls_total", Unit::Count, "Active segment sealed and the next started");
    describe_counter!("directwal_segments_truncated_total", Unit::Count, "Sealed segments truncated away");
    describe_counter!("directwal_bytes_reclaimed_total", Unit::Bytes, "Bytes of truncated segments");
    describe_histogram!("directwal_write_duration_seconds", Unit::Seconds, "Each device write");
    describe_histogram!("directwal_fsync_duration_seconds", Unit::Seconds, "Each fdatasync of a segment file");
    describe_histogram!("directwal_commit_wait_seconds", Unit::Seconds, "A committer's wait for durability");
    describe_histogram!("directwal_sync_batch_records", Unit::Count, "Records made durable per sync");
    describe_gauge!("directwal_segments", Unit::Count, "Segment files, by state");
    describe_gauge!("directwal_poisoned", "1 when the writer is poisoned");
    describe_gauge!("directwal_direct_io", "1 when the active segment is written with O_DIRECT");
    describe_gauge!("directwal_readers", Unit::Count, "Live readers");
    describe_gauge!("directwal_followers", Unit::Count, "Live followers (cursors)");
    describe_gauge!("directwal_follower_lag_records", Unit::Count, "Durable LSNs the slowest follower has not read");
    describe_gauge!("directwal_durable_lsn", "LSN of the last durable record");
}

impl Handles {
    pub fn register(dir: &Path) -> Self {
        describe();
        let d = dir.display().to_string();
        let kind = |k: &'static str| counter!("directwal_bytes_written_total", "wal_dir" => d.clone(), "kind" => k);
        let state = |s: &'static str| gauge!("directwal_segments", "wal_dir" => d.clone(), "state" => s);
        Handles {
            records: counter!("directwal_records_appended_total", "wal_dir" => d.clone()),
            payload_bytes: counter!("directwal_payload_bytes_appended_total", "wal_dir" => d.clone()),
            // In the order of `Written`.
            bytes_written: [kind("data"), kind("tail_rewrite"), kind("prepare"), kind("seal")],
            buffer_full: counter!("directwal_buffer_full_writes_total", "wal_dir" => d.clone()),
            reserve_fdatasyncs: counter!("directwal_reserve_fdatasyncs_total", "wal_dir" => d.clone()),
            read_ahead_helpers: counter!("directwal_read_ahead_helpers_total", "wal_dir" => d.clone()),
            dir_fsyncs: counter!("directwal_directory_fsyncs_total", "wal_dir" => d.clone()),
            segments_created: counter!("directwal_segments_created_total", "wal_dir" => d.clone()),
            segments_recycled: counter!("directwal_segments_recycled_total", "wal_dir" => d.clone()),
            rolls: counter!("directwal_rolls_total", "wal_dir" => d.clone()),
            segments_truncated: counter!("directwal_segments_truncated_total", "wal_dir" => d.clone()),
            bytes_reclaimed: counter!("directwal_bytes_reclaimed_total", "wal_dir" => d.clone()),
            write_duration: histogram!("directwal_write_duration_seconds", "wal_dir" => d.clone()),
            fsync_duration: histogram!("directwal_fsync_duration_seconds", "wal_dir" => d.clone()),
            commit_wait: histogram!("directwal_commit_wait_seconds", "wal_dir" => d.clone()),
            batch_records: histogram!("directwal_sync_batch_records", "wal_dir" => d.clone()),
            segments: [state("sealed"), state("active"), state("spare")],
            poisoned: gauge!("directwal_poisoned", "wal_dir" => d.clone()),
            direct_io: gauge!("directwal_direct_io", "wal_dir" => d.clone()),
            readers: gauge!("directwal_readers", "wal_dir" => d.clone()),
            followers: gauge!("directwal_followers", "wal_dir" => d.clone()),
            follower_lag: gauge!("directwal_follower_lag_records", "wal_dir" => d.clone()),
            durable_lsn: gauge!("directwal_durable_lsn", "wal_dir" => d),
        }
    }

    pub fn appended(&self, payload: u64) {
        self.records.increment(1);
        self.payload_bytes.increment(payload);
    }

    pub fn wrote(&self, what: Written, n: u64) {
        self.bytes_written[what as usize].increment(n);
    }

    pub fn poisoned(&self) {
        self.poisoned.set(1.0);
    }

    pub fn set_gauges(&self, s: &StatsSnapshot) {
        let active = s.segments_live - s.segments_sealed;
        for (g, v) in self.segments.iter().zip([s.segments_sealed, active, s.spare_files]) {
            g.set(v as f64);
        }
        self.poisoned.set(s.poisoned as u8 as f64);
        self.direct_io.set(s.direct_io as u8 as f64);
        self.readers.set(s.readers as f64);
        self.followers.set(s.followers as f64);
        self.follower_lag.set(s.slowest_follower_lag as f64);
        self.durable_lsn.set(s.durable_lsn as f64);
    }
}
