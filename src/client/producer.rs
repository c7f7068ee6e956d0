//! A batching producer that any application can use: from blocking code
//! (`send(..)?.wait()`) or from an async runtime such as tokio (the
//! returned [`Delivery`] is a plain `Future`).
//!
//! The hot path: `send` takes one lock, encodes the record straight into
//! the open batch of its partition (its bytes are copied once, into the
//! batch) and returns a [`Delivery`] that shares the batch's completion;
//! nothing is allocated per record. A batch is sealed when it reaches
//! `batch_max_bytes` or has lingered `linger`, and completes once for all
//! its records, each of which reads its offset as the batch's base plus its
//! index. Kafka's producer works the same way (one future per batch).
//!
//! Runtime choice: one background thread sends sealed batches and one
//! thread per broker connection reads the answers, over blocking sockets;
//! a delivery is completed through a mutex and condvar (for `wait`) and
//! wakers (for `.await`), which every executor understands. An application
//! therefore needs neither glommio nor a particular async runtime.
//!
//! Routing: each batch goes to the broker that leads its partition, from
//! metadata fetched through a bootstrap broker; a failure or a "not
//! leader" answer drops the cached leader, so the next attempt looks again.
//!
//! Ordering: a partition's batches are sent in order, and a failed batch
//! goes back into its partition's queue in that order. With acks all one
//! request per partition is in flight, so retries never reorder records
//! within a partition; with acks none or leader up to `max_in_flight`
//! (see its documentation for the one exception, and 1 to rule it out).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use super::raw::{ClientError, Connection};
use crate::protocol::{produce, ErrorCode};
use crate::record::{BatchBuilder, Header};
use crate::tls::ClientSecurity;

/// How many replicas must have a record before it is acknowledged: the
/// protocol's own; [`Acks::None`] is not waited for (no delivery report
/// beyond "sent").
pub use crate::protocol::Acks;

/// Producer settings; every size and time carries its unit.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `host:port` of one or more brokers.
    pub bootstrap: Vec<String>,
    /// TLS and SASL, when the brokers require them.
    pub security: ClientSecurity,
    /// How many replicas must have a record before it is acknowledged.
    pub acks: Acks,
    /// How long a batch may wait for more records.
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes.
    pub batch_max_bytes: usize,
    /// Batches of one partition that were sealed while its requests were
    /// in flight go together in the next, up to this many bytes.
    pub request_max_bytes: usize,
    /// Requests of one partition in flight at once, with acks none or
    /// leader. Order holds under retries: the broker appends a partition's
    /// requests in arrival order, and what refuses one (a broken
    /// connection, a leader that moved, a broker stopping) refuses the
    /// ones after it, which go back in order. The exception is a
    /// leadership that moves away and back within the milliseconds those
    /// requests take (Kafka's `max.in.flight.requests.per.connection`
    /// without idempotence has the same). 1 rules it out. With acks all
    /// it is always 1: a refusal for too few in-sync replicas can be
    /// followed by the acceptance of the next request. An idempotent
    /// producer keeps at most 5 requests of a partition unanswered: the
    /// broker remembers a producer's last five runs of batches, and appends
    /// one request's batches of a partition as one run.
    pub max_in_flight: usize,
    /// Bytes of records waiting to be sent; `send` blocks past this.
    pub buffer_max_bytes: usize,
    /// How long `send` may block on a full buffer.
    pub send_timeout: Duration,
    /// Attempts for one batch before its records fail; the pause between
    /// attempts grows to 500 ms, so the default of 40 rides out a leader's
    /// failover (about 18 s in all).
    pub retries: u32,
    /// Idempotence (Kafka's `enable.idempotence`, on by default as in
    /// Kafka's clients): the producer takes an id from the cluster
    /// (InitProducerId) and numbers its batches per partition, so a batch
    /// sent again after a lost answer is stored once and answered with the
    /// offset it was stored at.
    pub idempotent: bool,
}

impl ProducerConfig {
    fn in_flight_limit(&self) -> usize {
        if self.acks == Acks::All {
            1
        } else if self.idempotent {
            // The broker remembers a producer's last five runs of batches
            // of a partition, one request's batches being one run: no more
            // requests may be unanswered at once.
            self.max_in_flight.clamp(1, IDEMPOTENT_WINDOW)
        } else {
            self.max_in_flight.max(1)
        }
    }
}

/// Runs of batches of a partition the broker remembers per idempotent
/// producer (Kafka's window): an idempotent producer keeps at most this
/// many requests of a partition unanswered.
const IDEMPOTENT_WINDOW: usize = 5;

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            bootstrap: vec!["127.0.0.1:9092".into()],
            security: ClientSecurity::default(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_max_bytes: 512 * 1024,
            request_max_bytes: 4 << 20,
            max_in_flight: 5,
            buffer_max_bytes: 32 << 20,
            send_timeout: Duration::from_secs(30),
            retries: 40,
            idempotent: true,
        }
    }
}

/// One record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// The topic to send to.
    pub topic: String,
    /// A fixed partition; otherwise by key hash, or round robin without a key.
    pub partition: Option<u32>,
    /// The key: records with equal keys go to the same partition.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the epoch; now when absent.
    pub timestamp_ms: Option<i64>,
}

/// A record that borrows its bytes, for applications that keep their own
/// buffers: `send` copies them once, into the batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordRef<'a> {
    /// The topic to send to.
    pub topic: &'a str,
    /// A fixed partition; otherwise by key hash, or round robin without a key.
    pub partition: Option<u32>,
    /// The key: records with equal keys go to the same partition.
    pub key: Option<&'a [u8]>,
    /// The value.
    pub value: Option<&'a [u8]>,
    /// Headers, in order.
    pub headers: &'a [Header<'a>],
    /// Milliseconds since the epoch; now when absent.
    pub timestamp_ms: Option<i64>,
}

