-- Least privilege (SPEC §5): one role per service, each with only the rights it needs, and
-- triggers so that no role but the schema owner's can shrink or rewrite what was written.
--
--   vaultmesh_portal    appends client receipts, creates scrolls (admin API), reads everything
--   vaultmesh_guardian  integrates (extends tiles, grows trees), signs checkpoints and
--                       ProofChain heads, anchors, writes its own receipts
--   vaultmesh_oracle    appends its answers, loads the corpus, reads receipts and proofs
--
-- API keys are managed by the schema owner only. The old shared role vaultmesh_app keeps no
-- rights at all. Roles are created NOLOGIN here; deployments give them LOGIN and a password
-- (ops/lib/stack.sh) or grant them to login roles of their own.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['vaultmesh_portal', 'vaultmesh_guardian', 'vaultmesh_oracle'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;

-- Which database role wrote each receipt: a default the writing roles cannot override (they
-- have no INSERT right on this column), so a service role cannot pass its rows off as
-- another's. Rows from before this migration carry the owner's name.
ALTER TABLE receipts ADD COLUMN db_role text NOT NULL DEFAULT current_user;

-- Idempotency keys are scoped to (scroll, API key): one writer can neither replay another's
-- receipt nor learn that it exists.
DROP INDEX receipts_idempotency_key;
CREATE UNIQUE INDEX receipts_idempotency_key ON receipts (scroll_id, submitter, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The signed ProofChain head of each epoch (SPEC §3): a signed note by the guardian's key over
-- `<mesh>/proofchain`, the epoch and its anchor hash. Kept beside the record, which never
-- changes; epochs anchored before heads existed get theirs when a guardian starts.
CREATE TABLE anchor_heads (
    epoch       bigint PRIMARY KEY REFERENCES anchors (epoch),
    note        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER anchor_heads_append_only BEFORE UPDATE OR DELETE ON anchor_heads
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER anchor_heads_no_truncate BEFORE TRUNCATE ON anchor_heads
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- A scroll's tree row is created by the owner's function, so that roles that may create
-- scrolls need no right on `trees`.
ALTER FUNCTION vaultmesh_new_tree() SECURITY DEFINER SET search_path = public, pg_temp;

CREATE FUNCTION vaultmesh_refuse(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vaultmesh: %', what USING ERRCODE = 'insufficient_privilege';
END
$$;

-- A tile's hashes may only be extended: same key, the old bytes as a prefix of the new.
CREATE FUNCTION vaultmesh_tile_extend_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.scroll_id <> OLD.scroll_id OR NEW.level <> OLD.level OR NEW.idx <> OLD.idx
        OR length(NEW.hashes) < length(OLD.hashes)
        OR substring(NEW.hashes FROM 1 FOR length(OLD.hashes)) <> OLD.hashes THEN
        PERFORM vaultmesh_refuse(format('tile (%s, %s, %s) may only be extended',
            OLD.scroll_id, OLD.level, OLD.idx));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tree_tiles_extend_only BEFORE UPDATE ON tree_tiles
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_tile_extend_only();
CREATE TRIGGER tree_tiles_never_deleted BEFORE DELETE ON tree_tiles
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER tree_tiles_no_truncate BEFORE TRUNCATE ON tree_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- A tree's size only grows.
CREATE FUNCTION vaultmesh_tree_grows_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.scroll_id <> OLD.scroll_id OR NEW.size < OLD.size THEN
        PERFORM vaultmesh_refuse(format('tree of scroll %s may only grow (%s -> %s)',
            OLD.scroll_id, OLD.size, NEW.size));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER trees_grow_only BEFORE UPDATE ON trees
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_tree_grows_only();
CREATE TRIGGER trees_never_deleted BEFORE DELETE ON trees
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER trees_no_truncate BEFORE TRUNCATE ON trees
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- A scroll keeps its id, name and creation time; its head only moves forward.
CREATE FUNCTION vaultmesh_scroll_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.name <> OLD.name OR NEW.created_at <> OLD.created_at
        OR NEW.next_seq < OLD.next_seq THEN
        PERFORM vaultmesh_refuse(format('scroll %s: only next_seq may change, and only upwards',
            OLD.name));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER scrolls_head_forward BEFORE UPDATE ON scrolls
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_scroll_head_forward();

-- A key's identity never changes and a revocation is final (no un-revoking, no deleting).
CREATE FUNCTION vaultmesh_key_revoke_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.key_hash <> OLD.key_hash OR NEW.role <> OLD.role
        OR NEW.scrolls IS DISTINCT FROM OLD.scrolls OR NEW.created_at <> OLD.created_at
        OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at) THEN
        PERFORM vaultmesh_refuse(format('api key %s: only an unrevoked key may be revoked', OLD.id));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER api_keys_revoke_only BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_key_revoke_only();
CREATE TRIGGER api_keys_never_deleted BEFORE DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER api_keys_no_truncate BEFORE TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- The shared role of earlier versions loses everything.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM vaultmesh_app;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM vaultmesh_app;

GRANT USAGE ON SCHEMA public TO vaultmesh_portal, vaultmesh_guardian, vaultmesh_oracle;

-- Everyone reads the ledger and the keys (to authenticate callers).
GRANT SELECT ON scrolls, receipts, trees, tree_tiles, checkpoints, anchors, anchor_sinks,
    anchor_heads, api_keys
    TO vaultmesh_portal, vaultmesh_guardian, vaultmesh_oracle;
GRANT SELECT ON corpus_documents, corpus_sections TO vaultmesh_portal, vaultmesh_oracle;

-- Appending receipts: every column but db_role, and moving the scroll's head.
GRANT INSERT (scroll_id, seq, leaf, leaf_hash, type, submitted_at, submitter, idempotency_key,
    request_hash) ON receipts TO vaultmesh_portal, vaultmesh_guardian, vaultmesh_oracle;
GRANT UPDATE (next_seq) ON scrolls TO vaultmesh_portal, vaultmesh_guardian, vaultmesh_oracle;

-- Creating scrolls (the portal's admin API).
GRANT INSERT (name) ON scrolls TO vaultmesh_portal;

-- Integration, signing and anchoring.
GRANT INSERT, UPDATE (hashes) ON tree_tiles TO vaultmesh_guardian;
GRANT UPDATE (size, updated_at) ON trees TO vaultmesh_guardian;
GRANT INSERT ON checkpoints, anchors, anchor_sinks, anchor_heads TO vaultmesh_guardian;
GRANT USAGE ON SEQUENCE anchor_sinks_id_seq TO vaultmesh_guardian;

-- The oracle's corpus.
GRANT INSERT, UPDATE, DELETE ON corpus_documents, corpus_sections TO vaultmesh_oracle;
