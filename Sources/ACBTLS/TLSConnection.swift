import Bus
import CTLS
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One TLS connection run over two memory BIOs: ciphertext from the network goes into `input`,
/// ciphertext for the network comes out of `output`, so OpenSSL never touches a socket and
/// ``TLSHandler`` decides when bytes move. OpenSSL's "want read" means "incomplete: feed me more".
final class TLSConnection {
    /// What a handshake step came to.
    enum HandshakeStep {
        case complete
        case incomplete
        case failed(TLSError)
    }

    /// What reading plaintext came to, once everything readable was read.
    enum ReadEnd {
        /// All buffered ciphertext was consumed; more must arrive.
        case wantMore
        /// The peer sent close_notify.
        case closedByPeer
        case failed(TLSError)
    }

    private let ssl: OpaquePointer
    private let input: OpaquePointer
    private let output: OpaquePointer

    /// - Parameter serverName: for clients, the host name (or IP address) the certificate must name;
    ///   also sent as SNI when it is a name.
    init(context: TLSContext, serverName: String?) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.context) else { throw TLSError("SSL_new failed") }
        guard let input = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError("BIO_new failed")
        }
        guard let output = BIO_new(BIO_s_mem()) else {
            BIO_free(input)
            SSL_free(ssl)
            throw TLSError("BIO_new failed")
        }
        SSL_set_bio(ssl, input, output)  // the SSL owns both BIOs from here
        (self.ssl, self.input, self.output) = (ssl, input, output)
        if context.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let serverName { try expect(serverName) }
        }
    }

    deinit {
        SSL_free(ssl)
    }

    /// Makes the handshake fail unless the server's certificate names `host`.
    private func expect(_ host: String) throws(TLSError) {
        var address = in6_addr()
        let isAddress = inet_pton(AF_INET, host, &address) == 1 || inet_pton(AF_INET6, host, &address) == 1
        if isAddress {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 else {
                throw TLSError("cannot expect the address \(host)")
            }
        } else {
            guard SSL_set1_host(ssl, host) == 1, acb_ssl_set_server_name(ssl, host) == 1 else {
                throw TLSError("cannot expect the host name \(host)")
            }
        }
    }

    /// Hands ciphertext from the network to OpenSSL (a read is at most what the channel's
    /// allocator gave, far below 2 GiB).
    /// - Throws: when the memory BIO cannot take all of it (OpenSSL could not allocate).
    func receive(_ bytes: ByteBuffer) throws(TLSError) {
        guard bytes.readableBytes > 0 else { return }
        ERR_clear_error()
        let written = bytes.withUnsafeReadableBytes { raw in
            BIO_write(input, raw.baseAddress, Int32(clamping: raw.count))
        }
        guard written == bytes.readableBytes else { throw TLSError("OpenSSL could not buffer received bytes") }
    }

    /// Advances the handshake with what has been received.
    func handshake() -> HandshakeStep {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 { return .complete }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .incomplete
        default: return .failed(TLSError("TLS handshake failed\(verifyFailure)"))
        }
    }

    /// The certificate check's reason, when that is what failed the handshake.
    private var verifyFailure: String {
        let result = SSL_get_verify_result(ssl)
        guard result != X509_V_OK else { return "" }
        return " (certificate: \(String(cString: X509_verify_cert_error_string(result))))"
    }

    /// Plaintext bytes the ciphertext received so far can hold at most (records only add bytes).
    var readableBound: Int { Int(BIO_ctrl_pending(input)) + Int(SSL_pending(ssl)) }

    /// Decrypts everything readable into `plaintext`. Sized by ``readableBound``, the buffer has
    /// room for all of it, so the last `SSL_read` (the one that finds nothing) does not grow it.
    func read(into plaintext: inout ByteBuffer) -> ReadEnd {
        ERR_clear_error()
        while true {
            var result: Int32 = 0
            plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: plaintext.writableBytes > 0 ? 0 : 16 * 1024) {
                raw in
                result = SSL_read(ssl, raw.baseAddress, Int32(clamping: raw.count))
                return Int(max(result, 0))
            }
            if result > 0 { continue }
            switch SSL_get_error(ssl, result) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wantMore
            case SSL_ERROR_ZERO_RETURN: return .closedByPeer
            default: return .failed(TLSError("TLS read failed"))
            }
        }
    }

    /// Encrypts `plaintext` into records waiting in the output BIO (a memory BIO never blocks,
    /// so each `SSL_write` is whole or failed), 16 MiB at a time.
    func write(_ plaintext: ByteBuffer) throws(TLSError) {
        ERR_clear_error()
        var rest = plaintext
        while rest.readableBytes > 0 {
            let slice = rest.readSlice(length: min(rest.readableBytes, 16 << 20))!  // length checked
            let written = slice.withUnsafeReadableBytes { raw in SSL_write(ssl, raw.baseAddress, Int32(raw.count)) }
            guard written == slice.readableBytes else { throw TLSError("TLS write failed") }
        }
    }

    /// Queues close_notify for the peer.
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    /// Takes the ciphertext waiting for the network, if any.
    func takeOutput(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = min(Int(BIO_ctrl_pending(output)), Int(Int32.max))
        guard pending > 0 else { return nil }
        var bytes = allocator.buffer(capacity: pending)
        bytes.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { raw in
            Int(max(BIO_read(output, raw.baseAddress, Int32(pending)), 0))
        }
        return bytes
    }

    /// The protocol version agreed, e.g. "TLSv1.3".
    var version: String { String(cString: SSL_get_version(ssl)) }

    /// The peer's certificate, if it presented one and it was verified.
    var peerCertificate: PeerCertificate? {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        guard SSL_get_verify_result(ssl) == X509_V_OK, let subject = X509_get_subject_name(certificate) else {
            return nil
        }
        func entry(_ nid: Int32) -> String? {
            var text = [CChar](repeating: 0, count: 256)
            let length = X509_NAME_get_text_by_NID(subject, nid, &text, Int32(text.count))
            return length > 0 ? String(nulTerminated: text) : nil
        }
        return PeerCertificate(commonName: entry(NID_commonName), organizationalUnit: entry(NID_organizationalUnitName))
    }
}
