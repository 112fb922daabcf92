//! Group commit: many threads commit through one `WalHandle`;
//! one fdatasync serves every record appended before it started.
//!
//! Leader/follower: a committer whose record is not durable yet and finds no
//! flush in flight becomes the leader. Under the lock it writes everything
//! appended so far; it then releases the lock for the fdatasync, takes it
//! again to publish the result and wakes everyone. Records appended while the
//! fdatasync runs wait in the buffer for the next flush. An append that
//! would itself write to the file (its buffer fills, or the segment rolls)
//! waits until the flush in flight has completed: its bytes must not reach
//! the disk before the data they follow is durable (DESIGN I5). A failed
//! fdatasync fails every waiter and poisons the WAL (I3).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{Result, WalError};
use crate::io::Storage;
use crate::reader::WalReader;
use crate::record::WalRecord;
use crate::wal::{SegmentedWal, SegmentedWalConfig, TruncateResult, WalStats};

/// A cloneable, thread-safe handle for group commit.
///
/// ```
/// # fn main() -> Result<(), directwal::WalError> {
/// let dir = tempfile::tempdir().unwrap();
/// let wal = directwal::WalHandle::open(directwal::SegmentedWalConfig::new(dir.path().into()))?;
/// let threads: Vec<_> = (0..4u8)
///     .map(|t| {
///         let wal = wal.clone();
///         std::thread::spawn(move || wal.append_durable(1, 0, 0, &[t; 16]).unwrap())
///     })
///     .collect();
/// for t in threads {
///     let lsn = t.join().unwrap(); // durable when append_durable returned
///     assert!(lsn >= 1 && lsn <= 4);
/// }
/// # Ok(()) }
/// ```
///
/// Per-handle durability, and waiting without a blocked thread:
///
/// ```
/// use std::time::Duration;
/// use directwal::{RecordType, SegmentedWalConfig, SyncPolicy, WalHandle};
/// # let tmp = tempfile::tempdir()?;
/// let wal = WalHandle::open(SegmentedWalConfig::new(tmp.path().into()))?;
/// // Durable within ~5 ms, or once 1 MiB is pending; a crash may lose that window.
/// let bulk = wal.with_policy(SyncPolicy::Batched { max_delay: Duration::from_millis(5), max_bytes: 1 << 20 });
/// bulk.commit(RecordType::Put as u16, 1, 0, b"metrics")?;
///
/// // A callback from the WAL's notifier thread once the record is durable.
/// let (tx, rx) = std::sync::mpsc::channel();
/// let lsn = wal.append_then(RecordType::Put as u16, 1, 0, b"order", move |r| tx.send(r).unwrap())?;
/// assert_eq!(rx.recv()??, lsn);
/// assert!(wal.durable_lsn() >= lsn);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WalHandle {
    inner: Arc<Inner>,
    policy: SyncPolicy,
}

/// When [`WalHandle::commit`] makes a record durable. Each handle
/// clone carries its own policy; all share one WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// `commit` returns once the record is durable (group commit).
    #[default]
    EveryCommit,
    /// `commit` returns at once; records become durable when `max_bytes` of
    /// payload are pending (the committer that crosses it flushes) or at the
    /// latest about `max_delay` after they were appended (a background
    /// flusher). A crash may lose up to that window.
    Batched {
        /// Longest a record stays pending.
        max_delay: Duration,
        /// Pending payload bytes that trigger a flush.
        max_bytes: usize,
    },
    /// `commit` never syncs; records become durable at the next explicit
    /// `sync` (from any handle) or when the WAL is dropped.
    None,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when a flush completes (or fails).
    flushed: Condvar,
    /// Bumped when a flush completes (or fails), before `flushed` is
    /// signalled: what spinning followers watch.
    flush_gen: AtomicU64,
    /// At most this many followers spin at a time (a few more than there
    /// are CPUs); the others sleep on `flushed`.
    spin_committers: usize,
    /// Followers spinning now.
    spinners: AtomicUsize,
    /// Threads inside `append_durable`.
    committers: AtomicUsize,
    /// Callbacks waiting for durability, for the notifier thread (started
    /// by the first `on_durable`).
    notifier: Mutex<Option<mpsc::Sender<Waiter>>>,
    /// The readers' view and the counters: stats without the lock.
    shared: Arc<crate::view::Shared>,
}

