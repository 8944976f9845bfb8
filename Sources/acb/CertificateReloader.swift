import Gateway
import Logging
import ServiceLifecycle
import UnixSignals

/// Reloads the agent port's certificates on SIGHUP; a failed reload is logged and the old ones stay.
struct CertificateReloader: Service {
    let certificates: ServerCertificates
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            do {
                try certificates.reload()
                logger.info("TLS certificates reloaded")
            } catch {
                logger.error(
                    "TLS certificates not reloaded, the previous ones stay in use", metadata: ["error": "\(error)"])
            }
        }
    }
}
