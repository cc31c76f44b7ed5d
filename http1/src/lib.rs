//! HTTP/1.1 request framing, shared by mnvkd-host's CGI front and the
//! guest SDK's server (`mnvkd_guest::http`), so the two cannot disagree on
//! where a request ends (RFC 9112 §6; a disagreement is what request
//! smuggling exploits).
//!
//! - [`analyze`] reads a parsed head's framing (no body, a length, or
//!   chunked), its connection rules (keep-alive, `Expect: 100-continue`), and
//!   refuses what could be framed two ways, with the status to answer
//!   ([`Refusal`]).
//! - [`chunked::Decoder`] decodes a chunked body incrementally and in place,
//!   enforcing the body limit on the running decoded total.
//!
//! What does not belong here: I/O, timeouts, buffers (each server owns
//! those), and responses.
//!
//! `no_std`, no allocation: its only dependency is
//! [`httparse`](https://docs.rs/httparse) without default features.
//!
//! # Examples
//!
//! ```
//! use mnvkd_http1::{analyze, Framing, Refusal};
//!
//! let mut fields = [httparse::EMPTY_HEADER; 16];
//! let mut request = httparse::Request::new(&mut fields);
//! request
//!     .parse(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
//!     .unwrap();
//! let head = analyze(&request, 1 << 20).unwrap();
//! assert_eq!(head.framing, Framing::Length(5));
//! assert!(head.keep_alive);
//!
//! // Both framings at once is the classic smuggling vector: refused.
//! let mut fields = [httparse::EMPTY_HEADER; 16];
//! let mut request = httparse::Request::new(&mut fields);
//! request
//!     .parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
//!     .unwrap();
//! let refusal = analyze(&request, 1 << 20).unwrap_err();
//! assert_eq!((refusal, refusal.status()), (Refusal::TransferEncodingAndLength, 400));
//! ```
#![cfg_attr(not(test), no_std)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::undocumented_unsafe_blocks
)]

pub mod chunked;
mod head;

pub use head::{analyze, has_token, parse_length, Framing, Head, Refusal};
