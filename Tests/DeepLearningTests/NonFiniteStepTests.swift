import Testing
@testable import DeepLearning

/// A step that would make a parameter or optimizer state NaN or infinite is refused with
/// `.numeric` naming the parameter, and leaves every parameter, state value and counter as
/// it was, bit for bit; the next ordinary step trains and the model saves and loads.
@Suite struct NonFiniteStepTests {
    static let features = 6, classes = 3

    /// 6 -> 5 tanh -> 3. Feature 0 of every sample is 0, so the first layer's gradient for
    /// that column is exactly zero (where Adam and RMSprop with eps 0 divide 0 by 0).
    static func model<T: DLScalar>(_ optimizer: String, loss: String = "cross_entropy", as: T.Type) throws -> Model<T> {
        let spec = try SpecParser.parse(json: """
        {"input": {"size": \(features)}, "layers": [{"type": "linear", "units": 5}, {"type": "tanh"},
         {"type": "linear", "units": \(classes)}], "loss": "\(loss)", "optimizer": \(optimizer), "seed": 2,
         "dtype": "\(T.self == Float.self ? "float32" : "float64")"}
        """)
        return try Model<T>(spec: spec)
    }

    static let batch = 4
    static let x: [Float] = (0..<batch * features).map { $0 % features == 0 ? 0 : Float(($0 * 7) % 11) / 5 - 1 }
    static let labels: [Int32] = [0, 1, 2, 1]
    static let targets: [Float] = (0..<batch * classes).map { Float($0 % 2) * 1000 }

    /// The bits of everything a step may change: parameters, running statistics, optimizer
    /// state and counters.
    struct Snapshot: Equatable {
        var values: [[UInt64]]
        var buffers: [[UInt64]]
        var slots: [[UInt64]]
        var counters: [Int]
        var rate: UInt64

        init<T: DLScalar>(_ m: Model<T>) {
            func bits(_ t: Tensor<T>) -> [UInt64] {
                t.array.map { T.self == Float.self ? UInt64(($0 as! Float).bitPattern) : ($0 as! Double).bitPattern }
            }
            values = m.parameters.map { bits($0.value) }
            buffers = m.buffers.map { bits($0.value) }
            slots = m.optimizer.slots.flatMap { $0.map(bits) }
            counters = [m.optimizer.step, m.samplesSeen, m.epoch]
            rate = m.optimizer.learningRate.bitPattern
        }
    }

    static func step<T: DLScalar>(_ m: Model<T>, values: Bool = false) throws(DLError) -> Double {
        try x.withUnsafeBufferPointer { (xp) throws(DLError) in
            try labels.withUnsafeBufferPointer { (lp) throws(DLError) in
                try targets.withUnsafeBufferPointer { (tp) throws(DLError) in
                    try m.trainStep(x: xp.baseAddress!, batch: batch,
                                    targets: values ? .values(tp.baseAddress!) : .labels(lp.baseAddress!))
                }
            }
        }
    }

    /// Runs one ordinary step (so state is not all zero), then the hostile one, which must be
    /// refused naming `parameter` with nothing changed; then an ordinary one, save and load.
    func expectRefused<T: DLScalar>(_ m: Model<T>, _ parameter: String, values: Bool = false,
                                    hostile: (Model<T>) -> Void, restore: (Model<T>) -> Void) throws {
        _ = try Self.step(m, values: values)
        hostile(m)
        let before = Snapshot(m)
        do {
            _ = try Self.step(m, values: values)
            Issue.record("the step was accepted; parameters now \(m.parameters.map { $0.value.array })")
        } catch {
            #expect(error.kind == .numeric, "\(error)")
            #expect(error.message.contains(parameter) && error.message.contains("nothing was changed"), "\(error)")
        }
        #expect(Snapshot(m) == before)
        restore(m)
        let loss = try Self.step(m, values: values)
        #expect(loss.isFinite && m.optimizer.step == before.counters[0] + 1)
        for p in m.parameters {
            let finite = p.value.array.allSatisfy { $0.isFinite }
            #expect(finite, "\(p.name)")
        }
        let path = temporaryDirectory() + "/after.h5"
        try m.save(to: path)
        let loaded = try loadModel(from: path)
        #expect(loaded.stepCount == m.optimizer.step)
    }

