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
            let python = try Sidecars.setting("ACB_PYTHON")
            try await AdminAPITests.withAdmin({ $0.requestsPerSecond = 100_000 }) { bus in
                let port = try await #require(bus.server.admin).port()
                let token = try await bus.token("root", tenant: "ops", roles: ["admin"])
                let schemathesis = URL(fileURLWithPath: python).deletingLastPathComponent().appendingPathComponent(
                    "schemathesis"
                ).path
                // Logout is left out: it would revoke the token the run uses (AdminAPITests covers it).
                let status = try await Task.detached {
                    try Sidecars.spawnAndWait([
                        schemathesis, "run", "http://127.0.0.1:\(port)/api/v1/openapi.yaml",
                        "--url", "http://127.0.0.1:\(port)", "-H", "Authorization: Bearer \(token)",
                        "--checks", "all", "--exclude-operation-id", "logout",
                        "--max-examples", ProcessInfo.processInfo.environment["ACB_SCHEMA_EXAMPLES"] ?? "25",
                        "--seed", "1", "--no-color",
                    ])
                }.value
                #expect(
                    status == 0, "schemathesis found responses that do not match openapi.yaml (its report is above)")
            }
        }
    }
}
