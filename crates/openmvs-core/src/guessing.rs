//! Serial guessing and alert storms: whether a client (or a premises) is answered as usual,
//! slowed or refused, from its recent unknown-serial and mismatch answers.
//!
//! Someone who types random serials of a real product into a terminal gets an alert for each
//! (A3, or A2, A52, A68 when the batch or expiry is made up too), each one sent to the OBP: 313
//! guesses were 313 alerts and 313 callbacks in seconds. Honest use looks nothing like that:
//! genuine alerts are a few per thousand transactions (0.05-0.2 %), so one pharmacy sees one every
//! few days. The rule here counts, over a sliding window, the requests of a key (a client, or a
//! location) and how many were answered with an unknown serial or a mismatch ([`is_counted`]):
//!
//! - **crossing**: at least [`GuessingPolicy::min_failures`] failures in the window that are at
//!   least [`GuessingPolicy::min_share_percent`] of its requests, or
//!   [`GuessingPolicy::max_failures`] whatever the share (mixing in verifies of a genuine pack does
//!   not buy unlimited guesses). The crossing starts an *episode*, with one alert to raise.
//! - **slowed**: during the episode one request every [`GuessingPolicy::slow_interval`] is
//!   answered; the others are refused with the time to wait ([`Verdict::Slow`]).
//! - **refused**: after [`GuessingPolicy::refuse_after`] more failures in the episode, every
//!   request is refused for [`GuessingPolicy::refusal`] ([`Verdict::Refuse`]).
//! - the episode ends once no refusal runs and the window is back under the threshold.
//!
//! Pure data and functions: the caller keeps a [`Tally`] per key and passes the time in. The
//! window is counted in twenty buckets, so it is its length give or take a twentieth.

use std::collections::VecDeque;
use std::time::Duration;

use crate::return_code::{AlertCode, ReturnCode};
use crate::time::Timestamp;

/// The buckets a window is counted in.
const BUCKETS: i64 = 20;

/// The thresholds of the rule; the defaults and the reasons for them are in the configuration
/// documentation (`crates/openmvs/src/config.rs`, `[national.guessing]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuessingPolicy {
    /// The sliding window the requests and failures are counted over.
    pub window: Duration,
    /// Failures in the window before anything happens.
    pub min_failures: u32,
    /// ... and the share of the key's requests in the window they must make up, in percent.
    pub min_share_percent: u8,
    /// Failures in the window that start an episode whatever the share.
    pub max_failures: u32,
    /// While slowed: one request is answered per this interval.
    pub slow_interval: Duration,
    /// Failures after the crossing at which the key is refused.
    pub refuse_after: u32,
    /// How long a refusal lasts.
    pub refusal: Duration,
}

impl Default for GuessingPolicy {
    /// 20 failures in 10 minutes that are at least 20 % of the requests, or 200 whatever the
    /// share; then one request per 10 s; refused for an hour after 20 more.
    fn default() -> GuessingPolicy {
        GuessingPolicy {
            window: Duration::from_secs(600),
            min_failures: 20,
            min_share_percent: 20,
            max_failures: 200,
            slow_interval: Duration::from_secs(10),
            refuse_after: 20,
            refusal: Duration::from_secs(3600),
        }
    }
}

impl GuessingPolicy {
    /// A policy that never contains anyone: for measuring the alert path itself (a benchmark that
    /// verifies unknown serials on purpose), not for a market.
    pub fn never() -> GuessingPolicy {
        GuessingPolicy { min_failures: u32::MAX, max_failures: u32::MAX, ..GuessingPolicy::default() }
    }

