import ArgumentParser
import DeepLearning

/// `dl gradcheck SPEC`: every parameter's gradient against centred differences, in float64.
struct Gradcheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a spec's back-propagation against finite differences (float64).",
        discussion: """
        Builds the model from SPEC, draws a random batch from --seed, and compares each \
        parameter's analytical gradient with centred differences. Exit status 1 when any \
        relative error is above 1e-2 (a bug).
        """)

    @Argument(help: "The JSON model spec.") var spec: String
    @Option(help: "Samples in the random batch.") var batch = 8
    @Option(help: "Entries checked per parameter tensor, spread evenly (0 = all).") var maxEntries = 64
    @Option(help: "Seed of the random batch.") var seed: UInt64 = 0

    /// The tutorial's reading of a relative error.
    static func verdict(_ e: Double) -> String {
        switch e {
        case ..<1e-7: return "excellent"
        case ..<1e-5: return "good"
        case ..<1e-2: return "suspicious"
        default: return "BUG"
        }
    }

    func run() throws {
        var worst = 0.0
        try runReporting { () throws(DLError) in
            guard batch >= 1, batch <= 4096 else { throw .invalid("--batch must be in 1...4096, got \(batch)") }
            guard maxEntries >= 0 else { throw .invalid("--max-entries must be >= 0") }
            let model = try makeModel(spec: try SpecParser.parse(file: spec))
            var rng = RandomGenerator(seed: seed)
            let x = (0..<batch * model.inputSize).map { _ in rng.normal() }
            let labels = (0..<batch).map { _ in Int32(rng.below(model.outputSize)) }
            let values = (0..<batch * model.outputSize).map { _ in rng.normal() }
            let entries = try x.withUnsafeBufferPointer { (xp) throws(DLError) in
                try labels.withUnsafeBufferPointer { (lp) throws(DLError) in
                    try values.withUnsafeBufferPointer { (vp) throws(DLError) in
                        try model.gradientCheck(x: xp.baseAddress!, batch: batch,
                                                targets: model.isClassifier ? .labels(lp.baseAddress!) : .values(vp.baseAddress!),
                                                limit: maxEntries)
                    }
                }
            }
            let width = max(9, entries.map(\.name.count).max() ?? 0)
            print("\(pad("parameter", width))  \(pad("checked", 8, right: true))  rel. error  verdict")
            for e in entries {
                print("\(pad(e.name, width))  \(pad(String(e.checked), 8, right: true))  \(pad(scientific(e.relativeError), 10))  \(Self.verdict(e.relativeError))")
                worst = max(worst, e.relativeError)
            }
            print("max relative error \(scientific(worst)): \(Self.verdict(worst))")
        }
        if worst >= 1e-2 { throw ExitCode(1) }
    }
}
