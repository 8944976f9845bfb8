import Actors
import Bus
import Foundation
import Gateway
import NIOCore
import Testing

/// Protocol version 2 over real sockets: pipelining behind HELLO, CREDIT, CONFIRM and PING/PONG
/// (docs/protocol.md, sections 3.4 and 5.2).
@Suite struct ProtocolTwoTests {
    @Test func welcomeIsFollowedByTheWholeSendWindowAsCredit() async throws {
        try await TestBus.with({ $0.supervisor.sendWindow = 64 }) { bus in
            var alice = try await bus.raw()
            guard case .welcome = try await alice.hello(try await bus.token("alice"), version: 2) else {
                Issue.record("expected WELCOME"); return
            }
            #expect(try await alice.read() == .credit(Credit(grant: 64)))
        }
    }

    @Test func framesPipelinedBehindHelloRunAfterWelcome() async throws {
        try await TestBus.with { bus in
            var bob = try await bus.raw()
            var bytes = ByteBuffer()
            Frame.hello(Hello(version: 2, token: try await bus.token("bob"), clientName: "raw")).encode(into: &bytes)
            Frame.subscribe(PatternCommand(ref: 1, pattern: "news.*")).encode(into: &bytes)
            Frame.publish(Fanout(ref: 2, topic: "news.today", payload: ByteBuffer(string: "hi"))).encode(into: &bytes)
            Frame.ping(RefOnly(ref: 3)).encode(into: &bytes)
            try await bob.send(bytes)
            let frames = try await bob.read(until: { $0 == .pong(RefOnly(ref: 3)) })
            guard frames.count == 5, case .welcome = frames[0], case .credit = frames[1] else {
                Issue.record("unexpected answers \(frames)"); return
            }
            #expect(frames[2] == .ok(Ok(ref: 1)))
            #expect(frames[3] == .confirm(RefOnly(ref: 2)), "the publish reached its one subscriber")
            guard case .deliver(let deliver) = try await bob.read() else { Issue.record("no DELIVER"); return }
            #expect(deliver.subject == "news.today" && deliver.payload == ByteBuffer(string: "hi"))
        }
    }

    @Test func framesPipelinedBehindARefusedHelloNeverRun() async throws {
        try await TestBus.with { bus in
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            var mallory = try await bus.raw()
            var bytes = ByteBuffer()
            Frame.hello(Hello(version: 2, token: "not.a.token", clientName: "raw")).encode(into: &bytes)
            Frame.send(Send(ref: 1, target: .agent("bob"), payload: ByteBuffer(string: "x"))).encode(into: &bytes)
            try await mallory.send(bytes)
            guard case .error(let error) = try await mallory.read() else { Issue.record("expected ERROR"); return }
            #expect(error.error.code == .unauthenticated)
            #expect(try await mallory.read() == nil, "the server closes the connection")
            // Bob hears the PONG to a later PING, and no DELIVER before it.
            try await bob.send(.ping(RefOnly(ref: 9)))
            #expect(try await bob.read() == .pong(RefOnly(ref: 9)))
        }
    }

    @Test func moreFramesBeforeWelcomeThanTheBoundEndTheConnection() async throws {
        try await TestBus.with { bus in
            var alice = try await bus.raw()
            var bytes = ByteBuffer()
            Frame.hello(Hello(version: 2, token: try await bus.token("alice"), clientName: "raw")).encode(into: &bytes)
            for ref in 1...UInt64(Limits.maxFramesBeforeWelcome + 1) {
                Frame.ping(RefOnly(ref: ref)).encode(into: &bytes)
            }
            try await alice.send(bytes)
            guard case .error(let error) = try await alice.read() else { Issue.record("expected ERROR"); return }
            #expect(error.error.code == .badFrame && error.error.message.contains("before WELCOME"))
            #expect(try await alice.read() == nil)
        }
    }

    @Test func aFrameBehindAVersionOneHelloIsStillRefused() async throws {
        try await TestBus.with { bus in
            var alice = try await bus.raw()
            var bytes = ByteBuffer()
            Frame.hello(Hello(version: 1, token: try await bus.token("alice"), clientName: "raw")).encode(into: &bytes)
            Frame.ping(RefOnly(ref: 1)).encode(into: &bytes)
            try await alice.send(bytes)
            guard case .error(let error) = try await alice.read() else { Issue.record("expected ERROR"); return }
            #expect(error.error.code == .badFrame)
        }
    }

