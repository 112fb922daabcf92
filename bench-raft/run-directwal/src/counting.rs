//! DIRECTWAL_STATS: how openraft calls the store (entries per `append`,
//! the gaps between calls, how long they take, its reads), and each node's
//! WAL counters. DIRECTWAL_BLOCKING (an experiment): `append` also waits
//! until its entries are durable before it returns.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Mutex;
use std::time::Instant;

use directwal::raft::{LogReader, LogStore};
use harness::Bench;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, Vote};

pub static CALLS: Mutex<Vec<(u64, Instant, usize)>> = Mutex::new(Vec::new());

pub struct Counting(pub u64, pub LogStore<Bench>);

pub static APPEND_US: Mutex<Vec<(u64, f64)>> = Mutex::new(Vec::new());

pub static READS: Mutex<Vec<(u64, f64, usize)>> = Mutex::new(Vec::new());

pub struct CountingReader(u64, LogReader<Bench>);

impl RaftLogReader<Bench> for CountingReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Bench>>, StorageError<u64>> {
        let t = Instant::now();
        let r = self.1.try_get_log_entries(range).await;
        let n = r.as_ref().map_or(0, |v| v.len());
        READS.lock().unwrap().push((self.0, t.elapsed().as_secs_f64() * 1e6, n));
        r
    }
}

impl RaftLogReader<Bench> for Counting {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Bench>>, StorageError<u64>> {
        self.1.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<Bench> for Counting {
    type LogReader = CountingReader;
    async fn get_log_state(&mut self) -> Result<LogState<Bench>, StorageError<u64>> {
        self.1.get_log_state().await
    }
    async fn get_log_reader(&mut self) -> Self::LogReader {
        CountingReader(self.0, self.1.get_log_reader().await)
    }
    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.1.save_vote(vote).await
    }
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.1.read_vote().await
    }
    async fn save_committed(&mut self, c: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        self.1.save_committed(c).await
    }
    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.1.read_committed().await
    }
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<Bench>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Bench>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let v: Vec<_> = entries.into_iter().collect();
        let t = Instant::now();
        let n = v.len();
        self.1.append(v, callback).await?;
        CALLS.lock().unwrap().push((self.0, t, n));
        APPEND_US.lock().unwrap().push((self.0, t.elapsed().as_secs_f64() * 1e6));
        if std::env::var_os("DIRECTWAL_BLOCKING").is_some() {
            // Experiment: hold openraft's core until the append is durable, as a v1 store behind `Adaptor` does.
            let last = self.1.wal().next_lsn() - 1;
            self.1
                .wal()
                .wait_durable(last)
                .map_err(|e| openraft::StorageIOError::write_logs(openraft::AnyError::new(&e)))?;
        }
        Ok(())
    }
    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.1.truncate(log_id).await
    }
    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.1.purge(log_id).await
    }
}

/// Prints what the counters saw and each node's WAL counters, on stderr.
pub fn report(wals: &[directwal::WalHandle]) {
    let reads = READS.lock().unwrap();
    let total: f64 = reads.iter().map(|r| r.1).sum();
    let n: usize = reads.iter().map(|r| r.2).sum();
    let max = reads.iter().map(|r| r.1).fold(0.0, f64::max);
    let empty = reads.iter().filter(|r| r.2 == 0).count();
    eprintln!("reads: {} calls ({empty} empty), {n} entries, {:.0} us total, {max:.0} us max", reads.len(), total);
    let calls = CALLS.lock().unwrap();
    for node in 1..=3 {
        let mut a: Vec<f64> = APPEND_US.lock().unwrap().iter().filter(|x| x.0 == node).map(|x| x.1).collect();
        a.sort_by(f64::total_cmp);
        let q = |p: f64| a.get(((a.len() as f64 * p) as usize).min(a.len().saturating_sub(1))).copied().unwrap_or(0.0);
        let sum: f64 = a.iter().sum();
        eprintln!("node {node}: append call p50 {:.0} us, p99 {:.0} us, total {:.0} ms", q(0.5), q(0.99), sum / 1e3);
    }
    for node in 1..=3 {
        let c: Vec<_> = calls.iter().filter(|c| c.0 == node).collect();
        let entries: usize = c.iter().map(|c| c.2).sum();
        let gaps: Vec<f64> = c.windows(2).map(|w| (w[1].1 - w[0].1).as_secs_f64() * 1e6).collect();
        let mut g = gaps.clone();
        g.sort_by(f64::total_cmp);
        eprintln!(
            "node {node}: {} appends, {entries} entries, gap p50 {:.0} us",
            c.len(),
            g.get(g.len() / 2).unwrap_or(&0.0)
        );
    }
    for (i, w) in wals.iter().enumerate() {
        let s = w.stats_snapshot();
        eprintln!(
            "node {}: {} records, {} fdatasyncs ({:.0} us mean), {} syncs, {:.1} records/sync, {} write calls",
            i + 1,
            s.records_appended,
            s.fdatasyncs,
            s.fdatasync_time.as_secs_f64() * 1e6 / s.fdatasyncs.max(1) as f64,
            s.syncs,
            s.synced_records as f64 / s.syncs.max(1) as f64,
            s.write_calls,
        );
    }
}
