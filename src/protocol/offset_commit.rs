//! OffsetCommit: a consumer group's next offsets, kept durably by its
//! coordinator. Its per-partition result is also OffsetFetch's.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{opt_str, topics_in, topics_out, Tables};
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

/// A topic's `(partition, the next offset the group will read)`.
pub type Topic = super::Topic<(u32, i64)>;

/// One partition's committed offset, or why it could not be committed
/// or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionResult {
    pub partition: u32,
    pub error: ErrorCode,
    /// OffsetFetch: -1 when the group has none.
    pub offset: i64,
}

pub type TopicResult = super::Topic<PartitionResult>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub topics: Vec<TopicResult>,
}

impl Request {
    pub fn decode(r: fb::OffsetCommitRequest<'_>) -> Self {
        Request {
            group: r.group().to_string(),
            topics: topics_in(r.topics(), |t| (Some(t.name()), t.partitions()), |p| (p.partition(), p.offset())),
            member: r.member_id().map(|m| (m.to_string(), r.generation())),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::OffsetCommitRequest<'a>> {
        let group = fbb.create_string(&self.group);
        let member_id = opt_str(fbb, self.member.as_ref().map(|(m, _)| m.as_str()));
        let ts = topics_out(
            fbb,
            &self.topics,
            |fbb, &(partition, offset)| fb::OffsetCommitPartition::create(fbb, &fb::OffsetCommitPartitionArgs { partition, offset }),
            |fbb, name, ps| fb::OffsetCommitTopic::create(fbb, &fb::OffsetCommitTopicArgs { name: Some(name), partitions: Some(ps) }),
        );
        fb::OffsetCommitRequest::create(
            fbb,
            &fb::OffsetCommitRequestArgs { group: Some(group), topics: Some(ts), member_id, generation: self.member.as_ref().map_or(-1, |m| m.1) },
        )
    }
}

type Results<'a> = Tables<'a, fb::OffsetTopicResult<'a>>;

/// The results of a commit or a fetch of offsets, in either's response.
pub(crate) fn results_in(v: Option<Results<'_>>) -> Vec<TopicResult> {
    topics_in(v, |t| (t.name(), t.partitions()), |p| PartitionResult { partition: p.partition(), error: p.error(), offset: p.offset() })
}

pub(crate) fn results_out<'a>(fbb: &mut FlatBufferBuilder<'a>, v: &[TopicResult]) -> WIPOffset<Results<'a>> {
    topics_out(
        fbb,
        v,
        |fbb, p| fb::OffsetPartitionResult::create(fbb, &fb::OffsetPartitionResultArgs { partition: p.partition, error: p.error, offset: p.offset }),
        |fbb, name, ps| fb::OffsetTopicResult::create(fbb, &fb::OffsetTopicResultArgs { name: Some(name), partitions: Some(ps) }),
    )
}

impl Response {
    pub fn decode(r: fb::OffsetCommitResponse<'_>) -> Self {
        Response { topics: results_in(r.topics()) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::OffsetCommitResponse<'a>> {
        let topics = results_out(fbb, &self.topics);
        fb::OffsetCommitResponse::create(fbb, &fb::OffsetCommitResponseArgs { topics: Some(topics) })
    }

    /// Every partition's result, in request order.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionResult> {
        self.topics.iter().flat_map(|t| t.partitions.iter())
    }
}

api!(request Request, OffsetCommitRequest);
api!(response Response, OffsetCommitResponse, body_as_offset_commit_response);
