//! The harness with openraft-rocksstore 0.9.21 (a v1 `RaftStorage` behind
//! openraft's `Adaptor`). `--sync`: after each append, RocksDB's WAL is
//! fsynced (`Split`'s empty apply) before openraft is told the append is done.

use harness::{App, Sm, Split, main_with};
use openraft::storage::Adaptor;
use openraft_rocksstore::{RocksRequest, RocksResponse, RocksStore, TypeConfig};

const APP: App<TypeConfig> = App {
    request: |key, value| RocksRequest::Set { key, value },
    key_value: |d| match d {
        RocksRequest::Set { key, value } => (key, value),
    },
    response: |value| RocksResponse { value },
};

fn main() {
    let sync = std::env::args().any(|a| a == "--sync");
    let name = if sync { "rocksstore+sync" } else { "rocksstore" };
    main_with(name, sync, APP, |_id, dir| async move {
        let store = RocksStore::new(&dir).await;
        Adaptor::new(Split::new(store, Sm::new(APP), sync))
    });
}
