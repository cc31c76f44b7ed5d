//! Fuzz: calls every `mnvkd` import and the WASI imports the host links with
//! random handles, pointers, lengths, counts and timeouts (mostly bad, some
//! good), spawns children that do the same, and checks that each result is
//! a code `wit/mnvkd.wit` (or WASI) documents for that import.
//!
//! Per connection: the client sends a seed (decimal) and half-closes; the
//! process makes [`ROOT_CALLS`] calls chosen by a PRNG seeded with it, waits
//! for the children it still holds, and writes
//! `fuzz-done seed=S calls=N children=C violations=V` as the last line. Each
//! violation is also written as a `fuzz-violation …` line (a child, which
//! has no connection, writes it to stderr and exits with status 99, which
//! its parent counts). The bytes before the marker are whatever the fuzzer
//! wrote to its connection.
//!
//! The fuzzer never makes a call that may legitimately block forever: that
//! would be a hang of the guest, not of the host. So it reads a pipe or
//! writes one (at most 4 KiB, the writable threshold) only after `poll` said
//! it may; `poll` waits without a bound only when an entry is sure to be
//! invalid (reported at once); `sleep`, `poll` and WASI `poll_oneoff` timeouts
//! are otherwise at most a few tens of milliseconds; the host buffers only
//! ever write into its scratch buffer or wholly outside the micro-heap.
//!
//! No SDK: the imports are declared here, raw.

use std::collections::{BTreeMap, BTreeSet};

/// Calls the process for a connection makes.
const ROOT_CALLS: u32 = 400;
/// Calls a spawned child makes.
const CHILD_CALLS: u32 = 120;
/// Children spawn children down to this depth (the root is depth 0).
const MAX_DEPTH: u32 = 2;
/// Fuzzing children each process spawns at most (others get junk arguments
/// and end at once).
const MAX_REAL_CHILDREN: u32 = 3;
/// The scratch buffer: the only guest memory the host is given to write.
const SCRATCH: usize = 64 * 1024;
/// The front of the scratch buffer holds the structures built for a call
/// (poll entries, iovecs, subscriptions, handle lists, text); the rest is
/// the data buffers handed to the host.
const STRUCTS: usize = 4096;
/// Exit status of a child that saw a violation.
const VIOLATED: i32 = 99;

/// Error codes of `wit/mnvkd.wit`.
const BADF: i32 = -1;
const FAULT: i32 = -2;
const INVAL: i32 = -3;
const PIPE: i32 = -4;
const IO: i32 = -5;
const LIMIT: i32 = -6;
const DENIED: i32 = -7;

/// `poll` event bits.
const READABLE: u16 = 1;
const WRITABLE: u16 = 2;
const HANGUP: u16 = 4;
const INVALID: u16 = 8;

#[link(wasm_import_module = "mnvkd")]
extern "C" {
    fn read(handle: i32, ptr: u32, len: u32) -> i32;
    fn write(handle: i32, ptr: u32, len: u32) -> i32;
    fn close(handle: i32) -> i32;
    fn pipe(out: u32) -> i32;
    fn spawn(arg_ptr: u32, arg_len: u32, handles: u32, count: u32) -> i32;
    fn wait(child: i32) -> i32;
    fn poll(fds: u32, count: u32, timeout_ms: i32) -> i32;
    fn sleep(ms: u32) -> i32;
    fn connect(addr_ptr: u32, addr_len: u32) -> i32;
    fn accept(listener: i32) -> i32;
}

mod wasi {
    //! WASI preview 1, raw: every result is an errno (0 = success).
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        pub fn fd_read(fd: i32, iovs: u32, iovs_len: u32, nread: u32) -> i32;
        pub fn fd_write(fd: i32, iovs: u32, iovs_len: u32, nwritten: u32) -> i32;
        pub fn fd_close(fd: i32) -> i32;
        pub fn fd_fdstat_get(fd: i32, out: u32) -> i32;
        pub fn fd_prestat_get(fd: i32, out: u32) -> i32;
        pub fn fd_seek(fd: i32, offset: i64, whence: i32, out: u32) -> i32;
        pub fn poll_oneoff(subs: u32, events: u32, nsubs: u32, nevents: u32) -> i32;
        pub fn clock_time_get(id: i32, precision: i64, out: u32) -> i32;
        pub fn clock_res_get(id: i32, out: u32) -> i32;
        pub fn random_get(buf: u32, len: u32) -> i32;
        pub fn args_sizes_get(argc: u32, size: u32) -> i32;
        pub fn args_get(argv: u32, buf: u32) -> i32;
        pub fn environ_sizes_get(count: u32, size: u32) -> i32;
        pub fn environ_get(environ: u32, buf: u32) -> i32;
        pub fn sched_yield() -> i32;
        pub fn path_open(
            fd: i32,
            dirflags: i32,
            path: u32,
            path_len: u32,
            oflags: i32,
            rights_base: i64,
            rights_inheriting: i64,
            fdflags: i32,
            out: u32,
        ) -> i32;
        pub fn sock_accept(fd: i32, flags: i32, out: u32) -> i32;
        pub fn sock_shutdown(fd: i32, how: i32) -> i32;
    }
    /// The largest errno WASI preview 1 defines (`notcapable`).
    pub const MAX_ERRNO: i32 = 76;
}

