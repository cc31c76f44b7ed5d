//! A pub/sub hub in one process: an app in listener mode whose one process
//! serves every client as its own coroutines (`mnvkd_guest::task`), where
//! `guests/chat` spawns a process per client.
//!
//! Each client gets `welcome N`, then every line another client sends, as
//! `N: line`. A client has two coroutines: a reader that publishes its lines
//! to every other subscriber's in-heap channel, and a writer that drains its
//! own channel to its socket. A subscriber too slow to keep [`QUEUE`] lines
//! queued misses lines (counted in the log) instead of holding back the
//! publisher and everyone else.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use mnvkd_guest::task::{self, Listener, Sender, Stream};

/// Lines queued per subscriber.
const QUEUE: usize = 256;

/// The subscribers: their number and their queue.
type Subscribers = Rc<RefCell<Vec<(u64, Sender<Rc<[u8]>>)>>>;

fn main() -> io::Result<()> {
    task::block_on(async {
        let subscribers: Subscribers = Rc::default();
        let dropped = Rc::new(Cell::new(0u64));
        for number in 0.. {
            let conn = match Listener::get().accept().await {
                Ok(conn) => Rc::new(conn),
                // The host drains: serve those here until they leave.
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => break,
                Err(err) => return Err(err),
            };
            let (tx, rx) = task::channel::<Rc<[u8]>>(QUEUE);
            subscribers.borrow_mut().push((number, tx));
            let out = Rc::clone(&conn);
            task::spawn(async move {
                let _ = out
                    .write_all(format!("welcome {number}\n").as_bytes())
                    .await;
                while let Some(line) = rx.recv().await {
                    if out.write_all(&line).await.is_err() {
                        break;
                    }
                }
            })
            .detach();
            let (subscribers, dropped) = (Rc::clone(&subscribers), Rc::clone(&dropped));
            task::spawn(async move {
                let _ = publish(number, &conn, &subscribers, &dropped).await;
                subscribers.borrow_mut().retain(|(n, _)| *n != number);
            })
            .detach();
        }
        while task::live() > 0 {
            task::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(())
    })
}

/// Reads `conn`'s lines and queues each for every other subscriber.
async fn publish(
    number: u64,
    conn: &Stream,
    subscribers: &Subscribers,
    dropped: &Cell<u64>,
) -> io::Result<()> {
    let mut pending = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let mut line = format!("{number}: ").into_bytes();
            line.extend(pending.drain(..=end));
            let line: Rc<[u8]> = line.into();
            for (other, queue) in subscribers.borrow().iter() {
                if *other != number && queue.try_send(Rc::clone(&line)).is_err() {
                    dropped.set(dropped.get() + 1);
                    eprintln!(
                        "fanout: subscriber {other} is slow; {} lines dropped in all",
                        dropped.get()
                    );
                }
            }
        }
    }
}
