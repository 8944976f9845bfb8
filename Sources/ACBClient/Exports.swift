// `import ACBClient` is all an agent needs: the modules whose types the client's API takes and
// returns come with it — Bus (AgentDescription, Target, Deliver, BusError, …), NIOCore (ByteBuffer)
// and ACBTLS (TLSContext, TLSConfiguration). README.md's example is compiled against exactly this
// (scripts/readme-example.sh).
@_exported public import ACBTLS
@_exported public import Bus
@_exported public import NIOCore