/// What a handle the fuzzer holds stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connection,
    PipeRead,
    PipeWrite,
    Child,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Connection => 'n',
            Kind::PipeRead => 'r',
            Kind::PipeWrite => 'w',
            Kind::Child => 'c',
        }
    }

    fn from_letter(letter: char) -> Option<Kind> {
        Some(match letter {
            'n' => Kind::Connection,
            'r' => Kind::PipeRead,
            'w' => Kind::PipeWrite,
            'c' => Kind::Child,
            _ => return None,
        })
    }
}

/// splitmix64: small, and every seed gives a different stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn u32(&mut self) -> u32 {
        self.next() as u32
    }
}

/// A (pointer, length) pair and whether all of it lies in the micro-heap.
#[derive(Debug, Clone, Copy)]
struct Buf {
    ptr: u32,
    len: u32,
    inside: bool,
}

/// One fuzzing process.
struct Fuzzer {
    rng: Rng,
    seed: u64,
    depth: u32,
    /// The handles this process holds, as it believes; a host answer that
    /// contradicts it is a violation.
    handles: BTreeMap<i32, Kind>,
    /// The pipe each pipe end this process made belongs to (ends it was
    /// given have none): when the other end has left this process (closed,
    /// or passed to a child, which ends in bounded time), a blocking read or
    /// write on this end must be woken by the host, so it is made without
    /// asking `poll` first. This is what tests cross-process wake-ups.
    pipes: BTreeMap<i32, u32>,
    next_pipe: u32,
    /// The child handles of WASI-hostile children: their being killed is
    /// expected; any other child's is a violation.
    hostile_children: BTreeSet<i32>,
    /// [`SCRATCH`] bytes, never freed. A raw pointer, read with volatile
    /// loads: the host writes it behind the compiler's back.
    scratch: *mut u8,
    calls: u32,
    children: u32,
    real_children: u32,
    /// Reads and writes made that only another process could end.
    blocked: u32,
    /// Children that were killed (`wait` gave 256).
    killed: u32,
    violations: u32,
    /// Calls WASI with pointers outside the micro-heap or misaligned and
    /// enums out of range, which wasmtime-wasi answers with a trap: only
    /// WASI calls, in a child of its own, which is expected to be killed.
    hostile_wasi: bool,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(arg) = args.next() else {
        root();
        return;
    };
    // argv[1] of a fuzzing child: `fz SEED DEPTH KINDS` (`fzw`: WASI-hostile).
    let mut words = arg.split(' ');
    let mut hostile_wasi = false;
    let parsed = (|| {
        match words.next()? {
            "fz" => {}
            "fzw" => hostile_wasi = true,
            _ => return None,
        }
        let seed: u64 = words.next()?.parse().ok()?;
        let depth: u32 = words.next()?.parse().ok()?;
        // `h`: a WASI-hostile child's handle, which may well be killed.
        let letters: Vec<char> = words.next()?.chars().skip(1).collect();
        let kinds: Option<Vec<Kind>> = letters
            .iter()
            .map(|&letter| Kind::from_letter(if letter == 'h' { 'c' } else { letter }))
            .collect();
        let hostile: BTreeSet<i32> = (0..letters.len() as i32)
            .filter(|&i| letters[i as usize] == 'h')
            .collect();
        Some((seed, depth, kinds?, hostile))
    })();
    // A child spawned with junk arguments ends at once.
    let Some((seed, depth, kinds, hostile_children)) = parsed else {
        std::process::exit(3)
    };
    let mut fuzzer = Fuzzer::new(seed, depth, kinds);
    fuzzer.hostile_wasi = hostile_wasi;
    fuzzer.hostile_children = hostile_children;
    fuzzer.run(CHILD_CALLS);
    std::process::exit(if fuzzer.violations > 0 { VIOLATED } else { 0 });
}

/// The process for a connection: read the seed, fuzz, report.
fn root() {
    let mut input = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { read(0, buf.as_mut_ptr() as u32, buf.len() as u32) };
        if n <= 0 || input.len() > 4096 {
            break;
        }
        input.extend_from_slice(&buf[..n as usize]);
    }
    let seed = String::from_utf8_lossy(&input).trim().parse().unwrap_or(0);
    let mut fuzzer = Fuzzer::new(seed, 0, vec![Kind::Connection]);
    fuzzer.run(ROOT_CALLS);
    fuzzer.wait_for_children();
    let marker = format!(
        "\nfuzz-done seed={seed} calls={} blocked={} children={} killed={} violations={}\n",
        fuzzer.calls, fuzzer.blocked, fuzzer.children, fuzzer.killed, fuzzer.violations
    );
    say(&marker);
}

/// Writes `text` to handle 0 (the root's connection).
fn say(text: &str) {
    // SAFETY: `text` is valid for reads of its length.
    unsafe { write(0, text.as_ptr() as u32, text.len() as u32) };
}

/// The micro-heap's size in bytes.
fn memory_end() -> u64 {
    core::arch::wasm32::memory_size(0) as u64 * 65536
}

impl Fuzzer {
    fn new(seed: u64, depth: u32, kinds: Vec<Kind>) -> Fuzzer {
        Fuzzer {
            rng: Rng(seed ^ (u64::from(depth) << 56)),
            seed,
            depth,
            handles: kinds
                .into_iter()
                .enumerate()
                .map(|(i, kind)| (i as i32, kind))
                .collect(),
            pipes: BTreeMap::new(),
            next_pipe: 0,
            hostile_children: BTreeSet::new(),
            blocked: 0,
            scratch: Box::leak(vec![0u8; SCRATCH].into_boxed_slice()).as_mut_ptr(),
            calls: 0,
            children: 0,
            real_children: 0,
            killed: 0,
            violations: 0,
            hostile_wasi: false,
        }
    }