/// What [`Producer::send`] takes: an owned [`ProducerRecord`] (or a
/// reference to one) or a borrowing [`RecordRef`].
pub trait ToRecord {
    /// Calls `f` with the record's fields.
    fn with_record<R>(&self, f: impl FnOnce(RecordRef<'_>) -> R) -> R;
}

impl ToRecord for RecordRef<'_> {
    fn with_record<R>(&self, f: impl FnOnce(RecordRef<'_>) -> R) -> R {
        f(*self)
    }
}

impl ToRecord for ProducerRecord {
    fn with_record<R>(&self, f: impl FnOnce(RecordRef<'_>) -> R) -> R {
        let headers: Vec<Header<'_>> = self.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
        f(RecordRef {
            topic: &self.topic,
            partition: self.partition,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &headers,
            timestamp_ms: self.timestamp_ms,
        })
    }
}

impl<T: ToRecord> ToRecord for &T {
    fn with_record<R>(&self, f: impl FnOnce(RecordRef<'_>) -> R) -> R {
        (**self).with_record(f)
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition it was stored in.
    pub partition: u32,
    /// The record's offset; -1 with [`Acks::None`].
    pub offset: i64,
}

/// Why a record was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("the send buffer stayed full for {0:?}")]
    /// `send` waited this long for buffer space.
    BufferFull(Duration),
    #[error("topic '{0}' does not exist")]
    /// The topic does not exist.
    UnknownTopic(String),
    #[error("partition {partition} is outside topic '{topic}'")]
    /// The partition is outside the topic.
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
    },
    #[error("the broker refused the batch: {0}")]
    /// The broker refused the batch, or every retry failed.
    Broker(String),
    #[error("the producer is closed")]
    /// The producer was closed.
    Closed,
}

/// The delivery report of one record: a `Future`, or [`Delivery::wait`]
/// from blocking code. It shares its batch's completion with the batch's
/// other records.
///
/// Two scalars (a pointer and an index), so it moves between frames in
/// registers. A result known at `send` (an unknown partition) is a batch
/// of its own, completed at once.
pub struct Delivery {
    batch: Held,
    index: u32,
}

/// The index of a "delivery" that stands for `send`'s own error (see
/// `Producer::send_ref`); never a record's.
const REFUSED: u32 = u32::MAX;

impl Delivery {
    /// A delivery failed at `send`, or (`index` [`REFUSED`]) `send`'s own
    /// error.
    #[cold]
    fn failed(e: ProducerError, index: u32) -> Self {
        let batch = Batch::new();
        let _ = batch.result.set(Err(e));
        Delivery { batch: Held(Some(batch)), index }
    }

    /// The error of a [`REFUSED`] one.
    #[cold]
    fn refusal(self) -> ProducerError {
        self.batch.wait().clone().err().unwrap_or(ProducerError::Closed)
    }

    /// Blocks until the record is acknowledged or has failed.
    pub fn wait(self) -> Result<RecordMetadata, ProducerError> {
        self.batch.record(self.batch.wait(), self.index)
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata, ProducerError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (batch, index) = (&self.batch, self.index);
        if let Some(r) = batch.result.get() {
            return Poll::Ready(batch.record(r, index));
        }
        let mut waiters = lock(&batch.waiters);
        // Checked again under the lock the completer takes after setting
        // the result: either it is set now, or the waker registered here is
        // woken.
        if let Some(r) = batch.result.get() {
            return Poll::Ready(batch.record(r, index));
        }
        if !waiters.tasks.last().is_some_and(|w| w.will_wake(cx.waker())) {
            waiters.tasks.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A delivery's reference to its batch, given up in bulk when the delivery
/// is waited for or dropped (see `counted::Shared::release_later`).
struct Held(Option<BatchRef>);

impl std::ops::Deref for Held {
    type Target = Batch;
    fn deref(&self) -> &Batch {
        self.0.as_ref().expect("held until dropped")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.release_later();
        }
    }
}

/// The completion one batch shares with all its records' deliveries. Once
/// the result is set, reading it is one atomic load (no lock per record).
#[derive(Default)]
struct Batch {
    /// The batch's partition and base offset (-1 unacknowledged, with acks
    /// none), or why it failed.
    result: OnceLock<Result<(u32, i64), ProducerError>>,
    /// Who awaits it; the lock also orders waiting against completing.
    waiters: Mutex<Waiters>,
    done: Condvar,
}

/// The tasks and threads waiting for a batch. Threads are counted so that
/// completing a batch nobody blocks on makes no system call (a condvar's
/// notify always does).
#[derive(Default)]
struct Waiters {
    tasks: Vec<Waker>,
    threads: usize,
}

impl Batch {
    fn new() -> BatchRef {
        BatchRef::new(Batch::default())
    }

    fn record(&self, r: &Result<(u32, i64), ProducerError>, index: u32) -> Result<RecordMetadata, ProducerError> {
        match r {
            Ok((partition, base)) => Ok(RecordMetadata { partition: *partition, offset: if *base < 0 { -1 } else { base + i64::from(index) } }),
            Err(e) => Err(e.clone()),
        }
    }

    fn wait(&self) -> &Result<(u32, i64), ProducerError> {
        if let Some(r) = self.result.get() {
            return r;
        }
        let mut waiters = lock(&self.waiters);
        loop {
            if let Some(r) = self.result.get() {
                return r;
            }
            waiters.threads += 1;
            waiters = self.done.wait(waiters).unwrap_or_else(|e| e.into_inner());
            waiters.threads -= 1;
        }
    }
}

/// A batch's obligation to complete: whoever holds it completes the batch,
/// and dropping it unfinished (a producer torn down mid-send) completes the
/// batch as closed, so no delivery waits forever.
struct Completion(BatchRef);

impl Completion {
    fn finish(&self, r: Result<(u32, i64), ProducerError>) {
        if self.0.result.set(r).is_err() {
            return; // finished before
        }
        let (tasks, threads) = {
            let mut w = lock(&self.0.waiters);
            (std::mem::take(&mut w.tasks), w.threads)
        };
        if threads > 0 {
            self.0.done.notify_all();
        }
        tasks.into_iter().for_each(Waker::wake);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.finish(Err(ProducerError::Closed));
    }
}

/// A counted reference to a batch's completion.
type BatchRef = counted::Shared<Batch>;

/// Counted references taken in bulk.
///
/// Every record's delivery holds a reference to its batch. With `Arc` that
/// is an atomic increment per record in `send`, and there an atomic
/// operation also waits for the record's stores to reach the cache: it was
/// the largest single cost of `send` once the rest was gone. `Arc` adds one
/// reference at a time, so this is a minimal `Arc` that can add many: the
/// open batch takes them [`CHUNK`](counted::CHUNK) at a time and hands them
/// out one per record with no atomic operation. Dropping a reference is
/// `Arc`'s release-then-acquire-fence protocol.
mod counted {
    use std::ops::Deref;
    use std::ptr::NonNull;
    use std::sync::atomic::{fence, AtomicUsize, Ordering};

    /// References [`Credits`] takes at a time.
    pub const CHUNK: usize = 1024;

    struct Cell<T> {
        refs: AtomicUsize,
        value: T,
    }

    /// Like `Arc<T>`: shared ownership of a `T`, freed with the last handle.
    pub struct Shared<T: Send + Sync>(NonNull<Cell<T>>);

    // SAFETY: as for `Arc<T>`: a handle gives out only `&T` (T is Sync) and
    // the last one to go, on whatever thread, drops the `T` (T is Send);
    // the count is atomic.
    unsafe impl<T: Send + Sync> Send for Shared<T> {}
    // SAFETY: as above.
    unsafe impl<T: Send + Sync> Sync for Shared<T> {}

    impl<T: Send + Sync> Shared<T> {
        pub fn new(value: T) -> Self {
            Shared(NonNull::from(Box::leak(Box::new(Cell { refs: AtomicUsize::new(1), value }))))
        }
    }

    impl<T: Send + Sync> Deref for Shared<T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: this handle is one of the references, so the cell lives.
            unsafe { &self.0.as_ref().value }
        }
    }

    impl<T: Send + Sync> Clone for Shared<T> {
        fn clone(&self) -> Self {
            // SAFETY: this handle keeps the cell alive. Relaxed, as in
            // `Arc::clone`: a new reference comes from an existing one.
            unsafe { self.0.as_ref() }.refs.fetch_add(1, Ordering::Relaxed);
            Shared(self.0)
        }
    }

    impl<T: Send + Sync> Drop for Shared<T> {
        fn drop(&mut self) {
            // SAFETY: this handle holds one reference and gives it up.
            unsafe { release(self.0, 1) }
        }
    }

    impl<T: Send + Sync + 'static> Shared<T> {
        /// Gives this reference up later, in bulk: a thread's releases of
        /// references to one cell add up while the cell is among the
        /// [`OWED_CELLS`] it released last, and become one atomic
        /// subtraction when it leaves them (or the thread exits). Records'
        /// deliveries are released so: one atomic subtraction per record
        /// was a tenth of a blocking `send`-and-`wait` loop's time. The cell
        /// lives on meanwhile (a few words), nothing else.
        pub fn release_later(self) {
            let cell = self.0;
            std::mem::forget(self);
            let erased = cell.cast::<()>();
            let evicted = OWED.try_with(|owed| {
                let mut slots = owed.slots.borrow_mut();
                if let Some(s) = slots.iter_mut().flatten().find(|s| s.0 == erased) {
                    s.1 += 1;
                    return None;
                }
                let i = slots.iter().position(Option::is_none).unwrap_or_else(|| {
                    let i = owed.next.get();
                    owed.next.set((i + 1) % OWED_CELLS);
                    i
                });
                slots[i].replace((erased, 1, release_erased::<T>))
            });
            match evicted {
                Ok(None) => {}
                // SAFETY: the thread owed `n` references to `p`, whose
                // release function `f` is (they were recorded together).
                Ok(Some((p, n, f))) => unsafe { f(p, n) },
                // The thread is exiting and its owed references are gone.
                // SAFETY: this handle's reference, given up here.
                Err(_) => unsafe { release(cell, 1) },
            }
        }
    }

    /// Cells a thread keeps owed references to: a producer sending round
    /// robin releases records of one batch per partition in turn.
    pub const OWED_CELLS: usize = 8;

    /// References a thread has given up and not yet subtracted: the cell,
    /// how many, and the function that subtracts them for the cell's type.
    type Owing = Option<(NonNull<()>, usize, unsafe fn(NonNull<()>, usize))>;

    struct Owed {
        slots: std::cell::RefCell<[Owing; OWED_CELLS]>,
        /// The slot given up next when all are taken.
        next: std::cell::Cell<usize>,
    }

    impl Drop for Owed {
        fn drop(&mut self) {
            for (p, n, f) in self.slots.get_mut().iter_mut().filter_map(Option::take) {
                // SAFETY: as in `release_later`.
                unsafe { f(p, n) }
            }
        }
    }

    thread_local! {
        static OWED: Owed = const { Owed { slots: std::cell::RefCell::new([None; OWED_CELLS]), next: std::cell::Cell::new(0) } };
    }

    /// [`release`] for a type-erased cell.
    ///
    /// # Safety
    /// As [`release`], and `cell` is a `Cell<T>`.
    unsafe fn release_erased<T>(cell: NonNull<()>, n: usize) {
        // SAFETY: the caller's guarantees.
        unsafe { release(cell.cast::<Cell<T>>(), n) }
    }

    /// Gives up `n` references; the last one frees the cell.
    ///
    /// # Safety
    /// The caller holds `n` references to the live cell and uses none of
    /// them after this.
    #[inline]
    unsafe fn release<T>(cell: NonNull<Cell<T>>, n: usize) {
        // SAFETY: the caller's references keep the cell alive until here.
        if unsafe { cell.as_ref() }.refs.fetch_sub(n, Ordering::Release) == n {
            // Every other holder's last use happens before the free.
            fence(Ordering::Acquire);
            // SAFETY: that was the last reference; nothing else can reach
            // the cell, which `Shared::new` allocated as a `Box`.
            drop(unsafe { Box::from_raw(cell.as_ptr()) });
        }
    }

    /// References taken in bulk from one [`Shared`], handed out one at a
    /// time. It always keeps one itself, so the cell outlives it.
    pub struct Credits<T: Send + Sync> {
        cell: NonNull<Cell<T>>,
        /// References held, at least 1.
        held: usize,
    }

    // SAFETY: it holds references like `Shared` handles do.
    unsafe impl<T: Send + Sync> Send for Credits<T> {}

    impl<T: Send + Sync> Credits<T> {
        /// Takes over `from`'s reference.
        pub fn new(from: Shared<T>) -> Self {
            let cell = from.0;
            std::mem::forget(from);
            Credits { cell, held: 1 }
        }

        /// One more handle: an atomic operation once per [`CHUNK`].
        pub fn take(&mut self) -> Shared<T> {
            if self.held == 1 {
                // SAFETY: the reference still held keeps the cell alive.
                unsafe { self.cell.as_ref() }.refs.fetch_add(CHUNK, Ordering::Relaxed);
                self.held += CHUNK;
            }
            self.held -= 1;
            Shared(self.cell)
        }
    }

    impl<T: Send + Sync> Drop for Credits<T> {
        fn drop(&mut self) {
            // SAFETY: `held` references are this value's, given up here.
            unsafe { release(self.cell, self.held) }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;

        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }

        #[test]
        fn the_value_is_dropped_once_with_the_last_handle_on_any_thread() {
            for handles in [0usize, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
                let drops = Arc::new(AtomicUsize::new(0));
                let shared = Shared::new(Counted(drops.clone()));
                let extra = shared.clone();
                let mut credits = Credits::new(shared);
                let taken: Vec<Shared<Counted>> = (0..handles).map(|_| credits.take()).collect();
                drop(credits);
                let threads: Vec<_> = taken.chunks(97).map(|c| c.to_vec()).map(|c| std::thread::spawn(move || drop(c))).collect();
                drop(taken);
                threads.into_iter().for_each(|t| t.join().unwrap());
                assert_eq!(drops.load(Ordering::SeqCst), 0, "{handles}: a handle is still alive");
                drop(extra);
                assert_eq!(drops.load(Ordering::SeqCst), 1, "{handles}: dropped exactly once, with the last handle");
            }
        }

        #[test]
        fn references_released_later_go_when_their_cell_is_evicted_or_the_thread_exits() {
            let drops = Arc::new(AtomicUsize::new(0));
            let cells: Vec<Shared<Counted>> = (0..=OWED_CELLS).map(|_| Shared::new(Counted(drops.clone()))).collect();
            let kept = cells[OWED_CELLS].clone();
            let seen = drops.clone();
            std::thread::spawn(move || {
                let mut cells = cells.into_iter();
                let first = cells.next().unwrap();
                let again = first.clone();
                first.release_later();
                again.release_later();
                for c in cells.by_ref().take(OWED_CELLS - 1) {
                    c.release_later();
                }
                assert_eq!(seen.load(Ordering::SeqCst), 0, "owed, not given up yet");
                cells.next().unwrap().release_later();
                assert_eq!(seen.load(Ordering::SeqCst), 1, "a cell past the owed ones evicts the first, which gives up both its references");
            })
            .join()
            .unwrap();
            assert_eq!(drops.load(Ordering::SeqCst), OWED_CELLS, "the exiting thread gave up the rest; `kept` holds the last cell");
            drop(kept);
            assert_eq!(drops.load(Ordering::SeqCst), OWED_CELLS + 1);
        }
    }
}

/// A value one thread (its owner) uses on every call with no atomic
/// read-modify-write, and other threads take over now and then.
///
/// `send` appends records to its thread's open batches in a lane, so the
/// hot path shares no lock with other threads; the sender thread (a batch
/// lingered) and `flush` steal the batches. Owner and thief are kept apart
/// by Dekker's handshake: the owner marks itself busy, then looks for a
/// thief; a thief announces itself, then waits until the owner is not
/// busy. Each side's store must be visible before its load, which takes a
/// full barrier on both. The owner's is made free by the kernel: on Linux a
/// thief's `membarrier` runs a barrier on every thread of the process, so
/// the owner needs only a compiler fence (the asymmetric fence of Folly's
/// and Linux's userspace RCU). Elsewhere both sides use a full fence.
mod lane {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicU8, Ordering};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    pub struct Lane<T> {
        /// The owner is inside `owner`.
        busy: AtomicBool,
        /// A thief holds `steal`: the owner goes through `steal` too.
        thief: AtomicBool,
        /// Held by a thief, and by the owner while a thief is announced.
        steal: Mutex<()>,
        value: UnsafeCell<T>,
    }

    // SAFETY: the value is reached by one thread at a time (the handshake
    // below), and it is `Send`, so which thread that is does not matter.
    unsafe impl<T: Send> Sync for Lane<T> {}

    impl<T> Lane<T> {
        pub fn new(value: T) -> Self {
            Lane { busy: AtomicBool::new(false), thief: AtomicBool::new(false), steal: Mutex::new(()), value: UnsafeCell::new(value) }
        }

        /// The value, as its owner, until the guard is dropped.
        ///
        /// # Safety
        /// One thread only calls this (the lane's owner), and while the
        /// guard lives it neither enters again nor [`steal`](Self::steal)s
        /// this lane. (A guard rather than a closure: the append runs
        /// inline in `send`, and its result stays in registers.)
        #[inline(always)]
        pub unsafe fn enter(&self) -> Owned<'_, T> {
            self.busy.store(true, Ordering::Relaxed);
            light_barrier();
            // A thief at work: waited for as another thief would, and
            // `steal` held throughout.
            let held = self.thief.load(Ordering::Acquire).then(|| self.wait_for_thief());
            Owned { lane: self, held }
        }

        #[cold]
        #[inline(never)]
        fn wait_for_thief(&self) -> MutexGuard<'_, ()> {
            self.busy.store(false, Ordering::Release);
            self.steal.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Runs `f` on the value while the owner is kept out; waits for an
        /// owner's call in progress (a short one: an append) to end.
        pub fn steal<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            let _held = self.steal.lock().unwrap_or_else(PoisonError::into_inner);
            self.thief.store(true, Ordering::Relaxed);
            heavy_barrier();
            let mut spins = 0u32;
            while self.busy.load(Ordering::Acquire) {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            // SAFETY: the owner is not inside `owner` and, seeing `thief`,
            // will wait on `steal`, which is held here; other thieves too.
            let r = f(unsafe { &mut *self.value.get() });
            self.thief.store(false, Ordering::Release);
            r
        }
    }

