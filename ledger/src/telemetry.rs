//! Structured JSON logs on stderr, one event per line, and a limiter that keeps repeated
//! failure lines (one per failed request during an outage) to a few, with counts.

use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber with `filter` (falls back to `info` if invalid).
/// Calling it twice is harmless. A failing log write (e.g. stderr is a closed pipe) is
/// dropped silently: reporting it would `eprintln!`, which panics on that same stderr.
pub fn init_logging(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

/// Lets one log line through per period for each (message, key) — e.g. ("receipt write
/// failed", scroll) — and counts the lines held back, so an outage logs a few lines with
/// counts instead of one line per failed request.
pub struct LogLimiter {
    period: std::time::Duration,
    windows: std::sync::Mutex<std::collections::HashMap<(&'static str, String), Window>>,
}

struct Window {
    opened: std::time::Instant,
    suppressed: u64,
}

/// Most (message, key) pairs a [`LogLimiter`] tracks; past it, windows that have closed are
/// forgotten, and if none has, all are (so memory stays bounded whatever the keys).
pub const MAX_LOG_KEYS: usize = 1024;

/// Period of [`REPEATED_LOGS`].
pub const REPEATED_LOG_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// The process's limiter for repeated failure logs (one line per 10 s per message and key).
pub static REPEATED_LOGS: std::sync::LazyLock<LogLimiter> =
    std::sync::LazyLock::new(|| LogLimiter::new(REPEATED_LOG_PERIOD));

impl LogLimiter {
    /// A limiter letting one line through per `period` per (message, key).
    pub fn new(period: std::time::Duration) -> Self {
        Self {
            period,
            windows: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether to log `message` for `key` now: `Some(n)` with the number of lines held back
    /// since the last one let through, or `None` to stay quiet.
    pub fn admit(&self, message: &'static str, key: &str) -> Option<u64> {
        self.admit_at(message, key, std::time::Instant::now())
    }

    /// [`LogLimiter::admit`] at a given instant.
    pub fn admit_at(
        &self,
        message: &'static str,
        key: &str,
        now: std::time::Instant,
    ) -> Option<u64> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = (message, key.to_string());
        if let Some(w) = windows.get_mut(&id) {
            if now.saturating_duration_since(w.opened) < self.period {
                w.suppressed += 1;
                return None;
            }
            let held = w.suppressed;
            *w = Window {
                opened: now,
                suppressed: 0,
            };
            return Some(held);
        }
        if windows.len() >= MAX_LOG_KEYS {
            let period = self.period;
            windows.retain(|_, w| now.saturating_duration_since(w.opened) < period);
            if windows.len() >= MAX_LOG_KEYS {
                windows.clear();
            }
        }
        windows.insert(
            id,
            Window {
                opened: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn one_line_per_period_per_message_and_key_with_the_count_held_back() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        assert_eq!(limiter.admit_at("write failed", "drills", at(0)), Some(0));
        for ms in (10..9_990).step_by(10) {
            assert_eq!(limiter.admit_at("write failed", "drills", at(ms)), None);
        }
        assert_eq!(
            limiter.admit_at("write failed", "treasury", at(500)),
            Some(0)
        );
        assert_eq!(
            limiter.admit_at("other failure", "drills", at(500)),
            Some(0)
        );
        assert_eq!(
            limiter.admit_at("write failed", "drills", at(10_000)),
            Some(998)
        );
        assert_eq!(limiter.admit_at("write failed", "drills", at(10_001)), None);
        assert_eq!(
            limiter.admit_at("write failed", "drills", at(60_000)),
            Some(1)
        );
    }

    #[test]
    fn memory_is_bounded_whatever_the_keys() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..5 * MAX_LOG_KEYS {
            assert_eq!(limiter.admit_at("m", &format!("k{i}"), t0), Some(0));
            let held = limiter
                .windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len();
            assert!(held <= MAX_LOG_KEYS, "{held}");
        }
        let later = t0 + Duration::from_secs(11);
        assert_eq!(limiter.admit_at("m", "fresh", later), Some(0));
        assert_eq!(limiter.admit_at("m", "fresh", later), None);
    }
}
