//! In-place decoding of a chunked request body (RFC 9112 §7.1).
//!
//! The raw body sits in the read buffer right after the request head. The
//! decoder moves each chunk's data down over the framing before it, so the
//! decoded body ends up contiguous where the raw body began, with no second
//! buffer. The caller then drops the bytes between the decoded data and the
//! next raw byte ([`Decoder::garbage`]) so the buffer never holds more than
//! the decoded body plus an unfinished chunk-size line.

/// The longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_SIZE_LINE: usize = 4096;

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

/// What one [`Decoder::decode`] step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The body is complete: the decoded bytes are `body[..decoded]` and
    /// the raw body took `body[..raw]`.
    Done,
    /// More bytes are needed.
    More,
}

/// Why a chunked body is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Bad framing: 400.
    Malformed,
    /// The decoded body would pass the limit: 413.
    TooLarge,
}

/// Decodes one chunked body, step by step as bytes arrive.
#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
    /// Decoded bytes so far, at the start of the body.
    pub(crate) decoded: usize,
    /// The first raw byte not yet decoded, relative to the body start.
    pub(crate) raw: usize,
    /// The most decoded bytes allowed.
    limit: usize,
    /// The most trailer bytes allowed.
    max_trailer: usize,
}

impl Decoder {
    pub(crate) fn new(limit: usize, max_trailer: usize) -> Decoder {
        Decoder {
            state: State::Size,
            decoded: 0,
            raw: 0,
            limit,
            max_trailer,
        }
    }

    /// The range of `body` between the decoded bytes and the next raw
    /// byte: dead once [`decode`](Self::decode) returned. The caller removes
    /// it from the buffer and then calls [`compacted`](Self::compacted).
    pub(crate) fn garbage(&self) -> std::ops::Range<usize> {
        self.decoded..self.raw
    }

    /// The caller removed [`garbage`](Self::garbage) from the buffer.
    pub(crate) fn compacted(&mut self) {
        self.raw = self.decoded;
    }

    /// Decodes as much of `body` (the bytes after the request head that
    /// are in the buffer so far) as it can, moving chunk data down to
    /// `body[self.decoded..]`.
    pub(crate) fn decode(&mut self, body: &mut [u8]) -> Result<Progress, Refusal> {
        loop {
            let rest = &body[self.raw..];
            match self.state {
                State::Size => {
                    // httparse takes an empty size as 0; a size needs a digit.
                    match rest.first() {
                        None => return Ok(Progress::More),
                        Some(b) if !b.is_ascii_hexdigit() => return Err(Refusal::Malformed),
                        Some(_) => {}
                    }
                    match httparse::parse_chunk_size(rest) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            self.raw += used;
                            if size > (self.limit - self.decoded) as u64 {
                                return Err(Refusal::TooLarge);
                            }
                            self.state = if size == 0 {
                                State::Trailer(0)
                            } else {
                                State::Data(size)
                            };
                        }
                        Ok(httparse::Status::Partial) if rest.len() < MAX_SIZE_LINE => {
                            return Ok(Progress::More)
                        }
                        Ok(httparse::Status::Partial) | Err(_) => return Err(Refusal::Malformed),
                    }
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
                            let line = &rest[..end];
                            if line.last() != Some(&b'\r') {
                                return Err(Refusal::Malformed);
                            }
                            self.raw += end + 1;
                            if line.len() == 1 {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `raw` in pieces of `step` bytes, compacting as the server does;
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
                let mut rest = buf[decoder.raw..].to_vec();
                rest.extend_from_slice(&raw[fed..]);
                buf.truncate(decoder.decoded);
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
        let raw = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nGET /next";
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
    fn refuses_bad_framing() {
        for raw in [
            &b"\r\n"[..],
            b"x\r\n",
            b"4\r\nWikiXX",
            b"4\nWiki\r\n0\r\n\r\n",
            b"-1\r\n",
            b"0\r\nbad trailer\n\r\n",
            b"12345678901234567\r\n",
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
}
