public import Bus
import NIOCore

extension AgentSession {
    /// Writes the page `produce` makes (LIST, HISTORY, LINEAGE), or its error, for the command `ref`.
    func answer(_ ref: UInt64, _ produce: () throws -> ContextPage) {
        do {
            write(.contextPage(try produce()))
        } catch let error as BusError {
            fail(ref, error)
        } catch {
            fail(ref, BusError(.internal, "\(error)"))
        }
    }

    /// CONTEXT_WRITE, its body inline or a finished upload (see AgentSession+ContextBodies).
    func handleContextWrite(_ command: ContextWrite) {
        guard command.bodyStream.isEmpty else { return writeStagedBody(command) }
        commitContextWrite(command)
    }

    /// Hands a write to the context service (in a cluster, at the node that writes the tenant's
    /// contexts: Supervisor+ClusterContexts). It is answered once committed: at once without
    /// storage (on this event loop, no hop), else from the storage's thread, so back on the event
    /// loop, where the answers of one group commit share a flush.
    func commitContextWrite(_ command: ContextWrite) {
        supervisor.writeContext(command, by: principal) { [self] result in
            onLoop { $0.answer(command.ref, result) }
        }
    }

    private func answer(_ ref: UInt64, _ result: Result<ContextHead, BusError>) {
        guard state != .closed else { return }
        switch result {
        case .success(let head): write(.context(ContextReply(ref: ref, status: .head, head: head)))
        case .failure(let error): fail(ref, error)
        }
        flushSoon()
    }

    /// CONTEXT_WATCHING first, then the events the watch replays (they wait in the mailbox for the
    /// next drain). A watch refused for not fitting takes back what it had queued.
    func handleContextWatch(_ command: ContextWatch) {
        do {
            write(.contextWatching(try supervisor.contexts.watch(command, by: principal, watcher: self)))
        } catch {
            if error.code == .overloaded { mailbox.dropEvents(of: command.ref) }
            fail(command.ref, error)
        }
    }

    func handleContextUnwatch(_ command: ContextUnwatch) {
        guard supervisor.contexts.unwatch(command.watch, watcher: self) else {
            return fail(command.ref, BusError(.invalidArgument, "no watch \(command.watch)"))
        }
        mailbox.dropEvents(of: command.watch)
        write(.ok(Ok(ref: command.ref)))
    }
}

extension AgentSession: ContextWatcher {
    public nonisolated func offer(_ event: ContextEvent) -> Bool {
        guard case .accepted(let wake) = mailbox.offer(event) else { return false }
        if wake { scheduleDrain() }
        return true
    }

    public nonisolated func lagged(watch ref: UInt64, after: UInt64) {
        if case .accepted(true) = mailbox.lagged(watch: ref, after: after) { scheduleDrain() }
    }
}
