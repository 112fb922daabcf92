//! Group commit through `WalHandle` (DESIGN "Group commit", I12).
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{faulty, payload};
use directwal::sim::SimStorage;
use directwal::{SegmentedWal, SegmentedWalConfig, WalError, WalHandle};

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).segment(256 * 1024).buffer(16 * 1024).chunk(64 * 1024).build()
}

/// Payload of thread `t`'s `i`-th commit: its identity, padded.
fn body(t: u64, i: u64, len: usize) -> Vec<u8> {
    let mut p = payload(t * 1_000_000 + i, len);
    p[..8].copy_from_slice(&(t * 1_000_000 + i).to_le_bytes());
    p
}

#[test]
fn many_threads_get_distinct_contiguous_lsns_and_every_commit_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let wal = WalHandle::open(cfg(dir.path())).unwrap();
    let (threads, each) = (8u64, 250u64);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..each)
                    .map(|i| (wal.append_durable(1, t as u32, 0, &body(t, i, 100)).unwrap(), t, i))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(u64, u64, u64)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    acked.sort();
    assert_eq!(acked.iter().map(|a| a.0).collect::<Vec<_>>(), (1..=threads * each).collect::<Vec<_>>());
    let stats = wal.stats();
    assert!(stats.syncs < threads * each, "no commit shared an fdatasync: {stats:?}");
    println!("{} commits, {} fdatasyncs, {:.1} records per sync", threads * each, stats.syncs, stats.records_per_sync);
    drop(wal);
    let recs = SegmentedWal::open(cfg(dir.path())).unwrap().replay().unwrap();
    let by_lsn: HashMap<u64, Vec<u8>> = recs.into_iter().map(|r| (r.header.lsn, r.payload)).collect();
    for (lsn, t, i) in acked {
        assert_eq!(by_lsn[&lsn], body(t, i, 100), "LSN {lsn}");
    }
}

#[test]
fn a_failed_fdatasync_fails_every_waiter_and_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = faulty();
    let wal = WalHandle::open_with_storage(cfg(dir.path()), storage).unwrap();
    for i in 0..20 {
        wal.append_durable(1, 0, 0, &body(0, i, 50)).unwrap();
    }
    faults.eio_sync.store(true, Ordering::SeqCst);
    let handles: Vec<_> = (1..=8u64)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || wal.append_durable(1, 0, 0, &body(t, 0, 50)))
        })
        .collect();
    for h in handles {
        match h.join().unwrap() {
            Err(WalError::Io { op: "fdatasync", .. } | WalError::Poisoned { .. }) => {}
            other => panic!("a waiter of a failed flush got {other:?}"),
        }
    }
    faults.eio_sync.store(false, Ordering::SeqCst);
    assert!(matches!(wal.append_durable(1, 0, 0, b"after"), Err(WalError::Poisoned { .. })));
    drop(wal);
    let recs = SegmentedWal::open(cfg(dir.path())).unwrap().replay().unwrap();
    assert!(recs.len() >= 20);
    assert!(recs[..20].iter().enumerate().all(|(i, r)| r.payload == body(0, i as u64, 50)));
}

