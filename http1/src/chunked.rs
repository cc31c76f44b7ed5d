//! In-place, incremental decoding of a chunked request body (RFC 9112 §7.1).
//!
//! The raw body sits in the reader's buffer, after the bytes decoded so
//! far. The decoder moves each chunk's data down over the framing before
//! it, so the decoded body ends up contiguous where the raw body began, with
//! no second buffer. After each step the caller drops the bytes between the
//! decoded data and the next raw byte ([`Decoder::garbage`]), so the buffer
//! never holds more than the decoded body plus an unfinished size line or
//! trailer.
//!
//! The framing is read strictly, so that no other parser can find a
//! different end of the body in the same bytes: a size is 1 to 16 hex
//! digits (no sign, no `0x`, no padding); whitespace may follow it only
//! before a `;` extension; lines end in CRLF, never a bare LF; extensions
//! and trailer lines hold no control characters. The limit holds for the
//! running decoded total: a chunk that would pass it is refused at its size
//! line, before any of its data is read.

use core::ops::Range;

/// The longest chunk-size line (size, extensions, CRLF) accepted.
pub const MAX_SIZE_LINE: usize = 4096;

/// What one [`Decoder::decode`] step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The body is complete: the decoded bytes are `body[..decoded()]` and
    /// the raw body took `body[..raw()]`; what follows is the next request.
    Done,
    /// More bytes are needed.
    More,
}

/// Why a chunked body is refused; the server answers
/// [`status`](Refusal::status) and closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Bad framing: 400.
    Malformed,
    /// The decoded body would pass the limit: 413.
    TooLarge,
}

impl Refusal {
    /// The status code to answer with.
    pub const fn status(self) -> u16 {
        match self {
            Refusal::Malformed => 400,
            Refusal::TooLarge => 413,
        }
    }
}

/// Where the decoder is in the chunked framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one, with the
    /// trailer bytes seen so far.
    Trailer(usize),
}

/// Decodes one chunked body, step by step as bytes arrive.
///
/// # Examples
///
/// ```
/// use mnvkd_http1::chunked::{Decoder, Progress};
///
/// let mut buf = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\nGET /next".to_vec();
/// let mut decoder = Decoder::new(1 << 20, 1024);
/// assert_eq!(decoder.decode(&mut buf), Ok(Progress::Done));
/// assert_eq!(&buf[..decoder.decoded()], b"hello, world");
/// assert_eq!(&buf[decoder.raw()..], b"GET /next");
/// ```
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// Decoded bytes so far, at the start of the body; `decoded <= limit`.
    decoded: usize,
    /// The first raw byte not yet decoded, relative to the body start;
    /// `decoded <= raw`.
    raw: usize,
    /// The most decoded bytes allowed.
    limit: usize,
    /// The most trailer bytes allowed.
    max_trailer: usize,
}

impl Decoder {
    /// A decoder for a body of at most `limit` decoded bytes and a trailer
    /// section of at most `max_trailer` bytes.
    pub const fn new(limit: usize, max_trailer: usize) -> Decoder {
        Decoder {
            state: State::Size,
            decoded: 0,
            raw: 0,
            limit,
            max_trailer,
        }
    }

    /// Decoded bytes so far: `body[..decoded()]`.
    pub const fn decoded(&self) -> usize {
        self.decoded
    }

    /// Raw bytes used so far, garbage included: after [`Progress::Done`],
    /// the length of the whole raw body.
    pub const fn raw(&self) -> usize {
        self.raw
    }

    /// The range of `body` between the decoded bytes and the next raw
    /// byte: dead once [`decode`](Self::decode) returned. The caller removes
    /// it from the buffer and then calls [`compacted`](Self::compacted).
    pub const fn garbage(&self) -> Range<usize> {
        self.decoded..self.raw
    }

    /// The caller removed [`garbage`](Self::garbage) from the buffer.
    pub fn compacted(&mut self) {
        self.raw = self.decoded;
    }

