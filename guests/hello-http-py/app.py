"""hello-http-py: a wasi:http/proxy app in Python, built into a component by
componentize-py (scripts/build-guests).

GET (any path) answers `hello from hello-http-py`; POST /echo answers the
request body; /trap raises, so that the host's answer to a guest that fails
mid-request (500, and the next request served) can be checked.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

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
    incoming = request.consume()
    stream = incoming.stream()
    chunks = []
    try:
        while True:
            chunks.append(stream.blocking_read(65536))
    except Exception:
        # wasi:io/streams reports the end of the body as `closed`, raised as
        # an Err; anything else ends the body too (the host has answered it).
        pass
    stream.__exit__(None, None, None)
    incoming.__exit__(None, None, None)
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
    stream = outgoing.write()
    for start in range(0, len(body), CHUNK):
        stream.blocking_write_and_flush(body[start : start + CHUNK])
    stream.__exit__(None, None, None)
    OutgoingBody.finish(outgoing, None)
