-- VaultMesh ledger schema: scrolls, receipts, stored Merkle tiles, checkpoints, anchors, API keys.
-- The application role `vaultmesh_app` may only append to receipts, checkpoints and anchors;
-- triggers enforce the same for every role that has not disabled them.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vaultmesh_app') THEN
        CREATE ROLE vaultmesh_app NOLOGIN;
    END IF;
END
$$;

CREATE TABLE scrolls (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    next_seq    bigint NOT NULL DEFAULT 0 CHECK (next_seq >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- No foreign key to scrolls: its per-row check cost a third of append throughput. Rows are
-- only inserted under the scroll's locked head row (so the scroll exists), and scrolls can
-- never be deleted (trigger below).
CREATE TABLE receipts (
    scroll_id        integer NOT NULL,
    seq              bigint NOT NULL CHECK (seq >= 0),
    leaf             bytea NOT NULL,
    leaf_hash        bytea NOT NULL CHECK (length(leaf_hash) = 32),
    type             text NOT NULL,
    submitted_at     timestamptz NOT NULL,
    submitter        text NOT NULL,
    idempotency_key  text,
    request_hash     bytea,
    PRIMARY KEY (scroll_id, seq)
);
CREATE UNIQUE INDEX receipts_idempotency_key ON receipts (scroll_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX receipts_leaf_hash ON receipts (leaf_hash);

-- Integrated tree size per scroll; the row is the lock that serialises tree appends.
CREATE TABLE trees (
    scroll_id   integer PRIMARY KEY REFERENCES scrolls (id),
    size        bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Tile `level` L, index N holds up to 16 concatenated 32-byte hashes of the tree nodes at
-- height 4·L covering nodes [16·N, 16·N + 16). Level 0 holds leaf hashes. Rows stay at or
-- below 512 bytes so they are stored inline (a proof reads O(log n) of them in one query).
CREATE TABLE tree_tiles (
    scroll_id  integer NOT NULL,
    level      smallint NOT NULL CHECK (level >= 0),
    idx        bigint NOT NULL CHECK (idx >= 0),
    hashes     bytea NOT NULL CHECK (length(hashes) % 32 = 0 AND length(hashes) BETWEEN 32 AND 512),
    PRIMARY KEY (scroll_id, level, idx)
);

CREATE FUNCTION vaultmesh_new_tree() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO trees (scroll_id) VALUES (NEW.id);
    RETURN NEW;
END
$$;
CREATE TRIGGER scrolls_new_tree AFTER INSERT ON scrolls
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_new_tree();

CREATE TABLE checkpoints (
    scroll_id   integer NOT NULL REFERENCES scrolls (id),
    tree_size   bigint NOT NULL CHECK (tree_size >= 0),
    root        bytea NOT NULL CHECK (length(root) = 32),
    note        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scroll_id, tree_size)
);

CREATE TABLE anchors (
    epoch             bigint PRIMARY KEY CHECK (epoch >= 1),
    record            text NOT NULL,
    anchor_hash       bytea NOT NULL UNIQUE CHECK (length(anchor_hash) = 32),
    prev_anchor_hash  bytea NOT NULL CHECK (length(prev_anchor_hash) = 32),
    epoch_root        bytea NOT NULL CHECK (length(epoch_root) = 32),
    anchored_at       timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- What each external sink returned for an epoch; one row per attempt.
CREATE TABLE anchor_sinks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    epoch       bigint NOT NULL REFERENCES anchors (epoch),
    sink        text NOT NULL,
    ok          boolean NOT NULL,
    result      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX anchor_sinks_epoch ON anchor_sinks (epoch);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    key_hash    bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    role        text NOT NULL CHECK (role IN ('writer', 'reader', 'admin')),
    scrolls     text[],
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE FUNCTION vaultmesh_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vaultmesh: % on % is forbidden, the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER scrolls_never_deleted BEFORE DELETE ON scrolls
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER scrolls_no_truncate BEFORE TRUNCATE ON scrolls
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER receipts_append_only BEFORE UPDATE OR DELETE ON receipts
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER receipts_no_truncate BEFORE TRUNCATE ON receipts
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER anchors_append_only BEFORE UPDATE OR DELETE ON anchors
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER anchors_no_truncate BEFORE TRUNCATE ON anchors
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER anchor_sinks_append_only BEFORE UPDATE OR DELETE ON anchor_sinks
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER anchor_sinks_no_truncate BEFORE TRUNCATE ON anchor_sinks
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

INSERT INTO scrolls (name) VALUES
    ('drills'), ('compliance'), ('guardian'), ('treasury'), ('mesh'), ('offsec'),
    ('identity'), ('observability'), ('automation'), ('psi'), ('federation'), ('governance');

GRANT USAGE ON SCHEMA public TO vaultmesh_app;
GRANT SELECT, INSERT ON receipts, checkpoints, anchors, anchor_sinks TO vaultmesh_app;
GRANT SELECT, INSERT, UPDATE ON scrolls, trees, tree_tiles, api_keys TO vaultmesh_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO vaultmesh_app;
