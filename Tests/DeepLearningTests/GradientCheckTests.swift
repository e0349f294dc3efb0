import Testing
@testable import DeepLearning

/// The gradient check's verdict: PyTorch's |a - n| <= atol + rtol |n| per entry, which a
/// correct gradient that is exactly zero passes and a wrong one fails.
@Suite struct GradientCheckTests {
    /// A convolution with a bias, then batch norm: the batch mean removes the bias, so its
    /// true gradient is zero and both a and n are rounding noise.
    static let convBiasBatchNorm = """
    {"input": {"shape": [1, 5, 5]}, "layers": [{"type": "conv2d", "filters": 3, "kernel_size": 3, "bias": true},
     {"type": "batch_norm"}, {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "units": 4}],
     "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 9}
    """

    static func data(_ batch: Int, _ features: Int, classes: Int) -> (x: [Float], y: [Int32]) {
        var rng = RandomGenerator(seed: 21)
        return ((0..<batch * features).map { _ in Float(rng.normal()) }, (0..<batch).map { _ in Int32(rng.below(classes)) })
    }

    func check(_ model: any AnyModel, tolerance: GradientCheck.Tolerance = .standard) throws -> [GradientCheck.Entry] {
        let (x, y) = Self.data(6, model.inputSize, classes: model.outputSize)
        return try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeBufferPointer {
                try model.gradientCheck(x: xp.baseAddress!, batch: 6, targets: .labels($0.baseAddress!), limit: 0, tolerance: tolerance)
            }
        }
    }

    @Test func aZeroTrueGradientPasses() throws {
        let model = try makeModel(spec: try SpecParser.parse(json: Self.convBiasBatchNorm))
        let entries = try check(model)
        let bias = try #require(entries.first { $0.name == "layers.0.bias" })
        // The old reading: noise over noise, far above its 1e-2 "bug" band (or at least
        // meaningless); the absolute difference is what says the gradient is right.
        #expect(bias.maxAbsoluteDifference < 1e-8, "\(bias)")
        for e in entries {
            #expect(e.passed, "\(e.name): score \(e.score), abs \(e.maxAbsoluteDifference), rel \(e.relativeError)")
            #expect(e.score < 1e-2, "\(e.name): \(e.score)")    // far from the line, not just under it
        }
    }

    /// A wrong analytical gradient (1% too large, or one entry off) fails, the right one
    /// passes; the reference is the check's own numerical gradient, taken by hand here.
    @Test func aWrongGradientFails() throws {
        let model = try Model<Double>(spec: try SpecParser.parse(json: Self.convBiasBatchNorm))
        let (x, y) = Self.data(6, model.inputSize, classes: model.outputSize)
        try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeBufferPointer { yp in
                let f = { () throws(DLError) -> Double in
                    try model.lossValue(x: xp.baseAddress!, batch: 6, targets: .labels(yp.baseAddress!), training: true)
                }
                _ = try model.lossAndGradients(x: xp.baseAddress!, batch: 6, targets: .labels(yp.baseAddress!))
                let w = try #require(model.tensor(named: "layers.4.weight"))
                let right = w.grad.array
                for (label, wrong) in [("right", right), ("1% too large", right.map { $0 * 1.01 }),
                                       ("one entry off", right.enumerated().map { $0.offset == 7 ? $0.element + 1e-3 : $0.element })] {
                    let entry = try wrong.withUnsafeBufferPointer { (g) throws(DLError) in
                        try GradientCheck.check(name: w.name, values: w.value.data, grad: g.baseAddress!, count: w.value.count,
                                                limit: 0, epsilon: GradientCheck.defaultEpsilon, f)
                    }
                    #expect(entry.passed == (label == "right"), "\(label): score \(entry.score)")
                }
            }
        }
    }

    @Test func theCriterionPerEntry() throws {
        let t = GradientCheck.Tolerance.standard
        #expect(GradientCheck.score([0], [0], t) == 0)
        #expect(GradientCheck.score([1e-17], [3e-11], t) < 1e-5)            // noise around zero
        #expect(GradientCheck.score([1.0005], [1], t) <= 1)                  // within rtol
        #expect(GradientCheck.score([1.002], [1], t) > 1)                    // beyond it
        #expect(GradientCheck.score([2e-5], [0], t) > 1)                     // beyond atol at zero
        #expect(GradientCheck.score([1, .nan], [1, 1], t).isNaN)
        #expect(throws: DLError.self) { try GradientCheck.Tolerance(absolute: 0, relative: 0) }
        #expect(throws: DLError.self) { try GradientCheck.Tolerance(absolute: -1, relative: 1e-3) }
        #expect(throws: DLError.self) { try GradientCheck.Tolerance(absolute: .nan, relative: 1e-3) }
    }
}
