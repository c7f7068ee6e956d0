//! The `shardlog` command's subcommands.

pub mod broker;
pub mod client;
pub mod security;

use clap::{Parser, Subcommand};

/// shardlog: a thread-per-core message broker with Kafka's model.
#[derive(Debug, Parser)]
#[command(name = "shardlog", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker.
    Broker(Box<broker::BrokerArgs>),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topics(client::TopicsCommand),
    /// Send one message per line of standard input.
    Produce(client::ProduceArgs),
    /// Print messages, one value per line.
    Consume(client::ConsumeArgs),
    /// Show the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Create, delete and list the users clients authenticate as (SASL SCRAM).
    #[command(subcommand)]
    Users(security::UsersCommand),
    /// Add, remove and list access-control entries.
    #[command(subcommand)]
    Acls(security::AclsCommand),
    /// Ask a broker's metrics port whether it is live or ready (exit 0 if
    /// so): the container healthcheck, which has no curl.
    Probe(ProbeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// What to ask: `health` (the process answers) or `ready` (registered
    /// with the quorum, unfenced, serving)
    #[arg(value_parser = ["health", "ready"], default_value = "ready")]
    pub what: String,
    /// The broker's metrics port
    #[arg(long, default_value = crate::config::DEFAULT_METRICS_LISTEN)]
    pub metrics_address: std::net::SocketAddr,
}

/// GET /health or /ready; 0 on a 200, 1 otherwise (with why).
fn probe(args: ProbeArgs) -> i32 {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(3);
    let answer = (|| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&args.metrics_address, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        write!(s, "GET /{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", args.what, args.metrics_address)?;
        let mut out = Vec::new();
        s.take(64 * 1024).read_to_end(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    })();
    match answer {
        Ok(a) if a.starts_with("HTTP/1.1 200") => 0,
        Ok(a) => {
            eprintln!("shardlog probe: {}", a.split("\r\n\r\n").nth(1).unwrap_or(&a).trim());
            1
        }
        Err(e) => {
            eprintln!("shardlog probe: {}: {e}", args.metrics_address);
            1
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Brokers, shards, topics and partition placement.
    Info(client::Bootstrap),
}

/// Runs the parsed command; the exit code is what the process returns.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Broker(args) => broker::run(*args),
        Command::Topics(cmd) => client::topics(cmd),
        Command::Produce(args) => client::produce(args),
        Command::Consume(args) => client::consume(args),
        Command::Cluster(ClusterCommand::Info(b)) => client::cluster_info(b),
        Command::Probe(args) => probe(args),
        Command::Users(cmd) => security::users(cmd),
        Command::Acls(cmd) => security::acls(cmd),
    }
}
