//! Kafka's wire protocol on the client port, beside the native one.
//!
//! A connection is Kafka's when its first 8 bytes are those of a Kafka
//! request ([`is_kafka`]); its frames are then a big-endian size and a
//! Kafka request, read by `protocol::kafka` into the API types the native
//! protocol shares, run by the same handlers, and answered in Kafka's
//! encoding: `kafka-protocol` for most responses, and for Fetch a head
//! written here followed by the stored batches as they are (Kafka's
//! record batch v2 is this broker's own format, so nothing is re-encoded).
//!
//! Kafka clients need responses in request order on a connection;
//! `server::connection` keeps that order for Kafka connections.

mod responses;

use std::rc::Rc;

use bytes::{Buf, BytesMut};

use super::response::Outgoing;
use super::session::{denied, SaslStep, Session};
use crate::auth::acl::{Operation, ResourceType};
use crate::group::classic::{self, Refusal};
use crate::group::Committed;
use crate::protocol::create_topics::TopicResult;
use crate::protocol::kafka::{self as wire, Request};
use crate::protocol::{create_topics, produce, Acks, ErrorCode, Topic};
use crate::shard::Shard;
use crate::shard::{ClassicAnswer, ClassicCall};

pub use wire::{error_code, frame_len, is_kafka};

/// What became of one Kafka frame.
pub enum Answer {
    /// A response to send, in the request's turn.
    Send(Outgoing),
    /// No response: a produce with acks=0.
    Nothing,
    /// The request cannot be answered in its API's format (an API or
    /// version this broker does not serve, or bytes that are not a
    /// request): Kafka's brokers close the connection, and so does this one.
    Close(String),
}

/// Splits `topics` into those the session may `op` and those it may not.
fn split_denied<P>(shard: &Shard, session: &Session, op: Operation, topics: Vec<Topic<P>>) -> (Vec<Topic<P>>, Vec<Topic<P>>) {
    topics.into_iter().partition(|t| session.allows(shard, op, ResourceType::Topic, &t.name))
}

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;

