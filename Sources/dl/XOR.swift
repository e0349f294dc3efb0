import ArgumentParser
import DeepLearning

/// `dl xor SPEC`: the smallest real demonstration: learn XOR, save, reload, verify.
struct XOR: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Learn XOR with a spec (2 inputs, 2 classes), save it and check the reloaded copy.")

    @Argument(help: "A spec with input size 2 and 2 output classes, e.g. specs/xor.json.") var spec: String
    @Option(help: "Where to write the checkpoint.") var out = "xor.h5"
    @Option(help: "Most full-batch steps to take.") var maxSteps = 2000

    func run() throws {
        try runReporting { () throws(DLError) in
            let model = try makeModel(spec: try SpecParser.parse(file: spec))
            guard model.inputSize == 2, model.outputSize == 2, model.isClassifier else {
                throw DLError(.invalidArgument, "\(spec): XOR needs 2 inputs and a 2-class cross-entropy output")
            }
            let x: [Float] = [0, 0, 0, 1, 1, 0, 1, 1]
            let y: [Int32] = [0, 1, 1, 0]
            var accuracy = 0.0, loss = 0.0, steps = 0
            try x.withUnsafeBufferPointer { (xp) throws(DLError) in
                try y.withUnsafeBufferPointer { (yp) throws(DLError) in
                    while steps < maxSteps && (accuracy < 1 || loss > 0.05) {
                        loss = try model.trainStep(x: xp.baseAddress!, batch: 4, targets: .labels(yp.baseAddress!))
                        steps += 1
                        accuracy = try model.evaluate(x: xp.baseAddress!, count: 4, targets: .labels(yp.baseAddress!)).accuracy ?? 0
                        if steps == 1 || steps % 10 == 0 { print("step \(pad(String(steps), 5, right: true))  loss \(fixed(loss))  accuracy \(fixed(accuracy * 100, 1))%") }
                    }
                }
            }
            print("learned XOR in \(steps) steps: loss \(fixed(loss)), accuracy \(fixed(accuracy * 100, 1))%")
            try model.save(to: out)
            let reloaded = try loadModel(from: out)
            var a = [Int32](repeating: 0, count: 4), b = a
            try x.withUnsafeBufferPointer { (xp) throws(DLError) in
                try a.withUnsafeMutableBufferPointer { (p) throws(DLError) in try model.predictClasses(x: xp.baseAddress!, count: 4, into: p.baseAddress!) }
                try b.withUnsafeMutableBufferPointer { (p) throws(DLError) in try reloaded.predictClasses(x: xp.baseAddress!, count: 4, into: p.baseAddress!) }
            }
            for i in 0..<4 { print("  \(Int(x[2 * i])) xor \(Int(x[2 * i + 1])) -> \(b[i])") }
            guard a == b, b == y else { throw DLError(.internal, "the reloaded model predicts \(b), expected \(y)") }
            print("saved \(out); the reloaded model predicts the same")
        }
    }
}
