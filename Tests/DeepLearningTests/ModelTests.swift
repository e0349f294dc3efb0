import Testing
@testable import DeepLearning

let xorInputs: [Float] = [0, 0, 0, 1, 1, 0, 1, 1]
let xorLabels: [Int32] = [0, 1, 1, 0]

func xorSpec(seed: UInt64 = 1, optimizer: String = "sgd", options: [String: SpecValue] = ["lr": .double(0.5), "momentum": .double(0.9)]) -> ModelSpec {
    makeSpec(input: [2], layers: [("linear", ["units": .int(8)]), ("tanh", [:]), ("linear", ["units": .int(2)])],
             optimizer: optimizer, optimizerOptions: options, seed: seed)
}

func train<T>(_ model: Model<T>, steps: Int) throws -> Double {
    var loss = 0.0
    try xorInputs.withUnsafeBufferPointer { x in
        try xorLabels.withUnsafeBufferPointer { y in
            for _ in 0..<steps { loss = try model.trainStep(x: x.baseAddress!, batch: 4, targets: .labels(y.baseAddress!)) }
        }
    }
    return loss
}

func bits<T: DLScalar>(_ model: Model<T>) -> [[T]] { model.parameters.map { $0.value.array } }

@Suite struct ModelTests {
    @Test func namesParametersByLayer() throws {
        let model = try Model<Float>(spec: makeSpec(input: [784], layers: [("linear", ["units": .int(128)]), ("relu", [:]), ("linear", ["units": .int(10)])]))
        #expect(model.parameters.map(\.name) == ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"])
        #expect(model.parameterCount == 101_770)
        #expect(model.outputSize == 10)
    }

    @Test func learnsXOR() throws {
        let model = try Model<Float>(spec: xorSpec())
        let loss = try train(model, steps: 300)
        #expect(loss < 0.05)
        var predicted = [Int32](repeating: -1, count: 4)
        try xorInputs.withUnsafeBufferPointer { x in
            try predicted.withUnsafeMutableBufferPointer { try model.predictClasses(x: x.baseAddress!, count: 4, into: $0.baseAddress!) }
        }
        #expect(predicted == xorLabels)
        let result = try xorInputs.withUnsafeBufferPointer { x in
            try xorLabels.withUnsafeBufferPointer { try model.evaluate(x: x.baseAddress!, count: 4, targets: .labels($0.baseAddress!)) }
        }
        #expect(result.accuracy == 1)
    }

    @Test func sameSeedGivesIdenticalParameters() throws {
        for opt in [("sgd", ["lr": SpecValue.double(0.5), "momentum": .double(0.9)]), ("adam", ["lr": .double(0.01)]), ("rmsprop", ["lr": .double(0.01)])] {
            let a = try Model<Float>(spec: xorSpec(seed: 42, optimizer: opt.0, options: opt.1))
            let b = try Model<Float>(spec: xorSpec(seed: 42, optimizer: opt.0, options: opt.1))
            #expect(bits(a) == bits(b))
            _ = try train(a, steps: 25)
            _ = try train(b, steps: 25)
            #expect(bits(a) == bits(b), "\(opt.0)")
            let c = try Model<Float>(spec: xorSpec(seed: 43, optimizer: opt.0, options: opt.1))
            #expect(bits(a) != bits(c))
        }
    }

    /// The initial weights have the initializer's statistics (He normal: std sqrt(2 / fan_in)).
    @Test func heNormalStatistics() throws {
        let model = try Model<Double>(spec: makeSpec(input: [500], layers: [("linear", ["units": .int(400)])], dtype: .float64))
        let w = model.parameters[0].value.array
        let mean = w.reduce(0, +) / Double(w.count)
        let std = (w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(w.count)).squareRoot()
        #expect(abs(mean) < 0.002)
        #expect(abs(std - (2.0 / 500).squareRoot()) / (2.0 / 500).squareRoot() < 0.01)
        #expect(model.parameters[1].value.array.allSatisfy { $0 == 0 })
    }

