//! The guest SDKs of other languages agree with `wit/mnvkd.wit` (the contract
//! the host's linker is checked against in `tests/abi.rs`): the C header
//! `guest-sdk/include/mnvkd.h`, the Zig module `guest-sdk/zig/mnvkd.zig` and
//! the AssemblyScript binding `guest-sdk/assemblyscript/mnvkd.ts` declare
//! exactly the wit's imports (names, parameter count, signedness and width)
//! and error codes, and the guests built with them import nothing else.

use std::collections::{BTreeMap, BTreeSet};

use mnvkd_host::abi::MODULE;
use wasmtime::{Engine, ExternType, Module};

use crate::util::{assert_set_eq, guest, repo_root};

/// An import: name, parameter types, result types, as WIT scalars
/// (`s32`, `u32`, `s64`, `u64`), so that signedness is compared too.
use crate::wit::{self, Signature};

fn read_repo_file(path: &str) -> String {
    let path = repo_root().join(path);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("failed to read `{}`: {err}", path.display()))
}

fn split_params(params: &str) -> impl Iterator<Item = &str> {
    params
        .split(',')
        .map(str::trim)
        .filter(|param| !param.is_empty())
}

/// A wasm32 C type as a WIT scalar: pointers and `size_t` are `u32`.
fn c_type(ty: &str) -> String {
    let ty = ty.trim();
    let wit = match ty {
        "int32_t" => "s32",
        "uint32_t" | "size_t" => "u32",
        "int64_t" => "s64",
        "uint64_t" => "u64",
        _ if ty.ends_with('*') => "u32",
        other => panic!("the C header test does not know how to lower C type `{other}`"),
    };
    wit.to_owned()
}

/// Parses one line of the header's import block:
/// `__attribute__((import_module("mnvkd"), import_name("read"))) int32_t mnvkd_read(int32_t handle, void *ptr, size_t len);`
fn parse_c_import(line: &str) -> Option<Signature> {
    let rest = line.strip_prefix(&format!(
        "__attribute__((import_module(\"{MODULE}\"), import_name(\""
    ))?;
    let (name, rest) = rest.split_once("\"))) ")?;
    let (result, rest) = rest.split_once(' ')?;
    let (c_name, rest) = rest.split_once('(')?;
    assert_eq!(
        c_name,
        format!("mnvkd_{}", name.replace('-', "_")),
        "the C name of import `{name}`"
    );
    let params = rest.strip_suffix(");")?;
    let params = split_params(params)
        .map(|param| {
            // `const char *arg_ptr`: the type is all but the last word, and a
            // `*` glued to the name belongs to the type.
            let (ty, name) = param.rsplit_once(' ')?;
            let pointer = if name.starts_with('*') { "*" } else { "" };
            Some(c_type(&format!(
                "{}{pointer}",
                ty.trim_start_matches("const ")
            )))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((name.to_owned(), params, vec![c_type(result)]))
}

#[test]
fn the_c_header_declares_the_wit_imports_and_codes() {
    let wit = read_repo_file("wit/mnvkd.wit");
    let header = read_repo_file("guest-sdk/include/mnvkd.h");

    // Every line that names the import module is one import.
    let declared: Vec<Signature> = header
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("import_module("))
        .map(|line| {
            parse_c_import(line)
                .unwrap_or_else(|| panic!("unparsed import line in mnvkd.h: {line:?}"))
        })
        .collect();
    let unique: BTreeSet<Signature> = declared.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        declared.len(),
        "mnvkd.h declares an import twice"
    );
    assert_set_eq(
        "imports (wit/mnvkd.wit vs guest-sdk/include/mnvkd.h)",
        &wit::functions(&wit),
        &unique,
    );

    // `#define MNVKD_EBADF -1` for every `@errno badf -1`.
    let codes: BTreeSet<(String, i32)> = header
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("#define MNVKD_E")?.split_whitespace();
            let name = words.next()?.to_lowercase();
            let value = words.next()?.parse().ok()?;
            Some((name, value))
        })
        .collect();
    assert_set_eq(
        "error codes (wit/mnvkd.wit vs guest-sdk/include/mnvkd.h)",
        &wit::errnos(&wit).into_iter().collect(),
        &codes,
    );
}

/// A wasm32 Zig type as a WIT scalar: pointers and `usize` are `u32`.
fn zig_type(ty: &str) -> String {
    let ty = ty.trim();
    let wit = match ty {
        "i32" => "s32",
        "u32" | "usize" => "u32",
        "i64" => "s64",
        "u64" => "u64",
        _ if ty.starts_with('*') || ty.starts_with("[*]") => "u32",
        other => panic!("the Zig module test does not know how to lower Zig type `{other}`"),
    };
    wit.to_owned()
}

/// Parses `pub extern "mnvkd" fn read(handle: i32, ptr: [*]u8, len: usize) i32;`.
fn parse_zig_import(line: &str) -> Option<Signature> {
    let rest = line.strip_prefix(&format!("pub extern \"{MODULE}\" fn "))?;
    let (name, rest) = rest.split_once('(')?;
    let (params, result) = rest.rsplit_once(')')?;
    let params = split_params(params)
        .map(|param| Some(zig_type(param.split_once(':')?.1)))
        .collect::<Option<Vec<_>>>()?;
    let result = result.trim().strip_suffix(';')?;
    // A wit name in kebab case is quoted in Zig: @"try-read".
    let name = name.trim_start_matches("@\"").trim_end_matches('"');
    Some((name.to_owned(), params, vec![zig_type(result)]))
}

