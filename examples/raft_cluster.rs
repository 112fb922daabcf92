//! Three openraft nodes in one process, talking over channels, each with its
//! log on its own directwal directory. Writes go through the leader; one
//! follower is stopped, more is written, and it is restarted from its
//! directory and catches up (by log replication or snapshot).
//!
//! `cargo run --release --features openraft --example raft_cluster [DIR]`
//! writes into a new subdirectory of DIR (default ./target) and removes only
//! that subdirectory: whatever DIR held before is left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use directwal::SegmentedWalConfig;
use directwal::raft::LogStore;
use directwal::raft::kv::{MemStateMachine, Request, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot};

type NodeId = u64;
type Reply<T, E = RaftError<NodeId>> = oneshot::Sender<Result<T, E>>;

/// A message on a node's channel.
enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>, Reply<AppendEntriesResponse<NodeId>>),
    Vote(VoteRequest<NodeId>, Reply<VoteResponse<NodeId>>),
    Snapshot(
        InstallSnapshotRequest<TypeConfig>,
        Reply<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
}

/// Each running node's inbox; a stopped node has none.
#[derive(Clone, Default)]
struct Router {
    inboxes: Arc<Mutex<BTreeMap<NodeId, mpsc::UnboundedSender<Rpc>>>>,
}