    @Test func wholeModelGradientCheckIsExcellent() throws {
        var rng = RandomGenerator(seed: 2)
        let x = (0..<5 * 6).map { _ in rng.normal() }
        let labels: [Int32] = [0, 2, 1, 2, 0]
        let values = (0..<5 * 3).map { _ in rng.normal() }
        for loss in ["cross_entropy", "mse", "huber"] {
            let spec = makeSpec(input: [6], layers: [("linear", ["units": .int(7)]), ("tanh", [:]), ("linear", ["units": .int(5)]),
                                                     ("sigmoid", [:]), ("linear", ["units": .int(4)]), ("leaky_relu", ["alpha": .double(0.2)]),
                                                     ("linear", ["units": .int(3)])],
                                loss: loss, lossOptions: loss == "huber" ? ["delta": .double(0.5)] : [:], dtype: .float64)
            let model = try Model<Double>(spec: spec)
            let entries = try x.withUnsafeBufferPointer { xp in
                try labels.withUnsafeBufferPointer { lp in
                    try values.withUnsafeBufferPointer { vp in
                        try model.checkGradients(x: xp.baseAddress!, batch: 5,
                                                targets: loss == "cross_entropy" ? .labels(lp.baseAddress!) : .values(vp.baseAddress!))
                    }
                }
            }
            #expect(entries.count == 8)
            for e in entries { #expect(e.relativeError < 1e-7, "\(loss) \(e.name): \(e.relativeError)") }
        }
    }

    @Test func refusesBadBatches() throws {
        let model = try Model<Float>(spec: xorSpec())
        let before = bits(model)
        let nan: [Float] = [0, .nan, 1, 1]
        #expect(throws: DLError.self) {
            try nan.withUnsafeBufferPointer { x in try [Int32](arrayLiteral: 0, 1).withUnsafeBufferPointer { try model.trainStep(x: x.baseAddress!, batch: 2, targets: .labels($0.baseAddress!)) } }
        }
        let bad: [Int32] = [0, 2]
        do {
            _ = try xorInputs.withUnsafeBufferPointer { x in try bad.withUnsafeBufferPointer { try model.trainStep(x: x.baseAddress!, batch: 2, targets: .labels($0.baseAddress!)) } }
            Issue.record("label 2 accepted")
        } catch let error as DLError {
            #expect(error.kind == .invalidArgument)
            #expect(error.message.contains("label 2 of sample 1 is out of range"))
        }
        #expect(throws: DLError.self) {
            try xorInputs.withUnsafeBufferPointer { x in try xorLabels.withUnsafeBufferPointer { try model.trainStep(x: x.baseAddress!, batch: 0, targets: .labels($0.baseAddress!)) } }
        }
        #expect(bits(model) == before)
    }

    @Test func divergenceLeavesParametersUntouched() throws {
        let model = try Model<Float>(spec: makeSpec(input: [1], layers: [("linear", ["units": .int(1)])], loss: "mse",
                                                    optimizerOptions: ["lr": .double(1e6)]))
        let x: [Float] = [1e18], y: [Float] = [0]
        var threw = false
        for _ in 0..<5 {
            let before = bits(model)
            do {
                _ = try x.withUnsafeBufferPointer { xp in try y.withUnsafeBufferPointer { try model.trainStep(x: xp.baseAddress!, batch: 1, targets: .values($0.baseAddress!)) } }
            } catch let error as DLError {
                #expect(error.kind == .numeric)
                #expect(bits(model) == before)
                threw = true
                break
            }
        }
        #expect(threw)
    }

    @Test func refusesHugeModelsBeforeAllocating() throws {
        let spec = makeSpec(input: [100_000], layers: [("linear", ["units": .int(100_000)])])
        do {
            _ = try Model<Float>(spec: spec)
            Issue.record("a 10^10-parameter model was built")
        } catch {
            #expect(error.kind == .noMemory)
        }
    }
}
