;; A guest that tries to flood the host's log (for the log-bound test): it
;; reads its connection to the end, writes 20 000 lines to stderr, asks
;; 20 000 times to `connect` to an address its app was not granted, then
;; says `done` on its connection.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param $fd i32) (param $iovs i32) (param $iovs_len i32) (param $nread i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param $fd i32) (param $iovs i32) (param $iovs_len i32) (param $nwritten i32) (result i32)))
  (import "mnvkd" "connect"
    (func $connect (param $ptr i32) (param $len i32) (result i32)))

  ;; 0: one iovec {ptr, len}; 8: bytes moved; 64: texts; 1024: read buffer.
  (memory (export "memory") 1)
  (data (i32.const 64) "flood\n")
  (data (i32.const 80) "127.0.0.1:9")
  (data (i32.const 96) "done\n")

  (func $say (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store offset=4 (i32.const 0) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func (export "_start")
    (local $i i32)
    ;; Read (and drop) the input up to its end, or an error.
    (block $eof
      (loop $read
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store offset=4 (i32.const 0) (i32.const 1024))
        (br_if $eof (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $read (i32.load (i32.const 8)))))
    (loop $lines
      (call $say (i32.const 2) (i32.const 64) (i32.const 6))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $lines (i32.lt_u (local.get $i) (i32.const 20000))))
    (local.set $i (i32.const 0))
    (loop $connects
      (drop (call $connect (i32.const 80) (i32.const 11)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $connects (i32.lt_u (local.get $i) (i32.const 20000))))
    (call $say (i32.const 1) (i32.const 96) (i32.const 5)))
)