    fn run(&mut self, calls: u32) {
        while self.calls < calls {
            self.calls += 1;
            let pick = if self.hostile_wasi {
                17 + self.rng.below(11)
            } else {
                self.rng.below(28)
            };
            match pick {
                0..=2 => self.fuzz_read(),
                3..=5 => self.fuzz_write(),
                6 => self.fuzz_close(),
                7..=8 => self.fuzz_pipe(),
                9..=10 => self.fuzz_spawn(),
                11 => self.fuzz_wait(),
                12..=13 => self.fuzz_poll(),
                14 => self.fuzz_sleep(),
                15 => self.fuzz_connect(),
                16 => self.fuzz_accept(),
                17 => self.fuzz_fd_read(),
                18 => self.fuzz_fd_write(),
                19 => self.fuzz_fd_close(),
                20 => self.fuzz_fd_info(),
                21 => self.fuzz_poll_oneoff(),
                22 => self.fuzz_clock(),
                23 => self.fuzz_random_get(),
                24 => self.fuzz_args(),
                25 => self.fuzz_path_open(),
                26 => self.fuzz_sock(),
                _ => self.fuzz_sched_yield(),
            }
        }
    }

    // --- Arguments ---

    fn base(&self) -> u32 {
        self.scratch as u32
    }

    /// A handle: mostly one held, else a small number, a negative one or any.
    fn handle(&mut self) -> i32 {
        if !self.handles.is_empty() && self.rng.chance(55) {
            let i = self.rng.below(self.handles.len() as u64) as usize;
            return *self.handles.keys().nth(i).unwrap();
        }
        match self.rng.below(4) {
            0 => self.rng.below(24) as i32,
            1 => -(self.rng.below(3) as i32) - 1,
            2 => i32::MAX - self.rng.below(2) as i32,
            _ => self.rng.u32() as i32,
        }
    }

    /// A handle this process does not hold.
    fn is_unknown(&self, handle: i32) -> bool {
        !self.handles.contains_key(&handle)
    }

    /// A buffer outside the micro-heap, at least partly.
    fn bad_buffer(&mut self, max_len: u32) -> Buf {
        let end = memory_end();
        let (ptr, len) = match self.rng.below(5) {
            0 => (0xffff_fff0, 4096),
            1 => {
                // Straddles the end of the micro-heap.
                let back = 1 + self.rng.below(64) as u32;
                (end as u32 - back, back + 1 + self.rng.below(64) as u32)
            }
            2 => (
                end as u32 + self.rng.below(1 << 20) as u32,
                self.rng.below(u64::from(max_len) + 1) as u32,
            ),
            3 => (self.base(), u32::MAX - self.rng.below(4) as u32),
            _ => (self.rng.u32(), self.rng.u32()),
        };
        // Whatever was drawn, it must not fit.
        let len = if u64::from(ptr) + u64::from(len) <= end {
            (end - u64::from(ptr) + 1 + self.rng.below(16)) as u32
        } else {
            len
        };
        Buf {
            ptr,
            len,
            inside: false,
        }
    }

    /// A pointer at which `unit` bytes do not fit in the micro-heap: past
    /// its end, or straddling it.
    fn outside_ptr(&mut self, unit: u32) -> u32 {
        let end = memory_end() as u32;
        match self.rng.below(3) {
            0 => end - 1 - self.rng.below(u64::from(unit - 1)) as u32,
            1 => end + self.rng.below(1 << 20) as u32,
            _ => u32::MAX - self.rng.below(16) as u32,
        }
    }

    /// A buffer the host may write: in the data part of the scratch buffer,
    /// or (partly) outside the micro-heap. Never elsewhere in the guest.
    fn dest(&mut self, max_len: u32) -> Buf {
        if self.rng.chance(60) {
            let offset = STRUCTS as u32 + self.rng.below((SCRATCH - STRUCTS) as u64) as u32;
            let room = (SCRATCH as u32 - offset).min(max_len);
            let len = self.rng.below(u64::from(room) + 1) as u32;
            Buf {
                ptr: self.base() + offset,
                len,
                inside: true,
            }
        } else {
            self.bad_buffer(max_len)
        }
    }

    /// A destination of `len` bytes for WASI. wasmtime-wasi traps the
    /// process (rather than returning an errno) for a pointer outside the
    /// micro-heap or misaligned, so only a WASI-hostile process gives such
    /// pointers; the others give 8-aligned ones in the scratch data.
    fn wasi_dest(&mut self, len: u32) -> Buf {
        let room = (SCRATCH - STRUCTS) as u64 - u64::from(len);
        if !self.hostile_wasi || self.rng.chance(60) {
            let offset = STRUCTS as u32 + (self.rng.below(room) as u32 & !7);
            Buf {
                ptr: self.base() + offset,
                len,
                inside: true,
            }
        } else {
            let end = memory_end() as u32;
            let ptr = match self.rng.below(4) {
                0 => end,
                1 => end - 1 - self.rng.below(u64::from(len.max(2) - 1)) as u32,
                2 => self.base() + STRUCTS as u32 + (self.rng.below(room) as u32 | 1),
                _ => 0xffff_fff0u32.max(end),
            };
            Buf {
                ptr,
                len,
                inside: false,
            }
        }
    }

