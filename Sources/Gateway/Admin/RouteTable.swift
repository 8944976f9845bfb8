import HTTPTypes
import Synchronization

/// The admin API's paths and the methods each takes, to tell "no such path" (404) from "not with
/// this method" (405, with `Allow`). Filled while the router is built, read while it serves.
final class RouteTable: Sendable {
    private let routes = Mutex<[(segments: [Substring], method: HTTPRequest.Method)]>([])

    /// Records `method` on `path`, whose `{name}` segments match any one segment.
    func add(_ method: HTTPRequest.Method, _ path: String) {
        routes.withLock { $0.append((path.split(separator: "/"), method)) }
    }

    /// The methods `path` takes, empty when no route has that path. A path routes match word for
    /// word (`/dead-letters/purge`) is theirs alone, not also a parameter's (`/dead-letters/{id}`).
    func methods(for path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/")
        let matching = routes.withLock { routes in
            routes.filter { route in
                route.segments.count == segments.count
                    && zip(route.segments, segments).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
            }
        }
        let exact = matching.filter { $0.segments == segments }
        return (exact.isEmpty ? matching : exact).map(\.method)
    }
}
