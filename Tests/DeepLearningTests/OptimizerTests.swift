import Testing
@testable import DeepLearning

/// The optimizers against their update rules written out here in float64, PyTorch's way
/// (torch.optim's SGD with Nesterov, Adam, AdamW, RMSprop, clip_grad_norm_), over several
/// steps on two parameters whose lengths leave vector tails.
@Suite struct OptimizerTests {
    static let lengths = [5, 21]
    static let steps = 4

    /// Starting values and one gradient per step for each parameter, all random.
    struct Problem {
        var params: [[Double]]
        var grads: [[[Double]]]      // [step][parameter][i]

        init(seed: UInt64) {
            var rng = RandomGenerator(seed: seed)
            params = OptimizerTests.lengths.map { n in (0..<n).map { _ in rng.normal() } }
            grads = (0..<OptimizerTests.steps).map { _ in OptimizerTests.lengths.map { n in (0..<n).map { _ in rng.normal() } } }
        }
    }

    /// The library's parameters after `steps` updates from the spec's optimizer options.
    func run<T: DLScalar>(_ type: String, _ options: [String: SpecValue], _ problem: Problem, as: T.Type,
                          portable: Bool = false) throws -> [[Double]] {
        let parameters = try zip(Self.lengths, problem.params).enumerated().map { (i, item) in
            let p = try Parameter<T>("p\(i)", shape: [item.0])
            for j in 0..<item.0 { p.value.data[j] = T(item.1[j]) }
            return p
        }
        let optimizer = try Optimizer<T>(spec: kind("optimizer", type).spec(options, path: "optimizer"), parameters: parameters)
        optimizer.portable = portable
        for step in problem.grads {
            for (p, g) in zip(parameters, step) { for j in 0..<g.count { p.grad.data[j] = T(g[j]) } }
            try optimizer.update(parameters)
        }
        #expect(optimizer.step == Self.steps)
        return parameters.map { $0.value.array.map { Double($0) } }
    }

    /// torch.nn.utils.clip_grad_norm_'s factor for one step's gradients.
    static func clipFactor(_ grads: [[Double]], _ maxNorm: Double) -> Double {
        let total = grads.joined().reduce(0) { $0 + $1 * $1 }.squareRoot()
        return maxNorm > 0 ? min(1, maxNorm / (total + 1e-6)) : 1
    }

    /// The reference: `rule(p, g, state, t)` updates one element given its gradient after
    /// clipping; state holds two numbers per element, starting at zero.
    static func reference(_ problem: Problem, clip: Double = 0,
                          _ rule: (_ p: inout Double, _ g: Double, _ s: inout (Double, Double), _ t: Int) -> Void) -> [[Double]] {
        var params = problem.params
        var state = params.map { $0.map { _ in (0.0, 0.0) } }
        for (t, grads) in problem.grads.enumerated() {
            let c = clipFactor(grads, clip)
            for k in params.indices { for i in params[k].indices { rule(&params[k][i], c * grads[k][i], &state[k][i], t + 1) } }
        }
        return params
    }

    static func distance(_ a: [[Double]], _ b: [[Double]]) -> Double { maxAbsDiff(Array(a.joined()), Array(b.joined())) }

    /// Checks float64 (tight) and float32 (loose, and its AVX2 path bit-identical to its
    /// scalar loop) against the reference.
    func check(_ type: String, _ options: [String: SpecValue], clip: Double = 0, seed: UInt64 = 1,
               _ rule: (_ p: inout Double, _ g: Double, _ s: inout (Double, Double), _ t: Int) -> Void) throws {
        let problem = Problem(seed: seed)
        let expected = Self.reference(problem, clip: clip, rule)
        #expect(Self.distance(expected, problem.params) > 1e-3, "the parameters moved")
        let f64 = try run(type, options, problem, as: Double.self)
        #expect(Self.distance(f64, expected) < 1e-13, "\(type) float64: \(Self.distance(f64, expected))")
        let f32 = try run(type, options, problem, as: Float.self)
        #expect(Self.distance(f32, expected) < 2e-5, "\(type) float32: \(Self.distance(f32, expected))")
        let scalar = try run(type, options, problem, as: Float.self, portable: true)
        #expect(f32 == scalar, "\(type): the AVX2 loop and the scalar loop give the same bits")
    }

