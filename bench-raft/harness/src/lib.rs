//! One harness for every log store: a 3-node openraft cluster in one
//! process (the network shim of examples/raft_cluster.rs: channels, each
//! request in its own task), one in-memory key-value state machine, and one
//! client load. A runner binary per store gives it the store and the
//! store's request type; it prints one result line.

// openraft's `StorageError` is what its traits return.
#![allow(clippy::result_large_err)]

use std::io::Cursor;

mod load;
mod net;
mod sm;

pub use load::{Cell, Outcome, run_cell, write_bytes};
pub use sm::Config;
pub use sm::{App, Sm};

#[cfg(not(feature = "v2"))]
mod split;
#[cfg(not(feature = "v2"))]
pub use split::Split;

/// The request and response types of the stores that take any type config
/// (directwal's): `key` is set to `value`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Set {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// The previous value of the key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Previous(pub Option<String>);

openraft::declare_raft_types!(
    /// Type config for the stores generic over it.
    pub Bench:
        D = Set,
        R = Previous,
);

/// How `Bench` requests are made and read.
pub const BENCH_APP: App<Bench> =
    App { request: |key, value| Set { key, value }, key_value: |d| (&d.key, &d.value), response: Previous };

/// Parses the runner's arguments, runs one cell and prints its line:
/// `store clients value_bytes writes/s p50_us p99_us bytes/entry/node durable_ack`.
pub fn main_with<C, LS, SM, F, Fut>(store: &str, durable_ack: bool, app: App<C>, open: F)
where
    C: sm::Config,
    LS: openraft::storage::RaftLogStorage<C>,
    SM: openraft::storage::RaftStateMachine<C>,
    F: FnMut(u64, std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = (LS, SM)>,
{
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| -> String {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or(default.to_owned())
    };
    let cell = Cell {
        clients: arg("--clients", "1").parse().expect("--clients N"),
        value_bytes: arg("--value", "128").parse().expect("--value BYTES"),
        secs: arg("--secs", "2").parse().expect("--secs S"),
    };
    let parent = std::path::PathBuf::from(arg("--dir", "target"));
    std::fs::create_dir_all(&parent).expect("the base directory");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let out = rt.block_on(run_cell(&parent, cell, app, open));
    let (p50, p99) = (out.percentile_us(0.50), out.percentile_us(0.99));
    if std::env::var_os("BENCH_QUANTILES").is_some() {
        let qs = [0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0];
        let text: Vec<String> = qs.iter().map(|&q| format!("p{}={:.0}", q * 100.0, out.percentile_us(q))).collect();
        eprintln!("{store} latency us: {}", text.join(" "));
    }
    println!(
        "{store}\t{}\t{}\t{:.0}\t{p50:.0}\t{p99:.0}\t{:.0}\t{}",
        cell.clients,
        cell.value_bytes,
        out.writes as f64 / out.secs,
        out.bytes_per_entry_per_node(),
        if durable_ack { "yes" } else { "no" },
    );
}
