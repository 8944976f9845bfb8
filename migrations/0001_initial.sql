-- ACB's durable state. Every table carries tenant_id; every lookup the server makes has an index.

-- Registered agents: what REGISTER said, so the registry survives a restart.
CREATE TABLE agents (
    tenant_id     text        NOT NULL,
    agent_id      text        NOT NULL,
    agent_type    text        NOT NULL,
    capabilities  text[]      NOT NULL DEFAULT '{}',
    metadata      jsonb       NOT NULL DEFAULT '{}',
    location      text        NOT NULL DEFAULT '',
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id)
);
CREATE INDEX agents_capabilities ON agents USING gin (capabilities);

-- Shared contexts: versioned, checksummed documents with a scope and an optional expiry.
CREATE TABLE contexts (
    tenant_id  text        NOT NULL,
    context_id text        NOT NULL,
    version    bigint      NOT NULL CHECK (version > 0),
    checksum   bytea       NOT NULL,
    scope      text        NOT NULL DEFAULT 'tenant',
    owner_id   text        NOT NULL,
    body       bytea       NOT NULL,
    expires_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, context_id)
);
CREATE INDEX contexts_expiry ON contexts (expires_at) WHERE expires_at IS NOT NULL;

-- Messages the bus stored for an offline receiver. The id is the bus's (time-ordered), so a
-- replayed write is recognised and delivery order is id order. No foreign key to agents: a
-- message outlives its receiver's unregistration, for the record and the dead-letter queue.
CREATE TABLE messages (
    id              bigint      PRIMARY KEY,
    tenant_id       text        NOT NULL,
    to_agent        text        NOT NULL,
    from_agent      text        NOT NULL,
    kind            smallint    NOT NULL,
    subject         text        NOT NULL DEFAULT '',
    deadline_ms     bigint,
    expires_at      timestamptz NOT NULL,
    payload         bytea       NOT NULL,
    idempotency_key text,
    status          text        NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'delivered', 'acked', 'dead_lettered')),
    attempts        smallint    NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The backlog of one receiver, in order: what a reconnecting agent is sent.
CREATE INDEX messages_backlog ON messages (tenant_id, to_agent, id) WHERE status IN ('queued', 'delivered');
-- Expiry sweep of the backlog.
CREATE INDEX messages_expiry ON messages (expires_at) WHERE status IN ('queued', 'delivered');

-- Messages the bus gave up on, with the reason (an error code name). message_id is set when the
-- message had been stored; in-memory deliveries that die are recorded here with their payload too.
CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    tenant_id   text        NOT NULL,
    message_id  bigint      REFERENCES messages (id) ON DELETE SET NULL,
    to_agent    text        NOT NULL,
    from_agent  text        NOT NULL,
    reason      text        NOT NULL,
    attempts    smallint    NOT NULL,
    payload     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant_id, id);

-- The history of the registry (agent.registered, agent.unregistered), written in the same
-- transaction as the change; what happened to stored messages is in their own rows. The full
-- audit stream is the Kafka topic acb.<tenant>.audit (docs/audit.md).
CREATE TABLE audit_log (
    id         bigserial   PRIMARY KEY,
    tenant_id  text        NOT NULL,
    agent_id   text        NOT NULL,
    kind       text        NOT NULL,
    detail     jsonb       NOT NULL DEFAULT '{}',
    at         timestamptz NOT NULL
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, at);