    /// The owner inside its lane (see [`Lane::enter`]).
    pub struct Owned<'a, T> {
        lane: &'a Lane<T>,
        /// `steal`, when a thief was met on the way in.
        held: Option<MutexGuard<'a, ()>>,
    }

    impl<T> std::ops::Deref for Owned<'_, T> {
        type Target = T;
        #[inline(always)]
        fn deref(&self) -> &T {
            // SAFETY: as in `deref_mut`.
            unsafe { &*self.lane.value.get() }
        }
    }

    impl<T> std::ops::DerefMut for Owned<'_, T> {
        #[inline(always)]
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: with no thief seen on the way in, one that announced
            // itself since waits for `busy` to clear, and one before saw
            // it and is gone (it clears `thief` last); with `steal` held,
            // thieves are kept out by it. Either way the value is this
            // thread's while the guard lives, and `enter`'s contract
            // rules out a second guard.
            unsafe { &mut *self.lane.value.get() }
        }
    }

    impl<T> Drop for Owned<'_, T> {
        #[inline(always)]
        fn drop(&mut self) {
            if self.held.is_none() {
                self.lane.busy.store(false, Ordering::Release);
            }
        }
    }

    /// 0: not known yet (full fences), 1: `membarrier` registered, 2: not
    /// available (full fences).
    static MEMBARRIER: AtomicU8 = AtomicU8::new(0);

    /// Registers this process for expedited `membarrier`, once; before a
    /// lane is first used, so owner and thieves agree on the fences.
    pub fn init() {
        if MEMBARRIER.load(Ordering::Acquire) != 0 {
            return;
        }
        #[cfg(target_os = "linux")]
        let registered = {
            const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
            // SAFETY: a syscall with integer arguments and no memory.
            unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 }
        };
        #[cfg(not(target_os = "linux"))]
        let registered = false;
        let _ = MEMBARRIER.compare_exchange(0, if registered { 1 } else { 2 }, Ordering::AcqRel, Ordering::Acquire);
    }

    #[inline]
    fn light_barrier() {
        if MEMBARRIER.load(Ordering::Relaxed) == 1 {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    fn heavy_barrier() {
        #[cfg(target_os = "linux")]
        if MEMBARRIER.load(Ordering::Relaxed) == 1 {
            const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
            // SAFETY: as in `init`.
            if unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) } == 0 {
                return;
            }
            // Registered, so it cannot fail; were it to, nothing can be
            // assumed of the owner's side.
            std::process::abort();
        }
        fence(Ordering::SeqCst);
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::sync::Arc;

        #[test]
        fn an_owner_and_thieves_never_meet_inside_the_value() {
            init();
            // The value is a pair the owner and the thieves each move in
            // steps that leave it unequal in between: any overlap shows.
            let lane = Arc::new(Lane::new((0u64, 0u64)));
            let stop = Arc::new(AtomicBool::new(false));
            let thieves: Vec<_> = (0..2)
                .map(|_| {
                    let (lane, stop) = (lane.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut taken = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            lane.steal(|v| {
                                assert_eq!(v.0, v.1, "a thief found the owner inside");
                                v.0 += 1;
                                std::hint::spin_loop();
                                v.1 += 1;
                            });
                            taken += 1;
                        }
                        taken
                    })
                })
                .collect();
            let mut owned = 0u64;
            for _ in 0..2_000_000 {
                // SAFETY: this thread is the only owner.
                let mut v = unsafe { lane.enter() };
                assert_eq!(v.0, v.1, "the owner found a thief inside");
                v.0 += 1;
                v.1 += 1;
                drop(v);
                owned += 1;
            }
            stop.store(true, Ordering::Relaxed);
            let taken: u64 = thieves.into_iter().map(|t| t.join().unwrap()).sum();
            let (a, b) = lane.steal(|v| *v);
            assert_eq!((a, b), (owned + taken, owned + taken), "no step was lost");
            assert!(taken > 0);
        }
    }
}

