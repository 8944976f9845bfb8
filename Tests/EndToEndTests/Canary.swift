import Foundation

/// A unique plaintext to look for in what the bus keeps, in each form it could be kept in: its
/// bytes, lowercase hex (a PostgreSQL dump's `bytea`), and base64 at each of the three alignments
/// a longer base64 text could put it at (JSON bodies of the admin API).
struct Canary {
    let text = "canary-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()

    var forms: [Data] {
        let bytes = Array(text.utf8)
        let hex = Data(bytes.map { String(format: "%02x", $0) }.joined().utf8)
        let base64 = (0..<3).map { skip in
            let aligned = bytes[skip..<(skip + (bytes.count - skip) / 3 * 3)]
            return Data(Data(aligned).base64EncodedString().utf8)
        }
        return [Data(bytes), hex] + base64
    }

    /// Whether `data` holds the canary in any of its forms.
    func isIn(_ data: Data) -> Bool { forms.contains { data.range(of: $0) != nil } }

    /// Whether the file at `path` holds the canary, read 16 MiB at a time (a dump may be large).
    func isIn(file path: String) throws -> Bool {
        let file = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? file.close() }
        // Each read starts with the end of the previous one, so no form is cut in two unseen.
        let overlap = forms.map(\.count).max() ?? 0
        var window = Data()
        while let chunk = try file.read(upToCount: 16 << 20), !chunk.isEmpty {
            window = window.suffix(overlap) + chunk
            if isIn(window) { return true }
        }
        return false
    }

    /// The files under `folder` (recursively) that hold the canary.
    func files(under folder: String) throws -> [String] {
        let manager = FileManager.default
        let files = manager.enumerator(atPath: folder)?.compactMap { $0 as? String } ?? []
        return try files.filter { file in
            var isFolder: ObjCBool = false
            _ = manager.fileExists(atPath: "\(folder)/\(file)", isDirectory: &isFolder)
            return try !isFolder.boolValue && isIn(file: "\(folder)/\(file)")
        }
    }
}
