-- Mesh health and psi (SPEC §13). Every service process is a node that heartbeats into
-- `mesh_nodes` and records the state of the routes it probes in `mesh_routes`; a service's
-- role may write only its own service's rows, so one service's credentials cannot fake
-- another's presence or health. The leading guardian announces joins and departures and
-- keeps the psi phase, its conditions and the transmutations; only it writes those.

CREATE TABLE mesh_nodes (
    node_id       text PRIMARY KEY,
    service       text NOT NULL CHECK (service IN ('portal', 'guardian', 'oracle')),
    instance      text NOT NULL CHECK (length(instance) BETWEEN 1 AND 200),
    role          text NOT NULL,
    version       text NOT NULL,
    mesh_id       text NOT NULL,
    api_addr      text NOT NULL,
    metrics_addr  text NOT NULL,
    started_at    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL DEFAULT now(),
    ready         boolean NOT NULL,
    heartbeat_ms  integer NOT NULL CHECK (heartbeat_ms > 0),
    left_at       timestamptz,
    announced     text CHECK (announced IN ('joined', 'departed')),
    announced_at  timestamptz,
    removed_at    timestamptz,
    removed_by    text,
    CHECK (node_id = service || '-' || instance)
);

-- A node's own columns are written only by its service's role (or the owner); the guardian
-- may in addition set what it announced about any node and an admin's removal of it.
CREATE FUNCTION vaultmesh_mesh_node_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.node_id = OLD.node_id AND NEW.service = OLD.service
        AND NEW.instance = OLD.instance AND NEW.role = OLD.role AND NEW.version = OLD.version
        AND NEW.mesh_id = OLD.mesh_id AND NEW.api_addr = OLD.api_addr
        AND NEW.metrics_addr = OLD.metrics_addr AND NEW.started_at = OLD.started_at
        AND NEW.last_seen = OLD.last_seen AND NEW.ready = OLD.ready
        AND NEW.heartbeat_ms = OLD.heartbeat_ms
        AND NEW.left_at IS NOT DISTINCT FROM OLD.left_at THEN
        IF NOT pg_has_role(current_user, 'vaultmesh_guardian', 'MEMBER') THEN
            PERFORM vaultmesh_refuse(format('only the guardian announces nodes (%s)', NEW.node_id));
        END IF;
        RETURN NEW;
    END IF;
    IF NOT pg_has_role(current_user, 'vaultmesh_' || NEW.service, 'MEMBER')
        OR (TG_OP = 'UPDATE' AND NEW.service <> OLD.service) THEN
        PERFORM vaultmesh_refuse(format('node %s is written only by the %s role',
            NEW.node_id, NEW.service));
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.announced IS DISTINCT FROM OLD.announced
        OR NEW.announced_at IS DISTINCT FROM OLD.announced_at
        OR NEW.removed_at IS DISTINCT FROM OLD.removed_at
        OR NEW.removed_by IS DISTINCT FROM OLD.removed_by)
        AND NOT pg_has_role(current_user, 'vaultmesh_guardian', 'MEMBER') THEN
        PERFORM vaultmesh_refuse(format('only the guardian announces nodes (%s)', NEW.node_id));
    END IF;
    IF TG_OP = 'INSERT' AND (NEW.announced IS NOT NULL OR NEW.removed_at IS NOT NULL)
        AND NOT pg_has_role(current_user, 'vaultmesh_guardian', 'MEMBER') THEN
        PERFORM vaultmesh_refuse(format('only the guardian announces nodes (%s)', NEW.node_id));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER mesh_nodes_owner BEFORE INSERT OR UPDATE ON mesh_nodes
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_mesh_node_owner();
CREATE TRIGGER mesh_nodes_never_deleted BEFORE DELETE ON mesh_nodes
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER mesh_nodes_no_truncate BEFORE TRUNCATE ON mesh_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- The last probed state of each route (`<node>-><target>`), written by its node's service.
CREATE TABLE mesh_routes (
    route_id    text PRIMARY KEY,
    node_id     text NOT NULL REFERENCES mesh_nodes (node_id),
    target      text NOT NULL CHECK (length(target) BETWEEN 1 AND 200),
    healthy     boolean NOT NULL,
    detail      text NOT NULL DEFAULT '',
    checked_at  timestamptz NOT NULL DEFAULT now(),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (route_id = node_id || '->' || target)
);

