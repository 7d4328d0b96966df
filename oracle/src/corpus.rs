//! Turning a document's text into stored sections: an optional front matter block
//! (`---` lines with `id:`, `title:`, `framework:`), then sections split at Markdown headings
//! (`#`…`######`); plain text without headings is one section per paragraph group. A line
//! `Evidence: type_a, type_b` in a section names the receipt types that demonstrate it.

use crate::frameworks::{is_known, FRAMEWORKS};
use ledger::hash::Sha3Hasher;
use ledger::store::{NewDocument, NewSection, Store};
use std::path::Path;

/// Most sections in one document.
pub const MAX_SECTIONS: usize = 2_000;
/// Largest document text, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most receipt types one section may name as its evidence (so that a query, which looks
/// at a bounded number of sections, looks for a bounded number of types).
pub const MAX_EVIDENCE_TYPES_PER_SECTION: usize = 16;
/// Plain-text sections are cut at about this many characters.
const PLAIN_SECTION_CHARS: usize = 1_500;

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A field is missing or invalid.
    #[error("{0}")]
    Invalid(String),
    /// Storing failed.
    #[error(transparent)]
    Store(#[from] ledger::store::StoreError),
}

/// What the caller (API or directory loader) supplies besides the text.
#[derive(Debug, Default, Clone)]
pub struct DocumentMeta {
    /// Id, if not in the front matter.
    pub id: Option<String>,
    /// Title, if not in the front matter.
    pub title: Option<String>,
    /// Framework, if not in the front matter.
    pub framework: Option<String>,
    /// Id to use when neither `id` nor the front matter gives one.
    pub default_id: Option<String>,
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
}

/// Parses `text` into a document; fields given in `meta` win over the front matter.
pub fn parse(text: &str, meta: &DocumentMeta) -> Result<NewDocument, CorpusError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(CorpusError::Invalid(format!(
            "text: at most {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(CorpusError::Invalid(format!(
            "text: control character U+{:04X} is not allowed",
            u32::from(c)
        )));
    }
    let (front, body) = split_front_matter(text);
    let field = |name: &str| {
        front
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let id = meta
        .id
        .clone()
        .or_else(|| field("id"))
        .or_else(|| meta.default_id.clone())
        .unwrap_or_default();
    if !valid_id(&id) {
        return Err(CorpusError::Invalid(
            "id: 1 to 128 of a-z, 0-9, '_', '.', '-', starting with a letter or digit".into(),
        ));
    }
    let framework = meta
        .framework
        .clone()
        .or_else(|| field("framework"))
        .unwrap_or_default();
    if !is_known(&framework) {
        return Err(CorpusError::Invalid(format!(
            "framework: must be one of {}",
            FRAMEWORKS.join(", ")
        )));
    }
    let sections = split_sections(body);
    if sections.is_empty() {
        return Err(CorpusError::Invalid("text: no content".into()));
    }
    if sections.len() > MAX_SECTIONS {
        return Err(CorpusError::Invalid(format!(
            "text: at most {MAX_SECTIONS} sections"
        )));
    }
    if let Some(s) = sections
        .iter()
        .find(|s| s.evidence_types.len() > MAX_EVIDENCE_TYPES_PER_SECTION)
    {
        return Err(CorpusError::Invalid(format!(
            "text: section {:?} names more than {MAX_EVIDENCE_TYPES_PER_SECTION} evidence types",
            s.heading
        )));
    }
    let title = meta
        .title
        .clone()
        .or_else(|| field("title"))
        .or_else(|| sections.first().map(|s| s.heading.clone()))
        .unwrap_or_else(|| id.clone());
    Ok(NewDocument {
        id,
        title,
        framework,
        sha3: Sha3Hasher::plain(text.as_bytes()),
        sections,
    })
}

fn split_front_matter(text: &str) -> (Vec<(String, String)>, &str) {
    let Some(rest) = text.strip_prefix("---\n") else {
        return (Vec::new(), text);
    };
    let Some(end) = rest.find("\n---") else {
        return (Vec::new(), text);
    };
    let fields = rest[..end]
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let after = &rest[end + 4..];
    (fields, after.strip_prefix('\n').unwrap_or(after))
}

fn split_sections(body: &str) -> Vec<NewSection> {
    let mut out = Vec::new();
    let mut heading: Option<String> = None;
    let mut lines: Vec<&str> = Vec::new();
    let flush = |heading: &Option<String>, lines: &mut Vec<&str>, out: &mut Vec<NewSection>| {
        let text = lines.join("\n").trim().to_string();
        lines.clear();
        if text.is_empty() && heading.is_none() {
            return;
        }
        out.extend(section(heading.clone(), &text));
    };
    for line in body.lines() {
        let t = line.trim_start();
        if t.starts_with('#') && t.trim_start_matches('#').starts_with(' ') {
            flush(&heading, &mut lines, &mut out);
            heading = Some(t.trim_start_matches('#').trim().to_string());
        } else {
            lines.push(line);
        }
    }
    flush(&heading, &mut lines, &mut out);
    out
}

