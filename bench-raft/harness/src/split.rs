//! A v1 store (`RaftStorage`: log and state machine in one) with its log
//! kept and its state machine replaced by the harness's [`Sm`], so every
//! store runs the same state machine. openraft's `Adaptor` then splits it.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;

use openraft::storage::{LogState, Snapshot, SnapshotMeta};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, RaftStorage, StorageError, StoredMembership, Vote};

use crate::sm::{Config, Sm};

/// `log`'s log methods, the harness's state machine.
pub struct Split<C: Config, S> {
    log: S,
    sm: Sm<C>,
    /// After each append, call the store's `apply_to_state_machine(&[])`:
    /// for openraft-rocksstore that is only its `flush_wal(true)` (an fsync
    /// of RocksDB's WAL), so the append is durable before openraft's
    /// `Adaptor` acknowledges it.
    sync_by_empty_apply: bool,
}

impl<C: Config, S> Split<C, S> {
    /// `log`'s log with `sm`; `sync_by_empty_apply` as described on the field.
    pub fn new(log: S, sm: Sm<C>, sync_by_empty_apply: bool) -> Self {
        Split { log, sm, sync_by_empty_apply }
    }
}

impl<C: Config, S: RaftStorage<C>> RaftLogReader<C> for Split<C, S> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<u64>> {
        self.log.try_get_log_entries(range).await
    }
}

impl<C: Config, S: RaftStorage<C>> RaftStorage<C> for Split<C, S> {
    type LogReader = S::LogReader;
    type SnapshotBuilder = Sm<C>;

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.log.save_vote(vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.log.read_vote().await
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        self.log.save_committed(committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.log.read_committed().await
    }

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        self.log.get_log_state().await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.log.get_log_reader().await
    }

    async fn append_to_log<I>(&mut self, entries: I) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
    {
        self.log.append_to_log(entries).await?;
        if self.sync_by_empty_apply {
            self.log.apply_to_state_machine(&[]).await?;
        }
        Ok(())
    }

    async fn delete_conflict_logs_since(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.log.delete_conflict_logs_since(log_id).await
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.log.purge_logs_upto(log_id).await
    }

    async fn last_applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, C::Node>), StorageError<u64>> {
        Ok(self.sm.applied())
    }

    async fn apply_to_state_machine(&mut self, entries: &[Entry<C>]) -> Result<Vec<C::R>, StorageError<u64>> {
        Ok(self.sm.apply_entries(entries))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.sm.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, C::Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        self.sm.install(meta, snapshot.into_inner())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<u64>> {
        Ok(self.sm.current())
    }
}
