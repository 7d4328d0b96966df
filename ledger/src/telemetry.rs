//! Structured JSON logs on stderr, one event per line.

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
