public import NIOCore

/// HELLO, the first frame a client sends: protocol version, bearer token, client name.
public struct Hello: FrameBody {
    public var version: UInt16
    public var token: String
    public var clientName: String

    public init(version: UInt16 = Limits.protocolVersion, token: String, clientName: String) {
        self.version = version
        self.token = token
        self.clientName = clientName
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(version: try r.u16("version"), token: try r.string("token"), clientName: try r.string("client_name"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(version)
        b.writeWireString(token)
        b.writeWireString(clientName)
    }
}

/// WELCOME, the server's answer to a good HELLO: the session, who the token says the agent is,
/// and the limits the server enforces.
public struct Welcome: FrameBody {
    public var sessionID: UInt64
    public var tenant: String
    public var agentID: String
    public var limits: Limits

    public init(sessionID: UInt64, tenant: String, agentID: String, limits: Limits) {
        self.sessionID = sessionID
        self.tenant = tenant
        self.agentID = agentID
        self.limits = limits
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            sessionID: try r.u64("session_id"), tenant: try r.string("tenant"), agentID: try r.string("agent_id"),
            limits: Limits(
                maxFrameBytes: try r.u32("max_frame_bytes"), maxInlinePayload: try r.u32("max_inline_payload"),
                chunkSize: try r.u32("chunk_size"), maxUnacked: try r.u32("max_unacked"),
                maxPendingRequests: try r.u32("max_pending_requests"),
                heartbeatIntervalMs: try r.u32("heartbeat_interval_ms")))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(sessionID)
        b.writeWireString(tenant)
        b.writeWireString(agentID)
        b.writeInteger(limits.maxFrameBytes)
        b.writeInteger(limits.maxInlinePayload)
        b.writeInteger(limits.chunkSize)
        b.writeInteger(limits.maxUnacked)
        b.writeInteger(limits.maxPendingRequests)
        b.writeInteger(limits.heartbeatIntervalMs)
    }
}

/// ERROR: the command with reference `ref` was refused (ref 0: no command, e.g. the handshake).
public struct ErrorFrame: FrameBody {
    public var ref: UInt64
    public var error: BusError

    public init(ref: UInt64, error: BusError) {
        self.ref = ref
        self.error = error
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let ref = try r.u64("ref")
        let raw = try r.u16("code")
        let retry = try r.u32("retry_after_ms")
        let message = try r.string("message")
        // Unknown codes from a newer server are kept readable as `internal` with the number in the text.
        let code = ErrorCode(rawValue: raw) ?? .internal
        let text = ErrorCode(rawValue: raw) == nil ? "code \(raw): \(message)" : message
        self.init(ref: ref, error: BusError(code, text, retryAfterMs: retry))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeInteger(error.code.rawValue)
        b.writeInteger(error.retryAfterMs)
        b.writeWireMessage(error.message)
    }
}

/// GOAWAY: the server is closing this session, and why.
public struct GoAway: FrameBody {
    public var code: ErrorCode
    public var message: String

    public init(code: ErrorCode, message: String) {
        self.code = code
        self.message = message
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let raw = try r.u16("code")
        self.init(code: ErrorCode(rawValue: raw) ?? .internal, message: try r.string("message"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(code.rawValue)
        b.writeWireMessage(message)
    }
}

/// OK: the command with reference `ref` was done; for sends, how many sessions received it.
public struct Ok: FrameBody {
    public var ref: UInt64
    public var outcome: Outcome
    public var recipients: UInt32

    public init(ref: UInt64, outcome: Outcome = .ok, recipients: UInt32 = 0) {
        self.ref = ref
        self.outcome = outcome
        self.recipients = recipients
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let ref = try r.u64("ref")
        let raw = try r.u8("outcome")
        guard let outcome = Outcome(rawValue: raw) else { throw BusError(.badFrame, "unknown outcome \(raw)") }
        self.init(ref: ref, outcome: outcome, recipients: try r.u32("recipients"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeMultipleIntegers(ref, outcome.rawValue, recipients)
    }
}
