//! `shardlog users` and `shardlog acls`: the cluster's SCRAM users and
//! access-control entries, kept in its metadata quorum. Kafka's
//! `kafka-configs --entity-type users` and `kafka-acls`.

use clap::{Args, Subcommand};

use super::client::{broker_err, exit, fail, Bootstrap};
use crate::auth::scram::{Mechanism, ScramCredential, DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::protocol::security::{
    AclEntry, AlterAcls, AlterAclsResponse, AlterUsers, AlterUsersResponse, Credential, ListAcls, ListAclsResponse, ListUsers, ListUsersResponse,
};
use crate::protocol::ErrorCode;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user, or set its password: its SCRAM credentials are
    /// salted and derived here, so the password never reaches a broker.
    Create(UserCreateArgs),
    /// Delete a user and every credential it has.
    Delete(UserArg),
    /// List the users and their mechanisms.
    List(Bootstrap),
}

#[derive(Debug, Args)]
pub struct UserCreateArgs {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// The user's name
    #[arg(long)]
    pub name: String,
    /// The user's password (better in SHARDLOG_NEW_PASSWORD than on a command line)
    #[arg(long, env = "SHARDLOG_NEW_PASSWORD", hide_env_values = true)]
    pub new_password: String,
    /// Mechanisms to store a credential for [default: both]
    #[arg(long = "mechanism", value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub mechanisms: Vec<String>,
    /// PBKDF2 iterations
    #[arg(long, default_value_t = DEFAULT_ITERATIONS, value_parser = clap::value_parser!(u32).range(i64::from(MIN_ITERATIONS)..=i64::from(MAX_ITERATIONS)))]
    pub iterations: u32,
}

#[derive(Debug, Args)]
pub struct UserArg {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum AclsCommand {
    /// Allow a principal an operation on a resource.
    Add(AclArgs),
    /// Remove an entry (the same flags as it was added with).
    Remove(AclArgs),
    /// List every entry.
    List(Bootstrap),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("resource").required(true).args(["topic", "group", "cluster"])))]
pub struct AclArgs {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// Who: User:NAME, or User:* for every authenticated user
    #[arg(long)]
    pub principal: String,
    /// read, write, create, delete, describe, alter or all
    #[arg(long, value_parser = ["read", "write", "create", "delete", "describe", "alter", "all"])]
    pub operation: String,
    /// A topic (or * for every topic)
    #[arg(long)]
    pub topic: Option<String>,
    /// A consumer group (or * for every group)
    #[arg(long)]
    pub group: Option<String>,
    /// The cluster (creating topics, managing users and ACLs)
    #[arg(long)]
    pub cluster: bool,
    /// The name is a prefix: every topic or group starting with it
    #[arg(long)]
    pub prefixed: bool,
}

impl AclArgs {
    fn entry(&self) -> AclEntry {
        let (resource, name) = match (&self.topic, &self.group) {
            (Some(t), _) => ("topic", t.clone()),
            (_, Some(g)) => ("group", g.clone()),
            _ => ("cluster", crate::auth::acl::CLUSTER.to_string()),
        };
        AclEntry {
            principal: self.principal.clone(),
            operation: self.operation.clone(),
            resource: resource.into(),
            name,
            pattern: if self.prefixed { "prefixed" } else { "literal" }.into(),
        }
    }
}

/// Prints each result; FAILED if any is an error.
fn report(results: &[crate::protocol::create_topics::TopicResult], done: &str) -> i32 {
    let mut code = exit::OK;
    let mut said = std::collections::BTreeSet::new();
    for r in results.iter().filter(|r| r.error != ErrorCode::None || said.insert(r.name.clone())) {
        if r.error == ErrorCode::None {
            println!("{done} {}", r.name);
        } else {
            eprintln!("shardlog: {}: {:?}: {}", r.name, r.error, r.error_message.as_deref().unwrap_or_default());
            code = exit::FAILED;
        }
    }
    code
}

pub fn users(cmd: UsersCommand) -> i32 {
    let b = match &cmd {
        UsersCommand::Create(a) => &a.bootstrap,
        UsersCommand::Delete(a) => &a.bootstrap,
        UsersCommand::List(b) => b,
    };
    let mut c = match b.connect() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match cmd {
        UsersCommand::Create(a) => {
            let mechanisms: Vec<Mechanism> =
                if a.mechanisms.is_empty() { Mechanism::ALL.to_vec() } else { a.mechanisms.iter().filter_map(|m| Mechanism::parse(m)).collect() };
            let upserts = mechanisms
                .into_iter()
                .map(|m| {
                    let c = ScramCredential::new(m, &a.new_password, a.iterations);
                    Credential {
                        user: a.name.clone(),
                        mechanism: m.name().into(),
                        salt: c.salt,
                        iterations: c.iterations,
                        stored_key: c.stored_key,
                        server_key: c.server_key,
                    }
                })
                .collect();
            match c.call::<_, AlterUsersResponse>(&AlterUsers { upserts, deletions: Vec::new() }) {
                Ok(r) => report(&r.results, "set credentials of"),
                Err(e) => broker_err(e, "creating a user"),
            }
        }
        UsersCommand::Delete(a) => match c.call::<_, AlterUsersResponse>(&AlterUsers { upserts: Vec::new(), deletions: vec![a.name] }) {
            Ok(r) => report(&r.results, "deleted"),
            Err(e) => broker_err(e, "deleting a user"),
        },
        UsersCommand::List(_) => match c.call::<_, ListUsersResponse>(&ListUsers) {
            Ok(r) if r.error != ErrorCode::None => fail(format!("listing users: {:?}: {}", r.error, r.error_message.unwrap_or_default())),
            Ok(r) => {
                for (u, ms) in r.users {
                    println!("{u}\t{}", ms.join(","));
                }
                exit::OK
            }
            Err(e) => broker_err(e, "listing users"),
        },
    }
}

pub fn acls(cmd: AclsCommand) -> i32 {
    let b = match &cmd {
        AclsCommand::Add(a) | AclsCommand::Remove(a) => &a.bootstrap,
        AclsCommand::List(b) => b,
    };
    let mut c = match b.connect() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match cmd {
        AclsCommand::Add(a) => match c.call::<_, AlterAclsResponse>(&AlterAcls { additions: vec![a.entry()], removals: Vec::new() }) {
            Ok(r) => report(&r.results, "added:"),
            Err(e) => broker_err(e, "adding an ACL"),
        },
        AclsCommand::Remove(a) => match c.call::<_, AlterAclsResponse>(&AlterAcls { additions: Vec::new(), removals: vec![a.entry()] }) {
            Ok(r) => report(&r.results, "removed:"),
            Err(e) => broker_err(e, "removing an ACL"),
        },
        AclsCommand::List(_) => match c.call::<_, ListAclsResponse>(&ListAcls) {
            Ok(r) if r.error != ErrorCode::None => fail(format!("listing ACLs: {:?}: {}", r.error, r.error_message.unwrap_or_default())),
            Ok(r) => {
                println!("{:<24} {:<9} {:<8} {:<9} NAME", "PRINCIPAL", "OPERATION", "RESOURCE", "PATTERN");
                for a in r.acls {
                    println!("{:<24} {:<9} {:<8} {:<9} {}", a.principal, a.operation, a.resource, a.pattern, a.name);
                }
                exit::OK
            }
            Err(e) => broker_err(e, "listing ACLs"),
        },
    }
}
