//! The `vm_oracle_answer_v1` shape, and the default answerer: extractive, deterministic and
//! offline — the best passages quoted with their document, gaps named, confidence honest.

use ledger::store::SectionHit;
use serde::{Deserialize, Serialize};

/// One quoted passage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Citation {
    /// Corpus document id.
    pub document_id: String,
    /// The document's framework tag.
    pub framework: String,
    /// The quoted text.
    pub excerpt: String,
}

/// Which regimes the question touches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceFlags {
    /// GDPR.
    pub gdpr_relevant: bool,
    /// EU AI Act.
    pub ai_act_relevant: bool,
    /// NIS2.
    pub nis2_relevant: bool,
}

/// `vm_oracle_answer_v1`: the answer proper (what the receipt's `answer_sha3` covers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The question as asked.
    pub question: String,
    /// The answer.
    pub answer_text: String,
    /// Passages the answer rests on.
    pub citations: Vec<Citation>,
    /// Regimes concerned.
    pub compliance_flags: ComplianceFlags,
    /// Requirements in the asked frameworks with no supporting ledger evidence.
    pub gaps: Vec<String>,
    /// True when the corpus or the ledger cannot support an answer.
    pub insufficient_context: bool,
    /// 0 to 1.
    pub confidence: f64,
}

/// What the extractive answerer works from.
pub struct Material<'a> {
    /// The question.
    pub question: &'a str,
    /// Frameworks asked about (empty: all).
    pub frameworks: &'a [String],
    /// Ranked sections.
    pub hits: &'a [SectionHit],
    /// Requirement sections found relevant, with whether evidence exists for each.
    pub requirements: &'a [(&'a SectionHit, bool)],
    /// Evidence receipts found (count, newest type) for the summary.
    pub evidence_count: usize,
}

/// Passages quoted at most.
const MAX_CITATIONS: usize = 3;
/// Longest excerpt, in characters.
const EXCERPT_CHARS: usize = 300;

/// The extractive answer.
pub fn extractive(m: &Material) -> Answer {
    let citations: Vec<Citation> = m
        .hits
        .iter()
        .take(MAX_CITATIONS)
        .map(|h| Citation {
            document_id: h.document_id.clone(),
            framework: h.framework.clone(),
            excerpt: excerpt(&h.body, EXCERPT_CHARS),
        })
        .collect();
    let gaps: Vec<String> = m
        .requirements
        .iter()
        .filter(|(_, evidenced)| !evidenced)
        .map(|(h, _)| {
            format!(
                "{}: {} — no {} receipts in the ledger for the asked scope",
                h.framework,
                h.heading,
                h.evidence_types.join(" / ")
            )
        })
        .collect();
    let evidenced = m.requirements.iter().filter(|(_, e)| *e).count();
    let insufficient_context =
        citations.is_empty() || (!m.requirements.is_empty() && evidenced == 0);
    let mut text = if citations.is_empty() {
        "The corpus holds nothing that addresses this question".to_string()
            + &if m.frameworks.is_empty() {
                ".".to_string()
            } else {
                format!(" in {}.", m.frameworks.join(", "))
            }
    } else {
        let quoted: Vec<String> = citations
            .iter()
            .map(|c| format!("[{}] {}", c.document_id, c.excerpt))
            .collect();
        format!(
            "{} passage(s) address this: {}",
            citations.len(),
            quoted.join(" ")
        )
    };
    if !m.requirements.is_empty() {
        text.push_str(&format!(
            " Ledger evidence: {} of {} relevant requirement(s) have supporting receipts ({} receipt(s) cited).",
            evidenced,
            m.requirements.len(),
            m.evidence_count
        ));
    }
    let confidence = if insufficient_context {
        0.0
    } else {
        let coverage = if m.requirements.is_empty() {
            0.5
        } else {
            evidenced as f64 / m.requirements.len() as f64
        };
        let raw = 0.3 + 0.1 * citations.len() as f64 + 0.3 * coverage;
        (raw.min(0.95) * 100.0).round() / 100.0
    };
    Answer {
        question: m.question.to_string(),
        answer_text: text,
        compliance_flags: flags(m.frameworks, &citations),
        citations,
        gaps,
        insufficient_context,
        confidence,
    }
}

/// A regime is relevant when asked about or cited.
pub fn flags(frameworks: &[String], citations: &[Citation]) -> ComplianceFlags {
    let touches = |tag: &str| {
        frameworks.iter().any(|f| f == tag) || citations.iter().any(|c| c.framework == tag)
    };
    ComplianceFlags {
        gdpr_relevant: touches("gdpr"),
        ai_act_relevant: touches("eu_ai_act"),
        nis2_relevant: touches("nis2"),
    }
}

/// The start of `text`, cut at a sentence or word boundary within `max` characters.
fn excerpt(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max).collect();
    let end = cut
        .rfind(". ")
        .map(|i| i + 1)
        .filter(|i| *i > max / 3)
        .or_else(|| cut.rfind(' '))
        .unwrap_or(cut.len());
    format!("{}…", cut[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(doc: &str, fw: &str, evidence: &[&str]) -> SectionHit {
        SectionHit {
            document_id: doc.into(),
            framework: fw.into(),
            heading: format!("{doc} heading"),
            body: "Logs must be kept. They must be protected against tampering. ".repeat(10),
            evidence_types: evidence.iter().map(|s| s.to_string()).collect(),
            rank: 0.5,
        }
    }

    #[test]
    fn citations_gaps_flags_and_confidence() {
        let hits = vec![
            hit("ai-act", "eu_ai_act", &["ai_log_retained"]),
            hit("gdpr", "gdpr", &[]),
        ];
        let reqs = vec![(&hits[0], false)];
        let a = extractive(&Material {
            question: "q",
            frameworks: &[],
            hits: &hits,
            requirements: &reqs,
            evidence_count: 0,
        });
        assert_eq!(a.citations.len(), 2);
        assert!(a.citations[0].excerpt.chars().count() <= EXCERPT_CHARS + 1);
        assert_eq!(a.gaps.len(), 1);
        assert!(a.insufficient_context, "requirements without any evidence");
        assert_eq!(a.confidence, 0.0);
        assert!(
            a.compliance_flags.ai_act_relevant
                && a.compliance_flags.gdpr_relevant
                && !a.compliance_flags.nis2_relevant
        );

        let reqs = vec![(&hits[0], true)];
        let a = extractive(&Material {
            question: "q",
            frameworks: &["nis2".into()],
            hits: &hits,
            requirements: &reqs,
            evidence_count: 3,
        });
        assert!(!a.insufficient_context && a.gaps.is_empty());
        assert_eq!(a.confidence, 0.8);
        assert!(a.compliance_flags.nis2_relevant, "asked about");

        let a = extractive(&Material {
            question: "q",
            frameworks: &["gdpr".into()],
            hits: &[],
            requirements: &[],
            evidence_count: 0,
        });
        assert!(a.insufficient_context && a.citations.is_empty());
        assert!(a.answer_text.contains("nothing"));
    }
}
