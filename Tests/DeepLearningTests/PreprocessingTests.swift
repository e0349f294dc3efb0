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
}
