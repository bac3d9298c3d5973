//! A fake hub over mutual TLS: it receives the national system's deliveries and inter-market
//! requests, answering as told (applied, 503, a dropped connection, rejections, canned answers,
//! delays), and it sends the hub's own deliveries to the national system with the hub's
//! certificate.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openmvs_http::server::PeerName;
use openmvs_http::{ServerHandle, TlsConfig, serve};
use openmvs_wire::api::{PackResponse, PackView};
use openmvs_wire::hub::{
    Delivery, DeliveryAck, Envelope, IntermarketAnswer, IntermarketRequest, Message, MessageAck,
};

use crate::pki::{Leaf, client, pki};
use crate::retry::SendRetrying;

/// How the fake hub answers a delivery from the national system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Applies each message once, like a real receiver: `APPLIED`, or `DUPLICATE` when seen before.
    Apply,
    /// Answers 503 and applies nothing.
    Unavailable,
    /// Applies, then drops the connection without answering: the sender cannot know.
    ApplyThenDrop,
    /// Answers `REJECTED` for these message ids and applies the others.
    Reject(HashSet<String>),
}

/// How the fake hub answers an inter-market request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntermarketMode {
    /// Market FR holds the pack: a canned, accepted answer.
    AnswerFromFr,
    /// No market knows the product.
    NoMarket,
    /// Never answers (a hub that hangs).
    Hang,
    /// Answers 503.
    Unavailable,
    /// Answers, but FR, which holds the product, could not be reached.
    FrUnreachable,
}

/// The trx_id of the canned inter-market answer.
pub const FR_TRX_ID: &str = "TRX-FR-000000000001";

#[derive(Default)]
struct Log {
    /// Every delivery received, whatever was answered.
    deliveries: Vec<Delivery>,
    /// Every message applied, once each, in the order applied.
    applied: Vec<Envelope>,
    /// The DNS names of the client certificate of every caller (empty when none).
    peers: Vec<Vec<String>>,
    /// Every inter-market request received.
    intermarket: Vec<IntermarketRequest>,
}

struct HubState {
    delivery: Mutex<DeliveryMode>,
    intermarket: Mutex<IntermarketMode>,
    log: Mutex<Log>,
}

/// The fake hub.
pub struct FakeHub {
    state: Arc<HubState>,
    /// Its base URL, e.g. `https://127.0.0.1:40123`.
    pub url: String,
    /// Calls national systems as the hub.
    client: reqwest::Client,
    server: Option<ServerHandle>,
}

impl FakeHub {
    /// Starts a fake hub on a free port, applying deliveries and answering inter-market requests
    /// from FR.
    pub async fn start() -> FakeHub {
        let state = Arc::new(HubState {
            delivery: Mutex::new(DeliveryMode::Apply),
            intermarket: Mutex::new(IntermarketMode::AnswerFromFr),
            log: Mutex::new(Log::default()),
        });
        let router = Router::new()
            .route("/internal/v1/messages", post(messages))
            .route("/internal/v1/intermarket", post(intermarket))
            .with_state(state.clone());
        let (cert_chain, key) = pki().server.server_material();
        let tls =
            TlsConfig { cert_chain, key, client_ca: Some(vec![pki().ca_der.clone()]), crls: Vec::new() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the fake hub");
        let server = serve(listener, router, Some(tls)).expect("serving the fake hub");
        FakeHub {
            state,
            url: format!("https://{}", server.local_addr()),
            client: client(Some(&pki().hub)),
            server: Some(server),
        }
    }

    /// Changes how deliveries are answered.
    pub fn set_delivery(&self, mode: DeliveryMode) {
        *self.state.delivery.lock().unwrap() = mode;
    }

    /// Changes how inter-market requests are answered.
    pub fn set_intermarket(&self, mode: IntermarketMode) {
        *self.state.intermarket.lock().unwrap() = mode;
    }

    /// Every message applied, once each, in order.
    pub fn applied(&self) -> Vec<Envelope> {
        self.state.log.lock().unwrap().applied.clone()
    }

    /// Every delivery received, whatever was answered.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.log.lock().unwrap().deliveries.clone()
    }

    /// The client-certificate names of every caller.
    pub fn peers(&self) -> Vec<Vec<String>> {
        self.state.log.lock().unwrap().peers.clone()
    }

    /// Every inter-market request received.
    pub fn intermarket_requests(&self) -> Vec<IntermarketRequest> {
        self.state.log.lock().unwrap().intermarket.clone()
    }

