import Actors
import Bus
import Foundation
import Gateway
import NIOCore
import Testing

@testable import ACBClient

/// End-to-end encryption between real clients through a real bus (docs/protocol.md 5.16).
@Suite("end-to-end encryption", .timeLimit(.minutes(2)))
struct SealingTests {
    /// A client with `keys`, which asks the bus for keys on every use (no pin is trusted for long).
    static func keyed(
        _ bus: TestBus, _ agent: String, _ keys: AgentKeys = .generate(), tenant: String = "acme",
        requireSealed: Bool = false
    ) async throws -> ACBClient {
        try await bus.client(agent, tenant: tenant) {
            $0.keys = keys
            $0.keyCheckIntervalMs = 0
            $0.requireSealed = requireSealed
        }
    }

    @Test("sealed messages, requests, replies and group topics open for their receivers only")
    func sealedTrafficOpens() async throws {
        try await TestBus.with { bus in
            let alice = try await Self.keyed(bus, "alice")
            let bob = try await Self.keyed(bus, "bob")
            let carol = try await Self.keyed(bus, "carol")
            var bobs = bob.deliveries.makeAsyncIterator()
            var carols = carol.deliveries.makeAsyncIterator()
            var carolFailures = carol.sealingFailures.makeAsyncIterator()

            try await alice.send(to: .agent("bob"), ByteBuffer(string: "secret one"), sealed: .box)
            let boxed = try #require(await bobs.next())
            #expect(boxed.text == "secret one" && boxed.sealedBy == .agent && boxed.from == "alice")
            try await alice.send(to: .agent("bob"), ByteBuffer(string: "secret two"), sealed: .anonymous)
            let anonymous = try #require(await bobs.next())
            #expect(anonymous.text == "secret two" && anonymous.sealedBy == .anonymous)
            await #expect(throws: SealError.self) {
                try await alice.send(to: .capability("x"), ByteBuffer(string: "no"), sealed: .box)
            }

            carol.serve { request in
                #expect(request.sealedBy == .agent)
                return ByteBuffer(string: "re: " + request.text)
            }
            let answer = try await alice.request(.agent("carol"), ByteBuffer(string: "question"), sealed: true)
            #expect(answer.text == "re: question" && answer.from == "carol")
            carol.serve { _ in throw SealError(.malformed, "unused") }

            try await bob.subscribe("ops.>")
            let group = try await alice.sealedGroup("ops", members: ["bob", "carol"])
            try await carol.subscribe("ops.>")
            #expect(
                try await alice.publish(topic: "ops.alert", ByteBuffer(string: "to the group"), group: group.id) == 2)
            for delivery in [try #require(await bobs.next()), try #require(await carols.next())] {
                #expect(delivery.text == "to the group" && delivery.sealedBy == .group("alice/ops"))
            }
            // Carol leaves: the next epoch's messages do not open for her.
            try await group.remove("carol")
            try await alice.publish(topic: "ops.alert", ByteBuffer(string: "after carol"), group: group.id)
            #expect(try #require(await bobs.next()).text == "after carol")
            #expect(try #require(await carolFailures.next()).error.code == .unknownGroupKey)
            for client in [alice, bob, carol] { await client.close() }
        }
    }

    @Test("a changed byte, another sender, other keys and plaintext are refused with their codes")
    func forgeriesAreRefused() async throws {
        try await TestBus.with { bus in
            let (aliceKeys, bobKeys, carolKeys) = (AgentKeys.generate(), AgentKeys.generate(), AgentKeys.generate())
            let alice = try await Self.keyed(bus, "alice", aliceKeys)
            let bob = try await Self.keyed(bus, "bob", bobKeys, requireSealed: true)
            let carol = try await Self.keyed(bus, "carol", carolKeys)
            var failures = bob.sealingFailures.makeAsyncIterator()
            let box = SealedFormat.box(
                Array("payload".utf8), purpose: .message, to: bobKeys.publicKeys, from: aliceKeys)
            var flipped = box.sealed
            flipped[flipped.count - 3] ^= 0x01
            try await alice.send(to: .agent("bob"), ByteBuffer(bytes: flipped))
            #expect(try await Self.next(.tampered, &failures).from == "alice")
            try await carol.send(to: .agent("bob"), ByteBuffer(bytes: box.sealed))
            #expect(try await Self.next(.wrongSender, &failures).from == "carol")
            let forCarol = SealedFormat.box(
                Array("x".utf8), purpose: .message, to: carolKeys.publicKeys, from: aliceKeys)
            try await alice.send(to: .agent("bob"), ByteBuffer(bytes: forCarol.sealed))
            #expect(try await Self.next(.wrongKey, &failures).from == "alice")
            try await alice.send(to: .agent("bob"), ByteBuffer(string: "plaintext"))
            #expect(try await Self.next(.notSealed, &failures).from == "alice")
            for client in [alice, bob, carol] { await client.close() }
        }
    }

    /// With chunks as large as its messages and smaller ones (each message then spans several).
    @Test(
        "a sealed stream opens to its plaintext; a replayed, changed or missing chunk is refused",
        arguments: [1 << 20, 64 << 10])
    func sealedStreams(chunkSize: UInt32) async throws {
        try await TestBus.with({ $0.supervisor.limits.chunkSize = chunkSize }) { bus in
            let (aliceKeys, bobKeys) = (AgentKeys.generate(), AgentKeys.generate())
            let alice = try await Self.keyed(bus, "alice", aliceKeys)
            let bob = try await bus.client("bob") {
                $0.keys = bobKeys
                $0.downloadDirectory = NSTemporaryDirectory()
            }
            var streams = bob.streams.makeAsyncIterator()
            var failures = bob.sealingFailures.makeAsyncIterator()
            let plaintext = ByteBuffer(bytes: (0..<(2 * SealedSource.messageBytes + 12_345)).map { UInt8($0 % 251) })
            try await alice.upload(to: .agent("bob"), from: BufferSource(plaintext), sealed: true)
            let stream = try #require(await streams.next())
            #expect(stream.sealedBy == .agent && stream.size == UInt64(plaintext.readableBytes))
            #expect(try Data(contentsOf: URL(fileURLWithPath: stream.path)) == Data(plaintext.readableBytesView))
            try? FileManager.default.removeItem(atPath: stream.path)

            // The same messages, rearranged by someone who cannot read them: the second replays the first.
            let sealed = try SealedSource(BufferSource(plaintext), to: bobKeys.publicKeys, from: aliceKeys)
            let bytes = Array(try sealed.read(offset: 0, count: Int(sealed.size)).readableBytesView)
            let header = SealedFormat.streamHeaderBytes
            let message = SealedSource.messageBytes + Sodium.streamOverhead
            var replayed = bytes
            replayed.replaceSubrange(header + message..<header + 2 * message, with: bytes[header..<header + message])
            try await alice.upload(to: .agent("bob"), from: BufferSource(ByteBuffer(bytes: replayed)))
            _ = try await Self.next(.tampered, &failures)
            var changed = bytes
            changed[header + message + 100] ^= 1
            try await alice.upload(to: .agent("bob"), from: BufferSource(ByteBuffer(bytes: changed)))
            #expect(try await Self.next(.tampered, &failures).from == "alice")
            let cut = Array(bytes.dropLast(10))
            try await alice.upload(to: .agent("bob"), from: BufferSource(ByteBuffer(bytes: cut)))
            _ = try await Self.next(.truncated, &failures)
            await alice.close()
            await bob.close()
        }
    }

    @Test("keys are pinned on first use, rotate by signature, and change otherwise only after a revocation")
    func keyLifecycle() async throws {
        // In PostgreSQL, under a tenant of this run's own.
        let tenant = "keys-\(UUID().uuidString.prefix(8).lowercased())"
        try await TestBus.withSidecars({
            $0.admin = AdminConfiguration()
            $0.admin?.port = 0
        }) { bus in
            let (first, second, stranger) = (AgentKeys.generate(), AgentKeys.generate(), AgentKeys.generate())
            let alice = try await Self.keyed(bus, "alice", first, tenant: tenant)
            let bob = try await Self.keyed(bus, "bob", tenant: tenant)
            var alices = alice.deliveries.makeAsyncIterator()
            #expect(try await bob.keyFingerprint(of: "alice") == first.publicKeys.fingerprint)
            #expect(alice.keyFingerprint == first.publicKeys.fingerprint)
            let beforeRotation = SealedFormat.box(
                Array("old".utf8), purpose: .message, to: first.publicKeys, from: try bob.keyRing.own())

            try await alice.rotateKeys(to: second)
            #expect(try await bob.keyFingerprint(of: "alice") == second.publicKeys.fingerprint)
            try await bob.send(to: .agent("alice"), ByteBuffer(string: "new"), sealed: .box)
            #expect(try #require(await alices.next()).text == "new")
            try await bob.send(to: .agent("alice"), ByteBuffer(bytes: beforeRotation.sealed))
            #expect(try #require(await alices.next()).text == "old")
            await alice.close()

            // Other keys without a rotation: the bus refuses them, until an operator revokes.
            await expectBusError(.forbidden) { _ = try await Self.keyed(bus, "alice", stranger, tenant: tenant) }
            let admin = try await bus.admin(tenant: tenant)
            let shown = try await admin.get("/api/v1/agents/alice/keys")
            #expect(shown.status == 200 && shown.json["fingerprint"] as? String == second.publicKeys.fingerprint)
            let selfRevoke = try await admin.with(token: try await bus.token("alice", tenant: tenant))
                .post("/api/v1/agents/alice/keys/revoke")
            #expect(selfRevoke.status == 403, "an agent's own token may not revoke its keys")
            let revoked = try await admin.post("/api/v1/agents/alice/keys/revoke")
            #expect(revoked.status == 200 && revoked.json["revoked"] as? Bool == true)
            #expect(try await admin.get("/api/v1/agents/nobody/keys").code == "no_key")
            await #expect(throws: SealError(.keyRevoked, "")) { _ = try await bob.keyFingerprint(of: "alice") }
            let again = try await Self.keyed(bus, "alice", stranger, tenant: tenant)
            await #expect(throws: SealError(.keyChanged, "")) { _ = try await bob.keyFingerprint(of: "alice") }
            try await bob.trustKeys(of: "alice", fingerprint: stranger.publicKeys.fingerprint)
            #expect(try await bob.keyFingerprint(of: "alice") == stranger.publicKeys.fingerprint)
            await again.close()
            await bob.close()
        }
    }

    @Test("a sealed context opens for its readers; the bus refuses to patch or watch its fields")
    func sealedContexts() async throws {
        try await TestBus.with { bus in
            let alice = try await Self.keyed(bus, "alice")
            let bob = try await Self.keyed(bus, "bob")
            let carol = try await Self.keyed(bus, "carol")
            let shared = ContextOptions(scope: .shared, readers: ["bob"])
            try await alice.shareSealed("plan", ByteBuffer(string: #"{"goal":"secret"}"#), options: shared)
            let opened = try await bob.getSealed("plan")
            #expect(opened.text == #"{"goal":"secret"}"# && opened.head.attributes.contentType == .sealed)
            #expect(try await alice.get("plan").text.contains("secret") == false)
            await expectBusError(.sealedBody) {
                _ = try await alice.patch("plan", .merge(ByteBuffer(string: #"{"goal":"x"}"#)))
            }
            await expectBusError(.sealedBody) { _ = try await bob.watch("plan", paths: ["/goal"]) }

            // Adding a reader keeps the key; dropping one makes the next.
            try await alice.shareSealed(
                "plan", ByteBuffer(string: "v2"), options: ContextOptions(scope: .shared, readers: ["bob", "carol"]))
            #expect(try await carol.getSealed("plan").text == "v2")
            #expect(try await Self.epoch(alice, "plan") == 1)
            try await alice.shareSealed(
                "plan", ByteBuffer(string: "v3"), options: ContextOptions(scope: .shared, readers: ["carol"]))
            #expect(try await Self.epoch(alice, "plan") == 2)
            #expect(try await carol.getSealed("plan").text == "v3")
            let head = try await alice.updateSealed("plan", options: ContextOptions(scope: .shared, readers: ["carol"]))
            {
                ByteBuffer(string: $0.text + "+")
            }
            #expect(try await carol.getSealed("plan", version: head.version).text == "v3+")

            // A body changed by someone who cannot read it does not open.
            var body = Array(try await alice.get("plan").body.readableBytesView)
            body[body.count - 70] ^= 0x01
            _ = try await alice.write(
                .update, "plan",
                attributes: ContextOptions(scope: .shared, readers: ["carol"], contentType: .sealed)
                    .attributes, body: ByteBuffer(bytes: body))
            await #expect(throws: SealError(.tampered, "")) { _ = try await carol.getSealed("plan") }
            for client in [alice, bob, carol] { await client.close() }
        }
    }

    @Test(
        "what was sealed before the bus restarted opens after it: keys, stored messages and contexts live in PostgreSQL"
    )
    func sealedAcrossARestart() async throws {
        let tenant = "keys-\(UUID().uuidString.prefix(8).lowercased())"
        let (aliceKeys, daveKeys) = (AgentKeys.generate(), AgentKeys.generate())
        let readers = ContextOptions(scope: .shared, readers: ["dave"])
        try await TestBus.withSidecars { bus in
            let alice = try await Self.keyed(bus, "alice", aliceKeys, tenant: tenant)
            await (try await Self.keyed(bus, "dave", daveKeys, tenant: tenant)).close()
            try await SidecarTests.DurableDeliveryTests.registerOffline("dave", tenant: tenant, on: bus)
            #expect(
                try await alice.send(to: .agent("dave"), ByteBuffer(string: "kept"), sealed: .box).outcome == .queued)
            try await alice.shareSealed("note", ByteBuffer(string: #"{"kept":true}"#), options: readers)
            await alice.close()
        }
        try await TestBus.withSidecars { bus in
            let dave = try await Self.keyed(bus, "dave", daveKeys, tenant: tenant)
            var daves = dave.deliveries.makeAsyncIterator()
            let stored = try await daves.take()
            #expect(stored.text == "kept" && stored.sealedBy == .agent && stored.from == "alice")
            #expect(try await dave.getSealed("note").text == #"{"kept":true}"#)
            #expect(try await dave.keyFingerprint(of: "alice") == aliceKeys.publicKeys.fingerprint)
            await dave.close()
        }
    }

    /// The same vector as the Python client's test: both derive the same keys from a seed.
    @Test("keys from 64 bytes of seed: the known answer both clients give")
    func knownAnswer() throws {
        let keys = try AgentKeys(seeds: Array(0..<64)).publicKeys
        #expect(keys.boxKey.lowercaseHex == "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f")
        #expect(keys.signKey.lowercaseHex == "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7")
        #expect(keys.fingerprint == "aca3:1af0:441d:81db:ec71:e82d:a0b4:b5f5")
        // A low-order box key would share an all-zero key with anyone: refused where keys are taken.
        #expect(Sodium.isWeak([UInt8](repeating: 0, count: 32)) && !Sodium.isWeak(keys.boxKey))
    }

    /// The next refusal with `code`, past the redeliveries of those before: a refused delivery is
    /// NACKed, so it comes again until it is dead-lettered.
    static func next(_ code: SealError.Code, _ failures: inout AsyncStream<SealingFailure>.Iterator) async throws
        -> SealingFailure
    {
        while let failure = await failures.next() {
            if failure.error.code == code { return failure }
        }
        throw SealError(code, "the client closed before refusing anything with \(code)")
    }

    /// The key epoch of a sealed context's latest body.
    static func epoch(_ client: ACBClient, _ id: String) async throws -> UInt32 {
        var reader = SealedFormat.Reader(Array(try await client.get(id).body.readableBytesView), skipping: 4)
        return try reader.integer(UInt32.self)
    }
}
