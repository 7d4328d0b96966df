//! Psi (SPEC §13): the mesh's incident phase, derived by the leading guardian and never set
//! by hand. Critical conditions — divergence, federation discrepancies, an emergency, failing
//! anchors, a node down — are recorded once each in `psi_conditions`; admins run
//! transmutations (remediations). The phase:
//! - NIGREDO while a condition is open and unacknowledged, or open with no transmutation
//!   in progress;
//! - ALBEDO while every open condition is acknowledged and a transmutation is in progress;
//! - CITRINITAS once nothing is open any more: probation, until a clean verification pass
//!   finished after it began and the quiet period passed;
//! - RUBEDO otherwise.
//!
//! Divergence and discrepancies are acknowledged by their own acknowledgement routes and
//! resolved when a transmutation completes after that; the live conditions (emergency,
//! anchors, nodes) count as acknowledged while a transmutation is in progress and resolve
//! when they clear. Every phase change is a `phase_changed` receipt in `psi`, written before
//! the stored phase moves.

use crate::anchor::append_receipt;
use crate::error::GuardianError;
use crate::metrics::{
    status, ANCHOR_STATUS, PSI_CURRENT_PHASE, PSI_PHASE_DURATION, PSI_TRANSMUTATION_STARTED,
    PSI_TRANSMUTATION_STATUS,
};
use crate::Guardian;
use chrono::{DateTime, Utc};
use ledger::store::{NodeRow, PsiCondition, PsiState, Transmutation};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// The scroll phase changes and transmutations are written to.
pub const PSI_SCROLL: &str = "psi";

/// How many of the newest transmutations are exported as metrics and listed.
pub const RECENT_TRANSMUTATIONS: i64 = 20;

/// Longest transmutation description or closing note, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// The four phases, in the order of `vaultmesh_psi_current_phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Crisis: something critical is open and not being remediated.
    Nigredo,
    /// Remediation: everything open is acknowledged and a transmutation is in progress.
    Albedo,
    /// Probation: nothing open; waiting for a clean pass and a quiet period.
    Citrinitas,
    /// Steady state.
    Rubedo,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 4] = [
        Phase::Nigredo,
        Phase::Albedo,
        Phase::Citrinitas,
        Phase::Rubedo,
    ];

    /// The lower-case name (the metric's `phase` label and the stored value).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Nigredo => "nigredo",
            Phase::Albedo => "albedo",
            Phase::Citrinitas => "citrinitas",
            Phase::Rubedo => "rubedo",
        }
    }

    /// The value of `vaultmesh_psi_current_phase`.
    pub fn value(self) -> f64 {
        match self {
            Phase::Nigredo => 0.0,
            Phase::Albedo => 1.0,
            Phase::Citrinitas => 2.0,
            Phase::Rubedo => 3.0,
        }
    }

    /// The phase named `name`.
    pub fn parse(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A condition as its source shows it now.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Stable key of this occurrence.
    pub key: String,
    /// Its kind (`divergence`, …).
    pub kind: &'static str,
    /// What it is about.
    pub detail: String,
    /// Whether its own acknowledgement exists (divergence and discrepancies only).
    pub acknowledged: bool,
    /// When it was acknowledged, as its source recorded it (discrepancies).
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Whether its source still reports it (a divergence the latest pass found again).
    pub active: bool,
}

/// Kinds acknowledged by their own route and resolved by a completed transmutation.
const EVENT_KINDS: [&str; 2] = ["divergence", "federation_discrepancy"];

fn is_event(kind: &str) -> bool {
    EVENT_KINDS.contains(&kind)
}

/// The inputs of one evaluation.
pub struct Inputs<'a> {
    /// The stored phase.
    pub current: &'a PsiState,
    /// Conditions not resolved, after this evaluation's resolutions.
    pub open: &'a [PsiCondition],
    /// What the sources show now, by key.
    pub observed: &'a [Observed],
    /// The transmutation in progress, if any.
    pub in_progress: Option<&'a Transmutation>,
    /// When the last clean verification pass finished.
    pub last_clean_pass: Option<DateTime<Utc>>,
    /// The database's now.
    pub now: DateTime<Utc>,
    /// The probation's quiet period.
    pub quiet: Duration,
}

