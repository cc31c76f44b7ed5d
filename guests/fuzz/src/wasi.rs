//! WASI preview 1, raw: every result is an errno (0 = success).

use super::*;

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

impl Fuzzer {
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

    pub(crate) fn fuzz_fd_read(&mut self) {
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

    pub(crate) fn fuzz_fd_write(&mut self) {
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

    pub(crate) fn fuzz_fd_close(&mut self) {
        let fd = self.fd();
        let errno = unsafe { wasi::fd_close(fd) };
        self.expect_errno(&format!("fd_close({fd})"), errno);
    }

    pub(crate) fn fuzz_fd_info(&mut self) {
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

    pub(crate) fn fuzz_poll_oneoff(&mut self) {
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

    pub(crate) fn fuzz_clock(&mut self) {
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

    pub(crate) fn fuzz_random_get(&mut self) {
        let len = self.rng.below(4096) as u32;
        let buf = self.wasi_dest(len);
        let errno = unsafe { wasi::random_get(buf.ptr, buf.len) };
        self.expect_errno(&format!("random_get({:#x}, {})", buf.ptr, buf.len), errno);
    }

    pub(crate) fn fuzz_args(&mut self) {
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

    pub(crate) fn fuzz_path_open(&mut self) {
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

    pub(crate) fn fuzz_sock(&mut self) {
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

    pub(crate) fn fuzz_sched_yield(&mut self) {
        let errno = unsafe { wasi::sched_yield() };
        self.expect_errno("sched_yield()", errno);
    }
}
