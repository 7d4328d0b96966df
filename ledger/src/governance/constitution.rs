//! The constitution (SPEC §13): a versioned JSON document of per-scroll rules — which receipt
//! types may be written, the payload each type must have (a JSON Schema), the largest payload,
//! and which roles, key ids or services may write which types. It is parsed once, at adoption
//! or load, into matchers the append gate runs on every item.

use crate::gate::{GateError, Service, Writer};
use crate::store::{NewReceipt, Role};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

/// Largest constitution document, in bytes of canonical JSON: it is stored whole in one
/// `constitution_adopted` receipt, whose payload is capped at 64 KiB.
pub const MAX_DOCUMENT_BYTES: usize = 48 * 1024;

/// The scroll key whose rules apply to every scroll the document does not name.
pub const ANY_SCROLL: &str = "*";

/// Why a document is not a valid constitution (400 `invalid_constitution`, naming the rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConstitutionError {
    /// Where in the document, e.g. `scrolls.drills.payload["drill_*"]`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

fn bad(path: impl Into<String>, message: impl Into<String>) -> ConstitutionError {
    ConstitutionError {
        path: path.into(),
        message: message.into(),
    }
}

/// A receipt-type pattern: an exact name, or a prefix written `prefix*` (`*` alone: any).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(text: &str, path: &str) -> Result<Self, ConstitutionError> {
        let (body, prefix) = match text.strip_suffix('*') {
            Some(p) => (p, true),
            None => (text, false),
        };
        if body.contains('*') {
            return Err(bad(path, "`*` may only end a type pattern"));
        }
        if text.is_empty() || text.chars().count() > crate::receipt::MAX_TYPE_CHARS {
            return Err(bad(path, "a type pattern is 1 to 128 characters"));
        }
        if text.chars().any(char::is_control) {
            return Err(bad(
                path,
                "control characters are not allowed in a type pattern",
            ));
        }
        Ok(if prefix {
            Pattern::Prefix(body.to_string())
        } else {
            Pattern::Exact(body.to_string())
        })
    }

    fn matches(&self, kind: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == kind,
            Pattern::Prefix(p) => kind.starts_with(p.as_str()),
        }
    }
}

/// Receipt types a scroll admits: exact names in a set, prefixes in a list.
#[derive(Debug, Clone, Default)]
struct TypeSet {
    exact: HashSet<String>,
    prefixes: Vec<String>,
}

impl TypeSet {
    fn admits(&self, kind: &str) -> bool {
        self.exact.contains(kind) || self.prefixes.iter().any(|p| kind.starts_with(p.as_str()))
    }
}

/// Who may write the types a writers rule covers.
#[derive(Debug, Clone, Default)]
struct WriterSet {
    roles: Vec<Role>,
    key_ids: HashSet<String>,
    services: Vec<Service>,
}

impl WriterSet {
    fn admits(&self, writer: &Writer) -> bool {
        match writer {
            Writer::Client { key_id, role, .. } => {
                self.roles.contains(role) || self.key_ids.contains(key_id)
            }
            Writer::Service(s) => self.services.contains(s),
        }
    }
}

/// A payload rule: the types it covers and the JSON Schema their payloads must satisfy.
struct PayloadRule {
    name: String,
    pattern: Pattern,
    schema: jsonschema::Validator,
}

/// A writers rule: the types it covers and who may write them.
struct WritersRule {
    name: String,
    pattern: Pattern,
    writers: WriterSet,
}

/// The compiled rules of one scroll (or of [`ANY_SCROLL`]).
#[derive(Default)]
struct ScrollRules {
    types: Option<(String, TypeSet)>,
    max_payload: Option<(String, usize)>,
    payload: Vec<PayloadRule>,
    writers: Vec<WritersRule>,
}

/// A validated constitution: the document as adopted and its compiled rules.
pub struct Constitution {
    document: Value,
    version: u64,
    scrolls: BTreeMap<String, ScrollRules>,
}

impl std::fmt::Debug for Constitution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constitution")
            .field("version", &self.version)
            .field("rules", &self.rule_names().len())
            .finish()
    }
}