/// Whether `c` counts as acknowledged now.
pub fn acknowledged(c: &PsiCondition, observed: &[Observed], in_progress: bool) -> bool {
    if is_event(&c.kind) {
        c.acknowledged_at.is_some() || observed.iter().any(|o| o.key == c.key && o.acknowledged)
    } else {
        in_progress
    }
}

/// The phase the inputs call for, and why.
pub fn derive(i: &Inputs<'_>) -> (Phase, String) {
    let in_progress = i.in_progress.is_some();
    let unacked: Vec<&PsiCondition> = i
        .open
        .iter()
        .filter(|c| !acknowledged(c, i.observed, in_progress))
        .collect();
    if !unacked.is_empty() {
        let kinds: BTreeSet<&str> = unacked.iter().map(|c| c.kind.as_str()).collect();
        let kinds: Vec<&str> = kinds.into_iter().collect();
        return (
            Phase::Nigredo,
            format!(
                "{} open condition(s) not acknowledged: {}",
                unacked.len(),
                kinds.join(", ")
            ),
        );
    }
    if let Some(t) = i.in_progress {
        return (
            Phase::Albedo,
            format!(
                "transmutation {} in progress with {} open condition(s) acknowledged",
                t.id,
                i.open.len()
            ),
        );
    }
    if !i.open.is_empty() {
        return (
            Phase::Nigredo,
            format!(
                "{} open condition(s) acknowledged but no transmutation in progress",
                i.open.len()
            ),
        );
    }
    let current = Phase::parse(&i.current.phase).unwrap_or(Phase::Rubedo);
    match current {
        Phase::Rubedo => (Phase::Rubedo, i.current.reason.clone()),
        Phase::Nigredo | Phase::Albedo => (
            Phase::Citrinitas,
            "no condition open: probation until a clean verification pass and the quiet period"
                .into(),
        ),
        Phase::Citrinitas => {
            let quiet = chrono::TimeDelta::from_std(i.quiet).unwrap_or(chrono::TimeDelta::MAX);
            let clean = i.last_clean_pass.is_some_and(|t| t >= i.current.since);
            if clean && i.now - i.current.since >= quiet {
                (
                    Phase::Rubedo,
                    "probation passed: clean verification pass and quiet period".into(),
                )
            } else {
                (Phase::Citrinitas, i.current.reason.clone())
            }
        }
    }
}

/// The conditions the guardian's sources show now.
pub async fn observe(
    g: &Guardian,
    nodes: &[NodeRow],
    anchor_episode: &mut Option<String>,
) -> Result<Vec<Observed>, GuardianError> {
    let mut out = Vec::new();
    for f in g.divergence_findings().await? {
        out.push(Observed {
            key: format!("divergence:{}", f.id),
            kind: "divergence",
            detail: format!(
                "{} at {}: {}",
                f.finding.scroll.as_deref().unwrap_or("proofchain"),
                f.finding.size.map_or("-".into(), |n| n.to_string()),
                f.finding.detail
            ),
            acknowledged: f.acknowledged,
            acknowledged_at: None,
            active: f.active,
        });
    }
    for d in g.discrepancies.list().await? {
        out.push(Observed {
            key: format!("federation_discrepancy:{}", d.id),
            kind: "federation_discrepancy",
            detail: format!(
                "{} with {} ({} at size {})",
                d.discrepancy_type, d.remote_mesh, d.origin, d.tree_size
            ),
            acknowledged: d.acknowledged_at.is_some(),
            acknowledged_at: d.acknowledged_at,
            active: false,
        });
    }
    if let Some(e) = g.ctx.governance.current().emergency.as_ref() {
        out.push(Observed {
            key: format!("emergency:{}", e.seq),
            kind: "emergency",
            detail: format!("raised by {}: {}", e.raised_by, e.reason),
            acknowledged: false,
            acknowledged_at: None,
            active: true,
        });
    }
    // An epoch in progress (ANCHORING) neither ends nor starts an episode: the status passes
    // through it at every epoch, failing or not.
    let anchoring = ANCHOR_STATUS.get() == status::ANCHORING;
    if ANCHOR_STATUS.get() == status::FAILED || (anchoring && anchor_episode.is_some()) {
        let key = anchor_episode
            .get_or_insert_with(|| format!("anchor_failing:{}", Utc::now().timestamp_millis()))
            .clone();
        out.push(Observed {
            key,
            kind: "anchor_failing",
            detail: "the last epoch was not stored or a sink refused it".into(),
            acknowledged: false,
            acknowledged_at: None,
            active: true,
        });
    } else if !anchoring {
        *anchor_episode = None;
    }
    let retention = Duration::from_secs(g.opts.node_retention_secs);
    for n in nodes
        .iter()
        .filter(|n| crate::mesh_watch::is_down(n, retention))
    {
        out.push(Observed {
            key: format!(
                "node_down:{}:{}",
                n.node_id,
                n.announced_at.map(|t| t.timestamp_millis()).unwrap_or(0)
            ),
            kind: "node_down",
            detail: format!("{} silent since {}", n.node_id, n.last_seen.to_rfc3339()),
            acknowledged: false,
            acknowledged_at: None,
            active: true,
        });
    }
    Ok(out)
}

