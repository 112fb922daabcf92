//! The harness with openraft-memstore 0.9.25 (a v1 `RaftStorage` behind
//! openraft's `Adaptor`): no disk, the ceiling.

use harness::{App, Sm, Split, main_with};
use openraft::storage::Adaptor;
use openraft_memstore::{ClientRequest, ClientResponse, MemStore, TypeConfig};

const APP: App<TypeConfig> = App {
    request: |client, status| ClientRequest { client, serial: 0, status },
    key_value: |d| (&d.client, &d.status),
    response: ClientResponse,
};

fn main() {
    main_with("memstore", false, APP, |_id, _dir| async move {
        Adaptor::new(Split::new(MemStore::new_async().await, Sm::new(APP), false))
    });
}
