//! `wit/mnvkd.wit`, read the way the drift tests need it: the functions of
//! `interface mnvkd` (with WIT or core wasm types) and the `@errno` table.

use std::collections::{BTreeMap, BTreeSet};

use crate::util::repo_root;

/// (name, parameter types, result types).
pub type Signature = (String, Vec<String>, Vec<String>);

/// The wit file's text.
pub fn text() -> String {
    let path = repo_root().join("wit/mnvkd.wit");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("failed to read `{}`: {err}", path.display()))
}

/// The functions of `interface mnvkd` in `wit`, with their WIT types (`s32`, `u32`, …).
pub fn functions(wit: &str) -> BTreeSet<Signature> {
    let body = wit
        .split_once("interface mnvkd {")
        .expect("the wit has `interface mnvkd {`")
        .1;
    let body = body.split_once("\n}").expect("`interface mnvkd` ends").0;
    let mut functions = BTreeSet::new();
    for item in declarations(body) {
        let parsed = parse_func(&item)
            .unwrap_or_else(|| panic!("unparsed item in `interface mnvkd`: {item:?}"));
        assert!(functions.insert(parsed), "{item:?} is declared twice");
    }
    assert!(
        !functions.is_empty(),
        "no functions found in `interface mnvkd`"
    );
    functions
}

/// The same functions with their types lowered to core wasm (`i32`, `i64`).
pub fn core_functions(wit: &str) -> BTreeSet<Signature> {
    let lower_all = |types: Vec<String>| types.iter().map(|t| lower(t)).collect();
    functions(wit)
        .into_iter()
        .map(|(name, params, results)| (name, lower_all(params), lower_all(results)))
        .collect()
}

/// A WIT scalar as the core wasm type it is imported as.
pub fn lower(wit_type: &str) -> String {
    match wit_type {
        "s32" | "u32" => "i32",
        "s64" | "u64" => "i64",
        other => panic!("unknown WIT scalar `{other}`"),
    }
    .to_owned()
}

/// The `@errno <name> <value> <meaning>` table, by name.
pub fn errnos(wit: &str) -> BTreeMap<String, i32> {
    let mut codes = BTreeMap::new();
    for line in wit.lines() {
        let Some(entry) = line
            .trim()
            .trim_start_matches('/')
            .trim()
            .strip_prefix("@errno ")
        else {
            continue;
        };
        let mut words = entry.split_whitespace();
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            panic!("malformed @errno line: {line:?}");
        };
        let value = value
            .parse()
            .unwrap_or_else(|err| panic!("bad code in {line:?}: {err}"));
        assert!(
            codes.insert(name.to_owned(), value).is_none(),
            "{name} twice"
        );
    }
    assert!(!codes.is_empty(), "no @errno lines in the wit");
    codes
}

/// The `;`-terminated items of `body` (wit or Rust) without `//` comments
/// and attributes, each on one line however it was wrapped, `;` included.
pub fn declarations(body: &str) -> Vec<String> {
    let code: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("//") && !line.starts_with("#["))
        .collect();
    code.join(" ")
        .split(';')
        .map(|item| item.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|item| !item.is_empty())
        .map(|item| item + ";")
        .collect()
}

/// Parses `name: func(a: s32, b: u32) -> s32;`.
fn parse_func(item: &str) -> Option<Signature> {
    let (name, rest) = item.split_once(": func(")?;
    let (params, rest) = rest.split_once(')')?;
    let params = params
        .split(',')
        .map(str::trim)
        .filter(|param| !param.is_empty())
        .map(|param| Some(param.split_once(':')?.1.trim().to_owned()))
        .collect::<Option<Vec<_>>>()?;
    let rest = rest.trim().strip_suffix(';')?.trim();
    let results = match rest.strip_prefix("->") {
        Some(result) => vec![result.trim().to_owned()],
        None if rest.is_empty() => vec![],
        None => return None,
    };
    Some((name.trim().to_owned(), params, results))
}
