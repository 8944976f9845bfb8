import Logging
import Synchronization

/// A log that keeps every line at every level, its metadata included, for a test to read.
final class KeptLog: Sendable {
    let lines = Mutex<[String]>([])

    /// A logger that writes here, at trace level.
    func logger(_ label: String) -> Logger { Logger(label: label) { _ in Handler(kept: self) } }

    /// Every line so far, one per line.
    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    struct Handler: LogHandler {
        let kept: KeptLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            let line = "\(event.message)" + (all.isEmpty ? "" : " \(all)") + (event.error.map { " \($0)" } ?? "")
            kept.lines.withLock { $0.append(line) }
        }
    }
}
