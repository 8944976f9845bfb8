-- The home of each tenant's contexts in a cluster (docs/cluster.md): the node that writes them,
-- and a number raised by each node that becomes it. A home's commits carry the number it got;
-- one that does not match the row is refused, so a home that lost its lease (cut off from Redis)
-- cannot commit after its successor read the tenant's contexts. A single node never writes here.
CREATE TABLE context_homes (
    tenant_id text   PRIMARY KEY,
    node      text   NOT NULL,
    epoch     bigint NOT NULL
);