    /// A source for WASI: inside the micro-heap, or (WASI-hostile) anywhere.
    fn wasi_source(&mut self, max_len: u32) -> Buf {
        let buf = self.source(max_len);
        if buf.inside || self.hostile_wasi {
            buf
        } else {
            Buf {
                ptr: self.base() + STRUCTS as u32,
                len: buf.len.min(1024),
                inside: true,
            }
        }
    }

    /// A number below `valid`, or (WASI-hostile, now and then) any: WASI
    /// enums and flags out of range trap the process too.
    fn wasi_enum(&mut self, valid: u64) -> u32 {
        if self.hostile_wasi && self.rng.chance(30) {
            self.rng.u32()
        } else {
            self.rng.below(valid) as u32
        }
    }

    /// A buffer the host may read: anywhere in the micro-heap, or not.
    fn source(&mut self, max_len: u32) -> Buf {
        if self.rng.chance(60) {
            let end = memory_end();
            let ptr = if self.rng.chance(50) {
                self.base() + STRUCTS as u32 + self.rng.below((SCRATCH - STRUCTS) as u64) as u32
            } else {
                self.rng.below(end) as u32
            };
            let room = (end - u64::from(ptr)).min(u64::from(max_len));
            let len = self.rng.below(room + 1) as u32;
            Buf {
                ptr,
                len,
                inside: true,
            }
        } else {
            self.bad_buffer(max_len)
        }
    }

