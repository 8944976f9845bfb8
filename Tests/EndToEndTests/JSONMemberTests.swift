import Testing

@testable import Gateway

/// A context's body is taken from the request's JSON as written.
@Suite struct JSONMemberTests {
    @Test(arguments: [
        (#"{"id":"a","body":{"x":[1,2]}}"#, #"{"x":[1,2]}"#),
        (#"{"body": 12345678901234567890.50e3 , "id":"a"}"#, "12345678901234567890.50e3"),
        (#"{"body":"a\"}]b","id":"x"}"#, #""a\"}]b""#),
        (#"{"b\u006fdy":null}"#, "null"),
        (#"{"other":{"body":1},"body":[]}"#, "[]"),
        (#"{"body":1,"body":2}"#, "2"),
        (" {\n \"body\" :\t{ \"k\" : [ ] } } ", #"{ "k" : [ ] }"#),
        (#"{"id":"a"}"#, nil),
        (#"[{"body":1}]"#, nil),
        ("", nil),
    ])
    func theValueOfBodyIsItsTextAsWritten(json: String, body: String?) {
        let value = JSONMember.value("body", in: Array(json.utf8))
        #expect(value.map { String(decoding: $0, as: UTF8.self) } == body)
    }
}
