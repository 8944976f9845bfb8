import Bus
import NIOCore
import TestSupport
import Testing

@Suite struct FrameCodecTests {
    static let maxFrame: UInt32 = 1 << 20

    @Test func everyFrameTypeHasASample() {
        #expect(Set(SampleFrames.all.map(\.type)) == Set(FrameType.allCases))
    }

    @Test(arguments: SampleFrames.all)
    func roundTrip(_ frame: Frame) throws {
        var buffer = SampleFrames.encode(frame)
        let length = buffer.getInteger(at: 0, as: UInt32.self)
        #expect(Int(length ?? 0) == buffer.readableBytes - 4)
        let decoded = try Frame.decode(from: &buffer, maxFrameBytes: Self.maxFrame)
        #expect(decoded == frame)
        #expect(buffer.readableBytes == 0)
    }

    @Test func framesDecodeOneByOneFromOneBuffer() throws {
        var buffer = ByteBuffer()
        for frame in SampleFrames.all { frame.encode(into: &buffer) }
        var decoded: [Frame] = []
        while let frame = try Frame.decode(from: &buffer, maxFrameBytes: Self.maxFrame) { decoded.append(frame) }
        #expect(decoded == SampleFrames.all)
    }

    @Test(arguments: SampleFrames.all)
    func everyIncompletePrefixWaitsForMoreBytes(_ frame: Frame) throws {
        let whole = SampleFrames.encode(frame)
        for length in 0..<whole.readableBytes {
            var prefix = whole.getSlice(at: 0, length: length)!
            #expect(try Frame.decode(from: &prefix, maxFrameBytes: Self.maxFrame) == nil)
            #expect(prefix.readableBytes == length, "nothing is consumed while waiting")
        }
    }

    @Test(arguments: SampleFrames.all)
    func aBodyCutShortIsABadFrame(_ frame: Frame) throws {
        let whole = SampleFrames.encode(frame)
        var cut = whole.getSlice(at: 0, length: whole.readableBytes - 1)!
        cut.setInteger(UInt32(cut.readableBytes - 4), at: 0)
        guard !Self.endsWithFlags(frame) else {
            // Its last byte is the optional `flags`: without it, it is the same frame with no flags.
            var copy = cut
            let shorter = try #require(try Frame.decode(from: &copy, maxFrameBytes: Self.maxFrame))
            #expect(SampleFrames.encode(shorter) == cut)
            return
        }
        #expect(code(of: &cut) == .badFrame)
    }

    static func endsWithFlags(_ frame: Frame) -> Bool {
        switch frame {
        case .send(let send), .request(let send): !send.flags.isEmpty
        case .broadcast(let fanout), .publish(let fanout): !fanout.flags.isEmpty
        default: false
        }
    }

