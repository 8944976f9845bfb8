import CLibPQ
import Foundation

/// A parameter of a PostgreSQL statement: text (PostgreSQL casts it to the column's type) or bytes.
enum PostgresParameter {
    case text(String)
    /// Sent in binary: `bytea`, or any type's binary form (see ``integers(_:)``).
    case bytes([UInt8])
    case null

    /// A one-dimensional `smallint[]`, `integer[]` or `bigint[]` (by `T`'s size) in PostgreSQL's
    /// binary array format: dimensions, flags, element type, then each element's length and value.
    /// Unsigned values go as their bit pattern.
    static func integers<T: FixedWidthInteger>(_ values: [T]) -> PostgresParameter {
        let size = MemoryLayout<T>.size
        precondition([2, 4, 8].contains(size), "PostgreSQL has no \(size)-byte integer")
        let elementType: Int32 = size == 2 ? 21 : size == 4 ? 23 : 20  // int2, int4, int8
        var data: [UInt8] = []
        data.reserveCapacity(20 + values.count * (4 + size))
        func append<I: FixedWidthInteger>(_ value: I) { withUnsafeBytes(of: value.bigEndian) { data += $0 } }
        append(Int32(values.isEmpty ? 0 : 1))
        append(Int32(0))  // no NULLs
        append(elementType)
        if !values.isEmpty {
            append(Int32(values.count))
            append(Int32(1))  // lower bound
        }
        for value in values {
            append(Int32(size))
            append(value)
        }
        return .bytes(data)
    }
}

/// One libpq connection. Blocking and not thread-safe: it belongs to the one thread that uses it.
final class PostgresConnection {
    private let handle: OpaquePointer

