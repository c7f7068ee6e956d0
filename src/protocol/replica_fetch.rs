//! ReplicaFetch: a follower broker pulls its leader's stored batches for
//! every partition it follows from it, and reports what it holds and has
//! synced. A follower whose log diverged is told where to cut it.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{records_bytes, split_payload, topics_in, topics_out};
use super::{fb, ErrorCode, Payload, ProtocolError, Records};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The follower's broker id.
    pub replica_id: i32,
    /// Long poll until any partition has new batches.
    pub max_wait_ms: u32,
    pub max_bytes: u32,
    pub topics: Vec<Topic>,
}

pub type Topic = super::Topic<Partition>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub partition: u32,
    /// The epoch of the leader the follower follows.
    pub leader_epoch: u32,
    /// The follower's log end: it holds everything below.
    pub fetch_offset: i64,
    /// ... and has synced everything below this.
    pub synced_offset: i64,
    /// The leader epoch of its last batch; -1: none.
    pub last_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<R> {
    pub topics: Vec<TopicResponse<R>>,
}

pub type TopicResponse<R> = super::Topic<PartitionResponse<R>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResponse<R> {
    pub partition: u32,
    pub error: ErrorCode,
    pub high_watermark: i64,
    pub log_end: i64,
    /// Where the follower's log diverges from the leader's, as
    /// `(epoch, end)` (-1 for an epoch the leader does not know).
    pub diverging: Option<(i64, i64)>,
    /// Whole batches.
    pub records: R,
}

impl Request {
    pub fn decode(r: fb::ReplicaFetchRequest<'_>) -> Self {
        Request {
            replica_id: r.replica_id(),
            max_wait_ms: r.max_wait_ms(),
            max_bytes: r.max_bytes(),
            topics: topics_in(
                r.topics(),
                |t| (Some(t.name()), t.partitions()),
                |p| Partition {
                    partition: p.partition(),
                    leader_epoch: p.leader_epoch(),
                    fetch_offset: p.fetch_offset(),
                    synced_offset: p.synced_offset(),
                    last_epoch: p.last_epoch(),
                },
            ),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ReplicaFetchRequest<'a>> {
        let topics = topics_out(
            fbb,
            &self.topics,
            |fbb, p| {
                fb::ReplicaFetchPartition::create(
                    fbb,
                    &fb::ReplicaFetchPartitionArgs {
                        partition: p.partition,
                        leader_epoch: p.leader_epoch,
                        fetch_offset: p.fetch_offset,
                        synced_offset: p.synced_offset,
                        last_epoch: p.last_epoch,
                    },
                )
            },
            |fbb, name, ps| fb::ReplicaFetchTopic::create(fbb, &fb::ReplicaFetchTopicArgs { name: Some(name), partitions: Some(ps) }),
        );
        fb::ReplicaFetchRequest::create(
            fbb,
            &fb::ReplicaFetchRequestArgs { replica_id: self.replica_id, max_wait_ms: self.max_wait_ms, max_bytes: self.max_bytes, topics: Some(topics) },
        )
    }

    /// Every partition asked for with its topic, in request order.
    pub fn partitions(&self) -> impl Iterator<Item = (&str, &Partition)> {
        self.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.as_str(), p)))
    }
}

impl<R> Response<R> {
    /// Every partition's answer with its topic, taken, in request order.
    pub fn into_partitions(self) -> impl Iterator<Item = (String, PartitionResponse<R>)> {
        self.topics.into_iter().flat_map(|t| {
            let name = t.name;
            t.partitions.into_iter().map(move |p| (name.clone(), p))
        })
    }
}

impl<P: Payload> Response<P> {
    /// Reads the response and slices `payload` into each partition's
    /// batches; the message must describe exactly the payload's bytes.
    pub fn decode(r: fb::ReplicaFetchResponse<'_>, payload: P) -> Result<Self, ProtocolError> {
        let sizes = r.topics().into_iter().flatten().flat_map(|t| t.partitions().into_iter().flatten()).map(|p| p.records_bytes());
        let mut records = split_payload(payload, sizes)?;
        let topics = topics_in(
            r.topics(),
            |t| (t.name(), t.partitions()),
            |p| PartitionResponse {
                partition: p.partition(),
                error: p.error(),
                high_watermark: p.high_watermark(),
                log_end: p.log_end(),
                diverging: (p.diverging_epoch() >= 0 || p.diverging_end() >= 0).then(|| (p.diverging_epoch(), p.diverging_end())),
                records: records.next().expect("one slice per partition"),
            },
        );
        Ok(Response { topics })
    }
}

impl<R: Records> Response<R> {
    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ReplicaFetchResponse<'a>> {
        let topics = topics_out(
            fbb,
            &self.topics,
            |fbb, p| {
                let (diverging_epoch, diverging_end) = p.diverging.unwrap_or((-1, -1));
                fb::ReplicaFetchPartitionResponse::create(
                    fbb,
                    &fb::ReplicaFetchPartitionResponseArgs {
                        partition: p.partition,
                        error: p.error,
                        high_watermark: p.high_watermark,
                        log_end: p.log_end,
                        diverging_epoch,
                        diverging_end,
                        records_bytes: records_bytes(&p.records),
                    },
                )
            },
            |fbb, name, ps| fb::ReplicaFetchTopicResponse::create(fbb, &fb::ReplicaFetchTopicResponseArgs { name: Some(name), partitions: Some(ps) }),
        );
        fb::ReplicaFetchResponse::create(fbb, &fb::ReplicaFetchResponseArgs { topics: Some(topics) })
    }
}

super::envelope::api!(request Request, ReplicaFetchRequest);

super::envelope::api!(records Response, ReplicaFetchResponse, body_as_replica_fetch_response);
