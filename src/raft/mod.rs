//! A Raft log store for openraft 0.9 (`storage-v2`) on directwal — feature
//! `openraft`.
//!
//! Everything the store keeps is a record in one WAL, log-structured:
//!
//! | record type | payload         | meaning                                         |
//! |-------------|-----------------|-------------------------------------------------|
//! | `ENTRY`     | the entry       | entry at its log index; drops any entries at or after that index |
//! | `VOTE`      | `Vote`          | the latest vote (made durable before `save_vote` returns) |
//! | `COMMITTED` | `Option<LogId>` | the latest committed log id                     |
//! | `TRUNCATE`  | `LogId`         | entries at or after `log_id.index` are gone     |
//! | `PURGE`     | `LogId`         | entries up to `log_id.index` are gone           |
//!
//! Payloads are postcard 1 (serde); records of stores written before are
//! JSON under their own record types, still read ([`codec`]).
//!
//! On open the records are replayed in LSN order to rebuild the index
//! (log index → WAL LSN) and the vote, committed and purged ids; entries are
//! read from the WAL on demand through a [`WalReader`]. The WAL recovers a
//! prefix of the records (I5), and every prefix of this record sequence is a
//! consistent store, so a crash image reopens to a consistent log (I13).
//!
//! Invariants (docs/DESIGN.md):
//! - I13 every prefix of the records is a consistent store;
//! - I14 `append` calls its callback only once the entries' records are
//!   durable; entries are readable as soon as `append` returns (from memory
//!   until durable, then from the WAL);
//! - I15 `purge` deletes a WAL segment only when every record in it is dead:
//!   vote and committed are written again first, and the cut is at the first
//!   live entry (or the purge record).

pub mod codec;
pub mod kv;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, RaftLogId, RaftTypeConfig, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Result as WalResult, SegmentedWalConfig, WalError, WalHandle, WalReader, WalRecord};
use codec::{Kind, decode};

pub use codec::{REC_COMMITTED, REC_ENTRY, REC_PURGE, REC_TRUNCATE, REC_VOTE};

/// Entries read from the WAL per page.
const READ_PAGE: usize = 1024;

type NodeIdOf<C> = <C as RaftTypeConfig>::NodeId;

/// What the store knows, rebuilt from the records on open.
struct State<C: RaftTypeConfig> {
    /// Log index → (WAL LSN of its record, log id). LSNs increase with the
    /// index: an entry is appended only after every later one was dropped.
    index: BTreeMap<u64, (u64, LogId<NodeIdOf<C>>)>,
    /// Entries whose records are not known to be durable yet (I14).
    unflushed: BTreeMap<u64, C::Entry>,
    last_purged: Option<LogId<NodeIdOf<C>>>,
    vote: Option<Vote<NodeIdOf<C>>>,
    committed: Option<LogId<NodeIdOf<C>>>,
}

impl<C: RaftTypeConfig> State<C> {
    fn drop_from(&mut self, index: u64) {
        self.index.split_off(&index);
        self.unflushed.split_off(&index);
    }

    fn drop_through(&mut self, index: u64) {
        self.index = self.index.split_off(&index.saturating_add(1));
        self.unflushed = self.unflushed.split_off(&index.saturating_add(1));
    }
}

/// The openraft log store (`RaftLogStorage` + `RaftLogReader`) on a directwal WAL.
///
/// Give it to `openraft::Raft::new` as the log store. Its methods are
/// openraft's trait methods; here called directly to show what survives a
/// restart (`kv::TypeConfig` is the example cluster's type config):
///
/// ```
/// use directwal::SegmentedWalConfig;
/// use directwal::raft::LogStore;
/// use directwal::raft::kv::TypeConfig;
/// use openraft::Vote;
/// use openraft::storage::RaftLogStorage;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let tmp = tempfile::tempdir()?;
/// # let dir = tmp.path();
/// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// # rt.block_on(async {
/// let mut store = LogStore::<TypeConfig>::open(SegmentedWalConfig::new(dir.into()))?;
/// store.save_vote(&Vote::new(3, 1)).await?; // durable when it returns
/// drop(store);
///
/// let mut store = LogStore::<TypeConfig>::open(SegmentedWalConfig::new(dir.into()))?;
/// assert_eq!(store.read_vote().await?, Some(Vote::new(3, 1)));
/// // let raft = openraft::Raft::new(node_id, config, network, store, state_machine).await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })
/// # }
/// ```
pub struct LogStore<C: RaftTypeConfig> {
    wal: WalHandle,
    state: Arc<Mutex<State<C>>>,
    /// The store's own reader, kept (a `WalReader` per read would take the
    /// writer's lock and switch the writer's mirror on and off).
    reader: LogReader<C>,
}

