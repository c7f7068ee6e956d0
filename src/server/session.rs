//! One connection's security state: who the client is (its TLS
//! certificate, then its SASL user), whether it must still authenticate,
//! and the checks of its requests against the ACLs of this shard's copy
//! of the metadata.
//!
//! Until a connection that must authenticate has done so, the connection
//! reads and answers one request at a time (`server::connection`), and
//! answers nothing but ApiVersions and SASL; a failed exchange closes it.

use std::cell::{Cell, RefCell};

use crate::auth::acl::{Acls, Operation, ResourceType, CLUSTER};
use crate::auth::scram::{Mechanism, ServerExchange, ServerStep};
use crate::auth::Principal;
use crate::protocol::ErrorCode;
use crate::shard::Shard;

pub struct Session {
    principal: RefCell<Principal>,
    /// The principal as ACLs name it.
    name: RefCell<String>,
    /// A super user, or a peer broker: every check passes.
    unchecked: Cell<bool>,
    /// SASL is required and has not succeeded yet.
    pending: Cell<bool>,
    exchange: RefCell<Option<ServerExchange>>,
    /// Close the connection after the answer being sent.
    closing: Cell<bool>,
}

/// What a SASL message led to.
pub enum SaslStep {
    /// Send these bytes; the exchange goes on.
    Continue(Vec<u8>),
    /// Authenticated; send these final bytes.
    Done(Vec<u8>),
    /// Refused: answer the error, then close the connection.
    Failed(ErrorCode, String),
}

impl Session {
    pub fn new(principal: Principal, shard: &Shard) -> Self {
        let sasl = !shard.config.sasl().unwrap_or_default().is_empty();
        let s = Session {
            pending: Cell::new(sasl && !matches!(principal, Principal::Broker(_))),
            principal: RefCell::new(Principal::Anonymous),
            name: RefCell::new(String::new()),
            unchecked: Cell::new(false),
            exchange: RefCell::new(None),
            closing: Cell::new(false),
        };
        s.set_principal(principal, shard);
        s
    }

    fn set_principal(&self, p: Principal, shard: &Shard) {
        let name = p.name();
        self.unchecked.set(matches!(p, Principal::Broker(_)) || shard.config.super_user_list().contains(&name));
        *self.name.borrow_mut() = name;
        *self.principal.borrow_mut() = p;
    }

    /// Whether the connection may send any request (no SASL is pending).
    pub fn ready(&self) -> bool {
        !self.pending.get()
    }

    /// Marks the connection to close once its answer is sent.
    pub fn close(&self) {
        self.closing.set(true);
    }

    pub fn closing(&self) -> bool {
        self.closing.get()
    }

    pub fn principal(&self) -> Principal {
        self.principal.borrow().clone()
    }

    /// Whether anything proved who the client is (`User:*` entries apply).
    fn authenticated(&self) -> bool {
        !matches!(*self.principal.borrow(), Principal::Anonymous)
    }

    pub fn is_broker(&self) -> bool {
        matches!(*self.principal.borrow(), Principal::Broker(_))
    }

    /// The mechanisms this broker offers, by name.
    pub fn mechanisms(shard: &Shard) -> Vec<String> {
        shard.config.sasl().unwrap_or_default().iter().map(|m| m.name().to_string()).collect()
    }

    /// Begins an exchange with `mechanism` (Kafka's SaslHandshake, or a
    /// native SaslAuthenticate that names one).
    pub fn begin(&self, shard: &Shard, mechanism: &str) -> Result<(), (ErrorCode, String)> {
        let offered = shard.config.sasl().unwrap_or_default();
        if !self.pending.get() {
            return Err((ErrorCode::IllegalSaslState, "this connection is not waiting to authenticate".into()));
        }
        if self.exchange.borrow().is_some() {
            self.closing.set(true);
            return Err((ErrorCode::IllegalSaslState, "a SASL exchange is already in progress".into()));
        }
        match Mechanism::parse(mechanism).filter(|m| offered.contains(m)) {
            Some(m) => {
                *self.exchange.borrow_mut() = Some(ServerExchange::new(m));
                Ok(())
            }
            None => Err((
                ErrorCode::UnsupportedSaslMechanism,
                format!("SASL mechanism '{mechanism}' is not offered; this broker offers {}", Self::mechanisms(shard).join(", ")),
            )),
        }
    }

    /// Takes the client's next SASL message.
    pub fn step(&self, shard: &Shard, bytes: &[u8]) -> SaslStep {
        let mut ex = self.exchange.borrow_mut();
        let Some(exchange) = ex.as_mut() else {
            return SaslStep::Failed(ErrorCode::IllegalSaslState, "no SASL exchange is in progress: name a mechanism first".into());
        };
        let m = exchange.mechanism();
        let step = exchange.step(bytes, |user| shard.metadata().users.get(user).and_then(|c| c.get(&m)).cloned());
        match step {
            Ok(ServerStep::Challenge(b)) => SaslStep::Continue(b),
            Ok(ServerStep::Success { user, message }) => {
                *ex = None;
                drop(ex);
                self.pending.set(false);
                self.set_principal(Principal::User(user), shard);
                SaslStep::Done(message)
            }
            Err(e) => {
                *ex = None;
                self.closing.set(true);
                crate::metrics::count(|c| c.authentication_failures += 1);
                tracing::info!(error = %e, "a SASL authentication failed");
                SaslStep::Failed(ErrorCode::SaslAuthenticationFailed, e.to_string())
            }
        }
    }

    /// Whether the principal may do `op` on a resource: always without
    /// the ACL authorizer, for super users and for peer brokers.
    pub fn allows(&self, shard: &Shard, op: Operation, resource: ResourceType, name: &str) -> bool {
        if !shard.config.acl_authorizer() || self.unchecked.get() {
            return true;
        }
        let ok = shard.metadata().acls.allows(&self.name.borrow(), self.authenticated(), op, resource, name);
        if !ok {
            crate::metrics::count(|c| c.authorization_denials += 1);
        }
        ok
    }

    /// [`Self::allows`] on the cluster.
    pub fn allows_cluster(&self, shard: &Shard, op: Operation) -> bool {
        self.allows(shard, op, ResourceType::Cluster, CLUSTER)
    }

    /// Whether the principal may do `op` on some resource of a type.
    pub fn allows_any(&self, shard: &Shard, op: Operation, resource: ResourceType) -> bool {
        if !shard.config.acl_authorizer() || self.unchecked.get() {
            return true;
        }
        shard.metadata().acls.allows_any(&self.name.borrow(), self.authenticated(), op, resource)
    }

    /// The first of `topics` the principal may not do `op` on.
    pub fn denied_topic<'a>(&self, shard: &Shard, op: Operation, mut topics: impl Iterator<Item = &'a str>) -> Option<&'a str> {
        topics.find(|t| !self.allows(shard, op, ResourceType::Topic, t))
    }

    /// Whether a replica's fetch is allowed: from a peer broker when the
    /// brokers speak mutual TLS; otherwise (their network is trusted)
    /// from anyone.
    pub fn may_replicate(&self, shard: &Shard) -> bool {
        self.is_broker() || shard.config.peer_tls_ca.is_none()
    }
}

/// The message of an authorization error; the same whether or not the
/// resource exists.
pub fn denied(op: Operation, resource: ResourceType, name: &str) -> String {
    format!("not authorized to {} {} '{name}'", op.name(), resource.name())
}
