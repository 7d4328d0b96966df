//! The one append gate (SPEC §5). Every write path — the portal's single and batch
//! submissions, the guardian's events, the oracle's answers — turns its receipts into an
//! [`Admitted`] batch here, and the store appends nothing else. The gate applies, in order:
//! per-item validation (anything Postgres could refuse is caught before an item joins a group
//! commit), service-owned scrolls and reserved types, and then every [`GatePolicy`] plugged
//! in (the constitution and the emergency freeze).

use crate::store::{NewReceipt, Role};
use std::sync::Arc;

/// A service that writes receipts of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The portal (scroll administration and, later, the read audit).
    Portal,
    /// The guardian (anchor events, divergence, acknowledgements).
    Guardian,
    /// The oracle (its answers).
    Oracle,
}

impl Service {
    /// The name a service's receipts carry as `submitter`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Portal => "portal",
            Service::Guardian => "guardian",
            Service::Oracle => "oracle",
        }
    }
}

/// Who asks to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// A client, by its API key.
    Client {
        /// The key's id (the receipts' `submitter`).
        key_id: String,
        /// The key's role.
        role: Role,
        /// Scrolls a writer key is limited to (`None`: all).
        scrolls: Option<Vec<String>>,
    },
    /// One of the mesh's own services.
    Service(Service),
}

impl Writer {
    /// The writer of an API key.
    pub fn client(key: &crate::store::ApiKey) -> Self {
        Writer::Client {
            key_id: key.id.clone(),
            role: key.role,
            scrolls: key.scrolls.clone(),
        }
    }

    /// The `submitter` its receipts carry.
    pub fn submitter(&self) -> &str {
        match self {
            Writer::Client { key_id, .. } => key_id,
            Writer::Service(s) => s.name(),
        }
    }
}

/// Why the gate refused a batch. Each maps to one status in [`crate::api_error::ApiError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// The writer may not write this scroll or type (403).
    #[error("{message}")]
    Forbidden {
        /// Stable error code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// An item is malformed (400).
    #[error("{message}")]
    Invalid {
        /// Stable error code.
        code: &'static str,
        /// Explanation naming the field at fault.
        message: String,
    },
    /// An item breaks a rule of the constitution (422).
    #[error("{message}")]
    Violation {
        /// The rule broken.
        rule: String,
        /// The field at fault.
        field: String,
        /// Explanation.
        message: String,
    },
    /// Writes are frozen (503 with Retry-After).
    #[error("{message}")]
    Frozen {
        /// Explanation (the emergency's reason).
        message: String,
        /// Seconds a client should wait before trying again.
        retry_after_secs: u64,
    },
    /// What the policies enforce is not known yet (the governance state could not be read
    /// from Postgres since start), so nothing is admitted (503).
    #[error("{message}")]
    Unavailable {
        /// Explanation.
        message: String,
    },
}

/// A rule set consulted for every batch after the gate's own checks: the constitution and the
/// emergency freeze implement this.
pub trait GatePolicy: Send + Sync {
    /// Refuses `items` for `scroll` from `writer`, or lets them through.
    fn check(&self, writer: &Writer, scroll: &str, items: &[NewReceipt]) -> Result<(), GateError>;
}

const ALL_SERVICES: &[Service] = &[Service::Portal, Service::Guardian, Service::Oracle];

/// Scrolls only the mesh's own services write (SPEC §6, §13): the guardian's events,
/// federation evidence and psi phases, mesh health (any service), the read audit, and governance (adoptions, emergencies, violations —
/// any service).
pub const SERVICE_SCROLLS: [(&str, &[Service]); 6] = [
    ("guardian", &[Service::Guardian]),
    ("federation", &[Service::Guardian]),
    ("mesh", ALL_SERVICES),
    ("psi", &[Service::Guardian]),
    ("access", &[Service::Portal]),
    ("governance", ALL_SERVICES),
];

/// Receipt types reserved to the services that own them (SPEC §5, §13), wherever written.
pub const RESERVED_TYPES: [(&str, &[Service]); 22] = [
    ("oracle_answer", &[Service::Oracle]),
    ("anchor_success", &[Service::Guardian]),
    ("anchor_failure", &[Service::Guardian]),
    ("anchor_divergence", &[Service::Guardian]),
    ("divergence_acknowledged", &[Service::Guardian]),
    ("federation_discrepancy", &[Service::Guardian]),
    ("federation_discrepancy_acknowledged", &[Service::Guardian]),
    ("witness_cosigned", &[Service::Guardian]),
    ("phase_changed", &[Service::Guardian]),
    ("transmutation_opened", &[Service::Guardian]),
    ("transmutation_completed", &[Service::Guardian]),
    ("transmutation_abandoned", &[Service::Guardian]),
    ("node_joined", &[Service::Guardian]),
    ("node_departed", &[Service::Guardian]),
    ("node_removed", &[Service::Guardian]),
    ("route_state_changed", ALL_SERVICES),
    ("constitution_adopted", ALL_SERVICES),
    ("constitutional_violation", ALL_SERVICES),
    ("emergency_raised", ALL_SERVICES),
    ("emergency_lifted", ALL_SERVICES),
    ("scroll_created", ALL_SERVICES),
    ("access_recorded", &[Service::Portal]),
];