/// A lock that a panicked holder does not poison for everyone else: the
/// state it guards stays consistent between statements.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The batch still taking records.
struct Open {
    builder: BatchBuilder,
    /// Buffer bytes its records hold (released when it completes).
    budget: usize,
    opened: Instant,
    done: Completion,
    /// References to `done` for the records' deliveries, taken in bulk.
    refs: counted::Credits<Batch>,
    /// Records sent before their topic was known, by index in the batch:
    /// each has a completion of its own.
    forwards: Vec<(u32, Completion)>,
}

/// A batch that takes no more records: waiting, in flight, or retrying.
struct Sealed {
    /// Its place in its partition's send order.
    seq: u64,
    /// The sequence of its first record among its partition's records
    /// (Kafka's `baseSequence`), written into the header when idempotent.
    first_sequence: i32,
    /// Its records; the sender thread fills in the header and CRC before
    /// the first attempt, outside the state lock and off the thread that
    /// called `send`.
    batch: BatchBuilder,
    records: u32,
    partition: u32,
    budget: usize,
    done: Completion,
    forwards: Vec<(u32, Completion)>,
    /// Failed attempts so far.
    failures: u32,
    /// Not sent again before this (the pause between retries).
    not_before: Option<Instant>,
    /// The last attempt failed: look the leader up again first.
    relookup: bool,
}

/// One partition's batches: at most one open, at most one request in
/// flight, and the sealed ones in send order between them.
#[derive(Default)]
struct Queue {
    open: Option<Open>,
    sealed: VecDeque<Sealed>,
    /// The requests in flight, by id, with their batches.
    in_flight: Vec<(u64, Vec<BatchRef>)>,
    /// Ids for the next request and the next sealed batch.
    next_request: u64,
    next_seal: u64,
    /// The sequence the next sealed batch's first record gets.
    next_sequence: i32,
}

impl Sealed {
    /// The batch's bytes, header and CRC filled in (at the first attempt),
    /// with the idempotent producer's id and epoch if there is one.
    fn bytes(&mut self, producer: Option<(i64, i16)>) -> &[u8] {
        if let Some((id, epoch)) = producer {
            self.batch.set_producer(id, epoch, self.first_sequence);
        }
        self.batch.finish_in_place()
    }

    /// Completes the batch's deliveries (and those forwarded to it).
    fn finish(&self, r: Result<i64, ProducerError>) {
        let p = self.partition;
        for (i, c) in &self.forwards {
            c.finish(r.clone().map(|base| (p, if base < 0 { -1 } else { base + i64::from(*i) })));
        }
        self.done.finish(r.map(|base| (p, base)));
    }
}

impl Queue {
    fn seal(&mut self, partition: u32) {
        if let Some(o) = self.open.take() {
            self.seal_open(partition, o);
        }
    }

    /// Queues a batch for sending, after those sealed before it.
    fn seal_open(&mut self, partition: u32, o: Open) {
        {
            let Open { builder, budget, done, forwards, .. } = o;
            let seq = self.next_seal;
            self.next_seal += 1;
            let first_sequence = self.next_sequence;
            self.next_sequence = crate::record::next_sequence(first_sequence, builder.record_count() as i32);
            self.sealed.push_back(Sealed {
                seq,
                first_sequence,
                records: builder.record_count(),
                batch: builder,
                partition,
                budget,
                done,
                forwards,
                failures: 0,
                not_before: None,
                relookup: false,
            });
        }
    }

    /// Adds a record sent before its topic was known to the open batch
    /// (opening one, in a spare buffer if there is one), sealing it when
    /// full; the record keeps its own completion (`forward`).
    fn push(&mut self, partition: u32, r: &RecordRef<'_>, size: usize, spare: &mut Vec<Vec<u8>>, config: &ProducerConfig, forward: Completion) {
        let open = self.open.get_or_insert_with(|| {
            let done = Batch::new();
            Open {
                // Sized for a full batch from the start: growing a buffer by
                // doubling would copy it about once more.
                builder: spare.pop().map_or_else(|| BatchBuilder::new(config.batch_max_bytes.min(8 << 20) + 1024), BatchBuilder::reuse),
                budget: 0,
                opened: Instant::now(),
                done: Completion(done.clone()),
                refs: counted::Credits::new(done),
                forwards: Vec::new(),
            }
        });
        open.builder.push(r.timestamp_ms.unwrap_or_else(crate::time::ticking_now_ms), r.key, r.value, r.headers);
        open.budget += size;
        open.forwards.push((open.builder.record_count() - 1, forward));
        if open.builder.encoded_len() >= config.batch_max_bytes {
            self.seal(partition);
        }
    }

    fn busy(&self) -> bool {
        self.open.is_some() || !self.sealed.is_empty() || !self.in_flight.is_empty()
    }
}

/// A record sent before its topic's partitions were known: kept whole
/// until the sender thread has looked the topic up.
struct Unrouted {
    partition: Option<u32>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp_ms: i64,
    size: usize,
    done: Completion,
}

/// Each known topic's partition queues. A producer usually sends to one
/// topic or a few, so the last one found is checked first (a string
/// compare, where hashing the name would cost more than the rest of `send`).
#[derive(Default)]
struct Topics {
    names: Vec<String>,
    queues: Vec<Vec<Queue>>,
    index: HashMap<String, usize>,
    last: usize,
}

impl Topics {
    fn get_mut(&mut self, name: &str) -> Option<&mut Vec<Queue>> {
        if self.names.get(self.last).is_none_or(|n| n != name) {
            self.last = *self.index.get(name)?;
        }
        Some(&mut self.queues[self.last])
    }

    /// The topic's index and partition count.
    fn find(&mut self, name: &str) -> Option<(usize, u32)> {
        self.get_mut(name)?;
        Some((self.last, self.queues[self.last].len() as u32))
    }

    /// The topic's queues, made for `partitions` if it is new.
    fn get_or_insert(&mut self, name: &str, partitions: u32) -> &mut Vec<Queue> {
        if self.get_mut(name).is_none() {
            self.last = self.names.len();
            self.index.insert(name.to_string(), self.last);
            self.names.push(name.to_string());
            self.queues.push((0..partitions).map(|_| Queue::default()).collect());
        }
        &mut self.queues[self.last]
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Vec<Queue>)> {
        self.names.iter().zip(self.queues.iter_mut())
    }
}

/// What the sender thread is doing, as `send` sees it.
#[derive(Default, Clone, Copy)]
enum SenderState {
    /// Between scans of the queues: it scans again before it sleeps.
    #[default]
    Busy,
    /// Waiting for a notification, or until this time.
    Sleeping(Option<Instant>),
}

/// What `send`, the sender thread and the connections' readers share.
#[derive(Default)]
struct State {
    /// Records of topics not looked up yet, by topic, in send order.
    unrouted: HashMap<String, Vec<Unrouted>>,
    /// Buffer bytes held by records not yet acknowledged.
    used: usize,
    /// Each known topic's partitions.
    topics: Topics,
    round_robin: u32,
    /// Buffers of acknowledged batches, for the next ones.
    spare: Vec<Vec<u8>>,
    closed: bool,
    sender: SenderState,
    /// `send` calls blocked on a full buffer.
    space_waiters: usize,
    /// Every thread's lane (a thread's is dropped here once it exits and
    /// the lane is empty).
    lanes: Vec<Arc<ThreadLane>>,
}

/// Which waiting threads a change to the state must wake. A condvar's
/// notify is a system call even with nobody waiting, so it is made only
/// for a thread that waits: the state says which do, under the lock that
/// also guards the change.
#[derive(Clone, Copy)]
struct Wakes {
    space: bool,
    work: bool,
}

impl State {
    /// After freeing buffer space, or making work for the sender thread.
    fn wakes(&self) -> Wakes {
        Wakes { space: self.space_waiters > 0, work: matches!(self.sender, SenderState::Sleeping(_)) }
    }
}

/// Buffers kept for reuse (each up to `batch_max_bytes` and a record).
const SPARE_BUFFERS: usize = 8;

struct Shared {
    config: ProducerConfig,
    state: Mutex<State>,
    /// `send` waits here for buffer space.
    space: Condvar,
    /// The sender thread waits here for a batch to send.
    work: Condvar,
    /// A bootstrap connection for `send`'s topic lookups.
    lookup: Mutex<Option<Connection>>,
    /// `State::closed`, for `send`'s path that takes no lock.
    closed: AtomicBool,
    /// Tells this producer's lanes apart from other producers' in a
    /// thread's list.
    id: u64,
    /// The zero of `ThreadLane::oldest`.
    epoch: Instant,
    /// The idempotent producer's id and epoch (`ProducerConfig::idempotent`).
    producer: Option<(i64, i16)>,
}

/// One thread's open batches: `send` appends to them without a lock (see
/// [`lane`]), one batch per partition it sends to; full ones are handed to
/// the partition's queue under the state lock, once per batch. Records of
/// one thread keep their order in a partition: its batches are queued in
/// the order they were opened, by the thread or by whoever steals them.
struct ThreadLane {
    lane: lane::Lane<LaneBatches>,
    /// When its oldest open batch was opened, in nanoseconds since the
    /// producer's epoch (`NONE_OPEN` if none): the sender thread steals the
    /// lane's batches once that has lingered. Written under the state lock.
    oldest: AtomicU64,
    /// The producer closed: the thread drops the lane at its next send.
    retired: AtomicBool,
}

const NONE_OPEN: u64 = u64::MAX;

/// A record does not fit the buffer yet: its `send` waits for space
/// outside its lane, then appends again.
struct BufferFull;

/// Why `append` did not add a record: `send_in` waits for space and
/// appends again, or turns it into a [`REFUSED`] delivery.
enum Refused {
    BufferFull,
    Closed,
}