/// One section, or (for long unheaded text) several cut at paragraph boundaries.
fn section(heading: Option<String>, text: &str) -> Vec<NewSection> {
    let mut evidence = Vec::new();
    let mut kept = Vec::new();
    for line in text.lines() {
        match line.trim().strip_prefix("Evidence:") {
            Some(list) => evidence.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            None => kept.push(line),
        }
    }
    let body = kept.join("\n").trim().to_string();
    if let Some(h) = heading {
        return vec![NewSection {
            heading: h,
            body,
            evidence_types: evidence,
        }];
    }
    let mut out = Vec::new();
    let mut chunk = String::new();
    for para in body.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        if !chunk.is_empty() && chunk.len() + para.len() > PLAIN_SECTION_CHARS {
            out.push(std::mem::take(&mut chunk));
        }
        if !chunk.is_empty() {
            chunk.push_str("\n\n");
        }
        chunk.push_str(para);
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    out.into_iter()
        .map(|b| NewSection {
            heading: b
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(80)
                .collect(),
            body: b,
            evidence_types: evidence.clone(),
        })
        .collect()
}

/// Loads every `.md`/`.txt` file of `dir` (file stem as the default id); returns how many
/// were stored. A file that does not parse is logged and skipped.
pub async fn load_dir(store: &Store, dir: &Path) -> Result<usize, CorpusError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| CorpusError::Invalid(format!("corpus dir {}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md" || x == "txt"))
        .collect();
    entries.sort();
    let mut loaded = 0;
    for path in entries {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "corpus file skipped");
                continue;
            }
        };
        let meta = DocumentMeta {
            default_id: path
                .file_stem()
                .map(|s| s.to_string_lossy().to_ascii_lowercase()),
            ..DocumentMeta::default()
        };
        match parse(&text, &meta) {
            Ok(doc) => {
                store.put_document(&doc).await?;
                loaded += 1;
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "corpus file skipped"),
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_headings_and_evidence_lines() {
        let text = "---\nid: gdpr-records\nframework: gdpr\ntitle: Records\n---\n# Intro\nSome words.\n\n## Records of processing\nKeep a record.\nEvidence: processing_record_updated, dpia_completed\n";
        let doc = parse(text, &DocumentMeta::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (doc.id.as_str(), doc.framework.as_str(), doc.title.as_str()),
            ("gdpr-records", "gdpr", "Records")
        );
        assert_eq!(doc.sections.len(), 2);
        assert_eq!(doc.sections[1].heading, "Records of processing");
        assert_eq!(doc.sections[1].body, "Keep a record.");
        assert_eq!(
            doc.sections[1].evidence_types,
            vec!["processing_record_updated", "dpia_completed"]
        );
    }

    #[test]
    fn bad_documents_are_refused() {
        let meta = DocumentMeta {
            id: Some("x".into()),
            framework: Some("gdpr".into()),
            ..DocumentMeta::default()
        };
        assert!(parse("", &meta).is_err(), "empty");
        assert!(parse(
            "text",
            &DocumentMeta {
                framework: Some("sox".into()),
                ..meta.clone()
            }
        )
        .is_err());
        assert!(parse(
            "text",
            &DocumentMeta {
                id: Some("Bad Id".into()),
                ..meta.clone()
            }
        )
        .is_err());
        assert!(parse(&"x".repeat(MAX_DOCUMENT_BYTES + 1), &meta).is_err());
        let many: String = (0..=MAX_SECTIONS).map(|i| format!("# h{i}\nb\n")).collect();
        assert!(parse(&many, &meta).is_err());
        let plain = parse("para one\n\npara two", &meta).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.sections.len(), 1);
    }

    #[test]
    fn control_characters_and_long_evidence_lists_are_refused() {
        let meta = DocumentMeta {
            id: Some("x".into()),
            framework: Some("gdpr".into()),
            ..DocumentMeta::default()
        };
        for bad in [
            "# h\nnul\u{0} here",
            "# h\nbell \u{7}",
            "# h\nnext line \u{85}",
        ] {
            match parse(bad, &meta) {
                Err(CorpusError::Invalid(m)) => assert!(m.contains("control character"), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(parse("# h\r\n\ttabbed\r\nbody", &meta).is_ok());
        let list = |n: usize| {
            (0..n)
                .map(|i| format!("t{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let at_cap = format!(
            "# h\nbody\nEvidence: {}\n",
            list(MAX_EVIDENCE_TYPES_PER_SECTION)
        );
        assert!(parse(&at_cap, &meta).is_ok());
        let over = format!(
            "# h\nbody\nEvidence: {}\n",
            list(MAX_EVIDENCE_TYPES_PER_SECTION + 1)
        );
        match parse(&over, &meta) {
            Err(CorpusError::Invalid(m)) => assert!(m.contains("evidence types"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
