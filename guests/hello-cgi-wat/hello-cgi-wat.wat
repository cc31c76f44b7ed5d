;; Hello over CGI in hand-written WAT: one fd_write of a CGI response to stdout.
;; Served with `--http hello-cgi-wat`; the host adds the HTTP framing.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; The iovec at 0: base 16, length 42.
  (data (i32.const 0) "\10\00\00\00\2a\00\00\00")
  (data (i32.const 16) "Content-Type: text/plain\r\n\r\nHello, World!\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
