import Bus
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// A group key this agent owns, for messages to many agents at once (broadcast, topics) that
/// only the members open. Its id is `owner/name`.
///
/// The key goes to each member sealed (a box, ``SealedFormat/Purpose/groupKey``); removing a
/// member makes a new key (the next epoch) and gives it to the others only, so the removed member
/// opens nothing sent after. Members keep the last few epochs, so messages sealed just before a
/// change still open.
public final class SealedGroup: Sendable {
    /// The members, and the newest epoch (its key is in the client's key ring).
    private struct State {
        var members: Set<String>
        var epoch: UInt32
    }

    public let name: String
    /// `owner/name`, as ``SealedBy/group(_:)`` names it.
    public let id: String
    private let client: ACBClient
    private let state: NIOLockedValueBox<State>

    init(name: String, owner: String, members: Set<String>, client: ACBClient) {
        self.name = name
        self.id = "\(owner)/\(name)"
        self.client = client
        self.state = NIOLockedValueBox(State(members: members, epoch: 0))
    }

    public var members: Set<String> { state.withLockedValue { $0.members } }

    /// Gives the current key to `agent`.
    public func add(_ agent: String) async throws {
        let epoch = state.withLockedValue { state in
            state.members.insert(agent)
            return state.epoch
        }
        guard let key = client.keyRing.groupKey(id, epoch: epoch) else {
            throw SealError(.unknownGroupKey, "no key of group \(id) at epoch \(epoch)")
        }
        try await client.sendGroupKey(key, group: name, epoch: epoch, to: agent)
    }

    /// Makes a new key and gives it to every member but `agent`.
    public func remove(_ agent: String) async throws {
        _ = state.withLockedValue { $0.members.remove(agent) }
        try await rotate()
    }

    /// Makes the next epoch's key, keeps it, and gives it to every member.
    func rotate() async throws {
        let key = Sodium.random(Sodium.keyBytes)
        // At least the clock's seconds: after a restart of the owner, its first epoch is newer than
        // those the members kept from its last run (and seal with, the newest they have).
        let now = UInt32(clamping: Int(Date().timeIntervalSince1970))
        let (epoch, members) = state.withLockedValue { state in
            state.epoch = max(state.epoch + 1, now)
            // Kept under the lock: an `add` that reads this epoch finds its key.
            client.keyRing.keepGroupKey(key, group: id, epoch: state.epoch)
            return (state.epoch, state.members)
        }
        for member in members.sorted() { try await client.sendGroupKey(key, group: name, epoch: epoch, to: member) }
    }
}

extension ACBClient {
    /// Makes a group key named `name` (this agent is its owner) and gives it to `members`.
    public func sealedGroup(_ name: String, members: Set<String>) async throws -> SealedGroup {
        guard let owner = welcome?.agentID else { throw ClientConnection.closedError }
        let group = SealedGroup(name: name, owner: owner, members: members, client: self)
        try await group.rotate()
        return group
    }

    /// Publishes on a topic, sealed with the newest key of group `group` (`owner/name`): only its
    /// members open it. - Returns: how many subscribers received it.
    @discardableResult
    public func publish(topic: String, _ payload: ByteBuffer, group: String, deadline: UInt64? = nil) async throws
        -> UInt32
    {
        try await publish(topic: topic, try sealForGroup(payload, group: group), deadline: deadline)
    }

    /// Broadcasts to the tenant, sealed with the newest key of group `group`.
    @discardableResult
    public func broadcast(_ payload: ByteBuffer, group: String, deadline: UInt64? = nil) async throws -> UInt32 {
        try await broadcast(try sealForGroup(payload, group: group), deadline: deadline)
    }

    func sendGroupKey(_ key: [UInt8], group name: String, epoch: UInt32, to member: String) async throws {
        var content: [UInt8] = []
        content.append(shortString: name)
        content.append(integer: epoch)
        content += key
        let recipient = try await peerKeys(member)
        let (sealed, _) = SealedFormat.box(content, purpose: .groupKey, to: recipient, from: try keyRing.own())
        try await send(to: .agent(member), ByteBuffer(bytes: sealed))
    }

    /// Keeps a group key `owner` sent: its groups are `owner/…`, so no member can pass a key of
    /// its own off as the owner's.
    func keepGroupKey(_ content: ArraySlice<UInt8>, from owner: String) throws(SealError) {
        var reader = SealedFormat.Reader(Array(content), skipping: 0)
        let name = try reader.string()
        let epoch = try reader.integer(UInt32.self)
        let key = Array(try reader.take(Sodium.keyBytes))
        keyRing.keepGroupKey(key, group: "\(owner)/\(name)", epoch: epoch)
    }

    private func sealForGroup(_ payload: ByteBuffer, group: String) throws -> ByteBuffer {
        let own = try keyRing.own()
        guard let (epoch, key) = keyRing.newestGroupKey(group) else {
            throw SealError(.unknownGroupKey, "this agent holds no key of group \(group)")
        }
        var head = SealedFormat.header(.group)
        head.append(shortString: group)
        head.append(integer: epoch)
        head += SealedFormat.keyID(own.publicKeys.signKey)
        let content = [SealedFormat.Purpose.message.rawValue] + Array(payload.readableBytesView)
        return ByteBuffer(bytes: SealedFormat.signedAEAD(head: head, content: content, key: key, signer: own))
    }

    /// Opens a group message `member` wrote. - Returns: the group's id and the payload.
    func openGroupMessage(_ sealed: [UInt8], from member: String) async throws -> (String, [UInt8]) {
        var reader = SealedFormat.Reader(sealed, skipping: 4)
        let group = try reader.string()
        let epoch = try reader.integer(UInt32.self)
        let signer = Array(try reader.take(SealedFormat.keyIDBytes))
        guard let key = keyRing.groupKey(group, epoch: epoch) else {
            throw SealError(.unknownGroupKey, "no key of group \(group) at epoch \(epoch)")
        }
        let signKey = try await signKey(of: member, named: signer)
        let content = try SealedFormat.openSignedAEAD(sealed, at: reader, key: key, signKey: signKey)
        guard content.first == SealedFormat.Purpose.message.rawValue else {
            throw SealError(.malformed, "a group message of another purpose")
        }
        return (group, Array(content.dropFirst()))
    }
}
