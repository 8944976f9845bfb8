import CTLS

/// An OpenSSL `SSL_CTX` configured once from a ``TLSConfiguration``: the shared, read-only half of
/// TLS that every connection of one endpoint starts from (``TLSConnection`` is the per-connection half).
///
/// A new context is built to reload certificates; connections keep the context they started with.
public final class TLSContext: @unchecked Sendable {
    // @unchecked Sendable, proof: `context` is configured only in init and never mutated after it;
    // OpenSSL documents that one SSL_CTX may be used by SSL_new on many threads at once (its
    // reference count and session cache take their own locks), and that is all connections do.
    let context: OpaquePointer
    /// Whether connections made from this context accept (server) or connect (client).
    public let isServer: Bool

    /// A server context: certificate and key are required; `trustRoots` verifies client certificates.
    public static func server(_ configuration: TLSConfiguration) throws(TLSError) -> TLSContext {
        guard let chain = configuration.certificateChain, let key = configuration.privateKey else {
            throw TLSError("a TLS server needs a certificate chain and a private key")
        }
        let tls = try TLSContext(method: TLS_server_method(), isServer: true, configuration)
        try tls.use(chain: chain, key: key)
        // No resumption (no session cache, no tickets in TLS 1.2 or 1.3): agents hold one
        // long-lived connection and reconnect rarely, so it saves little, while making tickets
        // costs every handshake.
        acb_ssl_ctx_disable_resumption(tls.context)
        if configuration.clientAuthentication != .none {
            guard let roots = configuration.trustRoots else {
                throw TLSError("client certificate authentication needs trust roots (a CA file)")
            }
            try tls.trust(roots)
            guard let names = SSL_load_client_CA_file(roots) else {
                throw TLSError("cannot read the CA names of \(roots)")
            }
            SSL_CTX_set_client_CA_list(tls.context, names)
            let mode =
                configuration.clientAuthentication == .required
                ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER
            SSL_CTX_set_verify(tls.context, mode, nil)
        }
        return tls
    }

    /// A client context: the server's certificate must chain to `trustRoots` (else to the system's
    /// default CAs); a certificate and key, when configured, are presented for mTLS.
    public static func client(_ configuration: TLSConfiguration) throws(TLSError) -> TLSContext {
        let tls = try TLSContext(method: TLS_client_method(), isServer: false, configuration)
        if let roots = configuration.trustRoots {
            try tls.trust(roots)
        } else if SSL_CTX_set_default_verify_paths(tls.context) != 1 {
            throw TLSError("cannot load the system's CA certificates")
        }
        SSL_CTX_set_verify(tls.context, SSL_VERIFY_PEER, nil)
        if let chain = configuration.certificateChain {
            guard let key = configuration.privateKey else {
                throw TLSError("a client certificate needs its private key")
            }
            try tls.use(chain: chain, key: key)
        }
        return tls
    }

    private init(method: OpaquePointer?, isServer: Bool, _ configuration: TLSConfiguration) throws(TLSError) {
        ERR_clear_error()
        guard let context = SSL_CTX_new(method) else { throw TLSError("SSL_CTX_new failed") }
        self.context = context
        self.isServer = isServer
        let minimum = configuration.minimumVersion == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard acb_ssl_ctx_set_min_proto(context, minimum) == 1 else {
            throw TLSError("cannot set the minimum TLS version")
        }
        guard SSL_CTX_set_cipher_list(context, Self.tls12Ciphers) == 1 else {
            throw TLSError("cannot set the TLS 1.2 cipher list")
        }
    }

    /// The only TLS 1.2 suites allowed: ECDHE key exchange (forward secrecy) with an AEAD cipher.
    /// No CBC, no RSA key exchange, no DHE. TLS 1.3's suites are all of that kind; OpenSSL's
    /// defaults stand for it. docs/security.md lists them.
    public static let tls12Ciphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    deinit {
        SSL_CTX_free(context)
    }

    private func use(chain: String, key: String) throws(TLSError) {
        guard SSL_CTX_use_certificate_chain_file(context, chain) == 1 else {
            throw TLSError("cannot load the certificate chain \(chain)")
        }
        guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError("cannot load the private key \(key)")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw TLSError("the private key \(key) does not match the certificate \(chain)")
        }
    }

    private func trust(_ roots: String) throws(TLSError) {
        guard SSL_CTX_load_verify_locations(context, roots, nil) == 1 else {
            throw TLSError("cannot load the CA certificates \(roots)")
        }
    }
}
