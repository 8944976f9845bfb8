import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// A bounded queue of records on disk, in order, that survives `kill -9` of the process.
///
/// Records are appended to numbered segment files with one `write(2)` each, so a record is in the
/// kernel's page cache, and survives the process, once ``append(_:)`` returns (not a power cut:
/// there is no fsync per record). One reader takes records in order with ``read(from:maxBytes:)``
/// and ``commit(through:)``s what it has handed on; the committed position is kept in a `cursor`
/// file and segments wholly before it are deleted. At start, records after the cursor are read
/// again (at least once), and a record cut short by a crash is dropped.
///
/// Bounded by `capacity` bytes on disk: ``append(_:)`` throws ``Full`` beyond it.
public final class Journal: Sendable {
    /// Where a record starts: a segment number and a byte offset in it.
    public struct Position: Sendable, Comparable {
        public var segment: UInt64
        public var offset: Int

        public static func < (a: Position, b: Position) -> Bool {
            (a.segment, a.offset) < (b.segment, b.offset)
        }
    }

    /// The journal holds `capacity` bytes already; nothing more is taken until the reader commits.
    public struct Full: Error {}

    private struct Tail {
        var descriptor: Int32
        /// Held open with an exclusive lock: one process per journal.
        var lock: Int32
        var end: Position
        /// Bytes in segment files, committed or not.
        var bytes: Int
        var committed: Position
    }

    public let directory: String
    public let capacity: Int
    public let segmentBytes: Int
    private let tail: NIOLockedValueBox<Tail>
    /// Held by ``commit(through:)`` alone, so two commits cannot both count the same freed bytes.
    private let reader = NIOLock()

    /// Opens (creating) the journal in `directory`, repairing a record cut short by a crash.
    public init(directory: String, capacity: Int, segmentBytes: Int = 16 << 20) throws(SidecarError) {
        self.directory = directory
        self.capacity = capacity
        self.segmentBytes = segmentBytes
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let lock = open("\(directory)/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else {
                if lock >= 0 { close(lock) }
                throw SidecarError(
                    message: "journal \(directory) is in use by another process (choose another --spool-dir)",
                    connectionLost: false)
            }
            let segments = try FileManager.default.contentsOfDirectory(atPath: directory)
                .compactMap { $0.hasSuffix(".seg") ? UInt64($0.dropLast(4)) : nil }.sorted()
            var committed = Self.readCursor(directory) ?? Position(segment: segments.first ?? 1, offset: 0)
            if let first = segments.first, committed.segment < first { committed = Position(segment: first, offset: 0) }
            let last = max(segments.last ?? committed.segment, committed.segment)
            var bytes = 0
            for segment in segments where segment < last {
                // A crash between writing the cursor and deleting what it passed leaves such segments.
                if segment < committed.segment {
                    unlink(Self.path(directory, segment))
                } else {
                    bytes += Self.size(of: Self.path(directory, segment))
                }
            }
            let validEnd = Self.validLength(Self.path(directory, last))
            let descriptor = open(Self.path(directory, last), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard descriptor >= 0, ftruncate(descriptor, off_t(validEnd)) == 0 else {
                throw SidecarError(message: "cannot open journal segment in \(directory)", connectionLost: false)
            }
            bytes += validEnd
            let end = Position(segment: last, offset: validEnd)
            // A cursor past the end (a segment cut short by a power cut) would wait for ever.
            if end < committed { committed = end }
            tail = NIOLockedValueBox(
                Tail(descriptor: descriptor, lock: lock, end: end, bytes: bytes, committed: committed))
        } catch let error as SidecarError {
            throw error
        } catch {
            throw SidecarError(message: "cannot open journal \(directory): \(error)", connectionLost: false)
        }
    }

    deinit {
        tail.withLockedValue { tail in
            close(tail.descriptor)
            close(tail.lock)
        }
    }