CREATE FUNCTION vaultmesh_mesh_route_owner() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    svc text;
BEGIN
    SELECT service INTO svc FROM mesh_nodes WHERE node_id = NEW.node_id;
    IF svc IS NULL OR NOT pg_has_role(current_user, 'vaultmesh_' || svc, 'MEMBER')
        OR (TG_OP = 'UPDATE' AND NEW.node_id <> OLD.node_id) THEN
        PERFORM vaultmesh_refuse(format('route %s is written only by its node''s role',
            NEW.route_id));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER mesh_routes_owner BEFORE INSERT OR UPDATE ON mesh_routes
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_mesh_route_owner();
CREATE TRIGGER mesh_routes_never_deleted BEFORE DELETE ON mesh_routes
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER mesh_routes_no_truncate BEFORE TRUNCATE ON mesh_routes
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- The psi phase: one row, moved by the leading guardian after the phase_changed receipt.
CREATE TABLE psi_state (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    phase            text NOT NULL CHECK (phase IN ('nigredo', 'albedo', 'citrinitas', 'rubedo')),
    since            timestamptz NOT NULL,
    reason           text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER psi_state_never_deleted BEFORE DELETE ON psi_state
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER psi_state_no_truncate BEFORE TRUNCATE ON psi_state
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- Every critical condition psi has seen: opened when first seen, acknowledged when its own
-- acknowledgement (or, for conditions without one, a transmutation in progress) is seen,
-- resolved when it clears (a live state) or when a transmutation completes after its
-- acknowledgement (an event). Never reopened: the same key seen again is the same condition.
CREATE TABLE psi_conditions (
    key              text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN
                         ('divergence', 'federation_discrepancy', 'emergency', 'anchor_failing',
                          'node_down')),
    detail           text NOT NULL,
    opened_at        timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    resolved_at      timestamptz
);
CREATE INDEX psi_conditions_open ON psi_conditions (opened_at) WHERE resolved_at IS NULL;

CREATE FUNCTION vaultmesh_psi_condition_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key <> OLD.key OR NEW.kind <> OLD.kind OR NEW.opened_at <> OLD.opened_at
        OR (OLD.acknowledged_at IS NOT NULL
            AND NEW.acknowledged_at IS DISTINCT FROM OLD.acknowledged_at)
        OR (OLD.resolved_at IS NOT NULL AND NEW.resolved_at IS DISTINCT FROM OLD.resolved_at) THEN
        PERFORM vaultmesh_refuse(format('psi condition %s only moves forward', OLD.key));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER psi_conditions_forward BEFORE UPDATE ON psi_conditions
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_psi_condition_forward();
CREATE TRIGGER psi_conditions_never_deleted BEFORE DELETE ON psi_conditions
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER psi_conditions_no_truncate BEFORE TRUNCATE ON psi_conditions
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

-- Transmutations: remediations opened by an admin, then completed or abandoned, once.
CREATE TABLE psi_transmutations (
    id           bigserial PRIMARY KEY,
    description  text NOT NULL CHECK (length(description) BETWEEN 1 AND 2000),
    opened_by    text NOT NULL,
    opened_at    timestamptz NOT NULL DEFAULT now(),
    status       text NOT NULL DEFAULT 'in_progress'
                     CHECK (status IN ('in_progress', 'completed', 'abandoned')),
    closed_by    text,
    closed_at    timestamptz,
    note         text
);
CREATE UNIQUE INDEX psi_transmutations_one_in_progress ON psi_transmutations ((true))
    WHERE status = 'in_progress';

CREATE FUNCTION vaultmesh_transmutation_closes_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.description <> OLD.description OR NEW.opened_by <> OLD.opened_by
        OR NEW.opened_at <> OLD.opened_at OR OLD.status <> 'in_progress'
        OR NEW.status = 'in_progress' OR NEW.closed_by IS NULL OR NEW.closed_at IS NULL THEN
        PERFORM vaultmesh_refuse(format('transmutation %s: only closed, once', OLD.id));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER psi_transmutations_closes_once BEFORE UPDATE ON psi_transmutations
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_transmutation_closes_once();
CREATE TRIGGER psi_transmutations_never_deleted BEFORE DELETE ON psi_transmutations
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER psi_transmutations_no_truncate BEFORE TRUNCATE ON psi_transmutations
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();

GRANT SELECT ON mesh_nodes, mesh_routes, psi_state, psi_conditions, psi_transmutations
    TO vaultmesh_portal, vaultmesh_guardian, vaultmesh_oracle;
GRANT INSERT, UPDATE ON mesh_nodes, mesh_routes
    TO vaultmesh_portal, vaultmesh_guardian, vaultmesh_oracle;
GRANT INSERT, UPDATE ON psi_state, psi_conditions, psi_transmutations TO vaultmesh_guardian;
GRANT USAGE ON SEQUENCE psi_transmutations_id_seq TO vaultmesh_guardian;
