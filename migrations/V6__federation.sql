-- Federation (SPEC §13): meshes witness one another with C2SP tlog-witness and cosignature/v1.
-- Only the guardian (which plays both roles) may write these tables; nobody may rewrite them.

-- `proofchain` becomes a reserved scroll name (its checkpoints would share their origin with
-- the ProofChain head's). A scroll's name is in every one of its receipts and checkpoints and
-- cannot change, so a ledger that has such a scroll cannot take this migration.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM scrolls WHERE name = 'proofchain') THEN
        RAISE EXCEPTION 'vaultmesh: a scroll is named proofchain, now reserved for the ProofChain head''s origin; this ledger cannot be migrated to federation (docs/federation.md, "Reserved name")';
    END IF;
END
$$;

-- Witness side: the latest checkpoint this mesh's witness cosigned for each remote origin.
-- A row only moves forward: a larger size, or the same size with the same root (a fresh
-- cosignature). Changed under a transaction-scoped lock on the origin together with one
-- `witness_history` row, so the check of the old size and the write are atomic.
CREATE TABLE witness_state (
    origin       text PRIMARY KEY,
    tree_size    bigint NOT NULL CHECK (tree_size >= 0),
    root         bytea NOT NULL CHECK (length(root) = 32),
    note         text NOT NULL,
    cosignature  text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION vaultmesh_witness_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.origin <> OLD.origin OR NEW.tree_size < OLD.tree_size
        OR (NEW.tree_size = OLD.tree_size AND NEW.root <> OLD.root) THEN
        PERFORM vaultmesh_refuse(format(
            'witness state of %s may only move forward (%s -> %s, or a second root for one size)',
            OLD.origin, OLD.tree_size, NEW.tree_size));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER witness_state_forward_only BEFORE UPDATE ON witness_state
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_witness_forward_only();
CREATE TRIGGER witness_state_never_deleted BEFORE DELETE ON witness_state
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER witness_state_no_truncate BEFORE TRUNCATE ON witness_state
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- Every cosignature this witness gave, in order: each row must equal the state row as it is
-- at that moment (so history and state cannot disagree), and one size never gets two roots.
CREATE TABLE witness_history (
    id           bigserial PRIMARY KEY,
    origin       text NOT NULL REFERENCES witness_state (origin),
    tree_size    bigint NOT NULL,
    root         bytea NOT NULL,
    note         text NOT NULL,
    cosignature  text NOT NULL,
    cosigned_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX witness_history_origin_size ON witness_history (origin, tree_size);

CREATE FUNCTION vaultmesh_witness_history_matches_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM witness_state s WHERE s.origin = NEW.origin
            AND s.tree_size = NEW.tree_size AND s.root = NEW.root
            AND s.cosignature = NEW.cosignature) THEN
        PERFORM vaultmesh_refuse(format('witness history of %s at %s must match its state',
            NEW.origin, NEW.tree_size));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER witness_history_matches_state BEFORE INSERT ON witness_history
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_witness_history_matches_state();
CREATE TRIGGER witness_history_append_only BEFORE UPDATE OR DELETE ON witness_history
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER witness_history_no_truncate BEFORE TRUNCATE ON witness_history
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- Log side: the cosignatures witnesses returned for this mesh's checkpoints, one per witness
-- and checkpoint (the first one kept), append-only.
CREATE TABLE checkpoint_cosignatures (
    scroll_id    integer NOT NULL,
    tree_size    bigint NOT NULL,
    witness      text NOT NULL,
    line         text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scroll_id, tree_size, witness),
    FOREIGN KEY (scroll_id, tree_size) REFERENCES checkpoints (scroll_id, tree_size)
);
CREATE INDEX checkpoint_cosignatures_witness
    ON checkpoint_cosignatures (scroll_id, witness, tree_size);
CREATE TRIGGER checkpoint_cosignatures_append_only BEFORE UPDATE OR DELETE
    ON checkpoint_cosignatures FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER checkpoint_cosignatures_no_truncate BEFORE TRUNCATE ON checkpoint_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- The cosignatures witnesses returned for this mesh's signed ProofChain heads, by epoch.
CREATE TABLE anchor_head_cosignatures (
    epoch        bigint NOT NULL REFERENCES anchor_heads (epoch),
    witness      text NOT NULL,
    line         text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (epoch, witness)
);
CREATE INDEX anchor_head_cosignatures_witness ON anchor_head_cosignatures (witness, epoch);
CREATE TRIGGER anchor_head_cosignatures_append_only BEFORE UPDATE OR DELETE
    ON anchor_head_cosignatures FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER anchor_head_cosignatures_no_truncate BEFORE TRUNCATE ON anchor_head_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- Discrepancies the witness found in a remote mesh's own evidence (SPEC §13): one row per
-- (remote, type, origin, size, evidence), so the same evidence seen again is not raised
-- again; only the acknowledgement may be set, once.
CREATE TABLE federation_discrepancies (
    id                bigserial PRIMARY KEY,
    remote_mesh       text NOT NULL,
    discrepancy_type  text NOT NULL CHECK (discrepancy_type IN
                          ('fork', 'split_view', 'rollback', 'bad_signature', 'bad_proof')),
    origin            text NOT NULL,
    tree_size         bigint NOT NULL,
    evidence          jsonb NOT NULL,
    detected_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at   timestamptz,
    acknowledged_by   text
);
CREATE UNIQUE INDEX federation_discrepancies_once
    ON federation_discrepancies (remote_mesh, discrepancy_type, origin, tree_size, md5(evidence::text));

CREATE FUNCTION vaultmesh_discrepancy_ack_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.remote_mesh <> OLD.remote_mesh
        OR NEW.discrepancy_type <> OLD.discrepancy_type OR NEW.origin <> OLD.origin
        OR NEW.tree_size <> OLD.tree_size OR NEW.evidence <> OLD.evidence
        OR NEW.detected_at <> OLD.detected_at OR OLD.acknowledged_at IS NOT NULL
        OR NEW.acknowledged_at IS NULL OR NEW.acknowledged_by IS NULL THEN
        PERFORM vaultmesh_refuse(format('federation discrepancy %s: only an acknowledgement, once',
            OLD.id));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER federation_discrepancies_ack_only BEFORE UPDATE ON federation_discrepancies
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_discrepancy_ack_only();
CREATE TRIGGER federation_discrepancies_never_deleted BEFORE DELETE ON federation_discrepancies
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER federation_discrepancies_no_truncate BEFORE TRUNCATE ON federation_discrepancies
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

GRANT SELECT ON witness_state, witness_history, checkpoint_cosignatures,
    anchor_head_cosignatures, federation_discrepancies
    TO vaultmesh_portal, vaultmesh_guardian, vaultmesh_oracle;
GRANT INSERT, UPDATE (acknowledged_at, acknowledged_by) ON federation_discrepancies
    TO vaultmesh_guardian;
GRANT USAGE ON SEQUENCE federation_discrepancies_id_seq TO vaultmesh_guardian;
GRANT INSERT, UPDATE ON witness_state TO vaultmesh_guardian;
GRANT INSERT ON witness_history, checkpoint_cosignatures, anchor_head_cosignatures
    TO vaultmesh_guardian;
GRANT USAGE ON SEQUENCE witness_history_id_seq TO vaultmesh_guardian;
