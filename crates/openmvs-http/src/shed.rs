//! Load shedding: over capacity, a request is refused at once with 503 and `Retry-After`, instead
//! of joining a queue that makes every request late. Capacity is a bound on requests in flight: by
//! Little's law it bounds the time a request can wait (in flight / throughput), whatever the load.
//! Health, readiness, status and metrics are never shed, so operators still see the node.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openmvs_core::return_code::ReturnCode;
use openmvs_national::ApiError;

use crate::error::HttpError;

/// The default bound on requests in flight per node.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;

/// Requests in flight and the bound they are held to.
#[derive(Debug)]
pub struct LoadShed {
    in_flight: AtomicUsize,
    max: AtomicUsize,
    shed: AtomicU64,
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
            shed: AtomicU64::new(0),
        }
    }

    /// Changes the bound.
    pub fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::Relaxed);
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
        if n >= self.max.load(Ordering::Relaxed) {
            self.shed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(guard)
    }
}

/// A place in flight, given back when dropped.
pub struct InFlight<'a>(&'a LoadShed);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn exempt(path: &str) -> bool {
    path.starts_with("/health/") || path == "/status" || path == "/metrics"
}

/// The middleware: sheds a request when the node is at its bound.
pub async fn shed(State(load): State<std::sync::Arc<LoadShed>>, req: Request, next: Next) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(_place) = load.enter() else {
        // No log line per refusal: at overload that would be the next bottleneck. The metrics
        // count them (status 503), and so does `shed_total`.
        let e = ApiError::new(ReturnCode::Unavailable).with("load", "the node is at capacity; retry shortly");
        return HttpError(e).into_response();
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
