import Bus

extension AgentSession {
    /// REGISTER, answered once the registration is durable (docs/protocol.md 4.6).
    func handleRegister(_ register: Register) {
        do throws(BusError) {
            try supervisor.register(identity.key, register.description) { error in
                self.onLoop { $0.answerSaved(register.ref, error) }
            }
        } catch {
            fail(register.ref, error)
        }
    }

    /// UNREGISTER, answered once the removal is durable.
    func handleUnregister(_ ref: UInt64) {
        do throws(BusError) {
            try supervisor.unregister(identity.key) { error in self.onLoop { $0.answerSaved(ref, error) } }
        } catch {
            fail(ref, error)
        }
    }

    private func answerSaved(_ ref: UInt64, _ error: BusError?) {
        guard state != .closed else { return }
        if let error { fail(ref, error) } else { write(.ok(Ok(ref: ref))) }
        flushSoon()
    }

    func handleDiscover(_ discover: Discover) {
        let (agents, next) = supervisor.discover(tenant: identity.tenant, discover)
        write(.discovered(Discovered(ref: discover.ref, agents: agents, nextCursor: next)))
    }

    func handleSubscribe(_ command: PatternCommand) {
        do throws(BusError) {
            let tokens = try Topic.validatePattern(command.pattern)
            guard patterns[command.pattern] != nil || patterns.count < Limits.maxListCount else {
                throw BusError(.overloaded, "at most \(Limits.maxListCount) subscriptions per session")
            }
            let added = patterns.updateValue(tokens, forKey: command.pattern) == nil
            supervisor.routing.subscribe(tenant: identity.tenant, pattern: tokens, number: number)
            guard added, let interest = supervisor.interest else { return write(.ok(Ok(ref: command.ref))) }
            // In a cluster, the OK waits until the other nodes are told (their PUBLISHes then come
            // here), with the session's later frames held.
            let (tenant, pattern) = (identity.tenant, command.pattern)
            holding({ told in interest.subscribed(tenant: tenant, pattern: pattern) { told(()) } }) { session, _ in
                session.write(.ok(Ok(ref: command.ref)))
            }
        } catch {
            fail(command.ref, error)
        }
    }

    func handleUnsubscribe(_ command: PatternCommand) {
        do throws(BusError) {
            _ = try Topic.validatePattern(command.pattern)
        } catch {
            return fail(command.ref, error)
        }
        guard let tokens = patterns.removeValue(forKey: command.pattern) else {
            return fail(command.ref, BusError(.invalidArgument, "not subscribed to \(command.pattern)"))
        }
        _ = supervisor.routing.unsubscribe(tenant: identity.tenant, pattern: tokens, number: number)
        supervisor.interest?.unsubscribed(tenant: identity.tenant, pattern: command.pattern)
        write(.ok(Ok(ref: command.ref)))
    }
}