impl From<BufferFull> for Refused {
    fn from(_: BufferFull) -> Self {
        Refused::BufferFull
    }
}

#[derive(Default)]
struct LaneBatches {
    topics: Vec<LaneTopic>,
    /// The topic of the last record, looked at first.
    last: usize,
    round_robin: u32,
    /// Buffer bytes reserved from `State::used` and not yet taken by a
    /// record (taken in chunks, so reserving is not per record).
    credit: usize,
}

struct LaneTopic {
    name: String,
    /// Its index in `State::topics`.
    index: usize,
    open: Vec<Option<Open>>,
}

impl LaneBatches {
    #[inline(always)]
    fn find(&mut self, name: &str) -> Option<usize> {
        if self.topics.get(self.last).is_some_and(|t| same_name(&t.name, name)) {
            return Some(self.last);
        }
        self.last = self.topics.iter().position(|t| t.name == name)?;
        Some(self.last)
    }

    fn oldest(&self) -> Option<Instant> {
        self.topics.iter().flat_map(|t| t.open.iter().flatten()).map(|o| o.opened).min()
    }
}

/// `a == b` for a topic's name, compared in words inline: the library's
/// `memcmp`, called for every `send`, cost several ns of a short name.
#[inline(always)]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // The words at `i` and at the end (overlapping when `n` is not a
    // multiple of the word) cover every byte.
    fn word(s: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"))
    }
    fn half(s: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"))
    }
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if word(a, i) != word(b, i) {
                return false;
            }
            i += 8;
        }
        return word(a, n - 8) == word(b, n - 8);
    }
    if n >= 4 {
        return half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4);
    }
    (0..n).all(|i| a[i] == b[i])
}

/// A thread's lanes, one per producer it sends through.
struct ThreadLanes(Vec<(u64, Arc<ThreadLane>)>);

impl Drop for ThreadLanes {
    fn drop(&mut self) {
        // The lanes go: so does the shortcut to one.
        let _ = LAST_LANE.try_with(|l| l.set((u64::MAX, std::ptr::null())));
    }
}

thread_local! {
    static LANES: std::cell::RefCell<ThreadLanes> = const { std::cell::RefCell::new(ThreadLanes(Vec::new())) };
    /// The lane this thread used last, by producer id: reaching it is one
    /// thread-local read (`LANES`, which has a destructor, costs a check
    /// and a borrow). It points into `LANES`, which keeps the lane alive:
    /// it is set and cleared only with `LANES` changing, on this thread.
    static LAST_LANE: std::cell::Cell<(u64, *const ThreadLane)> = const { std::cell::Cell::new((u64::MAX, std::ptr::null())) };
}

static PRODUCER_IDS: AtomicU64 = AtomicU64::new(0);

fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(epoch).as_nanos() as u64
}

/// Buffer bytes a lane reserves at a time beyond the record that needs them.
fn credit_chunk(config: &ProducerConfig) -> usize {
    (config.buffer_max_bytes / 64).min(64 << 10)
}

/// A batching, retrying producer. Cheap to share behind an `Arc`; `send`
/// may be called from many threads.
///
/// ```
/// # // Runs against an in-process broker when the broker is built; with
/// # // the client feature alone it is compiled, not run.
/// # fn example(addr: &str) {
/// # shardlog::client::admin::Admin::connect(&[addr]).unwrap().create_topic("events", 2, 1, &[]).unwrap();
/// use shardlog::client::producer::{Producer, ProducerConfig, ProducerRecord, RecordRef};
///
/// let producer = Producer::connect(ProducerConfig { bootstrap: vec![addr.to_string()], ..Default::default() }).unwrap();
/// let delivery = producer
///     .send(ProducerRecord { topic: "events".into(), value: Some(b"hello".to_vec()), ..Default::default() })
///     .unwrap();
/// let stored = delivery.wait().unwrap(); // or `.await` on any async runtime
/// println!("partition {} offset {}", stored.partition, stored.offset);
/// // Without copying the value first:
/// let value = [7u8; 100];
/// producer.send(RecordRef { topic: "events", value: Some(&value), ..Default::default() }).unwrap();
/// producer.flush().unwrap();
/// # }
/// # #[cfg(feature = "broker")] {
/// # let dir = tempfile::tempdir_in("target").unwrap();
/// # let config = shardlog::config::BrokerConfig { data_dir: dir.path().into(), listen: "127.0.0.1:0".parse().unwrap(), metrics_listen: "127.0.0.1:0".into(), shards: 1, ..Default::default() };
/// # let broker = shardlog::broker::start(config).unwrap();
/// # example(&broker.addr().to_string());
/// # }
/// ```
pub struct Producer {
    shared: Arc<Shared>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Producer {
    /// Connects to the first bootstrap broker that answers.
    pub fn connect(config: ProducerConfig) -> Result<Self, ClientError> {
        let mut conn = Connection::connect_any_with(&config.bootstrap, &config.security)?;
        let producer = if config.idempotent { Some(conn.init_producer_id()?) } else { None };
        lane::init();
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State::default()),
            space: Condvar::new(),
            work: Condvar::new(),
            lookup: Mutex::new(Some(conn)),
            closed: AtomicBool::new(false),
            id: PRODUCER_IDS.fetch_add(1, Ordering::Relaxed),
            epoch: Instant::now(),
            producer,
        });
        let sender = Sender { shared: shared.clone(), bootstrap: None, leaders: HashMap::new(), links: HashMap::new() };
        let thread = thread::Builder::new().name("shardlog-producer".into()).spawn(move || sender.run()).map_err(ClientError::Io)?;
        Ok(Producer { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Adds a record to its partition's open batch; blocks while the
    /// buffer is full (backpressure), and on a topic's first record while
    /// its partitions are looked up. An unknown topic or partition is
    /// reported through the delivery.
    #[inline]
    pub fn send(&self, record: impl ToRecord) -> Result<Delivery, ProducerError> {
        let d = record.with_record(|r| self.send_ref(r));
        if d.index == REFUSED {
            return Err(d.refusal());
        }
        Ok(d)
    }

    /// `send`, its rare error carried as a [`REFUSED`] delivery: a
    /// delivery is two scalars, returned in registers, where the public
    /// 5-word result went through memory and each caller's wide load of
    /// it waited on the callee's narrower stores (a few ns a record).
    fn send_ref(&self, r: RecordRef<'_>) -> Delivery {
        let size = 64
            + r.key.map_or(0, <[u8]>::len)
            + r.value.map_or(0, <[u8]>::len)
            + r.headers.iter().map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len)).sum::<usize>();
        let (id, last) = LAST_LANE.with(std::cell::Cell::get);
        let first;
        let lane = if id == self.shared.id && !last.is_null() {
            // SAFETY: `LAST_LANE` points into this thread's `LANES`, whose
            // `Arc` keeps the lane alive (see `LAST_LANE`).
            unsafe { &*last }
        } else {
            first = self.lane_first();
            &*first
        };
        // One call of `send_in`, so its append is inlined here once.
        self.send_in(lane, &r, size)
    }

    /// The lane of a thread that did not use this producer last: found in
    /// its list or made.
    #[cold]
    #[inline(never)]
    fn lane_first(&self) -> Arc<ThreadLane> {
        let id = self.shared.id;
        let lane = LANES.try_with(|lanes| {
            let mut lanes = lanes.borrow_mut();
            lanes.0.retain(|(_, l)| !l.retired.load(Ordering::Relaxed));
            let lane = match lanes.0.iter().find(|(i, _)| *i == id) {
                Some((_, l)) => l.clone(),
                None => {
                    let l = self.new_lane();
                    lanes.0.push((id, l.clone()));
                    l
                }
            };
            LAST_LANE.with(|last| last.set((id, Arc::as_ptr(&lane))));
            lane
        });
        // A send from another thread-local's destructor, after this
        // thread's lanes went: a lane of its own, which the sender thread
        // empties and drops once this one is gone.
        lane.unwrap_or_else(|_| self.new_lane())
    }

    /// A lane for the calling thread, known to the sender thread.
    fn new_lane(&self) -> Arc<ThreadLane> {
        let lane = Arc::new(ThreadLane { lane: lane::Lane::new(LaneBatches::default()), oldest: AtomicU64::new(NONE_OPEN), retired: AtomicBool::new(false) });
        lock(&self.shared.state).lanes.push(lane.clone());
        lane
    }

    #[inline(always)]
    fn send_in(&self, lane: &ThreadLane, r: &RecordRef<'_>, size: usize) -> Delivery {
        let mut deadline = None;
        loop {
            // SAFETY: a lane is in one thread's list only, and this is that
            // thread; `append` steals no lane.
            let mut owned = unsafe { lane.lane.enter() };
            let appended = self.append(lane, &mut owned, r, size);
            drop(owned);
            match appended {
                Ok(sent) => return sent,
                Err(Refused::Closed) => return Delivery::failed(ProducerError::Closed, REFUSED),
                // Waited for outside the lane: a thief (the sender thread,
                // whose sending is what frees space) waits for the owner
                // to leave it.
                Err(Refused::BufferFull) => {
                    if let Err(e) = self.shared.wait_for_space(size, &mut deadline) {
                        return Delivery::failed(e, REFUSED);
                    }
                }
            }
        }
    }

    /// Adds a record to the calling thread's open batch of its partition.
    /// Takes the state lock only to open a batch, hand a full one over,
    /// reserve buffer space, or meet a topic.
    /// `Err(BufferFull)`: the record does not fit the buffer yet, and
    /// nothing was done. Never blocks.
    #[inline(always)]
    fn append(&self, lane: &ThreadLane, b: &mut LaneBatches, r: &RecordRef<'_>, size: usize) -> Result<Delivery, Refused> {
        let sh = &*self.shared;
        // Read inside the lane: `close` sets it, then steals every lane, so
        // a record appended after this check is stolen and sent.
        if sh.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let t = match b.find(r.topic) {
            Some(t) => t,
            None => {
                let mut st = lock(&sh.state);
                let Some((index, partitions)) = st.topics.find(r.topic) else {
                    return Ok(self.send_unrouted(st, r, size)?);
                };
                b.topics.push(LaneTopic { name: r.topic.to_string(), index, open: (0..partitions).map(|_| None).collect() });
                b.last = b.topics.len() - 1;
                b.last
            }
        };
        let partitions = b.topics[t].open.len() as u32;
        let partition = match choose_partition(r.partition, r.key, partitions, &mut b.round_robin) {
            Ok(p) => p,
            Err(p) => return Ok(Delivery::failed(ProducerError::UnknownPartition { topic: r.topic.to_string(), partition: p }, 0)),
        };
        if b.credit < size {
            self.reserve(b, size)?;
        }
        b.credit -= size;
        let topic = &mut b.topics[t];
        let slot = &mut topic.open[partition as usize];
        let open = match slot {
            Some(o) => o,
            None => slot.insert(self.open_batch(lane)),
        };
        open.builder.push(r.timestamp_ms.unwrap_or_else(crate::time::ticking_now_ms), r.key, r.value, r.headers);
        open.budget += size;
        let (batch, index) = (open.refs.take(), open.builder.record_count() - 1);
        if open.builder.encoded_len() >= sh.config.batch_max_bytes {
            let full = slot.take().expect("appended to above");
            let queue = topic.index;
            sh.hand_over(lane, b, [(queue, partition, full)]);
        }
        Ok(Delivery { batch: Held(Some(batch)), index })
    }

    /// A new open batch, in a spare buffer if there is one.
    fn open_batch(&self, lane: &ThreadLane) -> Open {
        let sh = &*self.shared;
        let now = Instant::now();
        let mut st = lock(&sh.state);
        let builder = st.spare.pop().map_or_else(|| BatchBuilder::new(sh.config.batch_max_bytes.min(8 << 20) + 1024), BatchBuilder::reuse);
        if lane.oldest.load(Ordering::Relaxed) == NONE_OPEN {
            lane.oldest.store(nanos_since(sh.epoch, now), Ordering::Relaxed);
        }
        // The sender looks at every lane before it sleeps: it needs waking
        // only if it sleeps past this batch's linger.
        let wake = match st.sender {
            SenderState::Busy => false,
            SenderState::Sleeping(until) => until.is_none_or(|t| t > now + sh.config.linger),
        };
        drop(st);
        if wake {
            sh.work.notify_one();
        }
        let done = Batch::new();
        Open { builder, budget: 0, opened: now, done: Completion(done.clone()), refs: counted::Credits::new(done), forwards: Vec::new() }
    }

    /// Reserves buffer space for a record and a chunk more, if the record
    /// fits.
    fn reserve(&self, b: &mut LaneBatches, size: usize) -> Result<(), BufferFull> {
        let sh = &*self.shared;
        let mut st = lock(&sh.state);
        if sh.full(&st, size) {
            return Err(BufferFull);
        }
        let extra = credit_chunk(&sh.config).min(sh.config.buffer_max_bytes.saturating_sub(st.used + size));
        st.used += size + extra;
        b.credit += size + extra;
        Ok(())
    }

    /// A record of a topic not looked up yet: kept whole for the sender
    /// thread, so `send` never waits on the network.
    fn send_unrouted(&self, mut st: MutexGuard<'_, State>, r: &RecordRef<'_>, size: usize) -> Result<Delivery, BufferFull> {
        let sh = &*self.shared;
        if sh.full(&st, size) {
            return Err(BufferFull);
        }
        st.used += size;
        let done = Batch::new();
        let u = Unrouted {
            partition: r.partition,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r.headers.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect(),
            timestamp_ms: r.timestamp_ms.unwrap_or_else(crate::time::now_ms),
            size,
            done: Completion(done.clone()),
        };
        st.unrouted.entry(r.topic.to_string()).or_default().push(u);
        let wakes = st.wakes();
        drop(st);
        sh.wake(wakes);
        Ok(Delivery { batch: Held(Some(done)), index: 0 })
    }

    /// Sends everything queued and waits until it is acknowledged (or has
    /// failed: each delivery says which).
    pub fn flush(&self) -> Result<(), ProducerError> {
        let sh = &*self.shared;
        let lanes = lock(&sh.state).lanes.clone();
        for l in &lanes {
            sh.steal(l, true);
        }
        let mut waits = Vec::new();
        {
            let mut st = lock(&sh.state);
            if st.closed {
                return Err(ProducerError::Closed);
            }
            for (_, q) in st.topics.iter_mut() {
                for (p, q) in q.iter_mut().enumerate() {
                    q.seal(p as u32);
                    waits.extend(q.sealed.iter().map(|s| s.done.0.clone()));
                    waits.extend(q.in_flight.iter().flat_map(|r| r.1.iter().cloned()));
                }
            }
            waits.extend(st.unrouted.values().flatten().map(|u| u.done.0.clone()));
        }
        sh.work.notify_one();
        for b in waits {
            let _ = b.wait();
        }
        Ok(())
    }

    /// Flushes, then stops the background threads.
    pub fn close(&self) {
        let _ = self.flush();
        {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            self.shared.closed.store(true, Ordering::Release);
            for l in &st.lanes {
                l.retired.store(true, Ordering::Relaxed);
            }
        }
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.close();
    }
}

