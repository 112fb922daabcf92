//! DIRECTWAL_STATS: how openraft calls `append` (entries per call, gaps).

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
