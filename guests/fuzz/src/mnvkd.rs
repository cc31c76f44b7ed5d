//! The `mnvkd` imports, raw, and the calls the fuzzer makes of them.

use super::*;

#[link(wasm_import_module = "mnvkd")]
extern "C" {
    pub(crate) fn read(handle: i32, ptr: u32, len: u32) -> i32;
    pub(crate) fn write(handle: i32, ptr: u32, len: u32) -> i32;
    pub(crate) fn close(handle: i32) -> i32;
    pub(crate) fn pipe(out: u32) -> i32;
    pub(crate) fn spawn(arg_ptr: u32, arg_len: u32, handles: u32, count: u32) -> i32;
    pub(crate) fn wait(child: i32) -> i32;
    pub(crate) fn poll(fds: u32, count: u32, timeout_ms: i32) -> i32;
    pub(crate) fn watch(
        changes: u32,
        change_count: u32,
        ready: u32,
        ready_max: u32,
        timeout_ms: i32,
    ) -> i32;
    pub(crate) fn sleep(ms: u32) -> i32;
    pub(crate) fn connect(addr_ptr: u32, addr_len: u32) -> i32;
    pub(crate) fn accept(listener: i32) -> i32;
    #[link_name = "try-read"]
    pub(crate) fn try_read(handle: i32, ptr: u32, len: u32) -> i32;
    #[link_name = "read-within"]
    pub(crate) fn read_within(handle: i32, ptr: u32, len: u32, timeout_ms: i32) -> i32;
    #[link_name = "try-accept"]
    pub(crate) fn try_accept(listener: i32) -> i32;
    #[link_name = "try-write"]
    pub(crate) fn try_write(handle: i32, ptr: u32, len: u32) -> i32;
    pub(crate) fn dup(handle: i32) -> i32;
    pub(crate) fn shutdown(handle: i32, how: i32) -> i32;
}

impl Fuzzer {
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

    pub(crate) fn fuzz_read(&mut self) {
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
        self.check_read(&what, code, kind, &buf, &[BADF, FAULT, PIPE, IO]);
    }

    /// Checks what `read` or `try-read` (which may also answer `again`)
    /// returned for `buf` on a handle of `kind`.
    fn check_read(
        &mut self,
        what: &str,
        code: i32,
        kind: Option<Kind>,
        buf: &Buf,
        allowed: &[i32],
    ) {
        self.expect_one_of(what, code, allowed);
        if kind.is_none() {
            self.expect(what, code, BADF);
        } else if !buf.inside {
            self.expect(what, code, FAULT);
        } else if code > buf.len as i32 {
            self.violation(what, code.into(), "read more than asked");
        }
    }

    pub(crate) fn fuzz_write(&mut self) {
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
        self.check_write(&what, code, kind, &buf, &[BADF, FAULT, PIPE, IO, LIMIT]);
    }

    /// Checks what `write` or `try-write` (which may also answer `again`)
    /// returned for `buf` on a handle of `kind`.
    fn check_write(
        &mut self,
        what: &str,
        code: i32,
        kind: Option<Kind>,
        buf: &Buf,
        allowed: &[i32],
    ) {
        self.expect_one_of(what, code, allowed);
        match kind {
            None | Some(Kind::PipeRead | Kind::Child) => self.expect(what, code, BADF),
            Some(_) if !buf.inside => self.expect(what, code, FAULT),
            Some(_) if code > buf.len as i32 => {
                self.violation(what, code.into(), "wrote more than asked")
            }
            Some(_) => {}
        }
    }

    pub(crate) fn fuzz_close(&mut self) {
        let mut h = self.handle();
        if self.depth == 0 && h == 0 {
            h = -1; // the root keeps its connection for the marker
        }
        let code = unsafe { close(h) };
        let what = format!("close({h})");
        let expected = if self.forget(h).is_some() { 0 } else { BADF };
        self.expect(&what, code, expected);
    }