/// A rule an item broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// The scroll whose rules apply (the key in the document: a name or `*`).
    pub scroll: String,
    /// The rule's name, e.g. `drills.types` or `drills.payload[drill_*]`.
    pub rule: String,
    /// The field at fault, e.g. `receipts[2].payload.drill_id`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl From<Breach> for GateError {
    fn from(b: Breach) -> Self {
        GateError::Violation {
            rule: b.rule,
            field: b.field,
            message: b.message,
        }
    }
}

impl Constitution {
    /// Parses and validates a document; every error names the rule at fault.
    pub fn parse(document: Value) -> Result<Self, ConstitutionError> {
        let size = crate::jcs::to_vec(&document)
            .map_err(|e| bad("document", e.to_string()))?
            .len();
        if size > MAX_DOCUMENT_BYTES {
            return Err(bad(
                "document",
                format!("{size} bytes of canonical JSON; at most {MAX_DOCUMENT_BYTES}"),
            ));
        }
        let Value::Object(top) = &document else {
            return Err(bad("document", "must be a JSON object"));
        };
        only_fields(top, "document", &["version", "description", "scrolls"])?;
        let version = top
            .get("version")
            .and_then(Value::as_u64)
            .filter(|v| (1..1 << 53).contains(v))
            .ok_or_else(|| bad("version", "must be an integer from 1 to 2^53-1"))?;
        if let Some(d) = top.get("description") {
            if !d.is_string() {
                return Err(bad("description", "must be a string"));
            }
        }
        let Some(Value::Object(scrolls)) = top.get("scrolls") else {
            return Err(bad("scrolls", "must be an object of scroll name → rules"));
        };
        let mut compiled = BTreeMap::new();
        for (scroll, rules) in scrolls {
            let path = format!("scrolls.{scroll}");
            if scroll != ANY_SCROLL {
                crate::receipt::validate_scroll_name(scroll)
                    .map_err(|e| bad(&path, e.to_string()))?;
            }
            compiled.insert(scroll.clone(), compile_scroll(scroll, rules, &path)?);
        }
        Ok(Self {
            document,
            version,
            scrolls: compiled,
        })
    }

    /// The document as adopted.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The document's version (each adoption must raise it).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// `(scroll, rule)` of every rule, for metrics initialised at zero.
    pub fn rule_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (scroll, r) in &self.scrolls {
            let mut push = |name: &str| out.push((scroll.clone(), name.to_string()));
            if let Some((n, _)) = &r.types {
                push(n);
            }
            if let Some((n, _)) = &r.max_payload {
                push(n);
            }
            for p in &r.payload {
                push(&p.name);
            }
            for w in &r.writers {
                push(&w.name);
            }
        }
        out
    }

    /// Checks every item for `scroll` from `writer`; the first broken rule, if any.
    pub fn check(&self, writer: &Writer, scroll: &str, items: &[NewReceipt]) -> Result<(), Breach> {
        let Some((key, rules)) = self
            .scrolls
            .get_key_value(scroll)
            .or_else(|| self.scrolls.get_key_value(ANY_SCROLL))
        else {
            return Ok(());
        };
        let several = items.len() > 1;
        for (i, item) in items.iter().enumerate() {
            let at = || {
                if several {
                    format!("receipts[{i}]")
                } else {
                    "body".to_string()
                }
            };
            rules.check_item(key, writer, item, at)?;
        }
        Ok(())
    }
}

impl ScrollRules {
    fn check_item(
        &self,
        scroll: &str,
        writer: &Writer,
        item: &NewReceipt,
        at: impl Fn() -> String,
    ) -> Result<(), Breach> {
        let kind = item.draft.kind.as_str();
        let breach = |rule: &str, field: String, message: String| Breach {
            scroll: scroll.to_string(),
            rule: rule.to_string(),
            field,
            message,
        };
        if let Some((rule, types)) = &self.types {
            if !types.admits(kind) {
                return Err(breach(
                    rule,
                    format!("{}.type", at()),
                    format!("receipt type {kind:?} is not allowed in scroll {scroll:?}"),
                ));
            }
        }
        if let Some((rule, max)) = &self.max_payload {
            let size = item.draft.canonical_payload().len();
            if size > *max {
                return Err(breach(
                    rule,
                    format!("{}.payload", at()),
                    format!("payload is {size} bytes of canonical JSON; at most {max}"),
                ));
            }
        }
        for w in &self.writers {
            if w.pattern.matches(kind) && !w.writers.admits(writer) {
                return Err(breach(
                    &w.name,
                    format!("{}.type", at()),
                    format!(
                        "{} may not write receipts of type {kind:?}",
                        writer_name(writer)
                    ),
                ));
            }
        }
        for p in &self.payload {
            if !p.pattern.matches(kind) {
                continue;
            }
            if let Err(e) = p.schema.validate(item.draft.payload()) {
                let (field, message) = describe_schema_error(&e);
                return Err(breach(&p.name, format!("{}.payload{field}", at()), message));
            }
        }
        Ok(())
    }
}

