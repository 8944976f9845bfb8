import Bus
import Foundation
import NIOConcurrencyHelpers

/// What one client knows of keys: its own (and the pair before a rotation, to open what was
/// sealed to it), the keys it pinned for other agents (trust on first use, as SSH pins host keys)
/// and the group keys it was given.
final class KeyRing: Sendable {
    private struct State {
        var own: AgentKeys?
        var previous: AgentKeys?
        var pins: [String: PublicKeys] = [:]
        /// When each pin was last compared with the bus's copy (monotonic ms).
        var checked: [String: UInt64] = [:]
        /// Group id → epoch → key, the newest ``keptEpochs`` epochs.
        var groups: [String: [UInt32: [UInt8]]] = [:]
    }

    private let state: NIOLockedValueBox<State>
    private let pinFile: String?
    private let saving = NIOLock()
    /// Group keys kept per group: messages sealed just before a rotation still open.
    static let keptEpochs = 4
    /// Groups whose keys are kept; beyond, one is dropped.
    static let maxGroups = 1_024

    init(own: AgentKeys?, pinFile: String?) throws {
        var state = State(own: own)
        if let pinFile, FileManager.default.fileExists(atPath: pinFile) {
            let stored = try JSONDecoder().decode(
                [String: [String: Data]].self, from: Data(contentsOf: URL(fileURLWithPath: pinFile)))
            for (agent, keys) in stored {
                guard let box = keys["box_key"], let sign = keys["sign_key"] else { continue }
                state.pins[agent] = PublicKeys(boxKey: Array(box), signKey: Array(sign))
            }
        }
        self.state = NIOLockedValueBox(state)
        self.pinFile = pinFile
    }

    /// This agent's keys. - Throws: `invalid_keys` when the client has none.
    func own() throws(SealError) -> AgentKeys {
        guard let own = state.withLockedValue({ $0.own }) else {
            throw SealError(.invalidKeys, "this client has no keys (ClientConfiguration.keys)")
        }
        return own
    }

    /// This agent's keys and, after a rotation, the ones before.
    var ownKeys: [AgentKeys] { state.withLockedValue { [$0.own, $0.previous].compactMap { $0 } } }

    func rotated(to next: AgentKeys) {
        state.withLockedValue { state in
            state.previous = state.own
            state.own = next
        }
    }

    /// The keys pinned for `agent` if they were checked against the bus less than `maxAgeMs` ago.
    func pinned(_ agent: String, maxAgeMs: UInt64) -> PublicKeys? {
        let now = NIODeadline.now().uptimeNanoseconds / 1_000_000
        return state.withLockedValue { state in
            guard let checked = state.checked[agent], now - checked < maxAgeMs else { return nil }
            return state.pins[agent]
        }
    }

    /// Takes the bus's answer to KEY_FETCH: pins keys seen for the first time, accepts new keys
    /// the pinned signing key signed (a rotation), refuses any other change and revoked keys.
    func accept(_ info: KeyInfo) throws(SealError) -> PublicKeys {
        let published = info.published
        let now = NIODeadline.now().uptimeNanoseconds / 1_000_000
        let outcome = state.withLockedValue { state -> Result<(PublicKeys, Bool), SealError> in
            Result { () throws(SealError) in try Self.accept(published, of: info.agentID, now: now, into: &state) }
        }
        let (keys, changed) = try outcome.get()
        if changed { savePins() }
        return keys
    }

    /// ``accept(_:)`` under the lock. - Returns: the keys and whether the pins changed.
    private static func accept(_ published: PublishedKeys, of agent: String, now: UInt64, into state: inout State)
        throws(SealError) -> (PublicKeys, Bool)
    {
        guard !published.revoked else {
            throw SealError(.keyRevoked, "an operator revoked the keys of \(agent) (\(published.keys.fingerprint))")
        }
        guard !Sodium.isWeak(published.keys.boxKey) else {
            throw SealError(.invalidKeys, "the box key of \(agent) is weak: anyone could open what is sealed to it")
        }
        state.checked[agent] = now
        let pin = state.pins[agent]
        guard let pin, pin != published.keys else {
            state.pins[agent] = published.keys
            return (published.keys, pin == nil)
        }
        guard published.previousSignKey == pin.signKey,
            Sodium.verify(published.rotation[...], of: published.keys.rotationMessage[...], by: pin.signKey)
        else {
            throw SealError(
                .keyChanged,
                "the keys of \(agent) changed from \(pin.fingerprint) to \(published.keys.fingerprint) without a rotation the pinned keys signed"
            )
        }
        state.pins[agent] = published.keys
        return (published.keys, true)
    }

    /// Pins `keys` for `agent`, replacing any pin (after an out-of-band check).
    func pin(_ keys: PublicKeys, for agent: String) {
        let now = NIODeadline.now().uptimeNanoseconds / 1_000_000
        state.withLockedValue { state in
            state.pins[agent] = keys
            state.checked[agent] = now
        }
        savePins()
    }

    func forget(_ agent: String) {
        state.withLockedValue { state in
            state.pins[agent] = nil
            state.checked[agent] = nil
        }
        savePins()
    }

    func groupKey(_ group: String, epoch: UInt32) -> [UInt8]? {
        state.withLockedValue { $0.groups[group]?[epoch] }
    }

    /// The newest epoch held of `group`, and its key.
    func newestGroupKey(_ group: String) -> (UInt32, [UInt8])? {
        state.withLockedValue { state in state.groups[group]?.max { $0.key < $1.key }.map { ($0.key, $0.value) } }
    }

    func keepGroupKey(_ key: [UInt8], group: String, epoch: UInt32) {
        state.withLockedValue { state in
            if state.groups[group] == nil, state.groups.count >= Self.maxGroups {
                // Any agent with keys can send group keys under new names: the group heard of
                // first goes (which one is arbitrary, the bound is what matters).
                state.groups.removeValue(forKey: state.groups.keys.first!)
            }
            var epochs = state.groups[group] ?? [:]
            epochs[epoch] = key
            for old in epochs.keys.sorted().dropLast(Self.keptEpochs) { epochs[old] = nil }
            state.groups[group] = epochs
        }
    }

    /// Writes the pins to the pin file, if there is one: replaced whole (written aside, then
    /// renamed), mode 0600. Pins are public keys, but whoever may change them may swap a key.
    /// One write at a time, each of the pins as they are when it starts: an older copy never
    /// replaces a newer one.
    private func savePins() {
        guard let pinFile else { return }
        saving.withLock {
            let pins = state.withLockedValue { $0.pins }
            let stored = pins.mapValues { ["box_key": Data($0.boxKey), "sign_key": Data($0.signKey)] }
            guard let data = try? JSONEncoder().encode(stored) else { return }
            try? data.write(to: URL(fileURLWithPath: pinFile), options: .atomic)
            try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: pinFile)
        }
    }
}
