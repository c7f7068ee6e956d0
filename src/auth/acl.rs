//! Access-control entries: a principal may do an operation on a resource
//! (a topic, a group or the cluster) named literally or by a prefix.
//!
//! Entries only allow; what none allows is denied (there are no deny
//! entries). As in Kafka, read, write, delete and alter each imply
//! describe, and `All` is every operation.
//!
//! The entries live in the quorum's metadata; every shard checks requests
//! against its own copy, with [`Acls::allows`], a scan with no allocation.

use serde::{Deserialize, Serialize};

/// Most entries the cluster holds, so the copy each shard keeps and scans
/// stays small.
pub const MAX_ACLS: usize = 10_000;
/// The cluster resource's name, as Kafka's.
pub const CLUSTER: &str = "kafka-cluster";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Describe,
    Alter,
    All,
}

impl Operation {
    pub const ALL: [Operation; 7] =
        [Operation::Read, Operation::Write, Operation::Create, Operation::Delete, Operation::Describe, Operation::Alter, Operation::All];

    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Describe => "describe",
            Operation::Alter => "alter",
            Operation::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether an entry for `self` allows `asked`.
    fn covers(self, asked: Operation) -> bool {
        self == asked
            || self == Operation::All
            || (asked == Operation::Describe && matches!(self, Operation::Read | Operation::Write | Operation::Delete | Operation::Alter))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
}

impl ResourceType {
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Cluster => "cluster",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ResourceType::Topic, ResourceType::Group, ResourceType::Cluster].into_iter().find(|r| r.name().eq_ignore_ascii_case(s.trim()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    /// The resource's exact name; `*` is every resource of its type.
    Literal,
    /// Every resource whose name starts with it.
    Prefixed,
}

impl PatternType {
    pub fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "literal",
            PatternType::Prefixed => "prefixed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [PatternType::Literal, PatternType::Prefixed].into_iter().find(|r| r.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// One entry: `principal` (`User:NAME`, or `User:*` for everyone
/// authenticated) may do `operation` on the resources it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Acl {
    pub principal: String,
    pub operation: Operation,
    pub resource: ResourceType,
    pub name: String,
    pub pattern: PatternType,
}

impl Acl {
    /// Checks an entry a client asked to add.
    pub fn validate(&self) -> Result<(), String> {
        let Some(user) = self.principal.strip_prefix("User:") else {
            return Err(format!("principal '{}' must be User:NAME (or User:*)", self.principal));
        };
        if user.is_empty() || self.principal.len() > 256 {
            return Err("a principal's name must have 1 to 251 bytes".into());
        }
        if self.name.is_empty() || self.name.len() > 256 {
            return Err("a resource name must have 1 to 256 bytes".into());
        }
        Ok(())
    }

    fn matches(&self, principal: &str, authenticated: bool, op: Operation, resource: ResourceType, name: &str) -> bool {
        self.resource == resource
            && self.operation.covers(op)
            && (self.principal == principal || (self.principal == "User:*" && authenticated))
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == "*",
                PatternType::Prefixed => name.starts_with(&self.name),
            }
    }
}

impl std::fmt::Display for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} may {} {} {} ({})", self.principal, self.operation.name(), self.resource.name(), self.name, self.pattern.name())
    }
}

/// The entries and super users a shard checks against.
pub trait Acls {
    fn entries(&self) -> &std::collections::BTreeSet<Acl>;

    /// Whether `principal` (Kafka's spelling) may do `op` on a resource.
    fn allows(&self, principal: &str, authenticated: bool, op: Operation, resource: ResourceType, name: &str) -> bool {
        self.entries().iter().any(|a| a.matches(principal, authenticated, op, resource, name))
    }

    /// Whether `principal` may do `op` on some resource of this type: an
    /// idempotent producer needs write on some topic (Kafka's KIP-679).
    fn allows_any(&self, principal: &str, authenticated: bool, op: Operation, resource: ResourceType) -> bool {
        self.entries()
            .iter()
            .any(|a| a.resource == resource && a.operation.covers(op) && (a.principal == principal || (a.principal == "User:*" && authenticated)))
    }
}

impl Acls for std::collections::BTreeSet<Acl> {
    fn entries(&self) -> &std::collections::BTreeSet<Acl> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn acl(p: &str, op: Operation, r: ResourceType, name: &str, pattern: PatternType) -> Acl {
        Acl { principal: p.into(), operation: op, resource: r, name: name.into(), pattern }
    }

    #[test]
    fn literal_prefixed_wildcard_and_implied_describe() {
        use Operation::*;
        use PatternType::*;
        use ResourceType::*;
        let set: BTreeSet<Acl> = [
            acl("User:alice", Write, Topic, "orders", Literal),
            acl("User:alice", Read, Group, "billing-", Prefixed),
            acl("User:*", Describe, Topic, "public", Literal),
            acl("User:bob", All, Topic, "*", Literal),
        ]
        .into();
        assert!(set.allows("User:alice", true, Write, Topic, "orders"));
        assert!(set.allows("User:alice", true, Describe, Topic, "orders"), "write implies describe");
        assert!(!set.allows("User:alice", true, Read, Topic, "orders"));
        assert!(!set.allows("User:alice", true, Write, Topic, "orders2"), "literal is exact");
        assert!(set.allows("User:alice", true, Read, Group, "billing-eu"));
        assert!(!set.allows("User:alice", true, Read, Group, "billin"));
        assert!(set.allows("User:carol", true, Describe, Topic, "public"));
        assert!(!set.allows("User:ANONYMOUS", false, Describe, Topic, "public"), "User:* is every authenticated user");
        assert!(set.allows("User:bob", true, Delete, Topic, "anything"));
        assert!(!set.allows("User:bob", true, Read, Group, "g"), "a topic entry grants nothing on groups");
        assert!(set.allows_any("User:alice", true, Write, Topic));
        assert!(!set.allows_any("User:carol", true, Write, Topic));
    }

    #[test]
    fn validation() {
        assert!(acl("alice", Operation::Read, ResourceType::Topic, "t", PatternType::Literal).validate().is_err());
        assert!(acl("User:", Operation::Read, ResourceType::Topic, "t", PatternType::Literal).validate().is_err());
        assert!(acl("User:a", Operation::Read, ResourceType::Topic, "", PatternType::Literal).validate().is_err());
        assert!(acl("User:a", Operation::Read, ResourceType::Topic, "t", PatternType::Literal).validate().is_ok());
    }
}