/// Longest idempotency key (SPEC §7), in bytes of printable ASCII.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A batch the gate let through for one scroll, with each item's `submitter` set to its
/// writer. Only the gate makes these, so the store can append nothing it did not check.
#[derive(Debug, Clone)]
pub struct Admitted {
    scroll: String,
    items: Vec<NewReceipt>,
}

impl Admitted {
    /// The scroll the batch goes to.
    pub fn scroll(&self) -> &str {
        &self.scroll
    }

    /// The admitted items.
    pub fn items(&self) -> &[NewReceipt] {
        &self.items
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Joins batches admitted for the same scroll (a group commit); `None` if they name
    /// different scrolls or there are none.
    pub fn join(parts: Vec<Admitted>) -> Option<Admitted> {
        let mut parts = parts.into_iter();
        let mut first = parts.next()?;
        for p in parts {
            if p.scroll != first.scroll {
                return None;
            }
            first.items.extend(p.items);
        }
        Some(first)
    }

    /// The scroll and items, for the store to write.
    pub(crate) fn into_parts(self) -> (String, Vec<NewReceipt>) {
        (self.scroll, self.items)
    }

    /// Re-wraps items the store handed back unwritten (they were admitted already).
    pub(crate) fn from_parts(scroll: String, items: Vec<NewReceipt>) -> Self {
        Self { scroll, items }
    }
}

/// The gate: its own checks plus the policies plugged in.
#[derive(Clone, Default)]
pub struct AppendGate {
    policies: Vec<Arc<dyn GatePolicy>>,
}

impl AppendGate {
    /// A gate with no policies beyond its own checks.
    pub fn new() -> Self {
        Self::default()
    }

    /// This gate with `policy` consulted after the built-in checks.
    pub fn with_policy(mut self, policy: Arc<dyn GatePolicy>) -> Self {
        self.policies.push(policy);
        self
    }

    /// Checks `items` for `scroll` from `writer`: all are admitted, or none.
    pub fn admit(
        &self,
        writer: &Writer,
        scroll: &str,
        mut items: Vec<NewReceipt>,
    ) -> Result<Admitted, GateError> {
        crate::receipt::validate_scroll_name(scroll).map_err(|e| GateError::Invalid {
            code: "invalid_scroll_name",
            message: e.to_string(),
        })?;
        if items.is_empty() {
            return Err(GateError::Invalid {
                code: "batch_size",
                message: "nothing to append".into(),
            });
        }
        let several = items.len() > 1;
        for (i, item) in items.iter_mut().enumerate() {
            let at = if several {
                format!("receipts[{i}]")
            } else {
                "body".to_string()
            };
            validate_item(item, &at)?;
            item.submitter = writer.submitter().to_string();
        }
        check_ownership(writer, scroll, &items)?;
        for p in &self.policies {
            p.check(writer, scroll, &items)?;
        }
        Ok(Admitted {
            scroll: scroll.to_string(),
            items,
        })
    }
}

/// Separates a batch's idempotency key from an item's index; a client key (printable ASCII)
/// can never contain it.
pub const BATCH_ITEM_SEPARATOR: char = '\u{1f}';

impl AppendGate {
    /// [`AppendGate::admit`] for a batch sent under one idempotency key: item `i` is keyed
    /// `<key>␟<i>` and remembers `batch_hash`, so a replay matches only the identical batch.
    pub fn admit_keyed(
        &self,
        writer: &Writer,
        scroll: &str,
        items: Vec<NewReceipt>,
        key: &str,
        batch_hash: crate::hash::Hash,
    ) -> Result<Admitted, GateError> {
        validate_idempotency_key(key)?;
        let mut admitted = self.admit(writer, scroll, items)?;
        for (i, item) in admitted.items.iter_mut().enumerate() {
            item.idempotency_key = Some(format!("{key}{BATCH_ITEM_SEPARATOR}{i}"));
            item.request_hash = Some(batch_hash);
        }
        Ok(admitted)
    }
}

/// Per-item checks: anything that would make Postgres refuse the row, or a client misread
/// what was stored.
fn validate_item(item: &NewReceipt, at: &str) -> Result<(), GateError> {
    let kind = &item.draft.kind;
    if kind.is_empty() || kind.chars().count() > crate::receipt::MAX_TYPE_CHARS {
        return Err(GateError::Invalid {
            code: "invalid_type",
            message: format!(
                "{at}.type: must be 1 to {} characters",
                crate::receipt::MAX_TYPE_CHARS
            ),
        });
    }
    if let Some(c) = kind.chars().find(|c| c.is_control()) {
        return Err(GateError::Invalid {
            code: "invalid_type",
            message: format!(
                "{at}.type: control character U+{:04X} is not allowed",
                u32::from(c)
            ),
        });
    }
    if let Some(k) = &item.idempotency_key {
        validate_idempotency_key(k)?;
    }
    Ok(())
}

/// An idempotency key is 1 to 255 printable ASCII characters (SPEC §7).
pub fn validate_idempotency_key(key: &str) -> Result<(), GateError> {
    let printable = key.bytes().all(|b| (0x20..0x7f).contains(&b));
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !printable {
        return Err(GateError::Invalid {
            code: "invalid_idempotency_key",
            message: format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
            ),
        });
    }
    Ok(())
}