/// The partition a record goes to: the one it names (`Err` if the topic
/// has no such partition), by key hash, or round robin.
fn choose_partition(fixed: Option<u32>, key: Option<&[u8]>, partitions: u32, round_robin: &mut u32) -> Result<u32, u32> {
    match (fixed, key) {
        (Some(p), _) if p < partitions => Ok(p),
        (Some(p), _) => Err(p),
        (None, Some(k)) => Ok(crate::hash::partition_for_key(k, partitions)),
        (None, None) => {
            *round_robin = round_robin.wrapping_add(1);
            Ok(*round_robin % partitions)
        }
    }
}

/// The pause before attempt `n` (n >= 1) of a batch: 100 ms, doubling, at
/// most 500 ms.
fn backoff(n: u32) -> Duration {
    Duration::from_millis((50u64 << n.min(5)).min(500))
}

impl Shared {
    /// Whether `size` more bytes would overfill the buffer (a record is
    /// taken into an empty buffer whatever its size).
    fn full(&self, st: &State, size: usize) -> bool {
        st.used > 0 && st.used + size > self.config.buffer_max_bytes
    }

    /// Waits while `size` more bytes would overfill the buffer
    /// (backpressure), until `deadline` (`send_timeout` from the first
    /// wait of the record).
    fn wait_for_space(&self, size: usize, deadline: &mut Option<Instant>) -> Result<(), ProducerError> {
        let mut st = lock(&self.state);
        while self.full(&st, size) {
            let at = *deadline.get_or_insert_with(|| Instant::now() + self.config.send_timeout);
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProducerError::BufferFull(self.config.send_timeout));
            }
            st.space_waiters += 1;
            st = self.space.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
            st.space_waiters -= 1;
            if st.closed {
                return Err(ProducerError::Closed);
            }
        }
        Ok(())
    }

    /// A topic's partition count, through the bootstrap connection.
    fn partitions(&self, topic: &str) -> Result<u32, ProducerError> {
        let mut conn = lock(&self.lookup);
        let mut last = String::new();
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                thread::sleep(backoff(attempt));
            }
            if conn.is_none() {
                match Connection::connect_any_with(&self.config.bootstrap, &self.config.security) {
                    Ok(c) => *conn = Some(c),
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                }
            }
            match conn.as_mut().expect("connected above").partitions(topic) {
                Ok(Some(n)) if n > 0 => return Ok(n),
                Ok(_) => return Err(ProducerError::UnknownTopic(topic.to_string())),
                Err(e) => {
                    last = e.to_string();
                    *conn = None;
                }
            }
        }
        Err(ProducerError::Broker(format!("looking up '{topic}' failed {} times: {last}", self.config.retries + 1)))
    }

    /// Queues batches taken out of a lane (by its owner or a thief), in
    /// the order given, after what their partitions queued before.
    fn hand_over(&self, lane: &ThreadLane, b: &LaneBatches, batches: impl IntoIterator<Item = (usize, u32, Open)>) {
        let sh = self;
        let oldest = b.oldest().map_or(NONE_OPEN, |t| nanos_since(sh.epoch, t));
        let mut st = lock(&sh.state);
        for (queue, partition, open) in batches {
            st.topics.queues[queue][partition as usize].seal_open(partition, open);
        }
        lane.oldest.store(oldest, Ordering::Relaxed);
        let wakes = st.wakes();
        drop(st);
        sh.wake(wakes);
    }

    /// Takes a lane's open batches (all, or those that have lingered) and
    /// queues them; a lane left with none gives its unspent buffer
    /// reservation back. Never called with the state lock held (the lane's owner may
    /// be waiting for it inside the lane).
    fn steal(&self, lane: &ThreadLane, all: bool) {
        lane.lane.steal(|b| {
            let now = Instant::now();
            let mut taken = Vec::new();
            for t in &mut b.topics {
                for (p, slot) in t.open.iter_mut().enumerate() {
                    if slot.as_ref().is_some_and(|o| all || o.opened + self.config.linger <= now) {
                        taken.push((t.index, p as u32, slot.take().expect("checked")));
                    }
                }
            }
            // A lane left with no open batch (its thread went quiet) gives
            // its unspent reservation back, for other threads.
            if b.credit > 0 && (all || b.oldest().is_none()) {
                lock(&self.state).used -= std::mem::take(&mut b.credit);
            }
            self.hand_over(lane, b, taken);
        });
    }

    /// A batch is done: its deliveries complete, its buffer space frees,
    /// and its partition may send the next one.
    /// `r` is the first batch's base offset; the others follow it.
    fn complete(&self, f: InFlight, r: Result<i64, ProducerError>) {
        let mut base = r;
        for b in &f.batches {
            b.finish(base.clone());
            if let Ok(o) = &mut base {
                *o = if *o < 0 { -1 } else { *o + i64::from(b.records) };
            }
        }
        let wakes = {
            let mut st = lock(&self.state);
            if let Some(q) = st.topics.get_mut(&f.topic).and_then(|qs| qs.get_mut(f.partition as usize)) {
                q.in_flight.retain(|r| r.0 != f.request);
            }
            for b in f.batches {
                st.used -= b.budget;
                if st.spare.len() < SPARE_BUFFERS {
                    st.spare.push(b.batch.into_buf());
                }
            }
            st.wakes()
        };
        self.wake(wakes);
    }

    fn wake(&self, wakes: Wakes) {
        if wakes.space {
            self.space.notify_all();
        }
        if wakes.work {
            self.work.notify_one();
        }
    }

    /// An attempt failed in a way a later one may not: the batch goes back
    /// to the front of its partition's queue, after a pause, unless it has
    /// run out of attempts.
    fn retry(&self, f: InFlight, why: String) {
        let InFlight { topic, partition, request, batches } = f;
        let (mut again, mut spent) = (Vec::new(), Vec::new());
        for mut b in batches {
            b.failures += 1;
            if b.failures > self.config.retries {
                spent.push(b);
            } else {
                b.not_before = Some(Instant::now() + backoff(b.failures));
                b.relookup = true;
                again.push(b);
            }
        }
        if !spent.is_empty() {
            let e = ProducerError::Broker(format!("gave up after {} attempts: {why}", self.config.retries + 1));
            self.complete(InFlight { topic: topic.clone(), partition, request, batches: spent }, Err(e));
        }
        let wakes = {
            let mut st = lock(&self.state);
            if let Some(q) = st.topics.get_mut(&topic).and_then(|qs| qs.get_mut(partition as usize)) {
                q.in_flight.retain(|r| r.0 != request);
                // Back in seal order, among batches of requests after it
                // that failed first.
                for b in again {
                    let at = q.sealed.iter().position(|s| s.seq > b.seq).unwrap_or(q.sealed.len());
                    q.sealed.insert(at, b);
                }
            }
            st.wakes()
        };
        self.wake(wakes);
    }
}

