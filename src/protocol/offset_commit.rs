//! OffsetCommit: a consumer group's next offsets, kept durably by its
//! coordinator. Its per-partition result is also OffsetFetch's.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use super::codec::{opt_str, string};
use super::envelope::api;
use super::{fb, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub group: String,
    pub topics: Vec<Topic>,
    /// `(member id, generation)` of a member of the group; `None` for a
    /// consumer outside membership.
    pub member: Option<(String, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    /// `(partition, the next offset the group will read)`.
    pub partitions: Vec<(u32, i64)>,
}

/// One partition's committed offset, or why it could not be committed
/// or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionResult {
    pub partition: u32,
    pub error: ErrorCode,
    /// OffsetFetch: -1 when the group has none.
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub partitions: Vec<PartitionResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub topics: Vec<TopicResult>,
}

impl Request {
    pub fn decode(r: fb::OffsetCommitRequest<'_>) -> Self {
        Request {
            group: r.group().to_string(),
            topics: r
                .topics()
                .iter()
                .flatten()
                .map(|t| Topic { name: t.name().to_string(), partitions: t.partitions().iter().flatten().map(|p| (p.partition(), p.offset())).collect() })
                .collect(),
            member: r.member_id().map(|m| (m.to_string(), r.generation())),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::OffsetCommitRequest<'a>> {
        let group = fbb.create_string(&self.group);
        let member_id = opt_str(fbb, self.member.as_ref().map(|(m, _)| m.as_str()));
        let ts: Vec<_> = self
            .topics
            .iter()
            .map(|t| {
                let name = fbb.create_string(&t.name);
                let ps: Vec<_> = t
                    .partitions
                    .iter()
                    .map(|&(partition, offset)| fb::OffsetCommitPartition::create(fbb, &fb::OffsetCommitPartitionArgs { partition, offset }))
                    .collect();
                let ps = fbb.create_vector(&ps);
                fb::OffsetCommitTopic::create(fbb, &fb::OffsetCommitTopicArgs { name: Some(name), partitions: Some(ps) })
            })
            .collect();
        let ts = fbb.create_vector(&ts);
        fb::OffsetCommitRequest::create(
            fbb,
            &fb::OffsetCommitRequestArgs { group: Some(group), topics: Some(ts), member_id, generation: self.member.as_ref().map_or(-1, |m| m.1) },
        )
    }
}

type Results<'a> = Vector<'a, ForwardsUOffset<fb::OffsetTopicResult<'a>>>;

impl TopicResult {
    pub(crate) fn decode_all(v: Option<Results<'_>>) -> Vec<Self> {
        v.iter()
            .flatten()
            .map(|t| TopicResult {
                name: string(t.name()),
                partitions: t
                    .partitions()
                    .iter()
                    .flatten()
                    .map(|p| PartitionResult { partition: p.partition(), error: p.error(), offset: p.offset() })
                    .collect(),
            })
            .collect()
    }

    pub(crate) fn encode_all<'a>(fbb: &mut FlatBufferBuilder<'a>, v: &[Self]) -> WIPOffset<Results<'a>> {
        let ts: Vec<_> = v
            .iter()
            .map(|t| {
                let ps: Vec<_> = t
                    .partitions
                    .iter()
                    .map(|p| {
                        fb::OffsetPartitionResult::create(fbb, &fb::OffsetPartitionResultArgs { partition: p.partition, error: p.error, offset: p.offset })
                    })
                    .collect();
                let ps = fbb.create_vector(&ps);
                let name = fbb.create_string(&t.name);
                fb::OffsetTopicResult::create(fbb, &fb::OffsetTopicResultArgs { name: Some(name), partitions: Some(ps) })
            })
            .collect();
        fbb.create_vector(&ts)
    }
}

impl Response {
    pub fn decode(r: fb::OffsetCommitResponse<'_>) -> Self {
        Response { topics: TopicResult::decode_all(r.topics()) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::OffsetCommitResponse<'a>> {
        let topics = TopicResult::encode_all(fbb, &self.topics);
        fb::OffsetCommitResponse::create(fbb, &fb::OffsetCommitResponseArgs { topics: Some(topics) })
    }

    /// Every partition's result, in request order.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionResult> {
        self.topics.iter().flat_map(|t| t.partitions.iter())
    }
}

api!(request Request, OffsetCommitRequest);
api!(response Response, OffsetCommitResponse, body_as_offset_commit_response);
