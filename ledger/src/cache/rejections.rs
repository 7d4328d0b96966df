//! Warnings about rejected cache entries, at most one per key kind per interval: whoever can
//! write to Redis must not be able to flood the logs. Each warning says how many rejections
//! of its kind went unlogged since the previous one.

use super::seal::Rejection;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Window {
    last: Option<Instant>,
    suppressed: u64,
}

/// Rate-limited warnings per key kind.
pub(super) struct RejectionLog {
    every: Duration,
    windows: Mutex<HashMap<String, Window>>,
}

impl RejectionLog {
    /// A log that warns at most once per `every` for each kind.
    pub(super) fn new(every: Duration) -> Self {
        Self {
            every,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Records that the entry at `key` (of `kind`) was refused for `why`.
    pub(super) fn record(&self, kind: &str, key: &str, why: Rejection) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if !windows.contains_key(kind) {
            windows.insert(kind.to_string(), Window::default());
        }
        let Some(window) = windows.get_mut(kind) else {
            return;
        };
        if window.last.is_some_and(|t| t.elapsed() < self.every) {
            window.suppressed += 1;
            return;
        }
        tracing::warn!(
            kind,
            key,
            reason = why.as_str(),
            unlogged_since_last = window.suppressed,
            "cache entry rejected: not sealed by this deployment's cache secret; treated as a miss"
        );
        window.last = Some(Instant::now());
        window.suppressed = 0;
    }
}
