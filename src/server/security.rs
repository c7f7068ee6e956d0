//! SASL on the native protocol, and the users and ACLs kept in the
//! quorum: AlterUsers, ListUsers, AlterAcls, ListAcls. Authorization of
//! the alterations (alter on the cluster) and listings (describe) is
//! `server::authorize`'s.

use std::rc::Rc;

use super::session::{SaslStep, Session};
use crate::auth::acl::{Acl, Operation, PatternType, ResourceType};
use crate::auth::scram::{Mechanism, ScramCredential};
use crate::cluster::metadata::{Command, MetadataError};
use crate::protocol::create_topics::TopicResult;
use crate::protocol::sasl_authenticate;
use crate::protocol::security::{AclEntry, AlterAcls, AlterAclsResponse, AlterUsers, AlterUsersResponse, ListAclsResponse, ListUsersResponse};
use crate::protocol::ErrorCode;
use crate::shard::{metadata_code, outcomes, Shard};

/// Most users or entries one request may alter.
pub const MAX_PER_REQUEST: usize = 1000;

/// One SaslAuthenticate: the first names the mechanism.
pub fn sasl_authenticate(shard: &Shard, session: &Session, req: sasl_authenticate::Request) -> sasl_authenticate::Response {
    let answer = |error, message: Option<String>, auth_bytes| sasl_authenticate::Response {
        error,
        error_message: message,
        auth_bytes,
        mechanisms: Session::mechanisms(shard),
    };
    if let Some(m) = &req.mechanism {
        if let Err((code, message)) = session.begin(shard, m) {
            session.close();
            return answer(code, Some(message), Vec::new());
        }
    }
    match session.step(shard, &req.auth_bytes) {
        SaslStep::Continue(b) | SaslStep::Done(b) => answer(ErrorCode::None, None, b),
        SaslStep::Failed(code, message) => {
            session.close();
            answer(code, Some(message), Vec::new())
        }
    }
}

fn result(name: String, r: Result<(), MetadataError>) -> TopicResult {
    match r {
        Ok(()) => TopicResult { name, error: ErrorCode::None, error_message: None },
        Err(e) => TopicResult { name, error: metadata_code(&e), error_message: Some(e.to_string()) },
    }
}

fn invalid(name: String, why: String) -> TopicResult {
    TopicResult { name, error: ErrorCode::InvalidRequest, error_message: Some(why) }
}

/// Proposes `command` and gives each of `names` its result; `refused`
/// (entries that did not parse) are answered first, as they came.
async fn propose(shard: &Shard, command: Option<Command>, names: Vec<String>, refused: Vec<TopicResult>) -> Vec<TopicResult> {
    let n = names.len();
    let res = match command {
        Some(c) => outcomes(shard.propose(c).await, n),
        None => Vec::new(),
    };
    refused.into_iter().chain(names.into_iter().zip(res).map(|(name, r)| result(name, r))).collect()
}

pub async fn alter_users(shard: &Rc<Shard>, req: AlterUsers) -> AlterUsersResponse {
    if req.upserts.len() + req.deletions.len() > MAX_PER_REQUEST {
        let r = invalid(String::new(), format!("at most {MAX_PER_REQUEST} users per request"));
        return AlterUsersResponse { results: vec![r] };
    }
    let mut upserts = Vec::new();
    let mut names = Vec::new();
    let mut refused = Vec::new();
    for c in req.upserts {
        match Mechanism::parse(&c.mechanism) {
            Some(m) => {
                names.push(c.user.clone());
                let cred = ScramCredential { salt: c.salt, iterations: c.iterations, stored_key: c.stored_key, server_key: c.server_key };
                upserts.push((c.user, m, cred));
            }
            None => refused.push(invalid(c.user, format!("'{}' is not SCRAM-SHA-256 or SCRAM-SHA-512", c.mechanism))),
        }
    }
    names.extend(req.deletions.iter().cloned());
    let command = (!names.is_empty()).then_some(Command::AlterUsers { upserts, deletions: req.deletions });
    AlterUsersResponse { results: propose(shard, command, names, refused).await }
}

