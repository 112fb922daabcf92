//! Operator stats (docs/OBSERVABILITY.md): the figures add up against the
//! simulated device, follower lag, poisoning, and scraping never waits for
//! the writer's lock.
mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use common::{faulty, payload};
use directwal::io::{FileImage, OpenMode, Storage, StorageFile};
use directwal::sim::SimStorage;
use directwal::{SegmentedWal, SegmentedWalConfig, StatsSnapshot, WalHandle};

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(64 * 1024).chunk(16 * 1024).buffer(16 * 1024).build()
}

fn assert_adds_up(s: &StatsSnapshot, sim: &SimStorage) {
    let b = &s.bytes_written;
    assert_eq!(b.device, b.data + b.tail_rewrite + b.prepare + b.seal, "{b:?}");
    assert_eq!(b.device, sim.bytes_written(), "every byte the device saw is counted");
    assert!(b.data >= s.payload_bytes_appended, "{b:?} vs {} payload bytes", s.payload_bytes_appended);
    assert_eq!(s.fdatasyncs, sim.data_syncs(), "fdatasyncs are the device's flushes");
    assert!(s.write_time > Duration::ZERO && s.fdatasync_time > Duration::ZERO);
    assert_eq!(s.fdatasync_latency_ns.count, s.fdatasyncs);
    assert_eq!(s.sync_batch_records.count, s.syncs);
    assert_eq!(s.sync_batch_records.sum, s.synced_records);
    let h = &s.fdatasync_latency_ns;
    assert!(h.p50() <= h.p99() && h.p99() <= h.p999() && h.p999() <= h.max && h.max > 0);
}

#[test]
fn figures_add_up_against_the_simulated_device() {
    let sim = SimStorage::new();
    let dir = Path::new("/sim/wal");
    let mut wal = SegmentedWal::open_with_storage(cfg(dir), Arc::new(sim.clone())).unwrap();
    let (mut payload_bytes, mut n) = (0u64, 0u64);
    for i in 0..600u64 {
        let p = payload(i, 1 + (i as usize * 37) % 900);
        wal.append(1, 0, 0, &p).unwrap();
        payload_bytes += p.len() as u64;
        n += 1;
        if i % 7 == 0 {
            wal.sync().unwrap();
        }
    }
    wal.sync().unwrap();
    let s = wal.stats_snapshot();
    assert_eq!((s.records_appended, s.payload_bytes_appended), (n, payload_bytes));
    assert_eq!(s.synced_records, n);
    assert_adds_up(&s, &sim);
    assert!(s.bytes_written.tail_rewrite > 0, "syncs every 7 records rewrite tail blocks");
    assert!(s.buffer_full_writes > 0, "16 KiB buffers fill between syncs");
    assert!(s.rolls > 0 && s.segments_sealed == s.rolls && s.segments_live == s.rolls + 1, "{s:?}");
    assert!(!s.poisoned && !s.direct_io);
    assert_eq!(s.durable_lsn, n);
    assert_eq!(wal.stats(), s.wal_stats());

    let r = wal.truncate_before(wal.durable_lsn()).unwrap();
    let t = wal.stats_snapshot();
    assert_eq!((t.segments_truncated, t.bytes_reclaimed), (r.segments_deleted as u64, r.bytes_reclaimed));
    assert_eq!(t.segments_sealed, 0);
    assert!(t.spare_files > 0, "truncation keeps spares: {t:?}");
    assert_eq!(t.directory_fsyncs, s.directory_fsyncs + r.segments_deleted as u64);
    // The next segment takes a spare.
    wal.roll_segment().unwrap();
    let u = wal.stats_snapshot();
    assert_eq!(u.spare_files + 1, t.spare_files, "{u:?}");
    assert_eq!(u.segments_recycled, t.segments_recycled + 1);
    assert_adds_up(&u, &sim);
}

#[test]
fn group_commit_fdatasyncs_are_the_devices_flushes() {
    let sim = SimStorage::new();
    let wal = WalHandle::open_with_storage(cfg(Path::new("/sim/wal")), Arc::new(sim.clone())).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let wal = &wal;
            s.spawn(move || {
                for i in 0..100 {
                    wal.commit(1, t as u32, 0, &payload(t * 1000 + i, 200)).unwrap();
                }
            });
        }
    });
    let s = wal.stats_snapshot();
    assert_eq!(s.records_appended, 400);
    assert_eq!(s.commit_wait_ns.count, 400, "every commit's wait is recorded");
    assert_adds_up(&s, &sim);
}