/// A reader of the store's entries, for openraft's replication tasks.
pub struct LogReader<C: RaftTypeConfig> {
    reader: WalReader,
    state: Arc<Mutex<State<C>>>,
}

impl<C: RaftTypeConfig> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("wal", &self.wal).finish_non_exhaustive()
    }
}

impl<C: RaftTypeConfig> Debug for LogReader<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader").field("reader", &self.reader).finish_non_exhaustive()
    }
}

fn lock<C: RaftTypeConfig>(state: &Mutex<State<C>>) -> MutexGuard<'_, State<C>> {
    // The state is only changed after the WAL accepted the record, so a
    // panic elsewhere cannot leave it half-updated.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_err<NID: openraft::NodeId>(e: impl std::error::Error + 'static) -> StorageError<NID> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn read_err<NID: openraft::NodeId>(e: impl std::error::Error + 'static) -> StorageError<NID> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned + Clone,
{
    /// Opens (or creates) the store in `config.wal_dir`, rebuilding its
    /// index from the records.
    pub fn open(config: SegmentedWalConfig) -> WalResult<Self> {
        Self::from_handle(WalHandle::open(config)?)
    }

    /// The store on an open WAL (for a custom `Storage`, e.g. the crash simulator).
    pub fn from_handle(wal: WalHandle) -> WalResult<Self> {
        let mut state = State::<C> {
            index: BTreeMap::new(),
            unflushed: BTreeMap::new(),
            last_purged: None,
            vote: None,
            committed: None,
        };
        let reader = wal.reader();
        let mut cursor = reader.cursor(0);
        loop {
            let page = cursor.next_page(READ_PAGE, 8 << 20)?;
            for rec in &page.records {
                // I13: each record applies to whatever prefix precedes it.
                match codec::kind_of(&reader, rec)? {
                    Kind::Entry => {
                        let entry: C::Entry = decode(&reader, rec)?;
                        let log_id = entry.get_log_id().clone();
                        state.drop_from(log_id.index);
                        state.index.insert(log_id.index, (rec.header.lsn, log_id));
                    }
                    Kind::Vote => state.vote = Some(decode(&reader, rec)?),
                    Kind::Committed => state.committed = decode(&reader, rec)?,
                    Kind::Truncate => state.drop_from(decode::<LogId<NodeIdOf<C>>>(&reader, rec)?.index),
                    Kind::Purge => {
                        let log_id: LogId<NodeIdOf<C>> = decode(&reader, rec)?;
                        state.drop_through(log_id.index);
                        state.last_purged = Some(log_id);
                    }
                }
            }
            if !page.has_more {
                break;
            }
        }
        let state = Arc::new(Mutex::new(state));
        let reader = LogReader { reader: wal.reader(), state: state.clone() };
        Ok(LogStore { wal, state, reader })
    }

    /// The WAL under the store.
    pub fn wal(&self) -> &WalHandle {
        &self.wal
    }

    fn append_record(&self, kind: Kind, value: &impl Serialize) -> WalResult<u64> {
        let (record_type, bytes) = codec::encode(kind, value)?;
        self.wal.append(record_type, 0, 0, &bytes)
    }
}

