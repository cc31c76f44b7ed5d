//! The compiled-module cache: each app's module compiled once per machine and
//! kept on disk, so a warm start maps it (about 1 ms) instead of compiling it
//! (tens of ms to seconds). What an app does with its module lives in `app.rs`.
//!
//! - Where: `$XDG_CACHE_HOME/mnvkd-host`, else `$HOME/.cache/mnvkd-host`, a
//!   directory of mode 0700 that must belong to this user (or root) and be
//!   writable by no one else; otherwise the cache is off for that run.
//! - Key: the hex SHA-256 of the module's binary, the host's and wasmtime's
//!   versions and the engine's compatibility hash (target, CPU features and
//!   the settings that change compiled code, such as the memory reservation).
//!   A file is `<key>.cwasm`.
//! - Writes are atomic (a temp file in the same directory, synced, renamed
//!   over), so a reader sees an old whole file or a new whole file; a file a
//!   running host has mapped is replaced or unlinked, never changed in place.
//! - A file that fails to load (corrupt, truncated, from an incompatible
//!   build) is compiled again and overwritten, with one warning.
//! - Eviction: a hit refreshes the file's mtime; after each write, when more
//!   than [`MAX_ENTRIES`] files are kept, the least recently used go.
//! - Failing to write the cache is a warning, never an error.

use std::fmt;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

/// Cached modules kept at most; past it the least recently used are removed.
/// A cached module is about 2–3 times its `.wasm`, so a few hundred entries of
/// typical apps are tens of MiB.
pub const MAX_ENTRIES: usize = 256;
/// The wasmtime release the host is built with (pinned with `=` in
/// `host/Cargo.toml`; a unit test keeps the two equal).
const WASMTIME_VERSION: &str = "48.0.8";
/// Temp files older than this were left by a writer that died; eviction removes them.
const STALE_TEMP: Duration = Duration::from_secs(3600);
const EXTENSION: &str = "cwasm";
const TEMP_EXTENSION: &str = "tmp";

/// A directory of compiled modules for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleCache {
    dir: PathBuf,
}

/// Where a module came from, as logged in the `cache` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded from the cache.
    Hit,
    /// Compiled, and written to the cache (if that worked).
    Miss,
    /// Compiled; no cache (`--no-cache`, no cache directory, or an unsafe one).
    Off,
}

impl ModuleCache {
    /// A cache in `dir`, created when first written.
    pub fn new(dir: impl Into<PathBuf>) -> ModuleCache {
        ModuleCache { dir: dir.into() }
    }

    /// The user's cache: `$XDG_CACHE_HOME/mnvkd-host`, else
    /// `$HOME/.cache/mnvkd-host`. `None` when neither is set to an absolute path
    /// (the XDG rule: a relative `XDG_CACHE_HOME` is ignored).
    pub fn from_env() -> Option<ModuleCache> {
        let absolute = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|path| path.is_absolute())
        };
        let base = absolute("XDG_CACHE_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".cache")))?;
        Some(ModuleCache::new(base.join("mnvkd-host")))
    }

    /// The file that holds `wasm` compiled by `engine`.
    fn path_for(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        self.dir.join(format!("{}.{EXTENSION}", key(engine, wasm)))
    }
}

/// Compiles the module binary `wasm`, or loads it from `cache` when it holds it.
///
/// Cache trouble (a missing or unsafe directory, a corrupt file, a failed
/// write) is logged as a warning and costs a compilation, never the load.
///
/// # Errors
/// When `wasm` is not a valid module (or uses features the engine lacks).
pub fn load<A: Artifact>(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&ModuleCache>,
) -> anyhow::Result<(A, Outcome)> {
    let Some(cache) = cache else {
        return Ok((compile::<A>(engine, wasm)?, Outcome::Off));
    };
    if let Err(err) = cache.prepare_dir() {
        tracing::warn!("module cache off: {err:#}");
        return Ok((compile::<A>(engine, wasm)?, Outcome::Off));
    }
    let path = cache.path_for(engine, wasm);
    match cache.read(engine, &path) {
        Ok(Some(module)) => return Ok((module, Outcome::Hit)),
        Ok(None) => {}
        Err(err) => tracing::warn!("compiling again: {err:#}"),
    }
    let module = compile::<A>(engine, wasm)?;
    if let Err(err) = cache.write(&path, &module).and_then(|()| cache.evict()) {
        tracing::warn!("failed to write the module cache: {err:#}");
    }
    Ok((module, Outcome::Miss))
}

