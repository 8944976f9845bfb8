import Foundation

/// Applies the numbered SQL files of `migrations/` (`0001_name.sql`, …) to a database, each once,
/// in order, each in a transaction with its row in `schema_migrations`.
public struct Migrator: Sendable {
    /// One migration file.
    public struct Migration: Sendable {
        public var version: Int
        public var name: String
        public var sql: String
    }

    public let migrations: [Migration]

    /// Reads the migrations in `directory`.
    /// - Throws: when the folder cannot be read, a file is misnamed, or two files share a number.
    public init(directory: String) throws(SidecarError) {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".sql") }
        } catch {
            throw SidecarError(message: "cannot read migrations in \(directory): \(error)", connectionLost: false)
        }
        var migrations: [Migration] = []
        for name in names {
            guard let version = Int(name.prefix { $0.isNumber }), version > 0,
                let sql = try? String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8)
            else { throw SidecarError(message: "migration \(name) must be named NNNN_name.sql", connectionLost: false) }
            migrations.append(Migration(version: version, name: name, sql: sql))
        }
        migrations.sort { $0.version < $1.version }
        for (earlier, later) in zip(migrations, migrations.dropFirst()) where earlier.version == later.version {
            throw SidecarError(
                message: "migrations \(earlier.name) and \(later.name) share a number", connectionLost: false)
        }
        self.migrations = migrations
    }

    /// The version a fully migrated database has.
    public var latestVersion: Int { migrations.last?.version ?? 0 }

    /// Applies what `url`'s database lacks. - Returns: the migrations applied, in order.
    @discardableResult
    public func apply(url: String) throws(SidecarError) -> [Migration] {
        let connection = try PostgresConnection(url: url)
        try connection.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        var applied: [Migration] = []
        for migration in migrations {
            try connection.execute("BEGIN")
            do throws(SidecarError) {
                // Serialises concurrent `acb migrate` runs; released at COMMIT or ROLLBACK.
                try connection.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                let done = try connection.query(
                    "SELECT 1 FROM schema_migrations WHERE version = $1", [.text("\(migration.version)")])
                if done.count == 0 {
                    try connection.execute(migration.sql)
                    try connection.query(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        [.text("\(migration.version)"), .text(migration.name)])
                    applied.append(migration)
                }
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw SidecarError(
                    message: "migration \(migration.name) failed: \(error.message)", connectionLost: false)
            }
        }
        return applied
    }

    /// The highest version applied to `connection`'s database (0 for an empty one).
    static func appliedVersion(_ connection: PostgresConnection) throws(SidecarError) -> Int {
        let exists = try connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL")
        guard exists.bytes(0, 0) == [1] else { return 0 }
        let rows = try connection.query("SELECT coalesce(max(version), 0) FROM schema_migrations")
        return Int(rows.integer(0, 0))
    }
}
