import ArgumentParser
import Bus
import Foundation
import Gateway
import Persistence

/// `acb agent`: operator tools for agent credentials.
struct Agent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage agent credentials.", subcommands: [Create.self])

    /// `acb agent create`: gives an agent a secret for LOGIN, stored as an Argon2id hash.
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create (or replace) an agent's secret; prints the secret once.",
            discussion: """
                The secret is generated (32 random bytes, base64url) unless --secret-stdin reads it \
                from standard input. Only its Argon2id hash is stored, in PostgreSQL. The agent then \
                sends LOGIN with its tenant, id and secret to get an access and a refresh token.
                """)

        @Option(help: "Agent id.") var agent: String
        @Option(help: "Tenant the agent belongs to.") var tenant: String
        @Option(help: "Comma-separated roles: admin, agent-full, agent-producer, agent-consumer, observer.")
        var roles = "agent-full"
        @Flag(help: "Read the secret from standard input (one line) instead of generating one.") var secretStdin = false
        @Option(help: "PostgreSQL URI. Default: ACB_POSTGRES_URL, else the --config file's postgres-url.")
        var postgresUrl: String?
        @Option(help: "JSON file with settings, keyed by flag name.") var config: String?

        func run() async throws {
            let url: String
            let identity: Identity
            let secret: String
            do {
                let settings = try Settings(configPath: config)
                guard let value = settings.string("postgres-url", flag: postgresUrl) else {
                    throw SettingError("postgres-url is required (flag, ACB_POSTGRES_URL or config)")
                }
                url = value
                identity = try Identity.parse(agent: agent, tenant: tenant, roles: roles)
                secret = secretStdin ? (readLine(strippingNewline: true) ?? "") : try SecretHash.generate()
            } catch let error as SettingError {
                throw error.exit()
            } catch let error as BusError {
                throw SettingError(error.message).exit()
            }
            do {
                let hash = try SecretHash.hash(secret)
                try CredentialStore(url: url).save(
                    CredentialStore.Credential(secretHash: hash, roles: identity.roles), for: identity.key)
            } catch let error as BusError {
                throw SettingError(error.message).exit()
            } catch {
                throw SettingError("cannot store the credential: \(error)").exit()
            }
            if !secretStdin { print(secret) }
        }
    }
}

extension Identity {
    /// The identity that operator flags name, or the one-line reason they are wrong.
    static func parse(agent: String, tenant: String, roles: String) throws -> Identity {
        do {
            try Identifier.validate(agent, field: "agent")
            try Identifier.validate(tenant, field: "tenant")
        } catch {
            throw SettingError(error.message)
        }
        let names = roles.split(separator: ",").map { String($0) }
        guard !names.isEmpty, names.allSatisfy({ Role(rawValue: $0) != nil }) else {
            throw SettingError("unknown role in '\(roles)'")
        }
        return Identity(tenant: tenant, agentID: agent, roles: names)
    }
}
