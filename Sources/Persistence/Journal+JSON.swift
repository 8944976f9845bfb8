import Foundation

/// The sidecar writers' spools: values as JSON records, replayed in order.
extension Journal {
    /// Appends `values`, in order, as JSON records with one write.
    /// - Throws: ``Full`` (nothing appended) or an I/O error.
    func append<Value: Encodable>(json values: [Value]) throws {
        let encoder = JSONEncoder()
        try append(values.map { Array((try? encoder.encode($0)) ?? Data()) })
    }

    /// Hands the records not committed yet to `apply`, in order, in batches of about `maxBytes`,
    /// each decoded as `Value` (nil where a record does not decode) with the position after it.
    /// `apply` returns how far it got (the position after the last record it took; nil for none),
    /// and the journal commits that far. Stops when the journal is empty or `apply` took less than
    /// its whole batch. - Returns: whether the journal is empty.
    func replay<Value: Decodable>(
        _: Value.Type, maxBytes: Int = 4 << 20, _ apply: ([(value: Value?, next: Position)]) -> Position?
    ) -> Bool {
        let decoder = JSONDecoder()
        while true {
            let records = read(from: committed, maxBytes: maxBytes)
            guard let last = records.last else { return true }
            let reached = apply(records.map { (try? decoder.decode(Value.self, from: Data($0.record)), $0.next) })
            if let reached { commit(through: reached) }
            guard reached == last.next else { return isEmpty }
        }
    }
}
