//! `openmvs admin incident list|open|update|resolve`: the incidents of a national system or of
//! the hub, written straight to its store, where every node's status page and feeds read them.

use std::process::ExitCode;
use std::sync::Arc;

use openmvs_core::time::Clock;
use openmvs_http::incidents::{
    self, IncidentQuery, IncidentUpdateRequest, IncidentView, OpenIncidentRequest,
};
use openmvs_national::clock::SystemClock;
use openmvs_store::ConsoleStore;

use crate::cli::{IncidentCommand, Target};
use crate::out::outln;
use openmvs_node::{hub as hub_node, national as node};

/// A console store with its scope, and how to close it.
struct Opened {
    store: Arc<dyn ConsoleStore>,
    scope: String,
    close: Box<dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()>>>>,
}

/// The hub's store when `--config` names a hub configuration or `--data-dir` a hub's data
/// directory; the national system's otherwise.
fn open(t: &Target) -> anyhow::Result<Opened> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let hub = match (&t.config, &t.data_dir) {
        (Some(path), _) => {
            let raw = crate::config::load_raw(Some(path), std::env::vars())?;
            if raw.national.is_none() && raw.hub.is_some() {
                let base =
                    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
                let s = crate::hub_config::hub(&raw, base)?;
                Some((s.data_dir, s.storage))
            } else {
                None
            }
        }
        (None, Some(dir)) if hub_node::db_path(dir).exists() && !node::db_path(dir).exists() => {
            Some((dir.clone(), crate::config::Storage::Sqlite))
        }
        _ => None,
    };
    if let Some((dir, storage)) = hub {
        let h = hub_node::open(&dir, &storage, clock, None)?;
        let store: Arc<dyn ConsoleStore> = h.store();
        return Ok(Opened {
            store,
            scope: openmvs_http::hub_status::HUB_SCOPE.to_owned(),
            close: Box::new(move || Box::pin(async move { h.close().await })),
        });
    }
    let (dir, storage) = super::admin::target(t)?;
    let market = node::market_of(&dir)?;
    let n = node::open(&dir, &storage, clock, None)?;
    let store: Arc<dyn ConsoleStore> = n.store();
    Ok(Opened {
        store,
        scope: market.to_string(),
        close: Box::new(move || Box::pin(async move { n.close().await })),
    })
}

fn print(i: &IncidentView, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string(i)?);
    } else {
        outln!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            i.id,
            i.status,
            i.impact,
            i.opened_at,
            i.resolved_at.as_deref().unwrap_or("-"),
            i.title
        );
    }
    Ok(())
}

pub async fn run(cmd: IncidentCommand) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now();
    let (target, action) = match &cmd {
        IncidentCommand::List { target, .. }
        | IncidentCommand::Open { target, .. }
        | IncidentCommand::Update { target, .. }
        | IncidentCommand::Resolve { target, .. } => (target, &cmd),
    };
    let o = open(target)?;
    let store = o.store.as_ref();
    let result: anyhow::Result<()> = async {
        match action {
            IncidentCommand::List { open, limit, json, .. } => {
                let q = IncidentQuery { open: *open, before: None, limit: (*limit).clamp(1, 200) };
                let page = incidents::list(store, &o.scope, &q).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                if page.incidents.is_empty() && !json {
                    outln!("no incidents");
                }
                for i in &page.incidents {
                    print(i, *json)?;
                }
            }
            IncidentCommand::Open { title, impact, status, message, author, .. } => {
                let req = OpenIncidentRequest {
                    title: title.clone(),
                    impact: impact.clone(),
                    status: Some(status.clone()),
                    message: message.clone(),
                };
                let new = incidents::new_incident(&req, &o.scope, author, now).map_err(describe)?;
                let (i, _) = store.open_incident(new).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                outln!("incident {} opened", i.id);
            }
            IncidentCommand::Update { id, status, message, impact, author, .. } => {
                let req = IncidentUpdateRequest {
                    status: status.clone(),
                    message: message.clone(),
                    impact: impact.clone(),
                };
                note(store, &o.scope, *id, &req, author, now).await?;
            }
            IncidentCommand::Resolve { id, message, author, .. } => {
                let req = IncidentUpdateRequest {
                    status: "resolved".into(),
                    message: message.clone(),
                    impact: None,
                };
                note(store, &o.scope, *id, &req, author, now).await?;
            }
        }
        Ok(())
    }
    .await;
    (o.close)().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn note(
    store: &dyn ConsoleStore,
    scope: &str,
    id: u64,
    req: &IncidentUpdateRequest,
    author: &str,
    now: openmvs_core::time::Timestamp,
) -> anyhow::Result<()> {
    let (note, impact) = incidents::incident_note(req, author, now).map_err(describe)?;
    let i = incidents::update(store, scope, id, note, impact).await.map_err(describe)?;
    outln!("incident {} is {}", i.id, i.status.as_str());
    Ok(())
}

/// The error's fields and rules, as `--flag: rule` lines.
fn describe(e: openmvs_core::error::ApiError) -> anyhow::Error {
    if e.details.is_empty() {
        return anyhow::anyhow!("{}", e.message);
    }
    let lines: Vec<String> = e.details.iter().map(|d| format!("--{}: {}", d.field, d.message)).collect();
    anyhow::anyhow!("{}", lines.join("; "))
}
