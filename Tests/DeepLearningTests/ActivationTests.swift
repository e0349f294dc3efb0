import Glibc
import Testing
@testable import DeepLearning

/// Every activation the registry knows, with default options, plus the option values
/// worth a case of their own. A new activation is in the generic checks below (gradients,
/// float32 against float64, no overflow, training) as soon as it is registered.
let activationCases: [(String, [String: SpecValue])] =
    LayerRegistry.factories.compactMap { ($0 as? any ActivationFunction.Type)?.kind.type }.map { ($0, [:]) } + [
        ("leaky_relu", ["alpha": .double(0.2)]),
        ("gelu", ["approximate": .string("tanh")]),
        ("elu", ["alpha": .double(0.5)]),
        ("softplus", ["beta": .double(2), "threshold": .double(3)]),
    ]

/// A layer from the registry, as a spec would build it.
func activation<T: DLScalar>(_ type: String, _ options: [String: SpecValue] = [:], shape: [Int] = [6]) throws -> any Layer<T> {
    var context = LayerContext(inputShape: shape, index: 0, defaultInitializer: .heNormal, rng: RandomGenerator(seed: 1))
    guard let factory = LayerRegistry.factory(type) else { throw DLError(.spec, "no layer type \(type)") }
    return try factory.make(ComponentSpec(type: type, options: options), &context)
}

/// y and dy/dx of `layer` at each of `xs` (one row; dL/dy = 1).
func valuesAndSlopes(_ layer: any Layer<Double>, _ xs: [Double]) throws -> (y: [Double], slope: [Double]) {
    let y = try layer.forward(try tensor([xs]), training: true).array
    let slope = try layer.backward(try tensor([xs.map { _ in 1 }]), needInputGradient: true)!.array
    return (y, slope)
}

/// The standard normal density and distribution function, from Glibc's erfc (not erf,
/// which the library uses).
func normalPDF(_ x: Double) -> Double { Glibc.exp(-x * x / 2) / Glibc.sqrt(2 * Double.pi) }
func normalCDF(_ x: Double) -> Double { Glibc.erfc(-x / Glibc.sqrt(2)) / 2 }
func logistic(_ x: Double) -> Double { 1 / (1 + Glibc.exp(-x)) }

/// -8 to 8 in steps of 1/8, with no point at 0 (where ReLU-like slopes are a convention).
let grid = (-64...64).filter { $0 != 0 }.map { Double($0) / 8 }

@Suite struct ActivationTests {
    @Test func reluMatchesTheTutorial() throws {
        let relu = try Activation<ReLU, Double>(try ReLU(), shape: [5])
        let y = try relu.forward(try tensor([[-2, -1, 0, 1, 2]]), training: true)
        #expect(y.array == [0, 0, 0, 1, 2])
        let dx = try relu.backward(try tensor([[1, 1, 1, 1, 1]]), needInputGradient: true)!
        #expect(dx.array == [0, 0, 0, 1, 1])
    }

    @Test func sigmoidValues() throws {
        let s = try Activation<Sigmoid, Double>(try Sigmoid(), shape: [3])
        let y = try s.forward(try tensor([[0, 1, -1]]), training: true).array
        #expect(maxAbsDiff(y, [0.5, 0.7310585786, 0.2689414214]) < 1e-9)
        let y2 = try s.forward(try tensor([[-2, 0, 2]]), training: true).array
        #expect(maxAbsDiff(y2, [0.1192029220, 0.5, 0.8807970780]) < 1e-9)
        // dx = dy * y * (1 - y)
        let dx = try s.backward(try tensor([[1, 2, 3]]), needInputGradient: true)!.array
        #expect(maxAbsDiff(dx, zip([1.0, 2, 3], y2).map { $0 * $1 * (1 - $1) }) < 1e-12)
        // No overflow far out in either direction.
        let extreme = try s.forward(try tensor([[-800, 800]]), training: true).array
        #expect(extreme == [0, 1])
    }

