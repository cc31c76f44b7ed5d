//! Compiles a WebAssembly text file to a validated binary module; used by
//! scripts/build-guests for the hand-written guests.
//!
//!     cargo run --release -p mnvkd-host --example wat2wasm -- IN.wat OUT.wasm
//!
//! Exit codes: 0 ok, 1 the module could not be compiled or written, 2 usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::{env, fs};

use anyhow::Context;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: wat2wasm IN.wat OUT.wasm");
        return ExitCode::from(2);
    };
    match wat2wasm(input, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Compiles `input` (text) to `output` (binary), checking it is a valid module.
fn wat2wasm(input: &Path, output: &Path) -> anyhow::Result<()> {
    let wasm = wat::parse_file(input)
        .with_context(|| format!("failed to compile `{}`", input.display()))?;
    wasmtime::Module::validate(&wasmtime::Engine::default(), &wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("`{}` is not a valid module", input.display()))?;
    fs::write(output, wasm).with_context(|| format!("failed to write `{}`", output.display()))
}