    /// Checks the thresholds; the error names the setting and the rule.
    pub fn check(&self) -> Result<(), String> {
        let secs = self.window.as_secs();
        if !(60..=86_400).contains(&secs) {
            return Err(format!("window_seconds: {secs} must be 60-86400"));
        }
        if self.min_failures == 0 {
            return Err("min_failures: must be at least 1".into());
        }
        if self.min_share_percent > 100 {
            return Err(format!("min_share_percent: {} must be 0-100", self.min_share_percent));
        }
        if self.max_failures < self.min_failures {
            return Err(format!(
                "max_failures: {} must be at least min_failures ({})",
                self.max_failures, self.min_failures
            ));
        }
        if self.slow_interval.is_zero() || self.slow_interval > self.window {
            return Err(format!("slow_interval_seconds: must be 1 to the window ({secs})"));
        }
        if self.refuse_after == 0 {
            return Err("refuse_after: must be at least 1".into());
        }
        if self.refusal.is_zero() || self.refusal.as_secs() > 7 * 86_400 {
            return Err("refuse_seconds: must be 1-604800".into());
        }
        Ok(())
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX / 2)
    }

    fn bucket_ms(&self) -> i64 {
        (self.window_ms() / BUCKETS).max(1)
    }

    /// Whether a window's counts cross the threshold.
    pub fn crossed(&self, w: &Window) -> bool {
        let share = u64::from(w.failures) * 100 >= u64::from(self.min_share_percent) * u64::from(w.requests);
        w.failures >= self.min_failures && (share || w.failures >= self.max_failures)
    }
}

/// Whether an answer counts as a failure: an unknown serial or a mismatch, the verification
/// failures that raise A2, A3, A52 or A68 (fmd-rules §4.2). A24 (a state change the pack's state
/// does not allow) is about a real pack and is not counted.
pub fn is_counted(code: ReturnCode) -> bool {
    matches!(code.alert(), Some(AlertCode::A2 | AlertCode::A3 | AlertCode::A52 | AlertCode::A68))
}

/// What a key's requests add up to over the window ending at `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The start of the oldest bucket counted (`to` when there is none).
    pub from: Timestamp,
    /// The end.
    pub to: Timestamp,
    /// Requests answered.
    pub requests: u32,
    /// Of them, unknown serials and mismatches.
    pub failures: u32,
}

/// Whether a request goes ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answered as usual.
    Admit,
    /// Slowed: refused now, with the time until the next request is answered.
    Slow {
        /// The wait.
        retry_after: Duration,
    },
    /// Refused until the refusal ends.
    Refuse {
        /// The wait.
        retry_after: Duration,
    },
}

impl Verdict {
    /// The return code a request is refused with: `NMVS_FI_SE_CLI_01` slowed (a rate),
    /// `NMVS_FI_SE_CLI_02` refused; `None` admitted.
    pub fn code(self) -> Option<ReturnCode> {
        match self {
            Verdict::Admit => None,
            Verdict::Slow { .. } => Some(ReturnCode::RateLimited),
            Verdict::Refuse { .. } => Some(ReturnCode::ClientSuspended),
        }
    }

    /// The stricter of two verdicts (a refusal over slowing over admission; the longer wait of
    /// two of a kind), for a request counted under two keys.
    pub fn stricter(self, other: Verdict) -> Verdict {
        let rank = |v: Verdict| match v {
            Verdict::Admit => (0, Duration::ZERO),
            Verdict::Slow { retry_after } => (1, retry_after),
            Verdict::Refuse { retry_after } => (2, retry_after),
        };
        if rank(other) > rank(self) { other } else { self }
    }
}

/// One bucket of a window: its start (milliseconds since the epoch) and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    start: i64,
    requests: u32,
    failures: u32,
}

/// A stretch during which a key is contained, from the request that crossed the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    /// The window that crossed the threshold: what the alert describes.
    pub crossed: Window,
    /// When a request was last answered (the crossing one, at first).
    admitted_at: Timestamp,
    /// Failures answered since the crossing.
    failures_since: u32,
    /// The end of the refusal, once one started.
    refused_until: Option<Timestamp>,
    /// Whether the episode's alert was raised.
    alerted: bool,
}

/// The counts of one key and its episode, if contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Oldest first.
    buckets: VecDeque<Bucket>,
    episode: Option<Episode>,
}

