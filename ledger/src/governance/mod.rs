//! Governance (SPEC §13): the constitution and the emergency freeze, enforced at the one
//! append gate of every service. The state lives in the `governance` scroll as receipts;
//! every service loads the newest at start, reloads on a Postgres notification or a poll,
//! and plugs a [`Governance`] into its gate as a [`GatePolicy`].

pub mod constitution;
pub mod emergency;
pub mod routes;
pub mod violations;
mod watch;

use crate::gate::{AppendGate, GateError, GatePolicy, Service, Writer};
use crate::receipt::ReceiptDraft;
use crate::service::Shutdown;
use crate::store::{
    AppendOutcome, GovernanceChangeLock, NewReceipt, Store, StoreError, StoredReceipt,
};
use constitution::Constitution;
use emergency::Emergency;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde_json::{json, Value};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use violations::ViolationLog;

/// The scroll governance receipts live in.
pub const GOVERNANCE_SCROLL: &str = "governance";

/// Longest wait for another service's governance change to finish before a change is
/// refused with 503.
const CHANGE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Scrolls whose service-written receipts the constitution does not govern, so that no
/// constitution can stop governance or the read audit from recording.
const UNGOVERNED_SERVICE_SCROLLS: [&str; 2] = ["governance", "access"];

/// How a service runs its governance: how often it polls, how long a violation window is,
/// and the Retry-After of a frozen write.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct GovernanceSettings {
    /// Poll interval (the fallback behind LISTEN/NOTIFY).
    #[serde(with = "crate::config::millis_serde")]
    pub poll: Duration,
    /// Violations are receipted once per window per (scroll, rule).
    #[serde(with = "crate::config::millis_serde")]
    pub violation_window: Duration,
    /// Retry-After of a write refused by the freeze, in seconds.
    pub retry_after_secs: u64,
}

impl Default for GovernanceSettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(500),
            violation_window: Duration::from_secs(60),
            retry_after_secs: 30,
        }
    }
}

/// A constitution in force and the receipt that adopted it.
#[derive(Debug, Clone)]
pub struct Adopted {
    /// The compiled rules.
    pub constitution: Arc<Constitution>,
    /// The `constitution_adopted` receipt.
    pub receipt: StoredReceipt,
}

/// What the gate enforces now.
#[derive(Debug, Clone, Default)]
pub struct InForce {
    /// The constitution in force, if one was ever adopted.
    pub constitution: Option<Adopted>,
    /// The emergency raised, if any.
    pub emergency: Option<Emergency>,
    /// Newest state receipt seen (the poll's marker).
    marker: Option<u64>,
    /// Whether the state was read from Postgres at least once.
    loaded: bool,
}

/// Governance metrics of one service's registry.
#[derive(Clone)]
struct Metrics {
    violations: IntCounterVec,
    emergency: IntGauge,
}

struct Inner {
    service: Service,
    store: Store,
    settings: GovernanceSettings,
    state: RwLock<Arc<InForce>>,
    metrics: Metrics,
    violations: ViolationLog,
    reload: tokio::sync::Mutex<()>,
    recorder: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    listening: std::sync::atomic::AtomicBool,
}

/// One service's view of governance: the state in force, its metrics and its violation log.
/// Cheap to clone; every clone shares the state.
#[derive(Clone)]
pub struct Governance {
    inner: Arc<Inner>,
}

/// Why a governance action failed.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gate refused the receipt.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// The receipt could not be built.
    #[error(transparent)]
    Receipt(#[from] crate::receipt::ReceiptError),
    /// The receipt was not written.
    #[error("the governance receipt was not written")]
    NotWritten,
}

