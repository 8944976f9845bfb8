import Bus
import NIOCore

/// A target this node's copy of the cluster's directory does not know may have connected to
/// another node a moment ago (docs/cluster.md): the directory in Redis is asked afresh, and the
/// session's later frames wait meanwhile, so that they keep their order behind the command.
extension AgentSession {
    /// Asks where `agentID` of this tenant has its session, then runs `then` with the node (nil:
    /// none), on this session's event loop. Until then the frames that arrive are held, and the
    /// connection is not read, so at most one read's worth waits in memory.
    func lookUp(_ agentID: String, then: @escaping @Sendable (isolated AgentSession, String?) -> Void) {
        guard let cluster = supervisor.cluster else { return then(self, nil) }
        holding({ cluster.lookup(AgentKey(tenant: identity.tenant, agentID: agentID), then: $0) }, then: then)
    }

    /// Starts `ask` (a question to the cluster's directory), and holds the frames that arrive,
    /// without reading the connection, until it answers; then runs `then` with the answer, and the
    /// held frames in order, on this session's event loop. A hold that `then` starts (a command run
    /// again after one question needs another) keeps the frames held so far, and the last answer
    /// runs them.
    func holding<Answer: Sendable>(
        _ ask: (@escaping @Sendable (Answer) -> Void) -> Void,
        then: @escaping @Sendable (isolated AgentSession, Answer) -> Void
    ) {
        heldForLookup = heldForLookup ?? []
        holds &+= 1
        try? channel.syncOptions?.setOption(.autoRead, value: false)
        ask { answer in
            self.onLoop { session in
                let hold = session.holds
                then(session, answer)
                guard session.holds == hold else { return }
                session.resumeAfterLookup()
            }
        }
    }

    /// Runs the frames held during a lookup (``holding(_:then:)``), in order, until one of them
    /// starts another.
    private func resumeAfterLookup() {
        guard var held = heldForLookup, state != .closed else { return }
        heldForLookup = nil
        while !held.isEmpty {
            receive(held.removeFirst())
            if heldForLookup != nil {
                heldForLookup = held
                return flush()
            }
        }
        try? channel.syncOptions?.setOption(.autoRead, value: true)
        flush()
    }
}
