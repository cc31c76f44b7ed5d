//! The `mnvkd-host` binary: parse the command line, start logging, run.

/// mimalloc rather than glibc's malloc: a process start allocates some
/// eighty blocks (store, instance, WASI context) and frees them at its end,
/// and glibc spent 17,600 instructions of a CGI request's 54,300 in malloc
/// and free; with mimalloc the request takes 46,000 (`scripts/bench-instr`,
/// docs/benchmarks.md), for about 1 KiB more per idle connection.
#[global_allocator]
static ALLOCATOR: mnvkd_host::allocator::Allocator = mnvkd_host::allocator::Allocator;

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
