-- Agents' public keys for end-to-end encryption (docs/protocol.md 5.16): public halves only, the
-- private ones never leave the agents. One row per agent, replaced by a rotation; `rotation` is the
-- previous signing key's signature over the new keys (empty for a first key or after a revocation).
CREATE TABLE agent_keys (
    tenant_id         text        NOT NULL,
    agent_id          text        NOT NULL,
    box_key           bytea       NOT NULL CHECK (length(box_key) = 32),
    sign_key          bytea       NOT NULL CHECK (length(sign_key) = 32),
    rotation          bytea       NOT NULL CHECK (length(rotation) IN (0, 64)),
    previous_sign_key bytea       NOT NULL CHECK (length(previous_sign_key) IN (0, 32)),
    revoked           boolean     NOT NULL DEFAULT false,
    published_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);
