import Bus
import Foundation
import Yams

/// The admin API's OpenAPI document (`openapi.yaml`, kept beside this file and shipped as a
/// resource), as served at `/api/v1/openapi.yaml`, and the page of `/api/v1/docs` made from it
/// once, at start (``APIPage``).
struct APIDocument: Sendable {
    /// The document as written.
    let yaml: String
    /// The page of `/api/v1/docs`.
    let html: String

    /// Reads and parses the document. - Throws: when it is missing or is not a YAML mapping.
    init() throws {
        yaml = try String(contentsOf: try Self.location(), encoding: .utf8)
        guard let document = try Yams.compose(yaml: yaml), document.mapping != nil else {
            throw CocoaError(.fileReadCorruptFile)
        }
        html = APIPage(document: document).html
    }

    /// Where SwiftPM put the resource: in the `acb_Gateway.resources` folder beside the executable
    /// (an installed `acb` needs it there). Not `Bundle.module`, which ends the process when the
    /// folder is missing instead of letting the start fail with this error.
    private static func location() throws -> URL {
        let beside = Bundle.main.executableURL?.deletingLastPathComponent() ?? Bundle.main.bundleURL
        let url = beside.appendingPathComponent("acb_Gateway.resources/openapi.yaml")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw BusError(
                .internal, "the admin API's document is missing: install \(url.path) beside the acb executable")
        }
        return url
    }
}