#[test]
fn a_followers_lag_drops_to_zero_once_it_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    for i in 0..100 {
        wal.append(1, 0, 0, &payload(i, 100)).unwrap();
    }
    wal.sync().unwrap();
    assert_eq!((wal.stats_snapshot().followers, wal.stats_snapshot().slowest_follower_lag), (0, 0));
    let reader = wal.reader();
    let mut fast = reader.cursor(0);
    let mut slow = reader.cursor(1);
    let s = wal.stats_snapshot();
    assert_eq!((s.followers, s.slowest_follower_lag, s.readers), (2, 100, 3));
    fast.next_page(1000, usize::MAX).unwrap();
    slow.next_page(40, usize::MAX).unwrap();
    assert_eq!(wal.stats_snapshot().slowest_follower_lag, 60);
    while slow.next_page(1000, usize::MAX).unwrap().has_more {}
    assert_eq!(wal.stats_snapshot().slowest_follower_lag, 0);
    for i in 100..110 {
        wal.append(1, 0, 0, &payload(i, 100)).unwrap();
    }
    assert_eq!(wal.stats_snapshot().slowest_follower_lag, 0, "only durable LSNs count");
    wal.sync().unwrap();
    assert_eq!(wal.stats_snapshot().slowest_follower_lag, 10);
    slow.next_page(1000, usize::MAX).unwrap();
    assert_eq!(wal.stats_snapshot().slowest_follower_lag, 10, "the other follower is behind now");
    drop(fast);
    let s = wal.stats_snapshot();
    assert_eq!((s.followers, s.slowest_follower_lag), (1, 0));
}

#[test]
fn poisoned_flips_on_an_injected_eio() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = faulty();
    let wal = WalHandle::open_with_storage(cfg(dir.path()), storage).unwrap();
    wal.commit(1, 0, 0, b"ok").unwrap();
    assert!(!wal.is_poisoned() && !wal.stats_snapshot().poisoned);
    faults.eio_sync.store(true, Ordering::SeqCst);
    assert!(wal.commit(1, 0, 0, b"lost").is_err());
    faults.eio_sync.store(false, Ordering::SeqCst);
    assert!(wal.is_poisoned());
    assert!(wal.stats_snapshot().poisoned);
}

#[test]
fn scraping_in_a_tight_loop_while_four_threads_commit() {
    let dir = tempfile::tempdir().unwrap();
    let wal = WalHandle::open(cfg(dir.path())).unwrap();
    let done = AtomicBool::new(false);
    let scrapes = std::thread::scope(|s| {
        let scraper = s.spawn(|| {
            let mut last = wal.stats_snapshot();
            let mut scrapes = 0u64;
            while !done.load(Ordering::Relaxed) {
                let now = wal.stats_snapshot();
                assert!(now.records_appended >= last.records_appended);
                assert!(now.fdatasyncs >= last.fdatasyncs);
                assert!(now.durable_lsn >= last.durable_lsn);
                assert!(now.bytes_written.device >= last.bytes_written.device);
                assert!(now.commit_wait_ns.count >= last.commit_wait_ns.count);
                last = now;
                scrapes += 1;
            }
            scrapes
        });
        let committers: Vec<_> = (0..4u64)
            .map(|t| {
                let wal = &wal;
                s.spawn(move || {
                    for i in 0..300 {
                        wal.commit(1, t as u32, 0, &payload(t * 1000 + i, 128)).unwrap();
                    }
                })
            })
            .collect();
        for c in committers {
            c.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        scraper.join().unwrap()
    });
    assert!(scrapes > 0);
    let s = wal.stats_snapshot();
    assert_eq!((s.records_appended, s.synced_records, s.durable_lsn), (1200, 1200, 1200));
    assert_eq!(s.commit_wait_ns.count, 1200);
    assert!(s.sync_batch_records.max >= 1 && s.syncs <= 1200);
}

/// A storage whose writes block while `hold` is set.
#[derive(Debug, Default)]
struct Gate {
    sim: SimStorage,
    hold: Arc<AtomicBool>,
    blocked: Arc<AtomicBool>,
}

struct GateFile {
    inner: Box<dyn StorageFile>,
    hold: Arc<AtomicBool>,
    blocked: Arc<AtomicBool>,
}

impl StorageFile for GateFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        while self.hold.load(Ordering::SeqCst) {
            self.blocked.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
        }
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.allocate(offset, len)
    }
}

