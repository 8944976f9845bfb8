import Bus
import Crypto
import Foundation
import NIOCore

// Downloads run on the event loop: file writes block it briefly, which bounds memory to one chunk.
extension ClientConnection {
    /// STREAM_OPEN from the bus: a stream is coming. If an earlier attempt of the same stream broke
    /// off, carry on with its file and tell the bus where to continue (STREAM_STATUS).
    func beginDownload(_ open: StreamOpen) {
        if var partial = partials.take(PartialDownloads.Key(open)) {
            partial.open = open
            downloads.value[open.streamID] = partial
            return fire(
                .streamStatus(
                    StreamStatus(
                        ref: open.ref, streamID: open.streamID,
                        nextIndex: partial.nextIndex, bytes: partial.received)))
        }
        // Readable by its owner only, made anew: a sealed stream is opened in place.
        let path = "\(configuration.downloadDirectory)/acb-\(UUID().uuidString)"
        let descriptor = Foundation.open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { return nack(open.ref) }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        downloads.value[open.streamID] = Download(open: open, path: path, handle: handle)
    }

    func downloadChunk(_ chunk: StreamChunk) {
        guard var download = downloads.value[chunk.streamID], chunk.index >= download.nextIndex else { return }
        let written: Bool = chunk.data.withUnsafeReadableBytes { bytes in
            download.hasher.update(bufferPointer: bytes)
            return chunk.index == download.nextIndex && (try? download.handle.write(contentsOf: bytes)) != nil
        }
        guard written else {
            downloads.value[chunk.streamID] = nil
            download.discard()
            return nack(download.open.ref)
        }
        download.received += UInt64(chunk.data.readableBytes)
        download.nextIndex += 1
        downloads.value[chunk.streamID] = download
        configuration.downloadProgress?(
            Download.senderStreamID(chunk.streamID), download.received,
            download.open.totalSize)
    }

    func finishDownload(_ end: StreamEnd) {
        guard let download = downloads.value.removeValue(forKey: end.streamID) else { return }
        try? download.handle.close()
        let digest = Array(download.hasher.finalize())
        guard download.received == download.open.totalSize, digest == download.open.sha256 else {
            download.discard()
            return nack(end.ref)
        }
        delegate?.streamArrived(
            IncomingStream(
                deliveryID: end.ref, from: download.open.target.name, streamID: Download.senderStreamID(end.streamID),
                size: download.open.totalSize, path: download.path, connection: self))
    }

    /// The bus gave up sending a download: drop the file and settle the delivery (a NACK, which the bus
    /// ignores if it already withdrew it), so cumulative ACKs keep working.
    func abortDownload(_ streamID: String) {
        guard let download = downloads.value.removeValue(forKey: streamID) else { return }
        download.discard()
        nack(download.open.ref)
    }
}
