import Bus
import Crypto
import Foundation
import NIOConcurrencyHelpers

/// A download being written to disk: where it stands, and the running SHA-256 of what arrived.
struct Download: Sendable {
    var open: StreamOpen
    var path: String
    var handle: FileHandle
    var hasher = SHA256()
    var received: UInt64 = 0
    /// The next chunk index expected.
    var nextIndex: UInt32 = 0

    var key: PartialDownloads.Key { PartialDownloads.Key(open) }

    /// The bus names a download `<delivery id>/<sender's stream id>`; applications see the latter.
    static func senderStreamID(_ downloadID: String) -> String {
        downloadID.split(separator: "/", maxSplits: 1).last.map(String.init) ?? downloadID
    }

    /// Deletes the partial file of a download that will not complete.
    func discard() {
        try? handle.close()
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Downloads cut short by a lost connection, kept so that the redelivery of the same stream
/// resumes where it broke instead of starting again. At most `capacity`; the oldest go first.
final class PartialDownloads: Sendable {
    /// What makes two deliveries the same stream: the sender, its stream id and the payload.
    struct Key: Hashable, Sendable {
        var from: String
        var streamID: String
        var size: UInt64
        var sha256: [UInt8]

        init(_ open: StreamOpen) {
            from = open.target.name
            streamID = Download.senderStreamID(open.streamID)
            size = open.totalSize
            sha256 = open.sha256
        }
    }

    private let capacity: Int
    /// The kept downloads; nil once the client closed (then nothing is kept any more).
    private let kept = NIOLockedValueBox<[(key: Key, download: Download)]?>([])

    init(capacity: Int) { self.capacity = capacity }

    func keep(_ download: Download) {
        let evicted: [Download] = kept.withLockedValue { kept in
            guard var list = kept else { return [download] }
            list.append((download.key, download))
            let overflow = max(0, list.count - capacity)
            defer { kept = Array(list.dropFirst(overflow)) }
            return list.prefix(overflow).map(\.download)
        }
        for download in evicted { download.discard() }
    }

    func take(_ key: Key) -> Download? {
        kept.withLockedValue { kept in
            guard let index = kept?.firstIndex(where: { $0.key == key }) else { return nil }
            return kept?.remove(at: index).download
        }
    }

    /// Deletes every kept file and keeps none from now on (the client is closing for good).
    func discardAll() {
        let all = kept.withLockedValue { kept in
            defer { kept = nil }
            return kept ?? []
        }
        for entry in all { entry.download.discard() }
    }
}
