import Bus
import NIOCore
import Testing

/// The bytes one node hands another through Kafka: several records back to back in one value.
@Suite struct ClusterRecordTests {
    static let records = [
        ClusterRecord(
            kind: .direct, node: "n0", tenant: "acme", to: "bob", from: "alice", payload: ByteBuffer(string: "hi")),
        ClusterRecord(
            kind: .requestFailed, node: "n1", tenant: "acme", correlationID: 7, deadline: 1_700_000_000_000,
            code: .timeout, message: "too late"),
        ClusterRecord(kind: .backlog, node: "n2", tenant: "t", to: "carol"),
    ]

    static func value(_ records: [ClusterRecord]) -> ByteBuffer {
        var value = ByteBuffer()
        for record in records { record.encode(into: &value) }
        return value
    }

    @Test func recordsPackedInOneValueComeBackInOrder() throws {
        let value = Self.value(Self.records)
        let decoded = try value.withUnsafeReadableBytes { try ClusterRecord.decodeAll($0) }
        #expect(decoded == Self.records)
        let one = try Self.value([Self.records[0]]).withUnsafeReadableBytes { try ClusterRecord.decodeAll($0) }
        #expect(one == [Self.records[0]])
    }

    @Test(arguments: [1, 5, 40])
    func aValueCutShortIsABadFrame(cut: Int) {
        var value = Self.value(Self.records)
        value.moveWriterIndex(to: value.writerIndex - cut)
        #expect(throws: BusError.self) { try value.withUnsafeReadableBytes { try ClusterRecord.decodeAll($0) } }
    }

    @Test func aWrongLengthIsABadFrame() {
        var value = Self.value([Self.records[2]])
        value.setInteger(UInt32(value.readableBytes - 5), at: 0)
        value.writeInteger(UInt8(0))
        #expect(throws: BusError.self) { try value.withUnsafeReadableBytes { try ClusterRecord.decodeAll($0) } }
    }
}
