//! The one state machine: a `BTreeMap<String, String>` in memory, for every
//! store (a v1 store's own state machine is bypassed by `Split`).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::impls::OneshotResponder;
use openraft::storage::{Snapshot, SnapshotMeta};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, RaftSnapshotBuilder, RaftTypeConfig, StorageError, StorageIOError,
    StoredMembership, TokioRuntime,
};

/// The type configs the harness runs: node ids `u64`, openraft's `Entry`,
/// in-memory snapshots, tokio.
pub trait Config:
    RaftTypeConfig<
        NodeId = u64,
        Entry = Entry<Self>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = TokioRuntime,
        Responder = OneshotResponder<Self>,
        Node: Default,
    >
{
}

impl<C> Config for C where
    C: RaftTypeConfig<
            NodeId = u64,
            Entry = Entry<C>,
            SnapshotData = Cursor<Vec<u8>>,
            AsyncRuntime = TokioRuntime,
            Responder = OneshotResponder<C>,
            Node: Default,
        >
{
}

/// How a store's request type carries a key and a value.
pub struct App<C: RaftTypeConfig> {
    /// A request setting `key` to `value`.
    pub request: fn(String, String) -> C::D,
    /// The key and value of a request.
    pub key_value: fn(&C::D) -> (&String, &String),
    /// The response carrying the previous value.
    pub response: fn(Option<String>) -> C::R,
}

impl<C: RaftTypeConfig> Clone for App<C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C: RaftTypeConfig> Copy for App<C> {}

/// The last snapshot: its meta and body.
type Kept<C> = (SnapshotMeta<u64, <C as RaftTypeConfig>::Node>, Vec<u8>);

struct Inner<C: Config> {
    last_applied: Option<LogId<u64>>,
    last_membership: StoredMembership<u64, C::Node>,
    data: BTreeMap<String, String>,
    snapshot: Option<Kept<C>>,
}

/// The in-memory key-value state machine. Clones share it.
pub struct Sm<C: Config> {
    app: App<C>,
    inner: Arc<Mutex<Inner<C>>>,
}

impl<C: Config> Clone for Sm<C> {
    fn clone(&self) -> Self {
        Sm { app: self.app, inner: self.inner.clone() }
    }
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

/// Snapshot body: the keys and values, length-prefixed.
fn encode(data: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in data {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

fn decode(mut b: &[u8]) -> Result<BTreeMap<String, String>, StorageError<u64>> {
    let bad = || sm_err(std::io::Error::other("bad snapshot"));
    let take = |b: &mut &[u8]| -> Result<String, StorageError<u64>> {
        let n = u32::from_le_bytes(b.get(..4).ok_or_else(bad)?.try_into().unwrap()) as usize;
        let s = b.get(4..4 + n).ok_or_else(bad)?;
        let s = String::from_utf8(s.to_vec()).map_err(sm_err)?;
        *b = &b[4 + n..];
        Ok(s)
    };
    let mut data = BTreeMap::new();
    while !b.is_empty() {
        let k = take(&mut b)?;
        let v = take(&mut b)?;
        data.insert(k, v);
    }
    Ok(data)
}

impl<C: Config> Sm<C> {
    /// An empty state machine for requests made by `app`.
    pub fn new(app: App<C>) -> Self {
        let inner = Inner {
            last_applied: None,
            last_membership: StoredMembership::default(),
            data: BTreeMap::new(),
            snapshot: None,
        };
        Sm { app, inner: Arc::new(Mutex::new(inner)) }
    }

    /// How requests are made.
    pub fn app(&self) -> App<C> {
        self.app
    }

    fn lock(&self) -> MutexGuard<'_, Inner<C>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn applied(&self) -> (Option<LogId<u64>>, StoredMembership<u64, C::Node>) {
        let inner = self.lock();
        (inner.last_applied, inner.last_membership.clone())
    }

    pub(crate) fn apply_entries<'a>(&self, entries: impl IntoIterator<Item = &'a Entry<C>>) -> Vec<C::R> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let previous = match &entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(d) => {
                    let (k, v) = (self.app.key_value)(d);
                    inner.data.insert(k.clone(), v.clone())
                }
                EntryPayload::Membership(m) => {
                    inner.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    None
                }
            };
            out.push((self.app.response)(previous));
        }
        out
    }

    pub(crate) fn install(&self, meta: &SnapshotMeta<u64, C::Node>, bytes: Vec<u8>) -> Result<(), StorageError<u64>> {
        let data = decode(&bytes)?;
        let mut inner = self.lock();
        inner.data = data;
        inner.last_applied = meta.last_log_id;
        inner.last_membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    pub(crate) fn current(&self) -> Option<Snapshot<C>> {
        let inner = self.lock();
        inner
            .snapshot
            .as_ref()
            .map(|(meta, bytes)| Snapshot { meta: meta.clone(), snapshot: Box::new(Cursor::new(bytes.clone())) })
    }
}

impl<C: Config> RaftSnapshotBuilder<C> for Sm<C> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<u64>> {
        let mut inner = self.lock();
        let body = encode(&inner.data);
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.last_membership.clone(),
            snapshot_id: format!("{:?}", inner.last_applied),
        };
        inner.snapshot = Some((meta.clone(), body.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(body)) })
    }
}

#[cfg(feature = "v2")]
mod v2 {
    use super::*;
    use openraft::OptionalSend;
    use openraft::storage::RaftStateMachine;

    impl<C: Config> RaftStateMachine<C> for Sm<C> {
        type SnapshotBuilder = Self;

        async fn applied_state(
            &mut self,
        ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, C::Node>), StorageError<u64>> {
            Ok(self.applied())
        }

        async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<u64>>
        where
            I: IntoIterator<Item = Entry<C>> + OptionalSend,
            I::IntoIter: OptionalSend,
        {
            let entries: Vec<_> = entries.into_iter().collect();
            Ok(self.apply_entries(&entries))
        }

        async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
            self.clone()
        }

        async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
            Ok(Box::new(Cursor::new(Vec::new())))
        }

        async fn install_snapshot(
            &mut self,
            meta: &SnapshotMeta<u64, C::Node>,
            snapshot: Box<Cursor<Vec<u8>>>,
        ) -> Result<(), StorageError<u64>> {
            self.install(meta, snapshot.into_inner())
        }

        async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<u64>> {
            Ok(self.current())
        }
    }
}
