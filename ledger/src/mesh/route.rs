//! Routes: the dependencies a node relies on, probed every interval. Each route's state is
//! exported as `vaultmesh_mesh_route_healthy{route_id}` (`<node>-><target>`) by the node
//! itself, stored in `mesh_routes`, and every change (including one seen while Postgres was
//! down, written once it is back, and a route first seen unhealthy) is a
//! `route_state_changed` receipt in `mesh`.

use super::MESH_SCROLL;
use crate::context::ServiceContext;
use crate::gate::append_service_receipt;
use chrono::{DateTime, Utc};
use prometheus::GaugeVec;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What one probe returns: `Err` says why the route is unhealthy.
pub type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One route's probe.
#[derive(Clone)]
pub struct Probe {
    /// What the node depends on: `postgres`, `redis`, `sink:<name>`, `witness:<mesh>`,
    /// `remote:<mesh>`, `llm`.
    pub target: String,
    check: Arc<dyn Fn() -> ProbeFuture + Send + Sync>,
}

impl Probe {
    /// A probe of `target` that runs `check`.
    pub fn new<F, Fut>(target: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let target: String = target.into();
        Self {
            target: target.chars().take(200).collect(),
            check: Arc::new(move || Box::pin(check())),
        }
    }
}

/// The probes every node has: Postgres, and Redis when configured.
pub fn base_probes(ctx: &ServiceContext) -> Vec<Probe> {
    let store = ctx.store.clone();
    let mut probes = vec![Probe::new("postgres", move || {
        let store = store.clone();
        async move { store.ping().await.map_err(|e| e.to_string()) }
    })];
    if ctx.config.redis_url.is_some() {
        let cache = ctx.cache.clone();
        probes.push(Probe::new("redis", move || {
            let cache = cache.clone();
            async move {
                if cache.ping().await {
                    Ok(())
                } else {
                    Err(format!("redis {:?}", cache.state()).to_lowercase())
                }
            }
        }));
    }
    probes
}

/// A change of one route's state, waiting for its receipt.
struct Change {
    target: String,
    healthy: bool,
    previous: Option<bool>,
    detail: String,
    observed_at: DateTime<Utc>,
}

/// Most changes kept while they cannot be receipted (the oldest are dropped beyond).
const MAX_PENDING: usize = 1000;

/// Probes `probes` for node `node_id` every interval until the stop signal.
pub async fn run(ctx: ServiceContext, node_id: String, probes: Vec<Probe>, gauge: GaugeVec) {
    let settings = ctx.config.mesh.clone();
    let mut ticks = tokio::time::interval(settings.probe_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = ctx.shutdown.wait();
    tokio::pin!(stop);
    let mut known: HashMap<String, bool> = HashMap::new();
    let mut loaded = false;
    let mut pending: VecDeque<Change> = VecDeque::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stop => break,
        }
        let results = futures_util::future::join_all(probes.iter().map(|p| {
            let check = (p.check)();
            let timeout = settings.probe_timeout();
            async move {
                match tokio::time::timeout(timeout, check).await {
                    Ok(Ok(())) => (p.target.clone(), true, String::new()),
                    Ok(Err(why)) => (p.target.clone(), false, why),
                    Err(_) => (
                        p.target.clone(),
                        false,
                        format!("no answer within {timeout:?}"),
                    ),
                }
            }
        }))
        .await;
        for (target, healthy, _) in &results {
            gauge
                .with_label_values(&[&format!("{node_id}->{target}")])
                .set(if *healthy { 1.0 } else { 0.0 });
        }
        if !loaded {
            if let Ok(stored) = ctx.store.routes_of(&node_id).await {
                for r in stored {
                    known.entry(r.target).or_insert(r.healthy);
                }
                loaded = true;
            }
        }
        for (target, healthy, detail) in &results {
            let previous = known.insert(target.clone(), *healthy);
            // A change, or a route first seen unhealthy (one first seen healthy is the normal
            // case: stored, not receipted).
            if previous.is_some_and(|p| p != *healthy) || (previous.is_none() && !*healthy) {
                if *healthy {
                    tracing::info!(node = %node_id, target = %target, "route healthy");
                } else {
                    tracing::warn!(node = %node_id, target = %target, detail = %detail, "route unhealthy");
                }
                if pending.len() == MAX_PENDING {
                    pending.pop_front();
                }
                pending.push_back(Change {
                    target: target.clone(),
                    healthy: *healthy,
                    previous,
                    detail: detail.clone(),
                    observed_at: Utc::now(),
                });
            }
        }
        while let Some(c) = pending.front() {
            let payload = serde_json::json!({
                "node_id": node_id,
                "route_id": format!("{node_id}->{}", c.target),
                "target": c.target,
                "healthy": c.healthy,
                "previous": c.previous,
                "detail": c.detail,
                "observed_at": c.observed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            });
            let written = append_service_receipt(
                &ctx.store,
                &ctx.gate(),
                ctx.governance.service(),
                MESH_SCROLL,
                "route_state_changed",
                payload,
            )
            .await;
            match written {
                Ok(()) => {
                    pending.pop_front();
                }
                Err(e) => {
                    tracing::debug!(node = %node_id, error = %e, "route change not receipted yet");
                    break;
                }
            }
        }
        if let Err(e) = ctx.store.record_routes(&node_id, &results).await {
            tracing::debug!(node = %node_id, error = %e, "route states not stored");
        }
    }
}
