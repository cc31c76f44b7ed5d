// Echo in AssemblyScript over layer 1 (guest-sdk/assemblyscript/mnvkd.ts):
// sends every byte back until the client closes the connection.
import { read, writeAll, CONN } from "../../guest-sdk/assemblyscript/mnvkd";

const BUF_LEN: usize = 16 * 1024;
const buf = memory.data(<i32>BUF_LEN);

export function _start(): void {
  while (true) {
    const n = read(CONN, buf, BUF_LEN);
    if (n <= 0) return;
    if (writeAll(CONN, buf, <usize>n) < 0) return;
  }
}
