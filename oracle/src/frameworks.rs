//! The compliance frameworks the oracle knows, by tag.

/// Tags accepted in documents and queries.
pub const FRAMEWORKS: [&str; 4] = ["eu_ai_act", "gdpr", "nis2", "iso27001"];

/// Whether `tag` is a known framework.
pub fn is_known(tag: &str) -> bool {
    FRAMEWORKS.contains(&tag)
}
