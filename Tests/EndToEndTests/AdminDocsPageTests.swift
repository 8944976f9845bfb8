import Bus
import Foundation
import Gateway
import NIOPosix
import Testing

/// The page of `/api/v1/docs` as a browser shows it: Debian's chromium, headless, loads it from a
/// live bus and hands back the DOM it built, which must hold what the OpenAPI document says, with
/// every reference resolved. Fails, never skips, when chromium is missing (scripts/ensure-deps.sh
/// installs it).
@Suite(.timeLimit(.minutes(1))) struct AdminDocsPageTests {
    @Test func everyOperationShowsItsRolesAndACurlCommand() async throws {
        try await Self.withDocsPage { dom, document in
            let ids = document.split(separator: "\n").compactMap { line -> String? in
                let text = line.trimmingCharacters(in: .whitespaces)
                return text.hasPrefix("operationId: ") ? String(text.dropFirst("operationId: ".count)) : nil
            }
            #expect(ids.count > 20, "the served document names its operations")
            for id in ids {
                let section = try #require(Self.section(id, in: dom), "no section for \(id)")
                #expect(section.contains("<pre class=\"curl\">curl "), "\(id) has no curl command")
                #expect(section.contains("<b>Roles:</b>"), "\(id) does not say who may call it")
            }
            let list = try #require(Self.section("listAgents", in: dom))
            #expect(list.contains("-H \"Authorization: Bearer $TOKEN\""))
            let health = try #require(Self.section("health", in: dom))
            #expect(health.contains("none needed") && !health.contains("$TOKEN"))
            let replay = try #require(Self.section("replayDeadLetters", in: dom))
            #expect(replay.contains("<code class=\"role\">admin</code>"))
            let register = try #require(Self.section("registerAgent", in: dom))
            #expect(register.contains("the agent itself") && register.contains("-d '{"))
        }
    }

    @Test func referencesAreResolvedIntoParametersFieldsAndTheErrorShape() async throws {
        try await Self.withDocsPage { dom, _ in
            #expect(!dom.contains("#/components/") && !dom.contains("$ref"), "a reference leaks into the page")
            // A parameter shared through components: its place and description, not its component's name.
            let list = try #require(Self.section("listAgents", in: dom))
            let tenant = try #require(Self.row("tenant", in: list), "no row for the tenant parameter")
            #expect(tenant.contains("<td>query</td>") && tenant.contains("The tenant to act in"), "\(tenant)")
            let limit = try #require(Self.row("limit", in: list), "no row for the limit parameter")
            #expect(limit.contains("integer") && limit.contains("1 to 256"), "\(limit)")
            // A request body referring to a schema: its fields, with their types and required marks.
            let register = try #require(Self.section("registerAgent", in: dom))
            let type = try #require(Self.row("type", in: register), "no row for the body's type field")
            #expect(type.contains("class=\"required\""), "\(type)")
            let location = try #require(Self.row("location", in: register))
            #expect(location.contains("class=\"optional\"") && location.contains("at most 64 characters"))
            #expect(Self.row("capabilities", in: register)?.contains("array of string") == true)
            // A response body: its fields, nested ones by their path.
            #expect(Self.row("items[].agent_id", in: list) != nil, "the page of agents shows no fields")
            // The error shape, once, and linked from the operations.
            let errors = try #require(Self.section("errors", in: dom), "no section on errors")
            for field in ["code", "message", "field", "request_id", "timestamp"] {
                #expect(Self.row(field, in: errors) != nil, "the error shape lacks \(field)")
            }
            #expect(list.contains("href=\"#errors\""))
            // Self-contained: nothing for the browser to fetch or run.
            #expect(!dom.contains("<script") && !dom.contains("<link") && !dom.contains(" src="))
        }
    }

    /// Runs `body` with the DOM chromium built from `/api/v1/docs` of a fresh bus, and the document
    /// the bus serves at `/api/v1/openapi.yaml`.
    static func withDocsPage(_ body: (_ dom: String, _ document: String) async throws -> Void) async throws {
        let chromium = try Self.chromium()
        try await TestBus.with({
            var admin = AdminConfiguration()
            admin.port = 0
            $0.admin = admin
        }) { bus in
            let port = try await #require(bus.server.admin).port()
            let document = try await AdminClient(port: port).get("/api/v1/openapi.yaml").text
            try await body(try await Self.dump(chromium, "http://127.0.0.1:\(port)/api/v1/docs"), document)
        }
    }

    /// Debian's chromium on PATH; the test fails, naming the package, when it is not installed.
    static func chromium() throws -> String {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
            .map { "\($0)/chromium" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let path else {
            throw BusError(
                .unavailable,
                "chromium is not installed: this test renders /api/v1/docs in headless chromium; "
                    + "scripts/ensure-deps.sh installs it (apt-get install chromium)")
        }
        return path
    }

    /// The DOM chromium builds from `url`, serialized (`--dump-dom`). `--no-sandbox` because tests
    /// may run as root, where chromium refuses its sandbox; a profile of its own, so it neither
    /// writes to the home folder nor waits on another chromium's lock; `timeout` so a stuck
    /// browser fails the test instead of hanging it. Through sh so its output goes to a file:
    /// chromium's helper processes may outlive it holding a pipe open.
    static func dump(_ chromium: String, _ url: String) async throws -> String {
        let base = NSTemporaryDirectory() + "acb-docs-\(UUID().uuidString)"
        defer {
            for path in [base + ".html", base + ".log", base + "-profile"] {
                try? FileManager.default.removeItem(atPath: path)
            }
        }
        let command =
            "exec timeout 60 '\(chromium)' --headless --no-sandbox --disable-gpu --disable-dev-shm-usage"
            + " --no-first-run --no-proxy-server --user-data-dir='\(base)-profile' --dump-dom '\(url)'"
            + " > '\(base).html' 2> '\(base).log'"
        // On NIO's thread pool: spawnAndWait blocks in waitpid, and a thread of the cooperative pool
        // blocked there starves the bus that chromium is loading the page from.
        let status = try await NIOThreadPool.singleton.runIfActive {
            try Sidecars.spawnAndWait(["/bin/sh", "-c", command])
        }
        let log = (try? String(contentsOfFile: base + ".log", encoding: .utf8)) ?? ""
        try #require(status == 0, "chromium exited with \(status) loading \(url): \(log.suffix(2_000))")
        let dom = try String(contentsOfFile: base + ".html", encoding: .utf8)
        try #require(
            dom.contains("<h1>"), "chromium built no page from \(url): \(dom.prefix(500)) \(log.suffix(2_000))")
        return dom
    }

    /// The `<section>` whose id is `id`, to its end (the page's sections do not nest).
    static func section(_ id: String, in dom: String) -> String? {
        guard let start = dom.range(of: "<section id=\"\(id)\"") else { return nil }
        guard let end = dom[start.upperBound...].range(of: "</section>") else { return nil }
        return String(dom[start.lowerBound..<end.upperBound])
    }

    /// The table row of `html` whose first cell names `name` (a parameter or a field).
    static func row(_ name: String, in html: String) -> String? {
        html.components(separatedBy: "<tr>").first { $0.hasPrefix("<td class=\"name\"><code>\(name)</code></td>") }
            .map { $0.components(separatedBy: "</tr>")[0] }
    }
}