    @Test(arguments: [#"{"type": "sgd", "lr": 0.1}"#, #"{"type": "sgd", "lr": 0.1, "momentum": 0.9}"#,
                      #"{"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true}"#,
                      #"{"type": "adamw", "lr": 0.01, "weight_decay": 0.1}"#, #"{"type": "rmsprop", "lr": 0.01}"#])
    func aHugeLearningRateIsRefusedAndRolledBack(optimizer: String) throws {
        // In float32 the rate 1e300 rounds to infinity.
        try expectRefused(try Self.model(optimizer, as: Float.self), "layers.", hostile: { $0.learningRate = 1e300 },
                          restore: { $0.learningRate = 0.01 })
    }

    /// A batch of 2^17 input values or more is loaded and checked on the kernel threads: a
    /// NaN or an infinity anywhere in it, with or without preprocessing, is refused by a
    /// step (nothing changes) and by a prediction (the output is not written).
    @Test(arguments: [false, true]) func aBadValueAnywhereInALargeBatchIsRefused(preprocessed: Bool) throws {
        let setting = ThreadSetting.take()
        defer { setting.release() }
        let rows = 200, features = 784
        let spec = try SpecParser.parse(json: """
        {"input": {"size": \(features)}, "layers": [{"type": "linear", "units": 16}, {"type": "relu"},
         {"type": "linear", "units": 3}], "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 2
         \(preprocessed ? #", "preprocessing": {"scale": 0.5, "mean": 1, "std": 4}"# : "")}
        """)
        let model = try Model<Float>(spec: spec)
        var x = (0..<rows * features).map { Float(($0 * 7) % 11) / 5 - 1 }
        let labels = (0..<rows).map { Int32($0 % 3) }
        for threads in [1, 2, 3] {
            Kernels.threads = threads
            for position in [0, rows * features / 2 - 1, rows * features / 2, rows * features - 1] {
                for bad in [Float.nan, .infinity] {
                    x[position] = bad
                    let before = Snapshot(model)
                    #expect(throws: DLError.self, "\(threads) threads, \(bad) at \(position)") {
                        try x.withUnsafeBufferPointer { (xp) throws(DLError) in
                            try labels.withUnsafeBufferPointer { (lp) throws(DLError) in
                                _ = try model.trainStep(x: xp.baseAddress!, batch: rows, targets: .labels(lp.baseAddress!))
                            }
                        }
                    }
                    #expect(Snapshot(model) == before)
                    var out = [Float](repeating: 7, count: rows * 3)
                    #expect(throws: DLError.self) {
                        try x.withUnsafeBufferPointer { (xp) throws(DLError) in
                            try model.predict(x: xp.baseAddress!, count: rows, into: &out)
                        }
                    }
                    #expect(out.allSatisfy { $0 == 7 })
                    x[position] = 0.5
                }
            }
        }
    }

