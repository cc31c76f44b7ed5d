//! The `mnvkd` import ABI: hostile pointers and handles get the documented
//! error codes from the real binary, and `wit/mnvkd.wit` (the contract) agrees
//! with the host's linker, the host's `Errno` and the guest SDK.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mnvkd_host::abi::{Errno, MODULE};
use mnvkd_host::app::{App, AppSettings};
use mnvkd_host::engine;
use mnvkd_host::kernel::Kernel;
use mnvkd_host::process::{self, Pid, Runtime, Start};
use mnvkd_host::reactor::Reactor;
use wasmtime::{Extern, Module};

use crate::util::{assert_bytes_eq, assert_set_eq, guest, repo_root, roundtrip, Server};

/// An import as core wasm sees it: name, parameter types, result types.
use crate::wit::{self, Signature};

#[test]
fn hostile_pointers_and_handles_get_the_documented_codes() {
    let errnos = wit::errnos(&wit::text());
    let server = Server::start(&[("badptr", guest("badptr")), ("echo", guest("echo"))], &[]);
    let got = roundtrip(server.addr("badptr"), b"");
    let got = String::from_utf8(got).expect("badptr reports in text");

    let expected: Vec<String> = [
        ("read-oob", "fault"),
        ("read-edge", "fault"),
        ("write-oob", "fault"),
        ("write-huge-len", "fault"),
        ("read-badf", "badf"),
        ("write-badf", "badf"),
        ("close-badf", "badf"),
    ]
    .iter()
    .map(|(case, errno)| format!("{case} {}", errnos[*errno]))
    .chain(["done".to_owned()])
    .collect();
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(expected, got, "badptr report (expected, got)");

    let echoed = roundtrip(server.addr("echo"), b"after badptr\n");
    assert_bytes_eq("echo after badptr", b"after badptr\n", &echoed);
    server.assert_alive();
    assert!(
        !server.log().contains("process killed"),
        "a bad pointer must not kill the process:\n{}",
        server.log()
    );
}

#[test]
fn the_linker_defines_exactly_the_wit_imports() {
    let expected = wit::core_functions(&wit::text());
    let settings = AppSettings::default();
    let engine = engine::new(&mut engine::pool_slots(4, settings.limits.max_memory)).unwrap();
    let linker = process::linker::new(&engine).unwrap();
    // `Linker::iter` needs a store of the linker's type: one of a real
    // (never started) process of the echo app.
    let app = App::load(&engine, &linker, &guest("echo"), settings, None).unwrap();
    let reactor = Reactor::start().unwrap();
    let runtime = Runtime {
        kernel: Kernel::start(1, &engine, &reactor).unwrap(),
        reactor,
    };
    let mut store = process::new_store(&Arc::new(app), runtime, Start::default(), Pid::next());
    let defined: Vec<(String, Extern)> = linker
        .iter(&mut store)
        .filter(|(module, _, _)| *module == MODULE)
        .map(|(_, name, item)| (name.to_owned(), item))
        .collect();
    let got: BTreeSet<Signature> = defined
        .into_iter()
        .map(|(name, item)| {
            let Extern::Func(func) = item else {
                panic!("`{MODULE}::{name}` is not a function");
            };
            let ty = func.ty(&store);
            let params = ty.params().map(|t| t.to_string()).collect();
            let results = ty.results().map(|t| t.to_string()).collect();
            (name, params, results)
        })
        .collect();
    assert_set_eq(
        &format!("`{MODULE}` imports (wit/mnvkd.wit vs the linker)"),
        &expected,
        &got,
    );
}