    /// Writes `bytes` at `offset` of the structure part of the scratch
    /// buffer; returns its guest address.
    fn put(&mut self, offset: usize, bytes: &[u8]) -> u32 {
        assert!(offset + bytes.len() <= SCRATCH);
        // SAFETY: in bounds of the scratch allocation (asserted).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.scratch.add(offset), bytes.len())
        };
        self.base() + offset as u32
    }

    fn le32(&self, ptr: u32) -> i32 {
        let offset = (ptr - self.base()) as usize;
        i32::from_le_bytes([0, 1, 2, 3].map(|i| self.byte(offset + i)))
    }

    /// Byte `offset` of the scratch buffer, as the host left it.
    fn byte(&self, offset: usize) -> u8 {
        assert!(offset < SCRATCH);
        // SAFETY: in bounds (asserted); volatile, as the host writes it.
        unsafe { std::ptr::read_volatile(self.scratch.add(offset)) }
    }

    /// A timeout that ends soon.
    fn short_ms(&mut self) -> u32 {
        self.rng.below(25) as u32
    }

    // --- Checks ---

    /// Records a violation: `what` the call was, what it returned, and why
    /// that is wrong.
    fn violation(&mut self, what: &str, code: i64, why: &str) {
        self.violations += 1;
        let line = format!(
            "\nfuzz-violation seed={} depth={} {what} -> {code}: {why}\n",
            self.seed, self.depth
        );
        if self.handles.get(&0) == Some(&Kind::Connection) && self.depth == 0 {
            say(&line);
        } else {
            eprint!("{line}");
        }
    }

    /// Checks that `code` is a success or one of `allowed`.
    fn expect_one_of(&mut self, what: &str, code: i32, allowed: &[i32]) {
        if code < 0 && !allowed.contains(&code) {
            self.violation(
                what,
                code.into(),
                &format!("not a code this import documents ({allowed:?})"),
            );
        }
    }

    /// Checks that `code` is exactly `expected`.
    fn expect(&mut self, what: &str, code: i32, expected: i32) {
        if code != expected {
            self.violation(what, code.into(), &format!("expected {expected}"));
        }
    }

    /// Checks a WASI errno.
    fn expect_errno(&mut self, what: &str, errno: i32) {
        if !(0..=wasi::MAX_ERRNO).contains(&errno) {
            self.violation(what, errno.into(), "not a WASI errno");
        }
    }

    /// Checks that the host gave a handle not already held, and holds it.
    /// Removes `handle` from the handles held.
    fn forget(&mut self, handle: i32) -> Option<Kind> {
        self.pipes.remove(&handle);
        self.hostile_children.remove(&handle);
        self.handles.remove(&handle)
    }

    /// Whether `handle` is a pipe end this process made whose other end it
    /// no longer holds.
    fn other_end_gone(&self, handle: i32) -> bool {
        let Some(pipe) = self.pipes.get(&handle) else {
            return false;
        };
        !self.pipes.iter().any(|(h, p)| p == pipe && *h != handle)
    }

    fn took(&mut self, what: &str, handle: i32, kind: Kind) {
        if handle < 0 {
            return;
        }
        if let Some(old) = self.handles.insert(handle, kind) {
            self.violation(
                what,
                handle.into(),
                &format!("handle already held as {old:?}"),
            );
        }
    }

    // --- mnvkd imports ---

    /// Whether `handle` (held, of `kind`) is ready for `events` now.
    fn ready(&mut self, handle: i32, events: u16) -> bool {
        let entry = self.put(
            0,
            &[
                handle.to_le_bytes().as_slice(),
                &events.to_le_bytes(),
                &[0, 0],
            ]
            .concat(),
        );
        // SAFETY: the entry lies in the scratch buffer.
        let n = unsafe { poll(entry, 1, 0) };
        self.calls += 1;
        n == 1 && u16::from_le_bytes([self.byte(6), self.byte(7)]) & events != 0
    }

    fn fuzz_read(&mut self) {
        let h = self.handle();
        let buf = self.dest(SCRATCH as u32);
        let kind = self.handles.get(&h).copied();
        if kind == Some(Kind::PipeRead) && buf.inside && buf.len > 0 {
            if self.other_end_gone(h) {
                self.blocked += 1;
            } else if !self.ready(h, READABLE) {
                return; // would wait for a writer that may be this very process
            }
        }
        // SAFETY (every import call in this file): the host checks each
        // buffer; the ones it may write are in `scratch` or outside memory.
        let code = unsafe { read(h, buf.ptr, buf.len) };
        let what = format!("read({h}, {:#x}, {})", buf.ptr, buf.len);
        self.expect_one_of(&what, code, &[BADF, FAULT, PIPE, IO]);
        if kind.is_none() {
            self.expect(&what, code, BADF);
        } else if !buf.inside {
            self.expect(&what, code, FAULT);
        } else if code > buf.len as i32 {
            self.violation(&what, code.into(), "read more than asked");
        }
    }

    fn fuzz_write(&mut self) {
        let h = self.handle();
        let kind = self.handles.get(&h).copied();
        let mut buf = self.source(SCRATCH as u32);
        if kind == Some(Kind::PipeWrite) && buf.inside && buf.len > 0 {
            if self.other_end_gone(h) {
                self.blocked += 1;
            } else if !self.ready(h, WRITABLE) {
                return; // would wait for a reader that may be this very process
            } else {
                buf.len = buf.len.min(4096);
            }
        }
        let code = unsafe { write(h, buf.ptr, buf.len) };
        let what = format!("write({h}, {:#x}, {})", buf.ptr, buf.len);
        self.expect_one_of(&what, code, &[BADF, FAULT, PIPE, IO, LIMIT]);
        match kind {
            None | Some(Kind::PipeRead | Kind::Child) => self.expect(&what, code, BADF),
            Some(_) if !buf.inside => self.expect(&what, code, FAULT),
            Some(_) if code > buf.len as i32 => {
                self.violation(&what, code.into(), "wrote more than asked")
            }
            Some(_) => {}
        }
    }

    fn fuzz_close(&mut self) {
        let mut h = self.handle();
        if self.depth == 0 && h == 0 {
            h = -1; // the root keeps its connection for the marker
        }
        let code = unsafe { close(h) };
        let what = format!("close({h})");
        let expected = if self.forget(h).is_some() { 0 } else { BADF };
        self.expect(&what, code, expected);
    }

    fn fuzz_pipe(&mut self) {
        // The host writes both handles at once, after checking all 8 bytes:
        // a buffer straddling the end of the micro-heap is safe to give.
        let out = if self.rng.chance(80) {
            self.wasi_dest(8)
        } else {
            let back = 1 + self.rng.below(7) as u32;
            Buf {
                ptr: memory_end() as u32 - back,
                len: 8,
                inside: false,
            }
        };
        let inside = u64::from(out.ptr) + 8 <= memory_end();
        let code = unsafe { pipe(out.ptr) };
        let what = format!("pipe({:#x})", out.ptr);
        self.expect_one_of(&what, code, &[FAULT, LIMIT]);
        if !inside {
            self.expect(&what, code, FAULT);
        } else if code == 0 {
            let (r, w) = (self.le32(out.ptr), self.le32(out.ptr + 4));
            self.took(&what, r, Kind::PipeRead);
            self.took(&what, w, Kind::PipeWrite);
            self.pipes.insert(r, self.next_pipe);
            self.pipes.insert(w, self.next_pipe);
            self.next_pipe += 1;
        } else {
            self.expect(&what, code, LIMIT);
        }
    }

    fn fuzz_spawn(&mut self) {
        // The handles to pass: some held, maybe one not, maybe one twice.
        let count = match self.rng.below(10) {
            0 => 1025 + self.rng.below(1 << 20) as u32,
            1 => self.rng.u32().max(1025),
            _ => self.rng.below(4) as u32,
        };
        let mut list: Vec<i32> = Vec::new();
        for _ in 0..count.min(4) {
            let mut h = self.handle();
            if self.depth == 0 && h == 0 {
                h = 1000; // the root keeps its connection
            }
            list.push(h);
        }
        let real =
            self.depth < MAX_DEPTH && self.real_children < MAX_REAL_CHILDREN && self.rng.chance(70);
        let kinds: String = list
            .iter()
            .map(|h| match self.handles.get(h) {
                Some(Kind::Child) if self.hostile_children.contains(h) => 'h',
                Some(kind) => kind.letter(),
                None => '?',
            })
            .collect();
        let child_seed = self.rng.next() >> 12;
        let hostile = real && self.rng.chance(25);
        let text = if real {
            let role = if hostile { "fzw" } else { "fz" };
            format!("{role} {child_seed} {} -{kinds}", self.depth + 1)
        } else {
            "junk".to_owned()
        };
        let mut arg_bytes = text.into_bytes();
        if self.rng.chance(10) {
            arg_bytes.push(0xff); // not UTF-8
        }
        let arg_ptr = self.put(0, &arg_bytes);
        let mut arg = Buf {
            ptr: arg_ptr,
            len: arg_bytes.len() as u32,
            inside: true,
        };
        if self.rng.chance(10) {
            arg = self.bad_buffer(256);
        }
        let list_bytes: Vec<u8> = list.iter().flat_map(|h| h.to_le_bytes()).collect();
        let mut list_ptr = self.put(1024, &list_bytes);
        let mut list_inside = true;
        if self.rng.chance(10) {
            // Past the end, or straddling it (4 bytes are enough to straddle).
            list_ptr = self.outside_ptr(4);
            list_inside = u64::from(list_ptr) + u64::from(count.min(1024)) * 4 <= memory_end();
        }
        let code = unsafe { spawn(arg.ptr, arg.len, list_ptr, count) };
        let what = format!(
            "spawn({:#x}, {}, {list_ptr:#x}, {count}) [{list:?}]",
            arg.ptr, arg.len
        );
        self.expect_one_of(&what, code, &[FAULT, INVAL, BADF, LIMIT]);
        // The host's order of checks: count, arg, list, UTF-8, each handle.
        let expected = if count > 1024 {
            Some(INVAL)
        } else if !arg.inside || !list_inside {
            Some(FAULT)
        } else if std::str::from_utf8(&arg_bytes).is_err() {
            Some(INVAL)
        } else {
            let mut first = None;
            for (i, h) in list.iter().enumerate() {
                if self.is_unknown(*h) {
                    first = Some(BADF);
                    break;
                }
                if list[..i].contains(h) {
                    first = Some(INVAL);
                    break;
                }
            }
            first
        };
        if let Some(expected) = expected {
            self.expect(&what, code, expected);
        }
        if code >= 0 {
            for h in &list {
                self.forget(*h);
            }
            self.children += 1;
            if real {
                self.real_children += 1;
            }
            self.took(&what, code, Kind::Child);
            if hostile {
                self.hostile_children.insert(code);
            }
        }
    }

    fn fuzz_wait(&mut self) {
        let h = self.handle();
        let kind = self.handles.get(&h).copied();
        let code = unsafe { wait(h) };
        let what = format!("wait({h})");
        if kind == Some(Kind::Child) {
            let hostile = self.hostile_children.contains(&h);
            self.forget(h);
            self.child_ended(&what, code, hostile);
        } else {
            self.expect(&what, code, BADF);
        }
    }

    /// Checks a child's exit status: 0 (or 3, junk arguments), 99 (it saw a
    /// violation) or 256 (killed: only a WASI-hostile child may be).
    fn child_ended(&mut self, what: &str, code: i32, hostile: bool) {
        match code {
            0 | 3 => {}
            256 if hostile => self.killed += 1,
            256 => self.violation(
                what,
                code.into(),
                "a child that made only well-formed calls was killed",
            ),
            VIOLATED => self.violation(what, code.into(), "the child saw a violation"),
            _ => self.violation(what, code.into(), "not an exit status a fuzz child has"),
        }
    }

    fn wait_for_children(&mut self) {
        let children: Vec<i32> = self
            .handles
            .iter()
            .filter(|(_, k)| **k == Kind::Child)
            .map(|(h, _)| *h)
            .collect();
        for h in children {
            self.calls += 1;
            let code = unsafe { wait(h) };
            let hostile = self.hostile_children.contains(&h);
            self.forget(h);
            self.child_ended(&format!("wait({h})"), code, hostile);
        }
    }

    fn fuzz_poll(&mut self) {
        let count = match self.rng.below(12) {
            0 => 1025 + self.rng.below(1000) as u32,
            1 => self.rng.u32().max(1025),
            _ => self.rng.below(6) as u32,
        };
        let mut entries = Vec::new();
        for _ in 0..count.min(6) {
            let h = self.handle();
            let events = if self.rng.chance(80) {
                self.rng.below(4) as u16
            } else {
                self.rng.u32() as u16
            };
            entries.push((h, events));
        }
        let bytes: Vec<u8> = entries
            .iter()
            .flat_map(|(h, e)| {
                [h.to_le_bytes().as_slice(), &e.to_le_bytes(), &[0xaa, 0xaa]].concat()
            })
            .collect();
        let mut ptr = self.put(0, &bytes);
        let mut inside = true;
        if self.rng.chance(10) {
            ptr = self.outside_ptr(8);
            inside = u64::from(ptr) + u64::from(count.min(1024)) * 8 <= memory_end();
        }
        let sure_invalid = entries.iter().any(|(h, _)| self.is_unknown(*h));
        // An end whose other end went to a child: the child's writing,
        // reading or ending must wake this poll (a read end reports end of
        // stream as readable, a write end hang-up whatever it asked).
        let woken_by_a_child = entries.iter().any(|(h, events)| {
            self.other_end_gone(*h)
                && (self.handles.get(h) == Some(&Kind::PipeWrite) || events & READABLE != 0)
        });
        if woken_by_a_child && inside && count <= 1024 {
            self.blocked += 1;
        }
        let may_block_long = sure_invalid || woken_by_a_child;
        let timeout = if may_block_long || !inside || count > 1024 {
            match self.rng.below(3) {
                0 => -1,
                1 => self.rng.u32() as i32,
                _ => self.short_ms() as i32,
            }
        } else {
            self.short_ms() as i32
        };
        let code = unsafe { poll(ptr, count, timeout) };
        let what = format!("poll({ptr:#x}, {count}, {timeout}) [{entries:?}]");
        self.expect_one_of(&what, code, &[FAULT, INVAL]);
        if count > 1024 {
            self.expect(&what, code, INVAL);
        } else if !inside {
            self.expect(&what, code, FAULT);
        } else if code >= 0 {
            let mut ready = 0;
            for (i, (h, events)) in entries.iter().enumerate() {
                let at = i * 8 + 6;
                let revents = u16::from_le_bytes([self.byte(at), self.byte(at + 1)]);
                let wrong = if self.is_unknown(*h) {
                    revents != INVALID
                } else {
                    revents & !((events & (READABLE | WRITABLE)) | HANGUP) != 0
                };
                if wrong {
                    self.violation(
                        &what,
                        revents.into(),
                        &format!("revents of entry {i} (handle {h}, events {events:#x})"),
                    );
                }
                ready += i32::from(revents != 0);
            }
            self.expect(&what, code, ready);
        }
    }

    fn fuzz_sleep(&mut self) {
        let ms = self.short_ms();
        let code = unsafe { sleep(ms) };
        self.expect(&format!("sleep({ms})"), code, 0);
    }

    fn fuzz_connect(&mut self) {
        let text: &[u8] = match self.rng.below(5) {
            0 => b"127.0.0.1:1",
            1 => b"10.255.255.1:80",
            2 => b"not an address",
            3 => b"\xff\xfe:80",
            _ => b"[::1]:1",
        };
        let ptr = self.put(0, text);
        let mut buf = Buf {
            ptr,
            len: text.len() as u32,
            inside: true,
        };
        if self.rng.chance(20) {
            buf = self.bad_buffer(64);
        }
        let code = unsafe { connect(buf.ptr, buf.len) };
        let what = format!(
            "connect({:#x}, {}) [{}]",
            buf.ptr,
            buf.len,
            String::from_utf8_lossy(text)
        );
        self.expect_one_of(&what, code, &[FAULT, INVAL, DENIED, IO, LIMIT]);
        if !buf.inside {
            self.expect(&what, code, FAULT);
        } else if code >= 0 {
            self.violation(
                &what,
                code.into(),
                "nothing listens there: connect cannot succeed",
            );
            self.handles.insert(code, Kind::Connection);
        } else {
            let expected = match text {
                b"127.0.0.1:1" => IO,
                b"10.255.255.1:80" | b"[::1]:1" => DENIED,
                _ => INVAL,
            };
            if !(expected == IO && code == LIMIT) {
                self.expect(&what, code, expected);
            }
        }
    }

    fn fuzz_accept(&mut self) {
        let h = self.handle();
        let code = unsafe { accept(h) };
        // No process of a connection-mode app holds a listener.
        self.expect(&format!("accept({h})"), code, BADF);
    }

    // --- WASI ---

    fn fd(&mut self) -> i32 {
        match self.rng.below(6) {
            0..=2 => self.rng.below(4) as i32,
            3 => -1,
            4 => self.rng.below(64) as i32,
            _ => self.rng.u32() as i32,
        }
    }

    /// Builds `n` iovecs at the scratch offset `at`, each a destination (the
    /// host writes them) or a source.
    fn iovecs(&mut self, at: usize, n: u32, dest: bool) -> u32 {
        let mut bytes = Vec::new();
        for _ in 0..n {
            let buf = if dest {
                let len = self.rng.below(2048) as u32;
                self.wasi_dest(len)
            } else {
                self.wasi_source(8192)
            };
            bytes.extend_from_slice(&buf.ptr.to_le_bytes());
            bytes.extend_from_slice(&buf.len.to_le_bytes());
        }
        self.put(at, &bytes)
    }

    fn fuzz_fd_read(&mut self) {
        let fd = self.fd();
        let n = self.rng.below(4) as u32;
        let iovs = if self.rng.chance(85) {
            self.iovecs(0, n, true)
        } else {
            self.wasi_dest(8 * n).ptr
        };
        let nread = self.wasi_dest(4).ptr;
        let errno = unsafe { wasi::fd_read(fd, iovs, n, nread) };
        self.expect_errno(&format!("fd_read({fd}, {iovs:#x}, {n}, {nread:#x})"), errno);
    }

    fn fuzz_fd_write(&mut self) {
        let fd = self.fd();
        let n = self.rng.below(4) as u32;
        let iovs = if !self.hostile_wasi || self.rng.chance(85) {
            self.iovecs(0, n, false)
        } else {
            self.bad_buffer(64).ptr
        };
        let nwritten = self.wasi_dest(4).ptr;
        let errno = unsafe { wasi::fd_write(fd, iovs, n, nwritten) };
        self.expect_errno(
            &format!("fd_write({fd}, {iovs:#x}, {n}, {nwritten:#x})"),
            errno,
        );
    }

    fn fuzz_fd_close(&mut self) {
        let fd = self.fd();
        let errno = unsafe { wasi::fd_close(fd) };
        self.expect_errno(&format!("fd_close({fd})"), errno);
    }

    fn fuzz_fd_info(&mut self) {
        let fd = self.fd();
        let (what, errno) = match self.rng.below(3) {
            0 => {
                let out = self.wasi_dest(24).ptr;
                (format!("fd_fdstat_get({fd}, {out:#x})"), unsafe {
                    wasi::fd_fdstat_get(fd, out)
                })
            }
            1 => {
                let out = self.wasi_dest(8).ptr;
                (format!("fd_prestat_get({fd}, {out:#x})"), unsafe {
                    wasi::fd_prestat_get(fd, out)
                })
            }
            _ => {
                let out = self.wasi_dest(8).ptr;
                let offset = self.rng.next() as i64;
                let whence = self.wasi_enum(3) as i32;
                (
                    format!("fd_seek({fd}, {offset}, {whence}, {out:#x})"),
                    unsafe { wasi::fd_seek(fd, offset, whence, out) },
                )
            }
        };
        self.expect_errno(&what, errno);
    }

    fn fuzz_poll_oneoff(&mut self) {
        let nsubs = self.rng.below(4) as u32;
        let mut subs = Vec::new();
        for i in 0..nsubs {
            let mut sub = [0u8; 48];
            sub[..8].copy_from_slice(&u64::from(i).to_le_bytes());
            // The first is a short clock, so the call ends soon whatever
            // the others wait for.
            let tag = if i == 0 { 0 } else { self.wasi_enum(3) as u8 };
            sub[8] = tag;
            if tag == 0 {
                let id = if i == 0 { 1 } else { self.wasi_enum(4) };
                sub[16..20].copy_from_slice(&id.to_le_bytes());
                let ns = u64::from(self.short_ms()) * 1_000_000;
                sub[24..32].copy_from_slice(&ns.to_le_bytes());
                sub[32..40].copy_from_slice(&self.rng.next().to_le_bytes());
                // Absolute (1) on a monotonic clock at a tiny time: already past.
                let flags = if i > 0 && self.rng.chance(30) {
                    1u16
                } else {
                    0
                };
                sub[40..42].copy_from_slice(&flags.to_le_bytes());
            } else {
                let fd = self.fd() as u32;
                sub[16..20].copy_from_slice(&fd.to_le_bytes());
            }
            subs.extend_from_slice(&sub);
        }
        let mut input = self.put(0, &subs);
        if self.hostile_wasi && self.rng.chance(10) {
            input = memory_end() as u32 + self.rng.below(4096) as u32;
        }
        let events = self.wasi_dest(32 * 4).ptr;
        let nevents = self.wasi_dest(4).ptr;
        let errno = unsafe { wasi::poll_oneoff(input, events, nsubs, nevents) };
        self.expect_errno(
            &format!("poll_oneoff({input:#x}, {events:#x}, {nsubs}, {nevents:#x})"),
            errno,
        );
    }

    fn fuzz_clock(&mut self) {
        let id = self.wasi_enum(4) as i32;
        let out = self.wasi_dest(8).ptr;
        let (what, errno) = if self.rng.chance(50) {
            let precision = self.rng.next() as i64;
            (
                format!("clock_time_get({id}, {precision}, {out:#x})"),
                unsafe { wasi::clock_time_get(id, precision, out) },
            )
        } else {
            (format!("clock_res_get({id}, {out:#x})"), unsafe {
                wasi::clock_res_get(id, out)
            })
        };
        self.expect_errno(&what, errno);
    }

    fn fuzz_random_get(&mut self) {
        let len = self.rng.below(4096) as u32;
        let buf = self.wasi_dest(len);
        let errno = unsafe { wasi::random_get(buf.ptr, buf.len) };
        self.expect_errno(&format!("random_get({:#x}, {})", buf.ptr, buf.len), errno);
    }

    fn fuzz_args(&mut self) {
        let environ = self.rng.chance(50);
        let (a, b) = (self.wasi_dest(1024).ptr, self.wasi_dest(4096).ptr);
        let sizes = self.rng.chance(50);
        let errno = unsafe {
            match (environ, sizes) {
                (false, true) => wasi::args_sizes_get(a, b),
                (false, false) => wasi::args_get(a, b),
                (true, true) => wasi::environ_sizes_get(a, b),
                (true, false) => wasi::environ_get(a, b),
            }
        };
        let name = if environ { "environ" } else { "args" };
        self.expect_errno(
            &format!(
                "{name}_{}({a:#x}, {b:#x})",
                if sizes { "sizes_get" } else { "get" }
            ),
            errno,
        );
    }

    fn fuzz_path_open(&mut self) {
        let fd = self.fd();
        let path = if self.hostile_wasi {
            self.source(64)
        } else {
            let len = self.rng.below(16) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| b"./ab.."[self.rng.below(6) as usize])
                .collect();
            Buf {
                ptr: self.put(0, &text),
                len: len as u32,
                inside: true,
            }
        };
        let out = self.wasi_dest(4).ptr;
        let oflags = self.wasi_enum(16) as i32;
        let rights = i64::from(self.wasi_enum(1 << 29));
        let errno =
            unsafe { wasi::path_open(fd, 0, path.ptr, path.len, oflags, rights, rights, 0, out) };
        self.expect_errno(
            &format!("path_open({fd}, {:#x}, {})", path.ptr, path.len),
            errno,
        );
    }

    fn fuzz_sock(&mut self) {
        let fd = self.fd();
        let (what, errno) = if self.rng.chance(50) {
            let out = self.wasi_dest(4).ptr;
            let flags = self.wasi_enum(32) as i32;
            (format!("sock_accept({fd}, {flags}, {out:#x})"), unsafe {
                wasi::sock_accept(fd, flags, out)
            })
        } else {
            let how = self.wasi_enum(4) as i32;
            (format!("sock_shutdown({fd}, {how})"), unsafe {
                wasi::sock_shutdown(fd, how)
            })
        };
        self.expect_errno(&what, errno);
    }

    fn fuzz_sched_yield(&mut self) {
        let errno = unsafe { wasi::sched_yield() };
        self.expect_errno("sched_yield()", errno);
    }
}