/// Reads one Kafka frame (`body`: everything after the size) and runs its
/// API's handler. Until a connection that must authenticate has, only
/// ApiVersions and SASL are answered; anything else closes it, as
/// Kafka's brokers do.
pub async fn dispatch(shard: &Rc<Shard>, session: &Session, body: BytesMut, external: bool) -> Answer {
    let decoded = match wire::decode(&body) {
        Ok(d) => d,
        Err(refused) => return Answer::Close(refused.to_string()),
    };
    let (corr, version) = (decoded.correlation_id, decoded.api_version);
    crate::metrics::request("kafka", decoded.request.name());
    if !session.ready() && !matches!(decoded.request, Request::ApiVersions | Request::SaslHandshake(_) | Request::SaslAuthenticate(_)) {
        session.close();
        return Answer::Close(format!("a {} request before SASL authentication", decoded.request.name()));
    }
    let group_denied = |op: Operation, g: &str| !session.allows(shard, op, ResourceType::Group, g);
    let unanswered = |names: Vec<String>, (code, m): (ErrorCode, String)| -> Vec<TopicResult> {
        names.into_iter().map(|name| TopicResult { name, error: code, error_message: Some(m.clone()) }).collect()
    };
    match decoded.request {
        Request::ApiVersions => Answer::Send(responses::api_versions(corr, version)),
        Request::SaslHandshake(m) => {
            let code = match session.begin(shard, &m) {
                Ok(()) => 0,
                Err((code, why)) => {
                    tracing::debug!(%why, "SaslHandshake refused");
                    error_code(code)
                }
            };
            Answer::Send(responses::sasl_handshake(corr, version, code, Session::mechanisms(shard)))
        }
        Request::SaslAuthenticate(bytes) => match session.step(shard, &bytes) {
            SaslStep::Continue(b) | SaslStep::Done(b) => Answer::Send(responses::sasl_authenticate(corr, version, 0, None, b)),
            SaslStep::Failed(code, why) => Answer::Send(responses::sasl_authenticate(corr, version, error_code(code), Some(why), Vec::new())),
        },
        Request::Metadata(req, allow_auto_create) => {
            if allow_auto_create && shard.config.auto_create_topics {
                auto_create(shard, session, &req).await;
            }
            Answer::Send(responses::metadata(corr, version, super::metadata::handle(shard, session, req, external).await))
        }
        Request::FindCoordinator(req, true) if group_denied(Operation::Describe, &req.group) => {
            Answer::Send(responses::find_coordinator_refused(corr, version, GROUP_DENIED, denied(Operation::Describe, ResourceType::Group, &req.group)))
        }
        Request::FindCoordinator(req, true) => {
            Answer::Send(responses::find_coordinator(corr, version, super::groups::coordinator(shard, &req.group, external).await))
        }
        Request::FindCoordinator(_, false) => {
            Answer::Send(responses::find_coordinator_refused(corr, version, TRANSACTIONAL_ID_AUTHORIZATION_FAILED, NO_TRANSACTIONS.into()))
        }
        Request::InitProducerId(true) => {
            Answer::Send(responses::init_producer_id(corr, version, Err((TRANSACTIONAL_ID_AUTHORIZATION_FAILED, NO_TRANSACTIONS.into()))))
        }
        Request::InitProducerId(false) if !session.allows_any(shard, Operation::Write, ResourceType::Topic) => {
            Answer::Send(responses::init_producer_id(corr, version, Err((CLUSTER_DENIED, "an idempotent producer needs write on some topic".into()))))
        }
        Request::InitProducerId(false) => {
            let r = super::produce::init_producer_id(shard).await;
            let answer = match r.error {
                ErrorCode::None => Ok((r.producer_id, r.producer_epoch)),
                e => Err((error_code(e), r.error_message.unwrap_or_default())),
            };
            Answer::Send(responses::init_producer_id(corr, version, answer))
        }
        Request::JoinGroup(j) if group_denied(Operation::Read, &j.group) => {
            Answer::Send(responses::join_group(corr, version, Err((GROUP_DENIED, j.member_id))))
        }
        Request::SyncGroup(s) if group_denied(Operation::Read, &s.group) => Answer::Send(responses::sync_group(corr, version, Err(GROUP_DENIED))),
        Request::Heartbeat(group, ..) if group_denied(Operation::Read, &group) => Answer::Send(responses::heartbeat(corr, version, GROUP_DENIED)),
        Request::LeaveGroup(group, _) if group_denied(Operation::Read, &group) => Answer::Send(responses::leave_group(corr, version, GROUP_DENIED, Vec::new())),
        Request::JoinGroup(j) => Answer::Send(responses::join_group(corr, version, join_group(shard, j, decoded.client_id).await)),
        Request::SyncGroup(s) => {
            let call = ClassicCall::Sync { member_id: s.member_id, generation: s.generation, assignments: s.assignments };
            let answer = match classic(shard, s.group, call).await {
                Ok(ClassicAnswer::Synced(r)) => r.map_err(|e| refusal(&e)),
                Ok(_) => Err(UNKNOWN_SERVER_ERROR),
                Err(code) => Err(code),
            };
            Answer::Send(responses::sync_group(corr, version, answer))
        }
        Request::Heartbeat(group, member_id, generation) => {
            let code = match classic(shard, group, ClassicCall::Heartbeat { member_id, generation }).await {
                Ok(ClassicAnswer::Heartbeat(r)) => r.map_or_else(|e| refusal(&e), |()| 0),
                Ok(_) => UNKNOWN_SERVER_ERROR,
                Err(code) => code,
            };
            Answer::Send(responses::heartbeat(corr, version, code))
        }
        Request::LeaveGroup(group, members) => {
            let (code, each) = match classic(shard, group, ClassicCall::Leave(members.clone())).await {
                Ok(ClassicAnswer::Left(r)) => {
                    let each: Vec<(String, i16)> = members.into_iter().zip(r).map(|(m, r)| (m, r.map_or_else(|e| refusal(&e), |()| 0))).collect();
                    // Before v3 one member leaves: its error is the request's.
                    let code = if version < 3 { each.first().map_or(0, |e| e.1) } else { 0 };
                    (code, each)
                }
                Ok(_) => (UNKNOWN_SERVER_ERROR, Vec::new()),
                Err(code) => (code, Vec::new()),
            };
            Answer::Send(responses::leave_group(corr, version, code, each))
        }
        Request::ListGroups => {
            let mut groups = shard.list_classic_groups().await;
            groups.retain(|(g, _, _)| !group_denied(Operation::Describe, g));
            Answer::Send(responses::list_groups(corr, version, groups))
        }
        Request::DescribeGroups(groups) => {
            let mut out = Vec::with_capacity(groups.len());
            for g in groups {
                if group_denied(Operation::Describe, &g) {
                    out.push((g, Err(GROUP_DENIED)));
                    continue;
                }
                let d = match classic(shard, g.clone(), ClassicCall::Describe).await {
                    Ok(ClassicAnswer::Described(d)) => Ok(d),
                    Ok(_) => Err(UNKNOWN_SERVER_ERROR),
                    Err(code) => Err(code),
                };
                out.push((g, d));
            }
            Answer::Send(responses::describe_groups(corr, version, out))
        }
        Request::OffsetCommit(c) if group_denied(Operation::Read, &c.group) => {
            let answers = Topic::answer_all(&c.topics, std::iter::repeat(ErrorCode::GroupAuthorizationFailed), |p, e| (p.partition, e));
            Answer::Send(responses::offset_commit(corr, version, &answers))
        }
        Request::OffsetCommit(mut c) => {
            let (allowed, refused) = split_denied(shard, session, Operation::Read, std::mem::take(&mut c.topics));
            c.topics = allowed;
            let mut answers = if c.topics.is_empty() { Vec::new() } else { offset_commit(shard, c).await };
            answers
                .extend(refused.iter().map(|t| Topic::new(&t.name, t.partitions.iter().map(|p| (p.partition, ErrorCode::TopicAuthorizationFailed)).collect())));
            Answer::Send(responses::offset_commit(corr, version, &answers))
        }
        Request::OffsetFetch(f) if group_denied(Operation::Describe, &f.group) => {
            Answer::Send(responses::offset_fetch(corr, version, Err(ErrorCode::GroupAuthorizationFailed)))
        }
        Request::OffsetFetch(mut f) => {
            let refused = match f.topics.take() {
                Some(ts) => {
                    let (allowed, refused) = split_denied(shard, session, Operation::Describe, ts);
                    f.topics = Some(allowed);
                    refused
                }
                None => Vec::new(),
            };
            let mut answer = offset_fetch(shard, f).await;
            if let Ok(topics) = &mut answer {
                // All of a group's commits: only of the topics it may describe.
                topics.retain(|t| session.allows(shard, Operation::Describe, ResourceType::Topic, &t.name));
                topics.extend(
                    refused.iter().map(|t| Topic::new(&t.name, t.partitions.iter().map(|&p| (p, ErrorCode::TopicAuthorizationFailed, None)).collect())),
                );
            }
            Answer::Send(responses::offset_fetch(corr, version, answer))
        }
        Request::OffsetForLeaderEpoch(topics) => {
            let (topics, refused) = split_denied(shard, session, Operation::Describe, topics);
            let asked =
                topics.iter().flat_map(|t| t.partitions.iter().map(move |q| shard.epoch_end(&t.name, q.partition, q.current_leader_epoch, q.leader_epoch)));
            let ends = futures::future::join_all(asked).await;
            let mut answers = Topic::answer_all(&topics, ends, |q, e| (q.partition, e));
            let no = crate::shard::EpochEnd { error: ErrorCode::TopicAuthorizationFailed, leader_epoch: -1, end_offset: -1 };
            answers.extend(refused.iter().map(|t| Topic::new(&t.name, t.partitions.iter().map(|q| (q.partition, no)).collect())));
            Answer::Send(responses::offset_for_leader_epoch(corr, version, &answers))
        }
        Request::ListOffsets(mut req) => {
            let (allowed, refused) = split_denied(shard, session, Operation::Describe, std::mem::take(&mut req.topics));
            req.topics = allowed;
            let mut resp = super::list_offsets::handle(shard, req).await;
            resp.topics.extend(refused.iter().map(|t| {
                let ps = t
                    .partitions
                    .iter()
                    .map(|p| crate::protocol::list_offsets::PartitionResponse {
                        partition: p.partition,
                        error: ErrorCode::TopicAuthorizationFailed,
                        offset: -1,
                        timestamp: -1,
                    })
                    .collect();
                Topic::new(&t.name, ps)
            }));
            Answer::Send(responses::list_offsets(corr, version, resp))
        }
        Request::Fetch(mut req) => {
            let (allowed, refused) = split_denied(shard, session, Operation::Read, std::mem::take(&mut req.topics));
            req.topics = allowed;
            let answer =
                if req.topics.is_empty() { Ok(crate::protocol::fetch::Response { topics: Vec::new() }) } else { super::fetch::answer(shard, req).await };
            match answer {
                Ok(mut resp) => {
                    resp.topics.extend(refused.iter().map(|t| {
                        let ps = t
                            .partitions
                            .iter()
                            .map(|p| crate::protocol::fetch::PartitionResponse {
                                partition: p.partition,
                                error: ErrorCode::TopicAuthorizationFailed,
                                high_watermark: -1,
                                log_start_offset: -1,
                                records: Vec::new(),
                            })
                            .collect();
                        Topic::new(&t.name, ps)
                    }));
                    Answer::Send(responses::fetch(corr, version, resp))
                }
                Err((code, _)) => Answer::Send(responses::fetch_error(corr, version, error_code(code))),
            }
        }
        Request::Produce(req) if session.denied_topic(shard, Operation::Write, req.topics.iter().map(|t| t.name.as_str())).is_some() => {
            if req.acks == 0 {
                return Answer::Nothing;
            }
            Answer::Send(responses::produce_all(corr, version, &req.topics, TOPIC_DENIED))
        }
        Request::Produce(req) => produce(shard, corr, version, req, body).await,
        Request::CreateTopics(c) => {
            let names: Vec<String> = c.request.topics.iter().map(|t| t.name.clone()).collect();
            let refuse = |why: &str| unanswered(names.clone(), (ErrorCode::InvalidRequest, why.to_string()));
            let results = if c.validate_only {
                refuse("validate_only is not supported: create the topic")
            } else if c.assigned {
                refuse("manual replica assignments are not supported: the broker places replicas")
            } else {
                match super::topics::create_answer(shard, session, c.request).await {
                    Ok(resp) => resp.results,
                    Err(e) => unanswered(names, e),
                }
            };
            Answer::Send(responses::create_topics(corr, version, &results))
        }
        Request::DescribeConfigs(resources) => {
            shard.read_barrier().await;
            let md = shard.metadata();
            let answers: Vec<responses::ConfigAnswer> = resources
                .into_iter()
                .map(|r| {
                    if r.kind == RESOURCE_TOPIC && !session.allows(shard, Operation::Describe, ResourceType::Topic, &r.name) {
                        let message = Some(denied(Operation::Describe, ResourceType::Topic, &r.name));
                        return responses::ConfigAnswer { kind: r.kind, name: r.name, error: TOPIC_DENIED, message, configs: Vec::new() };
                    }
                    describe(&shard.config.log, &md, r)
                })
                .collect();
            drop(md);
            Answer::Send(responses::describe_configs(corr, version, &answers))
        }
        Request::DeleteTopics(req) => {
            let names = req.names.clone();
            let results = match super::topics::delete_answer(shard, session, req).await {
                Ok(resp) => resp.results,
                Err(e) => unanswered(names, e),
            };
            Answer::Send(responses::delete_topics(corr, version, &results))
        }
    }
}

