// Hello over CGI in AssemblyScript (layer 0, plain WASI): served with
// `--http hello-cgi-as`, the host runs it once per request and turns what it
// prints to stdout into the HTTP response.

@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: i32, iovs: usize, iovsLen: usize, written: usize): u16;

const RESPONSE = "Content-Type: text/plain\r\n\r\nHello, World!\n";

export function _start(): void {
  const bytes = String.UTF8.encode(RESPONSE);
  let ptr = changetype<usize>(bytes);
  let len = <usize>bytes.byteLength;
  const iov = memory.data(12); // {base, len}, then the count written
  while (len > 0) {
    store<u32>(iov, <u32>ptr);
    store<u32>(iov, <u32>len, 4);
    if (fd_write(1, iov, 1, iov + 8) != 0) return;
    const n = <usize>load<u32>(iov, 8);
    if (n == 0) return;
    ptr += n;
    len -= n;
  }
}