/// What a leader keeps between evaluations.
#[derive(Default)]
pub struct Memory {
    anchor_episode: Option<String>,
    /// The CITRINITAS (its `since`) the last pass request was for, and when it was made.
    pass_for: Option<DateTime<Utc>>,
    pass_requested_at: Option<std::time::Instant>,
}

/// How long a requested verification pass may take before another is requested.
const PASS_RETRY: Duration = Duration::from_secs(30);

/// One evaluation as leader: record new conditions, acknowledge and resolve, derive the
/// phase, receipt and store a change, export the metrics. Times are the database's.
pub async fn evaluate(
    g: &Arc<Guardian>,
    nodes: &[NodeRow],
    memory: &mut Memory,
) -> Result<(), GuardianError> {
    let store = &g.ctx.store;
    let observed = observe(g, nodes, &mut memory.anchor_episode).await?;
    // An event first seen already acknowledged (history from before psi ran, or raised and
    // acknowledged within one interval) is not recorded as a condition.
    let seen: Vec<(String, String, String)> = observed
        .iter()
        .filter(|o| !(is_event(o.kind) && o.acknowledged))
        .map(|o| (o.key.clone(), o.kind.to_string(), o.detail.clone()))
        .collect();
    store.record_psi_conditions(&seen).await?;
    let now = store.db_now().await?;
    let skew = now - Utc::now();
    let recent = store.transmutations(RECENT_TRANSMUTATIONS).await?;
    let in_progress = recent.iter().find(|t| t.status == "in_progress");
    let open = store.open_psi_conditions().await?;
    let by_key: std::collections::BTreeMap<&str, &Observed> =
        observed.iter().map(|o| (o.key.as_str(), o)).collect();
    let last_pass = g.last_pass().map(|t| t + skew);
    let mut ack = Vec::new();
    let mut resolve = Vec::new();
    let mut pending = BTreeSet::new();
    let mut recheck = false;
    for c in &open {
        let acked = acknowledged(c, &observed, in_progress.is_some());
        if acked && c.acknowledged_at.is_none() {
            ack.push(c.key.clone());
        }
        let seen_now = by_key.get(c.key.as_str());
        if is_event(&c.kind) {
            let acked_at = c
                .acknowledged_at
                .or(seen_now.and_then(|o| o.acknowledged_at))
                .or(acked.then_some(now));
            let remediated_at = acked_at.and_then(|at| {
                recent
                    .iter()
                    .filter(|t| t.status == "completed")
                    .filter_map(|t| t.closed_at)
                    .filter(|closed| *closed >= at)
                    .max()
            });
            // A divergence is over when a transmutation completed after its acknowledgement
            // and the latest pass no longer finds it. Until a pass has run since the
            // completion it is pending (probation: a pass is asked for); if that pass still
            // finds it, the remediation failed and it stays open.
            let still_active = seen_now.is_some_and(|o| o.active);
            match remediated_at {
                Some(_) if !still_active => resolve.push(c.key.clone()),
                Some(at) if last_pass.is_none_or(|p| p <= at) => {
                    pending.insert(c.key.clone());
                    recheck = true;
                }
                _ => {}
            }
        } else if seen_now.is_none() {
            resolve.push(c.key.clone());
        }
    }
    store.acknowledge_psi_conditions(&ack).await?;
    store.resolve_psi_conditions(&resolve).await?;
    let open: Vec<PsiCondition> = if ack.is_empty() && resolve.is_empty() {
        open
    } else {
        store.open_psi_conditions().await?
    };
    let open: Vec<PsiCondition> = open
        .into_iter()
        .filter(|c| !pending.contains(&c.key))
        .collect();
    let stored = store.psi_state().await?;
    let current = stored.clone().unwrap_or_else(|| PsiState {
        phase: Phase::Rubedo.name().into(),
        since: now,
        reason: "psi started".into(),
    });
    let last_clean_pass = g.last_clean_pass().map(|t| t + skew);
    let (phase, reason) = derive(&Inputs {
        current: &current,
        open: &open,
        observed: &observed,
        in_progress,
        last_clean_pass,
        now,
        quiet: Duration::from_secs(g.opts.psi_quiet_secs),
    });
    let state = if stored.is_some() && phase.name() == current.phase {
        current
    } else {
        change(g, stored.as_ref(), phase, &reason, &open, in_progress).await?
    };
    let probation =
        state.phase == Phase::Citrinitas.name() && last_clean_pass.is_none_or(|t| t < state.since);
    if probation && memory.pass_for != Some(state.since) {
        memory.pass_for = Some(state.since);
        memory.pass_requested_at = None;
    }
    if (probation || recheck)
        && memory
            .pass_requested_at
            .is_none_or(|t| t.elapsed() > PASS_RETRY)
    {
        memory.pass_requested_at = Some(std::time::Instant::now());
        let g = g.clone();
        tokio::spawn(async move {
            if let Err(e) = g.verify_now().await {
                tracing::warn!(error = %e, "psi's verification pass failed; asked again later");
            }
        });
    }
    export(&state, &recent, now);
    Ok(())
}

