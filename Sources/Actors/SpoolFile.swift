import Bus
import Foundation
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// A file that holds one streamed payload on disk, deleted when the last reference goes away.
///
/// Sendable without a lock: its state is an immutable descriptor and path, and `pread`/`pwrite`
/// at explicit offsets are safe from any thread. Its calls block: run them on a thread pool, never
/// on an event loop.
public final class SpoolFile: Sendable {
    public let path: String
    private let fd: Int32

    /// A new spool file for session `session` in `directory`, named `<session>-<UUID>`.
    convenience init(directory: String, session: UInt32) throws(BusError) {
        try self.init(path: "\(directory)/\(session)-\(UUID().uuidString)")
    }

    /// Deletes spool files an earlier run left in `directory` (their uploads lived in its memory and
    /// cannot be resumed). Only names of the spool form are touched.
    static func removeLeftovers(in directory: String) throws {
        for name in try FileManager.default.contentsOfDirectory(atPath: directory)
        where name.range(of: #"^[0-9]+-[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}$"#, options: .regularExpression) != nil
        {
            try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")
        }
    }

    /// Creates (or truncates) the file at `path`.
    init(path: String) throws(BusError) {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BusError(.internal, "cannot create spool file \(path): errno \(errno)") }
        self.path = path
        self.fd = fd
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Writes all of `buffer` at `offset`.
    func write(_ buffer: ByteBuffer, at offset: UInt64) throws(BusError) {
        var written = 0
        let result: Int = buffer.withUnsafeReadableBytes { bytes in
            while written < bytes.count {
                let n = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(offset) + off_t(written))
                guard n > 0 else { return -1 }
                written += n
            }
            return written
        }
        guard result >= 0 else { throw BusError(.internal, "write to spool file failed: errno \(errno)") }
    }

    /// Reads `count` bytes at `offset`.
    func read(count: Int, at offset: UInt64, allocator: ByteBufferAllocator) throws(BusError) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: count)
        let read = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { bytes in
            var total = 0
            while total < count {
                let n = pread(fd, bytes.baseAddress! + total, count - total, off_t(offset) + off_t(total))
                guard n > 0 else { break }
                total += n
            }
            return total
        }
        guard read == count else { throw BusError(.internal, "spool file \(path) is shorter than expected") }
        return buffer
    }
}