/// A callback waiting for an LSN to be durable.
type Waiter = (u64, Box<dyn FnOnce(Result<u64>) + Send>);

/// Longest a leader waits for committers about to append (an fdatasync
/// takes ~100 µs here).
const GATHER: Duration = Duration::from_micros(30);

/// Longest a follower spins (yielding) for the flush in flight before it
/// sleeps on the condition variable: waking a sleeping thread costs tens of
/// microseconds here, a quarter of an fdatasync.
const SPIN: Duration = Duration::from_micros(250);

/// Counts a thread inside `append_durable` for as long as it lives.
struct Committing<'a>(&'a AtomicUsize);

impl<'a> Committing<'a> {
    fn enter(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Committing(n)
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct State {
    wal: SegmentedWal,
    /// A leader is between its write and the end of its fdatasync.
    flushing: bool,
    /// Payload bytes appended through `commit` since the last flush began.
    pending_bytes: usize,
    /// The shortest `max_delay` of any Batched handle: the background
    /// flusher (started with the first one) syncs at least this often.
    flush_period: Option<Duration>,
    /// Committers inside `append_durable` when the last flush started: the
    /// next leader expects as many (they may be between two commits now).
    last_committers: u64,
}

/// Wakes every committer waiting for a flush when dropped.
struct WakeOnDrop<'a>(&'a Inner);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.flush_gen.fetch_add(1, Ordering::Release);
        self.0.flushed.notify_all();
    }
}

impl std::fmt::Debug for WalHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalHandle").field("wal", &self.lock().wal).finish()
    }
}

impl WalHandle {
    /// Opens (or creates) the WAL in `config.wal_dir`.
    pub fn open(config: SegmentedWalConfig) -> Result<Self> {
        Ok(Self::from_wal(SegmentedWal::open(config)?))
    }

    /// Opens the WAL on a custom storage (tests, the crash simulator; hidden
    /// with the `io` module, which is not an API).
    #[doc(hidden)]
    pub fn open_with_storage(config: SegmentedWalConfig, storage: Arc<dyn Storage>) -> Result<Self> {
        Ok(Self::from_wal(SegmentedWal::open_with_storage(config, storage)?))
    }

