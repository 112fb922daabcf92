//! directwal as openraft's log store (feature `openraft`; DESIGN I13–I15).
//! Run: `cargo test --features openraft --test raft`.
mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};

use common::Rng;
use directwal::raft::LogStore;
use directwal::raft::kv::{MemStateMachine, Request, TypeConfig};
use directwal::sim::SimStorage;
use directwal::{SegmentedWalConfig, WalHandle};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite, log_id};
use openraft::{Entry, EntryPayload, LogId, RaftLogReader, StorageError, Vote};

type Store = LogStore<TypeConfig>;

/// Runs a future on this thread (the store needs no runtime: its waits are
/// on the WAL, and its callbacks are runtime-agnostic oneshots).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn cfg(dir: &std::path::Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(16 * 1024).build()
}

struct Builder;

impl StoreBuilder<TypeConfig, Store, MemStateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, Store, MemStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(cfg(dir.path())).expect("the store opens");
        Ok((dir, store, MemStateMachine::default()))
    }
}

#[test]
fn openraft_suite_passes() {
    Suite::test_all(Builder).unwrap();
}

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(Request { key: format!("k{index}"), value: format!("t{term}") }),
    }
}

/// An entry of ~100 bytes, so that 300 of them fill several 16 KiB segments.
fn big_entry(term: u64, index: u64) -> Entry<TypeConfig> {
    let mut e = entry(term, index);
    if let EntryPayload::Normal(r) = &mut e.payload {
        r.value = format!("{:-<96}", r.value);
    }
    e
}

fn entries(store: &mut Store) -> Vec<Entry<TypeConfig>> {
    block_on(store.try_get_log_entries(..)).unwrap()
}

#[test]
fn entries_vote_committed_truncation_and_purge_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Store::open(cfg(dir.path())).unwrap();
        block_on(async {
            s.save_vote(&Vote::new(1, 1)).await.unwrap();
            s.blocking_append((1..=300).map(|i| big_entry(1, i))).await.unwrap();
            s.save_committed(Some(log_id(1, 1, 250))).await.unwrap();
            s.truncate(log_id(1, 1, 280)).await.unwrap();
            s.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
            s.blocking_append((280..=290).map(|i| big_entry(2, i))).await.unwrap();
        });
        let files_before = common::segment_files(dir.path()).len();
        block_on(s.purge(log_id(1, 1, 200))).unwrap();
        let files_after = common::segment_files(dir.path()).len();
        assert!(files_after < files_before, "purge deleted no segment: {files_before} -> {files_after}");
    }
    let mut s = Store::open(cfg(dir.path())).unwrap();
    let state = block_on(s.get_log_state()).unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 200)));
    assert_eq!(state.last_log_id, Some(log_id(2, 1, 290)));
    assert_eq!(block_on(s.read_vote()).unwrap(), Some(Vote::new_committed(2, 1)));
    assert_eq!(block_on(s.read_committed()).unwrap(), Some(log_id(1, 1, 250)));
    let got = entries(&mut s);
    let want: Vec<_> = (201..280).map(|i| big_entry(1, i)).chain((280..=290).map(|i| big_entry(2, i))).collect();
    assert_eq!(got, want);
    assert!(block_on(s.try_get_log_entries(1..=200)).unwrap().is_empty());
    // Empty ranges select nothing (BTreeMap::range would panic on some).
    use std::ops::Bound::Excluded;
    assert!(block_on(s.try_get_log_entries((Excluded(250), Excluded(250)))).unwrap().is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 260..250;
    assert!(block_on(s.try_get_log_entries(backwards)).unwrap().is_empty());
    assert_eq!(block_on(s.try_get_log_entries(285..)).unwrap(), want[want.len() - 6..].to_vec());

    // And it goes on from there: a purge of everything leaves the ids.
    block_on(s.blocking_append([big_entry(2, 291)])).unwrap();
    block_on(s.purge(log_id(2, 1, 291))).unwrap();
    drop(s);
    let mut s = Store::open(cfg(dir.path())).unwrap();
    let state = block_on(s.get_log_state()).unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(log_id(2, 1, 291)), Some(log_id(2, 1, 291))));
    assert!(entries(&mut s).is_empty());
    assert_eq!(block_on(s.read_vote()).unwrap(), Some(Vote::new_committed(2, 1)), "vote kept across the purge");
}