#[test]
fn the_zig_module_declares_the_wit_imports_and_codes() {
    let wit = read_repo_file("wit/mnvkd.wit");
    let zig = read_repo_file("guest-sdk/zig/mnvkd.zig");
    let declared: BTreeSet<Signature> = zig
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("extern \""))
        .map(|line| {
            parse_zig_import(line)
                .unwrap_or_else(|| panic!("unparsed import line in mnvkd.zig: {line:?}"))
        })
        .collect();
    assert_set_eq(
        "imports (wit/mnvkd.wit vs guest-sdk/zig/mnvkd.zig)",
        &wit::functions(&wit),
        &declared,
    );
    let codes: BTreeSet<(String, i32)> = zig
        .lines()
        .filter_map(|line| {
            let (name, value) = line.strip_prefix("pub const E")?.split_once(": i32 = ")?;
            Some((
                name.to_lowercase(),
                value.trim_end_matches(';').parse().ok()?,
            ))
        })
        .collect();
    assert_set_eq(
        "error codes (wit/mnvkd.wit vs guest-sdk/zig/mnvkd.zig)",
        &wit::errnos(&wit).into_iter().collect(),
        &codes,
    );
}

/// A wasm32 AssemblyScript type as a WIT scalar.
fn as_type(ty: &str) -> String {
    let wit = match ty.trim() {
        "i32" => "s32",
        "u32" | "usize" => "u32",
        "i64" => "s64",
        "u64" => "u64",
        other => panic!("the AssemblyScript test does not know how to lower type `{other}`"),
    };
    wit.to_owned()
}

/// Parses `@external("mnvkd", "read") export declare function read(handle: i32, ptr: usize, len: usize): i32;`.
fn parse_as_import(line: &str) -> Option<Signature> {
    let rest = line.strip_prefix(&format!("@external(\"{MODULE}\", \""))?;
    let (name, rest) = rest.split_once("\") export declare function ")?;
    let (fn_name, rest) = rest.split_once('(')?;
    assert_eq!(
        fn_name,
        name.replace('-', "_"),
        "the AssemblyScript name of import `{name}`"
    );
    let (params, result) = rest.rsplit_once("):")?;
    let params = split_params(params)
        .map(|param| Some(as_type(param.split_once(':')?.1)))
        .collect::<Option<Vec<_>>>()?;
    let result = result.trim().strip_suffix(';')?;
    Some((name.to_owned(), params, vec![as_type(result)]))
}

#[test]
fn the_assemblyscript_binding_declares_the_wit_imports_and_codes() {
    let wit = read_repo_file("wit/mnvkd.wit");
    let ts = read_repo_file("guest-sdk/assemblyscript/mnvkd.ts");
    let declared: BTreeSet<Signature> = ts
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("@external("))
        .map(|line| {
            parse_as_import(line)
                .unwrap_or_else(|| panic!("unparsed import line in mnvkd.ts: {line:?}"))
        })
        .collect();
    assert_set_eq(
        "imports (wit/mnvkd.wit vs guest-sdk/assemblyscript/mnvkd.ts)",
        &wit::functions(&wit),
        &declared,
    );
    let codes: BTreeSet<(String, i32)> = ts
        .lines()
        .filter_map(|line| {
            let (name, value) = line
                .strip_prefix("export const E")?
                .split_once(": i32 = ")?;
            Some((
                name.to_lowercase(),
                value.trim_end_matches(';').parse().ok()?,
            ))
        })
        .collect();
    assert_set_eq(
        "error codes (wit/mnvkd.wit vs guest-sdk/assemblyscript/mnvkd.ts)",
        &wit::errnos(&wit).into_iter().collect(),
        &codes,
    );
}

#[test]
fn the_guests_built_by_each_toolchain_import_only_wit_functions() {
    let wit: BTreeMap<String, (Vec<String>, Vec<String>)> =
        wit::core_functions(&read_repo_file("wit/mnvkd.wit"))
            .into_iter()
            .map(|(name, params, results)| (name, (params, results)))
            .collect();
    let engine = Engine::default();
    for name in ["echo-c", "echo-zig", "echo-as", "trap-zig", "trap-as"] {
        let module = Module::from_file(&engine, guest(name))
            .unwrap_or_else(|err| panic!("guests/{name}.wasm: {err:#}"));
        let mut used = 0;
        for import in module.imports().filter(|import| import.module() == MODULE) {
            let ExternType::Func(ty) = import.ty() else {
                panic!("{name}: `{MODULE}::{}` is not a function", import.name());
            };
            let got = (
                ty.params().map(|t| t.to_string()).collect::<Vec<_>>(),
                ty.results().map(|t| t.to_string()).collect::<Vec<_>>(),
            );
            let expected = wit.get(import.name()).unwrap_or_else(|| {
                panic!(
                    "{name}: imports `{MODULE}::{}`, which the wit lacks",
                    import.name()
                )
            });
            assert_eq!(
                expected,
                &got,
                "{name}: the type of `{MODULE}::{}` (wit, module)",
                import.name()
            );
            used += 1;
        }
        assert!(used > 0, "{name} imports nothing from `{MODULE}`");
    }
}
