import Bus
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// A file that holds one streamed payload on disk, deleted when the last reference goes away.
///
/// Nothing blocks where it is made or dropped: the file is created by the first write, and closed
/// and unlinked on NIO's thread pool when the last reference goes. Its reads and writes block: run
/// them on a thread pool, never on an event loop. `pread`/`pwrite` at explicit offsets are safe
/// from any thread; the descriptor is behind a lock only until it is opened.
public final class SpoolFile: Sendable {
    public let path: String
    /// The open descriptor, or -1 before the first write.
    private let descriptor = NIOLockedValueBox<Int32>(-1)

    /// A new spool file for session `session` in `directory`, named `<session>-<UUID>`.
    convenience init(directory: String, session: UInt32) {
        self.init(path: "\(directory)/\(session)-\(UUID().uuidString)")
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

    /// A spool file at `path`, created (or truncated) by the first write.
    init(path: String) {
        self.path = path
    }

    deinit {
        let (path, fd) = (path, descriptor.withLockedValue { $0 })
        NIOThreadPool.singleton.submit { _ in
            if fd >= 0 { close(fd) }
            unlink(path)
        }
    }

    /// The descriptor, opening the file on first use.
    private func fd() throws(BusError) -> Int32 {
        let fd = descriptor.withLockedValue { descriptor in
            if descriptor < 0 { descriptor = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
            return descriptor
        }
        guard fd >= 0 else { throw BusError(.internal, "cannot create spool file \(path): errno \(errno)") }
        return fd
    }

    /// Writes all of `buffer` at `offset`.
    func write(_ buffer: ByteBuffer, at offset: UInt64) throws(BusError) {
        let fd = try fd()
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
        let fd = try fd()
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