/// What the workload did, for the check after a crash.
#[derive(Default)]
struct Model {
    /// Every log id ever appended at each index, in order.
    history: BTreeMap<u64, Vec<LogId<u64>>>,
    /// Per index: how many of `history` had been appended when the last
    /// acknowledged append covering it returned, and when (`clock`).
    acked: BTreeMap<u64, (usize, u64)>,
    /// Truncations issued: (from index, clock).
    truncations: Vec<(u64, u64)>,
    /// Operations issued so far.
    clock: u64,
    /// The last vote whose save returned.
    vote: Option<Vote<u64>>,
    /// The highest purge issued.
    purged: u64,
}

/// A fixed workload of appends, truncations, votes and purges on the
/// simulated device; stops at the first failure (the crash).
fn raft_workload(sim: &SimStorage) -> Model {
    let mut m = Model::default();
    let Ok(wal) = WalHandle::open_with_storage(cfg(std::path::Path::new("/raft")), Arc::new(sim.clone())) else {
        return m;
    };
    let Ok(mut s) = Store::from_handle(wal) else { return m };
    let mut next = 1u64;
    #[allow(clippy::result_large_err)] // openraft's StorageError
    let run = |m: &mut Model, s: &mut Store, next: &mut u64| -> Result<(), StorageError<u64>> {
        for round in 1..=12u64 {
            let vote = Vote::new_committed(round, 1);
            block_on(s.save_vote(&vote))?;
            m.vote = Some(vote);
            if round > 1 {
                // A new leader overwrites the last 3 entries.
                *next -= 3;
                m.clock += 1;
                m.truncations.push((*next, m.clock));
                block_on(s.truncate(log_id(round - 1, 1, *next)))?;
            }
            for batch in 0..3 {
                let from = *next;
                let ents: Vec<_> = (from..from + 7).map(|i| entry(round, i)).collect();
                for e in &ents {
                    m.history.entry(e.log_id.index).or_default().push(e.log_id);
                }
                *next += 7;
                block_on(s.blocking_append(ents))?;
                m.clock += 1;
                for i in from..*next {
                    m.acked.insert(i, (m.history[&i].len(), m.clock));
                }
                block_on(s.save_committed(Some(log_id(round, 1, *next - 2))))?;
                if batch == 1 && round % 2 == 0 {
                    let upto = *next - 10;
                    m.purged = m.purged.max(upto); // issued: it may be durable even if it fails
                    block_on(s.purge(log_id(round, 1, upto)))?;
                }
            }
        }
        Ok(())
    };
    if let Err(e) = run(&mut m, &mut s, &mut next)
        && std::env::var_os("DEBUG_RAFT").is_some()
    {
        eprintln!("workload stopped: {e}");
    }
    m
}

