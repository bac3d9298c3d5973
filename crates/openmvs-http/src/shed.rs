//! Load shedding: over capacity, a request is refused at once with 503 and `Retry-After`, instead
//! of joining a queue that makes every request late. Capacity is a bound on requests in flight: by
//! Little's law it bounds the time a request can wait (in flight / throughput), whatever the load.
//! Health, readiness, status and metrics are never shed, so operators still see the node.
//!
//! The bound alone does not keep refusals fast: a refusal costs little, but it waits for a worker
//! thread like any request, and when the admitted requests use every core the wait grows. So a
//! governor measures that wait (how late a timer task wakes, which is how long any ready task
//! waits for a worker) and lowers the bound while it is long and the bound is reached, raising it
//! again once it is short: the node then admits what its cores can serve and refuses the rest
//! promptly. A bound that no request reaches is not lowered, however busy the workers: the
//! clients then wait for their answers before they send more (as a pharmacy's till does), and
//! refusing some of them would only make them send again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openmvs_core::return_code::ReturnCode;
use openmvs_national::ApiError;
use openmvs_telemetry::Exposition;
// Tokio's clock, which is the monotonic clock unless a test pauses it and moves it by hand.
use tokio::time::Instant;

use crate::error::HttpError;

/// The default bound on requests in flight per node.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;

/// How often the governor's timer ticks.
const TICK: Duration = Duration::from_millis(2);
/// A decision is taken after this many ticks ...
const WINDOW_TICKS: usize = 25;
/// ... or this long, whichever comes first: a saturated runtime wakes its timers late, and the
/// bound must still come down within a fraction of a second.
const WINDOW_TIME: Duration = Duration::from_millis(50);
/// A window in which half the wake-ups were later than this lowers the bound: the workers are
/// saturated, every request waits ...
const LAG_HIGH: Duration = Duration::from_millis(2);
/// ... and one in which nine in ten were earlier than this raises it again.
const LAG_LOW: Duration = Duration::from_millis(2);
/// The governor never lowers the bound below this.
const MIN_LIMIT: usize = 8;

/// Requests in flight and the bound they are held to.
#[derive(Debug)]
pub struct LoadShed {
    in_flight: AtomicUsize,
    /// The configured bound.
    max: AtomicUsize,
    /// The bound in force: the configured one, or lower while the governor finds workers late.
    limit: AtomicUsize,
    shed: AtomicU64,
    /// Whether the governor task runs.
    governed: AtomicBool,
    /// Whether the governor may run; off, the bound in force is the configured one.
    governor_on: AtomicBool,
}

impl Default for LoadShed {
    fn default() -> LoadShed {
        LoadShed::new(DEFAULT_MAX_IN_FLIGHT)
    }
}

impl LoadShed {
    /// A bound of `max` requests in flight.
    pub fn new(max: usize) -> LoadShed {
        LoadShed {
            in_flight: AtomicUsize::new(0),
            max: AtomicUsize::new(max.max(1)),
            limit: AtomicUsize::new(max.max(1)),
            shed: AtomicU64::new(0),
            governed: AtomicBool::new(false),
            governor_on: AtomicBool::new(true),
        }
    }

    /// A fixed bound of `max` requests in flight, without the governor: admission is exact,
    /// whatever the machine's load (what a test that counts refusals or reads the bound needs).
    pub fn fixed(max: usize) -> LoadShed {
        let l = LoadShed::new(max);
        l.set_governor(false);
        l
    }

