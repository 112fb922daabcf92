//! The network shim of examples/raft_cluster.rs, generic over the type
//! config: each node has an inbox channel; each request runs in its own task.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::Raft;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use tokio::sync::{mpsc, oneshot};

use crate::sm::Config;

type Reply<T, E = RaftError<u64>> = oneshot::Sender<Result<T, E>>;

enum Rpc<C: Config> {
    Append(AppendEntriesRequest<C>, Reply<AppendEntriesResponse<u64>>),
    Vote(VoteRequest<u64>, Reply<VoteResponse<u64>>),
    Snapshot(InstallSnapshotRequest<C>, Reply<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
}

/// Each running node's inbox.
pub struct Router<C: Config> {
    inboxes: Arc<Mutex<BTreeMap<u64, mpsc::UnboundedSender<Rpc<C>>>>>,
}

impl<C: Config> Clone for Router<C> {
    fn clone(&self) -> Self {
        Router { inboxes: self.inboxes.clone() }
    }
}

impl<C: Config> Default for Router<C> {
    fn default() -> Self {
        Router { inboxes: Arc::default() }
    }
}

impl<C: Config> Router<C> {
    /// Serves `raft`'s inbox.
    pub fn attach(&self, id: u64, raft: Raft<C>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.inboxes.lock().unwrap().insert(id, tx);
        tokio::spawn(async move {
            while let Some(rpc) = rx.recv().await {
                let raft = raft.clone();
                tokio::spawn(async move {
                    match rpc {
                        Rpc::Append(req, reply) => drop(reply.send(raft.append_entries(req).await)),
                        Rpc::Vote(req, reply) => drop(reply.send(raft.vote(req).await)),
                        Rpc::Snapshot(req, reply) => drop(reply.send(raft.install_snapshot(req).await)),
                    }
                });
            }
        });
    }

    /// Stops routing to every node.
    pub fn detach_all(&self) {
        self.inboxes.lock().unwrap().clear();
    }
}

pub struct Connection<C: Config> {
    target: u64,
    router: Router<C>,
}

fn down(target: u64) -> Unreachable {
    Unreachable::new(&std::io::Error::other(format!("node {target} is down")))
}

impl<C: Config> Connection<C> {
    async fn call<T, E: std::error::Error>(
        &self,
        make: impl FnOnce(Reply<T, RaftError<u64, E>>) -> Rpc<C>,
    ) -> Result<T, RPCError<u64, C::Node, RaftError<u64, E>>> {
        let inbox = self.router.inboxes.lock().unwrap().get(&self.target).cloned();
        let inbox = inbox.ok_or_else(|| RPCError::Unreachable(down(self.target)))?;
        let (tx, rx) = oneshot::channel();
        inbox.send(make(tx)).map_err(|_| RPCError::Unreachable(down(self.target)))?;
        match rx.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl<C: Config> RaftNetwork<C> for Connection<C> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, C::Node, RaftError<u64>>> {
        self.call(|tx| Rpc::Append(rpc, tx)).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, C::Node, RaftError<u64, InstallSnapshotError>>> {
        self.call(|tx| Rpc::Snapshot(rpc, tx)).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, C::Node, RaftError<u64>>> {
        self.call(|tx| Rpc::Vote(rpc, tx)).await
    }
}

impl<C: Config> RaftNetworkFactory<C> for Router<C> {
    type Network = Connection<C>;

    async fn new_client(&mut self, target: u64, _node: &C::Node) -> Connection<C> {
        Connection { target, router: self.clone() }
    }
}
