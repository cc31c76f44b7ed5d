//! Coroutines inside one micro-heap (`mnvkd_guest::task`), scenario by
//! scenario: the guest of tests/microheap.rs and of the coroutine figures in
//! docs/coroutines.md. The first line on the connection names the scenario;
//! the reply is `key value` lines (see each function).

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Instant;

use mnvkd_guest::task::{self, Stream};

fn main() -> io::Result<()> {
    if mnvkd_guest::arg().as_deref() == Some("dup-child") {
        return dup_child();
    }
    task::block_on(async {
        let conn = Rc::new(Stream::connection());
        let (line, rest) = read_line(&conn).await?;
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("");
        let count = words.next().and_then(|n| n.parse().ok());
        let reply = match command {
            "order" => order().await,
            "backpressure" => backpressure().await,
            "many" => many(count.unwrap_or(1000)).await,
            "switch" => switch(count.unwrap_or(1_000_000)).await,
            "mem" => mem(count.unwrap_or(100_000)).await,
            "trap" => return trap(conn, rest).await,
            "echo" => return echo(conn, rest).await,
            "halfclose" => return half_close(conn, rest).await,
            "timers" => return timers(conn).await,
            "dup" => return dup_parent(conn, rest).await,
            other => format!("error unknown scenario {other:?}\n"),
        };
        conn.write_all(reply.as_bytes()).await
    })
}