/// Kafka's answer to what transactions need (a transactional id's
/// producer id, coordinator or produce): not retriable, so a client gives
/// up at once rather than wait for a coordinator that will not come.
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const NO_TRANSACTIONS: &str = "transactions are not supported: only idempotent producers are";

const UNKNOWN_SERVER_ERROR: i16 = -1;

/// A Kafka group request to its coordinator; the Kafka error code if the
/// group's name is not one, or this broker does not coordinate it.
async fn classic(shard: &Rc<Shard>, group: String, call: ClassicCall) -> Result<ClassicAnswer, i16> {
    if !crate::group::valid_group(&group) {
        return Err(error_code(ErrorCode::InvalidGroupId));
    }
    shard.classic_group(group, call).await.map_err(error_code)
}

/// Kafka's error code for a classic group's refusal.
fn refusal(r: &Refusal) -> i16 {
    match r {
        Refusal::UnknownMemberId => 25,
        Refusal::IllegalGeneration => 22,
        Refusal::RebalanceInProgress => 27,
        Refusal::InconsistentGroupProtocol => 23,
        Refusal::MemberIdRequired(_) => 79,
        Refusal::GroupMaxSizeReached => 81,
        Refusal::InvalidSessionTimeout => 26,
    }
}

/// JoinGroup: the member joins, and the answer waits for the join
/// barrier; a refusal carries the member id to use (the one MEMBER_ID_REQUIRED gives).
async fn join_group(shard: &Rc<Shard>, j: wire::JoinGroup, client_id: String) -> Result<classic::Joined, (i16, String)> {
    let member_id = j.member_id.clone();
    let join = classic::Join {
        member_id: j.member_id,
        client_id,
        client_host: String::new(),
        session_timeout_ms: j.session_timeout_ms,
        rebalance_timeout_ms: j.rebalance_timeout_ms,
        protocol_type: j.protocol_type,
        protocols: j.protocols,
        require_known_member_id: j.require_known_member_id,
    };
    match classic(shard, j.group, ClassicCall::Join(join)).await {
        Ok(ClassicAnswer::Joined(Ok(joined))) => Ok(joined),
        Ok(ClassicAnswer::Joined(Err(Refusal::MemberIdRequired(id)))) => Err((refusal(&Refusal::MemberIdRequired(String::new())), id)),
        Ok(ClassicAnswer::Joined(Err(r))) => Err((refusal(&r), member_id)),
        Ok(_) => Err((UNKNOWN_SERVER_ERROR, member_id)),
        Err(code) => Err((code, member_id)),
    }
}

