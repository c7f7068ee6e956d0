//! The `shardlog` command's subcommands.

pub mod broker;
pub mod client;

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
    Broker(broker::BrokerArgs),
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
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Brokers, shards, topics and partition placement.
    Info(client::Bootstrap),
}

/// Runs the parsed command; the exit code is what the process returns.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Broker(args) => broker::run(args),
        Command::Topics(cmd) => client::topics(cmd),
        Command::Produce(args) => client::produce(args),
        Command::Consume(args) => client::consume(args),
        Command::Cluster(ClusterCommand::Info(b)) => client::cluster_info(b),
    }
}