/// Reads the entries of `range` present in the store: unflushed ones from
/// memory, the others from the WAL in one forward pass.
fn read_entries<C>(
    state: &Mutex<State<C>>,
    reader: &WalReader,
    range: impl RangeBounds<u64>,
) -> Result<Vec<C::Entry>, StorageError<NodeIdOf<C>>>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned + Clone,
{
    enum Slot<E> {
        Ready(E),
        At(u64),
    }
    let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
    // `BTreeMap::range` panics on these; they select nothing.
    let empty = match (start, end) {
        (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => s > e,
        _ => false,
    };
    if empty {
        return Ok(Vec::new());
    }
    let slots: Vec<Slot<C::Entry>> = {
        let st = lock(state);
        st.index
            .range((start, end))
            .map(|(i, (lsn, _))| match st.unflushed.get(i) {
                Some(e) => Slot::Ready(e.clone()),
                None => Slot::At(*lsn),
            })
            .collect()
    };
    let last_lsn = slots.iter().rev().find_map(|s| if let Slot::At(l) = s { Some(*l) } else { None });
    let mut out = Vec::with_capacity(slots.len());
    let mut page: std::vec::IntoIter<WalRecord> = Vec::new().into_iter();
    let mut cursor: Option<crate::WalCursor> = None;
    for slot in slots {
        let lsn = match slot {
            Slot::Ready(e) => {
                out.push(e);
                continue;
            }
            Slot::At(lsn) => lsn,
        };
        let rec = loop {
            match page.next() {
                Some(r) if r.header.lsn == lsn => break r,
                Some(r) if r.header.lsn < lsn => continue,
                _ => {
                    // Not in the page: read on from the cursor, or start one at `lsn`.
                    let c = match &mut cursor {
                        Some(c) if c.position() <= lsn && lsn - c.position() < READ_PAGE as u64 => c,
                        _ => cursor.insert(reader.cursor(lsn)),
                    };
                    let want = (last_lsn.unwrap_or(lsn) + 1 - c.position()).clamp(1, READ_PAGE as u64);
                    let p = c.next_page(want as usize, 8 << 20).map_err(read_err)?;
                    if p.records.is_empty() {
                        let e = WalError::LsnTruncated { requested: lsn, oldest: reader.oldest_lsn() };
                        return Err(read_err(e));
                    }
                    page = p.records.into_iter();
                }
            }
        };
        out.push(decode::<C::Entry>(reader, &rec).map_err(read_err)?);
    }
    Ok(out)
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned + Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<NodeIdOf<C>>> {
        self.reader.try_get_log_entries(range).await
    }
}

impl<C> RaftLogReader<C> for LogReader<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned + Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<NodeIdOf<C>>> {
        read_entries(&self.state, &self.reader, range)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned + Clone,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<NodeIdOf<C>>> {
        let st = lock(&self.state);
        let last = st.index.last_key_value().map(|(_, (_, id))| id.clone()).or(st.last_purged.clone());
        Ok(LogState { last_purged_log_id: st.last_purged.clone(), last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader { reader: self.reader.reader.clone(), state: self.state.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeIdOf<C>>) -> Result<(), StorageError<NodeIdOf<C>>> {
        let lsn = {
            let mut st = lock(&self.state);
            let lsn =
                self.append_record(Kind::Vote, vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
            st.vote = Some(vote.clone());
            lsn
        };
        // The vote is durable before this returns (and with it every earlier record).
        self.wal.wait_durable(lsn).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeIdOf<C>>>, StorageError<NodeIdOf<C>>> {
        Ok(lock(&self.state).vote.clone())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeIdOf<C>>>) -> Result<(), StorageError<NodeIdOf<C>>> {
        // Not synced: a committed id lost in a crash only means re-applying
        // from an earlier point; the next durable write carries it anyway.
        let mut st = lock(&self.state);
        self.append_record(Kind::Committed, &committed).map_err(io_err)?;
        st.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeIdOf<C>>>, StorageError<NodeIdOf<C>>> {
        Ok(lock(&self.state).committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<NodeIdOf<C>>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let last = {
            let mut st = lock(&self.state);
            for entry in entries {
                let log_id = entry.get_log_id().clone();
                let lsn = self.append_record(Kind::Entry, &entry).map_err(io_err)?;
                st.drop_from(log_id.index);
                st.unflushed.insert(log_id.index, entry);
                st.index.insert(log_id.index, (lsn, log_id));
            }
            // With no entries this still waits for everything appended before.
            self.wal.next_lsn() - 1
        };
        // I14: the WAL's notifier thread calls back once `last` is durable;
        // its group commit makes one fdatasync serve every append pending.
        let state = self.state.clone();
        self.wal.on_durable(last, move |result| match result {
            Ok(durable) => {
                // Entries up to `durable` are read from the WAL from now on.
                let mut st = lock(&state);
                while let Some((&i, _)) = st.unflushed.first_key_value() {
                    if st.index.get(&i).is_some_and(|(lsn, _)| *lsn > durable) {
                        break;
                    }
                    st.unflushed.remove(&i);
                }
                drop(st);
                callback.log_io_completed(Ok(()));
            }
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeIdOf<C>>) -> Result<(), StorageError<NodeIdOf<C>>> {
        // Not synced on its own: entries appended after it are durable only
        // with it (the WAL makes prefixes durable), and a truncation lost
        // with nothing after it is one that never happened.
        let mut st = lock(&self.state);
        self.append_record(Kind::Truncate, &log_id).map_err(io_err)?;
        st.drop_from(log_id.index);
        tracing::info!(from_index = log_id.index, "raft log truncated");
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeIdOf<C>>) -> Result<(), StorageError<NodeIdOf<C>>> {
        let through_index = log_id.index;
        let keep_from = {
            let mut st = lock(&self.state);
            let purge_lsn = self.append_record(Kind::Purge, &log_id).map_err(io_err)?;
            // I15: the state older segments hold is written again, so they
            // hold nothing live once the entries in them are purged.
            if let Some(vote) = &st.vote {
                self.append_record(Kind::Vote, vote).map_err(io_err)?;
            }
            if st.committed.is_some() {
                self.append_record(Kind::Committed, &st.committed).map_err(io_err)?;
            }
            st.drop_through(log_id.index);
            st.last_purged = Some(log_id);
            st.index.first_key_value().map_or(purge_lsn, |(_, (lsn, _))| (*lsn).min(purge_lsn))
        };
        // The purge record must be durable before the segments go.
        self.wal.sync().map_err(io_err)?;
        let gone = self.wal.truncate_before(keep_from).map_err(io_err)?;
        tracing::info!(
            through_index,
            keep_from_lsn = keep_from,
            segments_deleted = gone.segments_deleted,
            "raft log purged"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::kv::TypeConfig;

    /// A WAL holding one synced record of `record_type` with `payload`.
    fn wal_with(dir: &std::path::Path, record_type: u16, payload: &[u8]) -> WalHandle {
        let wal = WalHandle::open(SegmentedWalConfig::new(dir.into())).unwrap();
        wal.append(record_type, 0, 0, payload).unwrap();
        wal.sync().unwrap();
        wal
    }

    #[test]
    fn a_record_that_does_not_decode_is_named_by_segment_and_lsn() {
        // Both encodings: a postcard vote (the bool byte is 't') and a JSON one.
        for rt in [REC_VOTE, codec::REC_JSON_VOTE] {
            let dir = tempfile::tempdir().unwrap();
            let wal = wal_with(dir.path(), rt, b"not json");
            match LogStore::<TypeConfig>::from_handle(wal) {
                Err(e @ WalError::RaftDecode { .. }) => {
                    let WalError::RaftDecode { segment, lsn, record_type, .. } = &e else { unreachable!() };
                    assert_eq!((segment.as_str(), *lsn, *record_type), (crate::segment_file_name(1).as_str(), 1, rt));
                    assert!(std::error::Error::source(&e).is_some(), "the decoder's error is kept");
                }
                other => panic!("{rt:#06x}: expected RaftDecode, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_record_of_a_foreign_type_is_named_by_segment_and_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_with(dir.path(), 0x0042, b"{}");
        match LogStore::<TypeConfig>::from_handle(wal) {
            Err(WalError::RaftUnknownRecord { segment, lsn, record_type }) => {
                assert_eq!((segment, lsn, record_type), (crate::segment_file_name(1), 1, 0x0042));
            }
            other => panic!("expected RaftUnknownRecord, got {other:?}"),
        }
    }
}