/// OffsetCommit: the positions go to the group's coordinator as the
/// native protocol's do, with the leader epoch and metadata Kafka's
/// clients give. Generation -1 and no member id: a consumer outside
/// membership (assigned partitions), accepted while the group has no
/// members.
async fn offset_commit(shard: &Rc<Shard>, c: wire::OffsetCommit) -> Vec<Topic<(u32, ErrorCode)>> {
    let n: usize = c.topics.iter().map(|t| t.partitions.len()).sum();
    let codes = match super::offsets::refusal(&c.group, n) {
        Some((code, _)) => vec![code; n],
        None => {
            let member = (c.generation != -1 || !c.member_id.is_empty()).then(|| (c.member_id.clone(), c.generation));
            let wanted = c
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (t.name.clone(), p.partition, Committed { offset: p.offset, leader_epoch: p.leader_epoch, metadata: p.metadata.clone() }))
                })
                .collect();
            shard.commit_offsets(c.group.clone(), member, wanted).await
        }
    };
    Topic::answer_all(&c.topics, codes, |p, e| (p.partition, e))
}

/// OffsetFetch: the partitions asked for, or every one the group
/// committed.
async fn offset_fetch(shard: &Rc<Shard>, f: wire::OffsetFetch) -> responses::FetchedOffsets {
    if let Some((code, _)) = super::offsets::refusal(&f.group, 0) {
        return Err(code);
    }
    let Some(topics) = f.topics else {
        let mut out: Vec<Topic<(u32, ErrorCode, Option<Committed>)>> = Vec::new();
        for (t, p, c) in shard.group_offsets(f.group).await? {
            match out.last_mut() {
                Some(last) if last.name == t => last.partitions.push((p, ErrorCode::None, Some(c))),
                _ => out.push(Topic { name: t, partitions: vec![(p, ErrorCode::None, Some(c))] }),
            }
        }
        return Ok(out);
    };
    if let Some((code, _)) = super::offsets::refusal(&f.group, topics.iter().map(|t| t.partitions.len()).sum()) {
        return Err(code);
    }
    let wanted = topics.iter().flat_map(|t| t.partitions.iter().map(|&p| (t.name.clone(), p))).collect();
    let found = shard.fetch_offsets(f.group, wanted).await;
    Ok(Topic::answer_all(&topics, found, |&p, (e, c)| (p, e, c)))
}

