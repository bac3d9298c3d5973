//! A national system of market DE in this process, on the embedded store in a directory, served
//! over plain HTTP on a port of 127.0.0.1: seeded through the hub interface, stopped (connections
//! refused, as an outage looks to a pharmacy) and started again on the same port. What the offline
//! agent's tests and its benchmarks replay against: paced by the replaying client alone
//! ([`Admission::unbounded`]), or admitting requests as a node does by default
//! ([`Admission::node_defaults`]: load shedding and the per-client rate limit).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::shed::LoadShed;
use openmvs_http::{NationalState, Observability, ServerHandle, national_router, serve};
use openmvs_national::{National, NationalConfig, NewClient};
use openmvs_node::Storage;
use openmvs_node::national::{self as node, NodeStore};
use openmvs_wire::hub::{BatchMsg, Delivery, Envelope, Message, PacksMsg, ProductMsg, RecallMsg};

/// The product every seeded pack is of.
pub const LOCAL_GTIN: &str = "09501101530003";

/// How a [`LocalNational`] admits requests.
#[derive(Clone)]
pub struct Admission {
    /// The bound on requests in flight (503 with `Retry-After` over it).
    pub load: Arc<LoadShed>,
    /// The per-client rate limit (429 with `Retry-After` over it).
    pub per_client: RateLimit,
}

impl Admission {
    /// A fixed bound of 1,024 requests in flight and no per-client rate limit: a replay is paced by
    /// its own client.
    pub fn unbounded() -> Admission {
        Admission {
            load: Arc::new(LoadShed::fixed(1024)),
            per_client: RateLimit { per_second: 1e9, burst: 1e9 },
        }
    }

    /// As `openmvs serve national` admits by default: the governed bound of
    /// [`openmvs_http::shed::DEFAULT_MAX_IN_FLIGHT`] and the default per-client rate limit.
    pub fn node_defaults() -> Admission {
        Admission { load: Arc::new(LoadShed::default()), per_client: RateLimit::default() }
    }
}

/// A running (or stopped) national system.
pub struct LocalNational {
    /// The service.
    pub national: Arc<National>,
    store: NodeStore,
    clock: Arc<dyn Clock>,
    server: Option<ServerHandle>,
    addr: SocketAddr,
    dir: PathBuf,
    load: Arc<LoadShed>,
    limiter: Arc<Limiter>,
    messages: std::sync::atomic::AtomicU64,
}

impl LocalNational {
    /// A national system for DE on a fresh store in `dir`, serving at once; the product
    /// [`LOCAL_GTIN`] exists. No per-client rate limit and a fixed admission bound: a replay is
    /// paced by its own client.
    pub async fn start(dir: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<LocalNational> {
        LocalNational::start_with(dir, clock, Admission::unbounded()).await
    }

    /// As [`LocalNational::start`], admitting requests as `admission` says.
    pub async fn start_with(
        dir: &Path,
        clock: Arc<dyn Clock>,
        admission: Admission,
    ) -> anyhow::Result<LocalNational> {
        let market = MarketCode::new("DE").map_err(|e| anyhow::anyhow!("{e}"))?;
        node::claim_market(dir, market)?;
        let store = node::open(dir, &Storage::Sqlite, clock.clone(), None)?;
        let national = Arc::new(
            National::new(store.store(), clock.clone(), NationalConfig::new(market), None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let mut n = LocalNational {
            national,
            store,
            clock,
            server: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: dir.to_owned(),
            load: admission.load,
            limiter: Arc::new(Limiter::new(admission.per_client)),
            messages: std::sync::atomic::AtomicU64::new(0),
        };
        n.serve()?;
        n.deliver(Message::Product(ProductMsg {
            scheme: "GTIN".into(),
            product_code: LOCAL_GTIN.into(),
            name: "Agentomab 10 mg".into(),
            common_name: "agentomab".into(),
            form: "TABLET".into(),
            strength: "10 mg".into(),
            pack_type: "BOX".into(),
            pack_size: "30".into(),
            owner: "testkit-obp".into(),
            version: 1,
        }))
        .await?;
        Ok(n)
    }

    fn serve(&mut self) -> anyhow::Result<()> {
        let obs =
            Arc::new(Observability { load: self.load.clone(), ..Observability::new(self.clock.clone()) });
        obs.set_ready(true);
        let limiter = self.limiter.clone();
        let router = national_router(NationalState { national: self.national.clone(), obs, limiter });
        let listener =
            openmvs_http::server::listen(self.addr).with_context(|| format!("binding {}", self.addr))?;
        let server = serve(listener, router, None).map_err(|e| anyhow::anyhow!(e))?;
        self.addr = server.local_addr();
        self.server = Some(server);
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound on requests in flight it serves with (its refusals are counted there).
    pub fn load(&self) -> &Arc<LoadShed> {
        &self.load
    }

    /// The database file, for tests that read what was stored.
    pub fn db_path(&self) -> PathBuf {
        node::db_path(&self.dir)
    }

    /// Stops serving: every connection is refused until [`LocalNational::restart`].
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(5)).await;
        }
    }

    /// Serves again on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.server.is_none() {
            self.serve()?;
        }
        Ok(())
    }

    async fn deliver(&self, body: Message) -> anyhow::Result<()> {
        let n = self.messages.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let env = Envelope {
            message_id: format!("testkit-{n}"),
            origin: "testkit".into(),
            ordering_key: LOCAL_GTIN.into(),
            body,
        };
        self.national
            .apply_delivery(&Delivery { messages: vec![env] })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }

    /// A batch of [`LOCAL_GTIN`] with `expiry` (`YYMMDD`) and these serials, active.
    pub async fn seed(&self, batch: &str, expiry: &str, serials: &[String]) -> anyhow::Result<()> {
        self.deliver(Message::Batch(BatchMsg {
            scheme: "GTIN".into(),
            product_code: LOCAL_GTIN.into(),
            batch: batch.into(),
            expiry: expiry.into(),
            markets: vec!["DE".into()],
        }))
        .await?;
        for chunk in serials.chunks(50_000) {
            self.deliver(Message::Packs(PacksMsg {
                scheme: "GTIN".into(),
                product_code: LOCAL_GTIN.into(),
                batch: batch.into(),
                serials: chunk.to_vec(),
            }))
            .await?;
        }
        Ok(())
    }

    /// Recalls a batch in DE.
    pub async fn recall(&self, batch: &str) -> anyhow::Result<()> {
        self.deliver(Message::Recall(RecallMsg {
            scheme: "GTIN".into(),
            product_code: LOCAL_GTIN.into(),
            batch: batch.into(),
            reason: "testkit recall".into(),
        }))
        .await
    }

    /// A new end-user or authority client.
    pub async fn client(&self, role: Role, location: &str) -> anyhow::Result<NewClient> {
        let location = Location::new(location).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.national.create_client(role, location, "testkit").await.map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Stops serving and closes the store.
    pub async fn close(mut self) {
        self.stop().await;
        self.store.close().await;
    }
}
