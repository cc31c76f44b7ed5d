//! The compiled-module cache: a warm start loads what a cold start compiled,
//! `--no-cache` leaves no trace, and a corrupt or mismatched file costs a
//! compilation, never the start.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::PathBuf;

use crate::util::{assert_bytes_eq, guest, roundtrip, run_with_env, Server, TempDir, DEADLINE};

/// A user cache home (`XDG_CACHE_HOME`) of its own for one test.
struct CacheHome {
    dir: TempDir,
}

impl CacheHome {
    fn new() -> CacheHome {
        CacheHome {
            dir: TempDir::new(),
        }
    }

    /// The environment that points the host at it.
    fn env(&self) -> [(&'static str, &OsStr); 1] {
        [("XDG_CACHE_HOME", self.dir.path().as_os_str())]
    }

    /// The host's cache directory inside it.
    fn modules_dir(&self) -> PathBuf {
        self.dir.join("mnvkd-host")
    }

    /// The compiled modules now cached, sorted.
    fn modules(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.modules_dir()) else {
            return Vec::new();
        };
        let mut modules: Vec<PathBuf> = entries
            .map(|entry| entry.expect("a readable cache entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
            .collect();
        modules.sort();
        modules
    }

    /// Serves the echo guest with `extra` flags and this cache home, checks
    /// it echoes, and returns the server and its `compiled module` log line.
    #[track_caller]
    fn serve_echo(&self, extra: &[OsString]) -> (Server, String) {
        self.serve_echo_with_env(extra, &[])
    }

    /// [`CacheHome::serve_echo`] with `env` added.
    #[track_caller]
    fn serve_echo_with_env(&self, extra: &[OsString], env: &[(&str, &OsStr)]) -> (Server, String) {
        let mut all = self.env().to_vec();
        all.extend_from_slice(env);
        let server = Server::start_with_env(&[("echo", guest("echo"))], extra, &all);
        let line = server.wait_for_log("compiled module", DEADLINE);
        let echoed = roundtrip(server.addr("echo"), b"cached?\n");
        assert_bytes_eq("echo", b"cached?\n", &echoed);
        (server, line)
    }
}

#[track_caller]
fn assert_cache(line: &str, outcome: &str) {
    assert!(
        line.contains("app=echo") && line.contains(&format!("cache={outcome}")),
        "expected app=echo cache={outcome} in {line:?}"
    );
}

#[test]
fn a_warm_start_loads_the_module_the_cold_start_compiled() {
    let home = CacheHome::new();
    let (cold, line) = home.serve_echo(&[]);
    assert_cache(&line, "miss");
    drop(cold);
    assert_eq!(home.modules().len(), 1, "one compiled module cached");

    let (_warm, line) = home.serve_echo(&[]);
    assert_cache(&line, "hit");
    assert_eq!(home.modules().len(), 1, "a hit writes no new file");
}

#[test]
fn the_cache_directory_is_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt;

    let home = CacheHome::new();
    let _ = home.serve_echo(&[]);
    let mode = fs::metadata(home.modules_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "mode of the cache directory");
}

#[test]
fn no_cache_neither_reads_nor_writes_the_cache() {
    let home = CacheHome::new();
    let (server, line) = home.serve_echo(&args!["--no-cache"]);
    assert_cache(&line, "off");
    drop(server);
    assert!(
        !home.modules_dir().exists(),
        "--no-cache created `{}`",
        home.modules_dir().display()
    );

    // A warm cache is not read either.
    drop(home.serve_echo(&[]));
    let (_server, line) = home.serve_echo(&args!["--no-cache"]);
    assert_cache(&line, "off");
}

#[test]
fn a_corrupt_cache_file_is_compiled_again_and_replaced() {
    let home = CacheHome::new();
    drop(home.serve_echo(&[]));
    let [module] = home.modules().try_into().expect("one cached module");
    fs::write(&module, b"this is not a compiled module").unwrap();

    let (server, line) = home.serve_echo(&[]);
    assert_cache(&line, "miss");
    let warnings = server.wait_for_logs("WARN", 1, DEADLINE);
    assert!(
        warnings.len() == 1 && warnings[0].contains("is unusable"),
        "expected one warning about the unusable file, got {warnings:#?}"
    );
    drop(server);

    let (_server, line) = home.serve_echo(&[]);
    assert_cache(&line, "hit");
}

#[test]
fn other_engine_settings_compile_a_module_of_their_own() {
    let home = CacheHome::new();
    drop(home.serve_echo(&[]));
    // With guard pages, the heap's size is no part of the code.
    let (server, line) = home.serve_echo(&args!["--max-memory", "32MiB"]);
    assert_cache(&line, "hit");
    drop(server);
    // Bounds checks are, and they compare with the slot's size.
    let checks = [("MNVKD_BOUNDS_CHECKS", OsStr::new("explicit"))];
    let (server, line) = home.serve_echo_with_env(&[], &checks);
    assert_cache(&line, "miss");
    drop(server);
    let (server, line) = home.serve_echo_with_env(&args!["--max-memory", "32MiB"], &checks);
    assert_cache(&line, "miss");
    drop(server);
    assert_eq!(home.modules().len(), 3, "one module per engine setting");

    let (_server, line) = home.serve_echo(&[]);
    assert_cache(&line, "hit");
}

#[test]
fn run_shares_the_cache_with_serve() {
    let home = CacheHome::new();
    let out = run_with_env(&args!["run", guest("echo")], b"hi\n", &home.env());
    assert!(
        out.status.success(),
        "run failed: {}\n{}",
        out.status,
        out.stderr
    );
    assert_bytes_eq("stdout of `run echo`", b"hi\n", &out.stdout);
    assert!(out.stderr.contains("cache=miss"), "stderr:\n{}", out.stderr);

    let (_server, line) = home.serve_echo(&[]);
    assert_cache(&line, "hit");

    let out = run_with_env(
        &args!["run", "--no-cache", guest("echo")],
        b"hi\n",
        &home.env(),
    );
    assert!(
        out.status.success(),
        "run failed: {}\n{}",
        out.status,
        out.stderr
    );
    assert!(out.stderr.contains("cache=off"), "stderr:\n{}", out.stderr);
}
