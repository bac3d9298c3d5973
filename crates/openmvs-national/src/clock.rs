//! The two clocks: the system's, and a settable one for tests and `--fake-clock` demos.
//!
//! `SystemClock` is the one place the wall clock is read (ARCHITECTURE.md, "Time"): the binary
//! makes it and hands it on as an `Arc<dyn Clock>`; nothing else asks the system for the time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use openmvs_core::time::{Clock, Timestamp};

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The time now as the standard library's type, for certificates: TLS checks their validity
    /// against the real time, whatever clock the system runs on.
    pub fn system_time(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp::from_unix_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that stands still unless moved: the system time at creation plus every advance.
#[derive(Debug, Default)]
pub struct FakeClock {
    offset_millis: AtomicI64,
    start: AtomicI64,
}

impl FakeClock {
    /// A fake clock starting at `start`.
    pub fn at(start: Timestamp) -> FakeClock {
        FakeClock { offset_millis: AtomicI64::new(0), start: AtomicI64::new(start.unix_millis()) }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.offset_millis.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(
            self.start.load(Ordering::SeqCst) + self.offset_millis.load(Ordering::SeqCst),
        )
    }
}
