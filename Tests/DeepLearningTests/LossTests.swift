import CDeepLearningKernels
import Testing
@testable import DeepLearning

@Suite struct LossTests {
    func compute(_ loss: Loss<Double>, _ pred: [[Double]], labels: [Int32]) throws -> (Double, [[Double]]) {
        let p = try tensor(pred), g = try Tensor<Double>(shape: [0])
        let value = try labels.withUnsafeBufferPointer { l in try loss.compute(p, .labels(l.baseAddress!), grad: g) }
        return (value, rows(g))
    }

    func compute(_ loss: Loss<Double>, _ pred: [[Double]], values: [[Double]]) throws -> (Double, [[Double]]) {
        let p = try tensor(pred), t = try tensor(values), g = try Tensor<Double>(shape: [0])
        return (try loss.compute(p, .values(t.data), grad: g), rows(g))
    }

    /// The float32 softmax's exponentials (`dlk_exp_f32`): within 2 units of the last place
    /// of exp in double over the whole range it documents, 0 below it, +infinity above, NaN
    /// kept; the AVX2 loop and plain C give the same bits (every length, so both the 8-wide
    /// loop and its scalar tail run).
    @Test func floatExpIsWithinTwoUnitsOfTheLastPlace() {
        var x: [Float] = []
        var v: Float = -87.33654
        while v <= 88.37626 { x.append(v); v += 0.00731 }
        x += [0, -0.0, 1e-30, -1e-30, .ulpOfOne, -87.33654, 88.37626, -20.125, 0.5, -0.5]
        var y = [Float](repeating: 0, count: x.count), plain = y
        dlk_exp_f32(x, &y, Int64(x.count), 0)
        dlk_exp_f32(x, &plain, Int64(x.count), 1)
        #expect(y.map(\.bitPattern) == plain.map(\.bitPattern))
        var worst = 0.0
        for (a, b) in zip(x, y) {
            let e = Double.exp(Double(a)), ulp = Double(Float(e).ulp)
            worst = max(worst, abs(Double(b) - e) / ulp)
        }
        #expect(worst <= 2, "worst error \(worst) units of the last place")
        #expect(y[x.count - 10] == 1 && y[x.count - 9] == 1)   // exp(0) and exp(-0)
        let special: [Float] = [-88, -1000, -.infinity, 88.5, 1000, .infinity, .nan, -.nan]
        for n in 1...special.count {   // each length: the vector loop and the scalar tail
            var out = [Float](repeating: 7, count: n), outPlain = out
            dlk_exp_f32(special, &out, Int64(n), 0)
            dlk_exp_f32(special, &outPlain, Int64(n), 1)
            for i in 0..<n {
                for (got, path) in [(out[i], "vector"), (outPlain[i], "plain C")] {
                    switch i {
                    case 0...2: #expect(got == 0, "\(path): exp(\(special[i]))")
                    case 3...5: #expect(got == .infinity, "\(path): exp(\(special[i]))")
                    default: #expect(got.isNaN, "\(path): exp(NaN)")
                    }
                }
            }
        }
    }

    /// The float32 cross-entropy (its softmax through `dlk_exp_f32`) against float64 on the
    /// same logits: loss and gradient agree to float32 rounding, for rows of 1 to 1,000
    /// classes and logits up to +-80.
    @Test(arguments: [1, 3, 10, 17, 1000])
    func floatCrossEntropyAgreesWithDouble(classes: Int) throws {
        var rng = RandomGenerator(seed: UInt64(classes))
        let rows = 9
        let logits = (0..<rows * classes).map { _ in rng.normal() * (classes == 17 ? 40 : 3) }
        let labels = (0..<rows).map { Int32($0 % classes) }
        let p32 = try Tensor<Float>(shape: [rows, classes]), p64 = try Tensor<Double>(shape: [rows, classes])
        for i in 0..<logits.count { p32.data[i] = Float(logits[i]); p64.data[i] = Double(Float(logits[i])) }
        let g32 = try Tensor<Float>(shape: [0]), g64 = try Tensor<Double>(shape: [0])
        let (l32, l64) = try labels.withUnsafeBufferPointer { l in
            (try Loss<Float>(CrossEntropy(labelSmoothing: 0)).compute(p32, .labels(l.baseAddress!), grad: g32),
             try Loss<Double>(CrossEntropy(labelSmoothing: 0)).compute(p64, .labels(l.baseAddress!), grad: g64))
        }
        #expect(abs(l32 - l64) <= 1e-6 * max(1, abs(l64)), "loss \(l32) against \(l64)")
        var worst = 0.0
        for i in 0..<rows * classes { worst = max(worst, abs(Double(g32.data[i]) - g64.data[i])) }
        #expect(worst <= 1e-7, "gradient off by \(worst)")
    }

