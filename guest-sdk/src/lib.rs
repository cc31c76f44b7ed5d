//! Guest SDK for mnvkd-host: the `mnvkd` imports as `std::io` streams.
//!
//! A guest is a `wasm32-wasip1` program. The host starts one micro-process
//! per accepted connection and runs its `main`; the process reaches that
//! connection with [`connection()`], and any other handle it was given as a
//! [`Handle`]. Both are plain blocking [`Read`](std::io::Read) and
//! [`Write`](std::io::Write) streams: a read that has to wait suspends only
//! this process, never the host.
//!
//! Beyond its connection, a process can
//!
//! - make a [`pipe()`] and [`spawn`] a child process of the same app,
//!   moving handles to it; the child learns its role from [`arg`], and the
//!   parent can [`wait`](Child::wait) for its [`ExitStatus`];
//! - wait for several handles at once with [`poll`] (a [`PollFd`] each), or
//!   just [`sleep`];
//! - [`connect`] to an address in its app's `allow_outbound` list;
//! - in an app in listener mode, [`accept`](Listener::accept) connections
//!   from the app's [`Listener`] itself.
//!
//! Failures come back as [`std::io::Error`]s that carry an [`Errno`], one of
//! the codes documented in `wit/mnvkd.wit`. The raw imports are in [`sys`].
//!
//! This crate builds on every target, so it can be tested natively: off
//! wasm32, the imports are stubs that fail with [`sys::IO`].
//!
//! # Examples
//!
//! An echo server:
//!
//! ```no_run
//! use std::io::{Read, Write};
//!
//! fn main() -> std::io::Result<()> {
//!     let mut conn = mnvkd_guest::connection();
//!     let mut buf = [0; 4096];
//!     loop {
//!         let n = conn.read(&mut buf)?;
//!         if n == 0 {
//!             return Ok(());
//!         }
//!         conn.write_all(&buf[..n])?;
//!     }
//! }
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::undocumented_unsafe_blocks
)]

mod connection;
mod errno;
mod handle;
pub mod heap;
pub mod http;
mod net;
mod pipe;
mod poll;
mod process;
pub mod sys;
pub mod task;

pub use connection::{connection, Connection};
pub use errno::Errno;
pub use handle::Handle;
pub use net::{connect, Incoming, Listener};
pub use pipe::pipe;
pub use poll::{poll, PollFd};
pub use process::{arg, sleep, spawn, Child, ExitStatus};
