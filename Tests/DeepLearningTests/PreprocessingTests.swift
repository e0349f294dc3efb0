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
}
