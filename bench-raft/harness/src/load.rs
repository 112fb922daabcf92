//! One cell of the table: start a 3-node cluster, run `clients` concurrent
//! writers against the leader for a warm-up and then `secs`, and measure.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{Raft, SnapshotPolicy};

use crate::net::Router;
use crate::sm::{App, Config};

/// What one run measures.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    /// Concurrent clients, each waiting for its write before the next.
    pub clients: usize,
    /// Bytes of each value.
    pub value_bytes: usize,
    /// Measured seconds (after a warm-up of `WARM_UP`).
    pub secs: f64,
}

const WARM_UP: Duration = Duration::from_millis(500);
/// Keys are drawn from this many, so the state machine stays small.
const KEYS: u64 = 1024;

/// What one run measured.
pub struct Outcome {
    /// Client writes that started and finished inside the window.
    pub writes: u64,
    /// Length of the window.
    pub secs: f64,
    /// Their latencies, sorted.
    pub lat_us: Vec<u32>,
    /// `write_bytes` of /proc/self/io over the window (all 3 nodes).
    pub write_bytes: u64,
}

impl Outcome {
    /// The `q` quantile of the latencies, in µs.
    pub fn percentile_us(&self, q: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_us.len() as f64 * q).ceil() as usize).clamp(1, self.lat_us.len()) - 1;
        f64::from(self.lat_us[i])
    }

    /// Bytes the process wrote to storage per client write, per node.
    pub fn bytes_per_entry_per_node(&self) -> f64 {
        self.write_bytes as f64 / self.writes.max(1) as f64 / 3.0
    }
}

/// Bytes this process caused to be written to storage (`write_bytes` of
/// /proc/self/io: counted when pages are dirtied or direct I/O is issued).
pub fn write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes in /proc/self/io")
}

/// Printable, hard to compress bytes to cut values from.
fn value_source() -> String {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..(64 << 10) + 4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 94) as u8)
        })
        .collect()
}

/// Runs `cell` on a new cluster in a new directory under `parent` (removed
/// at the end); `open(id, dir)` gives node `id` its log store and state
/// machine, `app` makes the requests.
pub async fn run_cell<C, LS, SM, F, Fut>(parent: &Path, cell: Cell, app: App<C>, mut open: F) -> Outcome
where
    C: Config,
    LS: RaftLogStorage<C>,
    SM: RaftStateMachine<C>,
    F: FnMut(u64, PathBuf) -> Fut,
    Fut: Future<Output = (LS, SM)>,
{
    let work = tempfile::Builder::new().prefix("raft-bench-").tempdir_in(parent).expect("a work directory");
    let config = openraft::Config {
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        // Every store keeps its whole log for the run: no snapshot or purge cost.
        snapshot_policy: SnapshotPolicy::Never,
        ..Default::default()
    };
    let config = Arc::new(config.validate().expect("a valid config"));
    let router = Router::<C>::default();
    let mut rafts = Vec::new();
    for id in 1..=3u64 {
        let dir = work.path().join(format!("node-{id}"));
        std::fs::create_dir_all(&dir).expect("a node directory");
        let (log, sm) = open(id, dir).await;
        let raft = Raft::new(id, config.clone(), router.clone(), log, sm).await.expect("raft starts");
        router.attach(id, raft.clone());
        rafts.push(raft);
    }
    let members: BTreeMap<u64, C::Node> = (1..=3).map(|id| (id, C::Node::default())).collect();
    rafts[0].initialize(members).await.expect("initialize");
    let m = rafts[0].wait(Some(Duration::from_secs(10))).metrics(|m| m.current_leader.is_some(), "a leader").await;
    let leader_id = m.expect("a leader").current_leader.expect("a leader");
    let leader = rafts[leader_id as usize - 1].clone();

    let source = Arc::new(value_source());
    let start = Instant::now();
    let (window, end) = (start + WARM_UP, start + WARM_UP + Duration::from_secs_f64(cell.secs));
    let mut tasks = Vec::new();
    for c in 0..cell.clients as u64 {
        let (leader, source) = (leader.clone(), source.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0u64.. {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let key = format!("k{}", (c * 7919 + i) % KEYS);
                let at = ((c * 4099 + i * 131) % (64 << 10)) as usize;
                let value = source[at..at + cell.value_bytes].to_owned();
                leader.client_write((app.request)(key, value)).await.expect("a client write");
                let done = Instant::now();
                if t >= window && done <= end {
                    lat.push((done - t).as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
            lat
        }));
    }
    tokio::time::sleep_until(window.into()).await;
    let io0 = write_bytes();
    tokio::time::sleep_until(end.into()).await;
    let io1 = write_bytes();
    let mut lat_us = Vec::new();
    for t in tasks {
        lat_us.extend(t.await.expect("a client"));
    }
    lat_us.sort_unstable();
    router.detach_all();
    for r in &rafts {
        r.shutdown().await.expect("shutdown");
    }
    drop(rafts);
    Outcome { writes: lat_us.len() as u64, secs: cell.secs, lat_us, write_bytes: io1 - io0 }
}
