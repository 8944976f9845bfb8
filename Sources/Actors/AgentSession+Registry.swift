import Bus

extension AgentSession {
    func handleRegister(_ register: Register) {
        let description = register.description
        do throws(BusError) {
            try Identifier.validate(description.agentType, field: "agent_type")
            for capability in description.capabilities { try Identifier.validate(capability, field: "capability") }
            for entry in description.metadata { try Identifier.validate(entry.key, field: "metadata.key") }
            guard description.location.utf8.count <= Limits.maxLocationBytes,
                description.metadata.allSatisfy({ $0.value.utf8.count <= Limits.maxMetadataValueBytes })
            else {
                throw BusError(
                    .invalidArgument,
                    "location is limited to \(Limits.maxLocationBytes) bytes, "
                        + "metadata values to \(Limits.maxMetadataValueBytes)")
            }
        } catch {
            return fail(register.ref, error)
        }
        supervisor.registry.register(identity.key, description)
        supervisor.routing.setCapabilities(description.capabilities, for: identity.key)
        supervisor.store?.saveAgent(identity.key, description)
        audit("agent.registered", ["type": description.agentType])
        write(.ok(Ok(ref: register.ref)))
    }

    func handleUnregister(_ ref: UInt64) {
        guard supervisor.registry.unregister(identity.key) else {
            return fail(ref, BusError(.unknownAgent, "\(identity.agentID) is not registered"))
        }
        supervisor.routing.setCapabilities([], for: identity.key)
        supervisor.store?.saveAgent(identity.key, nil)
        audit("agent.unregistered")
        write(.ok(Ok(ref: ref)))
    }

    func handleDiscover(_ discover: Discover) {
        let routing = supervisor.routing
        let (agents, next) = supervisor.registry.discover(tenant: identity.tenant, filter: discover) { key in
            routing.session(for: key).map { ($0.load.readiness, UInt32(clamping: $0.load.inFlight)) }
        }
        write(.discovered(Discovered(ref: discover.ref, agents: agents, nextCursor: next)))
    }

    func handleSubscribe(_ command: PatternCommand) {
        do throws(BusError) {
            let tokens = try Topic.validatePattern(command.pattern)
            guard patterns[command.pattern] != nil || patterns.count < Limits.maxListCount else {
                throw BusError(.overloaded, "at most \(Limits.maxListCount) subscriptions per session")
            }
            patterns[command.pattern] = tokens
            supervisor.routing.subscribe(tenant: identity.tenant, pattern: tokens, number: number)
            write(.ok(Ok(ref: command.ref)))
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
        write(.ok(Ok(ref: command.ref)))
    }
}
