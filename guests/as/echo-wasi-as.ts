// Echo in AssemblyScript (inetd mode, layer 0, plain WASI): copies stdin to
// stdout until end of stream. No SDK: the connection is stdin and stdout.

@external("wasi_snapshot_preview1", "fd_read")
declare function fd_read(fd: i32, iovs: usize, iovsLen: usize, nread: usize): u16;
@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: i32, iovs: usize, iovsLen: usize, written: usize): u16;

const BUF_LEN: usize = 16 * 1024;
const buf = memory.data(<i32>BUF_LEN);
const iov = memory.data(12); // {base, len}, then the count moved

export function _start(): void {
  while (true) {
    store<u32>(iov, <u32>buf);
    store<u32>(iov, <u32>BUF_LEN, 4);
    if (fd_read(0, iov, 1, iov + 8) != 0) return;
    const n = <usize>load<u32>(iov, 8);
    if (n == 0) return;
    let done: usize = 0;
    while (done < n) {
      store<u32>(iov, <u32>(buf + done));
      store<u32>(iov, <u32>(n - done), 4);
      if (fd_write(1, iov, 1, iov + 8) != 0) return;
      const w = <usize>load<u32>(iov, 8);
      if (w == 0) return;
      done += w;
    }
  }
}
