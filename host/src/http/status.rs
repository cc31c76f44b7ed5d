//! HTTP status codes the front answers with, and its own short responses
//! (refusals, timeouts, failed guests).

/// An HTTP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    /// 200.
    pub const OK: Status = Status(200);
    /// 400: a malformed request, or one whose framing is ambiguous
    /// (`mnvkd_http1::Refusal`).
    pub const BAD_REQUEST: Status = Status(400);
    /// 408: the request head or body did not arrive in time.
    pub const REQUEST_TIMEOUT: Status = Status(408);
    /// 413: the body is over the app's limit.
    pub const PAYLOAD_TOO_LARGE: Status = Status(413);
    /// 431: the head is over 16 KiB.
    pub const HEADERS_TOO_LARGE: Status = Status(431);
    /// 500: a component trapped, set an error as its response, or set none.
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    /// 501: a transfer coding other than chunked.
    pub const NOT_IMPLEMENTED: Status = Status(501);
    /// 502: the guest trapped or wrote no valid CGI response.
    pub const BAD_GATEWAY: Status = Status(502);
    /// 503: the app stayed at its process limit until the request's deadline.
    pub const UNAVAILABLE: Status = Status(503);
    /// 504: the guest ran past its CPU budget, or the request past its deadline.
    pub const GATEWAY_TIMEOUT: Status = Status(504);

    /// The standard reason phrase.
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            301 => "Moved Permanently",
            302 => "Found",
            304 => "Not Modified",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "",
        }
    }
}

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A complete response for an error found by the front or a failed guest.
pub fn error_response(status: Status, keep_alive: bool) -> Vec<u8> {
    let body = format!("{} {}\n", status.0, status.reason());
    let mut response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        status.0,
        status.reason(),
        body.len()
    );
    if !keep_alive {
        response.push_str("Connection: close\r\n");
    }
    response.push_str("\r\n");
    response.push_str(&body);
    response.into_bytes()
}
