/// A failure talking to a sidecar. `connectionLost` says whether the connection is gone (retry
/// after reconnecting) or the server refused the statement (retrying it would fail again).
public struct SidecarError: Error, CustomStringConvertible {
    public var message: String
    public var connectionLost: Bool
    /// PostgreSQL's SQLSTATE of a refused statement.
    public var sqlState: String?

    public init(message: String, connectionLost: Bool, sqlState: String? = nil) {
        self.message = message
        self.connectionLost = connectionLost
        self.sqlState = sqlState
    }

    public var description: String { message }

    /// Whether trying the same statement again would fail again: bad data (class 22), a
    /// violated constraint (23) or a statement the schema does not fit (42). Anything else, a
    /// serialization failure, a full disk, a server shutting down or read-only, is worth retrying.
    public var isPermanent: Bool {
        !connectionLost && ["22", "23", "42"].contains(sqlState?.prefix(2) ?? "")
    }
}
