//! Logins that send the client's secret with every request, as software built for the NMVS SOAP
//! interface does: each names a client (by its id, or by a login of its own the configuration
//! maps to it) and its secret, and is checked like a token request, with argon2id.
//!
//! A till cannot wait for a hash of tens of milliseconds on every scan, so a login whose secret
//! was checked is remembered for a short time ([`SecretLogins::ttl`]), keyed by the client and
//! a salted SHA-256 of the secret (the secret itself is never kept): the next request with the
//! same secret is let in without hashing, as a token would be. What would end a token ends a
//! remembered login too, and sooner:
//!
//! - a client cut off is refused at once on the node that cut it off and, like its tokens,
//!   within a second on the others (the in-memory set [`National::refresh_security`] keeps);
//! - a changed secret, or a client cut off meanwhile, is seen by reading the client's record
//!   again when a login is used more than [`LOGIN_RECHECK`] after it was last checked: one
//!   indexed read per client and interval, never a hash;
//! - the memory is bounded ([`SecretLogins::max_entries`]): when full, the oldest goes.
//!
//! A login may also need the client's TLS certificate ([`SecretLogin::certificate`], or any
//! verified one with [`SecretLogins::require_certificate`]): both factors, on every request. A
//! client one of whose logins names a certificate needs one of the names its logins name when it
//! logs in by its id, so that the id is no way around them. The certificate is checked first and a login without the one it needs is never looked up among
//! the remembered ones: it is checked with argon2id like any other and refused, so that neither
//! its answer nor its time says whether the secret was right (a remembered login answers fast).
//!
//! Every checked login is audited, as a token request is; a remembered one is not (the
//! operation it carries is, under the client's id).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use openmvs_audit::Entry;
use openmvs_auth::AuthError;
use openmvs_core::ids::{ClientId, Location};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::Role;
use openmvs_store::{ClientChange, ClientRecord, UnitOfWork};
use sha2::{Digest, Sha256};

use crate::{Actor, National};

/// How long a remembered login is used before the client's record is read again (a changed
/// secret, a client cut off by a command on another node).
pub const LOGIN_RECHECK: Duration = Duration::from_secs(5);

/// A login that names a client other than by its id: what NMVS software sends as
/// `ClientLoginId` and `UserId` (at most 20 letters, digits and hyphens there, which a client id
/// is not), and the client it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretLogin {
    /// The `ClientLoginId` it is sent with.
    pub client_login_id: String,
    /// The `UserId` it is sent with.
    pub user_id: String,
    /// The client it logs in as.
    pub client_id: ClientId,
    /// A DNS name (subjectAltName) the request's verified TLS client certificate must carry
    /// (ASCII case aside); `None`: no particular certificate.
    pub certificate: Option<String>,
}

/// What a login's `ClientLoginId` and `UserId` name: the client, and the certificate names the
/// login must come with one of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginTarget {
    /// The client it logs in as.
    pub client_id: ClientId,
    /// The DNS names one of which its TLS client certificate must carry; empty: none in
    /// particular.
    pub certificates: Vec<String>,
}

/// Whether a login came with the TLS client certificate it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateCheck {
    /// It needs none.
    NotNeeded,
    /// It needs one and came with it.
    Met,
    /// It needs one and came without it, or with one of another name.
    Unmet,
}

/// How logins with a secret on every request are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretLogins {
    /// Whether the interface that sends them (NMVS SOAP) is served at all.
    pub enabled: bool,
    /// How long a checked login is remembered.
    pub ttl: Duration,
    /// The most logins remembered at once.
    pub max_entries: usize,
    /// Logins that name a client other than by its id. Without one, `ClientLoginId` and
    /// `UserId` are both the client id.
    pub logins: Vec<SecretLogin>,
    /// Whether every login must come with a verified TLS client certificate (of any name, where
    /// its [`SecretLogin::certificate`] names none).
    pub require_certificate: bool,
}

impl Default for SecretLogins {
    /// Off; remembered for 5 minutes, 10,000 at most (a market's tills, with room to spare).
    fn default() -> SecretLogins {
        SecretLogins {
            enabled: false,
            ttl: Duration::from_secs(300),
            max_entries: 10_000,
            logins: Vec::new(),
            require_certificate: false,
        }
    }
}

/// A login checked lately.
#[derive(Debug, Clone)]
struct Remembered {
    /// The stored hash the secret was checked against.
    phc: String,
    actor: Actor,
    /// When it was checked with argon2 (ms, the service's clock).
    created_ms: i64,
    /// When the client's record was last found unchanged.
    checked_ms: i64,
}

/// The configured logins.
#[derive(Default)]
struct Names {
    /// By `ClientLoginId` and `UserId`.
    logins: HashMap<(String, String), LoginTarget>,
    /// The certificate names of each client's logins, which its id login needs one of.
    certificates: HashMap<ClientId, Vec<String>>,
}

