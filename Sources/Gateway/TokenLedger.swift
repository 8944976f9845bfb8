public import Actors
public import Foundation
import Synchronization

/// What the bus remembers about tokens it issued: revoked `jti`s (logout) and, per refresh family
/// (one LOGIN and its REFRESHes), the one refresh token that may be used next. Presenting any other
/// token of a family (a rotated one, replayed) revokes the whole family.
///
/// Held in memory and written through to Redis (``SharedState/rememberToken(_:value:ttlMs:)``)
/// until the token's expiry; read back at start, so revocations survive a restart. An entry is
/// forgotten when its token would have expired anyway, so the ledger is bounded by the number of
/// tokens issued within their lifetime.
public final class TokenLedger: Sendable {
    /// What presenting a refresh token came to.
    public enum Rotation: Equatable, Sendable {
        case rotated
        /// A rotated (or otherwise not current) token: the family is now revoked.
        case reused
        /// The family is not known (never issued here, expired, or revoked).
        case unknown
    }

    private struct Family {
        var current: String
        var revoked: Bool
        var expiresAt: Date
    }

    private struct State {
        var revoked: [String: Date] = [:]
        var families: [String: Family] = [:]
        var sweepAt = 1024
    }

    private let state = Mutex(State())
    private let shared: (any SharedState)?

    public init(shared: (any SharedState)?) {
        self.shared = shared
    }

    /// Entries read from Redis at start: `jti:<jti>` → `revoked`, `fam:<family>` → current jti or `revoked`.
    public func restore(_ entries: [(key: String, value: String, ttlMs: UInt64)], now: Date = Date()) {
        state.withLock { state in
            for entry in entries {
                let expiresAt = now.addingTimeInterval(Double(entry.ttlMs) / 1000)
                if entry.key.hasPrefix("jti:") {
                    state.revoked[String(entry.key.dropFirst(4))] = expiresAt
                } else if entry.key.hasPrefix("fam:") {
                    state.families[String(entry.key.dropFirst(4))] = Family(
                        current: entry.value, revoked: entry.value == "revoked", expiresAt: expiresAt)
                }
            }
        }
    }

    /// Whether the token `jti` of `family` was revoked (by logout, or with its family).
    public func isRevoked(jti: String, family: String?) -> Bool {
        state.withLock { state in
            state.revoked[jti] != nil || family.map { state.families[$0]?.revoked == true } == true
        }
    }

    /// Records a new family whose first refresh token is `jti`.
    public func startFamily(_ family: String, refresh jti: String, expiresAt: Date, now: Date = Date()) {
        state.withLock { state in
            if state.families.count >= state.sweepAt { Self.sweep(&state, now: now) }
            state.families[family] = Family(current: jti, revoked: false, expiresAt: expiresAt)
        }
        remember("fam:\(family)", jti, until: expiresAt, now: now)
    }

    /// Moves `family` from the refresh token `presented` to `next` if `presented` is its current one.
    public func rotate(
        _ family: String, from presented: String, to next: String, expiresAt: Date, now: Date = Date()
    ) -> Rotation {
        let (rotation, until): (Rotation, Date?) = state.withLock { state in
            guard var entry = state.families[family], !entry.revoked, entry.expiresAt > now else {
                return (.unknown, nil)
            }
            guard entry.current == presented else {
                entry.revoked = true
                state.families[family] = entry
                return (.reused, entry.expiresAt)
            }
            entry.current = next
            entry.expiresAt = expiresAt
            state.families[family] = entry
            return (.rotated, expiresAt)
        }
        if let until { remember("fam:\(family)", rotation == .rotated ? next : "revoked", until: until, now: now) }
        return rotation
    }

    /// Revokes the token `jti` until `expiresAt`, and its family with it (logout); a family not
    /// known here (its state was lost) is recorded as revoked until `familyExpiresAt`.
    public func revoke(jti: String, family: String?, expiresAt: Date, familyExpiresAt: Date, now: Date = Date()) {
        let familyUntil: Date? = state.withLock { state in
            state.revoked[jti] = expiresAt
            guard let family else { return nil }
            var entry =
                state.families[family] ?? Family(current: "revoked", revoked: true, expiresAt: familyExpiresAt)
            entry.revoked = true
            state.families[family] = entry
            return entry.expiresAt
        }
        remember("jti:\(jti)", "revoked", until: expiresAt, now: now)
        if let family, let familyUntil { remember("fam:\(family)", "revoked", until: familyUntil, now: now) }
    }

    private func remember(_ key: String, _ value: String, until expiresAt: Date, now: Date) {
        let ttlMs = UInt64(max(expiresAt.timeIntervalSince(now) * 1000, 1))
        shared?.rememberToken(key, value: value, ttlMs: ttlMs)
    }

    /// Forgets what has expired, and sets the next sweep at twice what is left.
    private static func sweep(_ state: inout State, now: Date) {
        state.revoked = state.revoked.filter { $0.value > now }
        state.families = state.families.filter { $0.value.expiresAt > now }
        state.sweepAt = max(1024, 2 * (state.families.count + state.revoked.count))
    }
}
