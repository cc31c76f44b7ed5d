//! The HTTP front's request bodies read by the host itself: a chunked body,
//! decoded whole before the process starts, and the rest of a body the
//! guest did not read, skipped to keep the connection. Every wait for body
//! bytes is bounded by the request's clock (`clock.rs`). A Content-Length
//! body the guest reads is streamed to its stdin (`cgi.rs`).

use mnvkd_http1::chunked::{Decoder, Progress};

use super::clock::RequestClock;
use super::reader::{ConnReader, Filled, MAX_HEAD};
use super::Status;

/// Largest body a front skips (unread by the guest) to keep a connection alive.
const MAX_SKIP: u64 = 1 << 20;

/// Reads and decodes a whole chunked body of at most `max_body` decoded
/// bytes, with the shared decoder (`mnvkd_http1::chunked`). Host memory
/// stays within `max_body` plus one read buffer: a chunk that would pass
/// the limit is refused at its size line.
///
/// # Errors
/// 400 for bad framing or an early end of stream, 413 past `max_body`, 408
/// when the client pauses for `body_timeout` or the request's deadline passes.
pub async fn read_chunked(
    reader: &mut ConnReader,
    clock: &RequestClock,
    max_body: u64,
) -> Result<Vec<u8>, Status> {
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let mut decoder = Decoder::new(limit, MAX_HEAD);
    // Decoded bytes, then raw bytes not decoded yet.
    let mut body = Vec::new();
    loop {
        let fed = reader.buffered().len();
        body.extend_from_slice(reader.buffered());
        match decoder.decode(&mut body) {
            Ok(Progress::Done) => {
                // Bytes past the body came in this feed (the decoder would
                // have finished on an earlier one otherwise): the next request's.
                let after = body.len() - decoder.raw();
                debug_assert!(after <= fed, "bytes past the body are from the last feed");
                reader.consume(fed - after);
                body.truncate(decoder.decoded());
                return Ok(body);
            }
            Ok(Progress::More) => {
                reader.consume(fed);
                body.drain(decoder.garbage());
                decoder.compacted();
            }
            Err(refusal) => return Err(Status(refusal.status())),
        }
        match clock.fill_body(reader).await {
            Filled::Bytes => {}
            Filled::End => return Err(Status::BAD_REQUEST),
            Filled::TimedOut => return Err(Status::REQUEST_TIMEOUT),
        }
    }
}

/// Reads and drops `n` body bytes the guest did not read; false if that
/// failed (more than `MAX_SKIP`, an early end, or a timeout) and the
/// connection must close.
pub async fn skip(reader: &mut ConnReader, clock: &RequestClock, mut n: u64) -> bool {
    if n > MAX_SKIP {
        return false;
    }
    loop {
        let take = n.min(reader.buffered().len() as u64);
        reader.consume(take as usize);
        n -= take;
        if n == 0 {
            return true;
        }
        if clock.fill_body(reader).await != Filled::Bytes {
            return false;
        }
    }
}
