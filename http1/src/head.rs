//! A request head's framing and connection rules (RFC 9112 §6.1–6.3, §9.3),
//! and the refusals that keep a request from being framed two ways.

/// How a request's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: neither header field, or `Content-Length: 0`.
    Empty,
    /// `Content-Length` bytes (more than 0, at most the limit).
    Length(u64),
    /// `Transfer-Encoding: chunked`: decode with [`chunked::Decoder`](crate::chunked::Decoder).
    Chunked,
}

/// What a server needs from a request head to read its body and to know
/// whether the connection goes on after the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// How the body is delimited.
    pub framing: Framing,
    /// The connection may carry another request after this one's response:
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
    /// `Connection: keep-alive` and no `Transfer-Encoding` (§6.1: an HTTP/1.0
    /// message with one is read, then the connection closed).
    pub keep_alive: bool,
    /// An HTTP/1.1 client sent `Expect: 100-continue` for a body: answer
    /// `100 Continue` before reading it (or answer the request at once).
    pub expect_continue: bool,
}

/// Why a head is refused: the server answers [`status`](Refusal::status)
/// and closes the connection, since where the next request begins is
/// unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A `Content-Length` that is not decimal digits (or has over 18): 400.
    BadLength,
    /// `Content-Length` fields with different values: 400.
    ConflictingLengths,
    /// Both `Transfer-Encoding` and `Content-Length`: 400 (§6.1 allows
    /// going on with the chunked framing; refusing is the safe choice).
    TransferEncodingAndLength,
    /// `chunked` not the last transfer coding, applied twice, or a
    /// `Transfer-Encoding` naming no coding: 400.
    ChunkedNotLast,
    /// An HTTP/1.1 request without a `Host`, or any request with several: 400.
    BadHost,
    /// A transfer coding other than `chunked` (the server decodes no other): 501.
    UnknownCoding,
    /// A `Content-Length` over the body limit: 413.
    TooLarge,
}

impl Refusal {
    /// The status code to answer with.
    pub const fn status(self) -> u16 {
        match self {
            Refusal::BadLength
            | Refusal::ConflictingLengths
            | Refusal::TransferEncodingAndLength
            | Refusal::ChunkedNotLast
            | Refusal::BadHost => 400,
            Refusal::UnknownCoding => 501,
            Refusal::TooLarge => 413,
        }
    }
}

/// Reads `request`'s framing and connection rules; `max_body` is the
/// largest `Content-Length` accepted (a chunked body's limit is the
/// decoder's).
///
/// # Errors
///
/// The [`Refusal`] for a head that is ambiguous, malformed in its framing
/// fields, or over the limit.
///
/// # Examples
///
/// ```
/// use mnvkd_http1::{analyze, Framing, Refusal};
///
/// let mut fields = [httparse::EMPTY_HEADER; 8];
/// let mut request = httparse::Request::new(&mut fields);
/// request.parse(b"GET / HTTP/1.1\r\n\r\n").unwrap();
/// assert_eq!(analyze(&request, 100), Err(Refusal::BadHost));
///
/// let mut fields = [httparse::EMPTY_HEADER; 8];
/// let mut request = httparse::Request::new(&mut fields);
/// request
///     .parse(b"PUT /f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
///     .unwrap();
/// let head = analyze(&request, 100).unwrap();
/// assert_eq!(head.framing, Framing::Chunked);
/// assert!(head.expect_continue);
/// ```
pub fn analyze(request: &httparse::Request<'_, '_>, max_body: u64) -> Result<Head, Refusal> {
    let version = request.version.unwrap_or(1);
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut other_coding = false;
    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;
    for header in request.headers.iter() {
        let (name, value) = (header.name, header.value);
        // Compare only names of the right length.
        match name.len() {
            4 if name.eq_ignore_ascii_case("host") => hosts += 1,
            6 if name.eq_ignore_ascii_case("expect") => {
                expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                close |= has_token(value, b"close");
                keep_alive |= has_token(value, b"keep-alive");
            }
            14 if name.eq_ignore_ascii_case("content-length") => {
                let n = parse_length(value).ok_or(Refusal::BadLength)?;
                if content_length.is_some_and(|seen| seen != n) {
                    return Err(Refusal::ConflictingLengths);
                }
                content_length = Some(n);
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                transfer_encoding = true;
                for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if coding.is_empty() {
                        continue;
                    }
                    if chunked {
                        // Chunked must be the last coding, and only once.
                        return Err(Refusal::ChunkedNotLast);
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else {
                        other_coding = true;
                    }
                }
            }
            _ => {}
        }
    }
    if hosts > 1 || (version == 1 && hosts == 0) {
        return Err(Refusal::BadHost);
    }
    let framing = if transfer_encoding {
        if content_length.is_some() {
            return Err(Refusal::TransferEncodingAndLength);
        }
        if other_coding {
            return Err(Refusal::UnknownCoding);
        }
        if !chunked {
            return Err(Refusal::ChunkedNotLast);
        }
        Framing::Chunked
    } else {
        match content_length {
            None | Some(0) => Framing::Empty,
            Some(n) if n > max_body => return Err(Refusal::TooLarge),
            Some(n) => Framing::Length(n),
        }
    };
    Ok(Head {
        version,
        framing,
        keep_alive: !close && (version == 1 || keep_alive) && !(version == 0 && transfer_encoding),
        expect_continue: expect_continue && version == 1 && framing != Framing::Empty,
    })
}