    @Test func tanhValues() throws {
        let t = try Activation<Tanh, Double>(try Tanh(), shape: [3])
        #expect(maxAbsDiff(try t.forward(try tensor([[0, 1, -1]]), training: true).array, [0, 0.7615941560, -0.7615941560]) < 1e-9)
        let y = try t.forward(try tensor([[-2, 0, 2]]), training: true).array
        #expect(maxAbsDiff(y, [-0.9640275801, 0, 0.9640275801]) < 1e-9)
        let dx = try t.backward(try tensor([[1, 1, 1]]), needInputGradient: true)!.array
        #expect(maxAbsDiff(dx, y.map { 1 - $0 * $0 }) < 1e-12)
    }

    @Test func leakyReLU() throws {
        let l = try Activation<LeakyReLU, Double>(try LeakyReLU(["alpha": .double(0.1)]), shape: [4])
        #expect(maxAbsDiff(try l.forward(try tensor([[-2, -0.5, 0, 3]]), training: true).array, [-0.2, -0.05, 0, 3]) < 1e-15)
        #expect(maxAbsDiff(try l.backward(try tensor([[1, 2, 3, 4]]), needInputGradient: true)!.array, [0.1, 0.2, 0.3, 4]) < 1e-15)
    }

    @Test func softmaxRowsSumToOne() throws {
        let s = try Softmax<Double>(shape: [3])
        let y = rows(try s.forward(try tensor([[1, 2, 3], [1000, 1000, 1000]]), training: true))
        let e = [1.0, 2, 3].map { Double.exp($0) }
        let z = e.reduce(0, +)
        #expect(maxAbsDiff(y[0], e.map { $0 / z }) < 1e-12)
        #expect(maxAbsDiff(y[1], [1.0 / 3, 1.0 / 3, 1.0 / 3]) < 1e-12)
    }

    /// Values computed with mpmath at 30 digits.
    @Test func spotValues() throws {
        let cases: [(String, [String: SpecValue], Double, Double)] = [
            ("gelu", [:], 1, 0.84134474606854295),
            ("gelu", [:], -0.5, -0.15426876936299345),
            ("gelu", ["approximate": .string("tanh")], 1, 0.8411919906082767),
            ("silu", [:], 1, 0.73105857863000488),
            ("elu", [:], -1, -0.63212055882855768),
            ("softplus", [:], 1, 1.3132616875182228),
            ("softplus", ["beta": .double(2)], -3, 0.0012378425688652248),
        ]
        for (type, options, x, expected) in cases {
            let y = try valuesAndSlopes(try activation(type, options), [x]).y[0]
            #expect(abs(y - expected) <= 1e-15 * max(1, abs(expected)), "\(type) \(options) at \(x): \(y)")
        }
    }

    /// y and dy/dx on a grid against closed forms written another way than the library's
    /// (erfc for erf, the logistic for tanh, plain log(1 + e^z) for the stable softplus).
    @Test func formulasMatchClosedForms() throws {
        let k = Glibc.sqrt(2 / Double.pi), c = 0.044715
        let elu = { (a: Double) in { (x: Double) in x > 0 ? (x, 1) : (a * (Glibc.exp(x) - 1), a * Glibc.exp(x)) } }
        let softplus = { (b: Double, limit: Double) in
            { (x: Double) in b * x > limit ? (x, 1) : (Glibc.log(1 + Glibc.exp(b * x)) / b, logistic(b * x)) }
        }
        let cases: [(String, [String: SpecValue], (Double) -> (Double, Double))] = [
            ("gelu", [:], { x in (x * normalCDF(x), normalCDF(x) + x * normalPDF(x)) }),
            ("gelu", ["approximate": .string("tanh")], { x in   // (1 + tanh u) / 2 = logistic(2u)
                let s = logistic(2 * k * (x + c * x * x * x))
                return (x * s, s + x * 2 * s * (1 - s) * k * (1 + 3 * c * x * x))
            }),
            ("silu", [:], { x in (x / (1 + Glibc.exp(-x)), logistic(x) + x * logistic(x) * logistic(-x)) }),
            ("elu", [:], elu(1)),
            ("elu", ["alpha": .double(0.3)], elu(0.3)),
            ("softplus", [:], softplus(1, 20)),
            ("softplus", ["beta": .double(2), "threshold": .double(3)], softplus(2, 3)),
        ]
        for (type, options, reference) in cases {
            let (y, slope) = try valuesAndSlopes(try activation(type, options, shape: [grid.count]), grid)
            for (i, x) in grid.enumerated() {
                let (ry, rs) = reference(x)
                #expect(abs(y[i] - ry) <= 1e-13 * max(1, abs(ry)), "\(type) \(options) y at \(x): \(y[i]) vs \(ry)")
                #expect(abs(slope[i] - rs) <= 1e-13 * max(1, abs(rs)), "\(type) \(options) slope at \(x): \(slope[i]) vs \(rs)")
            }
        }
    }