/// Whether a request of the key of `tally` goes ahead at `now`. Pure: [`Tally::admit`] books an
/// admission.
pub fn judge(policy: &GuessingPolicy, tally: &Tally, now: Timestamp) -> Verdict {
    let Some(e) = &tally.episode else { return Verdict::Admit };
    if let Some(until) = e.refused_until
        && now < until
    {
        return Verdict::Refuse { retry_after: until.since(now) };
    }
    if !policy.crossed(&tally.window(policy, now)) {
        // The episode is over: the window came back under the threshold.
        return Verdict::Admit;
    }
    let next = e.admitted_at.plus(policy.slow_interval);
    if now < next { Verdict::Slow { retry_after: next.since(now) } } else { Verdict::Admit }
}

impl Tally {
    /// The counts over the window ending at `now`.
    pub fn window(&self, policy: &GuessingPolicy, now: Timestamp) -> Window {
        let cutoff = now.unix_millis().saturating_sub(policy.window_ms());
        let bucket = policy.bucket_ms();
        let mut w = Window { from: now, to: now, requests: 0, failures: 0 };
        for b in self.buckets.iter().filter(|b| b.start + bucket > cutoff) {
            w.from = w.from.min(Timestamp::from_unix_millis(b.start));
            w.requests = w.requests.saturating_add(b.requests);
            w.failures = w.failures.saturating_add(b.failures);
        }
        w
    }

    /// The current episode, if the key is contained.
    pub fn episode(&self) -> Option<&Episode> {
        self.episode.as_ref()
    }

    /// Decides as [`judge`] does, and books the request when it is answered while slowed, so
    /// that the next one waits a whole interval.
    pub fn admit(&mut self, policy: &GuessingPolicy, now: Timestamp) -> Verdict {
        self.settle(policy, now);
        let verdict = judge(policy, self, now);
        if verdict == Verdict::Admit
            && let Some(e) = &mut self.episode
        {
            e.admitted_at = e.admitted_at.max(now);
        }
        verdict
    }

    /// Counts a request answered at `now`, `failed` when it was an unknown serial or a mismatch.
    /// The request that crosses the threshold starts an episode; in an episode, the failure that
    /// makes [`GuessingPolicy::refuse_after`] starts a refusal.
    pub fn record(&mut self, policy: &GuessingPolicy, now: Timestamp, failed: bool) {
        self.settle(policy, now);
        let at = now.unix_millis();
        let start = at - at.rem_euclid(policy.bucket_ms());
        match self.buckets.back_mut() {
            // A clock that went back counts in the newest bucket.
            Some(b) if b.start >= start => {
                b.requests = b.requests.saturating_add(1);
                b.failures = b.failures.saturating_add(u32::from(failed));
            }
            _ => self.buckets.push_back(Bucket { start, requests: 1, failures: u32::from(failed) }),
        }
        let w = self.window(policy, now);
        if self.episode.is_none() {
            if policy.crossed(&w) {
                self.episode = Some(Episode {
                    crossed: w,
                    admitted_at: now,
                    failures_since: 0,
                    refused_until: None,
                    alerted: false,
                });
            }
        } else if let Some(e) = &mut self.episode
            && failed
        {
            e.failures_since = e.failures_since.saturating_add(1);
            let refused = e.refused_until.is_some_and(|until| now < until);
            if e.failures_since >= policy.refuse_after && !refused {
                e.refused_until = Some(now.plus(policy.refusal));
            }
        }
    }

    /// The window of the episode whose alert is still to be raised.
    pub fn alert_due(&self) -> Option<Window> {
        self.episode.filter(|e| !e.alerted).map(|e| e.crossed)
    }

    /// The alert of the episode that crossed in `crossed` was raised (a later episode's is not).
    pub fn alerted(&mut self, crossed: &Window) {
        if let Some(e) = &mut self.episode
            && e.crossed == *crossed
        {
            e.alerted = true;
        }
    }

    /// Whether the tally holds nothing the rule still needs at `now`: no episode and nothing in
    /// the window. Such a tally can be forgotten.
    pub fn is_idle(&self, policy: &GuessingPolicy, now: Timestamp) -> bool {
        let mut t = self.clone();
        t.settle(policy, now);
        t.episode.is_none() && t.buckets.is_empty()
    }

