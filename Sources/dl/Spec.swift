import ArgumentParser
import DeepLearning

/// `dl spec schema` and `dl spec docs`: the files generated from the library's registries.
struct Spec: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate specs/schema.json and the option tables of specs/README.md from the registries.",
        discussion: """
        Every layer, loss, optimizer, schedule and initializer declares its options once, in \
        the library; these commands write what is derived from them. The tests fail when the \
        committed files differ from what they generate.
        """,
        subcommands: [Schema.self, Docs.self])

    struct Schema: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write the spec format's JSON Schema.")

        @Option(help: "The file to write; standard output when not given.") var output: String?

        func run() throws {
            try runReporting { () throws(DLError) in try emit(SpecDocs.schema(), to: output) }
        }
    }

    struct Docs: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rewrite the option tables of a spec README between its \"<!-- generated: NOUN -->\" markers.")

        @Argument(help: "The README to update.") var readme = "specs/README.md"
        @Option(help: "Where to write the result; the README itself when not given, - for standard output.") var output: String?

        func run() throws {
            try runReporting { () throws(DLError) in try emit(SpecDocs.readme(file: readme), to: output ?? readme) }
        }
    }
}

/// Writes `text` to `path`, or to standard output when `path` is nil or "-".
private func emit(_ text: String, to path: String?) throws(DLError) {
    guard let path, path != "-" else { return print(text, terminator: "") }
    try writeTextFile(path, text)
}