/// Compiles `wasm`, noting it for [`crate::allocator::return_freed_memory`].
fn compile<A: Artifact>(engine: &Engine, wasm: &[u8]) -> anyhow::Result<A> {
    crate::allocator::compiled();
    A::compile(engine, wasm)
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Off => "off",
        })
    }
}

/// The hex SHA-256 naming `wasm` compiled by `engine` with this build.
fn key(engine: &Engine, wasm: &[u8]) -> String {
    // The engine's hash is deterministic within one build of the host, which
    // the host version stands for; a new toolchain at worst causes misses.
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let mut sha = Sha256::new();
    for part in [
        wasm,
        env!("CARGO_PKG_VERSION").as_bytes(),
        WASMTIME_VERSION.as_bytes(),
        &engine_hash.finish().to_le_bytes(),
    ] {
        // Length-prefixed, so no two different inputs hash the same bytes.
        sha.update((part.len() as u64).to_le_bytes());
        sha.update(part);
    }
    sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What the cache keeps: a core module or a component, compiled by one
/// engine. Their binaries differ from the first bytes, so one key space
/// serves both.
pub trait Artifact: Sized {
    /// Compiles `wasm`: the one place each kind is compiled.
    ///
    /// # Errors
    /// When `wasm` is not valid (wasmtime's message, one line).
    fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Self>;

    /// The compiled artifact as bytes for the cache file.
    ///
    /// # Errors
    /// When wasmtime cannot serialize it.
    fn serialize(&self) -> wasmtime::Result<Vec<u8>>;

    /// Loads an artifact from a cache file.
    ///
    /// # Errors
    /// When the file is not an artifact of this engine's build and settings.
    ///
    /// # Safety
    /// The file runs as machine code: it must have been written by
    /// [`Artifact::serialize`] of this build, and not change while in use.
    unsafe fn deserialize(engine: &Engine, file: File) -> anyhow::Result<Self>;
}

impl Artifact for Module {
    fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Module> {
        // wasmtime's message names the problem and its offset; its chain adds nothing.
        Module::from_binary(engine, wasm).map_err(|err| anyhow::anyhow!("{err}"))
    }

    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Module::serialize(self)
    }

    unsafe fn deserialize(engine: &Engine, file: File) -> anyhow::Result<Module> {
        // SAFETY: the caller's contract ([`Artifact::deserialize`]); the file
        // is mapped, and files are replaced by rename, never changed in place.
        Ok(unsafe { Module::deserialize_open_file(engine, file) }?)
    }
}

impl Artifact for Component {
    fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
        Component::from_binary(engine, wasm).map_err(|err| anyhow::anyhow!("{err}"))
    }

    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }

    unsafe fn deserialize(engine: &Engine, mut file: File) -> anyhow::Result<Component> {
        // Read from the file already checked, not reopened by path: no
        // window for another file to take its place.
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes)?;
        // SAFETY: the caller's contract ([`Artifact::deserialize`]); the
        // bytes are a private copy.
        Ok(unsafe { Component::deserialize(engine, &bytes) }?)
    }
}