    @Test func sgdWithWeightDecay() throws {
        try check("sgd", ["lr": .double(0.1), "weight_decay": .double(0.01)]) { p, g, _, _ in p -= 0.1 * (g + 0.01 * p) }
    }

    @Test func momentumAsTheTutorialWritesIt() throws {
        try check("sgd", ["lr": .double(0.1), "momentum": .double(0.9), "weight_decay": .double(0.01)]) { p, g, s, _ in
            s.0 = 0.9 * s.0 - 0.1 * (g + 0.01 * p)
            p += s.0
        }
    }

    /// PyTorch's Nesterov: b = m b + g; p -= lr (g + m b) (the same steps at a constant rate).
    @Test func nesterovAsPyTorchWritesIt() throws {
        try check("sgd", ["lr": .double(0.05), "momentum": .double(0.9), "nesterov": .bool(true), "weight_decay": .double(0.01)]) {
            p, g, s, _ in
            let gd = g + 0.01 * p
            s.0 = 0.9 * s.0 + gd
            p -= 0.05 * (gd + 0.9 * s.0)
        }
    }

    @Test func adamWithBiasCorrection() throws {
        try check("adam", ["lr": .double(0.01), "weight_decay": .double(0.1)]) { p, g, s, t in
            let gd = g + 0.1 * p
            s.0 = 0.9 * s.0 + 0.1 * gd
            s.1 = 0.999 * s.1 + 0.001 * gd * gd
            let mHat = s.0 / (1 - Double.pow(0.9, Double(t))), vHat = s.1 / (1 - Double.pow(0.999, Double(t)))
            p -= 0.01 * mHat / (vHat.squareRoot() + 1e-8)
        }
    }

    /// torch.optim.AdamW: p *= 1 - lr wd, then Adam on the plain gradient.
    @Test func adamWDecouplesTheDecay() throws {
        try check("adamw", ["lr": .double(0.01), "weight_decay": .double(0.5), "beta1": .double(0.8)]) { p, g, s, t in
            p *= 1 - 0.01 * 0.5
            s.0 = 0.8 * s.0 + 0.2 * g
            s.1 = 0.999 * s.1 + 0.001 * g * g
            let mHat = s.0 / (1 - Double.pow(0.8, Double(t))), vHat = s.1 / (1 - Double.pow(0.999, Double(t)))
            p -= 0.01 * mHat / (vHat.squareRoot() + 1e-8)
        }
    }

    @Test func rmsprop() throws {
        try check("rmsprop", ["lr": .double(0.01), "rho": .double(0.9)]) { p, g, s, _ in
            s.0 = 0.9 * s.0 + 0.1 * g * g
            p -= 0.01 * g / (s.0.squareRoot() + 1e-8)
        }
    }

    /// clip_norm 0.5 is well below the gradients' norm (about 5), so every step is clipped.
    @Test(arguments: ["sgd", "adam", "adamw", "rmsprop"]) func clippingByGlobalNorm(type: String) throws {
        let clipped = try run(type, ["lr": .double(0.1), "clip_norm": .double(0.5)], Problem(seed: 3), as: Double.self)
        var scaled = Problem(seed: 3)
        for (t, grads) in scaled.grads.enumerated() {
            let c = Self.clipFactor(grads, 0.5)
            #expect(c < 0.2)
            scaled.grads[t] = grads.map { $0.map { c * $0 } }
        }
        let byHand = try run(type, ["lr": .double(0.1)], scaled, as: Double.self)
        #expect(Self.distance(clipped, byHand) < 1e-14, "\(type)")
        // A norm above the gradients' leaves them as they are.
        let loose = try run(type, ["lr": .double(0.1), "clip_norm": .double(1e6)], Problem(seed: 3), as: Double.self)
        #expect(loose == (try run(type, ["lr": .double(0.1)], Problem(seed: 3), as: Double.self)))
    }