/// Kafka's resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's config sources.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
/// Kafka's INVALID_REQUEST, for a resource type not described.
const INVALID_REQUEST: i16 = 42;

/// A topic's settings (each one it sets, else the broker's default), or a
/// broker's (none are settable through Kafka's protocol: an empty list).
fn describe(base: &crate::storage::LogConfig, md: &crate::cluster::metadata::Metadata, r: wire::ConfigResource) -> responses::ConfigAnswer {
    let mut a = responses::ConfigAnswer { kind: r.kind, name: r.name, error: 0, message: None, configs: Vec::new() };
    match r.kind {
        RESOURCE_TOPIC => match md.topics.get(&a.name) {
            None => {
                a.error = error_code(ErrorCode::UnknownTopicOrPartition);
                a.message = Some(format!("no topic named '{}'", a.name));
            }
            Some(t) => {
                let limit = |v: Option<u64>| v.map_or(-1, |v| v as i64);
                let defaults = [
                    ("retention.ms", limit(base.retention_max_age_ms)),
                    ("retention.bytes", limit(base.retention_max_bytes)),
                    ("segment.bytes", base.segment_max_bytes as i64),
                    ("segment.ms", if base.segment_max_age_ms == u64::MAX { -1 } else { base.segment_max_age_ms as i64 }),
                ];
                for (k, default) in defaults {
                    if r.keys.as_ref().is_some_and(|keys| !keys.iter().any(|x| x == k)) {
                        continue;
                    }
                    let (value, source) = match t.configs.get(k) {
                        Some(v) => (v.clone(), SOURCE_TOPIC),
                        None => (default.to_string(), SOURCE_DEFAULT),
                    };
                    a.configs.push((k.to_string(), value, source));
                }
            }
        },
        RESOURCE_BROKER => {}
        _ => {
            a.error = INVALID_REQUEST;
            a.message = Some(format!("resource type {} is not described (topics are 2, brokers 4)", r.kind));
        }
    }
    a
}