impl ModuleCache {
    /// Creates the directory (0700) if missing and checks that only this user
    /// (or root) can write it: the cache maps its files as code.
    fn prepare_dir(&self) -> anyhow::Result<()> {
        let shown = self.dir.display();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("failed to create `{shown}`"))?;
        let meta = fs::metadata(&self.dir).with_context(|| format!("failed to read `{shown}`"))?;
        only_trusted_can_write(&meta).with_context(|| format!("`{shown}` is not private"))
    }

    /// The cached module at `path`; `None` if there is none.
    fn read<A: Artifact>(&self, engine: &Engine, path: &Path) -> anyhow::Result<Option<A>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(err).with_context(|| format!("failed to open `{}`", path.display()))
            }
        };
        let unusable = || format!("cached module `{}` is unusable", path.display());
        file.metadata()
            .map_err(anyhow::Error::from)
            .and_then(|meta| only_trusted_can_write(&meta))
            .with_context(unusable)?;
        let mapped = file.try_clone().with_context(unusable)?;
        // SAFETY: the artifact's machine code comes from this file (a
        // module maps it for its lifetime, a component copies it). The file was written only by
        // this host (`write`) into a directory that only this user (or root)
        // can write, as `prepare_dir` and the check above made sure, with the
        // same wasmtime version and engine settings (they are in the name;
        // wasmtime checks them again and fails on a mismatch). Files are
        // replaced by rename or unlinked, never modified in place, so a mapped
        // file does not change under us. A file that fails to load is
        // compiled again by the caller.
        let module = unsafe { A::deserialize(engine, mapped) }.with_context(unusable)?;
        // Marks it recently used for eviction; a failure only ages it early.
        let _ = file.set_modified(SystemTime::now());
        Ok(Some(module))
    }

    /// Writes `module` to `path` atomically: a temp file beside it, synced,
    /// then renamed over it.
    fn write<A: Artifact>(&self, path: &Path, module: &A) -> anyhow::Result<()> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let bytes = module
            .serialize()
            .map_err(anyhow::Error::from)
            .context("failed to serialize the compiled module")?;
        let temp = path.with_extension(format!(
            "{}.{}.{TEMP_EXTENSION}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| {
                file.write_all(&bytes)?;
                // On disk before it is visible: a crash must not leave a
                // partly written file under the final name to be run as code.
                file.sync_all()
            })
            .and_then(|()| fs::rename(&temp, path));
        if let Err(err) = written {
            let _ = fs::remove_file(&temp);
            return Err(err).with_context(|| format!("failed to write `{}`", path.display()));
        }
        Ok(())
    }

    /// Keeps at most [`MAX_ENTRIES`] modules, removing the least recently
    /// used (oldest mtime) first, and removes stale temp files.
    fn evict(&self) -> anyhow::Result<()> {
        let entries = fs::read_dir(&self.dir)
            .with_context(|| format!("failed to list `{}`", self.dir.display()))?;
        let now = SystemTime::now();
        let mut modules = Vec::new();
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let Ok(modified) = entry.metadata().and_then(|meta| meta.modified()) else {
                continue; // removed meanwhile by another host
            };
            match path.extension().and_then(|ext| ext.to_str()) {
                Some(EXTENSION) => modules.push((modified, path)),
                Some(TEMP_EXTENSION)
                    if now.duration_since(modified).unwrap_or_default() > STALE_TEMP =>
                {
                    let _ = fs::remove_file(&path);
                }
                _ => {}
            }
        }
        if modules.len() <= MAX_ENTRIES {
            return Ok(());
        }
        modules.sort();
        let excess = modules.len() - MAX_ENTRIES;
        for (_, path) in modules.into_iter().take(excess) {
            // Unlinking a file another host has mapped is safe: its mapping keeps the data.
            match fs::remove_file(&path) {
                Ok(()) => tracing::debug!(path = %path.display(), "evicted a cached module"),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("failed to remove `{}`", path.display()))
                }
            }
        }
        Ok(())
    }
}

