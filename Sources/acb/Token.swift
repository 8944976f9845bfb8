import ArgumentParser
import Bus
import Foundation
import Gateway

/// `acb token`: operator tools for agent tokens.
struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage agent tokens.", subcommands: [Issue.self])

    /// `acb token issue`: prints a signed access token.
    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a signed token for an agent.")

        @Option(help: "Agent id (the token's sub).") var agent: String
        @Option(help: "Tenant the agent belongs to.") var tenant: String
        @Option(help: "Comma-separated roles: admin, agent-full, agent-producer, agent-consumer, observer.")
        var roles = "agent-full"
        @Option(help: "Lifetime in seconds. Default 3600.") var ttl = 3600
        @Option(help: "HS256 secret (else ACB_TOKEN_SECRET, else the config file).") var tokenSecret: String?
        @Option(help: "JSON settings file, as for serve.") var config: String?

        func run() async throws {
            let secret: String
            let identity: Identity
            do {
                let settings = try Settings(configPath: config)
                guard let value = settings.string("token-secret", flag: tokenSecret),
                    value.utf8.count >= TokenAuthority.minimumSecretBytes
                else {
                    throw SettingError(
                        "token-secret is required and must be at least \(TokenAuthority.minimumSecretBytes) bytes")
                }
                secret = value
                identity = try Identity.parse(agent: agent, tenant: tenant, roles: roles)
            } catch let error as SettingError {
                throw error.exit()
            }
            let authority = try await TokenAuthority(secret: secret)
            print(try await authority.issue(identity, ttl: TimeInterval(ttl)))
        }
    }
}
