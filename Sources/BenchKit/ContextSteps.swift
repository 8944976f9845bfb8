import NIOCore

/// Runs context commands one after another, each once the previous one was answered: a scenario's
/// set-up (the NATS bucket, the first version of each context), its final read and its clean-up.
///
/// Stops at the first refusal (or at the connection's end), which ``failure`` names.
final class ContextSteps: Behaviour {
    /// What one command got back.
    struct Answer: Sendable {
        /// The version written or read; 0 for bucket commands and watches.
        var version: UInt64
        /// The body read; empty for writes, bucket commands and watches.
        var body: ByteBuffer
    }

    private let commands: [ContextCommand]
    private(set) var answers: [Answer] = []
    /// The code of the refusal that stopped the steps, or why the connection ended.
    private(set) var failure: String?

    init(_ commands: [ContextCommand]) { self.commands = commands }

    /// Every command was answered, or one failed.
    var isDone: Bool { answers.count == commands.count || failure != nil }

    func attached(_ outbox: any Outbox) { next(outbox) }

    func received(_ event: WireEvent, outbox: any Outbox) {
        switch event {
        case .committed(let version): answers.append(Answer(version: version, body: ByteBuffer()))
        case .value(let version, let body): answers.append(Answer(version: version, body: body))
        case .synced: answers.append(Answer(version: 0, body: ByteBuffer()))
        case .refused(let code), .closed(let code):
            if failure == nil { failure = code }
            return
        default: return
        }
        next(outbox)
    }

    private func next(_ outbox: any Outbox) {
        guard failure == nil, answers.count < commands.count else { return }
        outbox.context(commands[answers.count])
        outbox.flush()
    }
}
