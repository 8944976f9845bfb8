extension String {
    /// The UTF-8 text of a C character buffer, up to its first NUL (all of it if it has none):
    /// for the error and output buffers that C libraries fill.
    public init(nulTerminated buffer: [CChar]) {
        self.init(decoding: buffer.lazy.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The same for a fixed-size C array, as `withUnsafeBytes(of:)` shows it.
    public init(nulTerminated bytes: UnsafeRawBufferPointer) {
        self.init(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }
}
