//! Network handles beyond the process's own connection: outbound `connect`
//! (only to the app's allowlist), and `accept` and `try-accept` on a
//! listener handle.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use wasmtime::{Caller, Linker};

use super::handles::Handle;
use super::{guest_buffer, Errno, MODULE};
use crate::conn::Connection;
use crate::listener::Listener;
use crate::process::ProcessState;

/// Registers `connect`, `accept` and `try-accept`.
///
/// # Errors
/// When a name is already defined in `linker`.
pub fn add_to_linker(linker: &mut Linker<ProcessState>) -> anyhow::Result<()> {
    linker.func_wrap_async(MODULE, "connect", |caller, (ptr, len)| {
        Box::new(connect(caller, ptr, len))
    })?;
    linker.func_wrap_async(MODULE, "accept", |caller, (listener,)| {
        Box::new(accept(caller, listener))
    })?;
    linker.func_wrap(MODULE, "try-accept", try_accept)?;
    Ok(())
}

/// Connects to the `IP:port` written at `ptr`, if the app may.
///
/// **Returns:** a connection handle, `fault`, `inval`, `denied`, `io`, `limit`.
/// **Traps:** never.
async fn connect(
    mut caller: Caller<'_, ProcessState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let result = async {
        let text = guest_buffer(&mut caller, "connect", ptr, len)?;
        let text = &text.memory.data(&caller)[text.range];
        let addr: SocketAddr = std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or(Errno::Inval)?;
        let state = caller.data();
        if !state.app.settings.allow_outbound.contains(&addr) {
            state.app.metrics.denied.fetch_add(1, Ordering::Relaxed);
            if state.app.log_limit.admit(&state.app.name) {
                tracing::info!(app = %state.app.name, pid = %state.pid, "connect to {addr} denied: not in the app's allow_outbound");
            }
            return Err(Errno::Denied);
        }
        if !state.io.has_room(1) {
            return Err(Errno::Limit);
        }
        let conn = Connection::connect(addr, &state.runtime.reactor).map_err(Errno::from)?;
        if let Err(err) = poll_fn(|cx| conn.poll_connected(cx)).await {
            tracing::debug!(pid = %caller.data().pid, "connect to {addr} failed: {err}");
            return Err(Errno::Io);
        }
        caller
            .data_mut()
            .io
            .insert(Handle::Connection(Arc::new(conn)))
    };
    Ok(result.await.unwrap_or_else(Errno::code))
}

/// Accepts the next connection on the listener handle `listener`.
///
/// **Returns:** a connection handle, `badf`, `io`, `limit`.
/// **Traps:** never.
async fn accept(mut caller: Caller<'_, ProcessState>, listener: i32) -> wasmtime::Result<i32> {
    let result = async {
        let listener = listener_for_accept(&caller, listener)?;
        let conn = poll_fn(|cx| listener.poll_accept(cx))
            .await
            .map_err(Errno::from)?;
        adopt(&mut caller, conn)
    };
    Ok(result.await.unwrap_or_else(Errno::code))
}

/// Accepts a connection on the listener handle `listener` if one is
/// waiting, without waiting: a plain host call, for guests that wait on
/// the listener themselves (`watch` or `poll` with `LAZY`: after an
/// `again`, the host knows the backlog is empty until its next event, so
/// neither this call nor that wait needs a syscall).
///
/// **Returns:** a connection handle, `again` (none waiting), `badf`,
/// `pipe` (the host drains: no more will come), `io`, `limit`.
/// **Traps:** never.
fn try_accept(mut caller: Caller<'_, ProcessState>, listener: i32) -> i32 {
    let result = listener_for_accept(&caller, listener).and_then(|listener| {
        let conn = listener.try_accept().map_err(Errno::from)?;
        adopt(&mut caller, conn)
    });
    result.unwrap_or_else(Errno::code)
}

/// The listener behind handle `listener`, if the process has room for one
/// more handle.
fn listener_for_accept(
    caller: &Caller<'_, ProcessState>,
    listener: i32,
) -> Result<Arc<Listener>, Errno> {
    let Handle::Listener(listener) = caller.data().io.get(listener)? else {
        return Err(Errno::Badf);
    };
    let listener = Arc::clone(listener);
    if !caller.data().io.has_room(1) {
        return Err(Errno::Limit);
    }
    Ok(listener)
}

/// Counts an accepted connection in the app's metrics and gives the
/// process a handle to it.
fn adopt(caller: &mut Caller<'_, ProcessState>, conn: Connection) -> Result<i32, Errno> {
    let metrics = &caller.data().app.metrics;
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    conn.meter(metrics);
    caller
        .data_mut()
        .io
        .insert(Handle::Connection(Arc::new(conn)))
}
