//! `ironhub`: the server (`ironhub serve`) and its az-style CLI in one binary.

use std::process::ExitCode;

use clap::Parser as _;
use ironhub::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    match cli::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