    /// Connects to `url` (a libpq connection string or `postgresql://` URI). Unless the URL says
    /// otherwise, connecting gives up after 5 s and TCP keepalives find a dead server within about
    /// 30 s, so the store's thread never waits on PostgreSQL without end.
    init(url: String) throws(SidecarError) {
        // The URL comes last: what it sets overrides these defaults (expand_dbname).
        let keywords = [
            "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "dbname",
        ]
        let values = ["5", "1", "10", "5", "4", url]
        let handle = Self.withArrayOfCStrings(keywords) { keywords in
            Self.withArrayOfCStrings(values) { values in PQconnectdbParams(keywords, values, 1) }
        }
        guard let handle else {
            throw SidecarError(message: "libpq could not allocate a connection", connectionLost: true)
        }
        self.handle = handle
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = Self.errorMessage(handle)
            // deinit finishes the handle.
            throw SidecarError(message: "cannot connect to PostgreSQL: \(message)", connectionLost: true)
        }
        // Notices (e.g. "already exists, skipping") would go to stderr.
        _ = try? check(PQexec(handle, "SET client_min_messages TO warning"))
    }

    deinit { PQfinish(handle) }

    /// Whether the connection still works (false once the server went away).
    var isOpen: Bool { PQstatus(handle) == CONNECTION_OK }

    /// Runs one or more statements without parameters (transaction control, migration scripts).
    func execute(_ sql: String) throws(SidecarError) {
        _ = try check(PQexec(handle, sql))
    }

    /// Runs one statement with parameters; results come back in binary, see ``PostgresRows``.
    @discardableResult
    func query(_ sql: String, _ parameters: [PostgresParameter] = []) throws(SidecarError) -> PostgresRows {
        // libpq wants C arrays of pointers that live through the call: one buffer holds every value.
        var storage: [UInt8] = []
        var offsets: [Int?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        for parameter in parameters {
            switch parameter {
            case .text(let text):
                offsets.append(storage.count)
                storage.append(contentsOf: text.utf8)
                storage.append(0)
                lengths.append(0)
                formats.append(0)
            case .bytes(let bytes):
                offsets.append(storage.count)
                storage.append(contentsOf: bytes)
                lengths.append(Int32(bytes.count))
                formats.append(1)
            case .null:
                offsets.append(nil)
                lengths.append(0)
                formats.append(0)
            }
        }
        storage.append(0)  // never empty, so the base address exists
        let result = storage.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            let values: [UnsafePointer<CChar>?] = offsets.map { $0.map { base + $0 } }
            return PQexecParams(handle, sql, Int32(parameters.count), nil, values, lengths, formats, 1)
        }
        return try check(result)
    }

    /// Runs a `COPY … FROM STDIN` statement and sends it `data` (in the statement's format). `sql`
    /// may begin with statements without results (`BEGIN; COPY …`): libpq stops at the COPY.
    func copy(_ sql: String, _ data: [UInt8]) throws(SidecarError) {
        guard let started = PQexec(handle, sql) else {
            throw SidecarError(message: Self.errorMessage(handle), connectionLost: !isOpen)
        }
        guard PQresultStatus(started) == PGRES_COPY_IN else {
            _ = try check(started)  // throws the error the server gave
            return
        }
        PQclear(started)
        let sent = data.withUnsafeBufferPointer { bytes in
            bytes.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                PQputCopyData(handle, $0, Int32(bytes.count))
            }
        }
        guard sent == 1, PQputCopyEnd(handle, nil) == 1 else {
            throw SidecarError(message: Self.errorMessage(handle), connectionLost: !isOpen)
        }
        // The COPY's own result, then nil.
        var failure: SidecarError?
        while let result = PQgetResult(handle) {
            do throws(SidecarError) { _ = try check(result) } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }

    private func check(_ result: OpaquePointer?) throws(SidecarError) -> PostgresRows {
        guard let result else {
            throw SidecarError(message: Self.errorMessage(handle), connectionLost: !isOpen)
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
            return PostgresRows(result)
        default:
            let message = String(cString: PQresultErrorMessage(result))
            let diagnosticSQLState: Int32 = 67  // PG_DIAG_SQLSTATE, the character 'C'
            let sqlState = PQresultErrorField(result, diagnosticSQLState).map { String(cString: $0) }
            PQclear(result)
            throw SidecarError(
                message: message.trimmingCharacters(in: .whitespacesAndNewlines), connectionLost: !isOpen,
                sqlState: sqlState)
        }
    }

    /// `body` gets a NUL-terminated array of C strings that lives through the call.
    private static func withArrayOfCStrings<R>(
        _ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R
    ) -> R {
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        return body(copies.map { UnsafePointer($0) } + [nil])
    }

    private static func errorMessage(_ handle: OpaquePointer) -> String {
        String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// The rows of a query, with values in PostgreSQL's binary format (big-endian integers, raw text and bytes).
///
/// Sendable without checks: it only reads its PGresult, which libpq never changes after creating
/// it ("PGresult objects are normally read-only after creation, and so can be passed around
/// freely between threads", libpq manual §34.21), and frees it once, in `deinit`.
final class PostgresRows: @unchecked Sendable {
    private let result: OpaquePointer

    init(_ result: OpaquePointer) { self.result = result }
    deinit { PQclear(result) }

    var count: Int { Int(PQntuples(result)) }

    func isNull(_ row: Int, _ column: Int) -> Bool { PQgetisnull(result, Int32(row), Int32(column)) == 1 }

    func bytes(_ row: Int, _ column: Int) -> [UInt8] {
        let length = Int(PQgetlength(result, Int32(row), Int32(column)))
        guard length > 0, let value = PQgetvalue(result, Int32(row), Int32(column)) else { return [] }
        return value.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    func string(_ row: Int, _ column: Int) -> String { String(decoding: bytes(row, column), as: UTF8.self) }

    /// An `int2`, `int4` or `int8` column.
    func integer(_ row: Int, _ column: Int) -> Int64 {
        bytes(row, column).reduce(Int64(0)) { ($0 << 8) | Int64($1) }.signExtended(
            bytes: Int(PQgetlength(result, Int32(row), Int32(column))))
    }
}

extension Int64 {
    /// The value of the low `bytes` bytes read as a signed big-endian integer.
    fileprivate func signExtended(bytes: Int) -> Int64 {
        guard bytes > 0, bytes < 8 else { return self }
        let shift = Int64(64 - 8 * bytes)
        return (self << shift) >> shift
    }
}
