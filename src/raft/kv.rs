//! A small in-memory key-value state machine and its openraft type config,
//! for the store's tests and `examples/raft_cluster.rs`.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// Type config of the key-value example: `Request` in, `Response` out.
    pub TypeConfig:
        D = Request,
        R = Response,
);

/// Sets `key` to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// The value `key` held before (None for blank and membership entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Previous value.
    pub previous: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// Where snapshots are kept, for a state machine that survives restarts.
    file: Option<std::path::PathBuf>,
    last_applied: Option<LogId<u64>>,
    last_membership: StoredMembership<u64, BasicNode>,
    data: BTreeMap<String, String>,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// In-memory state machine: a `BTreeMap<String, String>`. Clones share it.
/// With [`MemStateMachine::open`], its snapshots are also written to a file
/// and loaded at start, as a real state machine's would be: the log store
/// purges entries a snapshot covers, so a node restarted without its
/// snapshot could not rebuild its state.
#[derive(Clone, Default)]
pub struct MemStateMachine {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    data: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, BasicNode>,
    body: Vec<u8>,
}

impl std::fmt::Debug for MemStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStateMachine").finish_non_exhaustive()
    }
}

impl MemStateMachine {
    /// A state machine whose snapshots are kept in `file` (written to a
    /// temporary file, fsynced and renamed), starting from the snapshot there.
    pub fn open(file: impl Into<std::path::PathBuf>) -> std::io::Result<Self> {
        let file = file.into();
        let mut inner = Inner { file: Some(file.clone()), ..Default::default() };
        match std::fs::read(&file) {
            Ok(bytes) => {
                let f: SnapshotFile = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                let body: SnapshotBody = serde_json::from_slice(&f.body).map_err(std::io::Error::other)?;
                inner.data = body.data;
                inner.last_applied = f.meta.last_log_id;
                inner.last_membership = f.meta.last_membership.clone();
                inner.snapshot = Some((f.meta, f.body));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(MemStateMachine { inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().data.get(key).cloned()
    }

    /// A copy of all the data.
    pub fn data(&self) -> BTreeMap<String, String> {
        self.lock().data.clone()
    }

    /// The last log id applied.
    pub fn last_applied(&self) -> Option<LogId<u64>> {
        self.lock().last_applied
    }
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

/// Keeps the snapshot in the state machine's file, if it has one.
fn persist(inner: &Inner, meta: &SnapshotMeta<u64, BasicNode>, body: &[u8]) -> Result<(), StorageError<u64>> {
    let Some(file) = &inner.file else { return Ok(()) };
    let bytes = serde_json::to_vec(&SnapshotFile { meta: meta.clone(), body: body.to_vec() }).map_err(sm_err)?;
    let tmp = file.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(sm_err)
}

impl RaftSnapshotBuilder<TypeConfig> for MemStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let mut inner = self.lock();
        let body = serde_json::to_vec(&SnapshotBody { data: inner.data.clone() }).map_err(sm_err)?;
        inner.snapshots_built += 1;
        let id = match inner.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, inner.snapshots_built),
            None => format!("--{}", inner.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.last_membership.clone(),
            snapshot_id: id,
        };
        persist(&inner, &meta, &body)?;
        inner.snapshot = Some((meta.clone(), body.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(body)) })
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let previous = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(req) => inner.data.insert(req.key, req.value),
                EntryPayload::Membership(m) => {
                    inner.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    None
                }
            };
            out.push(Response { previous });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let body: SnapshotBody = serde_json::from_slice(&bytes).map_err(sm_err)?;
        let mut inner = self.lock();
        persist(&inner, meta, &bytes)?;
        inner.data = body.data;
        inner.last_applied = meta.last_log_id;
        inner.last_membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let inner = self.lock();
        Ok(inner
            .snapshot
            .as_ref()
            .map(|(meta, bytes)| Snapshot { meta: meta.clone(), snapshot: Box::new(Cursor::new(bytes.clone())) }))
    }
}