/// Who may write where: service-owned scrolls, reserved types, and a client key's role and
/// scroll list.
fn check_ownership(writer: &Writer, scroll: &str, items: &[NewReceipt]) -> Result<(), GateError> {
    let service = match writer {
        Writer::Service(s) => Some(*s),
        Writer::Client { .. } => None,
    };
    if let Some((_, owners)) = SERVICE_SCROLLS.iter().find(|(name, _)| *name == scroll) {
        if !service.is_some_and(|s| owners.contains(&s)) {
            let names: Vec<&str> = owners.iter().map(|s| s.name()).collect();
            return Err(GateError::Forbidden {
                code: "service_owned_scroll",
                message: format!(
                    "scroll {scroll:?} is written only by the {}",
                    names.join(", ")
                ),
            });
        }
    }
    for item in items {
        if let Some((kind, owners)) = RESERVED_TYPES
            .iter()
            .find(|(kind, _)| *kind == item.draft.kind)
        {
            if !service.is_some_and(|s| owners.contains(&s)) {
                let names: Vec<&str> = owners.iter().map(|s| s.name()).collect();
                return Err(GateError::Forbidden {
                    code: "reserved_type",
                    message: format!(
                        "receipt type {kind:?} is reserved to the {}",
                        names.join(", ")
                    ),
                });
            }
        }
    }
    if let Writer::Client {
        key_id,
        role,
        scrolls,
    } = writer
    {
        match role {
            Role::Admin => {}
            Role::Writer => {
                if let Some(list) = scrolls {
                    if !list.iter().any(|s| s == scroll) {
                        return Err(GateError::Forbidden {
                            code: "forbidden",
                            message: format!("key {key_id} may not write to scroll {scroll:?}"),
                        });
                    }
                }
            }
            Role::Reader => {
                return Err(GateError::Forbidden {
                    code: "forbidden",
                    message: format!("key {key_id} is a reader and cannot write"),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::ReceiptDraft;

    fn item(kind: &str) -> NewReceipt {
        NewReceipt {
            draft: ReceiptDraft::new(kind, serde_json::json!({})).unwrap_or_else(|e| panic!("{e}")),
            submitter: "forged".into(),
            idempotency_key: None,
            request_hash: None,
        }
    }

    fn writer(role: Role, scrolls: Option<Vec<String>>) -> Writer {
        Writer::Client {
            key_id: "key_w".into(),
            role,
            scrolls,
        }
    }

    fn refused(r: Result<Admitted, GateError>) -> GateError {
        match r {
            Ok(a) => panic!("admitted {:?}", a.items()),
            Err(e) => e,
        }
    }

    #[test]
    fn clients_cannot_write_service_scrolls_or_reserved_types() {
        let gate = AppendGate::new();
        let admin = writer(Role::Admin, None);
        for scroll in ["guardian", "access", "governance"] {
            let e = refused(gate.admit(&admin, scroll, vec![item("note")]));
            assert!(matches!(
                e,
                GateError::Forbidden {
                    code: "service_owned_scroll",
                    ..
                }
            ));
        }
        for (kind, _) in RESERVED_TYPES {
            let e = refused(gate.admit(&admin, "drills", vec![item("ok"), item(kind)]));
            assert!(
                matches!(
                    e,
                    GateError::Forbidden {
                        code: "reserved_type",
                        ..
                    }
                ),
                "{kind}"
            );
        }
        let e = refused(gate.admit(
            &Writer::Service(Service::Portal),
            "guardian",
            vec![item("x")],
        ));
        assert!(matches!(e, GateError::Forbidden { .. }));
        let e = refused(gate.admit(
            &Writer::Service(Service::Portal),
            "compliance",
            vec![item("oracle_answer")],
        ));
        assert!(matches!(
            e,
            GateError::Forbidden {
                code: "reserved_type",
                ..
            }
        ));
    }

    #[test]
    fn owners_write_their_own_and_submitter_is_the_writer() {
        let gate = AppendGate::new();
        let g = Writer::Service(Service::Guardian);
        let a = gate
            .admit(&g, "guardian", vec![item("anchor_success")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.items()[0].submitter, "guardian");
        let o = Writer::Service(Service::Oracle);
        let a = gate
            .admit(&o, "compliance", vec![item("oracle_answer")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.items()[0].submitter, "oracle");
        let w = writer(Role::Writer, Some(vec!["drills".into()]));
        let a = gate
            .admit(&w, "drills", vec![item("drill_completed")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.items()[0].submitter, "key_w");
        assert!(gate.admit(&w, "treasury", vec![item("x")]).is_err());
        assert!(gate
            .admit(&writer(Role::Reader, None), "drills", vec![item("x")])
            .is_err());
    }

    #[test]
    fn control_characters_and_bad_keys_are_refused_per_item() {
        let gate = AppendGate::new();
        let admin = writer(Role::Admin, None);
        for kind in ["x\u{0}", "\u{0}", "a\u{7f}", "b\u{85}", "tab\there", "nl\n"] {
            let e = refused(gate.admit(&admin, "drills", vec![item("fine"), item(kind)]));
            assert!(
                matches!(&e, GateError::Invalid { code: "invalid_type", message } if message.starts_with("receipts[1].type")),
                "{kind:?}: {e:?}"
            );
        }
        for key in ["", "é", "a\u{1f}0", &"k".repeat(256)] {
            let mut it = item("fine");
            it.idempotency_key = Some(key.to_string());
            let e = refused(gate.admit(&admin, "drills", vec![it]));
            assert!(matches!(
                e,
                GateError::Invalid {
                    code: "invalid_idempotency_key",
                    ..
                }
            ));
        }
        let mut it = item("fine");
        it.idempotency_key = Some("k".repeat(255));
        assert!(gate.admit(&admin, "drills", vec![it]).is_ok());
    }

    struct Frozen;
    impl GatePolicy for Frozen {
        fn check(&self, _: &Writer, _: &str, _: &[NewReceipt]) -> Result<(), GateError> {
            Err(GateError::Frozen {
                message: "frozen".into(),
                retry_after_secs: 5,
            })
        }
    }

    #[test]
    fn policies_run_after_the_built_in_checks() {
        let gate = AppendGate::new().with_policy(Arc::new(Frozen));
        let admin = writer(Role::Admin, None);
        assert!(matches!(
            refused(gate.admit(&admin, "guardian", vec![item("x")])),
            GateError::Forbidden { .. }
        ));
        assert!(matches!(
            refused(gate.admit(&admin, "drills", vec![item("x")])),
            GateError::Frozen { .. }
        ));
    }

    #[test]
    fn joined_batches_keep_one_scroll() {
        let gate = AppendGate::new();
        let admin = writer(Role::Admin, None);
        let a = gate.admit(&admin, "drills", vec![item("a")]);
        let b = gate.admit(&admin, "drills", vec![item("b"), item("c")]);
        let c = gate.admit(&admin, "treasury", vec![item("d")]);
        let (Ok(a), Ok(b), Ok(c)) = (a, b, c) else {
            panic!("not admitted")
        };
        let joined = Admitted::join(vec![a.clone(), b]).map(|j| j.len());
        assert_eq!(joined, Some(3));
        assert!(Admitted::join(vec![a, c]).is_none());
    }
}

/// Why a service's own receipt was not written.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAppendError {
    /// The type or payload is not a valid receipt.
    #[error(transparent)]
    Receipt(#[from] crate::receipt::ReceiptError),
    /// The gate (or the constitution, or a freeze) refused it.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Writes one receipt of `kind` to `scroll` as `service`, through `gate`: the path every
/// service's own evidence (mesh, psi) takes.
pub async fn append_service_receipt(
    store: &crate::store::Store,
    gate: &AppendGate,
    service: Service,
    scroll: &str,
    kind: &str,
    payload: serde_json::Value,
) -> Result<(), ServiceAppendError> {
    let writer = Writer::Service(service);
    let item = NewReceipt {
        draft: crate::receipt::ReceiptDraft::new(kind, payload)?,
        submitter: writer.submitter().to_string(),
        idempotency_key: None,
        request_hash: None,
    };
    let admitted = gate.admit(&writer, scroll, vec![item])?;
    store.append_receipts(admitted, true).await?;
    Ok(())
}