    @Test func successesAreConfirmedTogetherAfterTheFailuresOfTheirBatch() async throws {
        try await TestBus.with { bus in
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            var alice = try await bus.opened("alice")
            var bytes = ByteBuffer()
            for ref in 1...5 as ClosedRange<UInt64> {
                let target = ref == 3 ? "nobody" : "bob"
                Frame.send(Send(ref: ref, target: .agent(target), payload: ByteBuffer(string: "m\(ref)")))
                    .encode(into: &bytes)
            }
            Frame.ping(RefOnly(ref: 6)).encode(into: &bytes)
            try await alice.send(bytes)
            let frames = try await alice.read(until: { $0 == .pong(RefOnly(ref: 6)) })
            guard frames.count == 3, case .error(let error) = frames[0] else {
                Issue.record("unexpected answers \(frames)"); return
            }
            #expect(error.ref == 3 && error.error.code == .unknownAgent)
            #expect(frames[1] == .confirm(RefOnly(ref: 5)))
            var received: [String] = []
            for _ in 0..<4 {
                guard case .deliver(let deliver) = try await bob.read() else { Issue.record("no DELIVER"); return }
                received.append(String(buffer: deliver.payload))
            }
            #expect(received == ["m1", "m2", "m4", "m5"])
        }
    }

    @Test func aRefThatDoesNotIncreaseIsRefused() async throws {
        try await TestBus.with { bus in
            var alice = try await bus.opened("alice")
            try await alice.send(.broadcast(Fanout(ref: 5, payload: ByteBuffer(string: "a"))))
            try await alice.send(.broadcast(Fanout(ref: 5, payload: ByteBuffer(string: "b"))))
            try await alice.send(.ping(RefOnly(ref: 6)))
            let frames = try await alice.read(until: { $0 == .pong(RefOnly(ref: 6)) })
            let refusals = frames.compactMap { frame -> ErrorFrame? in
                if case .error(let error) = frame { error } else { nil }
            }
            #expect(refusals.map(\.ref) == [5] && refusals.first?.error.code == .invalidArgument)
            #expect(frames.contains(.confirm(RefOnly(ref: 5))))
        }
    }

    @Test func creditComesBackAsTheReceiverTakesTheMessages() async throws {
        try await TestBus.with({ $0.supervisor.sendWindow = 8 }) { bus in
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            var alice = try await bus.opened("alice")
            var bytes = ByteBuffer()
            for ref in 1...8 as ClosedRange<UInt64> {
                Frame.send(Send(ref: ref, target: .agent("bob"), payload: ByteBuffer(string: "m"))).encode(into: &bytes)
            }
            try await alice.send(bytes)
            for _ in 0..<8 {
                guard case .deliver = try await bob.read() else { Issue.record("no DELIVER"); return }
            }
            var granted: UInt32 = 0
            while granted < 8 {
                switch try await alice.read() {
                case .credit(let credit): granted += credit.grant
                case .confirm: continue
                case let other: Issue.record("unexpected \(String(describing: other))"); return
                }
            }
            #expect(granted == 8)
        }
    }

    @Test func creditComesBackForMessagesQueuedAtAReceiverThatLeaves() async throws {
        try await TestBus.with({
            $0.supervisor.sendWindow = 4
            $0.supervisor.limits.maxUnacked = 1
        }) { bus in
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            var alice = try await bus.opened("alice")
            var bytes = ByteBuffer()
            for ref in 1...4 as ClosedRange<UInt64> {
                Frame.send(Send(ref: ref, target: .agent("bob"), payload: ByteBuffer(string: "m"))).encode(into: &bytes)
            }
            try await alice.send(bytes)
            // Bob takes one (his unacked window is 1) and leaves with three in his queue.
            guard case .deliver = try await bob.read() else { Issue.record("no DELIVER"); return }
            await bob.close()
            var granted: UInt32 = 0
            while granted < 4 {
                switch try await alice.read() {
                case .credit(let credit): granted += credit.grant
                case .confirm: continue
                case let other: Issue.record("unexpected \(String(describing: other))"); return
                }
            }
            #expect(granted == 4)
        }
    }

