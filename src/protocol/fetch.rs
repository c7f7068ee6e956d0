//! Fetch: whole stored batches from partitions, sent as they are, with a
//! long poll for `min_bytes`. The batches travel after the message, as `R`:
//! the stored chunks on the broker, `Bytes` of the frame read on a client.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{records_bytes, split_payload, topics_in, topics_out};
use super::{fb, ErrorCode, Payload, ProtocolError, Records};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Wait up to this long ...
    pub max_wait_ms: u32,
    /// ... for at least this many bytes.
    pub min_bytes: u32,
    /// Bytes of the whole answer (always at least one batch).
    pub max_bytes: u32,
    pub topics: Vec<Topic>,
}

pub type Topic = super::Topic<Partition>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub partition: u32,
    pub offset: i64,
    pub max_bytes: u32,
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
    pub log_start_offset: i64,
    /// Whole batches.
    pub records: R,
}

impl Request {
    /// One topic's partitions, the common case.
    pub fn one_topic(topic: &str, partitions: Vec<Partition>, max_wait_ms: u32, min_bytes: u32, max_bytes: u32) -> Self {
        Request { max_wait_ms, min_bytes, max_bytes, topics: vec![Topic::new(topic, partitions)] }
    }

    pub fn decode(r: fb::FetchRequest<'_>) -> Self {
        Request {
            max_wait_ms: r.max_wait_ms(),
            min_bytes: r.min_bytes(),
            max_bytes: r.max_bytes(),
            topics: topics_in(
                r.topics(),
                |t| (Some(t.name()), t.partitions()),
                |p| Partition { partition: p.partition(), offset: p.offset(), max_bytes: p.max_bytes() },
            ),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::FetchRequest<'a>> {
        let topics = topics_out(
            fbb,
            &self.topics,
            |fbb, p| fb::FetchPartition::create(fbb, &fb::FetchPartitionArgs { partition: p.partition, offset: p.offset, max_bytes: p.max_bytes }),
            |fbb, name, ps| fb::FetchTopic::create(fbb, &fb::FetchTopicArgs { name: Some(name), partitions: Some(ps) }),
        );
        fb::FetchRequest::create(
            fbb,
            &fb::FetchRequestArgs { max_wait_ms: self.max_wait_ms, min_bytes: self.min_bytes, max_bytes: self.max_bytes, topics: Some(topics) },
        )
    }

    /// Every partition asked for with its topic, in request order.
    pub fn partitions(&self) -> impl Iterator<Item = (&str, &Partition)> {
        self.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.as_str(), p)))
    }
}

impl<R> Response<R> {
    /// Every partition's answer, in request order.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionResponse<R>> {
        self.topics.iter().flat_map(|t| t.partitions.iter())
    }

    /// Every partition's answer, taken, in request order.
    pub fn into_partitions(self) -> impl Iterator<Item = PartitionResponse<R>> {
        self.topics.into_iter().flat_map(|t| t.partitions.into_iter())
    }
}

impl<P: Payload> Response<P> {
    /// Reads the response and slices `payload` into each partition's
    /// batches; the message must describe exactly the payload's bytes.
    pub fn decode(r: fb::FetchResponse<'_>, payload: P) -> Result<Self, ProtocolError> {
        let sizes = r.topics().into_iter().flatten().flat_map(|t| t.partitions().into_iter().flatten()).map(|p| p.records_bytes());
        let mut records = split_payload(payload, sizes)?;
        let topics = topics_in(
            r.topics(),
            |t| (t.name(), t.partitions()),
            |p| PartitionResponse {
                partition: p.partition(),
                error: p.error(),
                high_watermark: p.high_watermark(),
                log_start_offset: p.log_start_offset(),
                records: records.next().expect("one slice per partition"),
            },
        );
        Ok(Response { topics })
    }
}

impl<R: Records> Response<R> {
    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::FetchResponse<'a>> {
        let topics = topics_out(
            fbb,
            &self.topics,
            |fbb, p| {
                fb::FetchPartitionResponse::create(
                    fbb,
                    &fb::FetchPartitionResponseArgs {
                        partition: p.partition,
                        error: p.error,
                        high_watermark: p.high_watermark,
                        log_start_offset: p.log_start_offset,
                        records_bytes: records_bytes(&p.records),
                    },
                )
            },
            |fbb, name, ps| fb::FetchTopicResponse::create(fbb, &fb::FetchTopicResponseArgs { name: Some(name), partitions: Some(ps) }),
        );
        fb::FetchResponse::create(fbb, &fb::FetchResponseArgs { topics: Some(topics) })
    }
}

super::envelope::api!(request Request, FetchRequest);

super::envelope::api!(records Response, FetchResponse, body_as_fetch_response);
