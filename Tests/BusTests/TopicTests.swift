import Bus
import Testing

@Suite struct TopicTests {
    @Test(arguments: [
        ("a.b.c", "a.b.c", true), ("a.*.c", "a.b.c", true), ("a.*", "a.b.c", false), ("a.>", "a.b.c", true),
        ("a.>", "a", false), (">", "a", true), ("*", "a.b", false), ("a.b", "a.b.c", false),
        ("*.*.c", "x.y.c", true), ("a.b.c", "a.b", false), ("a.*.>", "a.b", false), ("a.*.>", "a.b.c.d", true),
    ])
    func matching(pattern: String, topic: String, matches: Bool) {
        var index = SubscriptionIndex<Int>()
        index.insert(try! Topic.validatePattern(pattern), 1)
        #expect(index.subscribers(of: topic) == (matches ? [1] : []))
    }

    @Test(arguments: ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a.b*", String(repeating: "x", count: 257)])
    func invalidTopics(_ topic: String) {
        #expect(throws: BusError.self) { try Topic.validate(topic) }
    }

    @Test(arguments: ["", "a.>.b", "a.b>", "a..*", "*x"])
    func invalidPatterns(_ pattern: String) {
        #expect(throws: BusError.self) { try Topic.validatePattern(pattern) }
    }

    @Test func theIndexFindsEverySubscriberOnceAndForgetsRemovedOnes() throws {
        var index = SubscriptionIndex<String>()
        index.insert(try Topic.validatePattern("orders.*.created"), "a")
        index.insert(try Topic.validatePattern("orders.>"), "a")
        index.insert(try Topic.validatePattern("orders.eu.created"), "b")
        index.insert(try Topic.validatePattern(">"), "c")
        #expect(index.subscribers(of: "orders.eu.created") == ["a", "b", "c"])
        #expect(index.subscribers(of: "orders") == ["c"])
        #expect(index.remove(try Topic.validatePattern("orders.>"), "a"))
        #expect(!index.remove(try Topic.validatePattern("orders.>"), "a"))
        #expect(index.subscribers(of: "orders.us.shipped") == ["c"])
        index.remove(try Topic.validatePattern("orders.*.created"), "a")
        index.remove(try Topic.validatePattern("orders.eu.created"), "b")
        index.remove(try Topic.validatePattern(">"), "c")
        #expect(index.isEmpty)
    }
}
