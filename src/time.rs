//! Wall-clock helpers.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Milliseconds since the Unix epoch from a clock a background thread
/// reads every millisecond: one atomic load instead of a clock read, for
/// hot paths that stamp every record (the SDK producer). Seastar's
/// `lowres_clock` is the same idea, at 10 ms.
///
/// The value is at most about a millisecond old while the thread keeps up
/// (longer only if the host starves it). The thread parks after 100 ms
/// without a caller; the next caller reads the wall clock itself and wakes
/// it, so an idle process pays nothing.
#[inline]
pub fn ticking_now_ms() -> i64 {
    static TICKER: OnceLock<Option<&'static Ticker>> = OnceLock::new();
    match TICKER.get_or_init(Ticker::start) {
        Some(t) if !t.parked.load(Ordering::Acquire) => {
            if !t.wanted.load(Ordering::Relaxed) {
                t.wanted.store(true, Ordering::Relaxed);
            }
            t.now.load(Ordering::Relaxed)
        }
        Some(t) => t.wake(),
        None => now_ms(),
    }
}

struct Ticker {
    now: AtomicI64,
    /// A caller read the clock since the thread last looked.
    wanted: AtomicBool,
    parked: AtomicBool,
    lock: Mutex<()>,
    unpark: Condvar,
}

/// Ticks without a caller before the thread parks.
const IDLE_TICKS: u32 = 100;

impl Ticker {
    /// Starts the thread; `None` (every caller reads the wall clock) if no
    /// thread can be started.
    fn start() -> Option<&'static Ticker> {
        let t: &'static Ticker = Box::leak(Box::new(Ticker {
            now: AtomicI64::new(now_ms()),
            wanted: AtomicBool::new(true),
            parked: AtomicBool::new(false),
            lock: Mutex::new(()),
            unpark: Condvar::new(),
        }));
        std::thread::Builder::new().name("shardlog-clock".into()).spawn(move || t.run()).ok()?;
        Some(t)
    }

    fn run(&self) {
        let mut idle = 0;
        loop {
            self.now.store(now_ms(), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
            idle = if self.wanted.swap(false, Ordering::Relaxed) { 0 } else { idle + 1 };
            if idle >= IDLE_TICKS {
                let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.parked.store(true, Ordering::Release);
                while self.parked.load(Ordering::Acquire) {
                    g = self.unpark.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                idle = 0;
            }
        }
    }

    /// A caller found the thread parked: reads the wall clock and wakes it.
    fn wake(&self) -> i64 {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        self.now.store(now, Ordering::Relaxed);
        self.wanted.store(true, Ordering::Relaxed);
        self.parked.store(false, Ordering::Release);
        self.unpark.notify_one();
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticking_clock_follows_the_wall_clock_and_wakes_after_parking() {
        for _ in 0..2 {
            let (before, t, after) = (now_ms(), ticking_now_ms(), now_ms());
            // At most a few ticks behind (the host may be busy), never ahead.
            assert!(t <= after && t + 1000 >= before, "{before} <= {t} <= {after}");
            // Long enough for the thread to park; the next read wakes it.
            std::thread::sleep(Duration::from_millis(u64::from(IDLE_TICKS) * 3));
        }
        let start = ticking_now_ms();
        std::thread::sleep(Duration::from_millis(50));
        assert!(ticking_now_ms() > start, "the clock moves while it is read");
    }
}
