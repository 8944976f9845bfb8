import Bus

extension PostgresContextStore {
    /// Where a batch is copied before one upsert and one prune take it into `context_versions`: a
    /// temporary table of the connection, emptied by every COMMIT. Arrays and JSON arrive as text
    /// and are cast by the upsert. `seq` is the record's place in the batch, `keep` its pruning.
    static let createStaging = """
        CREATE TEMP TABLE IF NOT EXISTS context_batch (
            seq integer, keep bigint, tenant_id text, context_id text, version bigint, revision bigint,
            owner_id text, kind text, content_type smallint, label text, scope smallint, readers text,
            writers text, metadata text, parents text, source text, checksum bytea, size bigint,
            created_ms bigint, updated_ms bigint, updated_by text, expires_ms bigint, state smallint, body bytea,
            epoch bigint
        ) ON COMMIT DELETE ROWS
        """

    /// The staging table's columns, in the order ``copyData(_:)`` writes them.
    static let stagingColumns = """
        seq, keep, tenant_id, context_id, version, revision, owner_id, kind, content_type, label, scope, readers, \
        writers, metadata, parents, source, checksum, size, created_ms, updated_ms, updated_by, expires_ms, state, body, \
        epoch
        """

    /// One simple query, two statements (the prune must see the rows the upsert wrote, which a
    /// single statement's CTEs would not). A version given twice in a batch: the later one stands.
    /// Versions of a context given with different `keep`s: the prune goes as far as the furthest.
    static let upsertAndPrune = """
        INSERT INTO context_versions (tenant_id, context_id, version, revision, owner_id, kind, content_type,
            label, scope, readers, writers, metadata, parents, source, checksum, size, created_ms, updated_ms,
            updated_by, expires_ms, state, body)
        SELECT DISTINCT ON (tenant_id, context_id, version) tenant_id, context_id, version, revision, owner_id,
            kind, content_type, label, scope, readers::text[], writers::text[], metadata::jsonb, parents::jsonb,
            source, checksum, size, created_ms, updated_ms, updated_by, expires_ms, state, body
        FROM context_batch
        ORDER BY tenant_id, context_id, version, seq DESC
        ON CONFLICT (tenant_id, context_id, version) DO UPDATE SET revision = excluded.revision,
            owner_id = excluded.owner_id, kind = excluded.kind, content_type = excluded.content_type,
            label = excluded.label, scope = excluded.scope, readers = excluded.readers,
            writers = excluded.writers, metadata = excluded.metadata, parents = excluded.parents,
            source = excluded.source, checksum = excluded.checksum, size = excluded.size,
            created_ms = excluded.created_ms, updated_ms = excluded.updated_ms, updated_by = excluded.updated_by,
            expires_ms = excluded.expires_ms, state = excluded.state, body = excluded.body;
        DELETE FROM context_versions AS stale
        USING (
            SELECT tenant_id, context_id, max(version - keep) AS through FROM context_batch
            WHERE keep > 0 AND version > keep
            GROUP BY tenant_id, context_id) AS pruned
        WHERE stale.tenant_id = pruned.tenant_id AND stale.context_id = pruned.context_id
            AND stale.version <= pruned.through
        """

    /// The fence of a cluster's homes (migration 0006): locks the `context_homes` rows of the
    /// batch's tenants that a home wrote (`epoch` above 0), until the COMMIT, then lists the
    /// tenants whose home has moved on since (another node claimed it: ``claimHome``).
    static let fencedTenants = """
        WITH homes AS (
            SELECT tenant_id, epoch FROM context_homes
            WHERE tenant_id IN (SELECT tenant_id FROM context_batch WHERE epoch > 0)
            FOR SHARE)
        SELECT DISTINCT tenant_id FROM context_batch AS batch LEFT JOIN homes USING (tenant_id)
        WHERE batch.epoch > 0 AND batch.epoch IS DISTINCT FROM homes.epoch
        """

    /// Makes node `$2` the home of tenant `$1`, with the next epoch, which it returns.
    static let claimHome = """
        INSERT INTO context_homes (tenant_id, node, epoch) VALUES ($1, $2, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET node = excluded.node, epoch = context_homes.epoch + 1
        RETURNING epoch
        """

    /// Every row, in ``load(url:)``'s order; metadata as `{{key, value}, …}` sorted by key and
    /// parents as `{{id, version}, …}` in order, both `text[]`, read like readers and writers.
    static let selectAll = select(where: "")

    /// The rows of tenant `$1`, in the same order.
    static let selectTenant = select(where: "WHERE tenant_id = $1")

    private static func select(where condition: String) -> String {
        """
        SELECT tenant_id, context_id, version, revision, owner_id, kind, content_type, label, scope, readers,
            writers,
            ARRAY(SELECT ARRAY[key, value] FROM jsonb_each_text(metadata) ORDER BY key COLLATE "C"),
            ARRAY(SELECT ARRAY[parent ->> 'id', parent ->> 'version']
                FROM jsonb_array_elements(parents) WITH ORDINALITY AS given (parent, place) ORDER BY place),
            source, checksum, size, created_ms, updated_ms, updated_by, expires_ms, state, body
        FROM context_versions
        \(condition)
        ORDER BY tenant_id COLLATE "C", context_id COLLATE "C", version
        """
    }