/// Fails unless only this user or root can write what `meta` describes: the
/// cache runs its files as code.
fn only_trusted_can_write(meta: &fs::Metadata) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid && meta.uid() != 0 {
        bail!(
            "it belongs to uid {}, not to this user ({uid}) or root",
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!("others may write it (mode {:o})", meta.mode() & 0o7777);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{self, BoundsChecks, WhyExplicit};

    const WAT: &str = r#"(module (func (export "_start")))"#;

    fn engine_with(max_memory: u64, slots: usize) -> Engine {
        checked_engine_with(max_memory, slots, BoundsChecks::Elided)
    }

    fn checked_engine_with(max_memory: u64, slots: usize, bounds_checks: BoundsChecks) -> Engine {
        engine::new(&mut engine::PoolSizing {
            slots,
            max_memory,
            max_map_count: 65530,
            bounds_checks,
        })
        .unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mnvkd-module-cache-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn wasmtime_version_matches_the_pinned_dependency() {
        let manifest = include_str!("../Cargo.toml");
        assert!(
            manifest.contains(&format!("wasmtime = {{ version = \"={WASMTIME_VERSION}\"")),
            "WASMTIME_VERSION {WASMTIME_VERSION} is not the version host/Cargo.toml pins"
        );
    }

    #[test]
    fn the_key_follows_module_and_code_settings_but_not_pool_size() {
        let wasm = wat::parse_str(WAT).unwrap();
        let other = wat::parse_str(r#"(module (func (export "_start") nop))"#).unwrap();
        let small = engine_with(16 << 20, 4);
        let key = key(&small, &wasm);
        assert_eq!(key.len(), 64);
        assert_eq!(key, super::key(&small, &wasm), "deterministic");
        assert_eq!(
            key,
            super::key(&engine_with(16 << 20, 8), &wasm),
            "pool size is not code"
        );
        assert_ne!(key, super::key(&small, &other), "another module");
        assert_eq!(
            key,
            super::key(&engine_with(32 << 20, 4), &wasm),
            "without bounds checks, the heap's size is not code"
        );
        let explicit = BoundsChecks::Explicit(WhyExplicit::Asked);
        let checked = super::key(&checked_engine_with(16 << 20, 4, explicit), &wasm);
        assert_ne!(key, checked, "bounds checks are code");
        assert_ne!(
            checked,
            super::key(&checked_engine_with(32 << 20, 4, explicit), &wasm),
            "and check against the slot's size"
        );
    }

    #[test]
    fn a_second_load_hits_and_a_corrupt_file_is_replaced() {
        let dir = temp_dir("hit");
        let cache = ModuleCache::new(&dir);
        let engine = engine_with(16 << 20, 4);
        let wasm = wat::parse_str(WAT).unwrap();
        let (_, outcome) = load::<Module>(&engine, &wasm, Some(&cache)).unwrap();
        assert_eq!(outcome, Outcome::Miss);
        let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let path = cache.path_for(&engine, &wasm);
        let long_ago = SystemTime::now() - Duration::from_secs(1000);
        File::open(&path).unwrap().set_modified(long_ago).unwrap();
        let (module, outcome) = load::<Module>(&engine, &wasm, Some(&cache)).unwrap();
        assert_eq!(outcome, Outcome::Hit);
        assert!(module.get_export("_start").is_some());
        let used = fs::metadata(&path).unwrap().modified().unwrap();
        assert!(used > long_ago, "a hit marks the file recently used");
        // The module maps the file: truncating it under a live module would be SIGBUS.
        drop(module);

        fs::write(&path, b"not a compiled module").unwrap();
        let (_, outcome) = load::<Module>(&engine, &wasm, Some(&cache)).unwrap();
        assert_eq!(outcome, Outcome::Miss, "a corrupt file is compiled again");
        let (_, outcome) = load::<Module>(&engine, &wasm, Some(&cache)).unwrap();
        assert_eq!(outcome, Outcome::Hit, "and overwritten");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_others_can_write_is_replaced() {
        use std::os::unix::fs::PermissionsExt;

        let dir = temp_dir("shared-file");
        let cache = ModuleCache::new(&dir);
        let engine = engine_with(16 << 20, 4);
        let wasm = wat::parse_str(WAT).unwrap();
        load::<Module>(&engine, &wasm, Some(&cache)).unwrap();
        let path = cache.path_for(&engine, &wasm);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let (_, outcome) = load::<Module>(&engine, &wasm, Some(&cache)).unwrap();
        assert_eq!(outcome, Outcome::Miss);
        let mode = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "the new file is private");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_cache_compiles() {
        let engine = engine_with(16 << 20, 4);
        let wasm = wat::parse_str(WAT).unwrap();
        let (_, outcome) = load::<Module>(&engine, &wasm, None).unwrap();
        assert_eq!(outcome, Outcome::Off);
        assert!(load::<Module>(&engine, b"\0asm junk", None).is_err());
    }

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        let dir = temp_dir("shared");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let engine = engine_with(16 << 20, 4);
        let wasm = wat::parse_str(WAT).unwrap();
        let (_, outcome) = load::<Module>(&engine, &wasm, Some(&ModuleCache::new(&dir))).unwrap();
        assert_eq!(outcome, Outcome::Off);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "nothing written");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn eviction_keeps_the_most_recently_used() {
        let dir = temp_dir("evict");
        let cache = ModuleCache::new(&dir);
        cache.prepare_dir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(1000);
        for i in 0..MAX_ENTRIES + 3 {
            let path = dir.join(format!("{i:03}.{EXTENSION}"));
            let file = File::create(&path).unwrap();
            // Entry i is i seconds newer than entry 0.
            file.set_modified(old + Duration::from_secs(i as u64))
                .unwrap();
        }
        let stale = dir.join(format!("x.1.2.{TEMP_EXTENSION}"));
        File::create(&stale)
            .unwrap()
            .set_modified(old - STALE_TEMP)
            .unwrap();
        let fresh = dir.join(format!("x.1.3.{TEMP_EXTENSION}"));
        File::create(&fresh).unwrap();
        cache.evict().unwrap();
        let left = |i: usize| dir.join(format!("{i:03}.{EXTENSION}")).exists();
        assert!(!left(0) && !left(1) && !left(2), "the three oldest go");
        assert!((3..MAX_ENTRIES + 3).all(left), "the rest stay");
        assert!(
            !stale.exists() && fresh.exists(),
            "only stale temp files go"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
