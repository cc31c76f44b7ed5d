//! One request to a `wasi:http/proxy` component: the front's request head
//! and body become a `wasi:http` incoming request, the component's process
//! runs (`component::proxy`), and its response is framed and written as a
//! CGI program's is (`cgi::Output`: buffered with a Content-Length when
//! small, streamed chunked past 64 KiB), under the same request clock. A
//! guest that fails before its response head is out gets 500 (504 past a
//! time limit); after, the connection is cut.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::sync::oneshot;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

use super::cgi::{self, Body, End, Finished, Input, Output};
use super::clock::RequestClock;
use super::front::write_all;
use super::reader::{ConnReader, RequestHead};
use super::status::{error_response, Status};
use crate::app::App;
use crate::component;
use crate::process::{Exit, Failure, Pid, Runtime};

/// Runs one process of the proxy component `app` for `head` and produces its
/// response after the bytes in `out`, as `cgi::respond` does for a CGI
/// program. Returns `None` when the connection broke (or was cut) while
/// streaming.
pub async fn respond(
    app: &Arc<App>,
    runtime: &Runtime,
    clock: &RequestClock,
    head: &RequestHead,
    body: Body,
    reader: ConnReader,
    mut out: Vec<u8>,
) -> Option<Finished> {
    let conn = Arc::clone(&reader.conn);
    let input = Arc::new(Mutex::new(Input::new(reader, body)));
    let Some(request) = to_request(head, &conn, RequestBody(Arc::clone(&input))) else {
        // A target no URI can hold: the guest never sees it.
        let input = Arc::into_inner(input)?.into_inner().ok()?;
        out.extend_from_slice(&error_response(Status::BAD_REQUEST, false));
        app.processes.release();
        return Some(Finished {
            reader: input.reader,
            out,
            unread: unread(&input.body),
            reusable: false,
        });
    };
    let output = Mutex::new(Output::new(
        Arc::clone(&conn),
        head,
        out,
        Status::INTERNAL_SERVER_ERROR,
    ));
    let (respond, response) = oneshot::channel();
    let pid = Pid::next();
    let run = component::proxy::handle(app, runtime, pid, conn.peers().remote, request, respond);
    let pump = pump(response, &output);
    let end = match cgi::supervise(join(run, pump), &input, clock).await {
        Err(kill) => {
            if app.log_limit.admit(&app.name) {
                tracing::warn!(app = %app.name, %pid, "process killed: {kill}");
            }
            End::Killed(kill)
        }
        Ok((_, Pumped::Gone)) => return None,
        Ok((exit @ Exit::Failed(_), _)) | Ok((exit, Pumped::Responded)) => End::Exited(exit),
        Ok((Exit::Exited(_), Pumped::Refused(why))) => {
            if app.log_limit.admit(&app.name) {
                tracing::warn!(app = %app.name, %pid, "internal server error: the guest {why}");
            }
            End::Exited(Exit::Failed(Failure {
                cause: why,
                limit: None,
            }))
        }
    };
    // The process's store is gone, and with it the request body's reference.
    let input = Arc::into_inner(input)?.into_inner().ok()?;
    let (out, reusable) = output.into_inner().ok()?.finish(&end, app, pid)?;
    Some(Finished {
        unread: unread(&input.body),
        reader: input.reader,
        out,
        reusable,
    })
}

/// Body bytes of `body` the guest did not read.
fn unread(body: &Body) -> u64 {
    match body {
        Body::Stream(left) => *left,
        Body::Memory(_) => 0,
    }
}

/// The `wasi:http` request for `head`, its body read through `body`;
/// `None` when the target and Host make no URI.
fn to_request(
    head: &RequestHead,
    conn: &crate::conn::Connection,
    body: RequestBody,
) -> Option<http::Request<RequestBody>> {
    let authority = match head.header("host") {
        Some(host) if !host.is_empty() => String::from_utf8_lossy(host).into_owned(),
        // HTTP/1.0 may leave Host out: the address the client reached.
        _ => conn.peers().local?.to_string(),
    };
    let uri = if head.target.starts_with('/') {
        let mut uri = String::with_capacity(7 + authority.len() + head.target.len());
        uri.push_str("http://");
        uri.push_str(&authority);
        uri.push_str(&head.target);
        uri
    } else {
        // Absolute form (`http://host/path`) as is; `*` and the rest fail below.
        head.target.clone()
    };
    let mut request = http::Request::builder()
        .method(head.method.as_str())
        .uri(uri)
        .version(if head.minor_version == 0 {
            http::Version::HTTP_10
        } else {
            http::Version::HTTP_11
        });
    for (name, value) in &head.headers {
        request = request.header(name.as_str(), value.as_slice());
    }
    request.body(body).ok()
}

