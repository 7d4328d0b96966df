//! The oracle's corpus: documents split into sections, searched with Postgres full-text
//! search (`tsvector` + GIN), and the ledger receipts the oracle cites as evidence.

use super::{to_hash, to_u64, Store, StoreError};
use crate::hash::Hash;
use chrono::{DateTime, Utc};

/// A document to store: its sections replace any earlier version's.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// Stable id (`^[a-z0-9][a-z0-9_.-]{0,127}$`).
    pub id: String,
    /// Title.
    pub title: String,
    /// Framework tag (`eu_ai_act`, `gdpr`, `nis2`, `iso27001`).
    pub framework: String,
    /// SHA3-256 of the source text.
    pub sha3: Hash,
    /// Sections in order.
    pub sections: Vec<NewSection>,
}

/// One section of a document.
#[derive(Debug, Clone)]
pub struct NewSection {
    /// Heading.
    pub heading: String,
    /// Body text.
    pub body: String,
    /// Receipt types that demonstrate the section's requirement, if it states one.
    pub evidence_types: Vec<String>,
}

/// A stored document's summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DocumentInfo {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Framework tag.
    pub framework: String,
    /// Number of sections.
    pub sections: u64,
    /// SHA3-256 of the source, hex.
    pub sha3: String,
    /// When it was (re)loaded.
    pub loaded_at: DateTime<Utc>,
}

/// A section matching a search, with its rank.
#[derive(Debug, Clone)]
pub struct SectionHit {
    /// Document id.
    pub document_id: String,
    /// Document framework.
    pub framework: String,
    /// Section heading.
    pub heading: String,
    /// Section body.
    pub body: String,
    /// Receipt types that demonstrate it.
    pub evidence_types: Vec<String>,
    /// `ts_rank` of the match.
    pub rank: f32,
}

/// A receipt found as evidence (its bytes are not returned: proofs and citations only).
#[derive(Debug, Clone)]
pub struct EvidenceRow {
    /// Scroll name.
    pub scroll: String,
    /// Scroll id.
    pub scroll_id: i32,
    /// Position.
    pub seq: u64,
    /// Leaf hash.
    pub leaf_hash: Hash,
    /// Receipt type.
    pub kind: String,
    /// Submission time.
    pub submitted_at: DateTime<Utc>,
}

