//! How the tests' clients answer a refusal for load, as a real client does: a 503 or a 429 that
//! carries `Retry-After` was refused before anything was done, so the same request is sent again
//! after the time it names, for at most [`RETRY_BUDGET`]. A busy machine (a governor that lowers
//! the admission bound, a rate limit) then slows a test down instead of failing it. A test about
//! the refusal itself sends once, without this.

// Each test binary that includes this file uses a part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};

/// The longest a request is retried before its refusal is returned to the test.
pub const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// The shortest wait between two tries, whatever `Retry-After` says.
const MIN_WAIT: Duration = Duration::from_millis(50);

/// The wait a refusal asks for: `Some` for a 503 or a 429 with `Retry-After` in seconds.
pub fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::SERVICE_UNAVAILABLE && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).max(MIN_WAIT))
}

/// Sends `rb`, and again after each refusal for load while [`RETRY_BUDGET`] lasts; returns the
/// first other answer, or the last refusal. A request whose body cannot be sent twice (a
/// stream) is sent once.
pub async fn send(rb: RequestBuilder) -> reqwest::Result<Response> {
    let deadline = Instant::now() + RETRY_BUDGET;
    loop {
        let Some(this_try) = rb.try_clone() else { return rb.send().await };
        let resp = this_try.send().await?;
        match retry_after(resp.status(), resp.headers()) {
            Some(wait) if Instant::now() + wait < deadline => {
                // Read the refusal to its end, so the connection is reused.
                let _ = resp.bytes().await;
                tokio::time::sleep(wait).await;
            }
            _ => return Ok(resp),
        }
    }
}

/// [`send`] as a method of the request, in place of `send`.
pub trait SendRetrying {
    /// Sends the request, and again after each refusal for load (see [`send`]).
    fn send_retrying(self) -> impl Future<Output = reqwest::Result<Response>> + Send;
}

impl SendRetrying for RequestBuilder {
    fn send_retrying(self) -> impl Future<Output = reqwest::Result<Response>> + Send {
        send(self)
    }
}
