//! Benchmarks that run against real processes on this machine (release build).

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {}
}