pub async fn list_users(shard: &Rc<Shard>) -> ListUsersResponse {
    shard.read_barrier().await;
    let users = shard.metadata().users.iter().map(|(u, ms)| (u.clone(), ms.keys().map(|m| m.name().to_string()).collect())).collect();
    ListUsersResponse { error: ErrorCode::None, error_message: None, users }
}

/// An entry as the wire spells it, read; the error says which field.
pub fn parse_acl(e: &AclEntry) -> Result<Acl, String> {
    let operation =
        Operation::parse(&e.operation).ok_or_else(|| format!("operation '{}' is none of read, write, create, delete, describe, alter, all", e.operation))?;
    let resource = ResourceType::parse(&e.resource).ok_or_else(|| format!("resource '{}' is none of topic, group, cluster", e.resource))?;
    let pattern = if e.pattern.is_empty() {
        PatternType::Literal
    } else {
        PatternType::parse(&e.pattern).ok_or_else(|| format!("pattern '{}' is neither literal nor prefixed", e.pattern))?
    };
    let acl = Acl { principal: e.principal.clone(), operation, resource, name: e.name.clone(), pattern };
    acl.validate()?;
    Ok(acl)
}

pub fn acl_entry(a: &Acl) -> AclEntry {
    AclEntry {
        principal: a.principal.clone(),
        operation: a.operation.name().into(),
        resource: a.resource.name().into(),
        name: a.name.clone(),
        pattern: a.pattern.name().into(),
    }
}

pub async fn alter_acls(shard: &Rc<Shard>, req: AlterAcls) -> AlterAclsResponse {
    if req.additions.len() + req.removals.len() > MAX_PER_REQUEST {
        let r = invalid(String::new(), format!("at most {MAX_PER_REQUEST} entries per request"));
        return AlterAclsResponse { results: vec![r] };
    }
    let mut refused = Vec::new();
    let mut names = Vec::new();
    let mut read = |entries: Vec<AclEntry>| -> Vec<Acl> {
        let mut out = Vec::new();
        for e in entries {
            match parse_acl(&e) {
                Ok(a) => {
                    names.push(a.to_string());
                    out.push(a);
                }
                Err(why) => refused.push(invalid(format!("{} {} {} {}", e.principal, e.operation, e.resource, e.name), why)),
            }
        }
        out
    };
    let additions = read(req.additions);
    let removals = read(req.removals);
    let command = (!names.is_empty()).then_some(Command::AlterAcls { additions, removals });
    AlterAclsResponse { results: propose(shard, command, names, refused).await }
}

pub async fn list_acls(shard: &Rc<Shard>) -> ListAclsResponse {
    shard.read_barrier().await;
    let acls = shard.metadata().acls.iter().map(acl_entry).collect();
    ListAclsResponse { error: ErrorCode::None, error_message: None, acls }
}

/// Creates the bootstrap user (`sasl_bootstrap_user`) with both SCRAM
/// mechanisms if the cluster does not have it, retrying until the quorum
/// takes it. An existing user is left as it is: its password may have
/// been changed since.
pub async fn bootstrap_user(shard: Rc<Shard>) {
    let user = shard.config.sasl_bootstrap_user.clone();
    loop {
        shard.read_barrier().await;
        if shard.metadata().users.contains_key(&user) || shard.is_shutting_down() {
            return;
        }
        let password = shard.config.sasl_bootstrap_password.clone();
        let upserts = Mechanism::ALL.iter().map(|&m| (user.clone(), m, ScramCredential::new(m, &password, crate::auth::scram::DEFAULT_ITERATIONS))).collect();
        match shard.propose(Command::AlterUsers { upserts, deletions: Vec::new() }).await {
            Ok(_) => {
                tracing::info!(%user, "created the bootstrap SASL user");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "the bootstrap user is not created yet; retrying");
                crate::rt::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}