#[test]
fn a_module_importing_every_wit_function_links() {
    let imports: String = wit::core_functions(&wit::text())
        .iter()
        .map(|(name, params, results)| {
            format!(
                "(import \"{MODULE}\" \"{name}\" (func (param {}) (result {})))\n",
                params.join(" "),
                results.join(" ")
            )
        })
        .collect();
    let wat =
        format!("(module\n{imports}(memory (export \"memory\") 1)\n(func (export \"_start\")))");
    let engine = engine::new(&mut engine::pool_slots(4, 1 << 20)).unwrap();
    let linker = process::linker::new(&engine).unwrap();
    let module = Module::new(&engine, &wat).unwrap_or_else(|err| panic!("{err:#}\n{wat}"));
    if let Err(err) = linker.instantiate_pre(&module) {
        panic!("a module importing the wit's functions does not link: {err:#}\n{wat}");
    }
}

#[test]
fn the_wit_error_codes_are_the_hosts() {
    let expected = wit::errnos(&wit::text());
    let got: BTreeMap<String, i32> = Errno::ALL
        .iter()
        .map(|errno| (errno.name().to_owned(), errno.code()))
        .collect();
    assert_set_eq(
        "error codes (wit/mnvkd.wit vs mnvkd_host::abi::Errno::ALL)",
        &expected.into_iter().collect(),
        &got.into_iter().collect(),
    );
}

#[test]
fn the_guest_sdk_declares_the_wit_imports_and_codes() {
    let wit = wit::text();
    let path = repo_root().join("guest-sdk/src/sys.rs");
    let sys = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("failed to read `{}`: {err}", path.display()));

    // `pub const BADF: i32 = -1;` for every `@errno badf -1`.
    let consts: BTreeSet<(String, i32)> = sys
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("pub const ")?;
            let (name, value) = rest.split_once(": i32 = ")?;
            Some((
                name.to_lowercase(),
                value.trim_end_matches(';').parse().ok()?,
            ))
        })
        .collect();
    assert_set_eq(
        "error codes (wit/mnvkd.wit vs guest-sdk/src/sys.rs)",
        &wit::errnos(&wit).into_iter().collect(),
        &consts,
    );

    // The `extern "C"` block of `#[link(wasm_import_module = "mnvkd")]`.
    let block = sys
        .split_once(&format!("#[link(wasm_import_module = \"{MODULE}\")]"))
        .expect("sys.rs links the mnvkd import module")
        .1;
    let block = block.split_once("\n}").expect("the extern block ends").0;
    let block = block.split_once('{').expect("the extern block starts").1;
    let declared: BTreeSet<Signature> = wit::declarations(block)
        .iter()
        .map(|item| {
            parse_rust_import(item).unwrap_or_else(|| panic!("unparsed import in sys.rs: {item:?}"))
        })
        .collect();
    assert_set_eq(
        "imports (wit/mnvkd.wit vs guest-sdk/src/sys.rs on wasm32)",
        &wit::core_functions(&wit),
        &declared,
    );
}

/// Parses `pub fn read(handle: i32, ptr: *mut u8, len: usize) -> i32;` with
/// wasm32 types lowered to core wasm.
fn parse_rust_import(line: &str) -> Option<Signature> {
    let rest = line.strip_prefix("pub fn ")?;
    let (name, rest) = rest.split_once('(')?;
    let (params, rest) = rest.split_once(')')?;
    let lower_rust = |ty: &str| -> String {
        match ty.trim() {
            "i32" | "u32" | "usize" | "isize" => "i32".to_owned(),
            ty if ty.starts_with('*') => "i32".to_owned(),
            "i64" | "u64" => "i64".to_owned(),
            other => panic!("the ABI test does not know how to lower Rust type `{other}`"),
        }
    };
    let params = params
        .split(',')
        .map(str::trim)
        .filter(|param| !param.is_empty())
        .map(|param| param.split_once(':').map(|(_, ty)| lower_rust(ty)))
        .collect::<Option<Vec<_>>>()?;
    let rest = rest.trim().strip_suffix(';')?.trim();
    let results = match rest.strip_prefix("->") {
        Some(ty) => vec![lower_rust(ty)],
        None => vec![],
    };
    // A wit name in kebab case (`try-read`) is `try_read` in Rust.
    Some((name.replace('_', "-"), params, results))
}