    /// Softplus is x itself above the threshold (PyTorch's rule), not log(1 + e^(beta x)) / beta.
    @Test func softplusIsLinearAboveTheThreshold() throws {
        let (y, slope) = try valuesAndSlopes(try activation("softplus", ["threshold": .double(1)]), [1.5, 0.5])
        #expect(y[0] == 1.5 && slope[0] == 1)
        #expect(abs(y[1] - Glibc.log(1 + Glibc.exp(0.5))) < 1e-15)
    }

    @Test func optionsKeepPyTorchsDefaults() {
        func defaults(_ type: String) -> [String: SpecValue] {
            let kind = LayerRegistry.factory(type)!.kind
            return Dictionary(uniqueKeysWithValues: kind.options.compactMap { o in o.defaultValue.map { (o.name, $0) } })
        }
        #expect(defaults("gelu") == ["approximate": .string("none")])
        #expect(defaults("elu") == ["alpha": .double(1)])
        #expect(defaults("softplus") == ["beta": .double(1), "threshold": .double(20)])
        #expect(defaults("silu") == [:])
    }

    /// Float64 finite differences, away from the kinks (0 for the ReLUs, beta x = threshold
    /// for softplus).
    @Test(arguments: activationCases + [("softmax", [:])])
    func gradientCheckIsExcellent(type: String, options: [String: SpecValue]) throws {
        var rng = RandomGenerator(seed: 5)
        let layer: any Layer<Double> = try activation(type, options)
        let x = try randomTensor([3, 6], &rng, scale: 2)
        for i in 0..<x.count where abs(x.data[i]) < 1e-3 || abs(x.data[i] - 1.5) < 1e-3 { x.data[i] = 0.5 }
        let result = try checkLayer(layer, input: x)
        #expect(result.input < 1e-7, "\(type) \(options): \(result.input)")
    }

    /// The float32 specialisations compute the same formulas as the float64 ones.
    @Test(arguments: activationCases)
    func float32AgreesWithFloat64(type: String, options: [String: SpecValue]) throws {
        let xs = grid.map { Float($0) }
        let f: any Layer<Float> = try activation(type, options, shape: [xs.count])
        let d: any Layer<Double> = try activation(type, options, shape: [xs.count])
        let y32 = try f.forward(try tensor([xs]), training: true).array
        let dx32 = try f.backward(try tensor([xs.map { _ in 1 }]), needInputGradient: true)!.array
        let (y64, dx64) = try valuesAndSlopes(d, xs.map { Double($0) })
        for i in 0..<xs.count {
            #expect(abs(Double(y32[i]) - y64[i]) <= 1e-6 * max(1, abs(y64[i])), "\(type) y at \(xs[i])")
            #expect(abs(Double(dx32[i]) - dx64[i]) <= 1e-6 * max(1, abs(dx64[i])), "\(type) slope at \(xs[i])")
        }
    }