/// Writes the `phase_changed` receipt, then moves the stored phase.
async fn change(
    g: &Guardian,
    from: Option<&PsiState>,
    to: Phase,
    reason: &str,
    open: &[PsiCondition],
    in_progress: Option<&Transmutation>,
) -> Result<PsiState, GuardianError> {
    g.fence().check().await?;
    let conditions: Vec<Value> = open
        .iter()
        .map(|c| json!({"key": c.key, "kind": c.kind, "acknowledged": c.acknowledged_at.is_some()}))
        .collect();
    append_receipt(
        &g.ctx.store,
        &g.ctx.gate(),
        PSI_SCROLL,
        "phase_changed",
        json!({
            "from": from.map(|s| s.phase.clone()),
            "from_since": from.map(|s| s.since),
            "to": to.name(),
            "phase_value": to.value(),
            "reason": reason,
            "open_conditions": conditions,
            "transmutation_id": in_progress.map(|t| t.id),
        }),
    )
    .await?;
    let state = g.ctx.store.set_psi_state(to.name(), reason).await?;
    tracing::warn!(
        from = from.map(|s| s.phase.as_str()),
        to = to.name(),
        reason,
        "psi phase changed"
    );
    Ok(state)
}

/// Sets the psi metrics from the stored phase and the recent transmutations at `now` (the
/// database's clock).
pub fn export(state: &PsiState, recent: &[Transmutation], now: DateTime<Utc>) {
    let phase = Phase::parse(&state.phase).unwrap_or(Phase::Rubedo);
    PSI_CURRENT_PHASE
        .with_label_values::<&str>(&[])
        .set(phase.value());
    let in_phase = (now - state.since).num_milliseconds().max(0) as f64 / 1000.0;
    for p in Phase::ALL {
        PSI_PHASE_DURATION
            .with_label_values(&[p.name()])
            .set(if p == phase { in_phase } else { 0.0 });
    }
    for t in recent {
        let id = t.id.to_string();
        for s in TRANSMUTATION_STATUSES {
            PSI_TRANSMUTATION_STATUS
                .with_label_values(&[&id, s])
                .set(if t.status == s { 1.0 } else { 0.0 });
        }
        PSI_TRANSMUTATION_STARTED
            .with_label_values(&[&id])
            .set(t.opened_at.timestamp_millis() as f64 / 1000.0);
    }
}