    @Test func aFanoutThatSkippedAFullReceiverGetsAnOkOfItsOwn() async throws {
        try await TestBus.with({
            $0.supervisor.mailboxCapacity = 1
            $0.supervisor.limits.maxUnacked = 1
        }) { bus in
            var slow = try await bus.raw()
            _ = try await slow.hello(try await bus.token("slow"))
            try await slow.send(.subscribe(PatternCommand(ref: 1, pattern: "t")))
            #expect(try await slow.read() == .ok(Ok(ref: 1)))
            var alice = try await bus.opened("alice")
            // One delivery in the unacked window, one in the mailbox: the third finds it full.
            for ref in 1...3 as ClosedRange<UInt64> {
                try await alice.send(.publish(Fanout(ref: ref, topic: "t", payload: ByteBuffer(string: "m"))))
                try await alice.send(.ping(RefOnly(ref: 100 + ref)))
                _ = try await alice.read(until: { $0 == .pong(RefOnly(ref: 100 + ref)) })
            }
            try await alice.send(.publish(Fanout(ref: 4, topic: "t", payload: ByteBuffer(string: "m"))))
            try await alice.send(.ping(RefOnly(ref: 200)))
            let frames = try await alice.read(until: { $0 == .pong(RefOnly(ref: 200)) })
            #expect(frames.contains(.ok(Ok(ref: 4, outcome: .delivered, recipients: 0))))
            #expect(!frames.contains(.confirm(RefOnly(ref: 4))))
        }
    }

    @Test func pingIsAnsweredUnderVersionOneToo() async throws {
        try await TestBus.with { bus in
            var alice = try await bus.raw()
            _ = try await alice.hello(try await bus.token("alice"))
            try await alice.send(.broadcast(Fanout(ref: 1, payload: ByteBuffer(string: "a"))))
            try await alice.send(.ping(RefOnly(ref: 2)))
            #expect(try await alice.read() == .ok(Ok(ref: 1, outcome: .delivered, recipients: 0)))
            #expect(try await alice.read() == .pong(RefOnly(ref: 2)))
        }
    }

    @Test func aServerFrameFromTheClientIsRefused() async throws {
        try await TestBus.with { bus in
            var alice = try await bus.opened("alice")
            try await alice.send(.credit(Credit(grant: 1)))
            guard case .error(let error) = try await alice.read() else { Issue.record("expected ERROR"); return }
            #expect(error.ref == 0 && error.error.code == .badFrame)
            try await alice.send(.ping(RefOnly(ref: 1)))
            #expect(try await alice.read() == .pong(RefOnly(ref: 1)), "the connection stays open")
        }
    }
}

extension SidecarTests {
    /// Protocol 2 with a store: a SEND kept for an offline agent is answered on its own, and a
    /// CONFIRM for a later ref waits for that answer.
    @Suite struct ProtocolTwoStoredTests {
        @Test func confirmWaitsForTheOwnAnswerOfAStoredSend() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                try await DurableDeliveryTests.registerOffline("carol", tenant: tenant, on: bus)
                var alice = try await bus.raw()
                _ = try await alice.hello(try await bus.token("alice", tenant: tenant), version: 2)
                var bytes = ByteBuffer()
                Frame.send(Send(ref: 1, target: .agent("carol"), payload: ByteBuffer(string: "later")))
                    .encode(into: &bytes)
                Frame.broadcast(Fanout(ref: 2, payload: ByteBuffer(string: "now"))).encode(into: &bytes)
                try await alice.send(bytes)
                let frames = try await alice.read(until: {
                    if case .confirm(let confirm) = $0 { confirm.ref >= 2 } else { false }
                })
                let queued = frames.firstIndex(of: .ok(Ok(ref: 1, outcome: .queued, recipients: 1)))
                #expect(queued != nil, "the stored send is answered on its own, before the CONFIRM that passes it")
                #expect(frames.last == .confirm(RefOnly(ref: 2)))
            }
        }
    }
}

extension TestBus {
    /// A raw protocol 2 session, its WELCOME and first CREDIT read.
    func opened(_ agent: String) async throws -> RawConnection {
        var raw = try await raw()
        guard case .welcome = try await raw.hello(try await token(agent), version: 2),
            case .credit = try await raw.read()
        else { throw BusError(.internal, "no WELCOME and CREDIT for \(agent)") }
        return raw
    }
}

extension RawConnection {
    /// Reads frames up to and including the first that `last` accepts.
    mutating func read(until last: (Frame) -> Bool) async throws -> [Frame] {
        var frames: [Frame] = []
        while let frame = try await read() {
            frames.append(frame)
            if last(frame) { return frames }
        }
        throw BusError(.internal, "the connection closed after \(frames)")
    }
}