fn writer_name(writer: &Writer) -> String {
    match writer {
        Writer::Client { key_id, role, .. } => format!("key {key_id} ({role})"),
        Writer::Service(s) => format!("the {}", s.name()),
    }
}

/// A schema error as a dotted field path below `payload` and a message.
fn describe_schema_error(e: &jsonschema::ValidationError<'_>) -> (String, String) {
    let mut field = String::new();
    for segment in e.instance_path().as_str().split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            field.push_str(&format!("[{segment}]"));
        } else {
            field.push('.');
            field.push_str(&segment);
        }
    }
    if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind() {
        if let Some(name) = property.as_str() {
            field.push('.');
            field.push_str(name);
        }
    }
    (field, e.to_string())
}

fn only_fields(
    m: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
) -> Result<(), ConstitutionError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(
            format!("{path}.{k}"),
            format!("unknown field (allowed: {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn compile_scroll(
    scroll: &str,
    rules: &Value,
    path: &str,
) -> Result<ScrollRules, ConstitutionError> {
    let Value::Object(m) = rules else {
        return Err(bad(path, "must be an object of rules"));
    };
    only_fields(
        m,
        path,
        &["types", "max_payload_bytes", "payload", "writers"],
    )?;
    let mut out = ScrollRules::default();
    if let Some(v) = m.get("types") {
        let p = format!("{path}.types");
        let Value::Array(list) = v else {
            return Err(bad(
                p,
                "must be an array of type names or `prefix*` patterns",
            ));
        };
        let mut set = TypeSet::default();
        for (i, t) in list.iter().enumerate() {
            let tp = format!("{p}[{i}]");
            let text = t.as_str().ok_or_else(|| bad(&tp, "must be a string"))?;
            match Pattern::parse(text, &tp)? {
                Pattern::Exact(e) => {
                    set.exact.insert(e);
                }
                Pattern::Prefix(pre) => set.prefixes.push(pre),
            }
        }
        out.types = Some((format!("{scroll}.types"), set));
    }
    if let Some(v) = m.get("max_payload_bytes") {
        let p = format!("{path}.max_payload_bytes");
        let max = v
            .as_u64()
            .filter(|n| *n >= 2 && *n as usize <= crate::receipt::MAX_PAYLOAD_BYTES)
            .ok_or_else(|| {
                bad(
                    &p,
                    format!(
                        "must be an integer from 2 to {}",
                        crate::receipt::MAX_PAYLOAD_BYTES
                    ),
                )
            })?;
        out.max_payload = Some((format!("{scroll}.max_payload_bytes"), max as usize));
    }
    if let Some(v) = m.get("payload") {
        let p = format!("{path}.payload");
        let Value::Object(by_type) = v else {
            return Err(bad(p, "must be an object of type pattern → JSON Schema"));
        };
        for (pattern, schema) in by_type {
            let rp = format!("{p}[{pattern:?}]");
            let pattern_parsed = Pattern::parse(pattern, &rp)?;
            if !schema.is_object() {
                return Err(bad(&rp, "must be a JSON Schema object"));
            }
            if mentions_ref(schema) {
                return Err(bad(
                    &rp,
                    "`$ref` and `$dynamicRef` are not allowed: a rule must be self-contained",
                ));
            }
            let compiled = jsonschema::draft202012::options()
                .build(schema)
                .map_err(|e| bad(&rp, format!("not a valid JSON Schema: {e}")))?;
            out.payload.push(PayloadRule {
                name: format!("{scroll}.payload[{pattern}]"),
                pattern: pattern_parsed,
                schema: compiled,
            });
        }
    }
    if let Some(v) = m.get("writers") {
        let p = format!("{path}.writers");
        let Value::Object(by_type) = v else {
            return Err(bad(
                p,
                "must be an object of type pattern → {roles, key_ids, services}",
            ));
        };
        for (pattern, who) in by_type {
            let rp = format!("{p}[{pattern:?}]");
            let pattern_parsed = Pattern::parse(pattern, &rp)?;
            out.writers.push(WritersRule {
                name: format!("{scroll}.writers[{pattern}]"),
                pattern: pattern_parsed,
                writers: compile_writers(who, &rp)?,
            });
        }
    }
    Ok(out)
}

fn compile_writers(v: &Value, path: &str) -> Result<WriterSet, ConstitutionError> {
    let Value::Object(m) = v else {
        return Err(bad(
            path,
            "must be an object with roles, key_ids and/or services",
        ));
    };
    only_fields(m, path, &["roles", "key_ids", "services"])?;
    let strings = |name: &str| -> Result<Vec<String>, ConstitutionError> {
        match m.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(format!("{path}.{name}[{i}]"), "must be a string"))
                })
                .collect(),
            Some(_) => Err(bad(format!("{path}.{name}"), "must be an array of strings")),
        }
    };
    let mut set = WriterSet::default();
    for (i, r) in strings("roles")?.iter().enumerate() {
        set.roles.push(
            r.parse::<Role>()
                .map_err(|e| bad(format!("{path}.roles[{i}]"), e))?,
        );
    }
    set.key_ids = strings("key_ids")?.into_iter().collect();
    for (i, s) in strings("services")?.iter().enumerate() {
        set.services.push(match s.as_str() {
            "portal" => Service::Portal,
            "guardian" => Service::Guardian,
            "oracle" => Service::Oracle,
            other => {
                return Err(bad(
                    format!("{path}.services[{i}]"),
                    format!("unknown service {other:?} (portal, guardian or oracle)"),
                ))
            }
        });
    }
    if set.roles.is_empty() && set.key_ids.is_empty() && set.services.is_empty() {
        return Err(bad(
            path,
            "names nobody: give at least one role, key id or service",
        ));
    }
    Ok(set)
}