/// Removes every psi series (this guardian no longer leads).
pub fn retire_metrics() {
    PSI_CURRENT_PHASE.reset();
    PSI_PHASE_DURATION.reset();
    PSI_TRANSMUTATION_STATUS.reset();
    PSI_TRANSMUTATION_STARTED.reset();
}

/// The statuses a transmutation can have.
pub const TRANSMUTATION_STATUSES: [&str; 3] = ["in_progress", "completed", "abandoned"];

/// The leader's loop: every psi interval, the mesh's nodes (metrics, joins, departures) and
/// one psi evaluation; a standby exports neither.
pub async fn run(g: Arc<Guardian>, shutdown: ledger::service::Shutdown) {
    let mut ticks = tokio::time::interval(Duration::from_millis(g.opts.psi_interval_ms));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut memory = Memory::default();
    let mut was_leader = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stop => break,
        }
        let leader = g.leadership.lock().await.is_leader();
        if !leader {
            if was_leader {
                crate::mesh_watch::retire_all();
                retire_metrics();
                memory = Memory::default();
            }
            was_leader = false;
            continue;
        }
        was_leader = true;
        let nodes = match g.ctx.store.nodes().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "mesh nodes not read; psi waits");
                continue;
            }
        };
        crate::mesh_watch::pass(
            &g.ctx.store,
            &g.ctx.gate(),
            &nodes,
            Duration::from_secs(g.opts.node_departure_secs),
            crate::mesh_watch::Retention {
                silent: Duration::from_secs(g.opts.node_retention_secs),
                left: Duration::from_secs(g.opts.node_left_retention_secs),
            },
        )
        .await;
        let _serial = g.psi_lock.lock().await;
        if let Err(e) = evaluate(&g, &nodes, &mut memory).await {
            tracing::warn!(error = %e, "psi evaluation failed; retried");
        }
    }
}

/// Why a transmutation request was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransmutationError {
    /// The description or note is empty, too long or has control characters.
    #[error("{0}")]
    Invalid(String),
    /// A transmutation is already in progress (opening), or this one is not (closing).
    #[error("{0}")]
    Conflict(String),
    /// No transmutation has this id.
    #[error("transmutation {0} does not exist")]
    Unknown(i64),
    /// Only the leading guardian changes transmutations.
    #[error("this guardian is on standby; ask the leader")]
    NotLeader,
    /// The receipt or the store failed.
    #[error(transparent)]
    Ledger(#[from] GuardianError),
}

