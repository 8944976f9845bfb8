/// Where a TLS endpoint finds its certificates, and what it asks of its peer.
///
/// Files are PEM. A server needs `certificateChain` and `privateKey`; `trustRoots` is the CA that
/// client certificates must chain to (mTLS). A client needs `trustRoots` to check the server, and
/// may present `certificateChain` and `privateKey` for mTLS.
public struct TLSConfiguration: Sendable, Equatable {
    /// The oldest protocol version accepted.
    public enum Version: String, Sendable, CaseIterable {
        case tls12 = "1.2"
        case tls13 = "1.3"
    }

    /// Whether a server asks for client certificates.
    public enum ClientAuthentication: String, Sendable, CaseIterable {
        /// No client certificate is requested.
        case none
        /// A client certificate is verified when one is presented (the agent may also go without).
        case optional
        /// Every client must present a certificate that chains to `trustRoots`.
        case required
    }

    /// PEM file with the certificate, then any intermediates.
    public var certificateChain: String?
    /// PEM file with the private key of `certificateChain`.
    public var privateKey: String?
    /// PEM file with the CA certificates that peers' certificates must chain to.
    public var trustRoots: String?
    /// TLS 1.3 unless TLS 1.2 is configured; older versions are never offered or accepted.
    public var minimumVersion = Version.tls13
    /// For servers: whether client certificates are requested and required.
    public var clientAuthentication = ClientAuthentication.none

    public init(
        certificateChain: String? = nil, privateKey: String? = nil, trustRoots: String? = nil,
        minimumVersion: Version = .tls13, clientAuthentication: ClientAuthentication = .none
    ) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.trustRoots = trustRoots
        self.minimumVersion = minimumVersion
        self.clientAuthentication = clientAuthentication
    }
}
