-- Tenants an operator declared through the admin API (POST /api/v1/tenants), with a display name.
-- The bus does not require a tenant to be declared: a token names its tenant, and tenants that
-- only have agents or credentials are listed too (without a name or creation time).
CREATE TABLE tenants (
    tenant_id  text        PRIMARY KEY,
    name       text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Dead letters of one receiver, for the admin API's filter by agent.
CREATE INDEX dead_letters_by_agent ON dead_letters (tenant_id, to_agent, id);