    /// Appends records, in order, with one write. - Throws: ``Full`` (nothing appended) or an I/O error.
    public func append(_ records: [[UInt8]]) throws {
        var frame: [UInt8] = []
        frame.reserveCapacity(records.reduce(0) { $0 + 4 + $1.count })
        for record in records {
            let length = UInt32(record.count)
            frame.append(contentsOf: [
                UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF),
            ])
            frame.append(contentsOf: record)
        }
        try tail.withLockedValue { tail in
            guard tail.bytes + frame.count <= capacity else { throw Full() }
            if tail.end.offset > 0, tail.end.offset + frame.count > segmentBytes { try rotate(&tail) }
            let written = frame.withUnsafeBytes { write(tail.descriptor, $0.baseAddress, $0.count) }
            guard written == frame.count else {
                // A short write leaves a torn record: cut it off so the segment stays readable.
                _ = ftruncate(tail.descriptor, off_t(tail.end.offset))
                throw SidecarError(
                    message: "journal write failed: \(String(cString: strerror(errno)))", connectionLost: false)
            }
            tail.end.offset += frame.count
            tail.bytes += frame.count
        }
    }

    /// Appends one record. - Throws: ``Full`` or an I/O error.
    public func append(_ record: [UInt8]) throws { try append([record]) }

    /// Where the reader resumes after a restart: the first record not committed.
    public var committed: Position { tail.withLockedValue { $0.committed } }

    /// Bytes on disk not yet committed by the reader.
    public var pendingBytes: Int {
        tail.withLockedValue { tail in
            tail.end.segment == tail.committed.segment
                ? tail.end.offset - tail.committed.offset
                : tail.bytes - tail.committed.offset
        }
    }

    /// The position after the last record appended.
    public var end: Position { tail.withLockedValue { $0.end } }

    /// Bytes that may still be appended.
    public var freeBytes: Int { tail.withLockedValue { capacity - $0.bytes } }

    /// Whether every record was committed.
    public var isEmpty: Bool { tail.withLockedValue { $0.committed == $0.end } }

    /// Up to about `maxBytes` of the records from `position` on, each with the position after it.
    public func read(from position: Position, maxBytes: Int = 1 << 20) -> [(record: [UInt8], next: Position)] {
        var position = position
        let end = tail.withLockedValue { $0.end }
        var records: [(record: [UInt8], next: Position)] = []
        var budget = maxBytes
        while budget > 0, position < end {
            let limit =
                position.segment == end.segment ? end.offset : Self.size(of: Self.path(directory, position.segment))
            if position.offset >= limit {
                position = Position(segment: position.segment + 1, offset: 0)
                continue
            }
            let chunk = Self.readBytes(
                Self.path(directory, position.segment), at: position.offset, count: min(budget, limit - position.offset)
            )
            var index = 0
            while chunk.count - index >= 4 {
                let length = chunk[index..<index + 4].reduce(0) { ($0 << 8) | Int($1) }
                guard chunk.count - index - 4 >= length else { break }
                index += 4 + length
                records.append(
                    (
                        Array(chunk[index - length..<index]),
                        Position(segment: position.segment, offset: position.offset + index)
                    ))
            }
            if index == 0 {
                // The next record is larger than the budget: read that one record whole.
                guard records.isEmpty, chunk.count >= 4 else { break }
                let length = chunk[0..<4].reduce(0) { ($0 << 8) | Int($1) }
                if 4 + length > budget, 4 + length <= limit - position.offset {
                    budget = 4 + length
                    continue
                }
                // A length past the segment's end: the rest of it is damaged. Skip to the next one.
                guard position.segment < end.segment else { break }
                position = Position(segment: position.segment + 1, offset: 0)
                continue
            }
            position.offset += index
            budget -= index
        }
        return records
    }

    /// Marks everything before `position` as handed on: it is not read again after a restart, and
    /// segments wholly before it are deleted. Call from the one reader only.
    ///
    /// The file work (cursor, deletions) happens outside the lock that ``append(_:)`` takes, so
    /// appenders (event loops among them) never wait on it. The cursor is written first: a crash
    /// before the deletions leaves segments that the next start deletes.
    public func commit(through position: Position) {
        reader.lock()
        defer { reader.unlock() }
        let from = committed
        guard from < position else { return }
        Self.writeCursor(directory, position)
        var freed = 0
        for segment in from.segment..<position.segment {
            let path = Self.path(directory, segment)
            freed += Self.size(of: path)
            unlink(path)
        }
        tail.withLockedValue { tail in
            tail.committed = position
            tail.bytes -= freed
        }
    }

    private func rotate(_ tail: inout Tail) throws {
        let next = tail.end.segment + 1
        let descriptor = open(Self.path(directory, next), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw SidecarError(message: "cannot create journal segment \(next) in \(directory)", connectionLost: false)
        }
        close(tail.descriptor)
        tail.descriptor = descriptor
        tail.end = Position(segment: next, offset: 0)
    }

    private static func path(_ directory: String, _ segment: UInt64) -> String {
        "\(directory)/\(String(repeating: "0", count: max(0, 12 - "\(segment)".count)))\(segment).seg"
    }

    private static func size(of path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }

    private static func readBytes(_ path: String, at offset: Int, count: Int) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return [] }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, count, off_t(offset)) }
        return Array(bytes.prefix(max(0, read)))
    }

    /// The length of the whole records at the start of a segment (a crash may have cut the last one).
    private static func validLength(_ path: String) -> Int {
        let bytes = readBytes(path, at: 0, count: size(of: path))
        var index = 0
        while bytes.count - index >= 4 {
            let length = bytes[index..<index + 4].reduce(0) { ($0 << 8) | Int($1) }
            guard bytes.count - index - 4 >= length else { break }
            index += 4 + length
        }
        return index
    }

    private static func readCursor(_ directory: String) -> Position? {
        guard let text = try? String(contentsOfFile: "\(directory)/cursor", encoding: .utf8) else { return nil }
        let parts = text.split(separator: " ").compactMap { Int($0) }
        guard parts.count == 2, parts[0] > 0, parts[1] >= 0 else { return nil }
        return Position(segment: UInt64(parts[0]), offset: parts[1])
    }

    /// Written beside and renamed over, so a crash leaves the old cursor or the new one.
    private static func writeCursor(_ directory: String, _ position: Position) {
        let temporary = "\(directory)/cursor.tmp"
        guard
            FileManager.default.createFile(
                atPath: temporary, contents: Data("\(position.segment) \(position.offset)".utf8))
        else { return }
        rename(temporary, "\(directory)/cursor")
    }
}
