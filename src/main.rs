//! The `mta-stsd` binary: parse the command line, run the command, map the result to an exit code.

// No `unwrap()` outside tests: a failure says what failed (`expect` with the invariant),
// or is handled.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::process::ExitCode;

use clap::Parser;
use mta_stsd::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(&cli.config, cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mta-stsd: {e:#}");
            ExitCode::from(1)
        }
    }
}
