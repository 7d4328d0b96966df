//! Constitutional violations, aggregated: every refused request counts in
//! `vaultmesh_governance_violations_total{scroll,rule}`, and each window (a minute by default)
//! becomes at most one `constitutional_violation` receipt per (scroll, rule) with the count
//! and one sample, so a flood of bad requests cannot flood the `governance` scroll.

use super::constitution::Breach;
use crate::gate::Writer;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Most distinct (scroll, rule) pairs held per window; more are counted in the metric only.
pub const MAX_PAIRS_PER_WINDOW: usize = 4096;

/// One (scroll, rule) pair's violations in a window.
#[derive(Debug, Clone)]
struct Tally {
    count: u64,
    first_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
    sample: Value,
}

/// The violations of the current window, waiting to be receipted.
#[derive(Debug)]
pub struct ViolationLog {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: DateTime<Utc>,
    tallies: BTreeMap<(String, String), Tally>,
}

impl Default for ViolationLog {
    fn default() -> Self {
        Self {
            window: Mutex::new(Window {
                started: Utc::now(),
                tallies: BTreeMap::new(),
            }),
        }
    }
}

impl ViolationLog {
    /// Counts one refused request for `scroll`.
    pub fn record(&self, scroll: &str, breach: &Breach, writer: &Writer, kind: &str) {
        let now = Utc::now();
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        let key = (scroll.to_string(), breach.rule.clone());
        if let Some(t) = w.tallies.get_mut(&key) {
            t.count += 1;
            t.last_at = now;
            return;
        }
        if w.tallies.len() >= MAX_PAIRS_PER_WINDOW {
            return;
        }
        let writer = match writer {
            Writer::Client { key_id, role, .. } => {
                json!({"key_id": key_id, "role": role.to_string()})
            }
            Writer::Service(s) => json!({"service": s.name()}),
        };
        w.tallies.insert(
            key,
            Tally {
                count: 1,
                first_at: now,
                last_at: now,
                sample: json!({
                    "field": breach.field,
                    "message": breach.message,
                    "type": kind,
                    "writer": writer,
                }),
            },
        );
    }

    /// Closes the window: the payloads of its `constitutional_violation` receipts, one per
    /// (scroll, rule), and a new window begins.
    pub fn take(&self) -> Vec<Value> {
        let now = Utc::now();
        let Ok(mut w) = self.window.lock() else {
            return Vec::new();
        };
        let started = std::mem::replace(&mut w.started, now);
        let tallies = std::mem::take(&mut w.tallies);
        tallies
            .into_iter()
            .map(|((scroll, rule), t)| {
                json!({
                    "scroll": scroll,
                    "rule": rule,
                    "count": t.count,
                    "window_start": crate::receipt::format_timestamp(started),
                    "window_end": crate::receipt::format_timestamp(now),
                    "first_at": crate::receipt::format_timestamp(t.first_at),
                    "last_at": crate::receipt::format_timestamp(t.last_at),
                    "sample": t.sample,
                })
            })
            .collect()
    }

    /// Puts back payloads that could not be written, so their counts reach a later receipt.
    pub fn restore(&self, payloads: Vec<Value>) {
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        for p in payloads {
            let (Some(scroll), Some(rule), Some(count)) = (
                p["scroll"].as_str(),
                p["rule"].as_str(),
                p["count"].as_u64(),
            ) else {
                continue;
            };
            let now = Utc::now();
            let t = w
                .tallies
                .entry((scroll.to_string(), rule.to_string()))
                .or_insert_with(|| Tally {
                    count: 0,
                    first_at: now,
                    last_at: now,
                    sample: p["sample"].clone(),
                });
            t.count += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Role;

    #[test]
    fn a_flood_becomes_one_payload_per_scroll_and_rule_with_the_exact_count() {
        let log = ViolationLog::default();
        let w = Writer::Client {
            key_id: "key_w".into(),
            role: Role::Writer,
            scrolls: None,
        };
        let b = |rule: &str| Breach {
            scroll: "drills".into(),
            rule: rule.into(),
            field: "body.type".into(),
            message: "no".into(),
        };
        for i in 0..10_000 {
            log.record(
                if i % 2 == 0 { "drills" } else { "treasury" },
                &b("drills.types"),
                &w,
                "bad",
            );
        }
        log.record("drills", &b("drills.payload[x]"), &w, "x");
        let out = log.take();
        assert_eq!(out.len(), 3);
        let total: u64 = out.iter().filter_map(|p| p["count"].as_u64()).sum();
        assert_eq!(total, 10_001);
        assert!(log.take().is_empty());
        log.restore(out);
        let again: u64 = log.take().iter().filter_map(|p| p["count"].as_u64()).sum();
        assert_eq!(again, 10_001);
    }
}