/// How the response side of a request ended.
enum Pumped {
    /// The guest set a response; all of its body was handed to the output.
    Responded,
    /// The guest set no response (the reason, for the log).
    Refused(String),
    /// Writing to the client failed: the connection is gone.
    Gone,
}

/// Waits for the guest's response, then hands its head and body to
/// `output`, writing what `output` says is due (a streamed body) as it comes.
async fn pump(
    response: oneshot::Receiver<
        Result<http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>,
    >,
    output: &Mutex<Output>,
) -> Pumped {
    let response = match response.await {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => {
            return Pumped::Refused(format!("set the error `{code:?}` as its response"))
        }
        // The sender went with the store: the guest returned without one.
        Err(_) => return Pumped::Refused("returned without setting a response".to_owned()),
    };
    let (parts, mut body) = response.into_parts();
    output
        .lock()
        .unwrap()
        .set_head(Status(parts.status.as_u16()), fields(&parts.headers));
    while let Some(frame) = body.frame().await {
        // An error ends the body where it is: the guest aborted it or trapped
        // (the process's exit says which and cuts a streamed response).
        let Ok(frame) = frame else { break };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    output.lock().unwrap().set_trailers(fields(&trailers));
                }
                continue;
            }
        };
        let (conn, streamed) = {
            let mut output = output.lock().unwrap();
            output.feed(&data);
            (Arc::clone(output.conn()), output.take_streamed())
        };
        if let Some(bytes) = streamed {
            if write_all(&conn, &bytes).await.is_err() {
                return Pumped::Gone;
            }
        }
    }
    Pumped::Responded
}

/// Header or trailer fields as the response's lines print them.
fn fields(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect()
}

/// Polls `run` (the process) and `pump` (its response) together until both
/// are done, or the pump finds the connection gone.
async fn join<R: Future<Output = Exit>, P: Future<Output = Pumped>>(
    run: R,
    pump: P,
) -> (Exit, Pumped) {
    let (mut run, mut pump) = (pin!(run), pin!(pump));
    let (mut exit, mut pumped) = (None, None);
    poll_fn(|cx| {
        if exit.is_none() {
            if let Poll::Ready(done) = run.as_mut().poll(cx) {
                exit = Some(done);
            }
        }
        if pumped.is_none() {
            if let Poll::Ready(done) = pump.as_mut().poll(cx) {
                pumped = Some(done);
            }
        }
        match (&exit, &pumped) {
            (Some(_), Some(_)) => Poll::Ready(()),
            // The client is gone: end the process now.
            (None, Some(Pumped::Gone)) => Poll::Ready(()),
            _ => Poll::Pending,
        }
    })
    .await;
    let exit = exit.unwrap_or_else(|| {
        Exit::Failed(Failure {
            cause: "the client closed the connection".to_owned(),
            limit: None,
        })
    });
    (exit, pumped.expect("the pump is done"))
}

/// A request body as wasi:http reads it: the front's in-memory body, or the
/// bytes still to come on the connection (`cgi::Input`, with the same
/// body-timeout bookkeeping as a CGI program's stdin).
pub struct RequestBody(Arc<Mutex<Input>>);

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.0.lock().unwrap().poll_take(Some(cx), usize::MAX) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            // The client closed or reset the connection mid-body.
            Poll::Ready(Err(_)) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionTerminated)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0.lock().unwrap().body, Body::Stream(0))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0.lock().unwrap().body {
            Body::Stream(left) => SizeHint::with_exact(*left),
            Body::Memory(_) => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestBody")
    }
}
