//! The client's clock and sleeps, behind [`Timer`], so that token renewal, retry backoff and
//! polling can be tested without waiting: [`TokioTimer`] in real use, [`ManualTimer`] in tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A future the client awaits while it waits.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where the client reads the monotonic time and how it waits. Every wait of the clients (a
/// retry's backoff or `Retry-After`, a poll's interval) and every time it compares (a token's
/// renewal, a poll's deadline) goes through this, and nothing else.
pub trait Timer: Send + Sync + 'static {
    /// The current monotonic time.
    fn now(&self) -> Instant;

    /// A future that completes once `duration` has passed.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The timer of real use: tokio's clock and sleeps. Under a paused tokio clock
/// (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`) it moves with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

impl Timer for TokioTimer {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A timer that stands still until moved: [`ManualTimer::advance`] moves it, and each sleep is
/// recorded and moves it by its duration at once, without waiting. For tests of the client and
/// of programs built on it that talk to real servers, where a paused tokio clock would also
/// move the HTTP timeouts while a request waits on real IO.
#[derive(Debug)]
pub struct ManualTimer {
    origin: Instant,
    state: Mutex<ManualState>,
}

#[derive(Debug, Default)]
struct ManualState {
    offset: Duration,
    sleeps: Vec<Duration>,
}

impl ManualTimer {
    /// A timer standing at an arbitrary instant.
    pub fn new() -> ManualTimer {
        ManualTimer { origin: Instant::now(), state: Mutex::new(ManualState::default()) }
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.lock().offset += by;
    }

    /// How far the time has moved since the timer was made (advances and sleeps).
    pub fn elapsed(&self) -> Duration {
        self.lock().offset
    }

    /// Every sleep asked for so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().sleeps.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        // A panic while holding the lock leaves plain numbers behind, still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for ManualTimer {
    fn default() -> ManualTimer {
        ManualTimer::new()
    }
}

impl Timer for ManualTimer {
    fn now(&self) -> Instant {
        self.origin + self.lock().offset
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let mut s = self.lock();
        s.sleeps.push(duration);
        s.offset += duration;
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_timer_records_each_sleep_and_moves_by_it() {
        let t = ManualTimer::new();
        let start = t.now();
        t.advance(Duration::from_secs(5));
        drop(t.sleep(Duration::from_secs(2)));
        assert_eq!(t.now() - start, Duration::from_secs(7));
        assert_eq!(t.sleeps(), vec![Duration::from_secs(2)]);
        assert_eq!(t.elapsed(), Duration::from_secs(7));
    }
}
