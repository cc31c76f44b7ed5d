//! [`channel`]: a bounded queue of values between coroutines of one process.
//! No host call: both ends are in the heap.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// A channel holding at most `capacity` values (at least 1): a sender waits
/// while it is full, the receiver while it is empty. `recv` returns `None`
/// once every [`Sender`] is dropped and the queue is empty; `send` gives the
/// value back once the [`Receiver`] is dropped.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::task;
///
/// let got = task::block_on(async {
///     let (tx, rx) = task::channel(2);
///     let producer = task::spawn(async move {
///         for i in 0..5 {
///             tx.send(i).await.unwrap(); // waits while 2 are queued
///         }
///     });
///     let mut got = Vec::new();
///     while let Some(i) = rx.recv().await {
///         got.push(i);
///     }
///     producer.await;
///     got
/// });
/// assert_eq!(got, [0, 1, 2, 3, 4]);
/// ```
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Rc::new(RefCell::new(Shared {
        queue: VecDeque::new(),
        capacity: capacity.max(1),
        senders: 1,
        receiver: true,
        receiver_waker: None,
        sender_wakers: Vec::new(),
    }));
    (
        Sender {
            shared: Rc::clone(&shared),
        },
        Receiver { shared },
    )
}

#[derive(Debug)]
struct Shared<T> {
    /// Sent, not yet received; `len() <= capacity`.
    queue: VecDeque<T>,
    /// Most values queued.
    capacity: usize,
    /// Live senders.
    senders: usize,
    /// Whether the receiver is alive.
    receiver: bool,
    /// The receiver, waiting for a value.
    receiver_waker: Option<Waker>,
    /// Senders waiting for room (all woken when there is some).
    sender_wakers: Vec<Waker>,
}

/// The sending end of a [`channel`]; clone it for more senders.
#[derive(Debug)]
pub struct Sender<T> {
    shared: Rc<RefCell<Shared<T>>>,
}

/// The receiving end of a [`channel`].
#[derive(Debug)]
pub struct Receiver<T> {
    shared: Rc<RefCell<Shared<T>>>,
}

impl<T> Sender<T> {
    /// Queues `value`, waiting while the channel is full.
    ///
    /// # Errors
    ///
    /// The value back, when the receiver is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::task;
    ///
    /// let (tx, rx) = task::channel(1);
    /// drop(rx);
    /// assert_eq!(task::block_on(tx.send(7)), Err(7));
    /// ```
    pub async fn send(&self, value: T) -> Result<(), T> {
        let mut value = Some(value);
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if !shared.receiver {
                return Poll::Ready(Err(value.take().expect("sent once")));
            }
            if shared.queue.len() >= shared.capacity {
                if !shared.sender_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    shared.sender_wakers.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            shared.queue.push_back(value.take().expect("sent once"));
            let waker = shared.receiver_waker.take();
            drop(shared);
            if let Some(waker) = waker {
                waker.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Queues `value` if there is room now, without waiting.
    ///
    /// # Errors
    ///
    /// The value back, when the channel is full or the receiver is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mnvkd_guest::task::channel(1);
    /// assert_eq!(tx.try_send(1), Ok(()));
    /// assert_eq!(tx.try_send(2), Err(2)); // full
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), T> {
        let mut shared = self.shared.borrow_mut();
        if !shared.receiver || shared.queue.len() >= shared.capacity {
            return Err(value);
        }
        shared.queue.push_back(value);
        let waker = shared.receiver_waker.take();
        drop(shared);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Values queued now.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mnvkd_guest::task::channel::<u8>(4);
    /// assert_eq!(tx.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.shared.borrow().queue.len()
    }

    /// Whether nothing is queued.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mnvkd_guest::task::channel::<u8>(4);
    /// assert!(tx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.shared.borrow_mut().senders += 1;
        Sender {
            shared: Rc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut shared = self.shared.borrow_mut();
            shared.senders -= 1;
            if shared.senders == 0 {
                shared.receiver_waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next value, waiting while the channel is empty; `None` once every
    /// sender is gone and nothing is left.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::task;
    ///
    /// let (tx, rx) = task::channel(1);
    /// let got = task::block_on(async move {
    ///     tx.send("hi").await.unwrap();
    ///     drop(tx);
    ///     (rx.recv().await, rx.recv().await)
    /// });
    /// assert_eq!(got, (Some("hi"), None));
    /// ```
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| match self.try_recv() {
            Some(value) => Poll::Ready(Some(value)),
            None if self.shared.borrow().senders == 0 => Poll::Ready(None),
            None => {
                self.shared.borrow_mut().receiver_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// The next value if one is queued, without waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = mnvkd_guest::task::channel::<u8>(1);
    /// assert_eq!(rx.try_recv(), None);
    /// ```
    pub fn try_recv(&self) -> Option<T> {
        let mut shared = self.shared.borrow_mut();
        let value = shared.queue.pop_front()?;
        let wakers = std::mem::take(&mut shared.sender_wakers);
        drop(shared);
        wakers.into_iter().for_each(Waker::wake);
        Some(value)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let wakers = {
            let mut shared = self.shared.borrow_mut();
            shared.receiver = false;
            shared.queue.clear();
            std::mem::take(&mut shared.sender_wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}
