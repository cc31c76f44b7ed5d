"""hello-http-py: a wasi:http/proxy app in Python, built into a component by
componentize-py (scripts/build-guests).

GET (any path) answers `hello from hello-http-py`; POST /echo answers the
request body; /trap raises, so that the host's answer to a guest that fails
mid-request (500, and the next request served) can be checked.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from wit_world.imports.streams import StreamError_Closed

GREETING = b"hello from hello-http-py\n"
# The most bytes one blocking-read or blocking-write-and-flush may move
# (wasi:io/streams caps a write at 4096 bytes without a check-write).
CHUNK = 4096


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        if path == "/trap":
            raise RuntimeError("hello-http-py: /trap asked for a failure")
        if isinstance(request.method(), Method_Post) and path == "/echo":
            body = read_body(request)
        else:
            body = GREETING
        respond(response_out, 200, body)


def read_body(request: IncomingRequest) -> bytes:
    """The whole request body, read with blocking reads (the host wakes the
    instance when bytes arrive)."""
    chunks = []
    # The stream is a child of the body: `with` drops it first.
    with request.consume() as incoming, incoming.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(65536))
            except Err as err:
                # wasi:io/streams ends a body with `closed`; a failed read is
                # a failure of the request (raised: the host answers 500).
                if isinstance(err.value, StreamError_Closed):
                    break
                raise
    return b"".join(chunks)


def respond(response_out: ResponseOutparam, status: int, body: bytes) -> None:
    headers = Fields.from_list(
        [
            ("content-type", b"text/plain"),
            ("content-length", str(len(body)).encode()),
        ]
    )
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    # The stream must be dropped before its body is finished.
    with outgoing.write() as stream:
        for start in range(0, len(body), CHUNK):
            stream.blocking_write_and_flush(body[start : start + CHUNK])
    OutgoingBody.finish(outgoing, None)
