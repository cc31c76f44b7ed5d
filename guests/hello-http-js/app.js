// hello-http-js: a wasi:http/proxy app in JavaScript, built into a component
// by componentize-js (scripts/build-guests). StarlingMonkey's fetch event
// is bound to wasi:http/incoming-handler.handle.
//
// GET (any path) answers `hello from hello-http-js`; POST /echo answers the
// request body; /trap throws, so that the host's answer to a guest that
// fails mid-request (500, and the next request served) can be checked.

const GREETING = "hello from hello-http-js\n";

async function handle(request) {
  const path = new URL(request.url).pathname;
  if (path === "/trap") {
    throw new Error("hello-http-js: /trap asked for a failure");
  }
  if (request.method === "POST" && path === "/echo") {
    const body = new Uint8Array(await request.arrayBuffer());
    return new Response(body, { headers: { "content-type": "text/plain" } });
  }
  return new Response(GREETING, { headers: { "content-type": "text/plain" } });
}

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));