impl Router {
    /// Serves `raft`'s inbox until the node is removed or stops.
    fn attach(&self, id: NodeId, raft: Raft<TypeConfig>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.inboxes.lock().unwrap().insert(id, tx);
        tokio::spawn(async move {
            while let Some(rpc) = rx.recv().await {
                let raft = raft.clone();
                // Each request in its own task, as a network server would.
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

    fn detach(&self, id: NodeId) {
        self.inboxes.lock().unwrap().remove(&id);
    }
}

struct Connection {
    target: NodeId,
    router: Router,
}

fn down(target: NodeId) -> Unreachable {
    Unreachable::new(&std::io::Error::other(format!("node {target} is down")))
}

impl Connection {
    async fn call<T, E: std::error::Error>(
        &self,
        make: impl FnOnce(Reply<T, RaftError<NodeId, E>>) -> Rpc,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
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

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(|tx| Rpc::Append(rpc, tx)).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(|tx| Rpc::Snapshot(rpc, tx)).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(|tx| Rpc::Vote(rpc, tx)).await
    }
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection { target, router: self.clone() }
    }
}

struct Node {
    raft: Raft<TypeConfig>,
    sm: MemStateMachine,
}

async fn start(id: NodeId, base: &std::path::Path, config: Arc<Config>, router: &Router) -> Node {
    let dir = base.join(format!("node-{id}"));
    let t = Instant::now();
    let mut store =
        LogStore::<TypeConfig>::open(SegmentedWalConfig::new(dir.to_path_buf())).expect("the log store opens");
    let state = store.get_log_state().await.expect("log state");
    let vote = store.read_vote().await.expect("vote");
    println!(
        "node {id}: opened {} in {:.1} ms: last purged {:?}, last log {:?}, vote {}",
        dir.display(),
        t.elapsed().as_secs_f64() * 1e3,
        state.last_purged_log_id.map(|l| l.index),
        state.last_log_id.map(|l| l.index),
        vote.map_or("none".to_owned(), |v| v.to_string()),
    );
    // The state machine keeps its snapshots beside the log: the log store
    // purges what a snapshot covers.
    let sm = MemStateMachine::open(dir.join("snapshot.json")).expect("the snapshot loads");
    if let Some(l) = sm.last_applied() {
        println!("node {id}: snapshot loaded: {} keys up to index {}", sm.data().len(), l.index);
    }
    let raft = Raft::new(id, config, router.clone(), store, sm.clone()).await.expect("raft starts");
    router.attach(id, raft.clone());
    Node { raft, sm }
}

async fn write(leader: &Raft<TypeConfig>, from: u64, n: u64) -> Duration {
    let t = Instant::now();
    for i in from..from + n {
        leader.client_write(Request { key: format!("key-{i:05}"), value: format!("value {i}") }).await.expect("write");
    }
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The nodes' logs go into a new subdirectory of the argument (default
    // ./target), removed at the end; nothing else there is touched.
    let parent = std::env::args().nth(1).map_or_else(|| std::path::PathBuf::from("target"), std::path::PathBuf::from);
    std::fs::create_dir_all(&parent).expect("create the base directory");
    let work = tempfile::Builder::new().prefix("raft-cluster-").tempdir_in(&parent).expect("create a work directory");
    let base = work.path().to_owned();
    let config = Arc::new(
        Config {
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            // Snapshots and purges happen during the run, so the restarted
            // node may need a snapshot to catch up.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(200),
            max_in_snapshot_log_to_keep: 50,
            ..Default::default()
        }
        .validate()
        .expect("a valid config"),
    );
    let router = Router::default();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start(id, &base, config.clone(), &router).await);
    }
    let members: BTreeMap<NodeId, BasicNode> = (1..=3).map(|id| (id, BasicNode::default())).collect();
    nodes[&1].raft.initialize(members).await.expect("initialize");
    let m =
        nodes[&1].raft.wait(Some(Duration::from_secs(10))).metrics(|m| m.current_leader.is_some(), "a leader").await;
    let leader_id = m.expect("a leader is elected").current_leader.expect("leader");
    println!("leader: node {leader_id}");

    let d = write(&nodes[&leader_id].raft, 0, 500).await;
    println!(
        "wrote 500 keys through the leader in {:.0} ms ({:.0} writes/s, each durable on a quorum)",
        ms(d),
        500.0 / d.as_secs_f64()
    );

    let follower = (1..=3).find(|&id| id != leader_id).expect("a follower");
    let stopped = nodes.remove(&follower).expect("running");
    router.detach(follower);
    stopped.raft.shutdown().await.expect("shutdown");
    drop(stopped);
    println!("node {follower}: stopped");

    let d = write(&nodes[&leader_id].raft, 500, 500).await;
    println!("wrote 500 more keys with node {follower} down in {:.0} ms", ms(d));

    let t = Instant::now();
    let node = start(follower, &base, config.clone(), &router).await;
    let last = nodes[&leader_id].raft.metrics().borrow().last_applied.map(|l| l.index);
    node.raft
        .wait(Some(Duration::from_secs(30)))
        .applied_index_at_least(last, "catch up")
        .await
        .expect("the restarted node catches up");
    println!(
        "node {follower}: restarted from disk and caught up to index {} in {:.0} ms",
        last.unwrap_or(0),
        ms(t.elapsed())
    );
    nodes.insert(follower, node);

    let leader_data = nodes[&leader_id].sm.data();
    let mut all_equal = true;
    for (id, n) in &nodes {
        let m = n.raft.metrics().borrow().clone();
        let same = n.sm.data() == leader_data;
        all_equal &= same;
        println!(
            "node {id}: {} keys, last applied {}, snapshot {:?}, purged {:?}, same data as the leader: {same}",
            n.sm.data().len(),
            m.last_applied.map_or(0, |l| l.index),
            m.snapshot.map(|l| l.index),
            m.purged.map(|l| l.index),
        );
    }
    let voters: BTreeSet<NodeId> =
        nodes[&leader_id].raft.metrics().borrow().membership_config.membership().voter_ids().collect();
    println!("voters {voters:?}; key-00999 = {:?}", nodes[&follower].sm.get("key-00999"));
    for n in nodes.values() {
        n.raft.shutdown().await.expect("shutdown");
    }
    assert!(all_equal && leader_data.len() == 1000, "the cluster disagrees");
    println!("ok: 3 nodes agree on 1000 keys after a restart from disk");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
