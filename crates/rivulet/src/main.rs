//! `rivulet`: the Rivulet event streaming platform in one binary.

mod cli;
mod serve;

use clap::{Parser, Subcommand};

/// Every allocation of the binary (broker and `rivulet bench` alike) goes through mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rivulet: an event streaming platform in one binary.
#[derive(Debug, Parser)]
#[command(name = "rivulet", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start and matched once: the size of the operator commands' arguments
// costs nothing worth a box per variant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker: serve the Kafka protocol so any Kafka client can produce and consume.
    Serve(Box<serve::ServeArgs>),
    #[command(flatten)]
    Operator(cli::Command),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Operator(command) => cli::run(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
