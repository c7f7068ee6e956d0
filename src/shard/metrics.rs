//! A shard's side of a scrape: the figures it alone knows (its
//! partitions, its groups' commits, its counters, its memory), answered
//! by message, and the gathering of every shard's on the shard that
//! serves the metrics port.

use std::rc::Rc;

use futures::channel::oneshot;

use super::{replica, Shard, ShardMsg};
use crate::cluster::metadata::NO_LEADER;
use crate::metrics::{BrokerFigures, Figures, PartitionFigures, QuorumFigures, ShardFigures, ShardMemory};

/// What a shard is asked by the one gathering a scrape.
pub enum MetricsMsg {
    Figures { reply: oneshot::Sender<ShardFigures> },
}

impl Shard {
    pub(super) async fn serve_metrics(&self, msg: MetricsMsg) {
        match msg {
            MetricsMsg::Figures { reply } => {
                let _ = reply.send(self.local_figures());
            }
        }
    }

    /// This shard's figures now. Counters of topics that no longer exist
    /// are dropped first, so the per-topic cells stay bounded by the
    /// topics the metadata holds.
    fn local_figures(&self) -> ShardFigures {
        {
            let md = self.meta.state.borrow();
            crate::metrics::count(|c| c.topics.retain(|t, _| md.topics.contains_key(t)));
        }
        let mut partitions = Vec::new();
        let mut cache_bytes = 0u64;
        for (topic, map) in self.partitions.owned.borrow().iter() {
            for (&partition, p) in map {
                let st = p.log().stats();
                cache_bytes += st.cache_bytes as u64;
                let (leader, under_replicated, under_min_isr) = match &*p.replica.role.borrow() {
                    _ if !p.replica.replicated => (true, false, false),
                    replica::Role::Leader(l) => (true, l.isr.len() < l.replicas.len(), l.isr.len() < l.replicas.len() / 2 + 1),
                    replica::Role::Follower { .. } => (false, false, false),
                };
                let f = p.figures(&st);
                partitions.push(PartitionFigures {
                    topic: topic.clone(),
                    partition,
                    log_start: f.log_start_offset,
                    high_watermark: f.high_watermark,
                    log_end: f.log_end_offset,
                    bytes: st.bytes,
                    segments: st.segments as u64,
                    leader,
                    under_replicated,
                    under_min_isr,
                });
            }
        }
        let committed = self.groups.offsets.borrow().all().map(|(g, t, p, c)| (g.to_string(), t.to_string(), p, c.offset)).collect();
        let (buffered, budget) = crate::metrics::request_memory_now();
        ShardFigures {
            counters: crate::metrics::counters(),
            partitions,
            committed,
            memory: ShardMemory {
                shard: self.id,
                buffered_request_bytes: buffered as u64,
                buffered_request_budget_bytes: budget as u64,
                cache_bytes,
                cache_budget_bytes: self.config.cache_max_bytes_per_shard as u64,
            },
        }
    }

    /// What the broker as a whole reports, from this shard's metadata copy
    /// (and its voter, on the quorum shard).
    fn broker_figures(&self) -> BrokerFigures {
        let md = self.meta.state.borrow();
        let controller = self.meta.controller.get();
        let me = self.config.node_id;
        let offline =
            if controller == Some(me) { md.topics.values().flat_map(|t| t.partitions.iter()).filter(|p| p.leader == NO_LEADER).count() as u64 } else { 0 };
        let quorum = self.meta.quorum.borrow().as_ref().map(|q| {
            let (term, leader, commit_index) = q.figures();
            QuorumFigures { term, leader: leader.map_or(-1, i64::from), commit_index }
        });
        BrokerFigures {
            node_id: i64::from(me),
            shards: self.nr_shards(),
            version: env!("CARGO_PKG_VERSION"),
            quorum,
            controller: controller.map_or(-1, i64::from),
            offline_partitions: offline,
            ready: self.ready_to_serve(&md),
            max_partitions: self.config.metrics_max_partitions,
        }
    }

    /// Registered with the quorum under this process's incarnation,
    /// unfenced, and not stopping.
    pub fn ready_to_serve(&self, md: &crate::cluster::metadata::Metadata) -> bool {
        !self.is_shutting_down() && md.brokers.get(&self.config.node_id).is_some_and(|b| b.incarnation == self.incarnation && !b.fenced)
    }

    pub fn ready(&self) -> bool {
        self.ready_to_serve(&self.meta.state.borrow())
    }

    /// Every shard's figures, merged, with the broker's (a scrape).
    pub async fn scrape(self: &Rc<Self>) -> Figures {
        let mut shards = vec![self.local_figures()];
        for s in (0..self.nr_shards()).filter(|&s| s != self.id) {
            let (reply, rx) = oneshot::channel();
            if let Some(f) = self.ask(s, ShardMsg::Metrics(MetricsMsg::Figures { reply }), rx).await {
                shards.push(f);
            }
        }
        Figures::new(self.broker_figures(), shards)
    }
}
