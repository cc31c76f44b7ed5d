//! End-to-end tests: the real `mnvkd-host` binary, real sockets on 127.0.0.1,
//! the example guests from `scripts/build-guests`. One module per feature.

#[macro_use]
mod util;

mod abi;
mod admin;
mod cache;
mod cgi;
mod components;
mod components_hostile;
mod components_lang;
mod conformance;
mod coroutines;
mod deploy;
mod drain;
mod echo;
mod errors;
mod exhaustion;
mod fuzz;
mod hostile_clients;
mod http;
mod http_front;
mod isolation;
mod languages;
mod limits;
mod log_limit;
mod microheap;
mod preemption;
mod process_limit;
mod reload;
mod run;
mod soak;
mod wasi_context;
mod wit;
