import Bus

extension AgentSession {
    /// KEY_PUBLISH: stores the agent's public keys (see ``KeyDirectory``), answered OK once stored.
    func handleKeyPublish(_ command: KeyPublish) {
        let agent = identity.key
        answerKeys(command.ref) { [supervisor] () throws(BusError) in
            let (published, changed) = try await supervisor.keys.publish(
                command.keys, rotation: command.rotation, for: agent)
            if changed {
                supervisor.record(
                    "key.published", tenant: agent.tenant, agentID: agent.agentID,
                    [
                        "fingerprint": published.keys.fingerprint,
                        "rotated": published.rotation.isEmpty ? "false" : "true",
                    ])
            }
            return .ok(Ok(ref: command.ref))
        }
    }

    /// KEY_FETCH: the keys of an agent of this tenant, or `no_key`.
    func handleKeyFetch(_ command: KeyFetch) {
        do throws(BusError) {
            try Identifier.validate(command.agentID, field: "agent_id")
        } catch {
            return fail(command.ref, error)
        }
        let agent = AgentKey(tenant: identity.tenant, agentID: command.agentID)
        // In memory, the common case: answered here, without a hop to the directory's thread.
        if let known = supervisor.keys.cached(agent) {
            write(.key(KeyInfo(ref: command.ref, agentID: command.agentID, published: known)))
            return flushSoon()
        }
        answerKeys(command.ref) { [supervisor] () throws(BusError) in
            guard let published = try await supervisor.keys.keys(of: agent) else {
                throw BusError(.noKey, "\(command.agentID) has published no keys")
            }
            return .key(KeyInfo(ref: command.ref, agentID: command.agentID, published: published))
        }
    }

    /// Key calls a session may have being answered at once: the directory reads and writes
    /// storage on one thread for every session, so one session must not queue many there.
    static let maxKeyCalls = 16

    /// Runs `work` off the loop (the directory may read or write storage) and writes its answer;
    /// beyond ``maxKeyCalls`` in flight, `overloaded`.
    private func answerKeys(_ ref: UInt64, _ work: @escaping @Sendable () async throws(BusError) -> Frame) {
        guard keyCalls < Self.maxKeyCalls else {
            return fail(ref, BusError(.overloaded, "\(Self.maxKeyCalls) key calls are being answered already"))
        }
        keyCalls += 1
        Task {
            let result: Result<Frame, BusError>
            do throws(BusError) { result = .success(try await work()) } catch { result = .failure(error) }
            onLoop { session in
                session.keyCalls -= 1
                guard session.state != .closed else { return }
                switch result {
                case .success(let answer): session.write(answer)
                case .failure(let error): session.fail(ref, error)
                }
                session.flushSoon()
            }
        }
    }
}
