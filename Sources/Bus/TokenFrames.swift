public import NIOCore

/// LOGIN, sent instead of HELLO by an agent without a token: its id and secret, for ``Tokens``.
public struct Login: FrameBody {
    public var tenant: String
    public var agentID: String
    public var secret: String

    public init(tenant: String, agentID: String, secret: String) {
        self.tenant = tenant
        self.agentID = agentID
        self.secret = secret
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(tenant: try r.string("tenant"), agentID: try r.string("agent_id"), secret: try r.string("secret"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeWireString(tenant)
        b.writeWireString(agentID)
        b.writeWireString(secret)
    }
}

/// REFRESH, sent instead of HELLO: trades a refresh token for new ``Tokens`` (the refresh token
/// rotates; presenting a rotated one again revokes its whole family).
public struct Refresh: FrameBody {
    public var refreshToken: String

    public init(refreshToken: String) {
        self.refreshToken = refreshToken
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(refreshToken: try r.string("refresh_token"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeWireString(refreshToken)
    }
}

/// TOKENS, the answer to LOGIN and REFRESH: an access token for HELLO and the refresh token that
/// replaces it, with their lifetimes in seconds.
public struct Tokens: FrameBody {
    public var accessToken: String
    public var refreshToken: String
    public var accessExpiresInS: UInt32
    public var refreshExpiresInS: UInt32

    public init(accessToken: String, refreshToken: String, accessExpiresInS: UInt32, refreshExpiresInS: UInt32) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.accessExpiresInS = accessExpiresInS
        self.refreshExpiresInS = refreshExpiresInS
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            accessToken: try r.string("access_token"), refreshToken: try r.string("refresh_token"),
            accessExpiresInS: try r.u32("access_expires_in_s"), refreshExpiresInS: try r.u32("refresh_expires_in_s"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeWireString(accessToken)
        b.writeWireString(refreshToken)
        b.writeMultipleIntegers(accessExpiresInS, refreshExpiresInS)
    }
}
