//! Produce: whole record batches for partitions, answered with the offset
//! each partition gave its first batch. The batches travel after the
//! message, as `R`: the frame's bytes on the broker (`BytesMut`, stored as
//! they are), a client's own buffers when it sends.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{opt_str, records_bytes, split_payload, topics_in, topics_out};
use super::envelope::api;
use super::{fb, Acks, ErrorCode, Payload, ProtocolError, Records};

/// The longest produce timeout a client may ask for is the broker's
/// business; this is what a client asks when it says nothing.
pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<R> {
    pub acks: Acks,
    pub timeout_ms: u32,
    pub topics: Vec<Topic<R>>,
}

pub type Topic<R> = super::Topic<Partition<R>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition<R> {
    pub partition: u32,
    /// One or more whole batches.
    pub records: R,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub topics: Vec<TopicResponse>,
}

pub type TopicResponse = super::Topic<PartitionResponse>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResponse {
    pub partition: u32,
    pub error: ErrorCode,
    /// The offset of the first record; -1 on an error.
    pub base_offset: i64,
    pub log_start_offset: i64,
    pub error_message: Option<String>,
}

impl<R> Request<R> {
    /// One topic's partitions, the common case.
    pub fn one_topic(topic: &str, acks: Acks, timeout_ms: u32, partitions: Vec<Partition<R>>) -> Self {
        Request { acks, timeout_ms, topics: vec![Topic::new(topic, partitions)] }
    }

    /// Every partition's records, in the order they travel.
    pub fn records(&self) -> impl Iterator<Item = &R> {
        self.topics.iter().flat_map(|t| t.partitions.iter().map(|p| &p.records))
    }
}

impl<P: Payload> Request<P> {
    /// Reads the request and slices `payload` into each partition's
    /// batches; the acks value is checked first, then that the message
    /// describes exactly the payload's bytes.
    pub fn decode(r: fb::ProduceRequest<'_>, payload: P) -> Result<Self, ProtocolError> {
        let acks = Acks::from_wire(r.acks())?;
        let sizes = r.topics().into_iter().flatten().flat_map(|t| t.partitions().into_iter().flatten()).map(|p| p.records_bytes());
        let mut records = split_payload(payload, sizes)?;
        let topics = topics_in(
            r.topics(),
            |t| (Some(t.name()), t.partitions()),
            |p| Partition { partition: p.partition(), records: records.next().expect("one slice per partition") },
        );
        Ok(Request { acks, timeout_ms: r.timeout_ms(), topics })
    }
}

impl<R: Records> Request<R> {
    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ProduceRequest<'a>> {
        let topics = topics_out(
            fbb,
            &self.topics,
            |fbb, p| fb::ProducePartition::create(fbb, &fb::ProducePartitionArgs { partition: p.partition, records_bytes: records_bytes(&p.records) }),
            |fbb, name, ps| fb::ProduceTopic::create(fbb, &fb::ProduceTopicArgs { name: Some(name), partitions: Some(ps) }),
        );
        fb::ProduceRequest::create(fbb, &fb::ProduceRequestArgs { acks: self.acks.wire(), timeout_ms: self.timeout_ms, topics: Some(topics) })
    }

    /// The payload bytes that follow the message.
    pub fn payload_len(&self) -> usize {
        self.records().map(Records::records_len).sum()
    }
}

impl<R: Records> super::RequestBody for Request<R> {
    const KEY: fb::RequestBody = fb::RequestBody::ProduceRequest;
    fn encode_body<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<flatbuffers::UnionWIPOffset> {
        self.encode(fbb).as_union_value()
    }
}

impl Response {
    pub fn decode(r: fb::ProduceResponse<'_>) -> Self {
        Response {
            topics: topics_in(
                r.topics(),
                |t| (t.name(), t.partitions()),
                |p| PartitionResponse {
                    partition: p.partition(),
                    error: p.error(),
                    base_offset: p.base_offset(),
                    log_start_offset: p.log_start_offset(),
                    error_message: p.error_message().map(str::to_string),
                },
            ),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ProduceResponse<'a>> {
        let topics = topics_out(
            fbb,
            &self.topics,
            |fbb, p| {
                let error_message = opt_str(fbb, p.error_message.as_deref());
                fb::ProducePartitionResponse::create(
                    fbb,
                    &fb::ProducePartitionResponseArgs {
                        partition: p.partition,
                        error: p.error,
                        base_offset: p.base_offset,
                        log_start_offset: p.log_start_offset,
                        error_message,
                    },
                )
            },
            |fbb, name, ps| fb::ProduceTopicResponse::create(fbb, &fb::ProduceTopicResponseArgs { name: Some(name), partitions: Some(ps) }),
        );
        fb::ProduceResponse::create(fbb, &fb::ProduceResponseArgs { topics: Some(topics) })
    }

    /// Every partition's result, in request order.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionResponse> {
        self.topics.iter().flat_map(|t| t.partitions.iter())
    }
}

api!(response Response, ProduceResponse, body_as_produce_response);
