;; Echo in hand-written WAT (inetd mode): copies fd 0 to fd 1 until end of
;; stream, looping over short writes. Stops quietly on any error.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param $fd i32) (param $iovs i32) (param $iovs_len i32) (param $nread i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param $fd i32) (param $iovs i32) (param $iovs_len i32) (param $nwritten i32) (result i32)))

  ;; 0: one iovec {ptr, len}; 8: bytes moved by the last call; 1024: buffer.
  (memory (export "memory") 1)
  (global $iov i32 (i32.const 0))
  (global $moved i32 (i32.const 8))
  (global $buf i32 (i32.const 1024))
  (global $buf_len i32 (i32.const 4096))

  (func (export "_start")
    (local $n i32)    ;; bytes in the buffer
    (local $done i32) ;; bytes of them written so far
    (block $stop
      (loop $read
        (i32.store (global.get $iov) (global.get $buf))
        (i32.store offset=4 (global.get $iov) (global.get $buf_len))
        (br_if $stop (call $fd_read (i32.const 0) (global.get $iov) (i32.const 1) (global.get $moved)))
        (local.set $n (i32.load (global.get $moved)))
        (br_if $stop (i32.eqz (local.get $n)))
        (local.set $done (i32.const 0))
        (loop $write
          (i32.store (global.get $iov) (i32.add (global.get $buf) (local.get $done)))
          (i32.store offset=4 (global.get $iov) (i32.sub (local.get $n) (local.get $done)))
          (br_if $stop (call $fd_write (i32.const 1) (global.get $iov) (i32.const 1) (global.get $moved)))
          (br_if $stop (i32.eqz (i32.load (global.get $moved))))
          (local.set $done (i32.add (local.get $done) (i32.load (global.get $moved))))
          (br_if $write (i32.lt_u (local.get $done) (local.get $n))))
        (br $read))))
)