    /// Sends a delivery to a national system as the hub and returns its acknowledgement.
    pub async fn send(&self, national_url: &str, delivery: &Delivery) -> DeliveryAck {
        let resp = self
            .client
            .post(format!("{national_url}/internal/v1/messages"))
            .json(delivery)
            .send_retrying()
            .await
            .expect("delivery to the national system");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::OK, "delivery answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not a DeliveryAck ({e}): {text}"))
    }

    /// Sends one envelope as a delivery of its own and returns its acknowledgement.
    pub async fn send_one(&self, national_url: &str, env: &Envelope) -> MessageAck {
        let mut ack = self.send(national_url, &Delivery { messages: vec![env.clone()] }).await;
        assert_eq!(ack.results.len(), 1, "{ack:?}");
        ack.results.remove(0)
    }

    /// POSTs a JSON body to a national system's path as the hub (or as `identity`).
    pub async fn post_as(
        identity: Option<&Leaf>,
        url: &str,
        body: &impl serde::Serialize,
    ) -> reqwest::Result<reqwest::Response> {
        client(identity).post(url).json(body).send_retrying().await
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // The runtime is going away with the test; stopping now closes the listener early.
            tokio::spawn(server.shutdown(Duration::ZERO));
        }
    }
}

fn peer_of(req: &Request) -> Vec<String> {
    req.extensions().get::<PeerName>().map(|p| p.0.clone()).unwrap_or_default()
}

async fn messages(State(s): State<Arc<HubState>>, req: Request) -> Response {
    let peer = peer_of(&req);
    let body = match axum::body::to_bytes(req.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let delivery: Delivery = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mode = s.delivery.lock().unwrap().clone();
    let mut log = s.log.lock().unwrap();
    log.peers.push(peer);
    log.deliveries.push(delivery.clone());
    if mode == DeliveryMode::Unavailable {
        return (StatusCode::SERVICE_UNAVAILABLE, "the fake hub is down").into_response();
    }
    let mut results = Vec::new();
    for env in delivery.messages {
        let id = env.message_id.clone();
        let status = match &mode {
            DeliveryMode::Reject(ids) if ids.contains(&id) => {
                results.push(MessageAck {
                    message_id: id,
                    status: "REJECTED".into(),
                    error: Some("rejected by the fake hub".into()),
                });
                continue;
            }
            _ if log.applied.iter().any(|a| a.message_id == id) => "DUPLICATE",
            _ => {
                log.applied.push(env);
                "APPLIED"
            }
        };
        results.push(MessageAck { message_id: id, status: status.into(), error: None });
    }
    drop(log);
    if mode == DeliveryMode::ApplyThenDrop {
        // Unwinding ends the connection's task without an answer; `resume_unwind` skips the
        // panic hook, so nothing is printed.
        std::panic::resume_unwind(Box::new("the fake hub drops the connection"));
    }
    axum::Json(DeliveryAck { results }).into_response()
}

/// The canned answer of market FR to `req`.
pub fn fr_answer(req: &IntermarketRequest) -> PackResponse {
    PackResponse {
        trx_id: FR_TRX_ID.into(),
        // What FR keyed it by; the initiating market must answer with its client's own id.
        client_trx_id: format!("FR-side:{}", req.client_trx_id),
        accepted: true,
        return_code: "NMVS_SUCCESS".into(),
        level: 1,
        message: "done in FR".into(),
        pack: Some(PackView {
            scheme: req.scheme.clone(),
            product_code: req.product_code.clone(),
            serial: req.serial.clone(),
            batch: req.batch.clone(),
            expiry: req.expiry.clone(),
            state: if req.command == "verify" { "ACTIVE" } else { "SUPPLIED" }.into(),
            reasons: Vec::new(),
            dispensable: req.command == "verify",
        }),
        product: None,
        alert: None,
        intermarket: false,
        warnings: Vec::new(),
    }
}

async fn intermarket(State(s): State<Arc<HubState>>, req: Request) -> Response {
    let body = match axum::body::to_bytes(req.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let im: IntermarketRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    s.log.lock().unwrap().intermarket.push(im.clone());
    let mode = s.intermarket.lock().unwrap().clone();
    let none = IntermarketAnswer { market: None, response: None, unreachable: Vec::new() };
    match mode {
        IntermarketMode::AnswerFromFr => axum::Json(IntermarketAnswer {
            market: Some("FR".into()),
            response: Some(fr_answer(&im)),
            unreachable: Vec::new(),
        })
        .into_response(),
        IntermarketMode::NoMarket => axum::Json(none).into_response(),
        IntermarketMode::Hang => std::future::pending().await,
        IntermarketMode::Unavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, "the fake hub is down").into_response()
        }
        IntermarketMode::FrUnreachable => {
            axum::Json(IntermarketAnswer { unreachable: vec!["FR".into()], ..none }).into_response()
        }
    }
}

/// The kind of a message body, as it travels (`"kind"` in the JSON).
pub fn kind(m: &Message) -> String {
    serde_json::to_value(m).expect("a message serialises")["kind"].as_str().unwrap_or_default().to_owned()
}