impl Storage for Gate {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.sim.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<directwal::io::DirEntry>> {
        self.sim.list_dir(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let inner = self.sim.open(path, mode)?;
        Ok(Box::new(GateFile { inner, hold: self.hold.clone(), blocked: self.blocked.clone() }))
    }
    fn read_image(&self, path: &Path) -> io::Result<FileImage> {
        self.sim.read_image(path)
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize, direct: bool) -> io::Result<Vec<u8>> {
        self.sim.read_range(path, offset, len, direct)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.sim.file_len(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.sim.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sim.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>> {
        self.sim.lock_dir(dir)
    }
}

#[test]
fn stats_do_not_wait_for_the_writers_lock() {
    let gate = Gate::default();
    let (hold, blocked) = (gate.hold.clone(), gate.blocked.clone());
    let wal = Arc::new(WalHandle::open_with_storage(cfg(Path::new("/sim/wal")), Arc::new(gate)).unwrap());
    wal.append(1, 0, 0, b"pending").unwrap();
    hold.store(true, Ordering::SeqCst);
    // The sync writes under the writer's lock, and its write hangs.
    let syncing = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.sync())
    };
    while !blocked.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (tx, rx) = mpsc::channel();
    let scraper = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            let _ = tx.send((wal.stats(), wal.stats_snapshot(), wal.is_poisoned()));
        })
    };
    let got = rx.recv_timeout(Duration::from_secs(5));
    hold.store(false, Ordering::SeqCst);
    syncing.join().unwrap().unwrap();
    scraper.join().unwrap();
    let (stats, snap, poisoned) = got.expect("stats waited for the writer's lock");
    assert_eq!((stats.appends, snap.records_appended, snap.durable_lsn, poisoned), (1, 1, 0, false));
}

#[cfg(feature = "metrics")]
#[test]
fn a_metrics_recorder_sees_counters_and_histograms_move() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let sim = SimStorage::new();
    // Handles are registered at open with the recorder installed then.
    let wal = metrics::with_local_recorder(&recorder, || {
        WalHandle::open_with_storage(cfg(Path::new("/sim/wal")), Arc::new(sim.clone())).unwrap()
    });
    for i in 0..50 {
        wal.commit(1, 0, 0, &payload(i, 100)).unwrap();
    }
    let s = wal.stats_snapshot(); // sets the gauges
    let seen = snapshotter.snapshot().into_vec();
    let find = |name: &str, label: Option<(&str, &str)>| {
        seen.iter()
            .find(|(k, ..)| {
                k.key().name() == name
                    && label.is_none_or(|(l, v)| k.key().labels().any(|x| x.key() == l && x.value() == v))
            })
            .map(|(.., v)| v)
            .unwrap_or_else(|| panic!("{name} not published"))
    };
    let DebugValue::Histogram(fsyncs) = find("directwal_fsync_duration_seconds", None) else { panic!() };
    assert_eq!(fsyncs.len() as u64, s.fdatasyncs);
    assert!(fsyncs.iter().all(|v| v.0 > 0.0 && v.0 < 60.0), "seconds");
    let DebugValue::Histogram(waits) = find("directwal_commit_wait_seconds", None) else { panic!() };
    assert_eq!(waits.len(), 50);
    assert_eq!(find("directwal_records_appended_total", None), &DebugValue::Counter(50));
    assert_eq!(
        find("directwal_bytes_written_total", Some(("kind", "data"))),
        &DebugValue::Counter(s.bytes_written.data)
    );
    assert_eq!(find("directwal_reserve_fdatasyncs_total", None), &DebugValue::Counter(s.reserve_fdatasyncs));
    assert_eq!(find("directwal_read_ahead_helpers_total", None), &DebugValue::Counter(s.read_ahead_helpers));
    assert_eq!(find("directwal_durable_lsn", None), &DebugValue::Gauge(50.0.into()));
    assert_eq!(find("directwal_poisoned", None), &DebugValue::Gauge(0.0.into()));
}

#[cfg(feature = "metrics")]
#[test]
fn a_metrics_recorder_sees_reserve_fdatasyncs_and_read_ahead_helpers() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let dir = tempfile::tempdir().unwrap();
    // Space prepared a block at a time: syncs need reserve fdatasyncs (I26);
    // 40 MiB in 4 MiB segments: a replay reads ahead (I27).
    let cfg = common::config(dir.path()).segment(4 << 20).chunk(4096).build();
    let mut wal = metrics::with_local_recorder(&recorder, || SegmentedWal::open(cfg).unwrap());
    for i in 0..640 {
        wal.append(1, 0, 0, &payload(i, 64 << 10)).unwrap();
        if i % 64 == 0 {
            wal.sync().unwrap();
        }
    }
    wal.sync().unwrap();
    assert_eq!(wal.replay().unwrap().len(), 640);
    let s = wal.stats_snapshot();
    assert!(s.reserve_fdatasyncs > 0, "{s:?}");
    let two_cores = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    assert_eq!(s.read_ahead_helpers, u64::from(two_cores && cfg!(target_os = "linux")));
    let seen = snapshotter.snapshot().into_vec();
    let counter = |name: &str| {
        seen.iter()
            .find(|(k, ..)| k.key().name() == name)
            .map(|(.., v)| v)
            .unwrap_or_else(|| panic!("{name} not published"))
    };
    assert_eq!(counter("directwal_reserve_fdatasyncs_total"), &DebugValue::Counter(s.reserve_fdatasyncs));
    assert_eq!(counter("directwal_read_ahead_helpers_total"), &DebugValue::Counter(s.read_ahead_helpers));
}
