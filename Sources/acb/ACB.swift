import ArgumentParser

/// `acb`: the Agentic Context Bus server and its operator tools.
@main
struct ACB: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acb",
        abstract: "The Agentic Context Bus: a message bus for AI agents.",
        subcommands: [Serve.self, Migrate.self, Token.self, Agent.self]
    )
}
