// Trap in AssemblyScript: reads from the connection, then executes
// `unreachable`. The host must end only this process.
import { read, CONN } from "../../guest-sdk/assemblyscript/mnvkd";

const buf = memory.data(256);

// @inline(never) equivalent: a separate exported-free function stays named.
function failOnPurpose(): void {
  unreachable();
}

export function _start(): void {
  read(CONN, buf, 256);
  failOnPurpose();
}