/// A `Content-Length` value: decimal digits only (no sign, no list), at
/// most 18 of them so it cannot overflow; surrounding whitespace is allowed.
///
/// # Examples
///
/// ```
/// use mnvkd_http1::parse_length;
///
/// assert_eq!(parse_length(b" 42 "), Some(42));
/// assert_eq!(parse_length(b"+42"), None);
/// assert_eq!(parse_length(b"4, 4"), None);
/// ```
pub fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// Whether the comma-separated field `value` lists `token` (any case).
///
/// # Examples
///
/// ```
/// use mnvkd_http1::has_token;
///
/// assert!(has_token(b"keep-alive, Close", b"close"));
/// assert!(!has_token(b"closed", b"close"));
/// ```
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `raw` (a whole head) and analyzes it with a 100-byte limit.
    fn analyzed(raw: &str) -> Result<Head, Refusal> {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut fields);
        let status = request.parse(raw.as_bytes()).expect("a well-formed head");
        assert!(status.is_complete(), "{raw:?} is a whole head");
        analyze(&request, 100)
    }

    #[test]
    fn framing_by_length_or_chunked() {
        let head = analyzed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(
            head,
            Head {
                version: 1,
                framing: Framing::Length(5),
                keep_alive: true,
                expect_continue: false,
            }
        );
        let head = analyzed("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(head.framing, Framing::Empty);
        let head = analyzed("POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: Chunked\r\n\r\n");
        assert_eq!(head.unwrap().framing, Framing::Chunked);
        // The same length twice is one length.
        let head = analyzed(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
        );
        assert_eq!(head.unwrap().framing, Framing::Length(7));
        let head = analyzed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
        assert_eq!(head.unwrap().framing, Framing::Length(100));
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        let keep_alive = |raw: &str| analyzed(raw).unwrap().keep_alive;
        assert!(keep_alive("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!keep_alive(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n"
        ));
        assert!(!keep_alive("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep_alive(
            "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
        ));
        // HTTP/1.0 with a transfer coding: read it, then close.
        assert!(!keep_alive(
            "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn expect_continue_only_for_an_http_1_1_body() {
        let expects = |raw: &str| analyzed(raw).unwrap().expect_continue;
        assert!(expects(
            "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"
        ));
        assert!(!expects(
            "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"
        ));
        assert!(!expects(
            "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
        ));
    }

    #[test]
    fn each_refusal_has_its_status() {
        let cases = [
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
                Refusal::BadLength,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
                Refusal::BadLength,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                Refusal::BadLength,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n",
                Refusal::BadLength,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n",
                Refusal::BadLength,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456789\r\n\r\n",
                Refusal::BadLength,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Refusal::ConflictingLengths,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                Refusal::TransferEncodingAndLength,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n",
                Refusal::TransferEncodingAndLength,
                400,
            ),
            (
                "POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Refusal::TransferEncodingAndLength,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                Refusal::ChunkedNotLast,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Refusal::ChunkedNotLast,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,\r\n\r\n",
                Refusal::ChunkedNotLast,
                400,
            ),
            ("GET / HTTP/1.1\r\n\r\n", Refusal::BadHost, 400),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
                Refusal::BadHost,
                400,
            ),
            (
                "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
                Refusal::BadHost,
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                Refusal::UnknownCoding,
                501,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Refusal::UnknownCoding,
                501,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n",
                Refusal::TooLarge,
                413,
            ),
        ];
        for (raw, refusal, status) in cases {
            assert_eq!(analyzed(raw), Err(refusal), "{raw:?}");
            assert_eq!(refusal.status(), status, "{refusal:?}");
        }
    }

    #[test]
    fn http_1_0_needs_no_host() {
        assert!(analyzed("GET / HTTP/1.0\r\n\r\n").is_ok());
    }

    #[test]
    fn lengths_are_plain_decimal() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"007"), Some(7));
        assert_eq!(
            parse_length(b"999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        for bad in [&b""[..], b" ", b"1 2", b"0x10", b"1e3", b"\xff"] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
    }
}