/// The logins of this node: the ones remembered, and the configured names of clients.
pub(crate) struct LoginCache {
    ttl_ms: i64,
    max_entries: usize,
    /// Salts the digests of secrets, so the memory holds nothing a dictionary can be run against
    /// offline.
    salt: [u8; 16],
    names: RwLock<Names>,
    entries: Mutex<HashMap<(ClientId, [u8; 32]), Remembered>>,
}

impl LoginCache {
    pub(crate) fn new(settings: &SecretLogins) -> LoginCache {
        let mut salt = [0u8; 16];
        // Without randomness the salt is fixed, which costs only the offline protection.
        let _ = getrandom::fill(&mut salt);
        let cache = LoginCache {
            ttl_ms: i64::try_from(settings.ttl.as_millis()).unwrap_or(i64::MAX),
            max_entries: settings.max_entries.max(1),
            salt,
            names: RwLock::new(Names::default()),
            entries: Mutex::new(HashMap::new()),
        };
        cache.set_names(&settings.logins);
        cache
    }

    fn set_names(&self, logins: &[SecretLogin]) {
        let mut names = Names::default();
        for l in logins {
            let certificates: Vec<String> = l.certificate.iter().cloned().collect();
            if !certificates.is_empty() {
                names
                    .certificates
                    .entry(l.client_id.clone())
                    .or_default()
                    .extend(certificates.iter().cloned());
            }
            let target = LoginTarget { client_id: l.client_id.clone(), certificates };
            names.logins.insert((l.client_login_id.clone(), l.user_id.clone()), target);
        }
        *self.names.write().unwrap_or_else(|p| p.into_inner()) = names;
    }

    fn digest(&self, secret: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(secret.as_bytes());
        h.finalize().into()
    }