#[test]
fn concurrent_commits_survive_crashes_at_any_point() {
    // Records larger than the write buffer force the held-back-write path
    // (I5) while other threads' flushes are in flight.
    let run = |crash_at: Option<u64>| -> (SimStorage, Vec<(u64, u64, u64, usize)>) {
        let sim = SimStorage::new();
        if let Some(k) = crash_at {
            sim.crash_after(k);
        }
        let c = common::config(Path::new("/gc")).segment(48 * 1024).buffer(8 * 1024).chunk(8 * 1024).build();
        let Ok(wal) = WalHandle::open_with_storage(c, Arc::new(sim.clone())) else { return (sim, vec![]) };
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..40u64 {
                        let len = if (t + i) % 5 == 0 { 9_000 } else { 120 };
                        match wal.append_durable(1, 0, 0, &body(t, i, len)) {
                            Ok(lsn) => acked.push((lsn, t, i, len)),
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        let acked = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        drop(wal);
        (sim, acked)
    };
    let (full, _) = run(None);
    let total_ops = full.ops();
    let mut points = 0;
    let mut k = 0;
    while k < total_ops {
        let (sim, acked) = run(Some(k));
        let mut x = k * 7919 + 1;
        let image = sim.crash_image(&mut || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        });
        let c = common::config(Path::new("/gc")).segment(48 * 1024).build();
        let wal = SegmentedWal::open_with_storage(c, Arc::new(image))
            .unwrap_or_else(|e| panic!("crash after op {k}: open refused: {e}"));
        let recs = wal.replay().unwrap();
        let by_lsn: HashMap<u64, Vec<u8>> = recs.into_iter().map(|r| (r.header.lsn, r.payload)).collect();
        for (lsn, t, i, len) in acked {
            assert_eq!(by_lsn.get(&lsn), Some(&body(t, i, len)), "crash after op {k}: acknowledged LSN {lsn} lost");
        }
        points += 1;
        k += 1 + k / 50;
    }
    println!("group-commit crash points: {points} of {total_ops} operations");
    assert!(points > 100);
}

#[test]
fn sync_policies_per_handle() {
    use directwal::SyncPolicy;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let base = WalHandle::open(cfg(dir.path())).unwrap();

    // None: commits never sync by themselves.
    let lazy = base.with_policy(SyncPolicy::None);
    for i in 0..50 {
        lazy.commit(1, 0, 0, &body(0, i, 40)).unwrap();
    }
    assert_eq!(lazy.durable_lsn(), 0);
    // An EveryCommit commit makes everything before it durable too.
    let strict = base.with_policy(SyncPolicy::EveryCommit);
    let lsn = strict.commit(1, 0, 0, b"strict").unwrap();
    assert_eq!((lsn, strict.durable_lsn()), (51, 51));

    // Batched by bytes: the commit that crosses max_bytes flushes.
    let batched = base.with_policy(SyncPolicy::Batched { max_delay: Duration::from_secs(3600), max_bytes: 1_000 });
    for i in 0..3 {
        batched.commit(1, 0, 0, &body(1, i, 300)).unwrap();
    }
    assert_eq!(batched.durable_lsn(), 51, "below max_bytes nothing is flushed");
    let fourth = batched.commit(1, 0, 0, &body(1, 3, 300)).unwrap();
    assert_eq!(batched.durable_lsn(), fourth);

    // Batched by delay: a lone commit becomes durable within about max_delay.
    let timed = base.with_policy(SyncPolicy::Batched { max_delay: Duration::from_millis(20), max_bytes: usize::MAX });
    let lone = timed.commit(1, 0, 0, b"lone").unwrap();
    let t = Instant::now();
    while timed.durable_lsn() < lone {
        assert!(t.elapsed() < Duration::from_secs(5), "the background flusher never synced");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls a future on this thread until it is ready (no runtime).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn callbacks_and_futures_complete_only_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let wal = WalHandle::open(cfg(dir.path())).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Nobody syncs: the notifier thread must lead the flushes itself.
    for i in 0..200u64 {
        let (probe, tx) = (wal.clone(), tx.clone());
        wal.append_then(1, 0, 0, &body(0, i, 40), move |r| {
            let lsn = r.unwrap();
            // Called only once the record is durable.
            tx.send((lsn, probe.durable_lsn() >= lsn)).unwrap();
        })
        .unwrap();
    }
    drop(tx);
    let got: Vec<(u64, bool)> = rx.iter().collect();
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>(), "in order, each once");
    assert!(got.iter().all(|g| g.1), "a callback ran before its record was durable");
    let syncs = wal.stats().syncs;
    assert!(syncs < 200, "one fdatasync serves many callbacks: {syncs} for 200");

    let lsn = wal.append(1, 0, 0, b"future").unwrap();
    assert_eq!(block_on(wal.durable(lsn)).unwrap(), lsn);
    assert!(wal.durable_lsn() >= lsn);
    // An LSN never appended fails its own future, not the WAL.
    assert!(matches!(block_on(wal.durable(lsn + 100)), Err(WalError::LsnNotAppended { .. })));
    // Dropping the last handle after the callbacks closes the WAL: it reopens at once.
    drop(wal);
    let recs = SegmentedWal::open(cfg(dir.path())).unwrap().replay().unwrap();
    assert_eq!(recs.len(), 201);
}

#[test]
fn a_failed_fdatasync_fails_the_callbacks_of_its_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = faulty();
    let wal = WalHandle::open_with_storage(cfg(dir.path()), storage).unwrap();
    wal.append_durable(1, 0, 0, b"before").unwrap();
    faults.eio_sync.store(true, Ordering::SeqCst);
    // The group's flush may fail (and poison the WAL) while later appends
    // are still being made: those appends are refused as poisoned, never
    // accepted and lost. Every accepted one's future fails.
    let mut futures = Vec::new();
    for i in 0..5 {
        match wal.append(1, 0, 0, &body(1, i, 30)) {
            Ok(lsn) => futures.push(wal.durable(lsn)),
            Err(e) => assert!(matches!(e, WalError::Poisoned { .. }), "{e}"),
        }
    }
    assert!(!futures.is_empty(), "the first append after the fault is accepted");
    for f in futures {
        assert!(matches!(block_on(f), Err(WalError::Poisoned { .. })));
    }
}
