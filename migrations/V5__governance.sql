-- Governance (SPEC §13). The state the append gate enforces — the constitution in force and
-- whether an emergency freeze is raised — is the newest such receipt in `governance`; every
-- service probes it twice a second, so those few receipts get an index of their own.
CREATE INDEX IF NOT EXISTS receipts_governance_state
    ON receipts (scroll_id, seq)
    WHERE type IN ('constitution_adopted', 'emergency_raised', 'emergency_lifted');

-- The read audit's scroll: reads of receipt contents, aggregated per key, scroll and minute,
-- written by the portal only (the append gate refuses it to everyone else).
INSERT INTO scrolls (name) VALUES ('access') ON CONFLICT (name) DO NOTHING;
