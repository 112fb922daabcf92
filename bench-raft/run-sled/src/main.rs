//! The harness with openraft-sledstore 0.9.21 (a v1 `RaftStorage` behind
//! openraft's `Adaptor`; its `append_to_log` ends with sled's `flush_async`,
//! an fsync, so appends are durable when acknowledged).

use std::sync::Arc;

use harness::{App, Sm, Split, main_with};
use openraft::storage::Adaptor;
use openraft_sledstore::{ExampleRequest, ExampleResponse, SledStore, TypeConfig};

const APP: App<TypeConfig> = App {
    request: |key, value| ExampleRequest::Set { key, value },
    key_value: |d| match d {
        ExampleRequest::Set { key, value } => (key, value),
    },
    response: |value| ExampleResponse { value },
};

fn main() {
    main_with("sledstore", true, APP, |_id, dir| async move {
        let db = Arc::new(sled::open(dir.join("db")).expect("sled opens"));
        Adaptor::new(Split::new(SledStore::new(db).await, Sm::new(APP), false))
    });
}