/// A batch on its way: where it goes, and the batch.
struct InFlight {
    topic: String,
    partition: u32,
    /// Its id among its partition's requests.
    request: u64,
    /// Consecutive batches of the partition, sent in one request.
    batches: Vec<Sealed>,
}

/// The background thread: seals lingering batches, routes sealed ones to
/// their leaders and writes them, one in flight per partition.
struct Sender {
    shared: Arc<Shared>,
    /// A connection to any bootstrap broker, for leader lookups.
    bootstrap: Option<Connection>,
    /// The leader's address of each partition, from the metadata.
    leaders: HashMap<(String, u32), String>,
    /// One connection per broker address.
    links: HashMap<String, Link>,
}

impl Sender {
    fn run(mut self) {
        while let Some((lanes, topics, batches)) = self.next_batches() {
            for (l, all) in lanes {
                self.shared.steal(&l, all);
            }
            for t in topics {
                self.route(&t);
            }
            for f in batches {
                self.dispatch(f);
            }
        }
        for (_, l) in self.links.drain() {
            l.close();
        }
    }

    /// Looks up a topic whose first records wait unrouted, and puts them
    /// into their partitions' batches, in send order (or fails them).
    fn route(&mut self, topic: &str) {
        let sh = &*self.shared;
        let n = sh.partitions(topic);
        let mut st = lock(&sh.state);
        let Some(waiting) = st.unrouted.remove(topic) else { return };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                for u in waiting {
                    st.used -= u.size;
                    u.done.finish(Err(e.clone()));
                }
                let wakes = st.wakes();
                drop(st);
                sh.wake(wakes);
                return;
            }
        };
        let State { topics, spare, round_robin, used, .. } = &mut *st;
        let queues = topics.get_or_insert(topic, n);
        for u in waiting {
            let headers: Vec<Header<'_>> = u.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
            match choose_partition(u.partition, u.key.as_deref(), queues.len() as u32, round_robin) {
                Ok(p) => {
                    let r = RecordRef {
                        topic,
                        partition: Some(p),
                        key: u.key.as_deref(),
                        value: u.value.as_deref(),
                        headers: &headers,
                        timestamp_ms: Some(u.timestamp_ms),
                    };
                    queues[p as usize].push(p, &r, u.size, spare, &sh.config, u.done);
                }
                Err(p) => {
                    *used -= u.size;
                    u.done.finish(Err(ProducerError::UnknownPartition { topic: topic.to_string(), partition: p }));
                }
            }
        }
        // Sealed at once: a thread's later records of the topic go through
        // its lane, and must queue after these.
        for (p, q) in queues.iter_mut().enumerate() {
            q.seal(p as u32);
        }
        let wakes = st.wakes();
        drop(st);
        sh.wake(wakes);
    }

    /// Waits for work: topics to look up, sealed batches whose partition
    /// has nothing in flight, and open ones that have lingered (all once
    /// closed). `None` once the producer is closed and everything is done.
    #[allow(clippy::type_complexity)]
    fn next_batches(&self) -> Option<(Vec<(Arc<ThreadLane>, bool)>, Vec<String>, Vec<InFlight>)> {
        let sh = &*self.shared;
        let max_in_flight = sh.config.in_flight_limit();
        let mut st = lock(&sh.state);
        loop {
            let now = Instant::now();
            let closed = st.closed;
            let mut next_look: Option<Instant> = None;
            let mut out = Vec::new();
            let mut busy = false;
            // Lanes whose oldest batch has lingered (every lane, once
            // closed), and those of threads that have exited, go first.
            let mut steal = Vec::new();
            st.lanes.retain(|l| {
                if Arc::strong_count(l) == 1 {
                    steal.push((l.clone(), true));
                    return false;
                }
                let oldest = l.oldest.load(Ordering::Relaxed);
                if oldest != NONE_OPEN {
                    let due = sh.epoch + Duration::from_nanos(oldest) + sh.config.linger;
                    if closed || due <= now {
                        steal.push((l.clone(), closed));
                    } else {
                        next_look = Some(next_look.map_or(due, |t| t.min(due)));
                    }
                }
                true
            });
            if !steal.is_empty() {
                return Some((steal, Vec::new(), Vec::new()));
            }
            for (topic, queues) in st.topics.iter_mut() {
                for (p, q) in queues.iter_mut().enumerate() {
                    if let Some(o) = &q.open {
                        let due = o.opened + sh.config.linger;
                        if closed || due <= now {
                            q.seal(p as u32);
                        } else {
                            next_look = Some(next_look.map_or(due, |t| t.min(due)));
                        }
                    }
                    if q.in_flight.len() < max_in_flight {
                        match q.sealed.front().and_then(|s| s.not_before) {
                            Some(t) if t > now => next_look = Some(next_look.map_or(t, |n| n.min(t))),
                            _ => {
                                // Everything sealed meanwhile goes in one
                                // request, up to its size limit.
                                let mut batches = Vec::new();
                                let mut bytes = 0;
                                while let Some(s) = q.sealed.front() {
                                    let len = s.batch.encoded_len();
                                    // A batch sent before goes alone: it may
                                    // be stored already and answered with its
                                    // old offset, which the next batch's
                                    // offsets do not follow.
                                    let retried = s.failures > 0 || batches.first().is_some_and(|b: &Sealed| b.failures > 0);
                                    if !batches.is_empty() && (retried || bytes + len > sh.config.request_max_bytes || s.not_before.is_some_and(|t| t > now)) {
                                        break;
                                    }
                                    bytes += len;
                                    batches.push(q.sealed.pop_front().expect("front exists"));
                                }
                                if !batches.is_empty() {
                                    let request = q.next_request;
                                    q.next_request += 1;
                                    q.in_flight.push((request, batches.iter().map(|s| s.done.0.clone()).collect()));
                                    out.push(InFlight { topic: topic.clone(), partition: p as u32, request, batches });
                                }
                            }
                        }
                    }
                    busy |= q.busy();
                }
            }
            let unrouted: Vec<String> = st.unrouted.keys().cloned().collect();
            if !out.is_empty() || !unrouted.is_empty() {
                return Some((Vec::new(), unrouted, out));
            }
            if closed && !busy {
                return None;
            }
            st.sender = SenderState::Sleeping(next_look);
            st = match next_look {
                Some(t) => sh.work.wait_timeout(st, t.saturating_duration_since(now)).unwrap_or_else(|e| e.into_inner()).0,
                None => sh.work.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
            st.sender = SenderState::Busy;
        }
    }

    fn acks(&self) -> Acks {
        self.shared.config.acks
    }

    /// Writes one batch to its partition's leader; a failure sends it back
    /// for a retry.
    fn dispatch(&mut self, mut f: InFlight) {
        let key = (f.topic.clone(), f.partition);
        let mut relookup = false;
        for b in &mut f.batches {
            relookup |= std::mem::take(&mut b.relookup);
        }
        if relookup {
            self.leaders.remove(&key);
        }
        let addr = match self.leader(&key) {
            Ok(a) => a,
            Err(e) => return self.shared.retry(f, e.to_string()),
        };
        if !self.links.contains_key(&addr) {
            match Link::open(&addr, &self.shared) {
                Ok(l) => {
                    self.links.insert(addr.clone(), l);
                }
                Err(e) => {
                    self.leaders.remove(&key);
                    return self.shared.retry(f, e.to_string());
                }
            }
        }
        let acks = self.acks();
        let link = self.links.get_mut(&addr).expect("inserted above");
        if let Err((f, why)) = link.send(f, acks, &self.shared) {
            // The connection is gone: so is what was routed through it.
            self.links.remove(&addr);
            self.leaders.retain(|_, a| *a != addr);
            self.shared.retry(f, why);
        }
    }

    fn with_bootstrap<T>(&mut self, f: impl Fn(&mut Connection) -> Result<T, ClientError>) -> Result<T, ClientError> {
        if self.bootstrap.is_none() {
            self.bootstrap = Some(Connection::connect_any_with(&self.shared.config.bootstrap, &self.shared.config.security)?);
        }
        let r = f(self.bootstrap.as_mut().expect("connected above"));
        if r.is_err() {
            self.bootstrap = None; // reconnect on the next attempt
        }
        r
    }

    /// The address of the broker leading a partition, from (cached) metadata.
    fn leader(&mut self, key: &(String, u32)) -> Result<String, ClientError> {
        if let Some(a) = self.leaders.get(key) {
            return Ok(a.clone());
        }
        let (brokers, topics) = self.with_bootstrap(|c| c.metadata(Some(&[key.0.as_str()])))?;
        for t in topics {
            for p in t.partitions {
                if let Some(b) = brokers.iter().find(|b| b.node_id == p.leader && !b.fenced) {
                    self.leaders.insert((t.name.clone(), p.partition), format!("{}:{}", b.host, b.port));
                }
            }
        }
        self.leaders.get(key).cloned().ok_or(ClientError::Broker { code: ErrorCode::NotLeader, message: format!("no leader known for {}/{}", key.0, key.1) })
    }
}

