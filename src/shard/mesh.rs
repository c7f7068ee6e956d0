//! Channels between every pair of shards: the only way shards talk.
//!
//! Built from glommio's single-producer single-consumer shared channels
//! (one per ordered pair of shards) rather than its `channel_mesh`, whose
//! builder clones an `Rc` across threads.

use glommio::channels::shared_channel::{self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender};

/// One shard's ends of the mesh before its executor connects them.
pub struct MeshEnds<T: Send + 'static> {
    pub id: u16,
    senders: Vec<Option<SharedSender<T>>>,
    receivers: Vec<Option<SharedReceiver<T>>>,
}

/// Makes the channels for `n` shards, `capacity` messages each way per pair.
pub fn build<T: Send + 'static>(n: u16, capacity: usize) -> Vec<MeshEnds<T>> {
    let n = usize::from(n);
    let mut ends: Vec<MeshEnds<T>> =
        (0..n).map(|i| MeshEnds { id: i as u16, senders: (0..n).map(|_| None).collect(), receivers: (0..n).map(|_| None).collect() }).collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(capacity);
                ends[from].senders[to] = Some(tx);
                ends[to].receivers[from] = Some(rx);
            }
        }
    }
    ends
}

/// The connected sending side of one shard.
pub struct Mesh<T: Send + 'static> {
    pub id: u16,
    senders: Vec<Option<ConnectedSender<T>>>,
}

impl<T: Send + 'static> MeshEnds<T> {
    /// Connects this shard's ends on its own executor; returns the senders
    /// and one receiver per peer.
    pub async fn connect(self) -> (Mesh<T>, Vec<(u16, ConnectedReceiver<T>)>) {
        // Each side of a channel waits for the other to connect, so all of
        // this shard's ends connect at once, or two shards would deadlock.
        let senders = futures::future::join_all(self.senders.into_iter().map(|s| async move {
            match s {
                Some(s) => Some(s.connect().await),
                None => None,
            }
        }));
        let receivers = futures::future::join_all(
            self.receivers.into_iter().enumerate().filter_map(|(i, r)| r.map(|r| (i as u16, r))).map(|(i, r)| async move { (i, r.connect().await) }),
        );
        let (senders, receivers) = futures::future::join(senders, receivers).await;
        (Mesh { id: self.id, senders }, receivers)
    }
}

impl<T: Send + 'static> Mesh<T> {
    pub fn nr_shards(&self) -> u16 {
        self.senders.len() as u16
    }

    /// Sends to shard `to`; gives the message back if that shard is gone.
    pub async fn send(&self, to: u16, msg: T) -> Result<(), ()> {
        match self.senders.get(usize::from(to)).and_then(|s| s.as_ref()) {
            Some(s) => s.send(msg).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    pub fn peers(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.nr_shards()).filter(move |&p| p != self.id)
    }
}