    /// Decodes as much of `body` (the bytes after the request head that
    /// are in the buffer so far, `garbage` removed) as it can, moving chunk
    /// data down to `body[self.decoded()..]`.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] for bad framing or a body over the limit; the
    /// decoder is then spent.
    pub fn decode(&mut self, body: &mut [u8]) -> Result<Progress, Refusal> {
        loop {
            let rest = &body[self.raw..];
            match self.state {
                State::Size => {
                    let Some((used, size)) = size_line(rest, self.limit - self.decoded)? else {
                        return Ok(Progress::More);
                    };
                    self.raw += used;
                    self.state = if size == 0 {
                        State::Trailer(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(Progress::More);
                    }
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    body.copy_within(self.raw..self.raw + n, self.decoded);
                    self.raw += n;
                    self.decoded += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        self.raw += 2;
                        self.state = State::Size;
                    }
                    [] | [b'\r'] => return Ok(Progress::More),
                    _ => return Err(Refusal::Malformed),
                },
                State::Trailer(seen) => {
                    // Trailer fields are read past and dropped.
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(end) => {
                            let line = rest[..end].strip_suffix(b"\r").ok_or(Refusal::Malformed)?;
                            if !line.iter().all(|&b| is_field_byte(b)) {
                                return Err(Refusal::Malformed);
                            }
                            self.raw += end + 1;
                            if line.is_empty() {
                                return Ok(Progress::Done);
                            }
                            let seen = seen + end + 1;
                            if seen > self.max_trailer {
                                return Err(Refusal::Malformed);
                            }
                            self.state = State::Trailer(seen);
                        }
                        None if seen + rest.len() > self.max_trailer => {
                            return Err(Refusal::Malformed)
                        }
                        None => return Ok(Progress::More),
                    }
                }
            }
        }
    }
}

/// Reads the chunk-size line at the start of `rest`: `Some((its length,
/// CRLF included; the size))`, or `None` if it is not all here yet. A size
/// over `room` is refused as soon as its digits end.
fn size_line(rest: &[u8], room: usize) -> Result<Option<(usize, u64)>, Refusal> {
    let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > 16 {
        return Err(Refusal::Malformed);
    }
    if digits == 0 {
        // A sign, `0x`, padding, or an empty line.
        return if rest.is_empty() {
            Ok(None)
        } else {
            Err(Refusal::Malformed)
        };
    }
    // At most 16 hex digits: fits in a u64. More digits only make it larger,
    // so a size over the room is refused before its line is complete.
    let size = rest[..digits]
        .iter()
        .fold(0u64, |n, &d| (n << 4) | u64::from(hex_value(d)));
    if size > room as u64 {
        return Err(Refusal::TooLarge);
    }
    if digits == rest.len() {
        return Ok(None);
    }
    let after = &rest[digits..];
    let Some(lf) = after.iter().position(|&b| b == b'\n') else {
        if rest.len() >= MAX_SIZE_LINE {
            return Err(Refusal::Malformed);
        }
        return Ok(None);
    };
    let used = digits + lf + 1;
    if used > MAX_SIZE_LINE {
        return Err(Refusal::Malformed);
    }
    let extensions = after[..lf].strip_suffix(b"\r").ok_or(Refusal::Malformed)?;
    if !valid_extensions(extensions) {
        return Err(Refusal::Malformed);
    }
    Ok(Some((used, size)))
}

/// `chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, read
/// loosely (extensions are ignored) but with whitespace only before a `;`
/// and no control characters.
fn valid_extensions(extensions: &[u8]) -> bool {
    let start = extensions
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(extensions.len());
    match extensions[start..].first() {
        None => start == 0,
        Some(b';') => extensions.iter().all(|&b| is_field_byte(b)),
        Some(_) => false,
    }
}

