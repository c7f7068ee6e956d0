//! A minimal Kafka client for `--protocol kafka`: Produce v7 and Fetch
//! v11 on a plain socket, written and read as Kafka clients do, so the
//! broker's Kafka path is measured beside the native one with the same
//! batches (Kafka's record batch v2 is the broker's own format).
//!
//! Requests are written by hand (a head, then the batch as it is); answers
//! are read with the broker's bounded Kafka reader.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use shardlog::protocol::kafka::{from_error_code, Reader};
use shardlog::protocol::{fetch, Acks, ErrorCode, Topic};

const PRODUCE_VERSION: i16 = 7;
const FETCH_VERSION: i16 = 11;
const CLIENT_ID: &str = "loadgen";
/// Largest answer read, as a Kafka client's `fetch.max.bytes` bounds it.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

pub struct KafkaConn {
    stream: TcpStream,
    next: i32,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl KafkaConn {
    pub fn connect(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(KafkaConn { stream, next: 1 })
    }

    pub fn try_clone(&self) -> Result<Self> {
        Ok(KafkaConn { stream: self.stream.try_clone()?, next: self.next })
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> Result<()> {
        Ok(self.stream.set_read_timeout(d)?)
    }

    /// A request's head: size (of head and `tail_len` more bytes), header.
    fn head(&mut self, key: i16, version: i16, tail_len: usize, body: impl FnOnce(&mut Vec<u8>)) -> (Vec<u8>, i32) {
        let corr = self.next;
        self.next = self.next.wrapping_add(1);
        let mut out = vec![0; 4];
        out.extend_from_slice(&key.to_be_bytes());
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&corr.to_be_bytes());
        put_str(&mut out, CLIENT_ID);
        body(&mut out);
        let size = (out.len() - 4 + tail_len) as i32;
        out[..4].copy_from_slice(&size.to_be_bytes());
        (out, corr)
    }

    /// Sends one batch to one partition; returns the correlation id.
    pub fn send_produce(&mut self, topic: &str, partition: u32, batch: &[u8], acks: Acks) -> Result<u32> {
        let acks: i16 = match acks {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        };
        let (head, corr) = self.head(0, PRODUCE_VERSION, batch.len(), |b| {
            b.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
            b.extend_from_slice(&acks.to_be_bytes());
            b.extend_from_slice(&30_000i32.to_be_bytes());
            b.extend_from_slice(&1i32.to_be_bytes());
            put_str(b, topic);
            b.extend_from_slice(&1i32.to_be_bytes());
            b.extend_from_slice(&(partition as i32).to_be_bytes());
            b.extend_from_slice(&(batch.len() as i32).to_be_bytes());
        });
        self.stream.write_all(&head)?;
        self.stream.write_all(batch)?;
        Ok(corr as u32)
    }

    /// Reads one answer: its correlation id and body.
    fn recv(&mut self) -> Result<(i32, Bytes)> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        let Ok(size) = usize::try_from(size) else { bail!("a Kafka answer of {size} bytes") };
        if !(4..=MAX_RESPONSE_BYTES).contains(&size) {
            bail!("a Kafka answer of {size} bytes");
        }
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body)?;
        let corr = i32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
        Ok((corr, Bytes::from(body).slice(4..)))
    }

    /// Reads a Produce answer: its correlation id and the error of its
    /// one partition.
    pub fn recv_produce(&mut self) -> Result<(u32, ErrorCode)> {
        let (corr, body) = self.recv()?;
        let mut r = Reader::new(&body);
        let mut code = ErrorCode::None;
        for _ in 0..r.array("topics")? {
            r.string("topic")?;
            for _ in 0..r.array("partitions")? {
                r.i32("partition")?;
                let e = r.i16("error")?;
                r.i64("base offset")?;
                r.i64("log append time")?;
                r.i64("log start offset")?;
                if e != 0 {
                    code = from_error_code(e);
                }
            }
        }
        Ok((corr as u32, code))
    }

    /// Fetches `asked` (partition, offset) of one topic; the records are
    /// slices of the answer.
    pub fn fetch(&mut self, topic: &str, asked: &[(u32, i64)], max_bytes: u32, max_wait_ms: i32, min_bytes: i32) -> Result<fetch::Response<Bytes>> {
        let (head, corr) = self.head(1, FETCH_VERSION, 0, |b| {
            b.extend_from_slice(&(-1i32).to_be_bytes()); // replica id: a consumer
            b.extend_from_slice(&max_wait_ms.to_be_bytes());
            b.extend_from_slice(&min_bytes.to_be_bytes());
            b.extend_from_slice(&i32::MAX.to_be_bytes()); // max bytes: partitions bound it
            b.push(0); // read uncommitted
            b.extend_from_slice(&0i32.to_be_bytes()); // session id
            b.extend_from_slice(&(-1i32).to_be_bytes()); // session epoch: no session
            b.extend_from_slice(&1i32.to_be_bytes());
            put_str(b, topic);
            b.extend_from_slice(&(asked.len() as i32).to_be_bytes());
            for &(p, offset) in asked {
                b.extend_from_slice(&(p as i32).to_be_bytes());
                b.extend_from_slice(&(-1i32).to_be_bytes()); // current leader epoch
                b.extend_from_slice(&offset.to_be_bytes());
                b.extend_from_slice(&(-1i64).to_be_bytes()); // log start offset
                b.extend_from_slice(&(max_bytes as i32).to_be_bytes());
            }
            b.extend_from_slice(&0i32.to_be_bytes()); // no forgotten topics
            put_str(b, ""); // rack
        });
        self.stream.write_all(&head)?;
        let (got, body) = self.recv()?;
        if got != corr {
            bail!("fetch: the answer to {got} while waiting for {corr}");
        }
        let mut r = Reader::new(&body);
        r.i32("throttle")?;
        let e = r.i16("error")?;
        if e != 0 {
            bail!("fetch: {:?}", from_error_code(e));
        }
        r.i32("session id")?;
        let mut topics = Vec::new();
        for _ in 0..r.array("topics")? {
            let name = r.string("topic")?.to_string();
            let mut partitions = Vec::new();
            for _ in 0..r.array("partitions")? {
                let partition = r.i32("partition")? as u32;
                let error = from_error_code(r.i16("error")?);
                let high_watermark = r.i64("high watermark")?;
                r.i64("last stable offset")?;
                let log_start_offset = r.i64("log start offset")?;
                for _ in 0..r.nullable_array("aborted transactions")?.unwrap_or(0) {
                    r.i64("producer id")?;
                    r.i64("first offset")?;
                }
                r.i32("preferred read replica")?;
                let records = r.nullable_bytes("records")?.map_or_else(Bytes::new, |range| body.slice(range));
                partitions.push(fetch::PartitionResponse { partition, error, high_watermark, log_start_offset, records });
            }
            topics.push(Topic { name, partitions });
        }
        Ok(fetch::Response { topics })
    }
}
