import ArgumentParser
import DeepLearning

/// `dl gradcheck SPEC`: every parameter's gradient against centred differences, in float64.
struct Gradcheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a spec's back-propagation against finite differences (float64).",
        discussion: """
        Builds the model from SPEC, draws a random batch from --seed, and compares each \
        parameter's analytical gradient a with centred differences n. An entry passes when \
        |a - n| <= atol + rtol |n| (PyTorch's gradcheck criterion; the score is the largest \
        |a - n| / (atol + rtol |n|), at most 1 passes). The relative error is shown for \
        reading; where a true gradient is zero it divides noise by noise. Exit status 1 \
        when any parameter fails.
        """)

    @Argument(help: "The JSON model spec.") var spec: String
    @Option(help: "Samples in the random batch.") var batch = 8
    @Option(help: "Entries checked per parameter tensor, spread evenly (0 = all).") var maxEntries = 64
    @Option(help: "Seed of the random batch.") var seed: UInt64 = 0

    @Option(help: "Absolute tolerance of each entry.") var atol = GradientCheck.Tolerance.standard.absolute
    @Option(help: "Relative tolerance of each entry.") var rtol = GradientCheck.Tolerance.standard.relative

    func run() throws {
        var failed = true
        try runReporting { () throws(DLError) in
            guard batch >= 1, batch <= 4096 else { throw .invalid("--batch must be in 1...4096, got \(batch)") }
            guard maxEntries >= 0 else { throw .invalid("--max-entries must be >= 0") }
            let tolerance = try GradientCheck.Tolerance(absolute: atol, relative: rtol)
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
                                                limit: maxEntries, tolerance: tolerance)
                    }
                }
            }
            let width = max(9, entries.map(\.name.count).max() ?? 0)
            print("\(pad("parameter", width))  \(pad("checked", 8, right: true))  abs. error  rel. error  score       verdict")
            for e in entries {
                print("\(pad(e.name, width))  \(pad(String(e.checked), 8, right: true))  \(pad(scientific(e.maxAbsoluteDifference), 10))  \(pad(scientific(e.relativeError), 10))  \(pad(scientific(e.score), 10))  \(e.passed ? "ok" : "FAIL")")
            }
            failed = !entries.allSatisfy(\.passed)
            let worst = entries.map(\.score).max() ?? 0
            print("criterion |a - n| <= \(scientific(atol)) + \(scientific(rtol)) |n|: largest score \(scientific(worst)): \(failed ? "FAIL (a bug)" : "passed")")
        }
        if failed { throw ExitCode(1) }
    }
}
