//! The retry policy of every outbox relay, the hub's and the national systems': a message whose
//! delivery failed is tried again after a wait that doubles from a second up to a minute, so a
//! receiver that is down is asked about once a minute, and one that comes back is served within
//! a minute, or at once when the sender's process starts (its relay resumes the outbox:
//! [`crate::relay::Resumed`]).

use std::time::Duration;

/// The longest wait between two delivery attempts of one message.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before attempt `attempts + 1`: 1 s doubling to [`MAX_BACKOFF`].
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(6)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_a_second_up_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