/// How long a reader waits for an answer it is owed before it gives the
/// connection up (the broker answers a produce within its 30 s timeout).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One connection to a broker: the sender thread writes, a reader thread
/// takes the answers (in any order, by correlation id).
struct Link {
    conn: Connection,
    shared: Arc<LinkShared>,
    reader: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
struct LinkShared {
    state: Mutex<LinkState>,
    changed: Condvar,
}

#[derive(Default)]
struct LinkState {
    /// Batches written and not answered yet, by correlation id.
    owed: HashMap<u32, InFlight>,
    /// The connection broke; whoever found it out retries what was owed.
    dead: bool,
    closing: bool,
    /// The reader waits on `changed` (only then does a write notify it).
    reader_waits: bool,
}

impl Link {
    fn open(addr: &str, shared: &Arc<Shared>) -> Result<Link, ClientError> {
        let conn = Connection::connect_with(addr, &shared.config.security)?;
        let rconn = conn.try_clone()?;
        rconn.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let ls = Arc::new(LinkShared::default());
        let (ls2, sh) = (ls.clone(), shared.clone());
        let reader = thread::Builder::new().name("shardlog-producer-reader".into()).spawn(move || read_answers(rconn, &ls2, &sh)).map_err(ClientError::Io)?;
        Ok(Link { conn, shared: ls, reader: Some(reader) })
    }

    /// Writes one batch; with acks none it is done once written.
    fn send(&mut self, mut f: InFlight, acks: Acks, shared: &Shared) -> Result<(), (InFlight, String)> {
        if lock(&self.shared.state).dead {
            return Err((f, "the connection to the leader broke".into()));
        }
        let batches: Vec<&[u8]> = f.batches.iter_mut().map(|b| b.bytes(shared.producer)).collect();
        let corr = match self.conn.send_produce_batches(&f.topic, f.partition, &batches, acks) {
            Ok(c) => c,
            Err(e) => {
                self.kill(shared);
                return Err((f, e.to_string()));
            }
        };
        if acks == Acks::None {
            shared.complete(f, Ok(-1));
            return Ok(());
        }
        let mut st = lock(&self.shared.state);
        if st.dead {
            return Err((f, "the connection to the leader broke".into()));
        }
        st.owed.insert(corr, f);
        let wake = st.reader_waits;
        drop(st);
        if wake {
            self.shared.changed.notify_all();
        }
        Ok(())
    }

    /// Marks the connection broken and retries everything owed on it.
    fn kill(&self, shared: &Shared) {
        let owed: Vec<InFlight> = {
            let mut st = lock(&self.shared.state);
            st.dead = true;
            st.owed.drain().map(|(_, f)| f).collect()
        };
        self.conn.shutdown();
        self.shared.changed.notify_all();
        for f in owed {
            shared.retry(f, "the connection to the leader broke".into());
        }
    }

    /// Lets the reader end once nothing is owed, and waits for it.
    fn close(mut self) {
        lock(&self.shared.state).closing = true;
        self.shared.changed.notify_all();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// A produce answer: the base offset, or whether a retry may succeed.
enum Answer {
    Stored(i64),
    Retry(String),
    Refused(String),
}

fn produce_answer(reply: &super::raw::Reply) -> Answer {
    let (code, msg, base) = match reply.body::<produce::Response>() {
        Err(ClientError::Broker { code, message }) => (code, message, -1),
        Err(e) => (ErrorCode::UnknownServerError, e.to_string(), -1),
        Ok(r) => match r.partitions().next() {
            Some(p) => (p.error, p.error_message.clone().unwrap_or_default(), p.base_offset),
            None => (ErrorCode::UnknownServerError, "no partition in the response".into(), -1),
        },
    };
    match code {
        ErrorCode::None => Answer::Stored(base),
        c if c.is_retriable() => Answer::Retry(format!("{code:?}: {msg}")),
        // A batch before this one is being sent again (its answer was
        // lost); this one follows it once it is stored. A gap that does not
        // close (a batch acknowledged with acks=1 and lost with its leader)
        // runs out of retries.
        ErrorCode::OutOfOrderSequence => Answer::Retry(format!("{code:?}: {msg}")),
        _ => Answer::Refused(format!("{code:?}: {msg}")),
    }
}

/// The reader thread of one connection: matches each answer to its batch
/// and completes or retries it; on a broken connection, retries all owed.
fn read_answers(mut conn: Connection, link: &LinkShared, shared: &Shared) {
    loop {
        {
            let mut st = lock(&link.state);
            while st.owed.is_empty() && !st.closing && !st.dead {
                st.reader_waits = true;
                st = link.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                st.reader_waits = false;
            }
            if st.owed.is_empty() {
                return;
            }
        }
        let reply = conn.recv().and_then(|r| Ok((r.correlation_id()?, r)));
        let (corr, reply) = match reply {
            Ok(r) => r,
            Err(e) => {
                let owed: Vec<InFlight> = {
                    let mut st = lock(&link.state);
                    st.dead = true;
                    st.owed.drain().map(|(_, f)| f).collect()
                };
                for f in owed {
                    shared.retry(f, e.to_string());
                }
                return;
            }
        };
        // The writer records a batch just after writing it, so its answer
        // can arrive first; wait for the record (briefly: an answer to
        // nothing is a broken connection).
        let f = {
            let mut st = lock(&link.state);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(f) = st.owed.remove(&corr) {
                    break Some(f);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if st.dead || left.is_zero() {
                    st.dead = true;
                    break None;
                }
                st.reader_waits = true;
                st = link.changed.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
                st.reader_waits = false;
            }
        };
        let Some(f) = f else {
            let owed: Vec<InFlight> = lock(&link.state).owed.drain().map(|(_, f)| f).collect();
            for f in owed {
                shared.retry(f, format!("an answer to request {corr}, which is not owed"));
            }
            return;
        };
        match produce_answer(&reply) {
            Answer::Stored(base) => shared.complete(f, Ok(base)),
            Answer::Retry(why) => shared.retry(f, why),
            Answer::Refused(why) => shared.complete(f, Err(ProducerError::Broker(why))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_same_only_byte_for_byte() {
        let names =
            ["", "a", "ab", "abc", "abcd", "abcde", "abcdefg", "abcdefgh", "abcdefghi", "a-topic-of-seventeen", "x".repeat(40).as_str()].map(str::to_string);
        for a in &names {
            for b in &names {
                assert_eq!(same_name(a, b), a == b, "{a:?} {b:?}");
            }
            // One byte changed, at every place.
            for i in 0..a.len() {
                let mut c = a.clone().into_bytes();
                c[i] ^= 1;
                let c = String::from_utf8(c).expect("ascii");
                assert!(!same_name(a, &c), "{a:?} {c:?}");
            }
        }
    }

    #[test]
    fn a_delivery_is_two_words() {
        // An application keeps one per record in flight.
        assert_eq!(std::mem::size_of::<Delivery>(), 2 * std::mem::size_of::<usize>());
    }
}
