//! `wasi:http/outgoing-handler` within the app's `allow_outbound`: a request
//! to an authority that is not an allowed `IP:port` is refused with
//! `HTTP-request-denied` before anything leaves the host (no thread, no
//! lookup); an allowed one goes to wasmtime-wasi-http's default sender
//! (hyper's client, on a one-thread tokio runtime of its own beside the
//! kernel, started by the first allowed request). Names are not resolved: `allow_outbound` holds addresses, as for
//! the `connect` import.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler;
use wasmtime_wasi_http::p2::bindings::http::types::{self, ErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{RequestOptions, WasiHttpView};

use super::state::ComponentState;

/// The interface this module defines, at the version of wasmtime-wasi-http's
/// WIT (a guest importing an older 0.2.x links to it by semver).
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// Adds the host's `wasi:http/outgoing-handler` to `linker`: `handle`
/// within `allow_outbound` (wasmtime-wasi-http's own handler is not linked).
///
/// # Errors
/// When the interface is already defined (a bug in this crate).
pub fn add_to_linker(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    linker
        .instance(OUTGOING_HANDLER)?
        .func_wrap("handle", handle)
}

/// The future response of an outgoing request, or why there is none.
type Handled = Result<Resource<HostFutureIncomingResponse>, ErrorCode>;

/// `handle`: sends `request` if its authority is in `allow_outbound`.
///
/// **Returns:** the future response, or `HTTP-request-denied` (counted in
/// the app's `denied` metric and logged within its log limit), or the error
/// wasi:http found in the request.
/// **Traps:** when a resource is not in the store's table.
fn handle(
    mut store: StoreContextMut<'_, ComponentState>,
    (request, options): (
        Resource<HostOutgoingRequest>,
        Option<Resource<RequestOptions>>,
    ),
) -> wasmtime::Result<(Handled,)> {
    let state = store.data_mut();
    let outgoing = state.table.get(&request)?;
    let authority = outgoing.authority.clone().unwrap_or_default();
    let https = !matches!(outgoing.scheme, Some(Scheme::Http));
    if !allowed(&authority, https, &state.app.settings.allow_outbound) {
        state.table.delete(request)?;
        if let Some(options) = options {
            state.table.delete(options)?;
        }
        let app = &state.app;
        app.metrics.denied.fetch_add(1, Ordering::Relaxed);
        if app.log_limit.admit(&app.name) {
            tracing::info!(app = %app.name, pid = %state.pid, "outgoing HTTP request to `{authority}` denied: not in the app's allow_outbound");
        }
        return Ok((Err(ErrorCode::HttpRequestDenied),));
    }
    let mut http = WasiHttpView::http(state);
    // The sender's tasks (connect, hyper's connection) run on the outbound
    // runtime, not on the kernel's timer runtime the worker has entered.
    let runtime = outbound_runtime()?;
    let _entered = runtime.enter();
    match outgoing_handler::Host::handle(&mut http, request, options) {
        Ok(response) => Ok((Ok(response),)),
        // A guest-visible error code, or a trap.
        Err(err) => Ok((Err(types::Host::convert_error_code(&mut http, err)?),)),
    }
}

/// The runtime of allowed outgoing requests: one thread with tokio's
/// network driver, started by the first allowed request.
///
/// # Errors
/// When the runtime cannot be started (no thread): a trap.
fn outbound_runtime() -> wasmtime::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mnvkd-outbound")
        .enable_all()
        .build()
        .map_err(|err| wasmtime::format_err!("failed to start the outbound HTTP runtime: {err}"))?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// Whether `authority` (`IP:port`, or an IP with the scheme's port) is one
/// of the `allowed` addresses.
fn allowed(authority: &str, https: bool, allowed: &[SocketAddr]) -> bool {
    let addr = authority.parse::<SocketAddr>().ok().or_else(|| {
        let ip = authority.trim_start_matches('[').trim_end_matches(']');
        let port = if https { 443 } else { 80 };
        ip.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port))
    });
    addr.is_some_and(|addr| allowed.contains(&addr))
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn only_listed_addresses_are_allowed() {
        let list = [
            "127.0.0.1:8080".parse().unwrap(),
            "[::1]:80".parse().unwrap(),
        ];
        assert!(allowed("127.0.0.1:8080", false, &list));
        assert!(allowed("[::1]", false, &list));
        assert!(!allowed("[::1]", true, &list), "https is port 443");
        assert!(!allowed("127.0.0.1:8081", false, &list));
        assert!(
            !allowed("localhost:8080", false, &list),
            "names are not resolved"
        );
        assert!(!allowed("", false, &list));
    }
}
