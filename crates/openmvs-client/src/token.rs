//! The end-user client's access token: fetched with the client credentials (`POST
//! /oauth/token`), renewed ahead of its expiry by one caller while the others keep using it, kept
//! in use while a renewal fails and it is still valid, and dropped when the server refuses it.
//!
//! # When a token is renewed, and why then
//!
//! A national system's tokens live an hour (`expires_in` 3600, api.md). The client renews one
//! once half of its life has passed ([`renew_after`]): the other half is what the pharmacy works
//! on while the national system issues no token (it cannot read its signing keys, say) and
//! still accepts the tokens it issued. Whenever issuing stops, every client holds a token with
//! at least half an hour left, on average three quarters; renewing later would save one token
//! request per client and hour at the cost of that window (at 90% of the life, six minutes).
//! A failed renewal is tried again after the `Retry-After` the server named, or the retry
//! policy's backoff, while the held token is used; only once it has expired does a call wait
//! for a new one, with the full retry policy.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openmvs_wire::api::TokenResponse;
use reqwest::Method;

use crate::error::ClientError;
use crate::retry::RetryPolicy;
use crate::transport::{Call, Payload, Transport, decode};

/// When a token of `lifetime` is renewed, counted from when it was asked for: once half of its
/// lifetime has passed (see the module comment for why).
pub fn renew_after(lifetime: Duration) -> Duration {
    lifetime / 2
}

/// A token as handed to one request.
#[derive(Clone)]
pub(crate) struct Bearer {
    pub value: Arc<str>,
    /// Which token this is, so that a 401 drops it and not a newer one.
    pub generation: u64,
}

struct Held {
    bearer: Bearer,
    /// When the next renewal is due: [`renew_after`] the token was asked for, then after each
    /// failed renewal the wait it named.
    renew_at: Instant,
    expires_at: Instant,
    /// Renewals that failed in a row since this token was fetched, for the backoff.
    failed_renewals: u32,
}

/// A login the token endpoint refused for load (429 or 503), with the wait it named.
struct Refusal {
    until: Instant,
    status: u16,
    body: openmvs_wire::api::ErrorBody,
}

/// The client's token, shared by every call of one client.
pub(crate) struct TokenCache {
    form: String,
    held: Mutex<Option<Held>>,
    /// The last login refused for load, until its `Retry-After` has passed: the calls that waited
    /// for that login get its refusal at once instead of each sending a login of its own (one
    /// after another, behind the lock, each waiting for the busy endpoint's answer).
    refused: Mutex<Option<Refusal>>,
    /// Held by the one caller that fetches a token; the others wait for it, or keep using the
    /// current token while it is still valid.
    renewing: tokio::sync::Mutex<u64>,
}

impl TokenCache {
    pub fn new(client_id: &str, client_secret: &str) -> TokenCache {
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            form_encode(client_id),
            form_encode(client_secret)
        );
        TokenCache {
            form,
            held: Mutex::new(None),
            refused: Mutex::new(None),
            renewing: tokio::sync::Mutex::new(0),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token to send now: the held one until it is due for renewal; then a new one, fetched
    /// by one caller at a time. While one caller renews, others keep the held token if it has
    /// not expired. A renewal while the held token is valid is one attempt: if it fails for any
    /// reason but a refused login (a 503 while the system issues no token, a 429, no answer),
    /// the held token is returned and the renewal is due again after the wait the server named
    /// or a backoff. Without a valid token the fetch follows the retry policy.
    pub async fn bearer(&self, t: &Transport) -> Result<Bearer, ClientError> {
        let now = t.timer.now();
        if let Some(h) = self.held().as_ref() {
            if now < h.renew_at {
                return Ok(h.bearer.clone());
            }
            if now < h.expires_at
                && let Err(_busy) = self.renewing.try_lock()
            {
                return Ok(h.bearer.clone());
            }
        }
        let mut generation = self.renewing.lock().await;
        let asked_at = t.timer.now();
        // Another caller may have renewed it while this one waited.
        let valid = match self.held().as_ref() {
            Some(h) if asked_at < h.renew_at => return Ok(h.bearer.clone()),
            Some(h) if asked_at < h.expires_at => Some((h.bearer.clone(), h.failed_renewals)),
            _ => None,
        };
        let token = match valid {
            None => {
                if let Some(r) = self.refused.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
                    && asked_at < r.until
                {
                    return Err(ClientError::Refused {
                        status: r.status,
                        body: r.body.clone(),
                        retry_after: Some(r.until - asked_at),
                        attempts: 0,
                    });
                }
                match self.fetch(t, &t.retry).await {
                    Ok(token) => token,
                    Err(e) => {
                        if let ClientError::Refused { status, body, retry_after: Some(wait), .. } = &e {
                            *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(Refusal {
                                until: t.timer.now() + *wait,
                                status: *status,
                                body: body.clone(),
                            });
                        }
                        return Err(e);
                    }
                }
            }
            Some((held, failed)) => match self.fetch(t, &RetryPolicy::never()).await {
                Ok(token) => token,
                Err(e @ ClientError::Login { .. }) => return Err(e),
                Err(e) => {
                    let failed = failed.saturating_add(1);
                    let wait = match &e {
                        ClientError::Refused { retry_after: Some(wait), .. } => *wait,
                        _ => t.retry.backoff(failed),
                    };
                    if let Some(h) = self.held().as_mut()
                        && h.bearer.generation == held.generation
                    {
                        h.renew_at = asked_at + wait;
                        h.failed_renewals = failed;
                    }
                    return Ok(held);
                }
            },
        };
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let lifetime = Duration::from_secs(u64::try_from(token.expires_in).unwrap_or(0));
        *generation += 1;
        let bearer = Bearer { value: Arc::from(token.access_token), generation: *generation };
        // Counted from when the token was asked for, so the time the answer took is not
        // counted as validity.
        *self.held() = Some(Held {
            bearer: bearer.clone(),
            renew_at: asked_at + renew_after(lifetime),
            expires_at: asked_at + lifetime,
            failed_renewals: 0,
        });
        Ok(bearer)
    }

    /// Drops token `generation` after the server refused it, unless a newer one replaced it.
    pub fn invalidate(&self, generation: u64) {
        let mut held = self.held();
        if held.as_ref().is_some_and(|h| h.bearer.generation == generation) {
            *held = None;
        }
    }

    /// Asks for a token, sending the request as `policy` says.
    async fn fetch(&self, t: &Transport, policy: &RetryPolicy) -> Result<TokenResponse, ClientError> {
        let call = Call {
            method: Method::POST,
            url: t.url(&["oauth", "token"]),
            payload: Payload::Form(self.form.clone()),
            idempotent: true,
            token: None,
        };
        let answer = t.retrying_with(&call, None, policy).await?;
        let token: TokenResponse = decode(&call.what(), answer)?;
        if token.expires_in <= 0 || token.access_token.is_empty() {
            return Err(ClientError::UnexpectedAnswer {
                what: call.what(),
                status: 200,
                detail: format!("a token valid for {} s", token.expires_in),
            });
        }
        Ok(token)
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_once_half_of_its_life_has_passed() {
        let s = Duration::from_secs;
        assert_eq!(renew_after(s(3600)), s(1800));
        assert_eq!(renew_after(s(90)), s(45));
        assert_eq!(renew_after(s(1)), Duration::from_millis(500));
        assert_eq!(renew_after(s(0)), s(0));
    }

    #[test]
    fn credentials_are_form_encoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
