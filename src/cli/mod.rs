//! The `shardlog` command's subcommands.

pub mod broker;

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
}

/// Runs the parsed command; the exit code is what the process returns.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Broker(args) => broker::run(args),
    }
}
