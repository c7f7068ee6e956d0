//! The seam over glommio's task, timer and synchronisation primitives for
//! code that runs on one shard. Only this module, `storage::file`,
//! `server::listener` and `shard` name glommio.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

pub use glommio::channels::local_channel::{new_bounded as local_bounded, LocalReceiver, LocalSender};
pub use glommio::sync::{Permit, Semaphore, StaticPermit};
pub use glommio::TaskQueueHandle;

thread_local! {
    static BACKGROUND: Cell<Option<TaskQueueHandle>> = const { Cell::new(None) };
}

/// Sets the task queue that [`spawn_background`] uses on this shard.
pub fn set_background_queue(tq: TaskQueueHandle) {
    BACKGROUND.with(|b| b.set(Some(tq)));
}

/// Runs `f` on this shard, detached, in the latency-sensitive default queue.
pub fn spawn<F: Future<Output = ()> + 'static>(f: F) {
    glommio::spawn_local(f).detach();
}

/// Runs `f` on this shard, detached, in the background queue (flushes,
/// retention, housekeeping), so it yields to produce and fetch work.
pub fn spawn_background<F: Future<Output = ()> + 'static>(f: F) {
    match BACKGROUND.with(|b| b.get()) {
        Some(tq) => {
            if let Ok(t) = glommio::spawn_local_into(f, tq) {
                t.detach();
            }
        }
        None => {
            glommio::spawn_local(f).detach();
        }
    }
}

pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// Lets other tasks of this shard run.
pub async fn yield_now() {
    glommio::yield_if_needed().await;
}

/// Runs `f` to completion on a new, unpinned executor on this thread; for
/// tools and tests that need the storage engine outside a broker.
pub fn block_on<T: 'static, F: Future<Output = T> + 'static>(f: F) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .ring_depth(64)
        .make()
        .expect("could not start an io_uring executor")
        .run(f)
}

/// Runs `f` until it finishes or `d` passes; `None` on time-out.
pub async fn timeout<T, F: Future<Output = T>>(d: Duration, f: F) -> Option<T> {
    use futures::future::{select, Either};
    let sleep = std::pin::pin!(glommio::timer::sleep(d));
    let f = std::pin::pin!(f);
    match select(f, sleep).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

/// A broadcast wake-up on one shard: every task waiting when
/// [`notify`](Event::notify) is called wakes. Used for long-poll fetches.
#[derive(Default)]
pub struct Event {
    generation: std::cell::Cell<u64>,
    waiters: std::cell::RefCell<Vec<std::task::Waker>>,
}

impl Event {
    pub fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves at the next [`notify`](Event::notify) after this call.
    pub fn listen(&self) -> impl Future<Output = ()> + '_ {
        let start = self.generation.get();
        std::future::poll_fn(move |cx| {
            if self.generation.get() != start {
                return std::task::Poll::Ready(());
            }
            let mut w = self.waiters.borrow_mut();
            // Bounded: a waiter re-registers only when polled, and stale
            // wakers are dropped on every notify.
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            std::task::Poll::Pending
        })
    }
}
