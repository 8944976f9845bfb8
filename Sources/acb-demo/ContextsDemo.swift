import ACBClient
import ArgumentParser

/// Two agents share a context and watch it change: alice writes a plan, bob watches it whole and
/// field by field, claims a step with a compare-and-swap, and alice's write at the version she saw
/// before that loses the race with `version_conflict`.
///
/// Both contexts are `group` contexts whose only member is bob: he may read and write them, no
/// other agent of the tenant sees them. Each step prints one line from the point of view of the
/// agent taking it; the demo waits for each event a write causes before the next write, so the
/// lines come in the same order on every run. The versions start at 1 on a bus that has never held
/// `plan.launch`; on another run they carry on from the tombstone the last one left.
struct ContextsDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contexts",
        abstract: "Two agents share a context, watch it field by field, and race a compare-and-swap.")

    @OptionGroup var bus: BusOptions
    @Option(help: "Token of the agent that owns the plan (alice).") var tokenA: String
    @Option(help: "Token of the agent that watches it (bob).") var tokenB: String

    /// The shared document: a goal and its steps.
    struct Plan: Codable {
        struct Step: Codable {
            var title: String
            var status: String
            var owner: String?
        }

        var goal: String
        var steps: [Step]

        var statuses: String { steps.map(\.status).joined(separator: ", ") }
    }

    func run() async throws {
        let alice = try await bus.client(token: tokenA, name: "demo-alice")
        let bob = try await bus.client(token: tokenB, name: "demo-bob")
        let aliceID = alice.welcome?.agentID ?? "alice"
        let bobID = bob.welcome?.agentID ?? "bob"

        let plan = Plan(
            goal: "ship ACB 1.0",
            steps: [
                .init(title: "freeze the API", status: "done"),
                .init(title: "tag the release", status: "todo"),
                .init(title: "announce it", status: "todo"),
            ])
        let options = ContextOptions(scope: .group, readers: [bobID], kind: "plan")
        let shared = try await alice.share("plan.launch", json: plan, options: options)
        print("\(aliceID) shared plan.launch v\(shared.version) (kind plan, group with \(bobID)): \(plan.statuses)")

        let whole = try await bob.watch("plan.launch", from: .snapshot)
        let field = try await bob.watch("plan.launch", from: .now, paths: ["/steps/1/status"])
        var wholeEvents = whole.makeAsyncIterator()
        var fieldEvents = field.makeAsyncIterator()
        print("\(bobID) watches plan.launch whole from a snapshot, and its field /steps/1/status")
        try await Self.show(&wholeEvents, bobID)

        // A merge patch that leaves /steps/1/status alone: the field watch sees nothing of it.
        let merged = try await alice.patch("plan.launch", .merge(text: #"{"goal":"ship ACB 1.0 on Friday"}"#))
        print("\(aliceID) merge-patched the goal: v\(merged.version)")
        let seen = try await Self.show(&wholeEvents, bobID)

        // Compare-and-swap twice over: the version bob saw, and a `test` that the step is still open.
        let claim = """
            [{"op":"test","path":"/steps/1/status","value":"todo"},\
            {"op":"replace","path":"/steps/1/status","value":"doing"},\
            {"op":"add","path":"/steps/1/owner","value":"\(bobID)"}]
            """
        let claimed = try await bob.patch("plan.launch", .json(text: claim), expectedVersion: seen.version)
        print("\(bobID) claimed step 1 with a JSON Patch expecting v\(seen.version): v\(claimed.version)")
        try await Self.show(&wholeEvents, bobID)
        try await Self.showPatch(&fieldEvents, bobID)

        // alice still holds the plan as her merge patch left it, and wants the same step.
        var stale = plan
        stale.goal = "ship ACB 1.0 on Friday"
        stale.steps[1].status = "doing"
        stale.steps[1].owner = aliceID
        do {
            try await alice.update("plan.launch", json: stale, expectedVersion: merged.version)
            throw BusError(.internal, "a write expecting stale version \(merged.version) was accepted")
        } catch let refused as BusError where refused.code == .versionConflict {
            print(
                "\(aliceID) claimed step 1 expecting v\(merged.version): refused, \(refused.code.name), "
                    + "current version \(refused.currentVersion ?? 0)")
        }

        let current = try await alice.get("plan.launch")
        let latest = try current.decode(Plan.self)
        let done = latest.steps.filter { $0.status == "done" }.count
        let step = latest.steps[1]
        let text = "\(done) of \(latest.steps.count) steps done; \(step.title): \(step.owner ?? "nobody")"
        let derived = ContextOptions(
            scope: .group, readers: [bobID], kind: "summary",
            parents: [ContextParent(id: current.id, version: current.version)])
        let summary = try await alice.share("summary.launch", text, options: derived)
        print("\(aliceID) derived summary.launch v\(summary.version) from plan.launch v\(current.version): \(text)")

        let ancestors = try await bob.lineage("summary.launch", .ancestors)
        let named = ancestors.map { "\($0.id) v\($0.version) (written by \($0.updatedBy))" }
        print("\(bobID) asked for summary.launch's ancestors: \(named.joined(separator: ", "))")

        let deleted = try await alice.delete("plan.launch")
        print("\(aliceID) deleted plan.launch: v\(deleted.version)")
        try await Self.show(&wholeEvents, bobID)
        try await Self.showPatch(&fieldEvents, bobID)

        await whole.cancel()
        await field.cancel()
        await alice.close()
        await bob.close()
    }

    /// Waits for the next event of a whole-context watch and prints its kind, version and plan.
    @discardableResult
    static func show(_ events: inout ContextWatchEvents.AsyncIterator, _ agent: String) async throws
        -> ContextWatchEvent
    {
        let event = try await next(&events)
        let plan = (try? event.decode(Plan.self)).map { " (\($0.goal): \($0.statuses))" } ?? ""
        print("\(agent)'s watch: \(event.kind.name) v\(event.version)\(plan)")
        return event
    }

    /// Waits for the next event of a field-level watch and prints its kind, version and JSON Patch.
    static func showPatch(_ events: inout ContextWatchEvents.AsyncIterator, _ agent: String) async throws {
        let event = try await next(&events)
        let patch = event.patch.map { String(buffer: $0) } ?? ""
        print("\(agent)'s field watch: \(event.kind.name) v\(event.version) \(patch)")
    }

    private static func next(_ events: inout ContextWatchEvents.AsyncIterator) async throws -> ContextWatchEvent {
        guard let event = try await events.next() else { throw BusError(.internal, "the watch ended early") }
        return event
    }
}