/// Reads the first line; returns it and the bytes read past it.
async fn read_line(conn: &Stream) -> io::Result<(String, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0; 256];
    loop {
        if let Some(end) = got.iter().position(|&b| b == b'\n') {
            let rest = got.split_off(end + 1);
            return Ok((String::from_utf8_lossy(&got).trim().to_owned(), rest));
        }
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok((String::from_utf8_lossy(&got).trim().to_owned(), Vec::new()));
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// Three coroutines yielding in turn, and ten values through a channel of
/// three: `order x0 y0 z0 x1 …` and `channel 0 1 … 9`.
async fn order() -> String {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut joins = Vec::new();
    for name in ["x", "y", "z"] {
        let log = Rc::clone(&log);
        joins.push(task::spawn(async move {
            for i in 0..3 {
                log.borrow_mut().push(format!("{name}{i}"));
                task::yield_now().await;
            }
        }));
    }
    for join in joins {
        join.await;
    }
    let (tx, rx) = task::channel(3);
    let producer = task::spawn(async move {
        for i in 0..10 {
            tx.send(i).await.expect("the receiver lives");
        }
    });
    let mut got = Vec::new();
    while let Some(i) = rx.recv().await {
        got.push(i.to_string());
    }
    producer.await;
    format!(
        "order {}\nchannel {}\n",
        log.borrow().join(" "),
        got.join(" ")
    )
}

/// A fast writer and a slow reader through an in-heap pipe of 16 bytes and
/// a channel of 4 values: `pipe total=10000 max_buffered=… full_seen=…`.
async fn backpressure() -> String {
    const TOTAL: usize = 10_000;
    let (reader, writer) = task::pipe(16);
    let writer = task::spawn(async move {
        let data = vec![7u8; TOTAL];
        writer.write_all(&data).await.expect("the reader lives");
    });
    let (mut total, mut max_buffered, mut full_seen) = (0, 0, 0);
    let mut buf = [0; 5];
    loop {
        let buffered = reader.buffered();
        max_buffered = max_buffered.max(buffered);
        if buffered == 16 {
            full_seen += 1;
        }
        let n = reader.read(&mut buf).await;
        if n == 0 {
            break;
        }
        total += n;
        task::yield_now().await;
    }
    writer.await;
    let (tx, rx) = task::channel(4);
    let sender = Rc::new(tx);
    let sent = Rc::new(Cell::new(0));
    let producer = {
        let (sender, sent) = (Rc::clone(&sender), Rc::clone(&sent));
        task::spawn(async move {
            for i in 0..100 {
                sender.send(i).await.expect("the receiver lives");
                sent.set(sent.get() + 1);
            }
        })
    };
    let (mut received, mut max_queued) = (0, 0);
    while received < 100 {
        max_queued = max_queued.max(sender.len());
        rx.recv().await.expect("a value");
        received += 1;
        task::yield_now().await;
    }
    producer.await;
    format!(
        "pipe total={total} max_buffered={max_buffered} full_seen={}\nchannel total={received} max_queued={max_queued}\n",
        full_seen > 0
    )
}

/// `count` coroutines in a ring of channels pass a token round ten times,
/// each adding its number: `many coroutines=N live=N sum=…`.
async fn many(count: usize) -> String {
    const ROUNDS: u64 = 10;
    let (first_tx, mut prev_rx) = task::channel::<u64>(1);
    let mut joins = Vec::new();
    for i in 0..count {
        let (tx, rx) = task::channel::<u64>(1);
        let input = std::mem::replace(&mut prev_rx, rx);
        joins.push(task::spawn(async move {
            while let Some(token) = input.recv().await {
                if tx.send(token + i as u64).await.is_err() {
                    break;
                }
            }
        }));
    }
    task::yield_now().await;
    let live = task::live();
    let mut token = 0;
    for _ in 0..ROUNDS {
        first_tx.send(token).await.expect("the ring is whole");
        token = prev_rx.recv().await.expect("the ring is whole");
    }
    drop(first_tx);
    for join in joins {
        join.await;
    }
    format!("many coroutines={count} live={live} sum={token}\n")
}

/// Two coroutines yielding to each other `count` times each:
/// `switch count=… ns=…` (nanoseconds per switch).
async fn switch(count: usize) -> String {
    let start = Instant::now();
    let other = task::spawn(async move {
        for _ in 0..count {
            task::yield_now().await;
        }
    });
    for _ in 0..count {
        task::yield_now().await;
    }
    other.await;
    let switches = 2 * count as u64;
    let ns = start.elapsed().as_nanos() as f64 / switches as f64;
    format!("switch switches={switches} ns={ns:.1}\n")
}

/// `count` coroutines each waiting on its own channel: the micro-heap they
/// take, `mem coroutines=N heap_before=… heap_after=… bytes_each=…`.
async fn mem(count: usize) -> String {
    let before = heap_bytes();
    let mut senders = Vec::with_capacity(count);
    for _ in 0..count {
        let (tx, rx) = task::channel::<u8>(1);
        senders.push(tx);
        task::spawn(async move {
            let _ = rx.recv().await;
        })
        .detach();
    }
    task::yield_now().await; // every one has run and waits
    let after = heap_bytes();
    let live = task::live();
    drop(senders);
    task::yield_now().await;
    format!(
        "mem coroutines={live} heap_before={before} heap_after={after} bytes_each={}\n",
        (after - before) / count.max(1)
    )
}

/// The micro-heap's size now.
fn heap_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    return core::arch::wasm32::memory_size(0) * 65536;
    #[cfg(not(target_arch = "wasm32"))]
    0
}

/// Sleepers wake in deadline order, `select` takes a timeout, and a
/// coroutine waiting on the connection and one sleeping are served by one
/// `poll` with a timeout: `order short long`, `select timeout`, `slept`,
/// then (after the client sends a line) `read LINE`.
async fn timers(conn: Rc<Stream>) -> io::Result<()> {
    use std::time::Duration;
    let log = Rc::new(RefCell::new(Vec::new()));
    let sleepers: Vec<_> = [("long", 60), ("short", 10)]
        .into_iter()
        .map(|(name, ms)| {
            let log = Rc::clone(&log);
            task::spawn(async move {
                task::sleep(Duration::from_millis(ms)).await;
                log.borrow_mut().push(name);
            })
        })
        .collect();
    for sleeper in sleepers {
        sleeper.await;
    }
    let (_tx, rx) = task::channel::<u8>(1);
    let first = task::select(rx.recv(), task::sleep(Duration::from_millis(10))).await;
    let first = if matches!(first, task::Either::Right(())) {
        "timeout"
    } else {
        "value"
    };
    conn.write_all(format!("order {}\nselect {first}\n", log.borrow().join(" ")).as_bytes())
        .await?;
    let reader = {
        let conn = Rc::clone(&conn);
        task::spawn(async move {
            let mut buf = [0; 64];
            let n = conn.read(&mut buf).await?;
            Ok::<_, io::Error>(buf[..n].to_vec())
        })
    };
    task::sleep(Duration::from_millis(20)).await;
    conn.write_all(b"slept\n").await?;
    let line = reader.await?;
    conn.write_all(b"read ").await?;
    conn.write_all(&line).await
}

