import Testing
@testable import DeepLearning

@Suite struct PreprocessingTests {
    let base = """
    {"input": {"size": 3}, "layers": [{"type": "linear", "units": 4}, {"type": "relu"}, {"type": "linear", "units": 2}],
     "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 3
    """

    @Test func specCarriesTheTransform() throws {
        let spec = try SpecParser.parse(json: base + #", "preprocessing": {"scale": 0.5, "mean": 1, "std": 4}}"#)
        #expect(spec.preprocessing == Preprocessing(scale: 0.5, mean: 1, std: 4))
        #expect(try SpecParser.parse(json: base + "}").preprocessing.isIdentity)
        for bad in [#"{"std": 0}"#, #"{"scale": -1}"#, #"{"mean": "x"}"#, #"{"sigma": 1}"#, "[1]"] {
            #expect(throws: DLError.self) { try SpecParser.parse(json: base + #", "preprocessing": "# + bad + "}") }
        }
    }

    /// A model with the transform on raw inputs computes what the same model computes on
    /// inputs transformed by hand.
    @Test func predictionsApplyTheTransform() throws {
        let raw: [Float] = [0, 51, 255, 128, 3, 200]
        let p = Preprocessing(scale: 1.0 / 255, mean: 0.13, std: 0.31)
        let by = raw.map { Float((Double($0) * p.scale - p.mean) / p.std) }
        let plain = try makeModel(spec: try SpecParser.parse(json: base + "}"))
        let transforming = try makeModel(spec: try SpecParser.parse(json: base + "}"))
        try transforming.setPreprocessing(p)
        var a = [Float](repeating: 0, count: 4), b = a
        try raw.withUnsafeBufferPointer { x in try a.withUnsafeMutableBufferPointer { try transforming.predict(x: x.baseAddress!, count: 2, into: $0.baseAddress!) } }
        try by.withUnsafeBufferPointer { x in try b.withUnsafeMutableBufferPointer { try plain.predict(x: x.baseAddress!, count: 2, into: $0.baseAddress!) } }
        for i in 0..<4 { #expect(abs(a[i] - b[i]) < 1e-5) }
        // The JSON text carries it too, so a checkpoint keeps it.
        #expect(try SpecParser.parse(json: transforming.spec.json).preprocessing == p)
        let dir = temporaryDirectory()
        try transforming.save(to: dir + "/p.h5")
        #expect(try loadModel(from: dir + "/p.h5").spec.preprocessing == p)
        #expect(throws: DLError.self) { try transforming.setPreprocessing(Preprocessing(std: 0)) }
    }

    /// One set of value rules: whatever `setPreprocessing` accepts, the spec parser (and so
    /// a checkpoint's load) accepts, and the reverse; every value either refuses is refused
    /// by the other and by `Standardizer`, with the model left as it was.
    @Test func setPreprocessingAcceptsExactlyWhatLoads() throws {
        let dir = temporaryDirectory()
        let values: [Double] = [1, 0.5, 1e-12, 1e12, -1e12, 0, 1e-13, 1e13, 5e-324, -5e-324, 1e12.nextUp,
                                1e-12.nextDown, -1e12.nextDown, .nan, .infinity, -.infinity]
        var accepted = 0
        for (i, v) in values.enumerated() {
            for p in [Preprocessing(scale: v), Preprocessing(mean: v), Preprocessing(std: v)] {
                let model = try makeModel(spec: try SpecParser.parse(json: base + "}"))
                let json = base + #", "preprocessing": {"scale": \#(p.scale), "mean": \#(p.mean), "std": \#(p.std)}}"#
                let parses = p.scale.isFinite && p.mean.isFinite && p.std.isFinite
                    && (try? SpecParser.parse(json: json)) != nil
                let standardizer = (try? Standardizer(scale: p.scale, mean: p.mean, std: p.std)) != nil
                // The documented rules, written out: scale and std in [1e-12, 1e12], mean in [-1e12, 1e12].
                let documented = p.scale >= 1e-12 && p.scale <= 1e12 && p.std >= 1e-12 && p.std <= 1e12
                    && p.mean >= -1e12 && p.mean <= 1e12
                #expect(parses == documented, "\(p): the parser \(parses)")
                do {
                    try model.setPreprocessing(p)
                    #expect(parses && standardizer, "set accepted \(p), the parser \(parses), Standardizer \(standardizer)")
                    let path = dir + "/m\(i)-\(accepted).h5"
                    try model.save(to: path)
                    #expect(try loadModel(from: path).spec.preprocessing == p)
                    accepted += 1
                } catch {
                    #expect(!parses && !standardizer, "set refused \(p) (\(error)), the parser \(parses), Standardizer \(standardizer)")
                    #expect(model.spec.preprocessing.isIdentity)
                }
            }
        }
        #expect(accepted >= 4 + 10 + 4)
    }

    /// A set whose scaled values barely vary gets the rules' least std, not its own, and a
    /// model given the result saves and loads.
    @Test func standardizerStaysWithinTheRules() throws {
        let data = try Dataset(features: [1, 1.0000001, 1, 1.0000001], labels: [0, 1], sampleShape: [2])
        let s = try Standardizer.fit(data, scale: 1e-6)
        let exact = (Double(Float(1.0000001)) - 1) / 2 * 1e-6      // population std of the scaled values
        #expect(exact < Standardizer.minimumStd && s.std == Standardizer.minimumStd)
        let model = try makeModel(spec: try SpecParser.parse(json: base + "}"))
        try model.setPreprocessing(Preprocessing(scale: s.scale, mean: s.mean, std: s.std))
        let path = temporaryDirectory() + "/s.h5"
        try model.save(to: path)
        #expect(try loadModel(from: path).spec.preprocessing.std == Standardizer.minimumStd)
        // Values whose scaled mean is beyond the rules are refused, with the rule in the message.
        let huge = try Dataset(features: [0x1p43, 0x1p44], labels: [0], sampleShape: [2])
        do {
            _ = try Standardizer.fit(huge)
            Issue.record("a scaled mean of 1.3e13 was accepted")
        } catch {
            #expect(error.kind == .invalidArgument && error.message.contains("standardizer.mean: expected a number in [-1000000000000, 1000000000000]"), "\(error)")
        }
        #expect(try Standardizer.fit(huge, scale: 0x1p-10).std == 0x1p32)
    }

    // MARK: Batches to predict, preprocessed inside the first product

    /// A 50-16-4 MLP with MNIST's preprocessing on raw pixels.
    static func pixelModel(_ p: Preprocessing = Preprocessing(scale: 1.0 / 255, mean: 0.13, std: 0.31)) throws -> Model<Float> {
        let model = try Model<Float>(spec: try SpecParser.parse(json: """
            {"input": {"size": 50}, "layers": [{"type": "linear", "units": 16}, {"type": "relu"}, {"type": "linear", "units": 4}],
             "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 3}
            """))
        try model.setPreprocessing(p)
        return model
    }

    /// `rows` raw samples of 50 values; `background` is the share of them that are 0.
    static func pixels(rows: Int, background: Double, seed: UInt64) -> [Float] {
        var rng = RandomGenerator(seed: seed)
        return (0..<rows * 50).map { _ in rng.uniform() < background ? 0 : Float(Int(rng.uniform() * 256)) }
    }

    /// The model's outputs for raw `x`, in float64 from its parameters: the preprocessing,
    /// then each layer, by the formulas. With each output, the same sums over the terms'
    /// magnitudes, which bound float32's rounding error (a few units of 2^-24 of them).
    static func reference(_ model: Model<Float>, _ x: [Float], rows: Int) -> [(value: Double, magnitude: Double)] {
        func value(_ name: String) -> [Double] { model.parameters.first { $0.name == name }!.values.map(Double.init) }
        let (w1, b1, w2, b2) = (value("layers.0.weight"), value("layers.0.bias"), value("layers.2.weight"), value("layers.2.bias"))
        let p = model.spec.preprocessing
        let (multiplier, offset) = (p.scale / p.std, -p.mean / p.std)
        var out: [(value: Double, magnitude: Double)] = []
        for r in 0..<rows {
            var hidden = [Double](repeating: 0, count: 16), hiddenMagnitude = hidden
            for h in 0..<16 {
                var sum = b1[h], magnitude = abs(b1[h])
                for i in 0..<50 {
                    // The preprocessing's terms count too: the raw value times the multiplier, and the offset.
                    let scaled = Double(x[r * 50 + i]) * multiplier, w = w1[h * 50 + i]
                    sum += (scaled + offset) * w
                    magnitude += (abs(scaled) + abs(offset)) * abs(w)
                }
                if sum > 0 { (hidden[h], hiddenMagnitude[h]) = (sum, magnitude) }
            }
            for o in 0..<4 {
                var sum = b2[o], magnitude = abs(b2[o])
                for h in 0..<16 {
                    sum += hidden[h] * w2[o * 16 + h]
                    magnitude += hiddenMagnitude[h] * abs(w2[o * 16 + h])
                }
                out.append((sum, magnitude))
            }
        }
        return out
    }

    /// Whether float32 outputs agree with the reference to float32 rounding.
    static func agree(_ out: [Float], _ expected: [(value: Double, magnitude: Double)]) -> Bool {
        zip(out, expected).allSatisfy { abs(Double($0) - $1.value) <= 1e-6 * max(1, $1.magnitude) }
    }

    static func predict(_ model: Model<Float>, _ x: [Float], rows: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: rows * 4)
        try out.withUnsafeMutableBufferPointer { (o) throws(DLError) in try model.predict(x: x, count: rows, into: o.baseAddress!) }
        return out
    }

    static func folded(_ model: Model<Float>) -> Bool? { model.spareContext?.scratch?.sparse.lastWasFolded }
    static func foldedSparse(_ model: Model<Float>) -> Bool? { model.spareContext?.scratch?.sparse.lastFoldedWasSparse }

    /// Batches and single samples to predict go through the first layer raw: a dense batch
    /// as one product multiplied by the preprocessing's multiplier with its offset moved
    /// into the bias (a dense sample likewise through the one-row kernel), a sparse one
    /// compressed with each entry preprocessed as it is read. All agree with the float64
    /// formulas as the preprocessed path does; a large offset keeps the preprocessing pass,
    /// and agrees too.
    @Test(arguments: [1, 2, 7, 8, 64, 300, 1100])
    func batchesToPredictFoldThePreprocessingIn(rows: Int) throws {
        let sparse = rows >= SparseInput.minimumRows || rows == 1
        let cases: [(preprocessing: Preprocessing, background: Double, folds: Bool, sparse: Bool?)] = [
            (Preprocessing(scale: 1.0 / 255, mean: 0.13, std: 0.31), 0, true, false),
            (Preprocessing(scale: 1.0 / 255, mean: 0.13, std: 0.31), 0.5, true, rows == 1 ? nil : false),  // a sample: either
            (Preprocessing(), 0.1, true, false),                                   // none: the copy is saved
            (Preprocessing(scale: 1.0 / 255, mean: 0.13, std: 0.31), 0.9, true, sparse),
            (Preprocessing(), 0.9, true, sparse),
            (Preprocessing(scale: 1, mean: 1000, std: 30), 0, false, false),      // offset -33: not folded
        ]
        for (i, c) in cases.enumerated() {
            let model = try Self.pixelModel(c.preprocessing)
            let x = Self.pixels(rows: rows, background: c.background, seed: UInt64(40 + i))
            let out = try Self.predict(model, x, rows: rows)
            let expected = Self.reference(model, x, rows: rows)
            #expect(Self.folded(model) == c.folds, "case \(i)")
            if c.folds, let sparse = c.sparse { #expect(Self.foldedSparse(model) == sparse, "case \(i)") }
            #expect(Self.agree(out, expected), "case \(i)")
        }
    }

    /// A raw sample whose value 0 is on 8 of the background guess's 16 picks but on no other
    /// input (42 of 50 off it, past the sparse path's 40): it is compressed without being
    /// counted first, the forward gives up past its limit, and the dense product answers,
    /// right. With the same value on every fourth input too it stays sparse.
    @Test func aRawSampleWhosePicksRepeatButThatIsDenseTakesTheDenseProduct() throws {
        let model = try Self.pixelModel()
        var rng = RandomGenerator(seed: 77)
        var x = (0..<50).map { _ in Float(1 + Int(rng.uniform() * 250)) }
        for a in stride(from: 0, to: 16, by: 2) { x[a * 50 / 16] = 0 }
        #expect(SparseInput.likelyBackgroundAndMatches(x, count: 50).matches >= SparseInput.countlessMatches)
        let dense = try Self.predict(model, x, rows: 1)
        #expect(Self.agree(dense, Self.reference(model, x, rows: 1)))
        #expect(Self.folded(model) == true && Self.foldedSparse(model) == false)
        for i in stride(from: 1, to: 50, by: 2) { x[i] = 0 }   // now 25 + 4 of 50 on 0
        let sparse = try Self.predict(model, x, rows: 1)
        #expect(Self.agree(sparse, Self.reference(model, x, rows: 1)))
        #expect(Self.folded(model) == true && Self.foldedSparse(model) == true)
    }

    /// A sparse batch (or sample) compressed from raw values, each preprocessed as it is
    /// read, gives the bits of the same batch preprocessed first (by the same two roundings) through a copy
    /// of the model without preprocessing: the same values, compressed around the same
    /// background. Both kernels.
    @Test(arguments: [false, true])
    func sparseRawBatchesGiveThePreprocessedBatchsBits(portable: Bool) throws {
        let p = Preprocessing(scale: 1.0 / 255, mean: 0.13, std: 0.31)
        let model = try Self.pixelModel(p)
        let copy = try model.converted(to: Float.self)
        try copy.setPreprocessing(Preprocessing())
        for m in [model, copy] { (m.layers[0] as? Linear<Float>)?.sparseInput?.forcePlainC = portable }
        let (m, o) = (Float(p.multiplier), Float(p.offset))
        for (rows, seed) in [(1, 69), (8, 70), (64, 71), (333, 72)] {
            let x = Self.pixels(rows: rows, background: 0.85, seed: UInt64(seed))
            let raw = try Self.predict(model, x, rows: rows)
            #expect(Self.foldedSparse(model) == true)
            let preprocessed = try Self.predict(copy, x.map { $0 * m + o }, rows: rows)
            #expect(raw == preprocessed, "\(rows) rows")
            #expect(Self.agree(raw, Self.reference(model, x, rows: rows)))
        }
    }

    /// The bias with the offset folded in is kept between calls while nothing changes, and
    /// made again after a training step, a new weight, a new bias and a new preprocessing.
    @Test func theFoldedBiasFollowsEveryChange() throws {
        let model = try Self.pixelModel()
        let x = Self.pixels(rows: 16, background: 0.2, seed: 50)
        func check(_ what: String) throws {
            for rows in [16, 1] {   // a batch, a sample (the one-row kernel): both dense
                let out = try Self.predict(model, x, rows: rows), expected = Self.reference(model, x, rows: rows)
                #expect(Self.folded(model) == true && Self.foldedSparse(model) == false, "\(what): folded, dense")
                #expect(Self.agree(out, expected), "\(what), \(rows) rows")
            }
        }
        try check("first call")
        try check("second call, the same weights")
        let labels: [Int32] = (0..<16).map { Int32($0 % 4) }
        _ = try labels.withUnsafeBufferPointer { (l) throws(DLError) -> Double in
            try model.trainStep(x: x, batch: 16, targets: .labels(l.baseAddress!))
        }
        try check("after a training step")
        let weight: [Float] = (0..<16 * 50).map { Float(($0 * 37) % 11) / 20 - 0.25 }
        try model.writeParameter(0, from: weight, count: weight.count)
        try check("after writing the weight")
        let bias: [Float] = (0..<16).map { Float($0) / 8 - 1 }
        try model.writeParameter(1, from: bias, count: bias.count)
        try check("after writing the bias")
        try model.setPreprocessing(Preprocessing(scale: 1.0 / 255, mean: 0.5, std: 0.25))
        try check("after a new preprocessing")
    }

    /// A NaN or an infinity anywhere in a folded batch, dense or sparse, is refused and
    /// nothing is written, even where its weights are 0 (infinity times 0 is NaN). Finite raw values so large
    /// that their product overflows before the multiplier scales it down are not refused:
    /// they take the preprocessed path, and agree with the formulas.
    @Test func foldedBatchesRefuseNaNAndInfinityAnywhere() throws {
        let model = try Self.pixelModel()
        var weight = [Float](repeating: 0, count: 16 * 50)
        for h in 0..<16 { for i in 1..<50 { weight[h * 50 + i] = Float((h + i) % 7) / 10 - 0.3 } }   // input 0: all 0
        try model.writeParameter(0, from: weight, count: weight.count)
        for (rows, background) in [(64, 0.1), (64, 0.9), (1, 0.1), (1, 0.9)] {   // dense and sparse, batches and samples
            let clean = Self.pixels(rows: rows, background: background, seed: 60)
            _ = try Self.predict(model, clean, rows: rows)
            #expect(Self.foldedSparse(model) == (background > 0.5))
            for bad in [Float.nan, .infinity, -.infinity] {
                for at in Set([0, 50 * 3 % (rows * 50), (50 * 17 + 25) % (rows * 50), rows * 50 - 1]).sorted() {
                    var x = clean
                    x[at] = bad
                    var out = [Float](repeating: 7, count: rows * 4)
                    #expect(throws: DLError.self, "\(bad) at \(at)") {
                        try out.withUnsafeMutableBufferPointer { (o) throws(DLError) in try model.predict(x: x, count: rows, into: o.baseAddress!) }
                    }
                    #expect(out.allSatisfy { $0 == 7 }, "\(bad) at \(at): nothing written")
                }
            }
        }
        let rows = 64
        let clean = Self.pixels(rows: rows, background: 0.1, seed: 60)
        for i in 1..<50 { weight[i] = 0.3 }   // hidden unit 0 sums inputs 1... times 0.3
        try model.writeParameter(0, from: weight, count: weight.count)
        var huge = clean
        for i in 1..<50 { huge[5 * 50 + i] = 3e38 }   // 49 * 0.3 * 3e38 overflows; times 1/(255 * 0.31) it would not
        let out = try Self.predict(model, huge, rows: rows), expected = Self.reference(model, huge, rows: rows)
        #expect(Self.folded(model) == false)
        #expect(expected.allSatisfy { $0.value.isFinite && abs($0.value) < 1e38 })
        #expect(Self.agree(out, expected))
        // A dense sample (no value repeated, so no background: the sparse path would map each
        // entry before multiplying): 20 * 0.3 * 3e38 overflows in the one-row kernel.
        var one = (0..<50).map { Float(1 + $0) }
        for i in 1...20 { one[i] = 3e38 * (1 - Float(i) / 1000) }
        #expect(Self.agree(try Self.predict(model, one, rows: 1), Self.reference(model, one, rows: 1)))
        #expect(Self.folded(model) == false)
        _ = try Self.predict(model, clean, rows: rows)
        #expect(Self.folded(model) == true)
    }
}