    /// Drops the buckets that left the window and ends an episode that is over.
    fn settle(&mut self, policy: &GuessingPolicy, now: Timestamp) {
        let cutoff = now.unix_millis().saturating_sub(policy.window_ms());
        let bucket = policy.bucket_ms();
        while self.buckets.front().is_some_and(|b| b.start + bucket <= cutoff) {
            self.buckets.pop_front();
        }
        if let Some(e) = &self.episode {
            let refused = e.refused_until.is_some_and(|until| now < until);
            if !refused && !policy.crossed(&self.window(policy, now)) {
                self.episode = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> GuessingPolicy {
        GuessingPolicy {
            window: Duration::from_secs(600),
            min_failures: 5,
            min_share_percent: 50,
            max_failures: 20,
            slow_interval: Duration::from_secs(10),
            refuse_after: 3,
            refusal: Duration::from_secs(3600),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + secs * 1000)
    }

    /// Records `n` requests at `t`, `failed` or not.
    fn record(t: &mut Tally, p: &GuessingPolicy, now: Timestamp, n: u32, failed: bool) {
        for _ in 0..n {
            assert_eq!(t.admit(p, now), Verdict::Admit, "admitted before recording");
            t.record(p, now, failed);
        }
    }

    #[test]
    fn the_counted_answers_are_the_unknown_serials_and_mismatches() {
        let counted: Vec<&str> =
            ReturnCode::ALL.iter().filter(|c| is_counted(**c)).map(|c| c.as_str()).collect();
        assert_eq!(counted, ["NMVS_NC_PC_02", "NMVS_FE_LOT_03", "NMVS_FE_LOT_13", "NMVS_FE_LOT_12"]);
    }

    #[test]
    fn below_the_threshold_every_request_is_admitted_and_nothing_is_due() {
        let p = policy();
        let mut t = Tally::default();
        record(&mut t, &p, at(0), 4, true);
        assert_eq!(judge(&p, &t, at(1)), Verdict::Admit);
        assert_eq!(t.alert_due(), None);
        assert!(t.episode().is_none());
    }

    #[test]
    fn the_crossing_request_starts_one_episode_with_one_alert_then_requests_are_slowed() {
        let p = policy();
        let mut t = Tally::default();
        record(&mut t, &p, at(0), 4, true);
        record(&mut t, &p, at(5), 1, true);
        let due = t.alert_due().expect("the crossing makes an alert due");
        assert_eq!((due.failures, due.requests, due.to), (5, 5, at(5)));
        assert!(due.from <= at(0));
        assert_eq!(t.admit(&p, at(5)), Verdict::Slow { retry_after: Duration::from_secs(10) });
        assert_eq!(t.admit(&p, at(12)), Verdict::Slow { retry_after: Duration::from_secs(3) });
        t.alerted(&due);
        assert_eq!(t.alert_due(), None, "one alert per episode");
        // One request per interval is answered; it books the next interval.
        assert_eq!(t.admit(&p, at(15)), Verdict::Admit);
        t.record(&p, at(15), false);
        assert_eq!(t.admit(&p, at(16)), Verdict::Slow { retry_after: Duration::from_secs(9) });
        assert_eq!(t.alert_due(), None, "the same episode");
    }

    #[test]
    fn failures_while_slowed_lead_to_a_refusal_that_ends_by_itself() {
        let p = policy();
        let mut t = Tally::default();
        record(&mut t, &p, at(0), 5, true);
        for i in 1..=3 {
            let now = at(i * 10);
            assert_eq!(t.admit(&p, now), Verdict::Admit, "one per interval");
            t.record(&p, now, true);
        }
        assert_eq!(t.admit(&p, at(31)), Verdict::Refuse { retry_after: Duration::from_secs(3599) });
        assert_eq!(t.admit(&p, at(40)), Verdict::Refuse { retry_after: Duration::from_secs(3590) });
        // After the refusal the window is long empty: a fresh start, nothing remembered.
        assert_eq!(t.admit(&p, at(30 + 3600)), Verdict::Admit);
        assert!(t.episode().is_none());
        assert!(t.is_idle(&p, at(30 + 3600)));
    }

    #[test]
    fn a_high_share_of_successes_keeps_a_busy_client_below_the_threshold_up_to_max_failures() {
        let p = policy();
        let mut t = Tally::default();
        // 10 failures among 30 requests: a third, under 50 %.
        record(&mut t, &p, at(0), 20, false);
        record(&mut t, &p, at(1), 10, true);
        assert!(t.episode().is_none());
        // Diluting with successes does not buy more than max_failures.
        record(&mut t, &p, at(2), 100, false);
        record(&mut t, &p, at(3), 9, true);
        assert!(t.episode().is_none(), "19 failures of 139");
        t.record(&p, at(3), true);
        assert!(t.alert_due().is_some(), "20 failures whatever the share");
    }

    #[test]
    fn failures_that_leave_the_window_are_forgotten_and_a_later_crossing_is_a_new_episode() {
        let p = policy();
        let mut t = Tally::default();
        record(&mut t, &p, at(0), 4, true);
        record(&mut t, &p, at(700), 1, true);
        assert!(t.episode().is_none(), "the first four left the window");
        record(&mut t, &p, at(701), 4, true);
        let first = t.alert_due().expect("crossed");
        t.alerted(&first);
        // Successes (of requests admitted meanwhile) bring the share under 50 %: the episode
        // ends and the client is answered as usual again.
        for _ in 0..6 {
            t.record(&p, at(702), false);
        }
        assert_eq!(t.admit(&p, at(703)), Verdict::Admit);
        assert!(t.episode().is_none(), "5 failures of 11 requests");
        record(&mut t, &p, at(713), 1, true);
        let second = t.alert_due().expect("6 failures of 12: a new episode, with its own alert");
        assert_ne!(second, first);
        assert_eq!((second.failures, second.requests, second.to), (6, 12, at(713)));
    }

    #[test]
    fn marking_an_old_window_alerted_leaves_a_new_episode_due() {
        let p = policy();
        let mut t = Tally::default();
        record(&mut t, &p, at(0), 5, true);
        let stale = Window { from: at(-1), to: at(-1), requests: 1, failures: 1 };
        t.alerted(&stale);
        assert!(t.alert_due().is_some());
    }

    #[test]
    fn the_never_policy_contains_no_one() {
        let p = GuessingPolicy::never();
        assert_eq!(p.check(), Ok(()));
        let mut t = Tally::default();
        record(&mut t, &p, at(0), 10_000, true);
        assert_eq!((t.episode(), t.alert_due()), (None, None));
    }

    #[test]
    fn the_stricter_verdict_wins() {
        let slow = Verdict::Slow { retry_after: Duration::from_secs(3) };
        let slower = Verdict::Slow { retry_after: Duration::from_secs(8) };
        let refuse = Verdict::Refuse { retry_after: Duration::from_secs(1) };
        assert_eq!(Verdict::Admit.stricter(slow), slow);
        assert_eq!(slow.stricter(slower), slower);
        assert_eq!(slower.stricter(refuse), refuse);
        assert_eq!(refuse.stricter(Verdict::Admit), refuse);
        assert_eq!(slow.code(), Some(ReturnCode::RateLimited));
        assert_eq!(refuse.code(), Some(ReturnCode::ClientSuspended));
    }

    #[test]
    fn the_defaults_pass_their_own_checks_and_mistakes_name_the_setting() {
        assert_eq!(GuessingPolicy::default().check(), Ok(()));
        let bad = [
            (GuessingPolicy { window: Duration::from_secs(5), ..policy() }, "window_seconds"),
            (GuessingPolicy { min_failures: 0, ..policy() }, "min_failures"),
            (GuessingPolicy { min_share_percent: 101, ..policy() }, "min_share_percent"),
            (GuessingPolicy { max_failures: 4, ..policy() }, "max_failures"),
            (GuessingPolicy { slow_interval: Duration::ZERO, ..policy() }, "slow_interval_seconds"),
            (GuessingPolicy { refuse_after: 0, ..policy() }, "refuse_after"),
            (GuessingPolicy { refusal: Duration::ZERO, ..policy() }, "refuse_seconds"),
        ];
        for (p, name) in bad {
            assert!(p.check().unwrap_err().starts_with(name), "{name}");
        }
    }
}
