-- Guardian leadership fenced in the data, and a readiness probe for replicated durability
-- (issue 16). The advisory lock elects a leader, but it
-- lives in one server's memory: after a failover to a standby, or when the lock's connection
-- dies while the process lives on, an old leader could still write. So the lock's holder
-- takes a term in `guardian_lease` (term + 1) before it leads, its sessions carry that term
-- (`vaultmesh.lease_term`), and every write of the guardian's role to the tables only the
-- leader writes checks, under a share lock on the lease row, that the term is still current.
-- A new leader's takeover waits for writes in flight under the old term, and after it no
-- write under the old term lands. The lease replicates with everything else, so it survives
-- the primary.

CREATE TABLE guardian_lease (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    term       bigint NOT NULL DEFAULT 0 CHECK (term >= 0),
    holder     text,
    taken_at   timestamptz
);
INSERT INTO guardian_lease DEFAULT VALUES;

-- Terms only grow, and the row is never removed.
CREATE FUNCTION vaultmesh_lease_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.term <= OLD.term THEN
        PERFORM vaultmesh_refuse(format('the guardian lease term only grows (%s to %s)',
            OLD.term, NEW.term));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER guardian_lease_forward BEFORE UPDATE ON guardian_lease
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_lease_forward();
CREATE TRIGGER guardian_lease_never_deleted BEFORE DELETE ON guardian_lease
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER guardian_lease_no_truncate BEFORE TRUNCATE ON guardian_lease
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- The fence: a guardian-role statement on a leader-only table needs the current term in its
-- session. The owner (migrations, repair) is not fenced.
CREATE FUNCTION vaultmesh_lease_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    claimed text := current_setting('vaultmesh.lease_term', true);
BEGIN
    IF NOT pg_has_role(current_user, 'vaultmesh_guardian', 'MEMBER')
        OR pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID),
            'MEMBER') THEN
        RETURN NULL;
    END IF;
    IF claimed IS NULL OR claimed !~ '^[0-9]{1,18}$' THEN
        RAISE EXCEPTION 'vaultmesh: % by a guardian that holds no lease term', TG_TABLE_NAME
            USING ERRCODE = 'VML01';
    END IF;
    PERFORM 1 FROM guardian_lease WHERE term = claimed::bigint AND term > 0 FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'vaultmesh: % under lease term %, which is no longer current',
            TG_TABLE_NAME, claimed USING ERRCODE = 'VML01';
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tree_tiles', 'trees', 'checkpoints', 'anchors', 'anchor_sinks',
        'anchor_heads', 'checkpoint_cosignatures', 'anchor_head_cosignatures', 'psi_state',
        'psi_conditions', 'psi_transmutations'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_lease_fence()',
            t || '_lease_fence', t);
    END LOOP;
END
$$;

GRANT SELECT ON guardian_lease TO vaultmesh_portal, vaultmesh_guardian, vaultmesh_oracle;
GRANT UPDATE (term, holder, taken_at) ON guardian_lease TO vaultmesh_guardian;

-- Readiness under `replicated` durability writes one row per service role here, so that the
-- check's commit waits for a synchronous standby like any write (a read-only check would not).
CREATE TABLE durability_probes (
    role       name PRIMARY KEY DEFAULT current_user CHECK (role = current_user),
    probed_at  timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT (probed_at), UPDATE (probed_at) ON durability_probes
    TO vaultmesh_portal, vaultmesh_guardian, vaultmesh_oracle;