    /// The batch in PostgreSQL's binary COPY format, columns as in ``stagingColumns``.
    static func copyData(_ batch: [Pending]) -> [UInt8] {
        var data = BinaryCopy()
        for (seq, pending) in batch.enumerated() {
            let head = pending.record.head
            let attributes = head.attributes
            data.row(fields: 25)
            data.integer(Int32(clamping: seq))
            data.integer(Int64(max(pending.keep, 0)))
            data.text(pending.record.tenant)
            data.text(head.id)
            data.integer(Int64(bitPattern: head.version))
            data.integer(Int64(bitPattern: head.revision))
            data.text(head.owner)
            data.text(attributes.kind)
            data.integer(Int16(attributes.contentType.rawValue))
            data.text(attributes.label)
            data.integer(Int16(attributes.scope.rawValue))
            data.text(PostgresConnection.arrayLiteral(attributes.readers))
            data.text(PostgresConnection.arrayLiteral(attributes.writers))
            data.text(json(attributes.metadata))
            data.text(json(attributes.parents))
            data.text(attributes.source)
            data.bytes(head.checksum)
            data.integer(Int64(bitPattern: head.size))
            data.integer(Int64(bitPattern: head.createdMs))
            data.integer(Int64(bitPattern: head.updatedMs))
            data.text(head.updatedBy)
            data.integer(Int64(bitPattern: head.expiresMs))
            data.integer(Int16(head.state.rawValue))
            data.bytes(pending.record.body)
            data.integer(pending.epoch)
        }
        return data.finished()
    }

    /// Row `row` of ``selectAll`` as a record.
    static func record(_ rows: PostgresRows, _ row: Int) throws(SidecarError) -> ContextRecord {
        let tenant = rows.string(row, 0)
        let id = rows.string(row, 1)
        func decoded<Value: RawRepresentable>(_ what: String, _ column: Int) throws(SidecarError) -> Value
        where Value.RawValue == UInt8 {
            guard let raw = UInt8(exactly: rows.integer(row, column)), let value = Value(rawValue: raw) else {
                throw SidecarError(
                    message: "context \(tenant)/\(id) has an unknown \(what) \(rows.integer(row, column))",
                    connectionLost: false)
            }
            return value
        }
        let metadata = try texts(rows.bytes(row, 11))
        let parentFields = try texts(rows.bytes(row, 12))  // written by this store: every version is a number
        let parents = stride(from: 0, to: parentFields.count - 1, by: 2).compactMap { index in
            UInt64(parentFields[index + 1]).map { ContextParent(id: parentFields[index], version: $0) }
        }
        let attributes = ContextAttributes(
            kind: rows.string(row, 5), contentType: try decoded("content type", 6), label: rows.string(row, 7),
            scope: try decoded("scope", 8),
            readers: try texts(rows.bytes(row, 9)), writers: try texts(rows.bytes(row, 10)),
            metadata: stride(from: 0, to: metadata.count - 1, by: 2).map {
                MetadataEntry(key: metadata[$0], value: metadata[$0 + 1])
            },
            parents: parents, source: rows.string(row, 13))
        let head = ContextHead(
            id: id, owner: rows.string(row, 4), attributes: attributes,
            version: UInt64(bitPattern: rows.integer(row, 2)), revision: UInt64(bitPattern: rows.integer(row, 3)),
            checksum: rows.bytes(row, 14), size: UInt64(bitPattern: rows.integer(row, 15)),
            createdMs: UInt64(bitPattern: rows.integer(row, 16)), updatedMs: UInt64(bitPattern: rows.integer(row, 17)),
            updatedBy: rows.string(row, 18), expiresMs: UInt64(bitPattern: rows.integer(row, 19)),
            state: try decoded("state", 20))
        return ContextRecord(tenant: tenant, head: head, body: rows.bytes(row, 21))
    }

    /// The elements of a `text[]` of any dimensions in PostgreSQL's binary format (dimensions,
    /// flags, element type, a size and lower bound per dimension, then each element as a length and
    /// its bytes, -1 for NULL), flattened in row-major order, NULL as "".
    private static func texts(_ bytes: [UInt8]) throws(SidecarError) -> [String] {
        let truncated = SidecarError(message: "PostgreSQL sent a truncated text[]", connectionLost: false)
        var offset = 0
        func int32() throws(SidecarError) -> Int {
            guard offset + 4 <= bytes.count else { throw truncated }
            defer { offset += 4 }
            return Int(bytes[offset..<offset + 4].reduce(Int32(0)) { $0 << 8 | Int32($1) })
        }
        guard !bytes.isEmpty else { return [] }
        let dimensions = try int32()
        offset += 8  // whether it holds NULLs, the element type
        var count = dimensions > 0 ? 1 : 0
        for _ in 0..<max(dimensions, 0) {
            let size = try int32()
            offset += 4  // the lower bound
            count *= max(size, 0)
        }
        var elements: [String] = []
        for _ in 0..<count {
            let length = try int32()
            guard offset + max(length, 0) <= bytes.count else { throw truncated }
            elements.append(length < 0 ? "" : String(decoding: bytes[offset..<offset + length], as: UTF8.self))
            offset += max(length, 0)
        }
        return elements
    }

    /// Metadata as a JSON object (of a key given twice, the last value).
    private static func json(_ metadata: [MetadataEntry]) -> String {
        let object = JSONValue.object(Dictionary(metadata.map { ($0.key, .string($0.value)) }) { _, last in last })
        return String(decoding: object.serialized(), as: UTF8.self)
    }

    /// Parents as a JSON array of `{"id": …, "version": …}`, each version written as an integer: a
    /// `JSONValue.number` (a Double) holds versions exactly only up to 2^53.
    private static func json(_ parents: [ContextParent]) -> String {
        let items = parents.map { parent in
            #"{"id":"# + String(decoding: JSONValue.string(parent.id).serialized(), as: UTF8.self)
                + #","version":\#(parent.version)}"#
        }
        return "[" + items.joined(separator: ",") + "]"
    }
}
