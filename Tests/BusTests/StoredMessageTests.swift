import Bus
import Foundation
import Testing

@Suite struct StoredMessageTests {
    @Test func roundTripsThroughJSONWithThePayloadInBase64() throws {
        let message = StoredMessage(
            id: 42, tenant: "acme", to: "bob", from: "alice", kind: .direct, subject: "", deadline: nil,
            expiresAt: 1_800_000_000_000, payload: Array("hello".utf8), idempotencyKey: "k", attempts: 2)
        let json = try JSONEncoder().encode(message)
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(object["payload"] as? String == "aGVsbG8=")
        #expect(object["deadline"] == nil)
        #expect(try JSONDecoder().decode(StoredMessage.self, from: json) == message)
    }
}
