import Testing

@testable import Bus

@Suite struct JSONPatchTests {
    // MARK: JSON text

    @Test(arguments: [
        (
            #"{"b":1,"a":[true,false,null],"c":{"z":"x","y":2.5}}"#,
            #"{"a":[true,false,null],"b":1,"c":{"y":2.5,"z":"x"}}"#
        ),
        (" \t\n\r[ 1 , {} , [ ] ]\r\n ", "[1,{},[]]"),
        (#"{"é":1,"z":2,"Z":3,"":4,"a":5}"#, #"{"":4,"Z":3,"a":5,"z":2,"é":1}"#),
        (#"{"a":1,"a":2}"#, #"{"a":2}"#),
        ("3.0", "3"), ("-0", "0"), ("1e3", "1000"), ("-12", "-12"), ("0.1", "0.1"), ("-2.5E-3", "-0.0025"),
        ("1E+20", "1e+20"), ("9007199254740991", "9007199254740991"),
        ("9007199254740992", "9007199254740992.0"), ("1e16", "1e+16"),
        (#""a\"b\\c\/d\u0001\u001f\n\t\b\f\r é""#, #""a\"b\\c/d\u0001\u001f\n\t\b\f\r é""#),
        (#""\u00e9\u20AC""#, #""é€""#),
        (#""\uD83D\uDE00""#, #""😀""#),
        ("\"x\"", "\"x\""), ("null", "null"), ("true", "true"), ("false", "false"),
    ])
    func parsingAndCanonicalSerialization(text: String, canonical: String) throws {
        let value = try JSONValue(parsing: text.utf8)
        #expect(value.serialized() == Array(canonical.utf8))
        #expect(try JSONValue(parsing: value.serialized()) == value)
    }

    @Test func aSurrogatePairIsOneScalar() throws {
        #expect(try JSONValue(parsing: #""\uD83D\uDE00""#.utf8) == .string("\u{1F600}"))
    }

    @Test(arguments: [
        "", " ", "[1,]", #"{"a":1,}"#, "[,1]", "01", "-01", "1.", ".5", "1e", "+1", "-", "'a'", "NaN", "[Infinity]",
        "1e400", "tru", "nul", #""\uD83D""#, #""\uDE00""#, #""\uD83Dx""#, #""\uD83D\u0041""#, #""\u12""#, #""\x""#,
        "\"a\tb\"", "\"a\u{0}b\"", "\"abc", "{} x", "1 2", "[]]", #"{"a" 1}"#, "{a:1}", "[1 2]", "\u{FEFF}1",
        String(repeating: "[", count: 129) + String(repeating: "]", count: 129),
    ])
    func invalidJSONIsRejected(_ text: String) {
        let error = #expect(throws: BusError.self) { try JSONValue(parsing: text.utf8) }
        #expect(error?.code == .invalidJSON)
    }

    @Test func errorsNameTheByteOffset() {
        let error = #expect(throws: BusError.self) { try JSONValue(parsing: "[1,]".utf8) }
        #expect(error?.message.hasSuffix("at byte 3") == true)
    }

    @Test func invalidUTF8IsRejected() {
        let error = #expect(throws: BusError.self) { try JSONValue(parsing: [0x22, 0x61, 0xFF, 0x22]) }
        #expect(error?.code == .invalidJSON)
        #expect(error?.message.hasSuffix("at byte 2") == true)
    }

    @Test func nestingOf128IsAccepted() throws {
        let text = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        #expect(try JSONValue(parsing: text.utf8).serialized() == Array(text.utf8))
    }

    // MARK: JSON Pointer (RFC 6901 §5)

    static let rfc6901Document = #"""
        {"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3,
         "g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8}
        """#

    @Test(arguments: [
        ("", JSONPatchTests.rfc6901Document), ("/foo", #"["bar","baz"]"#), ("/foo/0", #""bar""#), ("/", "0"),
        ("/a~1b", "1"), ("/c%d", "2"), ("/e^f", "3"), ("/g|h", "4"), (#"/i\j"#, "5"), (#"/k"l"#, "6"), ("/ ", "7"),
        ("/m~0n", "8"),
    ])
    func rfc6901Examples(pointer text: String, expected: String) throws {
        let pointer = try JSONPointer(text)
        #expect(try json(Self.rfc6901Document)[pointer] == json(expected))
        #expect(pointer.description == text)
    }

    @Test(arguments: ["/foo/2", "/foo/01", "/foo/-", "/foo/+1", "/nope", "/foo/0/x", "/ /x"])
    func absentValuesAreNil(_ text: String) throws {
        #expect(try json(Self.rfc6901Document)[JSONPointer(text)] == nil)
    }

    @Test(arguments: ["foo", "#/foo", "/~", "/~2", "/a~b", "/~1~"])
    func invalidPointersAreRejected(_ text: String) {
        let error = #expect(throws: BusError.self) { try JSONPointer(text) }
        #expect(error?.code == .invalidPointer)
    }

    @Test func pointersUnescapeInOnePassAndCompose() throws {
        let pointer = try JSONPointer("/a~1b/m~0n/~01")
        #expect(pointer.tokens == ["a/b", "m~n", "~1"])
        #expect(pointer.description == "/a~1b/m~0n/~01")
        #expect(try JSONPointer("").tokens.isEmpty)
        #expect(try JSONPointer("/").tokens == [""])
        #expect(JSONPointer.root.appending("a").appending("b/c") == (try JSONPointer("/a/b~1c")))
        #expect(try JSONPointer("/a").isPrefix(of: JSONPointer("/a/b")))
        #expect(try JSONPointer("/a").isPrefix(of: JSONPointer("/a")))
        #expect(JSONPointer.root.isPrefix(of: try JSONPointer("/a")))
        #expect(try !JSONPointer("/a").isPrefix(of: JSONPointer("/ab")))
        #expect(try !JSONPointer("/a/b").isPrefix(of: JSONPointer("/a")))
    }

    // MARK: JSON Patch (RFC 6902 Appendix A)

    @Test(arguments: [
        // A.1 Adding an Object Member
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz","value":"qux"}]"#, #"{"baz":"qux","foo":"bar"}"#),
        // A.2 Adding an Array Element
        (#"{"foo":["bar","baz"]}"#, #"[{"op":"add","path":"/foo/1","value":"qux"}]"#, #"{"foo":["bar","qux","baz"]}"#),
        // A.3 Removing an Object Member
        (#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"remove","path":"/baz"}]"#, #"{"foo":"bar"}"#),
        // A.4 Removing an Array Element
        (#"{"foo":["bar","qux","baz"]}"#, #"[{"op":"remove","path":"/foo/1"}]"#, #"{"foo":["bar","baz"]}"#),
        // A.5 Replacing a Value
        (
            #"{"baz":"qux","foo":"bar"}"#, #"[{"op":"replace","path":"/baz","value":"boo"}]"#,
            #"{"baz":"boo","foo":"bar"}"#
        ),
        // A.6 Moving a Value
        (
            #"{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}"#,
            #"[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]"#,
            #"{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}"#
        ),
        // A.7 Moving an Array Element
        (
            #"{"foo":["all","grass","cows","eat"]}"#, #"[{"op":"move","from":"/foo/1","path":"/foo/3"}]"#,
            #"{"foo":["all","cows","eat","grass"]}"#
        ),
        // A.8 Testing a Value: Success
        (
            #"{"baz":"qux","foo":["a",2,"c"]}"#,
            #"[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]"#,
            #"{"baz":"qux","foo":["a",2,"c"]}"#
        ),
        // A.10 Adding a Nested Member Object
        (
            #"{"foo":"bar"}"#, #"[{"op":"add","path":"/child","value":{"grandchild":{}}}]"#,
            #"{"foo":"bar","child":{"grandchild":{}}}"#
        ),
        // A.11 Ignoring Unrecognized Elements
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz","value":"qux","xyz":123}]"#, #"{"foo":"bar","baz":"qux"}"#),
        // A.14 ~ Escape Ordering
        (#"{"/":9,"~1":10}"#, #"[{"op":"test","path":"/~01","value":10}]"#, #"{"/":9,"~1":10}"#),
        // A.16 Adding an Array Value
        (
            #"{"foo":["bar"]}"#, #"[{"op":"add","path":"/foo/-","value":["abc","def"]}]"#,
            #"{"foo":["bar",["abc","def"]]}"#
        ),
        // Beyond Appendix A: the root, copies, a test that numbers compare by value and objects unordered.
        ("[1]", #"[{"op":"add","path":"","value":{"a":1}}]"#, #"{"a":1}"#),
        ("[1]", #"[{"op":"replace","path":"","value":2}]"#, "2"),
        ("[1]", #"[{"op":"remove","path":""}]"#, "null"),
        (#"{"a":{"b":[1]}}"#, #"[{"op":"copy","from":"/a/b","path":"/a/c"}]"#, #"{"a":{"b":[1],"c":[1]}}"#),
        ("[1,2]", #"[{"op":"add","path":"/2","value":3},{"op":"move","from":"/0","path":"/0"}]"#, "[1,2,3]"),
        (
            #"{"a":{"x":1.0,"y":[2]}}"#, #"[{"op":"test","path":"/a","value":{"y":[2e0],"x":1}}]"#,
            #"{"a":{"x":1,"y":[2]}}"#
        ),
    ])
    func rfc6902Examples(document: String, patch: String, expected: String) throws {
        let patch = try JSONPatch(parsing: patch.utf8)
        #expect(try patch.apply(to: json(document)) == json(expected))
    }

    @Test(arguments: [
        // A.9 Testing a Value: Error
        (#"{"baz":"qux"}"#, #"[{"op":"test","path":"/baz","value":"bar"}]"#),
        // A.12 Adding to a Nonexistent Target
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz/bat","value":"qux"}]"#),
        // A.13 Invalid JSON Patch Document: the parser keeps the last "op", a remove of a member that is not there.
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz","value":"qux","op":"remove"}]"#),
        // A.15 Comparing Strings and Numbers
        (#"{"/":9,"~1":10}"#, #"[{"op":"test","path":"/~01","value":"10"}]"#),
        // Missing targets, bad indexes, moving into a child, and a failure after a change that must not stick.
        (#"{"a":1}"#, #"[{"op":"replace","path":"/b","value":2}]"#),
        (#"{"a":1}"#, #"[{"op":"remove","path":"/b"}]"#),
        ("[1,2]", #"[{"op":"add","path":"/3","value":3}]"#),
        ("[1,2]", #"[{"op":"add","path":"/01","value":3}]"#),
        ("[1,2]", #"[{"op":"remove","path":"/-"}]"#),
        ("[1,2]", #"[{"op":"remove","path":"/2"}]"#),
        (#"{"a":1}"#, #"[{"op":"add","path":"/a/b","value":2}]"#),
        (#"{"a":{"b":{}}}"#, #"[{"op":"move","from":"/a","path":"/a/b/c"}]"#),
        (#"{"a":1}"#, #"[{"op":"copy","from":"/b","path":"/c"}]"#),
        (#"{"a":1}"#, #"[{"op":"test","path":"/b","value":null}]"#),
        (#"{"a":1}"#, #"[{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":2}]"#),
    ])
    func patchesThatDoNotApplyFail(document text: String, patch: String) throws {
        let document = try json(text)
        let patch = try JSONPatch(parsing: patch.utf8)
        let error = #expect(throws: BusError.self) { try patch.apply(to: document) }
        #expect(error?.code == .patchFailed)
        #expect(document == (try json(text)))
    }

    @Test func errorsNameTheOperation() throws {
        let text = #"[{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":2}]"#
        let patch = try JSONPatch(parsing: text.utf8)
        let error = #expect(throws: BusError.self) { try patch.apply(to: json(#"{"a":1}"#)) }
        #expect(error?.message == "operation 1: test failed at /a")
    }

    @Test(arguments: [
        ("{}", ErrorCode.invalidJSON), ("[1]", .invalidJSON), (#"[{"path":"/a"}]"#, .invalidJSON),
        (#"[{"op":"jump","path":"/a"}]"#, .invalidJSON), (#"[{"op":"add","path":"/a"}]"#, .invalidJSON),
        (#"[{"op":"move","path":"/a"}]"#, .invalidJSON), (#"[{"op":"add","path":1,"value":1}]"#, .invalidJSON),
        (#"[{"op":"remove","path":"/a"},]"#, .invalidJSON), (#"[{"op":"remove","path":"a"}]"#, .invalidPointer),
        (#"[{"op":"copy","from":"/~2","path":"/a"}]"#, .invalidPointer),
    ])
    func malformedPatchDocumentsAreRejected(patch: String, code: ErrorCode) {
        let error = #expect(throws: BusError.self) { try JSONPatch(parsing: patch.utf8) }
        #expect(error?.code == code)
    }

    @Test func aPatchSerializesToTheDocumentItWasParsedFrom() throws {
        let text = #"""
            [{"op":"add","path":"/a~1b","value":{"c":null}},{"op":"remove","path":"/x/0"},\#
            {"op":"replace","path":"","value":[]},{"from":"/a","op":"move","path":"/b"},\#
            {"from":"/b","op":"copy","path":"/c"},{"op":"test","path":"/c","value":"~"}]
            """#
        let patch = try JSONPatch(parsing: text.utf8)
        #expect(patch.operations.count == 6)
        #expect(patch.serialized() == Array(text.utf8))
        #expect(try JSONPatch(json: patch.json) == patch)
    }

    // MARK: JSON Merge Patch (RFC 7396 Appendix A)

    @Test(arguments: [
        (#"{"a":"b"}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
        (#"{"a":"b"}"#, #"{"b":"c"}"#, #"{"a":"b","b":"c"}"#),
        (#"{"a":"b"}"#, #"{"a":null}"#, "{}"),
        (#"{"a":"b","b":"c"}"#, #"{"a":null}"#, #"{"b":"c"}"#),
        (#"{"a":["b"]}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
        (#"{"a":"c"}"#, #"{"a":["b"]}"#, #"{"a":["b"]}"#),
        (#"{"a":{"b":"c"}}"#, #"{"a":{"b":"d","c":null}}"#, #"{"a":{"b":"d"}}"#),
        (#"{"a":[{"b":"c"}]}"#, #"{"a":[1]}"#, #"{"a":[1]}"#),
        (#"["a","b"]"#, #"["c","d"]"#, #"["c","d"]"#),
        (#"{"a":"b"}"#, #"["c"]"#, #"["c"]"#),
        (#"{"a":"foo"}"#, "null", "null"),
        (#"{"a":"foo"}"#, #""bar""#, #""bar""#),
        (#"{"e":null}"#, #"{"a":1}"#, #"{"e":null,"a":1}"#),
        ("[1,2]", #"{"a":"b","c":null}"#, #"{"a":"b"}"#),
        ("{}", #"{"a":{"bb":{"ccc":null}}}"#, #"{"a":{"bb":{}}}"#),
    ])
    func rfc7396Examples(original: String, patch: String, result: String) throws {
        #expect(try JSONMergePatch.apply(json(patch), to: json(original)) == json(result))
    }

    // MARK: Diffs

    @Test(arguments: [
        ("{}", "{}"), ("[1,2,3]", "[1,2,3,4,5]"), ("[1,2,3,4,5]", "[2]"), ("[]", "[[],{}]"), ("1", #""one""#),
        (#"{"a":1,"b":{"c":[1,2,3],"d":"x"}}"#, #"{"a":2,"b":{"c":[1,3],"e":null}}"#),
        (#"{"a":[1,{"b":2}]}"#, #"{"a":[1,{"b":3,"c":[]}]}"#), (#"{"a":1}"#, "[1]"), ("null", #"{"a":null}"#),
        (#"{"a/b":{"~":1}}"#, #"{"a/b":{"~":2,"/":3}}"#), (#"{"a":{"b":1}}"#, #"{"a":[1]}"#),
        ("[[1,2],[3]]", "[[1],[3,4],[5]]"), (#"{"x":true,"-":[]}"#, #"{"x":false,"y":1.5,"-":[0]}"#),
    ])
    func aDiffTurnsOneDocumentIntoTheOther(old: String, new: String) throws {
        let (old, new) = (try json(old), try json(new))
        let patch = JSONPatch.diff(from: old, to: new)
        #expect(try patch.apply(to: old) == new)
        #expect(patch.operations.isEmpty == (old == new))
    }

    @Test func diffsVisitKeysInOrderAndShrinkArraysFromTheEnd() throws {
        let objects = JSONPatch.diff(from: try json(#"{"a":1,"b":2}"#), to: try json(#"{"b":3,"c":4}"#))
        let (a, b, c) = (try JSONPointer("/a"), try JSONPointer("/b"), try JSONPointer("/c"))
        #expect(objects.operations == [.remove(a), .replace(b, .number(3)), .add(c, .number(4))])
        let arrays = JSONPatch.diff(from: try json("[1,2,3]"), to: try json("[1]"))
        #expect(arrays.operations == [.remove(try JSONPointer("/2")), .remove(try JSONPointer("/1"))])
        #expect(JSONPatch.diff(from: .number(1), to: .string("x")).operations == [.replace(.root, .string("x"))])
    }

    @Test func twoHundredRandomPairsRoundTrip() throws {
        var random = SeededRandom()
        for _ in 0..<200 {
            let old = random.value()
            let new = random.next(4) == 0 ? random.value() : random.mutated(old)
            #expect(try JSONPatch.diff(from: old, to: new).apply(to: old) == new, "\(old) → \(new)")
            #expect(try JSONValue(parsing: new.serialized()) == new)

            let watched = (0...random.next(3)).map { _ in random.pointer() }
            let restricted = JSONPatch.diff(from: old, to: new, restrictedTo: watched)
            let patched = try restricted.apply(to: old)
            for path in watched { #expect(patched[path] == new[path], "\(path): \(old) → \(new)") }
        }
    }

    // MARK: Restricted diffs

    @Test func aChangeOutsideTheWatchedPathIsEmpty() throws {
        let patch = try restrictedDiff(#"{"a":{"b":1},"c":1}"#, #"{"a":{"b":1},"c":2}"#, watching: ["/a/b"])
        #expect(patch.operations.isEmpty)
    }

    @Test func aChangeInsideTheWatchedPathIsRebasedUnderIt() throws {
        let patch = try restrictedDiff(
            #"{"a":{"b":{"x":1,"y":2}},"c":1}"#, #"{"a":{"b":{"x":2,"y":2}},"c":2}"#,
            watching: ["/a/b"])
        #expect(patch.operations == [.replace(try JSONPointer("/a/b/x"), .number(2))])
    }

    @Test func aReplacedParentWithAnUnchangedWatchedPathIsEmpty() throws {
        let patch = try restrictedDiff(#"{"a":{"b":1,"c":2}}"#, #"{"a":{"b":1,"d":[3]}}"#, watching: ["/a/b"])
        #expect(patch.operations.isEmpty)
    }

    @Test func aWatchedPathUnderANewParentIsAddedWithTheParent() throws {
        let (old, new) = (try json(#"{"c":1}"#), try json(#"{"a":{"b":{"x":1},"z":2},"c":1}"#))
        let patch = JSONPatch.diff(from: old, to: new, restrictedTo: [try JSONPointer("/a/b")])
        #expect(patch.operations == [.add(try JSONPointer("/a"), new[try JSONPointer("/a")]!)])
        #expect(try patch.apply(to: old)[JSONPointer("/a/b")] == new[JSONPointer("/a/b")])
    }

    @Test func aWatchedPathThatGoesIsRemovedAndNestedPathsCountOnce() throws {
        let watched = ["/a/b", "/a/b/x", "/a/b"]
        let patch = try restrictedDiff(#"{"a":{"b":1},"c":1}"#, #"{"a":{},"c":2}"#, watching: watched)
        #expect(patch.operations == [.remove(try JSONPointer("/a/b"))])
    }

    @Test func watchedArrayElementsDoNotShiftOneAnother() throws {
        let (old, new) = (try json(#"["a","b",{"x":1},{"x":2}]"#), try json(#"["a"]"#))
        let watched = [try JSONPointer("/1"), try JSONPointer("/2/x")]
        let patched = try JSONPatch.diff(from: old, to: new, restrictedTo: watched).apply(to: old)
        for path in watched { #expect(patched[path] == nil) }
        #expect(patched == new)
    }

    @Test func aWatchedPathUnderAScalarReplacesTheScalar() throws {
        let (old, new) = (try json(#"{"a":3,"c":1}"#), try json(#"{"a":{"b":[1]},"c":2}"#))
        let patch = JSONPatch.diff(from: old, to: new, restrictedTo: [try JSONPointer("/a/b/0")])
        #expect(patch.operations == [.replace(try JSONPointer("/a"), new[try JSONPointer("/a")]!)])
    }

    // MARK: Helpers

    private func json(_ text: String) throws -> JSONValue {
        try JSONValue(parsing: text.utf8)
    }

    private func restrictedDiff(_ old: String, _ new: String, watching paths: [String]) throws -> JSONPatch {
        let (old, new) = (try json(old), try json(new))
        let patch = JSONPatch.diff(from: old, to: new, restrictedTo: try paths.map { try JSONPointer($0) })
        for path in try paths.map({ try JSONPointer($0) }) { #expect(try patch.apply(to: old)[path] == new[path]) }
        return patch
    }
}

/// A linear congruential generator with a fixed seed, so the "random" documents are the same on every run.
private struct SeededRandom {
    private var state: UInt64 = 0x2545_F491_4F6C_DD1D
    private static let keys = ["a", "b", "c", "a/b", "~", "0"]
    private static let tokens = keys + ["1", "2", "01", "-"]

    /// A number in `0..<bound`.
    mutating func next(_ bound: Int) -> Int {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int(state >> 33) % bound
    }

    mutating func value(depth: Int = 0) -> JSONValue {
        switch next(depth < 3 ? 7 : 4) {
        case 0: return .null
        case 1: return .bool(next(2) == 0)
        case 2: return .number(Double(next(7) - 3) / Double(1 + next(2)))
        case 3: return .string(["", "a", "~/", "é\n"][next(4)])
        case 4, 5: return .array((0..<next(4)).map { _ in value(depth: depth + 1) })
        default:
            var members: [String: JSONValue] = [:]
            for _ in 0..<next(4) { members[Self.keys[next(Self.keys.count)]] = value(depth: depth + 1) }
            return .object(members)
        }
    }

    /// `value` with some of its parts changed, added or removed.
    mutating func mutated(_ value: JSONValue, depth: Int = 0) -> JSONValue {
        switch value {
        case .array(var elements) where next(4) > 0:
            for index in elements.indices { elements[index] = mutated(elements[index], depth: depth + 1) }
            if next(2) == 0, !elements.isEmpty {
                elements.removeLast(1 + next(elements.count))
            } else {
                elements.append(self.value(depth: depth + 1))
            }
            return .array(elements)
        case .object(var members) where next(4) > 0:
            // Sorted keys: Dictionary order changes between runs, and the mutations must not.
            for (key, member) in members.sorted(by: { $0.key < $1.key }) {
                members[key] = next(5) == 0 ? nil : mutated(member, depth: depth + 1)
            }
            members[Self.keys[next(Self.keys.count)]] = self.value(depth: depth + 1)
            return .object(members)
        default:
            return next(3) == 0 ? self.value(depth: depth) : value
        }
    }

    mutating func pointer() -> JSONPointer {
        JSONPointer(tokens: (0..<next(4)).map { _ in Self.tokens[next(Self.tokens.count)] })
    }
}