/// An echo coroutine, and one that traps when a line says `boom` (the
/// process ends; the host closes its connection).
async fn trap(conn: Rc<Stream>, rest: Vec<u8>) -> io::Result<()> {
    let (tx, rx) = task::channel::<Vec<u8>>(4);
    let bomb = task::spawn(async move {
        while let Some(line) = rx.recv().await {
            if line.starts_with(b"boom") {
                panic!("a coroutine traps on purpose");
            }
        }
    });
    let mut pending = rest;
    let mut buf = [0; 1024];
    loop {
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            conn.write_all(&line).await?;
            let _ = tx.send(line).await;
            task::yield_now().await;
        }
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            drop(tx);
            bomb.await;
            return Ok(());
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Echoes until end of stream.
async fn echo(conn: Rc<Stream>, rest: Vec<u8>) -> io::Result<()> {
    conn.write_all(&rest).await?;
    let mut buf = [0; 4096];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n]).await?;
    }
}

/// A writer coroutine says `ready`, then half-closes the connection's write
/// direction (the client sees end of stream); a reader coroutine goes on
/// reading until the client's own end of stream and logs the count.
async fn half_close(conn: Rc<Stream>, rest: Vec<u8>) -> io::Result<()> {
    let out = Rc::clone(&conn);
    let writer = task::spawn(async move {
        out.write_all(b"ready\n").await?;
        out.shutdown(Shutdown::Write)
    });
    let mut total = rest.len();
    let mut buf = [0; 4096];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n;
    }
    writer.await?;
    let late = conn.write(b"too late\n").await.is_err();
    eprintln!("halfclose: read {total} bytes after shutdown; write after it refused: {late}");
    Ok(())
}

/// The parent of the `dup` scenario: passes a second handle to the
/// connection (and a pipe's read end) to a child, answers one line, closes
/// its own connection handle, then tells the child through the pipe.
async fn dup_parent(conn: Rc<Stream>, rest: Vec<u8>) -> io::Result<()> {
    let copy = conn.try_clone()?;
    let (pipe_read, mut pipe_write) = mnvkd_guest::pipe()?;
    let child = mnvkd_guest::spawn("dup-child", vec![copy, pipe_read])?;
    let mut line = rest;
    let mut buf = [0; 256];
    while !line.contains(&b'\n') {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    conn.write_all(b"parent ").await?;
    conn.write_all(&line).await?;
    // Handle 0 goes; the child's handle keeps the connection up.
    mnvkd_guest::connection().close()?;
    pipe_write.write_all(b"done")?;
    drop(pipe_write);
    let status = child.wait()?;
    eprintln!("dup: child ended with {status:?}");
    Ok(())
}

/// The child of the `dup` scenario: handle 0 is the parent's second handle
/// to the connection, handle 1 a pipe from the parent.
fn dup_child() -> io::Result<()> {
    let mut conn = mnvkd_guest::connection();
    conn.write_all(b"child hello\n")?;
    // SAFETY: handle 1 was passed to this process and nothing else owns it.
    let mut pipe = unsafe { mnvkd_guest::Handle::from_raw(1) };
    let mut word = Vec::new();
    pipe.read_to_end(&mut word)?;
    conn.write_all(b"child bye after ")?;
    conn.write_all(&word)?;
    conn.write_all(b"\n")
}