/// A byte allowed in a field line or extension: visible, space, tab, or
/// obs-text; no control character.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `raw` in pieces of `step` bytes, compacting as a server does;
    /// returns the decoded body and what followed it.
    fn decode_in_steps(
        raw: &[u8],
        step: usize,
        limit: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), Refusal> {
        let mut buf = Vec::new();
        let mut fed = 0;
        let mut decoder = Decoder::new(limit, 1024);
        loop {
            let take = step.min(raw.len() - fed);
            buf.extend_from_slice(&raw[fed..fed + take]);
            fed += take;
            let progress = decoder.decode(&mut buf)?;
            if progress == Progress::Done {
                let mut rest = buf[decoder.raw()..].to_vec();
                rest.extend_from_slice(&raw[fed..]);
                buf.truncate(decoder.decoded());
                return Ok((buf, rest));
            }
            let garbage = decoder.garbage();
            buf.drain(garbage);
            decoder.compacted();
            assert!(fed < raw.len(), "ran out of input");
        }
    }

    #[test]
    fn decodes_in_any_split() {
        let raw = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE \t; a=\"b c\"\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nGET /next";
        for step in 1..raw.len() + 1 {
            let (body, rest) = decode_in_steps(raw, step, 1 << 20).unwrap();
            assert_eq!(body, b"Wikipedia in \r\n\r\nchunks.", "step {step}");
            assert_eq!(rest, b"GET /next", "step {step}");
        }
    }

    #[test]
    fn empty_body() {
        let (body, rest) = decode_in_steps(b"0\r\n\r\n", 1, 10).unwrap();
        assert!(body.is_empty() && rest.is_empty());
    }

    #[test]
    fn sizes_take_any_case_and_leading_zeros() {
        let (body, _) = decode_in_steps(
            b"000A\r\n0123456789\r\n0a\r\n0123456789\r\n00\r\n\r\n",
            7,
            100,
        )
        .unwrap();
        assert_eq!(body.len(), 20);
    }

    #[test]
    fn refuses_bad_framing() {
        for raw in [
            &b"\r\n"[..],
            b"x\r\n",
            b"4\r\nWikiXX",
            b"4\nWiki\r\n0\r\n\r\n",
            b"-1\r\n",
            b"0\r\nbad trailer\n\r\n",
            b"12345678901234567\r\n",
            b"00000000000000001\r\n",
        ] {
            let got = decode_in_steps(raw, raw.len(), 1 << 20);
            assert_eq!(
                got,
                Err(Refusal::Malformed),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn refuses_sizes_that_another_parser_could_read_differently() {
        for raw in [
            &b"+1\r\nx\r\n0\r\n\r\n"[..],
            b" 1\r\nx\r\n0\r\n\r\n",
            b"1 \r\nx\r\n0\r\n\r\n",
            b"1\t\r\nx\r\n0\r\n\r\n",
            b"0x1\r\nx\r\n0\r\n\r\n",
            b"1_0\r\nx\r\n0\r\n\r\n",
            b"1;a\nb\r\nx\r\n0\r\n\r\n",
            b"1;a\rb\r\nx\r\n0\r\n\r\n",
            b"1;a\0\r\nx\r\n0\r\n\r\n",
            b"1\r\nx\n0\r\n\r\n",
            b"1\r\nx\r\n0\n\n",
            b"1\r\nx\r\n0\r\nX: a\rb\r\n\r\n",
        ] {
            for step in [1, raw.len()] {
                assert_eq!(
                    decode_in_steps(raw, step, 1 << 20),
                    Err(Refusal::Malformed),
                    "{:?} in steps of {step}",
                    String::from_utf8_lossy(raw)
                );
            }
        }
    }

    #[test]
    fn refuses_endless_size_line_and_trailer() {
        let mut raw = b"1;".to_vec();
        raw.extend(std::iter::repeat_n(b'x', MAX_SIZE_LINE));
        assert_eq!(decode_in_steps(&raw, 100, 10), Err(Refusal::Malformed));
        let mut raw = b"0\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 2000));
        assert_eq!(decode_in_steps(&raw, 100, 10), Err(Refusal::Malformed));
    }

    #[test]
    fn refuses_bodies_over_the_limit() {
        assert_eq!(
            decode_in_steps(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 3, 10),
            Err(Refusal::TooLarge)
        );
        assert_eq!(
            decode_in_steps(b"ffffffffffffff\r\n", 64, 10),
            Err(Refusal::TooLarge)
        );
        let (body, _) = decode_in_steps(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 3, 10).unwrap();
        assert_eq!(body, b"helloworld");
    }

    #[test]
    fn the_largest_size_after_a_chunk_is_refused_at_once() {
        // The issue's overflow: a small chunk, then a size of 2^64 - 1. The
        // limit is on the running total, checked before any data is read.
        let mut decoder = Decoder::new(1 << 20, 1024);
        let mut buf = b"1\r\nx\r\nffffffffffffffff".to_vec();
        assert_eq!(decoder.decode(&mut buf), Err(Refusal::TooLarge));
        // A size that fits alone but not after what was decoded.
        let mut decoder = Decoder::new(10, 1024);
        let mut buf = b"6\r\nhello \r\n5\r\n".to_vec();
        assert_eq!(decoder.decode(&mut buf), Err(Refusal::TooLarge));
        let mut decoder = Decoder::new(10, 1024);
        let mut buf = b"6\r\nhello \r\n4\r\nworl\r\n0\r\n\r\n".to_vec();
        assert_eq!(decoder.decode(&mut buf), Ok(Progress::Done));
        assert_eq!(&buf[..decoder.decoded()], b"hello worl");
    }

    #[test]
    fn refusals_have_their_status() {
        assert_eq!(Refusal::Malformed.status(), 400);
        assert_eq!(Refusal::TooLarge.status(), 413);
    }
}
