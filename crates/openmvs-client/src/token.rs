//! The end-user client's access token: fetched with the client credentials (`POST
//! /oauth/token`), renewed ahead of its expiry by one caller while the others keep using it, and
//! dropped when the server refuses it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openmvs_wire::api::TokenResponse;
use reqwest::Method;

use crate::error::ClientError;
use crate::transport::{Call, Payload, Transport, decode};

/// The least time before its expiry at which a token is renewed.
pub const RENEW_AHEAD_MIN: Duration = Duration::from_secs(60);

/// When a token of `lifetime` is renewed, counted from when it was asked for: once less than a
/// tenth of its lifetime, or [`RENEW_AHEAD_MIN`], is left, whichever is more; but never before
/// half of its lifetime, so that a token of two minutes is still used for one.
pub fn renew_after(lifetime: Duration) -> Duration {
    let ahead = (lifetime / 10).max(RENEW_AHEAD_MIN).min(lifetime / 2);
    lifetime - ahead
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
    renew_at: Instant,
    expires_at: Instant,
}

/// The client's token, shared by every call of one client.
pub(crate) struct TokenCache {
    form: String,
    held: Mutex<Option<Held>>,
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
        TokenCache { form, held: Mutex::new(None), renewing: tokio::sync::Mutex::new(0) }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token to send now: the held one until it is due for renewal; then a new one, fetched
    /// by one caller at a time. While one caller renews, others keep the held token if it has
    /// not expired.
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
        // Another caller may have renewed it while this one waited.
        if let Some(h) = self.held().as_ref()
            && t.timer.now() < h.renew_at
        {
            return Ok(h.bearer.clone());
        }
        let asked_at = t.timer.now();
        let token = self.fetch(t).await?;
        let lifetime = Duration::from_secs(u64::try_from(token.expires_in).unwrap_or(0));
        *generation += 1;
        let bearer = Bearer { value: Arc::from(token.access_token), generation: *generation };
        // Counted from when the token was asked for, so the time the answer took is not
        // counted as validity.
        *self.held() = Some(Held {
            bearer: bearer.clone(),
            renew_at: asked_at + renew_after(lifetime),
            expires_at: asked_at + lifetime,
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

    async fn fetch(&self, t: &Transport) -> Result<TokenResponse, ClientError> {
        let call = Call {
            method: Method::POST,
            url: t.url(&["oauth", "token"]),
            payload: Payload::Form(self.form.clone()),
            idempotent: true,
            token: None,
        };
        let answer = t.retrying(&call, None).await?;
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
    fn a_token_is_renewed_when_a_tenth_of_its_life_or_a_minute_is_left() {
        let s = Duration::from_secs;
        assert_eq!(renew_after(s(3600)), s(3240));
        assert_eq!(renew_after(s(300)), s(240));
        assert_eq!(renew_after(s(90)), s(45));
        assert_eq!(renew_after(s(0)), s(0));
    }

    #[test]
    fn credentials_are_form_encoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