impl Store {
    /// Stores a document, replacing an earlier version with the same id, in one transaction.
    pub async fn put_document(&self, doc: &NewDocument) -> Result<(), StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO corpus_documents (id, title, framework, sha3) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, framework = EXCLUDED.framework, \
               sha3 = EXCLUDED.sha3, loaded_at = now()",
            &[&doc.id, &doc.title, &doc.framework, &&doc.sha3[..]],
        )
        .await?;
        tx.execute(
            "DELETE FROM corpus_sections WHERE document_id = $1",
            &[&doc.id],
        )
        .await?;
        let idx: Vec<i32> = (0..doc.sections.len() as i32).collect();
        let headings: Vec<&str> = doc.sections.iter().map(|s| s.heading.as_str()).collect();
        let bodies: Vec<&str> = doc.sections.iter().map(|s| s.body.as_str()).collect();
        let evidence: Vec<String> = doc
            .sections
            .iter()
            .map(|s| s.evidence_types.join("\u{1f}"))
            .collect();
        tx.execute(
            "INSERT INTO corpus_sections (document_id, idx, heading, body, evidence_types) \
             SELECT $1, i, h, b, CASE WHEN e = '' THEN '{}'::text[] ELSE string_to_array(e, E'\\x1f') END \
             FROM unnest($2::int[], $3::text[], $4::text[], $5::text[]) AS t(i, h, b, e)",
            &[&doc.id, &idx, &headings, &bodies, &evidence],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every document, by id.
    pub async fn documents(&self) -> Result<Vec<DocumentInfo>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT d.id, d.title, d.framework, \
                   (SELECT count(*) FROM corpus_sections s WHERE s.document_id = d.id), d.sha3, d.loaded_at \
                 FROM corpus_documents d ORDER BY d.id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let sha3: Vec<u8> = r.get(4);
                Ok(DocumentInfo {
                    id: r.get(0),
                    title: r.get(1),
                    framework: r.get(2),
                    sections: to_u64(r.get(3)),
                    sha3: crate::hash::to_hex(&to_hash(&sha3, "document sha3")?),
                    loaded_at: r.get(5),
                })
            })
            .collect()
    }

    /// Number of documents.
    pub async fn document_count(&self) -> Result<u64, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_one("SELECT count(*) FROM corpus_documents", &[])
            .await?;
        Ok(to_u64(row.get(0)))
    }

    /// Up to `limit` sections matching any of the question's words (English stemming),
    /// best first, optionally only in `frameworks`.
    pub async fn search_sections(
        &self,
        question: &str,
        frameworks: &[String],
        limit: u32,
    ) -> Result<Vec<SectionHit>, StoreError> {
        let client = self.pool().get().await?;
        let stmt = client
            .prepare_cached(
                "WITH q AS (SELECT NULLIF(replace(plainto_tsquery('english', $1)::text, '&', '|'), '')::tsquery AS q), \
                 top AS ( \
                   SELECT s.document_id, s.idx, ts_rank(s.tsv, q.q) AS rank FROM q, corpus_sections s \
                   WHERE q.q IS NOT NULL AND s.tsv @@ q.q \
                     AND (cardinality($2::text[]) = 0 OR s.document_id IN \
                          (SELECT id FROM corpus_documents WHERE framework = ANY($2))) \
                   ORDER BY rank DESC, s.document_id, s.idx LIMIT $3) \
                 SELECT t.document_id, d.framework, s.heading, s.body, s.evidence_types, t.rank \
                 FROM top t JOIN corpus_sections s ON s.document_id = t.document_id AND s.idx = t.idx \
                   JOIN corpus_documents d ON d.id = t.document_id \
                 ORDER BY t.rank DESC, t.document_id, t.idx",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&question, &frameworks, &i64::from(limit)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| SectionHit {
                document_id: r.get(0),
                framework: r.get(1),
                heading: r.get(2),
                body: r.get(3),
                evidence_types: r.get(4),
                rank: r.get(5),
            })
            .collect())
    }

    /// The newest receipts (up to `limit`) of the given types, in `scrolls` (all when empty),
    /// submitted within `[since, until]`, newest first. One query whose cost is bounded by
    /// `scrolls × types × limit` index entries: each (scroll, type) pair is one backward scan
    /// of `receipts_scroll_type_time` (migration V4), however many receipts match.
    pub async fn evidence(
        &self,
        types: &[String],
        scrolls: &[String],
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<EvidenceRow>, StoreError> {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool().get().await?;
        let stmt = client.prepare_cached(EVIDENCE).await?;
        let rows = client
            .query(
                &stmt,
                &[&types, &scrolls, &since, &until, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let lh: Vec<u8> = r.get(3);
                Ok(EvidenceRow {
                    scroll: r.get(0),
                    scroll_id: r.get(1),
                    seq: to_u64(r.get(2)),
                    leaf_hash: to_hash(&lh, "leaf_hash")?,
                    kind: r.get(4),
                    submitted_at: r.get(5),
                })
            })
            .collect()
    }

    /// Which of `types` have at least one receipt in `scrolls` (all when empty) within the
    /// time range — whether each requirement has supporting evidence — in one query of at
    /// most one index probe per (scroll, type).
    pub async fn evidence_types_present(
        &self,
        types: &[String],
        scrolls: &[String],
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        if types.is_empty() {
            return Ok(std::collections::BTreeSet::new());
        }
        let client = self.pool().get().await?;
        let stmt = client.prepare_cached(EVIDENCE_TYPES_PRESENT).await?;
        let rows = client
            .query(&stmt, &[&types, &scrolls, &since, &until])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The plans Postgres chooses for [`Store::evidence`] and
    /// [`Store::evidence_types_present`] with these arguments (`EXPLAIN`, text), for tests
    /// that hold the queries to their index.
    #[cfg(feature = "testing")]
    pub async fn explain_evidence(
        &self,
        types: &[String],
        scrolls: &[String],
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<(String, String), StoreError> {
        let client = self.pool().get().await?;
        let text = |rows: Vec<tokio_postgres::Row>| {
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let rows = client
            .query(
                &format!("EXPLAIN (COSTS OFF) {EVIDENCE}"),
                &[&types, &scrolls, &since, &until, &i64::from(limit)],
            )
            .await?;
        let rows_plan = text(rows);
        let present = client
            .query(
                &format!("EXPLAIN (COSTS OFF) {EVIDENCE_TYPES_PRESENT}"),
                &[&types, &scrolls, &since, &until],
            )
            .await?;
        Ok((rows_plan, text(present)))
    }
}

/// Evidence rows: for each scroll in scope and each type, the newest `$5` receipts in the time
/// range (a backward scan of `receipts (scroll_id, type, submitted_at, seq)`), then the newest
/// `$5` of those.
const EVIDENCE: &str = "WITH sc AS (SELECT id, name FROM scrolls \
       WHERE cardinality($2::text[]) = 0 OR name = ANY($2::text[])) \
     SELECT sc.name, sc.id, r.seq, r.leaf_hash, r.type, r.submitted_at \
     FROM sc CROSS JOIN unnest($1::text[]) AS t(type) \
     CROSS JOIN LATERAL (SELECT rr.seq, rr.leaf_hash, rr.type, rr.submitted_at FROM receipts rr \
       WHERE rr.scroll_id = sc.id AND rr.type = t.type \
         AND rr.submitted_at >= COALESCE($3::timestamptz, '-infinity') \
         AND rr.submitted_at <= COALESCE($4::timestamptz, 'infinity') \
       ORDER BY rr.submitted_at DESC, rr.seq DESC LIMIT $5) r \
     ORDER BY r.submitted_at DESC, sc.name, r.seq DESC LIMIT $5";

/// The types among `$1` with a receipt in scope: one index probe per (scroll, type) (the
/// `ORDER BY` matches the index, so that a type with no receipts costs a probe, never the
/// sequential scan a bare `LIMIT 1` can tempt the planner into).
const EVIDENCE_TYPES_PRESENT: &str = "SELECT t.type FROM unnest($1::text[]) AS t(type) \
     WHERE EXISTS (SELECT 1 FROM scrolls s CROSS JOIN LATERAL (SELECT 1 FROM receipts rr \
         WHERE rr.scroll_id = s.id AND rr.type = t.type \
           AND rr.submitted_at >= COALESCE($3::timestamptz, '-infinity') \
           AND rr.submitted_at <= COALESCE($4::timestamptz, 'infinity') \
         ORDER BY rr.submitted_at DESC LIMIT 1) hit \
       WHERE cardinality($2::text[]) = 0 OR s.name = ANY($2::text[])) \
     ORDER BY t.type";
