-- Contexts: shared, versioned documents. The bus's in-memory ContextService is the authority while
-- it runs; this table keeps every version it committed and has not pruned (the newest few of each
-- context), so a restart reads them back. One row per kept version, written in batches by
-- PostgresContextStore: an upsert of each version (the service may write again a version whose
-- first commit was in doubt) and, in the same transaction, the removal of versions it no longer keeps.
--
-- Replaces the `contexts` table of 0001 (one row per context, never written by any release).
DROP INDEX contexts_expiry;
DROP TABLE contexts;

-- Times are Unix milliseconds as the bus has them (0 in expires_ms: never). The enums are the bus's
-- raw values: content_type 0 bytes, 1 json; scope 0 private, 1 group, 2 shared, 3 tenant;
-- state 0 live, 1 deleted, 2 expired (a tombstone, with an empty body).
CREATE TABLE context_versions (
    tenant_id    text     NOT NULL,
    context_id   text     NOT NULL,
    version      bigint   NOT NULL CHECK (version > 0),
    -- The tenant's revision of this change (+1 for every change of any of its contexts).
    revision     bigint   NOT NULL,
    owner_id     text     NOT NULL,
    kind         text     NOT NULL DEFAULT '',
    content_type smallint NOT NULL,
    label        text     NOT NULL DEFAULT '',
    scope        smallint NOT NULL,
    readers      text[]   NOT NULL DEFAULT '{}',
    writers      text[]   NOT NULL DEFAULT '{}',
    -- {"key": "value", ...}
    metadata     jsonb    NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    -- Lineage: [{"id": "...", "version": N}, ...], in the order the writer gave them.
    parents      jsonb    NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(parents) = 'array'),
    source       text     NOT NULL DEFAULT '',
    -- SHA-256 of the body.
    checksum     bytea    NOT NULL CHECK (length(checksum) = 32),
    size         bigint   NOT NULL CHECK (size >= 0),
    created_ms   bigint   NOT NULL,
    updated_ms   bigint   NOT NULL,
    updated_by   text     NOT NULL,
    expires_ms   bigint   NOT NULL DEFAULT 0,
    state        smallint NOT NULL CHECK (state IN (0, 1, 2)),
    body         bytea    NOT NULL,
    -- Also what a restart reads in order, and what pruning a context's old versions looks up.
    PRIMARY KEY (tenant_id, context_id, version)
);
