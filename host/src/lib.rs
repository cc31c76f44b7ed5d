//! mnvkd-host: an M:N virtual kernel for WebAssembly guests.
//!
//! Every accepted connection gets its own micro-process (a Wasm instance with
//! its own linear memory, the micro-heap), driven as a coroutine on a fiber by
//! the [`kernel`]'s workers, woken by the [`reactor`] when its socket is ready.
//! Read top to bottom: [`kernel`] → [`process`] → [`abi`] (the imports a guest
//! calls) → [`conn`] and [`reactor`] (the sockets under them).
//!
//! The binary's entry point is [`cli::run`].

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::undocumented_unsafe_blocks
)]

pub mod abi;
pub mod admin;
pub mod allocator;
pub mod app;
pub mod cli;
pub mod component;
pub mod config;
pub mod conn;
pub mod drain;
pub mod engine;
pub mod host_memory;
pub mod http;
pub mod kernel;
pub mod listener;
pub mod manifest;
pub mod module_cache;
pub mod pipe;
pub mod process;
pub mod reactor;
pub mod reload;
pub mod run_once;
pub mod serve;
pub mod text;
pub mod waker_set;
