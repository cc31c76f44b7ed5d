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
//! No SDK: the imports are declared raw, in `mnvkd.rs` and `wasi.rs`.

use std::collections::{BTreeMap, BTreeSet};

use mnvkd::{read, write};

mod mnvkd;
mod wasi;

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
const TIMEDOUT: i32 = -8;
const AGAIN: i32 = -9;

/// `poll` event bits.
const READABLE: u16 = 1;
const WRITABLE: u16 = 2;
const HANGUP: u16 = 4;
const INVALID: u16 = 8;
const LAZY: u16 = 16;

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
                self.rng.below(35)
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
                27 => self.fuzz_sched_yield(),
                28 => self.fuzz_try_read(),
                29 => self.fuzz_try_write(),
                30 => self.fuzz_dup(),
                31 => self.fuzz_watch(),
                33 => self.fuzz_read_within(),
                34 => self.fuzz_try_accept(),
                _ => self.fuzz_shutdown(),
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
}