    /// Huge inputs give finite values and slopes in both dtypes (no exp or cube overflowing
    /// into NaN).
    @Test(arguments: activationCases)
    func hugeInputsStayFinite(type: String, options: [String: SpecValue]) throws {
        func check<T: DLScalar>(_: T.Type) throws {
            let big = T.greatestFiniteMagnitude / 4
            let xs: [T] = [-big, -800, -80, 80, 800, big]
            let layer: any Layer<T> = try activation(type, options, shape: [xs.count])
            let y = try layer.forward(try tensor([xs]), training: true).array
            let dx = try layer.backward(try tensor([xs.map { _ in 1 }]), needInputGradient: true)!.array
            #expect((y + dx).allSatisfy { $0.isFinite }, "\(type) \(options) \(T.self): y \(y), dx \(dx)")
        }
        try check(Float.self)
        try check(Double.self)
    }

    /// A 1-16-1 network with the activation learns y = sin(x) (Adam, full batch).
    @Test(arguments: activationCases)
    func aModelWithItTrains(type: String, options: [String: SpecValue]) throws {
        let spec = makeSpec(input: [1], layers: [("linear", ["units": .int(16)]), (type, options), ("linear", ["units": .int(1)])],
                            loss: "mse", optimizer: "adam", optimizerOptions: ["lr": .double(0.02)], seed: 3)
        let model = try makeModel(spec: spec)
        let (x, y) = regressionBatch(64, seed: 9)
        var losses: [Double] = []
        for _ in 0..<300 {
            losses.append(try x.withUnsafeBufferPointer { xp in
                try y.withUnsafeBufferPointer { yp in try model.trainStep(x: xp.baseAddress!, batch: 64, targets: .values(yp.baseAddress!)) }
            })
        }
        #expect(losses.last! < losses.first! / 10, "\(type) \(options): \(losses.first!) -> \(losses.last!)")
    }

    /// The new activations' options survive the spec JSON a checkpoint stores: the loaded
    /// model reads them back and predicts bit-identically, while the same network with the
    /// default options predicts differently (so the options matter).
    @Test func optionsSurviveACheckpoint() throws {
        let withOptions = [#"{"type": "gelu", "approximate": "tanh"}"#, #"{"type": "silu"}"#,
                           #"{"type": "elu", "alpha": 0.5}"#, #"{"type": "softplus", "beta": 2, "threshold": 1.5}"#]
        let defaults = ["gelu", "silu", "elu", "softplus"].map { #"{"type": "\#($0)"}"# }
        func spec(_ activations: [String]) throws -> ModelSpec {
            let layers = activations.map { #"{"type": "linear", "units": 8}, "# + $0 }.joined(separator: ", ")
            return try SpecParser.parse(json: """
            {"input": {"size": 1}, "layers": [\(layers), {"type": "linear", "units": 1}],
             "loss": "mse", "optimizer": {"type": "adam", "lr": 0.01}, "seed": 4}
            """)
        }
        let model = try makeModel(spec: try spec(withOptions))
        for i in 0..<5 { try step(model, i) }
        let path = temporaryDirectory() + "/activations.h5"
        try model.save(to: path)
        let loaded = try loadModel(from: path)
        #expect(loaded.layerTypes == model.layerTypes)
        let layers = loaded.spec.layers
        #expect(layers[1].string("approximate") == "tanh")
        #expect(layers[5].double("alpha") == 0.5)
        #expect(layers[7].double("beta") == 2 && layers[7].double("threshold") == 1.5)
        let x = regressionBatch(32, seed: 1).0
        func predict(_ m: any AnyModel) throws -> [Float] {
            var out = [Float](repeating: 0, count: 32)
            try x.withUnsafeBufferPointer { xp in
                try out.withUnsafeMutableBufferPointer { try m.predict(x: xp.baseAddress!, count: 32, into: $0.baseAddress!) }
            }
            return out
        }
        #expect(try predict(loaded) == predict(model))
        let plain = try makeModel(spec: try spec(defaults))
        for i in 0..<5 { try step(plain, i) }
        #expect(try predict(plain) != predict(model))
    }
}
