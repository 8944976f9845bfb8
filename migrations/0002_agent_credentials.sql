-- Agent secrets, for LOGIN: only an Argon2id hash (libsodium's crypto_pwhash_str format, which
-- carries its own salt and cost), never the secret. Roles are what the issued tokens carry.
CREATE TABLE agent_credentials (
    tenant_id   text        NOT NULL,
    agent_id    text        NOT NULL,
    secret_hash text        NOT NULL CHECK (secret_hash LIKE '$argon2id$%'),
    roles       text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id)
);