/// Creates the topics a Metadata request names that do not exist, with
/// one partition and one replica (Kafka's `num.partitions` and
/// `default.replication.factor` defaults). A topic another request
/// created meanwhile is no error; any other refusal shows in the answer
/// as the topic being unknown.
async fn auto_create(shard: &Rc<Shard>, session: &Session, req: &crate::protocol::metadata::Request) {
    let Some(names) = &req.topics else { return };
    shard.read_barrier().await;
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !shard.metadata().topics.contains_key(n.as_str()))
        .map(|n| create_topics::NewTopic { name: n.clone(), partitions: 1, replication_factor: 1, configs: Vec::new() })
        .collect();
    if missing.is_empty() {
        return;
    }
    let n = missing.len();
    if let Ok(r) = super::topics::create_answer(shard, session, create_topics::Request { topics: missing, timeout_ms: 30_000 }).await {
        let created = r.results.iter().filter(|t| t.error == ErrorCode::None).count();
        tracing::info!(created, asked = n, "created topics a Kafka client's Metadata request named (auto_create_topics)");
    }
}

/// Produce: each partition's records leave the frame as their own buffer,
/// without a copy, and are appended as they came.
async fn produce(shard: &Rc<Shard>, corr: i32, version: i16, req: wire::Produce, mut body: BytesMut) -> Answer {
    let acks = match req.acks {
        0 => Acks::None,
        1 => Acks::Leader,
        -1 => Acks::All,
        _ => return Answer::Send(responses::produce_all(corr, version, &req.topics, error_code(ErrorCode::InvalidRequiredAcks))),
    };
    if req.transactional {
        return Answer::Send(responses::produce_all(corr, version, &req.topics, TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
    }
    let mut taken = 0usize;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (partition, range) in t.partitions {
            let records = match range {
                Some(range) => {
                    body.advance(range.start - taken);
                    taken = range.end;
                    body.split_to(range.len())
                }
                None => BytesMut::new(),
            };
            partitions.push(produce::Partition { partition, records });
        }
        topics.push(Topic { name: t.name, partitions });
    }
    let request = produce::Request { acks, timeout_ms: u32::try_from(req.timeout_ms).unwrap_or(0), topics };
    match super::produce::answer(shard, request).await {
        Some(resp) => Answer::Send(responses::produce(corr, version, resp)),
        None => Answer::Nothing,
    }
}
