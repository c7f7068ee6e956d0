//! Who a client is, and what it may do.
//!
//! - [`scram`]: SASL SCRAM-SHA-256/512, sans-IO, both sides.
//! - [`acl`]: access-control entries and the check a shard runs against
//!   its own copy of them.
//! - A principal is `User:NAME`: the SASL user, or the common name of a
//!   client certificate; a broker connecting with the cluster's own
//!   certificate is a [`Principal::Broker`].

pub mod acl;
pub mod scram;

pub use scram::Mechanism;

/// A client's SASL credentials.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub mechanism: Mechanism,
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Nothing proved: a plaintext or TLS connection without a client
    /// certificate or SASL. Kafka's `User:ANONYMOUS`.
    Anonymous,
    /// A SASL user or a client certificate's common name.
    User(String),
    /// Another broker of this cluster, proved by the cluster's peer
    /// certificate (its common name).
    Broker(String),
}

impl Principal {
    /// Kafka's spelling, as ACLs and super users name it.
    pub fn name(&self) -> String {
        match self {
            Principal::Anonymous => "User:ANONYMOUS".into(),
            Principal::User(u) => format!("User:{u}"),
            Principal::Broker(b) => format!("Broker:{b}"),
        }
    }
}