    fn get(&self, key: &(ClientId, [u8; 32])) -> Option<Remembered> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn remove(&self, key: &(ClientId, [u8; 32])) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    fn insert(&self, key: (ClientId, [u8; 32]), r: Remembered, now_ms: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            let ttl = self.ttl_ms;
            entries.retain(|_, e| now_ms - e.created_ms < ttl);
            if entries.len() >= self.max_entries
                && let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.created_ms).map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, r);
    }

    /// Forgets every remembered login of `client_id`.
    pub(crate) fn forget(&self, client_id: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|(id, _), _| id.as_str() != client_id);
    }

    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl National {
    /// The client a login names: the configured one for this `ClientLoginId` and `UserId`, or,
    /// without one, the client whose id both are (needing one of the certificates the client's
    /// configured logins name). `None`: no client can have this login.
    pub fn login_client(&self, client_login_id: &str, user_id: &str) -> Option<LoginTarget> {
        let names = self.logins.names.read().unwrap_or_else(|p| p.into_inner());
        if let Some(target) = names.logins.get(&(client_login_id.to_owned(), user_id.to_owned())) {
            return Some(target.clone());
        }
        if client_login_id != user_id || client_login_id.is_empty() {
            return None;
        }
        let client_id = ClientId::from(client_login_id);
        let certificates = names.certificates.get(&client_id).cloned().unwrap_or_default();
        Some(LoginTarget { client_id, certificates })
    }

    /// Whether a login of `target` (`None`: a login no client has) comes with the TLS client
    /// certificate it needs. `peer`: the DNS names of the verified client certificate the
    /// request came with, `None` without one (or not over TLS).
    pub fn certificate_check(
        &self,
        target: Option<&LoginTarget>,
        peer: Option<&[String]>,
    ) -> CertificateCheck {
        let named = target.map_or(&[][..], |t| t.certificates.as_slice());
        let met = match peer {
            _ if named.is_empty() && !self.config.secret_logins.require_certificate => {
                return CertificateCheck::NotNeeded;
            }
            None => false,
            Some(_) if named.is_empty() => true,
            Some(names) => names.iter().any(|n| named.iter().any(|w| n.eq_ignore_ascii_case(w))),
        };
        if met { CertificateCheck::Met } else { CertificateCheck::Unmet }
    }

    /// Replaces the logins that name clients other than by their ids (the configuration's, or
    /// the demonstration's once it made its clients).
    pub fn set_logins(&self, logins: &[SecretLogin]) {
        self.logins.set_names(logins);
    }

    /// How many logins this node remembers.
    pub fn remembered_logins(&self) -> usize {
        self.logins.len()
    }

    /// A login this node checked lately with the same secret, if it still holds: the client is
    /// not cut off, and its record, read again every [`LOGIN_RECHECK`], still has the secret.
    /// Never hashes; `None` means: check it ([`National::login`]).
    pub async fn remembered_login(&self, client_id: &ClientId, secret: &str) -> Option<Actor> {
        let now = self.clock.now().unix_millis();
        let key = (client_id.clone(), self.logins.digest(secret));
        let r = self.logins.get(&key)?;
        if now - r.created_ms >= self.logins.ttl_ms || self.is_disabled(client_id.as_str()) {
            self.logins.remove(&key);
            return None;
        }
        let recheck = i64::try_from(LOGIN_RECHECK.as_millis()).unwrap_or(i64::MAX);
        if now - r.checked_ms >= recheck {
            let stored = self.store.client(client_id).await.ok()?;
            let same = stored.is_some_and(|c| self.may_log_in(&c) && c.secret_hash == r.phc);
            if !same {
                self.logins.remove(&key);
                return None;
            }
            let mut entries = self.logins.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = entries.get_mut(&key) {
                e.checked_ms = now;
            }
        }
        self.seen(client_id.as_str());
        Some(r.actor)
    }

    /// Checks a client's secret with argon2id, as `POST /oauth/token` does, audits the attempt
    /// (`interface` says which, e.g. `nmvs-soap`) and remembers a login that succeeds. The
    /// secret is checked whatever `certificate` says, and a login without the certificate it
    /// needs fails, is audited as failed (saying so) and is not remembered.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidClient`] for an unknown, disabled or foreign client, a wrong secret or
    /// an unmet certificate; [`AuthError::Internal`] when the store cannot be read or written.
    pub async fn login(
        &self,
        client_id: &ClientId,
        secret: &str,
        certificate: CertificateCheck,
        interface: &str,
    ) -> Result<Actor, AuthError> {
        let now = self.clock.now();
        let (stored, secret_ok) = self.check_secret(client_id.as_str(), secret).await?;
        let ok = secret_ok && certificate != CertificateCheck::Unmet;
        let actor = match (&stored, ok) {
            (Some(c), true) => Some(Actor {
                client_id: c.client_id.clone(),
                role: c.role,
                market: c.market,
                location: c.location.clone(),
            }),
            _ => None,
        };
        let request = serde_json::json!({"interface": interface, "client_id": client_id.as_str()});
        let mut entry = self.login_entry(client_id.as_str(), stored.as_ref(), actor.is_some(), request, now);
        if certificate != CertificateCheck::NotNeeded {
            // Both factors, so that the trail tells a right secret sent without its certificate
            // (a secret that may have leaked) from a wrong one.
            entry.result = serde_json::json!({
                "ok": actor.is_some(),
                "certificate": certificate == CertificateCheck::Met,
                "secret": secret_ok,
            })
            .to_string();
        }
        let client_changes = match &actor {
            Some(a) => {
                vec![ClientChange { client_id: a.client_id.clone(), disabled: None, used_at: Some(now) }]
            }
            None => Vec::new(),
        };
        self.commit(UnitOfWork { audit: vec![entry], client_changes, ..UnitOfWork::default() })
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let (Some(actor), Some(c)) = (actor, stored) else { return Err(AuthError::InvalidClient) };
        let at = now.unix_millis();
        let key = (actor.client_id.clone(), self.logins.digest(secret));
        self.logins.insert(
            key,
            Remembered { phc: c.secret_hash, actor: actor.clone(), created_ms: at, checked_ms: at },
            at,
        );
        Ok(actor)
    }

    /// Whether a stored client may log in here at all: not cut off, and of this market.
    pub(crate) fn may_log_in(&self, c: &ClientRecord) -> bool {
        !c.disabled && c.market == self.config.market
    }

    /// The client `client_id` names if it may log in here, and whether `secret` is its secret.
    /// An unknown id is checked against a dummy hash, so that it takes as long as a known one.
    pub(crate) async fn check_secret(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<(Option<ClientRecord>, bool), AuthError> {
        let client =
            self.store.client(&client_id.into()).await.map_err(|e| AuthError::Internal(e.to_string()))?;
        let stored = client.filter(|c| self.may_log_in(c));
        let phc = stored.as_ref().map(|c| c.secret_hash.clone());
        let secret = secret.to_owned();
        // Argon2 costs tens of milliseconds of CPU: keep it off the request threads.
        let checked =
            tokio::task::spawn_blocking(move || openmvs_auth::authenticate_client(&secret, phc.as_deref()))
                .await
                .map_err(|e| AuthError::Internal(e.to_string()))?;
        let ok = checked.is_ok() && stored.is_some();
        Ok((stored, ok))
    }

    /// The audit record of a login attempt.
    pub(crate) fn login_entry(
        &self,
        client_id: &str,
        stored: Option<&ClientRecord>,
        ok: bool,
        request: serde_json::Value,
        now: openmvs_core::time::Timestamp,
    ) -> Entry {
        let (role, location) =
            stored.map_or(("", ""), |c| (Role::as_str(c.role), Location::as_str(&c.location)));
        Entry {
            market: self.config.market.to_string(),
            at_millis: now.unix_millis(),
            // A client id that does not exist is still recorded, bounded, as the attempt's actor.
            actor: client_id.chars().take(100).collect(),
            role: role.to_owned(),
            location: location.to_owned(),
            operation: "login".into(),
            subject: String::new(),
            return_code: if ok { ReturnCode::Success } else { ReturnCode::Unauthenticated }.as_str().into(),
            request: request.to_string(),
            result: serde_json::json!({"ok": ok}).to_string(),
        }
    }

    /// Forgets the remembered logins of a client whose state changed.
    pub(crate) fn forget_logins(&self, client_id: &str) {
        self.logins.forget(client_id);
    }
}