impl Governance {
    /// Registers the governance metrics in `registry`, reads the state from Postgres once
    /// (a failure leaves the gate closed until a later read succeeds), and starts the watcher
    /// (LISTEN plus poll) and the violation recorder, both stopping with `shutdown`.
    pub async fn start(
        service: Service,
        store: Store,
        listen_url: String,
        registry: &Registry,
        settings: GovernanceSettings,
        shutdown: Shutdown,
    ) -> Result<Self, prometheus::Error> {
        let gov = Self::new(service, store, registry, settings)?;
        if let Err(e) = gov.refresh().await {
            tracing::warn!(error = %e, "governance state unreadable at start; writes wait for it");
        }
        tokio::spawn(watch::run(gov.clone(), listen_url, shutdown.clone()));
        let recorder = tokio::spawn(record_violations(gov.clone(), shutdown));
        if let Ok(mut slot) = gov.inner.recorder.lock() {
            *slot = Some(recorder);
        }
        Ok(gov)
    }

    fn new(
        service: Service,
        store: Store,
        registry: &Registry,
        settings: GovernanceSettings,
    ) -> Result<Self, prometheus::Error> {
        let violations = IntCounterVec::new(
            Opts::new(
                "vaultmesh_governance_violations_total",
                "Writes refused by the constitution, by scroll and rule",
            ),
            &["scroll", "rule"],
        )?;
        let emergency = IntGauge::new(
            "vaultmesh_governance_emergency_active",
            "1 while an emergency freeze is raised",
        )?;
        registry.register(Box::new(violations.clone()))?;
        registry.register(Box::new(emergency.clone()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                service,
                store,
                settings,
                state: RwLock::new(Arc::new(InForce::default())),
                metrics: Metrics {
                    violations,
                    emergency,
                },
                violations: ViolationLog::default(),
                reload: tokio::sync::Mutex::new(()),
                recorder: std::sync::Mutex::new(None),
                listening: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// What is in force now.
    pub fn current(&self) -> Arc<InForce> {
        match self.inner.state.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The violation recorder's task, for the running service to await at shutdown (its last
    /// window is receipted then); `None` once taken.
    pub fn take_recorder(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.inner.recorder.lock().ok().and_then(|mut r| r.take())
    }

    /// The refusal of a write that is not a receipt (creating a scroll) or that would end in
    /// one (an oracle answer) while an emergency is raised; `None` when writes are open.
    pub fn frozen(&self) -> Option<GateError> {
        self.current()
            .emergency
            .as_ref()
            .map(|e| GateError::Frozen {
                message: format!("writes are frozen by an emergency: {}", e.reason),
                retry_after_secs: self.inner.settings.retry_after_secs,
            })
    }

    /// Whether the watcher holds a LISTEN connection now (otherwise changes arrive by poll).
    pub fn listening(&self) -> bool {
        self.inner
            .listening
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_listening(&self, on: bool) {
        self.inner
            .listening
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The service this view belongs to.
    pub fn service(&self) -> Service {
        self.inner.service
    }

    /// The settings in use.
    pub fn settings(&self) -> GovernanceSettings {
        self.inner.settings
    }

    /// An append gate with this governance plugged in.
    pub fn gate(&self) -> AppendGate {
        AppendGate::new().with_policy(Arc::new(self.clone()))
    }

    /// Reloads the state if the newest governance receipt changed (or was never read);
    /// returns whether it reloaded.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        let marker = self.inner.store.governance_marker().await?;
        self.refresh_at(marker).await
    }

    /// Reloads the state if `marker` (the newest governance receipt's seq, as just read) is
    /// not the one loaded; returns whether it reloaded.
    pub async fn refresh_at(&self, marker: Option<u64>) -> Result<bool, StoreError> {
        let _one = self.inner.reload.lock().await;
        let now = self.current();
        if now.loaded && now.marker == marker {
            return Ok(false);
        }
        let store = &self.inner.store;
        // The newest adoption that parses rules; one that does not (it cannot come through
        // the API, which validates) is logged and passed over.
        let mut constitution = None;
        for receipt in store
            .latest_governance_receipts(&["constitution_adopted"], 8)
            .await?
        {
            match adopted_from(&receipt) {
                Ok(c) => {
                    constitution = Some(Adopted {
                        constitution: Arc::new(c),
                        receipt,
                    });
                    break;
                }
                Err(e) => {
                    tracing::error!(seq = receipt.receipt.seq, error = %e, "a constitution receipt does not parse; the one before it rules");
                }
            }
        }
        let emergency = store
            .latest_governance_receipt(&["emergency_raised", "emergency_lifted"])
            .await?
            .and_then(|r| Emergency::from_receipt(&r));
        if let Some(c) = &constitution {
            let changed = now
                .constitution
                .as_ref()
                .is_none_or(|old| old.receipt.receipt.seq != c.receipt.receipt.seq);
            if changed {
                self.init_violation_series(&c.constitution).await;
                tracing::info!(
                    version = c.constitution.version(),
                    seq = c.receipt.receipt.seq,
                    "constitution in force"
                );
            }
        }
        if emergency.is_some() != now.emergency.is_some() || !now.loaded {
            match &emergency {
                Some(e) => {
                    tracing::warn!(reason = %e.reason, raised_by = %e.raised_by, "emergency freeze in force")
                }
                None if now.emergency.is_some() => tracing::info!("emergency freeze lifted"),
                None => {}
            }
        }
        self.inner
            .metrics
            .emergency
            .set(i64::from(emergency.is_some()));
        let next = InForce {
            constitution,
            emergency,
            marker,
            loaded: true,
        };
        match self.inner.state.write() {
            Ok(mut s) => *s = Arc::new(next),
            Err(p) => *p.into_inner() = Arc::new(next),
        }
        Ok(true)
    }

    /// Sets every rule's violation counter to zero (for scrolls the document names, and for
    /// `*` rules every existing scroll), so an alert's `increase()` sees the first violation.
    async fn init_violation_series(&self, c: &Constitution) {
        let scrolls = match self.inner.store.list_scrolls().await {
            Ok(s) => s.into_iter().map(|s| s.name).collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        let named: std::collections::HashSet<String> =
            c.rule_names().into_iter().map(|(s, _)| s).collect();
        for (scroll, rule) in c.rule_names() {
            if scroll == constitution::ANY_SCROLL {
                for s in scrolls.iter().filter(|s| !named.contains(*s)) {
                    self.inner.metrics.violations.with_label_values(&[s, &rule]);
                }
            } else {
                self.inner
                    .metrics
                    .violations
                    .with_label_values(&[&scroll, &rule]);
            }
        }
    }

    /// Takes the mesh-wide governance change lock (see
    /// [`Store::lock_governance_changes`]); hold it across the re-read, the check and
    /// [`Self::append`].
    pub async fn lock_changes(&self) -> Result<GovernanceChangeLock, StoreError> {
        self.inner
            .store
            .lock_governance_changes(CHANGE_LOCK_WAIT)
            .await
    }

    /// Writes one governance receipt as this service, tells every service, and reloads.
    pub async fn append(
        &self,
        kind: &str,
        payload: Value,
    ) -> Result<StoredReceipt, GovernanceError> {
        let draft = ReceiptDraft::new(kind, payload)?;
        let writer = Writer::Service(self.inner.service);
        let item = NewReceipt {
            draft,
            submitter: writer.submitter().to_string(),
            idempotency_key: None,
            request_hash: None,
        };
        let admitted = self.gate().admit(&writer, GOVERNANCE_SCROLL, vec![item])?;
        let out = self.inner.store.append_receipts(admitted, true).await?;
        let Some(AppendOutcome::Created(stored)) = out.into_iter().next() else {
            return Err(GovernanceError::NotWritten);
        };
        if let Err(e) = self.inner.store.notify_governance().await {
            tracing::warn!(error = %e, "could not notify the other services; they will poll");
        }
        self.refresh().await?;
        Ok(stored)
    }

    /// Writes the window's violation receipts (one per scroll and rule).
    pub async fn flush_violations(&self) -> Result<usize, GovernanceError> {
        let payloads = self.inner.violations.take();
        if payloads.is_empty() {
            return Ok(0);
        }
        let writer = Writer::Service(self.inner.service);
        let mut items = Vec::with_capacity(payloads.len());
        for p in &payloads {
            items.push(NewReceipt {
                draft: ReceiptDraft::new("constitutional_violation", p.clone())?,
                submitter: writer.submitter().to_string(),
                idempotency_key: None,
                request_hash: None,
            });
        }
        let n = items.len();
        let written = match self.gate().admit(&writer, GOVERNANCE_SCROLL, items) {
            Ok(admitted) => self
                .inner
                .store
                .append_receipts(admitted, true)
                .await
                .map_err(GovernanceError::from),
            Err(e) => Err(e.into()),
        };
        match written {
            Ok(_) => Ok(n),
            Err(e) => {
                self.inner.violations.restore(payloads);
                Err(e)
            }
        }
    }
}

/// The constitution a `constitution_adopted` receipt holds.
fn adopted_from(r: &StoredReceipt) -> Result<Constitution, constitution::ConstitutionError> {
    let doc = r
        .receipt
        .payload
        .get("constitution")
        .cloned()
        .unwrap_or(Value::Null);
    Constitution::parse(doc)
}

impl GatePolicy for Governance {
    fn check(&self, writer: &Writer, scroll: &str, items: &[NewReceipt]) -> Result<(), GateError> {
        let state = self.current();
        if !state.loaded {
            return Err(GateError::Unavailable {
                message: "governance state not read from the database yet".into(),
            });
        }
        if state.emergency.is_some() && !emergency::writable_when_frozen(writer, scroll) {
            if let Some(refusal) = self.frozen() {
                return Err(refusal);
            }
        }
        if matches!(writer, Writer::Service(_)) && UNGOVERNED_SERVICE_SCROLLS.contains(&scroll) {
            return Ok(());
        }
        let Some(adopted) = &state.constitution else {
            return Ok(());
        };
        match adopted.constitution.check(writer, scroll, items) {
            Ok(()) => Ok(()),
            Err(b) => {
                self.inner
                    .metrics
                    .violations
                    .with_label_values(&[scroll, &b.rule])
                    .inc();
                let kind = items
                    .iter()
                    .map(|i| i.draft.kind.as_str())
                    .next()
                    .unwrap_or_default();
                self.inner.violations.record(scroll, &b, writer, kind);
                tracing::info!(scroll, rule = %b.rule, field = %b.field, writer = writer.submitter(), "write refused by the constitution");
                Err(b.into())
            }
        }
    }
}

/// Receipts the violation log once per window, and once more at shutdown.
async fn record_violations(gov: Governance, shutdown: Shutdown) {
    let window = gov
        .inner
        .settings
        .violation_window
        .max(Duration::from_millis(100));
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let stopping = tokio::select! {
            _ = &mut stop => true,
            _ = tokio::time::sleep(window) => false,
        };
        match gov.flush_violations().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(receipts = n, "constitutional violations receipted"),
            Err(e) => {
                tracing::warn!(error = %e, "could not receipt constitutional violations; kept for the next window")
            }
        }
        if stopping {
            break;
        }
    }
}

/// The `constitution_adopted` payload for `document` adopted by `key_id`.
pub fn adoption_payload(
    c: &Constitution,
    key_id: &str,
) -> Result<Value, crate::jcs::CanonicalError> {
    let canonical = crate::jcs::to_vec(c.document())?;
    Ok(json!({
        "version": c.version(),
        "adopted_by": key_id,
        "sha3": crate::hash::to_hex(&crate::hash::Sha3Hasher::plain(&canonical)),
        "constitution": c.document(),
    }))
}