    @Test func clippedSGDAgainstTheReference() throws {
        try check("sgd", ["lr": .double(0.1), "clip_norm": .double(1)], clip: 1) { p, g, _, _ in p -= 0.1 * g }
    }

    /// A per-step schedule sets the rate of each update: exponential, gamma 0.5.
    @Test func perStepScheduleDrivesTheUpdates() throws {
        let schedule = kind("schedule", "exponential").spec(["gamma": .double(0.5), "interval": .string("step")])
        try check("sgd", ["lr": .double(0.2), "schedule": .component(schedule)]) { p, g, _, t in
            p -= 0.2 * Double.pow(0.5, Double(t - 1)) * g
        }
    }

    @Test func nesterovNeedsMomentum() throws {
        let error = try #require(throws: DLError.self) {
            _ = try Optimizer<Double>(spec: kind("optimizer", "sgd").spec(["lr": .double(0.1), "nesterov": .bool(true)], path: "optimizer"),
                                      parameters: [])
        }
        #expect(error.message.contains("optimizer.nesterov"))
    }
}

/// Schedules in their closed forms, as PyTorch's StepLR, ExponentialLR, LinearLR and
/// CosineAnnealingLR compute them (bindings/python/tests hold them to NumPy too).
@Suite struct ScheduleTests {
    func rates(_ type: String, _ options: [String: SpecValue], _ count: Int) throws -> [Double] {
        let optimizer = try Optimizer<Double>(spec: kind("optimizer", "sgd").spec(
            ["lr": .double(0.1), "schedule": .component(kind("schedule", type).spec(options))], path: "optimizer"), parameters: [])
        return (0..<count).map { t in
            optimizer.epoch = t
            return optimizer.learningRate
        }
    }

    @Test func step() throws {
        let expected = (0..<7).map { 0.1 * Double.pow(0.5, Double($0 / 3)) }
        #expect(maxAbsDiff(try rates("step", ["step_size": .int(3), "gamma": .double(0.5)], 7), expected) == 0)
    }

    @Test func exponential() throws {
        #expect(maxAbsDiff(try rates("exponential", ["gamma": .double(0.9)], 5), (0..<5).map { 0.1 * Double.pow(0.9, Double($0)) }) == 0)
    }

    @Test func cosineWithWarmUp() throws {
        let r = try rates("cosine", ["t_max": .int(4), "eta_min": .double(0.01), "warmup": .int(2), "warmup_start_factor": .double(0.25)], 9)
        let expected = [0.025, 0.0625, 0.1, 0.01 + 0.09 * (1 + 0.5.squareRoot()) / 2, 0.055, 0.01 + 0.09 * (1 - 0.5.squareRoot()) / 2,
                        0.01, 0.01, 0.01]
        #expect(maxAbsDiff(r, expected) < 1e-15)
    }

    @Test func lrDecayIsAnExponentialSchedule() throws {
        let spec = try SpecParser.parse(json: #"{"input_size": 2, "layers": [{"type": "linear", "units": 2}], "loss": "mse", "#
            + #""optimizer": {"type": "sgd", "lr": 0.1, "lr_decay": 0.5}}"#)
        let schedule = try LearningRateSchedule(optimizer: spec.optimizer)
        #expect(schedule.rule is ExponentialRate && !schedule.perStep)
        #expect(schedule.rate(base: 0.1, step: 99, epoch: 3) == 0.1 * 0.125)
        let both = #"{"input_size": 2, "layers": [{"type": "linear", "units": 2}], "loss": "mse", "#
            + #""optimizer": {"type": "sgd", "lr": 0.1, "lr_decay": 0.5, "schedule": {"type": "step", "step_size": 2}}}"#
        let error = try #require(throws: DLError.self) { try Model<Float>(spec: try SpecParser.parse(json: both)) }
        #expect(error.message.contains("either \"lr_decay\" or a \"schedule\""))
    }
}
