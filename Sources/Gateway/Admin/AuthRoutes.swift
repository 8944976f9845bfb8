import Bus
import Hummingbird

/// `/api/v1/auth`: LOGIN, REFRESH and LOGOUT over HTTP, through the same ``Authenticator`` as the wire.
extension AdminAPI {
    struct LoginInput: AdminInput {
        var tenant: String
        var agentID: String
        var secret: String

        enum CodingKeys: String, CodingKey, CaseIterable {
            case tenant, agentID = "agent_id", secret
        }
    }

    struct RefreshInput: AdminInput {
        var refreshToken: String

        enum CodingKeys: String, CodingKey, CaseIterable {
            case refreshToken = "refresh_token"
        }
    }

    /// A token pair, as OAuth 2 names its fields.
    struct TokensView: Encodable {
        var accessToken: String
        var refreshToken: String
        var tokenType = "Bearer"
        var expiresIn: UInt32
        var refreshExpiresIn: UInt32

        init(_ tokens: Tokens) {
            accessToken = tokens.accessToken
            refreshToken = tokens.refreshToken
            expiresIn = tokens.accessExpiresInS
            refreshExpiresIn = tokens.refreshExpiresInS
        }
    }

    func addAuthRoutes(to routes: AdminRoutes) {
        routes.on(.post, "/api/v1/auth/login") { request, context in
            try refuseWithoutCertificate()
            _ = try request.query(allowing: [])
            let input = try await request.input(LoginInput.self, context: context)
            let login = Login(tenant: input.tenant, agentID: input.agentID, secret: input.secret)
            do throws(BusError) {
                let tokens = try await authenticator.login(login, from: context.remoteAddress, certificate: nil)
                return AdminJSON.response(TokensView(tokens))
            } catch {
                throw AdminError(error)
            }
        }
        routes.on(.post, "/api/v1/auth/refresh") { request, context in
            try refuseWithoutCertificate()
            _ = try request.query(allowing: [])
            let input = try await request.input(RefreshInput.self, context: context)
            do throws(BusError) {
                let tokens = try await authenticator.refresh(
                    Refresh(refreshToken: input.refreshToken), certificate: nil)
                return AdminJSON.response(TokensView(tokens))
            } catch {
                throw AdminError(error, field: error.code == .unauthenticated ? "refresh_token" : nil)
            }
        }
        routes.on(.post, "/api/v1/auth/logout") { request, _ in
            let caller = try await caller(request, anyRole: true)
            _ = try request.query(allowing: [])
            authenticator.logout(caller.token)
            return AdminJSON.noContent
        }
    }

    /// When agents must show a client certificate (mTLS), LOGIN and REFRESH bind tokens to it; over
    /// plain HTTP there is none to check, so both stay on the agent port.
    private func refuseWithoutCertificate() throws(AdminError) {
        try refuseWhileShuttingDown()
        guard !requiresClientCertificates else {
            throw AdminError(
                .unauthenticated, "this bus requires client certificates: log in and refresh on the agent port")
        }
    }
}