    /// Wraps an open WAL.
    pub fn from_wal(wal: SegmentedWal) -> Self {
        let shared = wal.shared_state();
        let state = State { wal, flushing: false, pending_bytes: 0, flush_period: None, last_committers: 0 };
        WalHandle {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                flushed: Condvar::new(),
                flush_gen: AtomicU64::new(0),
                spin_committers: std::thread::available_parallelism().map_or(1, |n| n.get()) + 2,
                committers: AtomicUsize::new(0),
                spinners: AtomicUsize::new(0),
                notifier: Mutex::new(None),
                shared,
            }),
            policy: SyncPolicy::EveryCommit,
        }
    }

    /// A handle on the same WAL whose `commit` follows `policy`.
    pub fn with_policy(&self, policy: SyncPolicy) -> WalHandle {
        if let SyncPolicy::Batched { max_delay, .. } = policy {
            let mut st = self.lock();
            if st.flush_period.is_none() {
                let weak = Arc::downgrade(&self.inner);
                std::thread::Builder::new()
                    .name("directwal-flusher".into())
                    .spawn(move || background_flush(weak))
                    .expect("spawn the flusher thread");
            }
            st.flush_period = Some(st.flush_period.map_or(max_delay, |p| p.min(max_delay)));
        }
        WalHandle { inner: self.inner.clone(), policy }
    }

    fn from_inner(inner: Arc<Inner>) -> Self {
        WalHandle { inner, policy: SyncPolicy::EveryCommit }
    }

    /// This handle's policy.
    pub fn policy(&self) -> SyncPolicy {
        self.policy
    }

    /// Appends a record and makes it durable as this handle's policy says;
    /// returns its LSN.
    pub fn commit(&self, record_type: u16, tenant_id: u32, vshard_id: u16, payload: &[u8]) -> Result<u64> {
        match self.policy {
            SyncPolicy::EveryCommit => self.append_durable(record_type, tenant_id, vshard_id, payload),
            SyncPolicy::None => self.append(record_type, tenant_id, vshard_id, payload),
            SyncPolicy::Batched { max_bytes, .. } => {
                let lsn = self.append(record_type, tenant_id, vshard_id, payload)?;
                let flush_now = {
                    let mut st = self.lock();
                    st.pending_bytes += payload.len();
                    st.pending_bytes >= max_bytes
                };
                if flush_now {
                    self.wait_durable(lsn)?;
                }
                Ok(lsn)
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.inner.flushed.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a record and returns its LSN once it is durable.
    pub fn append_durable(&self, record_type: u16, tenant_id: u32, vshard_id: u16, payload: &[u8]) -> Result<u64> {
        let _active = Committing::enter(&self.inner.committers);
        let lsn = self.append(record_type, tenant_id, vshard_id, payload)?;
        let appended = Instant::now();
        self.wait_durable(lsn)?;
        self.inner.shared.stats.commit_waited(appended);
        Ok(lsn)
    }

    /// Appends a record without waiting for durability; returns its LSN.
    pub fn append(&self, record_type: u16, tenant_id: u32, vshard_id: u16, payload: &[u8]) -> Result<u64> {
        let mut st = self.lock();
        // I12: nothing reaches the file while a flush's fdatasync is in flight.
        while st.flushing && st.wal.append_writes(payload.len()) {
            st = self.wait(st);
        }
        st.wal.append(record_type, tenant_id, vshard_id, payload)
    }

    /// Calls `done` once every record up to `lsn` is durable, with
    /// `Ok(lsn)`, or with the error that prevents it; returns at once.
    ///
    /// Callbacks run on the WAL's notifier thread, in the order they were
    /// registered. That thread leads flushes itself (group commit: one
    /// fdatasync serves every callback pending when it starts), so a callback
    /// completes even when no other thread syncs. It holds the WAL only while
    /// it syncs, and it is released before the callbacks run: once the last
    /// callback has been called, dropping the last handle closes the WAL.
    pub fn on_durable(&self, lsn: u64, done: impl FnOnce(Result<u64>) + Send + 'static) {
        let mut tx = self.inner.notifier.lock().unwrap_or_else(|p| p.into_inner());
        let sender = tx.get_or_insert_with(|| {
            let (sender, rx) = mpsc::channel();
            let weak = Arc::downgrade(&self.inner);
            std::thread::Builder::new()
                .name("directwal-notifier".into())
                .spawn(move || notify(weak, rx))
                .expect("spawn the notifier thread");
            sender
        });
        if let Err(mpsc::SendError((_, done))) = sender.send((lsn, Box::new(done))) {
            done(Err(WalError::Closed));
        }
    }

    /// Appends a record and returns its LSN at once; `done` is called from
    /// the notifier thread once it is durable (see [`WalHandle::on_durable`]).
    pub fn append_then(
        &self,
        record_type: u16,
        tenant_id: u32,
        vshard_id: u16,
        payload: &[u8],
        done: impl FnOnce(Result<u64>) + Send + 'static,
    ) -> Result<u64> {
        let lsn = self.append(record_type, tenant_id, vshard_id, payload)?;
        self.on_durable(lsn, done);
        Ok(lsn)
    }

    /// A future that resolves once `lsn` is durable; any executor can poll
    /// it (it needs no runtime: the notifier thread wakes it).
    pub fn durable(&self, lsn: u64) -> Durable {
        let slot = Arc::new(Mutex::new(Slot { result: None, waker: None }));
        let filled = slot.clone();
        self.on_durable(lsn, move |result| {
            let mut s = filled.lock().unwrap_or_else(|p| p.into_inner());
            s.result = Some(result);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        });
        Durable { slot }
    }

    /// Makes every record appended so far durable (joining a flush in flight).
    pub fn sync(&self) -> Result<()> {
        let last = self.lock().wal.next_lsn() - 1;
        self.wait_durable(last)
    }

    /// Returns once `lsn` is durable, leading a flush if none is in flight.
    pub fn wait_durable(&self, lsn: u64) -> Result<()> {
        let mut st = self.lock();
        let mut spun = false;
        loop {
            if st.wal.durable_lsn() >= lsn {
                return Ok(());
            }
            st.wal.ensure_healthy()?;
            if st.flushing {
                // A few followers spin for the flush in flight (it is short)
                // instead of paying a wake-up; the rest sleep. Every
                // decision is still taken under the lock once it completed.
                if !spun && self.inner.spinners.fetch_add(1, Ordering::Relaxed) < self.inner.spin_committers {
                    spun = true;
                    let generation = self.inner.flush_gen.load(Ordering::Acquire);
                    drop(st);
                    let deadline = Instant::now() + SPIN;
                    while self.inner.flush_gen.load(Ordering::Acquire) == generation && Instant::now() < deadline {
                        std::thread::yield_now();
                    }
                    self.inner.spinners.fetch_sub(1, Ordering::Relaxed);
                    st = self.lock();
                    continue;
                }
                if !spun {
                    self.inner.spinners.fetch_sub(1, Ordering::Relaxed);
                }
                st = self.wait(st);
                spun = false;
                continue;
            }
            // Gather: committers inside append_durable that have not appended
            // yet (typically the one the last flush just released) get a
            // moment to join this flush; nothing is written meanwhile (I12).
            let deadline = Instant::now() + GATHER;
            let mut waited = false;
            let expected = |st: &State| (self.inner.committers.load(Ordering::Relaxed) as u64).max(st.last_committers);
            while st.wal.next_lsn() - 1 - st.wal.durable_lsn() < expected(&st) && Instant::now() < deadline {
                drop(st);
                std::thread::yield_now();
                st = self.lock();
                waited = true;
                if st.flushing || st.wal.durable_lsn() >= lsn {
                    break;
                }
            }
            if waited && (st.flushing || st.wal.durable_lsn() >= lsn) {
                continue;
            }
            let started = Instant::now();
            let _span = tracing::debug_span!("directwal_flush", lsn).entered();
            let pending = st.wal.next_lsn() - 1 - st.wal.durable_lsn();
            tracing::trace!(lsn, pending, thread = ?std::thread::current().id(), "group-commit leader");
            let Some(flush) = st.wal.begin_flush()? else {
                // Not durable, not in flight, nothing to write: `lsn` was never appended.
                return Err(WalError::LsnNotAppended { lsn });
            };
            st.flushing = true;
            st.pending_bytes = 0;
            st.last_committers = self.inner.committers.load(Ordering::Relaxed) as u64;
            drop(st);
            // Group commit: the lock is not held across fdatasync.
            let synced = flush.file.sync_data();
            st = self.lock();
            st.flushing = false;
            // Followers are woken whatever happens next, unwinding included.
            let _wake = WakeOnDrop(&self.inner);
            st.wal.finish_flush(flush, synced, started)?;
        }
    }

    /// The LSN the next append will get.
    pub fn next_lsn(&self) -> u64 {
        self.lock().wal.next_lsn()
    }

    /// LSN of the last durable record.
    pub fn durable_lsn(&self) -> u64 {
        self.lock().wal.durable_lsn()
    }

    /// Counters since open, read without the writer's lock.
    pub fn stats(&self) -> WalStats {
        self.stats_snapshot().wal_stats()
    }

    /// Every operator-facing figure (docs/OBSERVABILITY.md), read without
    /// the writer's lock: scraping it never delays a commit.
    pub fn stats_snapshot(&self) -> crate::StatsSnapshot {
        self.inner.shared.stats_snapshot()
    }

    /// A handle reading these stats from any thread (a metrics scraper).
    pub fn stats_handle(&self) -> crate::StatsHandle {
        crate::StatsHandle(self.inner.shared.clone())
    }

    /// Whether a failed write or fdatasync poisoned the writer (I3); read
    /// without the writer's lock.
    pub fn is_poisoned(&self) -> bool {
        self.inner.shared.stats.is_poisoned()
    }

    /// A lock-free reader.
    pub fn reader(&self) -> WalReader {
        self.lock().wal.reader()
    }

    /// See [`SegmentedWal::replay`].
    pub fn replay(&self) -> Result<Vec<WalRecord>> {
        self.reader_replay(0, usize::MAX).map(|(r, _)| r)
    }

    /// See [`SegmentedWal::replay_from`].
    pub fn replay_from(&self, from_lsn: u64) -> Result<Vec<WalRecord>> {
        self.reader_replay(from_lsn, usize::MAX).map(|(r, _)| r)
    }

    /// See [`SegmentedWal::replay_from_limit`].
    pub fn replay_from_limit(&self, from_lsn: u64, max_records: usize) -> Result<(Vec<WalRecord>, bool)> {
        self.reader_replay(from_lsn, max_records)
    }

    fn reader_replay(&self, from_lsn: u64, max_records: usize) -> Result<(Vec<WalRecord>, bool)> {
        // Read through the reader: no writer lock held while reading.
        self.reader().collect(from_lsn, max_records)
    }

    /// See [`SegmentedWal::truncate_before`].
    pub fn truncate_before(&self, lsn: u64) -> Result<TruncateResult> {
        self.lock().wal.truncate_before(lsn)
    }

    /// The WAL directory.
    pub fn wal_dir(&self) -> std::path::PathBuf {
        Path::to_path_buf(self.lock().wal.wal_dir())
    }
}

/// Resolves to the LSN once it is durable (see [`WalHandle::durable`]).
#[must_use = "a future does nothing unless polled"]
pub struct Durable {
    slot: Arc<Mutex<Slot>>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").finish_non_exhaustive()
    }
}

struct Slot {
    result: Option<Result<u64>>,
    waker: Option<Waker>,
}

impl Future for Durable {
    type Output = Result<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<u64>> {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The notifier thread: waits for durability of everything pending (one
/// flush for the batch) and then calls the callbacks in order. It exits when
/// the WAL is dropped (the sender lives in it).
fn notify(inner: Weak<Inner>, rx: mpsc::Receiver<Waiter>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let upto = batch.iter().map(|(lsn, _)| *lsn).max().unwrap_or(0);
        let outcome = match inner.upgrade() {
            // The strong reference is dropped before any callback runs.
            Some(inner) => {
                let wal = WalHandle::from_inner(inner);
                // An LSN never appended fails its own callback, not the batch.
                let target = upto.min(wal.next_lsn() - 1);
                wal.wait_durable(target).map(|()| wal.durable_lsn()).map_err(|e| Some(Arc::new(e)))
            }
            None => Err(None),
        };
        for (lsn, done) in batch {
            done(match &outcome {
                Ok(durable) if lsn <= *durable => Ok(lsn),
                Ok(_) => Err(WalError::LsnNotAppended { lsn }),
                Err(None) => Err(WalError::Closed),
                // Every waiter gets the failure that poisoned the WAL (I3).
                Err(Some(e)) => Err(match &**e {
                    WalError::Poisoned { first_failure } => WalError::Poisoned { first_failure: first_failure.clone() },
                    _ => WalError::Poisoned { first_failure: e.clone() },
                }),
            });
        }
    }
}

/// Makes pending records durable at least every `flush_period` until the
/// WAL is dropped (it holds the WAL only while it syncs).
fn background_flush(inner: Weak<Inner>) {
    let mut last = Instant::now();
    loop {
        let Some(period) = inner.upgrade().and_then(|i| WalHandle::from_inner(i).lock().flush_period) else { return };
        std::thread::sleep(period.min(Duration::from_millis(10)));
        if last.elapsed() < period {
            continue;
        }
        last = Instant::now();
        let Some(inner) = inner.upgrade() else { return };
        let handle = WalHandle::from_inner(inner);
        let pending = {
            let st = handle.lock();
            st.wal.durable_lsn() < st.wal.next_lsn() - 1
        };
        // Errors (a poisoned WAL) reach committers through their own calls.
        if pending && handle.sync().is_err() {
            return;
        }
    }
}