    /// The server's decoder, fed one byte at a time and then everything in one read, yields the
    /// same frames in the same order.
    @Test func theStreamDecoderReassemblesSplitReadsAndSplitsSharedOnes() throws {
        var bytes = ByteBuffer()
        for frame in SampleFrames.all { frame.encode(into: &bytes) }
        for chunk in [1, bytes.readableBytes] {
            let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxFrameBytes: Self.maxFrame))
            var decoded: [Frame] = []
            var rest = bytes
            while let piece = rest.readSlice(length: min(chunk, rest.readableBytes)) {
                try processor.process(buffer: piece) { decoded.append($0) }
                if rest.readableBytes == 0 { break }
            }
            #expect(decoded == SampleFrames.all, "chunks of \(chunk) bytes")
        }
    }

    @Test(arguments: [1, 2, 3, 5, 7, 64, 1 << 20])
    func theFrameReaderDecodesReadsOfAnySizeInPlace(_ chunk: Int) throws {
        var bytes = ByteBuffer()
        for frame in SampleFrames.all { frame.encode(into: &bytes) }
        var reader = FrameReader(maxFrameBytes: Self.maxFrame)
        var decoded: [Frame] = []
        var rest = bytes
        while rest.readableBytes > 0 {
            try reader.read(rest.readSlice(length: min(chunk, rest.readableBytes))!) { decoded.append($0) }
        }
        #expect(decoded == SampleFrames.all, "reads of \(chunk) bytes")
    }

    @Test func theFrameReaderRefusesAnOversizedLengthCutAcrossReads() {
        var prefix = ByteBuffer()
        prefix.writeInteger(UInt32(Self.maxFrame + 1))
        var reader = FrameReader(maxFrameBytes: Self.maxFrame)
        var error: BusError?
        do throws(BusError) {
            try reader.read(prefix.getSlice(at: 0, length: 2)!) { _ in }
            try reader.read(prefix.getSlice(at: 2, length: 2)!) { _ in }
        } catch let caught {
            error = caught
        }
        #expect(error?.code == .tooLarge)
    }

    @Test func anOversizedLengthIsRefusedBeforeItsBytesArrive() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(Self.maxFrame + 1))
        buffer.writeInteger(FrameType.send.rawValue)
        #expect(code(of: &buffer) == .tooLarge)
    }

    @Test func anEmptyFrameIsABadFrame() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(0))
        #expect(code(of: &buffer) == .badFrame)
    }

    @Test(arguments: [0x00, 0x06, 0x15, 0x33, 0x46, 0xFF] as [UInt8])
    func anUnknownTypeIsABadFrame(_ type: UInt8) {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(1))
        buffer.writeInteger(type)
        #expect(code(of: &buffer) == .badFrame)
    }

    @Test func trailingBytesAreABadFrame() {
        var body = ByteBuffer()
        Frame.unregister(RefOnly(ref: 1)).encode(into: &body)
        body.writeInteger(UInt8(0))
        body.setInteger(UInt32(body.readableBytes - 4), at: 0)
        #expect(code(of: &body) == .badFrame)
    }

    /// SEND's `flags` and DELIVER's `message_id` are optional last fields: absent, or whole.
    @Test func anOptionalLastFieldIsAbsentOrWhole() throws {
        var send = ByteBuffer()
        Frame.send(Send(ref: 1, target: .agent("bob"), payload: ByteBuffer())).encode(into: &send)
        var explicit = send
        explicit.writeInteger(UInt8(0))
        explicit.setInteger(UInt32(explicit.readableBytes - 4), at: 0)
        guard case .send(let decoded) = try #require(try Frame.decode(from: &explicit, maxFrameBytes: 1 << 20)) else {
            Issue.record("not a SEND")
            return
        }
        #expect(decoded.flags.isEmpty, "flags 0 written out is the same as none")

        var deliver = ByteBuffer()
        Frame.deliver(Deliver(deliveryID: 1, kind: .direct, from: "a", payload: ByteBuffer())).encode(into: &deliver)
        deliver.writeBytes([0, 0, 0, 0])  // half a message_id
        deliver.setInteger(UInt32(deliver.readableBytes - 4), at: 0)
        #expect(code(of: &deliver) == .badFrame)
    }

    @Test func aStringLongerThanItsFrameIsABadFrame() {
        var buffer = frame(type: .subscribe) { body in
            body.writeInteger(UInt64(1))
            body.writeInteger(UInt16(500))
            body.writeString("short")
        }
        #expect(code(of: &buffer) == .badFrame)
    }

    @Test(arguments: [[0xFF], [0xC3, 0x28], [0xE2, 0x82], [0xED, 0xA0, 0x80]] as [[UInt8]])
    func invalidUTF8InAnIdIsABadFrame(_ bytes: [UInt8]) {
        var buffer = frame(type: .send) { body in
            body.writeInteger(UInt64(1))
            body.writeInteger(Target.Kind.agent.rawValue)
            body.writeInteger(UInt16(bytes.count))
            body.writeBytes(bytes)
            body.writeInteger(UInt16(0))
            body.writeInteger(UInt64(0))
            body.writeInteger(UInt32(0))
        }
        #expect(code(of: &buffer) == .badFrame)
    }

    @Test func anUnknownEnumValueIsABadFrame() {
        var buffer = frame(type: .heartbeat) { $0.writeInteger(UInt8(9)) }
        #expect(code(of: &buffer) == .badFrame)
    }

    @Test func aListOverTheLimitIsABadFrame() {
        var buffer = frame(type: .register) { body in
            body.writeInteger(UInt64(1))
            body.writeWireString("type")
            body.writeInteger(UInt16(Limits.maxListCount + 1))
        }
        #expect(code(of: &buffer) == .badFrame)
    }

    @Test func longErrorMessagesAreCutAtACharacterBoundary() throws {
        let message = String(repeating: "é", count: 70_000)
        var buffer = SampleFrames.encode(.error(ErrorFrame(ref: 1, error: BusError(.badFrame, message))))
        guard case .error(let error) = try Frame.decode(from: &buffer, maxFrameBytes: Self.maxFrame) else {
            Issue.record("not an ERROR")
            return
        }
        #expect(error.error.message.utf8.count == Limits.maxMessageBytes)
        #expect(error.error.message.allSatisfy { $0 == "é" })
    }

    @Test func anUnknownErrorCodeStaysReadable() throws {
        var buffer = frame(type: .error) { body in
            body.writeInteger(UInt64(3))
            body.writeInteger(UInt16(999))
            body.writeInteger(UInt32(0))
            body.writeWireString("from the future")
        }
        guard case .error(let error) = try Frame.decode(from: &buffer, maxFrameBytes: Self.maxFrame) else {
            Issue.record("not an ERROR")
            return
        }
        #expect(error.error.code == .internal)
        #expect(error.error.message.contains("999"))
    }

    @Test func errorCodesAndNamesAreUnique() {
        #expect(Set(ErrorCode.allCases.map(\.rawValue)).count == ErrorCode.allCases.count)
        #expect(Set(ErrorCode.allCases.map(\.name)).count == ErrorCode.allCases.count)
    }

    private func frame(type: FrameType, _ body: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(0))
        buffer.writeInteger(type.rawValue)
        body(&buffer)
        buffer.setInteger(UInt32(buffer.readableBytes - 4), at: 0)
        return buffer
    }

    private func code(of buffer: inout ByteBuffer) -> ErrorCode? {
        do {
            _ = try Frame.decode(from: &buffer, maxFrameBytes: Self.maxFrame)
            return nil
        } catch {
            return error.code
        }
    }
}
