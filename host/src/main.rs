//! The `mnvkd-host` binary: parse the command line, start logging, run.

use std::process::ExitCode;

use clap::Parser;

use mnvkd_host::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli);
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(cli::EXIT_HOST_ERROR)
        }
    }
}