/// Checks a description or note: 1 to [`MAX_TEXT_CHARS`] characters, no control characters
/// other than newlines and tabs.
pub fn validate_text(what: &str, text: &str) -> Result<(), TransmutationError> {
    let n = text.chars().count();
    if text.trim().is_empty() || n > MAX_TEXT_CHARS {
        return Err(TransmutationError::Invalid(format!(
            "{what}: must be 1 to {MAX_TEXT_CHARS} characters"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(TransmutationError::Invalid(format!(
            "{what}: control characters are not allowed"
        )));
    }
    Ok(())
}

impl Guardian {
    /// Opens a transmutation described by `description` for admin key `by`: the
    /// `transmutation_opened` receipt first, then the row.
    pub async fn open_transmutation(
        &self,
        description: &str,
        by: &str,
    ) -> Result<Transmutation, TransmutationError> {
        validate_text("description", description)?;
        let _serial = self.psi_lock.lock().await;
        if !self.leadership.lock().await.is_leader() {
            return Err(TransmutationError::NotLeader);
        }
        let store = &self.ctx.store;
        let recent = store.transmutations(1).await.map_err(GuardianError::from)?;
        if let Some(t) = recent.iter().find(|t| t.status == "in_progress") {
            return Err(TransmutationError::Conflict(format!(
                "transmutation {} is already in progress; complete or abandon it first",
                t.id
            )));
        }
        self.fence().check().await?;
        let id = store
            .next_transmutation_id()
            .await
            .map_err(GuardianError::from)?;
        append_receipt(
            store,
            &self.ctx.gate(),
            PSI_SCROLL,
            "transmutation_opened",
            json!({"transmutation_id": id, "description": description, "opened_by": by}),
        )
        .await?;
        match store
            .open_transmutation(id, description, by)
            .await
            .map_err(GuardianError::from)?
        {
            Some(t) => Ok(t),
            None => Err(TransmutationError::Conflict(
                "another transmutation was opened at the same time".into(),
            )),
        }
    }

    /// Closes transmutation `id` as `completed` or `abandoned` for admin key `by`: the
    /// receipt first, then the row.
    pub async fn close_transmutation(
        &self,
        id: i64,
        outcome: &str,
        by: &str,
        note: Option<&str>,
    ) -> Result<Transmutation, TransmutationError> {
        if let Some(n) = note {
            validate_text("note", n)?;
        }
        let _serial = self.psi_lock.lock().await;
        if !self.leadership.lock().await.is_leader() {
            return Err(TransmutationError::NotLeader);
        }
        let store = &self.ctx.store;
        let Some(t) = store.transmutation(id).await.map_err(GuardianError::from)? else {
            return Err(TransmutationError::Unknown(id));
        };
        if t.status != "in_progress" {
            return Err(TransmutationError::Conflict(format!(
                "transmutation {id} is already {}",
                t.status
            )));
        }
        self.fence().check().await?;
        append_receipt(
            store,
            &self.ctx.gate(),
            PSI_SCROLL,
            &format!("transmutation_{outcome}"),
            json!({"transmutation_id": id, "description": t.description, "closed_by": by, "note": note}),
        )
        .await?;
        store
            .close_transmutation(id, outcome, by, note)
            .await
            .map_err(GuardianError::from)?
            .ok_or_else(|| {
                TransmutationError::Conflict(format!(
                    "transmutation {id} was closed at the same time"
                ))
            })
    }

    /// The phase, why, the open conditions and the recent transmutations, for `GET /v1/psi`.
    pub async fn psi_report(&self) -> Result<Value, GuardianError> {
        let store = &self.ctx.store;
        let state = store.psi_state().await?;
        let open = store.open_psi_conditions().await?;
        let recent = store.transmutations(RECENT_TRANSMUTATIONS).await?;
        let in_progress = recent.iter().any(|t| t.status == "in_progress");
        let conditions: Vec<Value> = open
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
                v["acknowledged"] =
                    json!(c.acknowledged_at.is_some() && (is_event(&c.kind) || in_progress));
                v
            })
            .collect();
        Ok(match state {
            Some(s) => {
                let phase = Phase::parse(&s.phase).unwrap_or(Phase::Rubedo);
                json!({
                    "phase": s.phase,
                    "phase_value": phase.value(),
                    "since": s.since,
                    "duration_seconds": (Utc::now() - s.since).num_seconds().max(0),
                    "reason": s.reason,
                    "open_conditions": conditions,
                    "transmutations": recent,
                })
            }
            None => json!({
                "phase": null,
                "reason": "psi has not run yet (no guardian has led since the mesh started)",
                "open_conditions": conditions,
                "transmutations": recent,
            }),
        })
    }
}