    /// Lets the governor run (the default) or stops it: off, the bound in force goes back to the
    /// configured one at once and stays there; a running governor task ends at its next window.
    pub fn set_governor(&self, on: bool) {
        self.governor_on.store(on, Ordering::Release);
        if !on {
            self.limit.store(self.max.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Whether the governor may lower the bound.
    pub fn governor(&self) -> bool {
        self.governor_on.load(Ordering::Acquire)
    }

    /// Changes the bound.
    pub fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::Relaxed);
        self.limit.store(max.max(1), Ordering::Relaxed);
    }

    /// The bound in force now.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Starts the governor on the current runtime, once (later calls do nothing). It runs while
    /// anything holds the `LoadShed`.
    pub fn govern(self: &Arc<Self>) {
        // Every request asks: a read, not a write, once the governor runs, so that the flag's
        // cache line stays shared between the workers.
        if self.governed.load(Ordering::Acquire)
            || !self.governor()
            || self.governed.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.governed.store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(self);
        rt.spawn(async move {
            let mut lags = Vec::with_capacity(WINDOW_TICKS);
            let mut window = Instant::now();
            let mut shed_before = weak.upgrade().map_or(0, |l| l.shed_total());
            let mut due = window + TICK;
            loop {
                tokio::time::sleep_until(due).await;
                let now = Instant::now();
                lags.push(now.saturating_duration_since(due));
                due = now + TICK;
                if lags.len() < WINDOW_TICKS && now.duration_since(window) < WINDOW_TIME {
                    continue;
                }
                window = now;
                let Some(load) = weak.upgrade() else { return };
                let max = load.max.load(Ordering::Relaxed);
                if !load.governor() {
                    load.limit.store(max, Ordering::Relaxed);
                    load.governed.store(false, Ordering::Release);
                    return;
                }
                // The bound was reached in the window: a request was shed, or every place is taken.
                let shed = load.shed_total();
                let reached = shed > shed_before || load.in_flight() >= load.limit();
                shed_before = shed;
                let next = next_limit(load.limit(), max, reached, &mut lags);
                load.limit.store(next, Ordering::Relaxed);
                lags.clear();
            }
        });
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests refused so far.
    pub fn shed_total(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Takes a place, or `None` when every place is taken.
    pub fn enter(&self) -> Option<InFlight<'_>> {
        let n = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self);
        if n >= self.limit.load(Ordering::Relaxed) {
            self.shed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(guard)
    }
}

/// The bound after a window of timer lateness `lags`: lowered by a quarter when the workers were
/// saturated (the median over [`LAG_HIGH`]: most ready tasks waited, not one) and the bound was
/// `reached` (a request shed, or every place taken), raised by a thirty-second of `max` when nine
/// wake-ups in ten were prompt (under [`LAG_LOW`]), else kept. A node that is merely busy, even
/// at its maximum throughput with every client waiting for its answer, keeps its bound; one
/// offered more than its cores can serve sheds the excess instead of queueing it.
fn next_limit(limit: usize, max: usize, reached: bool, lags: &mut [Duration]) -> usize {
    if lags.is_empty() {
        return limit.min(max);
    }
    lags.sort_unstable();
    let n = lags.len();
    let (median, p90) = (lags[n / 2], lags[(n * 9 / 10).min(n - 1)]);
    if median > LAG_HIGH && reached {
        (limit - limit / 4).max(MIN_LIMIT.min(max))
    } else if p90 < LAG_LOW {
        (limit + (max / 32).max(1)).min(max)
    } else {
        limit.min(max)
    }
}

/// A place in flight, given back when dropped.
pub struct InFlight<'a>(&'a LoadShed);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Writes the admission figures into `/metrics`: requests in flight, the bound in force, refusals.
pub fn write_metrics(load: &LoadShed, out: &mut Exposition) {
    out.gauge("openmvs_requests_in_flight", "Requests being served now.", load.in_flight())
        .gauge(
            "openmvs_admission_limit",
            "Requests admitted at once: the configured bound, lower while the workers are saturated.",
            load.limit(),
        )
        .counter(
            "openmvs_requests_shed_total",
            "Requests refused with 503 at the admission bound.",
            load.shed_total(),
        );
}

/// Routes outside the request budget: what operators watch the node with, and the token
/// endpoint, which has a budget of its own ([`crate::login`]).
pub(crate) fn exempt(path: &str) -> bool {
    path.starts_with("/health/") || path == "/status" || path == "/metrics" || path == "/oauth/token"
}

/// The middleware: sheds a request when the node is at its bound.
pub async fn shed(State(load): State<Arc<LoadShed>>, req: Request, next: Next) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    load.govern();
    let Some(_place) = load.enter() else {
        // No log line per refusal: at overload that would be the next bottleneck. The metrics
        // count them (status 503), and so does `shed_total`.
        let e = ApiError::new(ReturnCode::Unavailable).with("load", "the node is at capacity; retry shortly");
        return HttpError::new(e).into_response();
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_micros(m * 1000)).collect()
    }

    #[test]
    fn saturated_workers_lower_the_bound_and_prompt_ones_raise_it_back() {
        // Most ticks late: a quarter less, never under the floor.
        assert_eq!(next_limit(128, 128, true, &mut ms(&[0, 3, 9, 12, 1])), 96);
        assert_eq!(next_limit(9, 128, true, &mut ms(&[5, 5])), MIN_LIMIT);
        // A few late ticks are a busy node, not an overloaded one: kept.
        assert_eq!(next_limit(96, 128, true, &mut ms(&[0, 0, 0, 0, 30, 40])), 96);
        // Saturated, but no request reached the bound (clients that wait for their answers): kept.
        assert_eq!(next_limit(128, 128, false, &mut ms(&[0, 3, 9, 12, 1])), 128);
        assert_eq!(next_limit(96, 128, false, &mut ms(&[5, 5])), 96);
        // Nine in ten on time: back up by max/32, never over the configured bound.
        let mut prompt = ms(&[0; 20]);
        prompt[19] = Duration::from_millis(50);
        assert_eq!(next_limit(96, 128, true, &mut prompt), 100);
        assert_eq!(next_limit(96, 128, false, &mut prompt.clone()), 100);
        assert_eq!(next_limit(127, 128, false, &mut ms(&[0])), 128);
        // A small configured bound is its own floor.
        assert_eq!(next_limit(2, 2, true, &mut ms(&[9, 9])), 2);
        assert_eq!(next_limit(50, 128, true, &mut []), 50);
    }

    /// Moves tokio's paused clock `steps` times by `by`, letting the governor run after each
    /// move: as if the runtime's one worker were held for `by` at a time, so that the governor's
    /// timer wakes `by - TICK` late (on time, for `by == TICK`).
    async fn hold_the_worker(steps: usize, by: Duration) {
        for _ in 0..steps {
            tokio::time::advance(by).await;
            // `advance` does not wait for the timers it passed: the governor runs before this
            // task is polled again.
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn late_timers_lower_the_bound_prompt_ones_raise_it_and_switching_the_governor_off_restores_it() {
        let l = Arc::new(LoadShed::new(128));
        l.govern();
        // Every place taken (the bound is reached), and the worker held in turns of 10 ms for
        // 1.5 s: every tick is 8 ms late.
        let taken: Vec<_> = (0..128).map(|_| l.enter().expect("within the bound")).collect();
        hold_the_worker(150, Duration::from_millis(10)).await;
        drop(taken);
        let lowered = l.limit();
        assert!(lowered < 64, "the bound stayed at {lowered}");
        let place: Vec<_> = (0..lowered).map(|_| l.enter().expect("within the bound")).collect();
        assert!(l.enter().is_none(), "over the lowered bound is shed");
        drop(place);
        // Ten windows of prompt ticks: up by max/32 at each full one.
        hold_the_worker(10 * WINDOW_TICKS, TICK).await;
        let raised = l.limit();
        assert!(raised >= lowered + 9 * 4 && raised <= lowered + 10 * 4, "raised to {raised} from {lowered}");
        // Late, but no request at the bound (clients waiting for their answers): kept.
        hold_the_worker(50, Duration::from_millis(10)).await;
        let kept = l.limit();
        assert!(kept >= raised, "a bound no request reaches is not lowered: {kept} from {raised}");
        // Late again at the bound, then off: the configured bound at once.
        let taken: Vec<_> = (0..kept).map(|_| l.enter().expect("within the bound")).collect();
        hold_the_worker(50, Duration::from_millis(10)).await;
        drop(taken);
        assert!(l.limit() < kept);
        l.set_governor(false);
        assert_eq!(l.limit(), 128, "the configured bound, at once");
        // The task ends at its next window and never lowers the bound again.
        hold_the_worker(WINDOW_TICKS, TICK).await;
        assert!(!l.governed.load(Ordering::Acquire), "the governor still runs");
        hold_the_worker(50, Duration::from_millis(10)).await;
        assert_eq!(l.limit(), 128);
    }

    #[test]
    fn a_fixed_bound_never_starts_the_governor() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let l = Arc::new(LoadShed::fixed(3));
            l.govern();
            assert!(!l.governed.load(Ordering::Acquire), "no governor task");
            let places: Vec<_> = (0..3).map(|_| l.enter().expect("within the bound")).collect();
            assert!(l.enter().is_none());
            assert_eq!((places.len(), l.limit(), l.shed_total()), (3, 3, 1));
        });
    }

    #[test]
    fn the_bound_admits_that_many_and_gives_places_back() {
        let l = LoadShed::new(2);
        let a = l.enter().expect("first");
        let b = l.enter().expect("second");
        assert!(l.enter().is_none(), "a third is shed");
        assert_eq!((l.in_flight(), l.shed_total()), (2, 1));
        drop(a);
        let c = l.enter().expect("a place came back");
        drop((b, c));
        assert_eq!(l.in_flight(), 0);
    }
}
