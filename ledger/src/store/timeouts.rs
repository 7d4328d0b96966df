//! How long a service waits on Postgres, and the limits Postgres enforces on each of its
//! sessions: together they turn a stalled database into a prompt `database_unavailable`
//! instead of a hang.

use serde::Serialize;
use std::time::Duration;

/// Time limits for one pool's connections (see docs/operations.md, "When Postgres stalls").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DbTimeouts {
    /// Opening a connection: TCP connect, startup and authentication, in all.
    #[serde(rename = "connect_ms", with = "millis")]
    pub connect: Duration,
    /// Waiting for a free pooled connection.
    #[serde(rename = "pool_wait_ms", with = "millis")]
    pub pool_wait: Duration,
    /// How long a connection may leave a request unanswered (or be unable to send one)
    /// before it is closed and the call fails.
    #[serde(rename = "response_ms", with = "millis")]
    pub response: Duration,
    /// Postgres `statement_timeout` of every session (zero: none).
    #[serde(rename = "statement_ms", with = "millis")]
    pub statement: Duration,
    /// Postgres `idle_in_transaction_session_timeout` of every session (zero: none).
    #[serde(rename = "idle_in_transaction_ms", with = "millis")]
    pub idle_in_transaction: Duration,
}

impl Default for DbTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(DEFAULT_CONNECT_MS),
            pool_wait: Duration::from_millis(DEFAULT_POOL_WAIT_MS),
            response: Duration::from_millis(DEFAULT_RESPONSE_MS),
            statement: Duration::from_millis(DEFAULT_STATEMENT_MS),
            idle_in_transaction: Duration::from_millis(DEFAULT_IDLE_IN_TRANSACTION_MS),
        }
    }
}

/// Default of [`DbTimeouts::connect`], in milliseconds.
pub const DEFAULT_CONNECT_MS: u64 = 2_000;
/// Default of [`DbTimeouts::pool_wait`], in milliseconds.
pub const DEFAULT_POOL_WAIT_MS: u64 = 1_000;
/// Default of [`DbTimeouts::response`], in milliseconds.
pub const DEFAULT_RESPONSE_MS: u64 = 4_000;
/// Default of [`DbTimeouts::statement`] for the portal and the oracle, in milliseconds
/// (below the response timeout, so a slow statement is cancelled by Postgres, cleanly,
/// before the client gives up on its connection).
pub const DEFAULT_STATEMENT_MS: u64 = 3_000;
/// Default of [`DbTimeouts::idle_in_transaction`], in milliseconds.
pub const DEFAULT_IDLE_IN_TRANSACTION_MS: u64 = 5_000;

impl DbTimeouts {
    /// The longest a single store call waits on a Postgres that has stopped answering: a free
    /// connection, then an answer (or a new connection, whichever is longer).
    pub fn call_bound(&self) -> Duration {
        self.pool_wait + self.response.max(self.connect)
    }

    /// `-c` settings for the session's startup `options`, placed before `existing` so that
    /// settings given explicitly in the database URL win.
    pub fn session_options(&self, existing: Option<&str>) -> String {
        let mut options = format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            self.statement.as_millis(),
            self.idle_in_transaction.as_millis()
        );
        if let Some(rest) = existing.map(str::trim).filter(|s| !s.is_empty()) {
            options.push(' ');
            options.push_str(rest);
        }
        options
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_options_come_first_so_the_url_can_override_them() {
        let t = DbTimeouts::default();
        assert_eq!(
            t.session_options(None),
            "-c statement_timeout=3000 -c idle_in_transaction_session_timeout=5000"
        );
        assert_eq!(
            t.session_options(Some(" -c statement_timeout=0 ")),
            "-c statement_timeout=3000 -c idle_in_transaction_session_timeout=5000 -c statement_timeout=0"
        );
        assert_eq!(t.call_bound(), Duration::from_secs(5));
    }
}
