-- The oracle's compliance corpus: documents (one framework each) split into sections, with
-- Postgres full-text search. Reference material, not evidence: documents can be replaced.

CREATE TABLE corpus_documents (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_.-]{0,127}$'),
    title      text NOT NULL,
    framework  text NOT NULL CHECK (framework IN ('eu_ai_act', 'gdpr', 'nis2', 'iso27001')),
    sha3       bytea NOT NULL CHECK (length(sha3) = 32),
    loaded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE corpus_sections (
    document_id  text NOT NULL REFERENCES corpus_documents (id) ON DELETE CASCADE,
    idx          integer NOT NULL CHECK (idx >= 0),
    heading      text NOT NULL,
    body         text NOT NULL,
    -- Receipt types that demonstrate this section's requirement, if it states one.
    evidence_types text[] NOT NULL DEFAULT '{}',
    tsv          tsvector GENERATED ALWAYS AS (
                     setweight(to_tsvector('english', heading), 'A') ||
                     setweight(to_tsvector('english', body), 'B')) STORED,
    PRIMARY KEY (document_id, idx)
);
CREATE INDEX corpus_sections_tsv ON corpus_sections USING GIN (tsv);

GRANT SELECT, INSERT, UPDATE, DELETE ON corpus_documents, corpus_sections TO vaultmesh_app;