    @Test func float64ModelsToo() throws {
        // Targets of 1000 under MSE give gradients well above 1: lr * g overflows double.
        try expectRefused(try Self.model(#"{"type": "sgd", "lr": 0.001}"#, loss: "mse", as: Double.self), "layers.",
                          values: true, hostile: { $0.learningRate = .greatestFiniteMagnitude },
                          restore: { $0.learningRate = 1e-6 })
    }

    /// Batch norm's running statistics are part of the state a refused step leaves alone:
    /// they move only once the optimizer has accepted the step.
    @Test func aRefusedStepLeavesTheRunningStatisticsAlone() throws {
        let spec = try SpecParser.parse(json: """
        {"input": {"size": \(Self.features)}, "layers": [{"type": "linear", "units": 5}, {"type": "batch_norm"},
         {"type": "tanh"}, {"type": "linear", "units": \(Self.classes)}], "loss": "cross_entropy",
         "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 2}
        """)
        let m = try Model<Float>(spec: spec)
        #expect(m.buffers.count == 2)
        try expectRefused(m, "layers.", hostile: { $0.learningRate = 1e300 }, restore: { $0.learningRate = 0.01 })
        let before = Snapshot(m)
        _ = try Self.step(m)
        #expect(Snapshot(m).buffers != before.buffers, "an accepted step moves the running statistics")
    }

    /// A batch whose variance overflows float32 would make the running variance infinite while
    /// the loss stays finite (the normalised values are then just the bias): refused in the
    /// forward pass, naming batch norm, before anything changed.
    @Test func runningStatisticsThatWouldOverflowAreRefused() throws {
        let spec = try SpecParser.parse(json: """
        {"input": {"size": \(Self.features)}, "layers": [{"type": "batch_norm"}, {"type": "linear", "units": \(Self.classes)}],
         "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 2}
        """)
        let m = try Model<Float>(spec: spec)
        _ = try Self.step(m)
        let before = Snapshot(m)
        let huge: [Float] = (0..<Self.batch * Self.features).map { ($0 / Self.features) % 2 == 0 ? 3e30 : -3e30 }
        do {
            _ = try huge.withUnsafeBufferPointer { xp in
                try Self.labels.withUnsafeBufferPointer { try m.trainStep(x: xp.baseAddress!, batch: Self.batch, targets: .labels($0.baseAddress!)) }
            }
            Issue.record("the step was accepted; running statistics now \(m.buffers.map { $0.value.array })")
        } catch let error as DLError {
            #expect(error.kind == .numeric && error.message.contains("batch_norm") && error.message.contains("nothing was changed"), "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(Snapshot(m) == before)
    }

    /// eps 0 and a gradient that is exactly zero: 0 / 0 in the update of that column only.
    @Test(arguments: [#"{"type": "adam", "lr": 0.01, "eps": 0}"#, #"{"type": "rmsprop", "lr": 0.01, "eps": 0}"#])
    func zeroOverZeroIsRefused(optimizer: String) throws {
        for double in [false, true] {
            if double {
                let m = try Self.model(optimizer, as: Double.self)
                let before = Snapshot(m)
                #expect(throws: DLError.self) { try Self.step(m) }
                #expect(Snapshot(m) == before)
            } else {
                let m = try Self.model(optimizer, as: Float.self)
                let before = Snapshot(m)
                do {
                    _ = try Self.step(m)
                    Issue.record("0 / 0 was accepted")
                } catch {
                    #expect(error.kind == .numeric && error.message.contains("layers.0.weight"), "\(error)")
                }
                #expect(Snapshot(m) == before)
            }
        }
    }

    /// Where the bound cannot vouch for a step (eps 0) but every element stays finite, the
    /// exact check lets it through, and it writes what the unchecked rule writes.
    @Test func aStepTheBoundCannotProveButIsFiniteIsApplied() throws {
        let x: [Float] = (0..<Self.batch * Self.features).map { Float(($0 * 7) % 11) / 5 - 1 }   // no zero column
        let m = try Self.model(#"{"type": "adam", "lr": 0.01, "eps": 0}"#, as: Float.self)
        let reference = try m.converted(to: Float.self)
        _ = try x.withUnsafeBufferPointer { xp in
            try Self.labels.withUnsafeBufferPointer { try m.trainStep(x: xp.baseAddress!, batch: Self.batch, targets: .labels($0.baseAddress!)) }
        }
        // The reference applies Adam (eps 0) by hand to the same gradients, in float32.
        _ = try x.withUnsafeBufferPointer { xp in
            try Self.labels.withUnsafeBufferPointer { try reference.lossAndGradients(x: xp.baseAddress!, batch: Self.batch, targets: .labels($0.baseAddress!)) }
        }
        for (p, r) in zip(m.parameters, reference.parameters) {
            let expected = zip(r.value.array, r.grad.array).map { (w, g) -> Float in
                let mt = Float(1 - 0.9) * g, vt = Float(1 - 0.999) * g * g
                return w - Float(0.01 / (1 - 0.9)) * mt / (vt.squareRoot() * Float(1 / (1 - 0.999).squareRoot()) + 0)
            }
            #expect(p.value.array == expected, "\(p.name)")
        }
    }

    /// The bounds an update leaves spare the next check a read of the parameters; a write
    /// from elsewhere drops them (`forgetBounds`, as `writeParameter` and checkpoint loading
    /// call), and the next check reads the values again.
    @Test func aParameterWrittenFromElsewhereIsReadAgain() throws {
        let p = try Parameter<Float>("p", shape: [2])
        let optimizer = try Optimizer<Float>(SGD(momentum: 0, nesterov: false, weightDecay: 0), learningRate: 1,
                                             parameters: [p])
        (p.value.data[0], p.value.data[1], p.grad.data[0], p.grad.data[1]) = (1, 1, 1, 1)
        try optimizer.update([p])                                  // p = 0: its bound now about 2
        #expect(p.value.array == [0, 0])
        p.value.data[0] = .greatestFiniteMagnitude                 // written from elsewhere
        optimizer.forgetBounds()
        // p - g: FLT_MAX + 2^105 rounds to infinity; a bound of 2 would have let it through.
        (p.grad.data[0], p.grad.data[1]) = (-0x1p105, 0)
        #expect(throws: DLError.self) { try optimizer.update([p]) }
        #expect(p.value.array == [.greatestFiniteMagnitude, 0] && optimizer.step == 1)
    }
}