#[test]
fn every_crash_image_reopens_to_a_consistent_log_with_every_acknowledged_entry() {
    let full = SimStorage::new();
    raft_workload(&full);
    let ops = full.ops();
    assert!(ops > 100, "the workload does real I/O: {ops} operations");
    let mut checked = 0;
    for k in 0..=ops {
        let sim = SimStorage::new();
        sim.crash_after(k);
        let m = raft_workload(&sim);
        let mut rng = Rng(k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let image = sim.crash_image(&mut || rng.next());
        let wal = WalHandle::open_with_storage(cfg(std::path::Path::new("/raft")), Arc::new(image))
            .unwrap_or_else(|e| panic!("crash at {k}: reopen refused: {e}"));
        let mut s = Store::from_handle(wal).unwrap_or_else(|e| panic!("crash at {k}: store refused: {e}"));
        let state = block_on(s.get_log_state()).unwrap();
        let purged = state.last_purged_log_id.map_or(0, |l| l.index);
        assert!(purged <= m.purged, "crash at {k}: purged {purged} beyond any purge issued");
        let got = entries(&mut s);
        // Contiguous from the purge point, each at its own index.
        for (e, i) in got.iter().zip(purged + 1..) {
            assert_eq!(e.log_id.index, i, "crash at {k}: hole or disorder in the log");
        }
        assert_eq!(state.last_log_id, got.last().map(|e| e.log_id).or(state.last_purged_log_id), "crash at {k}");
        let by_index: BTreeMap<u64, LogId<u64>> = got.iter().map(|e| (e.log_id.index, e.log_id)).collect();
        // Every entry was appended at some point; acknowledged ones are there
        // unless purged, or replaced by a later append at their index.
        for (i, id) in &by_index {
            let h = &m.history[i];
            let pos = h.iter().position(|x| x == id).unwrap_or_else(|| panic!("crash at {k}: {id} never appended"));
            assert_eq!(got[(*i - purged - 1) as usize], entry(id.leader_id.term, *i), "crash at {k}: payload");
            if let Some(&(acked, _)) = m.acked.get(i) {
                assert!(pos + 1 >= acked, "crash at {k}: index {i} went back before an acknowledged append");
            }
        }
        for (i, &(acked, when)) in &m.acked {
            let replaced_later = m.history[i].len() > acked;
            if *i > purged && !replaced_later && !by_index.contains_key(i) {
                // Only a truncation issued after the acknowledgement may remove it.
                let truncated = m.truncations.iter().any(|&(from, t)| from <= *i && t > when);
                assert!(truncated, "crash at {k}: acknowledged index {i} lost");
            }
        }
        assert!(block_on(s.read_vote()).unwrap() >= m.vote, "crash at {k}: acknowledged vote lost");
        checked += 1;
    }
    println!("raft crash points: {checked}");
}

/// The record types in the store's WAL, in LSN order.
fn record_types(s: &Store) -> Vec<u16> {
    let mut cursor = s.wal().reader().cursor(0);
    let mut out = Vec::new();
    loop {
        let page = cursor.next_page(1024, 8 << 20).unwrap();
        out.extend(page.records.iter().map(|r| r.header.record_type));
        if !page.has_more {
            return out;
        }
    }
}

/// tests/data/raft-json holds a store written by the JSON-era store (before
/// postcard records; main at e32c83e), with this history:
/// vote 1; entries 1..=40 of term 1 (1 blank, 2 a membership of {1,2,3});
/// committed (1,30); truncate at 35; vote 2 committed; entries 35..=50 of
/// term 2; purge through 1; committed (2,45). It opens, reads back whole,
/// takes new (postcard) records after the JSON ones, and reopens to both.
#[test]
fn a_json_era_store_opens_reads_back_and_goes_on_in_binary() {
    use directwal::raft::codec::{REC_ENTRY, REC_JSON_ENTRY};
    use openraft::Membership;
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/raft-json"), dir.path());
    let json_era: Vec<_> = std::iter::once(Entry {
        log_id: log_id(1, 1, 2),
        payload: EntryPayload::Membership(Membership::new(vec![[1, 2, 3].into()], None)),
    })
    .chain((3..35).map(|i| entry(1, i)))
    .chain((35..=50).map(|i| entry(2, i)))
    .collect();
    let check = |s: &mut Store, want: &[Entry<TypeConfig>], purged: u64, vote: Vote<u64>, committed: LogId<u64>| {
        let state = block_on(s.get_log_state()).unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(purged));
        assert_eq!(state.last_log_id, want.last().map(|e| e.log_id));
        assert_eq!(block_on(s.read_vote()).unwrap(), Some(vote));
        assert_eq!(block_on(s.read_committed()).unwrap(), Some(committed));
        assert_eq!(entries(s), want);
    };

    let mut s = Store::open(cfg(dir.path())).unwrap();
    check(&mut s, &json_era, 1, Vote::new_committed(2, 1), log_id(2, 1, 45));
    let old_types = record_types(&s);
    assert!(old_types.iter().all(|t| (0x5201..=0x5205).contains(t)), "the fixture is JSON-era: {old_types:x?}");

    // Goes on in binary: entries, vote, committed, a truncation, a purge.
    block_on(async {
        s.blocking_append((51..=60).map(|i| entry(2, i))).await.unwrap();
        s.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
        s.save_committed(Some(log_id(2, 1, 55))).await.unwrap();
        s.truncate(log_id(2, 1, 58)).await.unwrap();
        s.blocking_append((58..=59).map(|i| entry(3, i))).await.unwrap();
        s.purge(log_id(1, 1, 10)).await.unwrap();
    });
    let mut want: Vec<_> = json_era[9..].to_vec();
    want.extend((51..58).map(|i| entry(2, i)).chain((58..=59).map(|i| entry(3, i))));
    check(&mut s, &want, 10, Vote::new_committed(3, 1), log_id(2, 1, 55));
    drop(s);

    let mut s = Store::open(cfg(dir.path())).unwrap();
    check(&mut s, &want, 10, Vote::new_committed(3, 1), log_id(2, 1, 55));
    let types = record_types(&s);
    assert!(types.contains(&REC_JSON_ENTRY) && types.contains(&REC_ENTRY), "both encodings in one WAL: {types:x?}");
    assert!(types.iter().skip(old_types.len()).all(|t| (0x5211..=0x5215).contains(t)), "new records are binary");
}