    pub(crate) fn fuzz_pipe(&mut self) {
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

    pub(crate) fn fuzz_spawn(&mut self) {
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

    pub(crate) fn fuzz_wait(&mut self) {
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

    pub(crate) fn wait_for_children(&mut self) {
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

    /// `count` `poll`/`watch` entries: (handle, events), and their bytes
    /// (revents 0xaaaa). Events are the defined bits `good_percent` of the
    /// time, any 16 bits otherwise.
    fn random_entries(&mut self, count: u32, good_percent: u64) -> (Vec<(i32, u16)>, Vec<u8>) {
        let mut entries = Vec::new();
        for _ in 0..count {
            let h = self.handle();
            let events = if self.rng.chance(good_percent) {
                self.rng.below(4) as u16 | if self.rng.chance(25) { LAZY } else { 0 }
            } else {
                self.rng.u32() as u16
            };
            entries.push((h, events));
        }
        let bytes = entries
            .iter()
            .flat_map(|(h, e)| {
                [h.to_le_bytes().as_slice(), &e.to_le_bytes(), &[0xaa, 0xaa]].concat()
            })
            .collect();
        (entries, bytes)
    }

    pub(crate) fn fuzz_poll(&mut self) {
        let count = match self.rng.below(12) {
            0 => 1025 + self.rng.below(1000) as u32,
            1 => self.rng.u32().max(1025),
            _ => self.rng.below(6) as u32,
        };
        let (entries, bytes) = self.random_entries(count.min(6), 80);
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

    /// `watch` never waits long here: what it arms stays armed across
    /// calls, so what it reports may be a handle armed calls ago.
    pub(crate) fn fuzz_watch(&mut self) {
        let change_count = match self.rng.below(12) {
            0 => 1025 + self.rng.below(1000) as u32,
            _ => self.rng.below(6) as u32,
        };
        let ready_max = match self.rng.below(12) {
            0 => 0,
            1 => 1025 + self.rng.below(1000) as u32,
            _ => 1 + self.rng.below(8) as u32,
        };
        let (changes, bytes) = self.random_entries(change_count.min(6), 85);
        // Changes at the front of the scratch buffer, reports after them.
        const REPORTS_AT: usize = 512;
        let mut changes_ptr = self.put(0, &bytes);
        let mut ready_ptr = self.base() + REPORTS_AT as u32;
        let mut inside = true;
        if self.rng.chance(8) {
            changes_ptr = self.outside_ptr(8);
            inside &=
                u64::from(changes_ptr) + u64::from(change_count.min(1024)) * 8 <= memory_end();
        }
        if self.rng.chance(8) {
            ready_ptr = self.outside_ptr(8);
            inside &= u64::from(ready_ptr) + u64::from(ready_max.min(1024)) * 8 <= memory_end();
        }
        let timeout = self.rng.below(3) as i32; // 0-2 ms: nothing here may block
        let code = unsafe { watch(changes_ptr, change_count, ready_ptr, ready_max, timeout) };
        let what = format!(
            "watch({changes_ptr:#x}, {change_count}, {ready_ptr:#x}, {ready_max}, {timeout}) [{changes:?}]"
        );
        self.expect_one_of(&what, code, &[FAULT, INVAL]);
        let bad_bits = changes
            .iter()
            .any(|(_, e)| e & !(READABLE | WRITABLE | LAZY) != 0);
        let not_open = changes
            .iter()
            .filter(|(h, e)| *e != 0 && self.is_unknown(*h))
            .count() as u32;
        if change_count > 1024 || ready_max == 0 || ready_max > 1024 {
            self.expect(&what, code, INVAL);
        } else if !inside {
            self.expect(&what, code, FAULT);
        } else if bad_bits || not_open > ready_max {
            self.expect(&what, code, INVAL);
        } else if code >= 0 {
            if code as u32 > ready_max {
                self.violation(&what, code.into(), "more reports than ready-max");
                return;
            }
            for i in 0..code as usize {
                let at = REPORTS_AT + i * 8;
                let h = i32::from_le_bytes([0, 1, 2, 3].map(|k| self.byte(at + k)));
                let events = u16::from_le_bytes([self.byte(at + 4), self.byte(at + 5)]);
                let revents = u16::from_le_bytes([self.byte(at + 6), self.byte(at + 7)]);
                let wrong = if events & !(READABLE | WRITABLE | LAZY) != 0 || revents == 0 {
                    true
                } else if self.is_unknown(h) {
                    revents != INVALID
                } else {
                    revents & !(events | HANGUP | INVALID) != 0
                };
                if wrong {
                    self.violation(
                        &what,
                        revents.into(),
                        &format!(
                            "report {i}: handle {h}, events {events:#x}, revents {revents:#x}"
                        ),
                    );
                }
            }
        }
    }

    pub(crate) fn fuzz_sleep(&mut self) {
        let ms = self.short_ms();
        let code = unsafe { sleep(ms) };
        self.expect(&format!("sleep({ms})"), code, 0);
    }

    pub(crate) fn fuzz_connect(&mut self) {
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

    pub(crate) fn fuzz_accept(&mut self) {
        let h = self.handle();
        let code = unsafe { accept(h) };
        // No process of a connection-mode app holds a listener.
        self.expect(&format!("accept({h})"), code, BADF);
    }

    pub(crate) fn fuzz_try_accept(&mut self) {
        let h = self.handle();
        let code = unsafe { try_accept(h) };
        // No process of a connection-mode app holds a listener.
        self.expect(&format!("try-accept({h})"), code, BADF);
    }

    pub(crate) fn fuzz_read_within(&mut self) {
        let h = self.handle();
        let buf = self.dest(SCRATCH as u32);
        let kind = self.handles.get(&h).copied();
        let answers_at_once = kind.is_none() || !buf.inside || buf.len == 0;
        // Short waits: a long one only slows the run, and one without a
        // limit could wait for a writer that is this very process. Any
        // timeout where the call must answer before it would wait.
        let timeout_ms = match self.rng.below(3) {
            0 => 0,
            1 => 1 + self.rng.below(3) as i32,
            _ if answers_at_once => self.rng.u32() as i32,
            _ => 0,
        };
        let code = unsafe { read_within(h, buf.ptr, buf.len, timeout_ms) };
        let what = format!(
            "read-within({h}, {:#x}, {}, {timeout_ms})",
            buf.ptr, buf.len
        );
        self.check_read(&what, code, kind, &buf, &[BADF, FAULT, PIPE, IO, TIMEDOUT]);
    }

    pub(crate) fn fuzz_try_read(&mut self) {
        let h = self.handle();
        let buf = self.dest(SCRATCH as u32);
        let kind = self.handles.get(&h).copied();
        let code = unsafe { try_read(h, buf.ptr, buf.len) };
        let what = format!("try-read({h}, {:#x}, {})", buf.ptr, buf.len);
        self.check_read(&what, code, kind, &buf, &[BADF, FAULT, PIPE, IO, AGAIN]);
    }

    pub(crate) fn fuzz_try_write(&mut self) {
        let h = self.handle();
        let kind = self.handles.get(&h).copied();
        let buf = self.source(SCRATCH as u32);
        let code = unsafe { try_write(h, buf.ptr, buf.len) };
        let what = format!("try-write({h}, {:#x}, {})", buf.ptr, buf.len);
        self.check_write(
            &what,
            code,
            kind,
            &buf,
            &[BADF, FAULT, PIPE, IO, LIMIT, AGAIN],
        );
    }

    pub(crate) fn fuzz_dup(&mut self) {
        let h = self.handle();
        let kind = self.handles.get(&h).copied();
        let code = unsafe { dup(h) };
        let what = format!("dup({h})");
        self.expect_one_of(&what, code, &[BADF, LIMIT]);
        match kind {
            None | Some(Kind::Child) => self.expect(&what, code, BADF),
            Some(kind) if code >= 0 => {
                self.took(&what, code, kind);
                if let Some(&pipe) = self.pipes.get(&h) {
                    self.pipes.insert(code, pipe);
                }
            }
            Some(_) => self.expect(&what, code, LIMIT),
        }
    }

    pub(crate) fn fuzz_shutdown(&mut self) {
        let mut h = self.handle();
        let kind = self.handles.get(&h).copied();
        if kind == Some(Kind::Connection) {
            // Every connection handle reaches the client that waits for the
            // marker: shutting one down would end the run, not test it.
            h = -1;
        }
        let how = match self.rng.below(4) {
            0 => self.rng.u32() as i32,
            _ => 1 + self.rng.below(3) as i32,
        };
        let code = unsafe { shutdown(h, how) };
        let what = format!("shutdown({h}, {how})");
        self.expect_one_of(&what, code, &[BADF, INVAL]);
        let stream = matches!(self.handles.get(&h), Some(Kind::PipeRead | Kind::PipeWrite));
        match (stream, (1..=3).contains(&how)) {
            (true, true) => self.expect(&what, code, 0),
            (true, false) => self.expect(&what, code, INVAL),
            (false, true) => self.expect(&what, code, BADF),
            (false, false) if code == 0 => self.violation(&what, code.into(), "shut down nothing"),
            (false, false) => {}
        }
    }
}
