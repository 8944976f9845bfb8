import ACBClient
import Foundation
import Gateway
import Testing

extension SidecarTests {
    /// The admin API and its OpenAPI document cannot drift: schemathesis (from the sidecars' venv)
    /// validates the document the live bus serves, then sends generated requests, valid and
    /// invalid, to every operation and checks each response (status, headers, content type,
    /// body) against it.
    @Suite struct AdminSchemaTests {
        @Test func theLiveAPIConformsToItsDocument() async throws {
            try await AdminAPITests.withAdmin({ $0.requestsPerSecond = 100_000 }) { bus in
                let port = try await #require(bus.server.admin).port()
                let token = try await bus.token("root", tenant: "ops", roles: ["admin"])
                // Keys for the agent of the document's examples (`bob`), so that the keys operations
                // answer with real keys, not only `no_key`.
                await (try await bus.client("bob", tenant: "ops") { $0.keys = .generate() }).close()
                // Every operation but logout, which would revoke the token the run uses (AdminAPITests
                // covers it). schemathesis also leaves out the operation that serves the document it
                // loaded, unless a filter names it: the second run names it, so its answer (YAML that
                // parses to a mapping) is checked against its declaration too.
                for filter in [["--exclude-operation-id", "logout"], ["--include-operation-id", "openapiDocument"]] {
                    let status = try await Self.schemathesis(port: port, token: token, filter)
                    #expect(
                        status == 0,
                        "schemathesis \(filter) found responses that do not match openapi.yaml (its report is above)")
                }
            }
        }

        /// Runs schemathesis (from the sidecars' venv) against the admin API on `port`, on the
        /// operations `filter` selects; its exit status (0: every response matched the document).
        static func schemathesis(port: Int, token: String, _ filter: [String]) async throws -> Int32 {
            let python = try Sidecars.setting("ACB_PYTHON")
            let schemathesis = URL(fileURLWithPath: python).deletingLastPathComponent().appendingPathComponent(
                "schemathesis"
            ).path
            // scripts/schemathesis.toml leaves out the context watch (an endless event stream) and
            // lists the statuses a context's state gives valid requests (304, 410, 422).
            let run = [
                schemathesis, "--config-file", "\(Sidecars.root)/scripts/schemathesis.toml", "run",
                "http://127.0.0.1:\(port)/api/v1/openapi.yaml",
                "--url", "http://127.0.0.1:\(port)", "-H", "Authorization: Bearer \(token)", "--checks", "all",
                "--max-examples", ProcessInfo.processInfo.environment["ACB_SCHEMA_EXAMPLES"] ?? "25",
                "--seed", "1", "--no-color",
            ]
            // On the tests' own threads: spawnAndWait blocks in waitpid for the whole run, and a
            // detached task would still hold a thread of the cooperative pool, which every other
            // test's bus needs (their handshakes and handlers stalled behind it).
            return try await Command.blocking { try Sidecars.spawnAndWait(run + filter) }
        }
    }
}
