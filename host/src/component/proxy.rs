//! A `wasi:http/proxy` component's process for one request: a fresh
//! instance (a pooled slot, copy-on-write memory) whose
//! `wasi:http/incoming-handler.handle` runs on a fiber of the kernel. The
//! request comes from the host's HTTP front and the response goes back to it
//! through `respond` (`http/proxy.rs` frames and writes it).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView as _;

use super::life::Life;
use super::state;
use crate::app::{App, Guest};
use crate::host_memory::HostMemory;
use crate::process::{self, Exit, Failure, Pid, Runtime};

/// Where the guest's response (or its error code) goes.
pub type Respond = oneshot::Sender<Result<http::Response<HyperOutgoingBody>, ErrorCode>>;

/// Runs one process of the proxy component `app` for `request` from `peer`
/// to its end: the response is sent on `respond` when the guest sets it
/// (its body streams from the guest as the guest writes it). Logs how the
/// process ended and gives back the app's process place, which the caller took.
pub async fn handle<B>(
    app: &Arc<App>,
    runtime: &Runtime,
    pid: Pid,
    peer: Option<SocketAddr>,
    request: http::Request<B>,
    respond: Respond,
) -> Exit
where
    B: http_body::Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
{
    let mut life = Life::begin(app, &runtime.kernel, pid, peer);
    let Some(pre) = (match &app.guest {
        Guest::Component(guest) => guest.proxy(),
        Guest::Module(_) => None,
    }) else {
        let exit = Exit::Failed(Failure {
            cause: "not a wasi:http/proxy component".to_owned(),
            limit: None,
        });
        exit.log(app, pid);
        return exit;
    };
    // No connection as stdio: stdin is empty, stdout and stderr go to the log.
    let host_memory = HostMemory::new(app.settings.limits.host_memory());
    let (mut wasi, _) = process::wasi_builder(app, None, None, pid, &host_memory);
    process::add_environment(&mut wasi, app, None, &[]);
    let mut store = state::new_store(app, pid, state::build_wasi(wasi), life.info(), None);
    let cpu_start = store.data().cpu_start;
    let started = life.started();
    // Boxed: wasmtime's instantiate and call futures are kilobytes, and
    // every future above this one would otherwise copy them on each move
    // (a memcpy of several KiB per request, measured by scripts/bench-instr).
    let result = life
        .limit(
            Box::pin(async {
                let mut http = store.data_mut().http();
                let request = http.new_incoming_request(Scheme::Http, request)?;
                let out = http.new_response_outparam(respond)?;
                let proxy = pre.instantiate_async(&mut store).await?;
                app.metrics.count_spawn(started.elapsed());
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
            }),
            cpu_start,
        )
        .await;
    let heap = store.into_data().heap;
    life.end(result, &heap)
}
