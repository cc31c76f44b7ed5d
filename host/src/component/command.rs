//! A `wasi:cli/command` component's process: `wasi:cli/run.run` called on a
//! fiber of the kernel, like a core module's `_start`, with the connection
//! as stdin and stdout (inetd mode, layer 0) or the stdio its starter chose
//! (a CGI request).

use std::sync::Arc;

use wasmtime_wasi::I32Exit;

use super::life::Life;
use super::state;
use crate::abi::handles::Handle;
use crate::app::{App, Guest};
use crate::host_memory::HostMemory;
use crate::process::{self, Exit, Failure, Pid, Runtime, Start};

/// Runs one process of the command component `app` to its end, as
/// `process::run` does a module's (which hands components here): logs how
/// it ended, tells a waiting parent, and gives back the app's process place.
pub async fn run(app: Arc<App>, runtime: Runtime, start: Start, pid: Pid) -> Exit {
    let peer = match start.handles.first() {
        Some(Handle::Connection(conn)) => conn.peers().remote,
        _ => start.peer,
    };
    let mut life = Life::begin(&app, &runtime.kernel, pid, peer);
    let Some(pre) = (match &app.guest {
        Guest::Component(guest) => guest.command(),
        Guest::Module(_) => None,
    }) else {
        // The app's mode admits only commands here (`app::component_mode`).
        let exit = Exit::Failed(Failure {
            cause: "not a wasi:cli/command component".to_owned(),
            limit: None,
        });
        exit.log(&app, pid);
        return exit;
    };
    let host_memory = HostMemory::new(app.settings.limits.host_memory());
    let (mut wasi, stdio) =
        process::wasi_builder(&app, start.stdio, start.handles.first(), pid, &host_memory);
    wasi.args(&start.args);
    process::add_environment(&mut wasi, &app, start.handles.first(), &start.env);
    let mut store = state::new_store(&app, pid, state::build_wasi(wasi), life.info(), stdio);
    let cpu_start = store.data().cpu_start;
    let started = life.started();
    let result = life
        .limit(
            async {
                let command = pre.instantiate_async(&mut store).await?;
                app.metrics.count_spawn(started.elapsed());
                command
                    .wasi_cli_run()
                    .call_run(&mut store)
                    .await?
                    // `run` returned `err`: the command failed, status 1.
                    .map_err(|()| wasmtime::Error::new(I32Exit(1)))
            },
            cpu_start,
        )
        .await;
    let heap = store.into_data().heap;
    let exit = life.end(result, &heap);
    if let Some(status) = &start.status {
        status.set(exit.clone());
    }
    // The connection closes now, with the last of its handles.
    drop(start.handles);
    exit
}
