import Foundation

/// Certificates from `scripts/dev-certs.sh`, made once per test run in temporary folders: a CA with
/// a server certificate and client certificates for `agent-1`, `agent-2` and `agent-3` of tenant
/// `acme` (OU), and a second, foreign
/// CA with its own `agent-1`.
enum DevCertificates {
    static let folder: String = make("acb-certs-\(getpid())")
    static let foreignFolder: String = make("acb-certs-foreign-\(getpid())")

    static func path(_ name: String, foreign: Bool = false) -> String {
        "\(foreign ? foreignFolder : folder)/\(name)"
    }

    private static func make(_ name: String) -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(name).path
        let script = "\(Sidecars.root)/scripts/dev-certs.sh"
        let status = try? Sidecars.spawnAndWait(["/bin/bash", script, folder, "agent-1", "agent-2", "agent-3@acme"])
        precondition(status == 0, "\(script) failed")
        return folder
    }
}