    @Test func mseMatchesTheTutorial() throws {
        let (l1, _) = try compute(Loss(MeanSquaredError()), [[1, 2], [3, 4]], values: [[1.5, 2.5], [2.5, 3.5]])
        #expect(abs(l1 - 0.25) < 1e-12)
        let (l2, g) = try compute(Loss(MeanSquaredError()), [[2.5, 3.0]], values: [[2.0, 3.5]])
        #expect(abs(l2 - 0.25) < 1e-12)
        // 2 (p - t) / N with N = 2 elements
        #expect(maxAbsDiff(g[0], [0.5, -0.5]) < 1e-12)
    }

    /// The tutorial's example, by indices and by one-hot rows. Softmax + mean NLL of these
    /// logits is 0.31854 (NumPy and PyTorch's cross_entropy agree); the "about 0.4076" that
    /// the reference notes quote is not what the formula gives, so we test the formula.
    @Test func crossEntropyMatchesTheTutorial() throws {
        let logits: [[Double]] = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]
        let (byIndex, g1) = try compute(Loss(CrossEntropy(labelSmoothing: 0)), logits, labels: [0, 1])
        let (byOneHot, g2) = try compute(Loss(CrossEntropy(labelSmoothing: 0)), logits, values: [[1, 0, 0], [0, 1, 0]])
        // Reference from the formula: -mean(log softmax[target]).
        func logSoftmax(_ r: [Double], _ k: Int) -> Double { r[k] - Double.log(r.map { Double.exp($0) }.reduce(0, +)) }
        let expected = -(logSoftmax(logits[0], 0) + logSoftmax(logits[1], 1)) / 2
        #expect(abs(byIndex - expected) < 1e-12)
        #expect(abs(byIndex - 0.3185397696) < 1e-9)
        #expect(abs(byOneHot - byIndex) < 1e-12)
        for r in 0..<2 {
            let e = logits[r].map { Double.exp($0) }, z = e.reduce(0, +)
            let reference = (0..<3).map { (e[$0] / z - ($0 == r ? 1 : 0)) / 2 }
            #expect(maxAbsDiff(g1[r], reference) < 1e-12)
            #expect(maxAbsDiff(g2[r], reference) < 1e-12)
        }
    }

    @Test func crossEntropyIsStableForHugeLogits() throws {
        let (l, g) = try compute(Loss(CrossEntropy(labelSmoothing: 0)), [[1000, 0, -1000]], labels: [1])
        #expect(abs(l - 1000) < 1e-9)
        #expect(g[0].allSatisfy { $0.isFinite })
    }

    @Test func huberQuadraticInsideLinearOutside() throws {
        // diffs: 0.5 (inside delta 1), -3 (outside)
        let (l, g) = try compute(Loss(Huber(delta: 1)), [[1.5, -1]], values: [[1, 2]])
        #expect(abs(l - (0.5 * 0.25 + 1 * (3 - 0.5)) / 2) < 1e-12)
        #expect(maxAbsDiff(g[0], [0.5 / 2, -1.0 / 2]) < 1e-12)
    }

    @Test func mseRefusesClassLabels() throws {
        #expect(throws: DLError.self) { try compute(Loss(MeanSquaredError()), [[1, 2]], labels: [0]) }
    }

    /// PyTorch's label smoothing: q = (1 - e) onehot + e / C, loss = -mean sum q log softmax,
    /// by class index and by one-hot rows alike.
    @Test func labelSmoothingAsPyTorchDefinesIt() throws {
        let logits: [[Double]] = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]
        let loss = Loss<Double>(CrossEntropy(labelSmoothing: 0.2))
        let (byIndex, g1) = try compute(loss, logits, labels: [0, 2])
        let (byOneHot, g2) = try compute(loss, logits, values: [[1, 0, 0], [0, 0, 1]])
        var expected = 0.0
        for (r, k) in [0, 2].enumerated() {
            let z = logits[r].map { Double.exp($0) }.reduce(0, +)
            let q = (0..<3).map { 0.8 * ($0 == k ? 1 : 0) + 0.2 / 3 }
            expected -= (0..<3).reduce(0.0) { $0 + q[$1] * (logits[r][$1] - Double.log(z)) } / 2
            let reference = (0..<3).map { (Double.exp(logits[r][$0]) / z - q[$0]) / 2 }
            #expect(maxAbsDiff(g1[r], reference) < 1e-15)
            #expect(maxAbsDiff(g2[r], reference) < 1e-15)
        }
        #expect(abs(byIndex - expected) < 1e-14)
        #expect(abs(byOneHot - expected) < 1e-14)
    }

    /// BCEWithLogitsLoss: mean over all outputs of -(t log s(x) + (1 - t) log(1 - s(x))).
    @Test func binaryCrossEntropyOnLogits() throws {
        let x: [[Double]] = [[0.3, -1.2, 2.0], [-0.4, 0.0, 5.0]], t: [[Double]] = [[1, 0, 0.25], [0, 1, 1]]
        let (value, g) = try compute(Loss(BinaryCrossEntropy()), x, values: t)
        var expected = 0.0
        for r in 0..<2 {
            for c in 0..<3 {
                let s = 1 / (1 + Double.exp(-x[r][c]))
                expected -= (t[r][c] * Double.log(s) + (1 - t[r][c]) * Double.log(1 - s)) / 6
                #expect(abs(g[r][c] - (s - t[r][c]) / 6) < 1e-15)
            }
        }
        #expect(abs(value - expected) < 1e-14)
    }

    @Test func binaryCrossEntropyIsStableAndChecksTargets() throws {
        let (l, g) = try compute(Loss(BinaryCrossEntropy()), [[1000, -1000]], values: [[0, 1]])
        #expect(abs(l - 1000) < 1e-9)
        #expect(maxAbsDiff(g[0], [0.5, -0.5]) < 1e-15)
        let error = try #require(throws: DLError.self) { try compute(Loss(BinaryCrossEntropy()), [[1, 2]], values: [[0, 1.5]]) }
        #expect(error.message.contains("[0, 1]") && error.message.contains("output 1"))
        #expect(throws: DLError.self) { try compute(Loss(BinaryCrossEntropy()), [[1, 2]], labels: [0]) }
    }

    /// dL/dpred against centred differences, for every loss and target kind.
    @Test(arguments: [("cross_entropy", 0.0), ("cross_entropy", 0.1), ("binary_cross_entropy", 0), ("mse", 0), ("huber", 0.7)])
    func gradientCheckIsExcellent(type: String, option: Double) throws {
        var rng = RandomGenerator(seed: 9)
        let options: [String: SpecValue] = type == "huber" ? ["delta": .double(option)]
            : type == "cross_entropy" ? ["label_smoothing": .double(option)] : [:]
        let loss: Loss<Double> = try LossRegistry.make(kind("loss", type).spec(options, path: "loss"))
        let pred = try randomTensor([4, 3], &rng), grad = try Tensor<Double>(shape: [0])
        let labels = UnsafeMutablePointer<Int32>.allocate(capacity: 4)
        defer { labels.deallocate() }
        labels.initialize(from: [2, 0, 1, 1], count: 4)
        let targets = try randomTensor([4, 3], &rng)
        if type.hasSuffix("cross_entropy") {   // soft targets: each row a distribution (so each value in [0, 1])
            for r in 0..<4 {
                let s = (0..<3).reduce(0.0) { $0 + abs(targets.data[r * 3 + $1]) }
                for c in 0..<3 { targets.data[r * 3 + c] = abs(targets.data[r * 3 + c]) / s }
            }
        }
        var kinds: [Targets<Double>] = [.values(targets.data)]
        if loss.isClassification { kinds.append(.labels(labels)) }
        for t in kinds {
            _ = try loss.compute(pred, t, grad: grad)
            let analytical = grad.array
            let scratch = try Tensor<Double>(shape: [0])
            let entry = try analytical.withUnsafeBufferPointer { (g) throws(DLError) in
                try GradientCheck.check(name: "pred", values: pred.data, grad: g.baseAddress!, count: pred.count,
                                        limit: 0, epsilon: 1e-5) { () throws(DLError) in try loss.compute(pred, t, grad: scratch) }
            }
            #expect(entry.relativeError < 1e-7, "\(type): \(entry.relativeError)")
        }
    }
}