fn mentions_ref(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k == "$ref" || k == "$dynamicRef" || mentions_ref(v)),
        Value::Array(a) => a.iter().any(mentions_ref),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::ReceiptDraft;
    use serde_json::json;

    fn item(kind: &str, payload: Value) -> NewReceipt {
        NewReceipt {
            draft: ReceiptDraft::new(kind, payload).unwrap_or_else(|e| panic!("{e}")),
            submitter: String::new(),
            idempotency_key: None,
            request_hash: None,
        }
    }

    fn client(role: Role, key_id: &str) -> Writer {
        Writer::Client {
            key_id: key_id.into(),
            role,
            scrolls: None,
        }
    }

    fn doc() -> Constitution {
        Constitution::parse(json!({
            "version": 3,
            "scrolls": {
                "drills": {
                    "types": ["drill_*", "note"],
                    "max_payload_bytes": 64,
                    "payload": {
                        "drill_*": {"type": "object", "required": ["drill_id"],
                                    "properties": {"drill_id": {"type": "string"},
                                                   "steps": {"type": "array", "items": {"type": "integer"}}}}
                    },
                    "writers": {"drill_signed*": {"key_ids": ["key_lead"], "services": ["guardian"]}}
                },
                "*": {"types": ["generic"]}
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn breach(r: Result<(), Breach>) -> Breach {
        match r {
            Ok(()) => panic!("admitted"),
            Err(b) => b,
        }
    }

    #[test]
    fn each_rule_kind_admits_what_it_allows_and_names_what_it_refuses() {
        let c = doc();
        let w = client(Role::Writer, "key_w");
        let ok = item("drill_started", json!({"drill_id": "d1"}));
        assert!(c
            .check(&w, "drills", &[ok.clone(), item("note", json!({}))])
            .is_ok());

        let b = breach(c.check(&w, "drills", &[ok.clone(), item("other", json!({}))]));
        assert_eq!(
            (b.rule.as_str(), b.field.as_str()),
            ("drills.types", "receipts[1].type")
        );

        let b = breach(c.check(&w, "drills", &[item("note", json!({"x": "y".repeat(80)}))]));
        assert_eq!(
            (b.rule.as_str(), b.field.as_str()),
            ("drills.max_payload_bytes", "body.payload")
        );

        let b = breach(c.check(&w, "drills", &[item("drill_started", json!({"id": 1}))]));
        assert_eq!(b.rule, "drills.payload[drill_*]");
        assert_eq!(b.field, "body.payload.drill_id");

        let b = breach(c.check(
            &w,
            "drills",
            &[item("drill_started", json!({"drill_id": 7}))],
        ));
        assert_eq!(b.field, "body.payload.drill_id");

        let b = breach(c.check(
            &w,
            "drills",
            &[item("drill_x", json!({"drill_id": "a", "steps": [1, "2"]}))],
        ));
        assert_eq!(b.field, "body.payload.steps[1]");

        let signed = item("drill_signed", json!({"drill_id": "d"}));
        let b = breach(c.check(&w, "drills", std::slice::from_ref(&signed)));
        assert_eq!(b.rule, "drills.writers[drill_signed*]");
        assert!(c
            .check(
                &client(Role::Writer, "key_lead"),
                "drills",
                std::slice::from_ref(&signed)
            )
            .is_ok());
        assert!(c
            .check(
                &Writer::Service(Service::Guardian),
                "drills",
                std::slice::from_ref(&signed)
            )
            .is_ok());
        assert!(c
            .check(&client(Role::Admin, "key_admin"), "drills", &[signed])
            .is_err());

        // Unlisted scrolls fall back to `*`.
        let b = breach(c.check(&w, "treasury", &[item("note", json!({}))]));
        assert_eq!(b.rule, "*.types");
        assert!(c
            .check(&w, "treasury", &[item("generic", json!({}))])
            .is_ok());
        assert_eq!(c.rule_names().len(), 5);
    }

    #[test]
    fn bad_documents_are_refused_naming_the_rule() {
        let cases = [
            (json!([]), "document"),
            (json!({"scrolls": {}}), "version"),
            (json!({"version": 0, "scrolls": {}}), "version"),
            (json!({"version": 1}), "scrolls"),
            (
                json!({"version": 1, "scrolls": {}, "extra": 1}),
                "document.extra",
            ),
            (
                json!({"version": 1, "scrolls": {"Bad Name": {}}}),
                "scrolls.Bad Name",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"typos": []}}}),
                "scrolls.d.typos",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"types": ["a*b"]}}}),
                "scrolls.d.types[0]",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"types": [3]}}}),
                "scrolls.d.types[0]",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"max_payload_bytes": -1}}}),
                "scrolls.d.max_payload_bytes",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"max_payload_bytes": 1_000_000}}}),
                "scrolls.d.max_payload_bytes",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"payload": {"x": {"type": "nonsense"}}}}}),
                "scrolls.d.payload[\"x\"]",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"payload": {"x": {"$ref": "http://evil/x"}}}}}),
                "scrolls.d.payload[\"x\"]",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"payload": {"x": true}}}}),
                "scrolls.d.payload[\"x\"]",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"writers": {"x": {}}}}}),
                "scrolls.d.writers[\"x\"]",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"writers": {"x": {"roles": ["boss"]}}}}}),
                "scrolls.d.writers[\"x\"].roles[0]",
            ),
            (
                json!({"version": 1, "scrolls": {"d": {"writers": {"x": {"services": ["cron"]}}}}}),
                "scrolls.d.writers[\"x\"].services[0]",
            ),
        ];
        for (doc, path) in cases {
            match Constitution::parse(doc.clone()) {
                Ok(_) => panic!("accepted {doc}"),
                Err(e) => assert_eq!(e.path, path, "{doc}: {e}"),
            }
        }
        let huge =
            json!({"version": 1, "description": "x".repeat(MAX_DOCUMENT_BYTES), "scrolls": {}});
        assert_eq!(
            Constitution::parse(huge).map(|_| ()).err().map(|e| e.path),
            Some("document".to_string())
        );
    }
}
