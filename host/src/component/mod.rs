//! WASI 0.2 components: a `wasi:http/proxy` component served per request
//! from the host's HTTP/1.1 front, a `wasi:cli/command` component per
//! connection (inetd mode) or per request (CGI), each call into the guest on
//! a fiber of the kernel, under the limits of a core module's process.
//! What belongs here is what differs from a core module: the component's
//! linker, store and entry points; the HTTP side of a proxy (framing, the
//! response on the wire) is `http/proxy.rs`.
//!
//! - `load`: compiling, recognising the world, linking once.
//! - `state`: the store data (WASI 0.2, wasi:http, the micro-heap cap).
//! - `life`: the bookkeeping every process has (table, metrics, limits).
//! - `outbound`: `wasi:http/outgoing-handler`, within `allow_outbound`.
//! - `command`: `wasi:cli/run` with the connection as stdin and stdout.
//! - `proxy`: `wasi:http/incoming-handler.handle` for one request.

pub mod command;
mod life;
mod load;
mod outbound;
pub mod proxy;
mod state;

pub use load::{load, ComponentGuest, World};
pub use state::ComponentState;
